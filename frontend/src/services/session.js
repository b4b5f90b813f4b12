// What this browser session remembers: the anonymous visitor's id and the selected user.
const VISITOR_KEY = 'movierec.visitor';

// Far above the dataset's user ids, so an anonymous visitor's feedback never lands on a
// MovieLens user; the feedback API accepts any positive integer.
const VISITOR_ID_BASE = 1_000_000_000;

export function visitorId(storage = window.sessionStorage) {
  const stored = Number(storage.getItem(VISITOR_KEY));
  if (Number.isSafeInteger(stored) && stored > VISITOR_ID_BASE) return stored;
  const [random] = crypto.getRandomValues(new Uint32Array(1));
  const id = VISITOR_ID_BASE + 1 + (random % VISITOR_ID_BASE);
  storage.setItem(VISITOR_KEY, String(id));
  return id;
}

export function readSession(key, fallback) {
  try {
    return JSON.parse(window.sessionStorage.getItem(key)) ?? fallback;
  } catch {
    return fallback; // a value some other version of the page wrote
  }
}

export function writeSession(key, value) {
  window.sessionStorage.setItem(key, JSON.stringify(value));
}
