import { useEffect, useMemo, useRef, useState } from 'react';
import { readSession, writeSession } from './services/session.js';

/**
 * Run `load(signal)` whenever `deps` change; the previous request is aborted. While a new
 * request runs, the previous data stays (with `loading` true) so lists do not flicker.
 */
export function useAsync(load, deps) {
  const [state, setState] = useState({ data: undefined, error: null, loading: true });
  useEffect(() => {
    const controller = new AbortController();
    setState((previous) => ({ ...previous, error: null, loading: true }));
    load(controller.signal).then(
      (data) => controller.signal.aborted || setState({ data, error: null, loading: false }),
      (error) => controller.signal.aborted || setState({ data: undefined, error, loading: false }),
    );
    return () => controller.abort();
  }, deps); // the caller lists what `load` depends on
  return state;
}

export function useDebouncedValue(value, delayMs) {
  const [debounced, setDebounced] = useState(value);
  useEffect(() => {
    const timer = setTimeout(() => setDebounced(value), delayMs);
    return () => clearTimeout(timer);
  }, [value, delayMs]);
  return debounced;
}

/** useState that survives a reload of the page in this browser session. */
export function useSessionState(key, initial) {
  const [value, setValue] = useState(() => readSession(key, initial));
  useEffect(() => writeSession(key, value), [key, value]);
  return [value, setValue];
}

/** Call `onVisible` when the returned ref's element scrolls into view (infinite scrolling). */
export function useOnVisible(onVisible, enabled) {
  const ref = useRef(null);
  const callback = useRef(onVisible);
  useEffect(() => {
    callback.current = onVisible;
  });
  useEffect(() => {
    const element = ref.current;
    if (!enabled || !element || !('IntersectionObserver' in window)) return undefined;
    const observer = new IntersectionObserver(
      (entries) => entries.some((entry) => entry.isIntersecting) && callback.current(),
      { rootMargin: '400px' },
    );
    observer.observe(element);
    return () => observer.disconnect();
  }, [enabled]);
  return ref;
}

/**
 * The visitor's likes and dislikes in this browser session, in the order given:
 * `opinionOf(movieId)` is 'like', 'dislike' or null; `setOpinion(movie, opinion | null)`.
 */
export function useOpinions() {
  const [entries, setEntries] = useSessionState('movierec.opinions', []);
  return useMemo(() => {
    const byId = new Map(entries.map((entry) => [entry.movie.movie_id, entry.opinion]));
    const moviesWith = (opinion) => entries.filter((entry) => entry.opinion === opinion).map((entry) => entry.movie);
    return {
      liked: moviesWith('like'),
      disliked: moviesWith('dislike'),
      opinionOf: (movieId) => byId.get(movieId) ?? null,
      setOpinion: (movie, opinion) =>
        setEntries((previous) => [
          ...previous.filter((entry) => entry.movie.movie_id !== movie.movie_id),
          ...(opinion ? [{ movie, opinion }] : []),
        ]),
    };
  }, [entries, setEntries]);
}
