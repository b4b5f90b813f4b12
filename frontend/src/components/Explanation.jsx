import { displayTitle } from '../format.js';
import { useAsync } from '../hooks.js';
import { explain } from '../services/api.js';
import { EXPLANATION_COUNT } from '../services/config.js';

/** Which of the user's movies make the model score this one, and by how much. */
export default function Explanation({ userId, movieId }) {
  const { data, error } = useAsync(
    (signal) => explain(userId, movieId, { n: EXPLANATION_COUNT }, { signal }),
    [userId, movieId],
  );
  if (error) return <p className="section-error">Cannot explain this one: {error.message}</p>;
  if (!data) return null;
  // Largest first (the API's order); bars are drawn relative to the largest.
  const reasons = data.contributions.filter((part) => part.share > 0);
  return (
    <div className="explanation">
      <h3>Why user {userId} may like it</h3>
      {reasons.length ? (
        <>
          <ul>
            {reasons.map((part) => (
              <li key={part.movie_id}>
                <span>They watched {displayTitle(part.title)}</span>
                <span className="share" style={{ '--share': part.share / reasons[0].share }}>
                  {(part.share * 100).toFixed(1)}%
                </span>
              </li>
            ))}
          </ul>
          <p className="explanation-caption">Each bar is that movie&apos;s share of the score.</p>
        </>
      ) : (
        <p className="section-note">Nothing this user watched points to it.</p>
      )}
    </div>
  );
}
