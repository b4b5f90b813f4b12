// Where the Bento API is. Empty: the page's own origin, because the Bento serves the page at /
// and each API method at /<method>; request paths stay relative so a mounted prefix still works.
export const API_BASE_URL = import.meta.env.VITE_API_BASE_URL ?? '';

// The API's own limit on `k` (recommender/serving.py MAX_K).
export const MAX_K = 100;

export const PAGE_SIZE = 20;
export const RECOMMENDATION_COUNT = 12;
export const SIMILAR_COUNT = 8;
export const EXPLANATION_COUNT = 5;
export const SEARCH_DELAY_MS = 300;
