import { useAsync } from '../hooks.js';
import { similar } from '../services/api.js';
import { SIMILAR_COUNT } from '../services/config.js';
import CardGrid from './CardGrid.jsx';
import Section from './Section.jsx';

export default function SimilarMovies({ movieId, grid }) {
  const { data, error, loading } = useAsync((signal) => similar(movieId, { k: SIMILAR_COUNT }, { signal }), [movieId]);
  // 404: the model has no ratings of this movie, so nothing is known to be like it.
  const unrated = error?.status === 404;
  return (
    <Section
      title="Similar movies"
      note={unrated ? 'Nobody has rated this one yet, so nothing is known to be like it.' : null}
      error={unrated ? null : error}
      loading={loading}
    >
      {data && <CardGrid movies={data.movies} compact {...grid} />}
    </Section>
  );
}
