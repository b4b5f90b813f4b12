import { useState } from 'react';
import { useAsync } from '../hooks.js';
import { searchMovies } from '../services/api.js';
import { PAGE_SIZE } from '../services/config.js';
import CardGrid from './CardGrid.jsx';
import Section from './Section.jsx';

/** Catalog movies whose title contains `query`, a page at a time. */
export default function SearchResults({ query, grid }) {
  const [page, setPage] = useState(1);
  const state = useAsync(
    (signal) => searchMovies({ query, page, pageSize: PAGE_SIZE }, { signal }),
    [query, page],
  );
  const total = state.data?.total ?? 0;
  const pages = Math.ceil(total / PAGE_SIZE);

  function goTo(target) {
    setPage(target);
    window.scrollTo({ top: 0, behavior: 'smooth' });
  }

  return (
    <Section
      title={`Titles with “${query}”`}
      actions={total > 0 && <span className="section-count">{total === 1 ? '1 movie' : `${total} movies`}</span>}
      note={state.data && total === 0 ? 'No movie title contains that.' : null}
      error={state.error}
      loading={state.loading}
    >
      {state.data && total > 0 && (
        <>
          <CardGrid movies={state.data.items} {...grid} />
          {pages > 1 && (
            <nav className="pager" aria-label="Search result pages">
              <button type="button" className="button" disabled={page === 1} onClick={() => goTo(page - 1)}>
                Previous
              </button>
              <span>
                Page {page} of {pages}
              </span>
              <button type="button" className="button" disabled={page === pages} onClick={() => goTo(page + 1)}>
                Next
              </button>
            </nav>
          )}
        </>
      )}
    </Section>
  );
}
