import MovieCard from './MovieCard.jsx';

/** The poster grid: as many columns as fit (CSS auto-fill). */
export default function CardGrid({ movies, opinionOf = () => null, onOpen, onOpinion, compact = false }) {
  return (
    <ul className={compact ? 'grid grid-compact' : 'grid'}>
      {movies.map((movie) => (
        <li key={movie.movie_id}>
          <MovieCard movie={movie} opinion={opinionOf(movie.movie_id)} onOpen={onOpen} onOpinion={onOpinion} />
        </li>
      ))}
    </ul>
  );
}
