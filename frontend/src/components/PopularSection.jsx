import { useState } from 'react';
import { useAsync, useOnVisible } from '../hooks.js';
import { popular } from '../services/api.js';
import { MAX_K, PAGE_SIZE } from '../services/config.js';
import CardGrid from './CardGrid.jsx';
import GenreFilter from './GenreFilter.jsx';
import Section from './Section.jsx';

/** The most popular movies, optionally of one genre; more load as the visitor scrolls. */
export default function PopularSection({ note, grid }) {
  const [genre, setGenre] = useState(null);
  const [count, setCount] = useState(PAGE_SIZE);
  const state = useAsync((signal) => popular({ k: count, genre: genre ?? undefined }, { signal }), [count, genre]);
  const movies = state.data?.movies ?? [];
  const hasMore = count < MAX_K && movies.length === count;
  const showMore = () => setCount((shown) => Math.min(shown + PAGE_SIZE, MAX_K));
  const sentinel = useOnVisible(showMore, hasMore && !state.loading);

  function pickGenre(choice) {
    setGenre(choice);
    setCount(PAGE_SIZE);
  }

  return (
    <Section
      title={genre ? `Popular in ${genre}` : 'Popular'}
      note={note}
      actions={<GenreFilter genre={genre} onChange={pickGenre} />}
      error={state.error}
      loading={state.loading}
    >
      {state.data && (
        <>
          <CardGrid movies={movies} {...grid} />
          {hasMore && (
            <button ref={sentinel} type="button" className="button more" disabled={state.loading} onClick={showMore}>
              {state.loading ? 'Loading…' : 'Show more'}
            </button>
          )}
          {count === MAX_K && movies.length === MAX_K && (
            <p className="section-end">That is the top {MAX_K}: search by title to find any other movie.</p>
          )}
        </>
      )}
    </Section>
  );
}
