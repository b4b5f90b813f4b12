import { displayTitle } from '../format.js';
import { posterTint } from '../genres.js';

/** A poster drawn from the movie's title, year and genres, for movies without a TMDB image. */
export default function GeneratedPoster({ movie }) {
  const { genre, hue, accentHue } = posterTint(movie.genres);
  const title = displayTitle(movie.title);
  return (
    <div
      className="poster generated-poster"
      role="img"
      aria-label={`Poster of ${title}`}
      data-testid="generated-poster"
      style={{ '--hue': hue, '--accent-hue': accentHue }}
    >
      <span className="generated-poster-genre" aria-hidden="true">
        {genre}
      </span>
      <span className="generated-poster-title" aria-hidden="true">
        {title}
      </span>
      {movie.year && (
        <span className="generated-poster-year" aria-hidden="true">
          {movie.year}
        </span>
      )}
    </div>
  );
}
