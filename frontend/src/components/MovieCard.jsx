import { displayTitle, yearLabel } from '../format.js';
import OpinionButtons from './OpinionButtons.jsx';
import Poster from './Poster.jsx';

/** One movie: a button that opens its details, and its like / not-for-me toggles. */
export default function MovieCard({ movie, opinion, onOpen, onOpinion }) {
  const title = displayTitle(movie.title);
  return (
    <article className="card" data-movie-id={movie.movie_id}>
      <button
        type="button"
        className="card-open"
        aria-label={`${title} (${yearLabel(movie)})`}
        onClick={() => onOpen(movie)}
      >
        <Poster movie={movie} />
        <span className="card-text">
          <span className="card-title">{title}</span>
          <span className="card-meta">
            {yearLabel(movie)}
            {typeof movie.rating === 'number' && (
              <span className="card-rating" aria-label={`rated ${movie.rating.toFixed(1)} of 5`}>
                ★ {movie.rating.toFixed(1)}
              </span>
            )}
          </span>
          <span className="card-genres">{movie.genres.slice(0, 3).join(' · ')}</span>
        </span>
      </button>
      {onOpinion && <OpinionButtons movie={movie} opinion={opinion} onOpinion={onOpinion} />}
    </article>
  );
}
