import { useEffect } from 'react';

const SHOWN_MS = 6000;

/** A live region that shows `message` for a few seconds, then calls `onDone`. */
export default function Toast({ message, onDone }) {
  useEffect(() => {
    if (!message) return undefined;
    const timer = setTimeout(onDone, SHOWN_MS);
    return () => clearTimeout(timer);
  }, [message, onDone]);
  return (
    <div className="toast-region" role="status">
      {message && <p className="toast">{message}</p>}
    </div>
  );
}
