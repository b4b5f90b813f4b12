import { useState } from 'react';
import { displayTitle } from '../format.js';
import GeneratedPoster from './GeneratedPoster.jsx';

/** The TMDB poster, or a generated one when there is none or it fails to load. */
export default function Poster({ movie }) {
  const [failed, setFailed] = useState(false);
  if (!movie.poster_url || failed) return <GeneratedPoster movie={movie} />;
  return (
    <img
      className="poster"
      src={movie.poster_url}
      alt={`Poster of ${displayTitle(movie.title)}`}
      loading="lazy"
      onError={() => setFailed(true)}
    />
  );
}
