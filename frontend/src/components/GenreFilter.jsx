import { BROWSE_GENRES } from '../genres.js';

export default function GenreFilter({ genre, onChange }) {
  return (
    <div className="genre-filter" role="group" aria-label="Filter by genre">
      {[null, ...BROWSE_GENRES].map((choice) => (
        <button
          key={choice ?? 'all'}
          type="button"
          className="chip"
          aria-pressed={genre === choice}
          onClick={() => onChange(choice)}
        >
          {choice ?? 'All'}
        </button>
      ))}
    </div>
  );
}
