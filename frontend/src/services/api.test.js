import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import * as api from './api.js';
import { visitorId } from './session.js';

const SESSION = String(visitorId());

function answer(body, status = 200) {
  return { ok: status < 400, status, json: async () => body };
}

let fetchMock;

beforeEach(() => {
  fetchMock = vi.fn(async () => answer({ model_version: '3', fallback: false, movies: [] }));
  vi.stubGlobal('fetch', fetchMock);
});

afterEach(() => {
  vi.unstubAllGlobals();
});

function sent() {
  expect(fetchMock).toHaveBeenCalledTimes(1);
  const [url, init] = fetchMock.mock.calls[0];
  expect(init.method).toBe('POST');
  expect(init.headers['Content-Type']).toBe('application/json');
  return { url, body: JSON.parse(init.body), init };
}

describe('api requests', () => {
  it.each([
    ['movies', () => api.searchMovies({ query: 'toy', page: 2, pageSize: 20 }), { query: 'toy', page: 2, page_size: 20 }],
    ['popular', () => api.popular({ k: 40, genre: 'Comedy' }), { k: 40, genre: 'Comedy', session_id: SESSION }],
    ['popular', () => api.popular({ k: 20 }), { k: 20, session_id: SESSION }],
    ['recommend', () => api.recommend(7, { k: 12, exclude: [3] }), { user_id: 7, k: 12, exclude_movie_ids: [3] }],
    [
      'recommend_for_liked',
      () => api.recommendForLiked([1, 2, 3], { k: 12 }),
      { liked_movie_ids: [1, 2, 3], k: 12, exclude_movie_ids: [], session_id: SESSION },
    ],
    ['similar', () => api.similar(260, { k: 8 }), { movie_id: 260, k: 8, session_id: SESSION }],
    ['explain', () => api.explain(7, 260, { n: 5 }), { user_id: 7, movie_id: 260, n: 5 }],
    [
      'feedback',
      () => api.sendFeedback({ userId: 1_000_000_123, movieId: 1, event: 'like' }),
      { user_id: 1_000_000_123, movie_id: 1, event: 'like' },
    ],
    [
      'feedback',
      () => api.sendFeedback({ userId: 7, movieId: 1, event: 'click', impressionId: '0190abc' }),
      { user_id: 7, movie_id: 1, event: 'click', impression_id: '0190abc' },
    ],
  ])('POSTs %s with the method parameters as a flat JSON body', async (method, call, body) => {
    await call();
    const { url, body: payload } = sent();
    expect(url).toBe(method); // relative: same origin as the page, under any mount prefix
    expect(payload).toEqual(body);
  });

  it('passes the abort signal through', async () => {
    const controller = new AbortController();
    await api.similar(1, { k: 8 }, { signal: controller.signal });
    expect(sent().init.signal).toBe(controller.signal);
  });

  it('sends feedback with keepalive so it outlives the page', async () => {
    await api.sendFeedback({ userId: 1, movieId: 1, event: 'click' });
    expect(sent().init.keepalive).toBe(true);
  });

  it('tags each recommended movie with the impression it was shown in', async () => {
    fetchMock.mockResolvedValueOnce(
      answer({ model_version: '3', fallback: false, impression_id: 'imp1', movies: [{ movie_id: 1 }, { movie_id: 2 }] }),
    );
    const result = await api.recommend(7, { k: 2 });
    expect(result.movies).toEqual([
      { movie_id: 1, impression_id: 'imp1' },
      { movie_id: 2, impression_id: 'imp1' },
    ]);
  });

  it('returns the parsed response', async () => {
    const page = { items: [], total: 0, page: 1, page_size: 20 };
    fetchMock.mockResolvedValueOnce(answer(page));
    await expect(api.searchMovies({ query: 'zzz', pageSize: 20 })).resolves.toEqual(page);
  });
});

describe('api errors', () => {
  it("throws an ApiError with the service's message and status", async () => {
    fetchMock.mockResolvedValueOnce(answer({ error: 'unknown movie id(s) 99: use ids from /movies' }, 404));
    const error = await api.similar(99, { k: 8 }).catch((caught) => caught);
    expect(error).toBeInstanceOf(api.ApiError);
    expect(error.status).toBe(404);
    expect(error.message).toBe('unknown movie id(s) 99: use ids from /movies');
  });

  it('names the method and status when the body is not JSON', async () => {
    fetchMock.mockResolvedValueOnce({ ok: false, status: 502, json: async () => JSON.parse('<html>') });
    await expect(api.popular({ k: 1 })).rejects.toThrow('popular answered HTTP 502');
  });
});

describe('served model', () => {
  it('remembers the model of the latest recommendation answer and tells subscribers', async () => {
    const listener = vi.fn();
    const unsubscribe = api.subscribeServedModel(listener);
    fetchMock.mockResolvedValueOnce(
      answer({ model_version: '12', arm: 'challenger', experiment: 'v11-vs-v12', movies: [] }),
    );
    await api.popular({ k: 1 });
    expect(api.getServedModel()).toEqual({ modelVersion: '12', experiment: 'v11-vs-v12', arm: 'challenger' });
    expect(listener).toHaveBeenCalledTimes(1);

    const snapshot = api.getServedModel();
    fetchMock.mockResolvedValueOnce(
      answer({ model_version: '12', arm: 'challenger', experiment: 'v11-vs-v12', movies: [] }),
    );
    await api.similar(1, { k: 1 }); // the same model again: the same snapshot, no news
    expect(api.getServedModel()).toBe(snapshot);
    expect(listener).toHaveBeenCalledTimes(1);

    fetchMock.mockResolvedValueOnce(answer({ items: [], total: 0, page: 1, page_size: 20 }));
    await api.searchMovies({ query: 'x', pageSize: 20 }); // no model: keeps the last one
    fetchMock.mockResolvedValueOnce(answer({ model_version: '11', user_id: 7, contributions: [] }));
    await api.explain(7, 1, { n: 1 }); // not a recommendation: keeps the last one
    expect(api.getServedModel()).toBe(snapshot);
    unsubscribe();
  });

  it.each([
    ['no experiment', { arm: 'champion', experiment: null }],
    ['an older server (no arm, no experiment)', {}],
  ])('names no experiment or arm for %s', async (_, fields) => {
    fetchMock.mockResolvedValueOnce(
      answer({ model_version: '7', arm: 'challenger', experiment: 'v6-vs-v7', movies: [] }),
    );
    await api.recommend(1, { k: 1 });
    fetchMock.mockResolvedValueOnce(answer({ model_version: '6', ...fields, movies: [] }));
    await api.recommendForLiked([1], { k: 1 });
    expect(api.getServedModel()).toEqual({
      modelVersion: '6',
      experiment: null,
      arm: fields.arm ?? null,
    });
  });
});
