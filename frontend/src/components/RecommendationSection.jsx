import CardGrid from './CardGrid.jsx';
import Section from './Section.jsx';

/** A ranked list from the model; says so when popular movies stood in (`fallback`). */
export default function RecommendationSection({ title, fallbackNote, state, grid }) {
  const { data, error, loading } = state;
  return (
    <Section title={title} note={data?.fallback ? fallbackNote : null} error={error} loading={loading}>
      {data && <CardGrid movies={data.movies} {...grid} />}
    </Section>
  );
}
