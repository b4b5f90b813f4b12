import { useId } from 'react';

const SKELETON_CARDS = 6;

/** A titled part of the page; shows placeholder cards until its first data arrives. */
export default function Section({ title, note, actions, error, loading, children }) {
  const headingId = useId();
  let body = children;
  if (error) {
    body = (
      <p className="section-error" role="alert">
        {error.message}
      </p>
    );
  } else if (!children && loading) {
    body = (
      <ul className="grid" aria-hidden="true">
        {Array.from({ length: SKELETON_CARDS }, (_, index) => (
          <li key={index} className="card-skeleton" />
        ))}
      </ul>
    );
  }
  return (
    <section className="section" aria-labelledby={headingId} aria-busy={loading}>
      <div className="section-head">
        <h2 id={headingId}>{title}</h2>
        {actions}
      </div>
      {note && <p className="section-note">{note}</p>}
      {body}
    </section>
  );
}
