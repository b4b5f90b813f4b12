// The Bento API: every method is `POST /<method>` with a JSON body of its parameters.
import { API_BASE_URL } from './config.js';
import { visitorId } from './session.js';

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
  }
}

// What the visitor is served, as the latest recommendation answer names it: the model version
// and, while an experiment runs, the experiment and the visitor's arm (null otherwise, and from
// older servers, which name neither). The arm is sticky per visitor on the server, so the
// latest answer is right. Read by the footer.
let servedModel = null;
const servedListeners = new Set();

export function getServedModel() {
  return servedModel;
}

export function subscribeServedModel(listener) {
  servedListeners.add(listener);
  return () => servedListeners.delete(listener);
}

const textOrNull = (value) => (typeof value === 'string' && value !== '' ? value : null);

function rememberServedModel(payload) {
  if (!payload?.model_version) return;
  const next = {
    modelVersion: payload.model_version,
    experiment: textOrNull(payload.experiment),
    arm: textOrNull(payload.arm),
  };
  const same = servedModel && Object.keys(next).every((key) => next[key] === servedModel[key]);
  if (same) return; // a stable snapshot: useSyncExternalStore re-renders on a new object only
  servedModel = next;
  servedListeners.forEach((listener) => listener());
}

async function post(method, body, { signal, keepalive } = {}) {
  const response = await fetch(`${API_BASE_URL}${method}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify(body),
    signal,
    keepalive,
  });
  const payload = await response.json().catch(() => null);
  if (!response.ok) {
    throw new ApiError(payload?.error ?? `${method} answered HTTP ${response.status}`, response.status);
  }
  return payload;
}

/**
 * A recommendation answer (`/popular`, `/recommend`, `/recommend_for_liked`, `/similar`): it
 * names the model (and arm) that chose its movies, which the footer shows. `/explain` names a
 * version too but no arm, and explains the typed user's model, so it does not count.
 */
async function recommendation(method, body, options) {
  const payload = await post(method, body, options);
  rememberServedModel(payload);
  return withImpression(payload);
}

// Each recommended movie keeps the impression (the answer) it was shown in, so that feedback
// on it names that impression and the service can tie it to the model version that chose it.
function withImpression(payload) {
  if (!payload?.impression_id || !Array.isArray(payload.movies)) return payload;
  const impressionId = payload.impression_id;
  return { ...payload, movies: payload.movies.map((movie) => ({ ...movie, impression_id: impressionId })) };
}

// Answers to the anonymous visitor are logged under this session.
const session = () => String(visitorId());

/** One page of the catalog, most popular first; `query` keeps titles containing it. */
export function searchMovies({ query, page = 1, pageSize }, options) {
  return post('movies', { query, page, page_size: pageSize }, options);
}

export function popular({ k, genre }, options) {
  return recommendation('popular', { k, genre, session_id: session() }, options);
}

export function recommend(userId, { k, exclude = [] }, options) {
  return recommendation('recommend', { user_id: userId, k, exclude_movie_ids: exclude }, options);
}

export function recommendForLiked(likedIds, { k, exclude = [] }, options) {
  return recommendation(
    'recommend_for_liked',
    { liked_movie_ids: likedIds, k, exclude_movie_ids: exclude, session_id: session() },
    options,
  );
}

export function similar(movieId, { k }, options) {
  return recommendation('similar', { movie_id: movieId, k, session_id: session() }, options);
}

export function explain(userId, movieId, { n }, options) {
  return post('explain', { user_id: userId, movie_id: movieId, n }, options);
}

/**
 * Record a `click`, `like` or `dislike` of a movie, naming the impression it was shown in (when
 * it came from a recommendation); keepalive lets it finish when the page goes away.
 */
export function sendFeedback({ userId, movieId, event, impressionId }) {
  const body = { user_id: userId, movie_id: movieId, event };
  if (impressionId) body.impression_id = impressionId;
  return post('feedback', body, { keepalive: true });
}
