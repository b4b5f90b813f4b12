import { useEffect, useId, useRef } from 'react';
import { displayTitle, yearLabel } from '../format.js';
import Explanation from './Explanation.jsx';
import { CloseIcon } from './Icons.jsx';
import OpinionButtons from './OpinionButtons.jsx';
import Poster from './Poster.jsx';
import SimilarMovies from './SimilarMovies.jsx';

/**
 * A modal with the movie, why the selected user (`userId`, when the model knows them:
 * `knownUser`) may like it, and similar movies. Escape, the close button and a click outside
 * close it; focus goes back where it was.
 */
export default function MovieDetail({ movie, userId, knownUser, grid, onClose }) {
  const titleId = useId();
  const panel = useRef(null);

  useEffect(() => {
    const opener = document.activeElement;
    return () => opener?.isConnected && opener.focus();
  }, []);

  useEffect(() => {
    panel.current.scrollTop = 0;
    panel.current.focus();
  }, [movie.movie_id]);

  return (
    <div className="detail-backdrop" onClick={(event) => event.target === event.currentTarget && onClose()}>
      <div
        ref={panel}
        className="detail"
        role="dialog"
        aria-modal="true"
        aria-labelledby={titleId}
        tabIndex={-1}
        onKeyDown={(event) => event.key === 'Escape' && onClose()}
      >
        <button type="button" className="icon-button detail-close" aria-label="Close" onClick={onClose}>
          <CloseIcon />
        </button>
        <div className="detail-hero">
          <div className="detail-poster">
            <Poster key={movie.movie_id} movie={movie} />
          </div>
          <div className="detail-info">
            <h2 id={titleId}>{displayTitle(movie.title)}</h2>
            <p className="detail-meta">
              {yearLabel(movie)}
              {movie.genres.length > 0 && ` · ${movie.genres.join(', ')}`}
            </p>
            {movie.overview && <p className="detail-overview">{movie.overview}</p>}
            <OpinionButtons
              movie={movie}
              opinion={grid.opinionOf(movie.movie_id)}
              onOpinion={grid.onOpinion}
              withLabels
            />
            {userId && knownUser && <Explanation userId={userId} movieId={movie.movie_id} />}
            {userId && !knownUser && (
              <p className="detail-hint">User {userId} has no history in the model, so there is nothing to explain.</p>
            )}
            {!userId && (
              <p className="detail-hint">Enter a user id at the top to see why the model would recommend this to them.</p>
            )}
          </div>
        </div>
        <SimilarMovies movieId={movie.movie_id} grid={grid} />
      </div>
    </div>
  );
}
