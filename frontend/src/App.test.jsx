import { render, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import App from './App.jsx';
import { fakeApi } from './test/fakeApi.js';
import { movie } from './test/movies.js';

const MOVIES = Array.from({ length: 30 }, (_, index) =>
  movie({ movie_id: index + 1, title: index === 0 ? 'Toy Story' : `Film ${index + 1}`, year: 1990 + (index % 20) }),
);
// An answer as an older server gives it (no `arm`, no `experiment`); `served` adds or overrides
// the fields naming the model that chose it.
const ranked = (movies, fallback = false, impressionId = 'imp-0', served = {}) => ({
  model_version: '4',
  ...served,
  fallback,
  impression_id: impressionId,
  movies: movies.map((m) => ({ ...m, score: 1 })),
});

let server;

/** Answer the page from these routes, `overrides` replacing some. */
function serve(overrides = {}) {
  server = fakeApi({
    popular: ({ k }) => ranked(MOVIES.slice(0, k), false, 'imp-popular'),
    recommend: ({ user_id: userId }) => (userId === 1 ? ranked(MOVIES.slice(20, 25)) : ranked(MOVIES.slice(0, 5), true)),
    recommend_for_liked: () => ranked(MOVIES.slice(25, 28), false, 'imp-liked'),
    movies: ({ query }) => {
      const items = MOVIES.filter((m) => m.title.toLowerCase().includes(query.toLowerCase()));
      return { items, total: items.length, page: 1, page_size: 20 };
    },
    similar: () => ranked(MOVIES.slice(10, 12)),
    feedback: (event) => ({ ...event, value: null, timestamp: 1 }),
    ...overrides,
  });
  vi.stubGlobal('fetch', server.fetch);
}

beforeEach(() => {
  window.sessionStorage.clear();
  serve();
});

afterEach(() => vi.unstubAllGlobals());

const section = (name) => screen.findByRole('region', { name });

describe('App', () => {
  it('shows popular movies and the model version', async () => {
    render(<App />);
    const popular = await section('Popular');
    expect(await within(popular).findAllByRole('listitem')).toHaveLength(20);
    expect(screen.getByTestId('model-version')).toHaveTextContent('4');
  });

  it("shows a known user's recommendations, and says when popular movies stand in", async () => {
    const user = userEvent.setup();
    render(<App />);
    await user.type(screen.getByLabelText('User id'), '1{Enter}');
    const forYou = await section('Recommended for you');
    expect(await within(forYou).findByRole('button', { name: 'Film 21 (1990)' })).toBeInTheDocument();
    expect(within(forYou).queryByText(/No history for this user/)).toBeNull();

    await user.clear(screen.getByLabelText('User id'));
    await user.type(screen.getByLabelText('User id'), '999{Enter}');
    expect(await within(forYou).findByText('No history for this user: showing popular movies')).toBeInTheDocument();
    expect(server.callsTo('recommend').map((body) => body.user_id)).toEqual([1, 999]);
  });

  it('recommends from likes and posts every like and click as the session visitor, with its impression', async () => {
    const user = userEvent.setup();
    render(<App />);
    await user.click(await screen.findByRole('button', { name: 'Like: Toy Story' }));
    await user.click(screen.getByRole('button', { name: 'Like: Film 2' }));
    const liked = await section('Because you liked Toy Story and Film 2');
    expect(await within(liked).findAllByRole('listitem')).toHaveLength(3);
    await waitFor(() => expect(server.callsTo('recommend_for_liked').at(-1)).toMatchObject({ liked_movie_ids: [1, 2] }));

    await user.click(screen.getByRole('button', { name: 'Film 3 (1992)' }));
    expect(await screen.findByRole('dialog', { name: 'Film 3' })).toBeInTheDocument();
    await user.click(screen.getByRole('button', { name: 'Close' }));
    await user.click(within(liked).getByRole('button', { name: 'Like: Film 27' }));

    const visitor = Number(window.sessionStorage.getItem('movierec.visitor'));
    expect(visitor).toBeGreaterThan(1_000_000_000);
    expect(server.callsTo('feedback')).toEqual([
      { user_id: visitor, movie_id: 1, event: 'like', impression_id: 'imp-popular' },
      { user_id: visitor, movie_id: 2, event: 'like', impression_id: 'imp-popular' },
      { user_id: visitor, movie_id: 3, event: 'click', impression_id: 'imp-popular' },
      { user_id: visitor, movie_id: 27, event: 'like', impression_id: 'imp-liked' },
    ]);
    expect(server.callsTo('recommend_for_liked').at(-1).session_id).toBe(String(visitor));
  });

  it('searches by title', async () => {
    const user = userEvent.setup();
    render(<App />);
    await user.type(screen.getByRole('searchbox', { name: 'Search movies by title' }), 'toy');
    const results = await section('Titles with “toy”');
    expect(await within(results).findAllByRole('listitem')).toHaveLength(1);
    expect(within(results).getByText('1 movie')).toBeInTheDocument();
    expect(screen.queryByRole('region', { name: 'Popular' })).toBeNull();
  });
});

// The served model lives in the api module, shared by the tests of this file: each test starts
// from the previous one's footer, so these run in an order where a stale arm would show.
describe('the footer names what the visitor is served', () => {
  const CHALLENGER = { model_version: '5', arm: 'challenger', experiment: 'v4-vs-v5' };
  const NO_EXPERIMENT = { model_version: '4', arm: 'champion', experiment: null };
  const footerOnceLoaded = async () => {
    expect(await within(await section('Popular')).findAllByRole('listitem')).toHaveLength(20);
    return screen.getByTestId('served-model');
  };

  it('names the experiment and the arm while the visitor is in one', async () => {
    serve({ popular: ({ k }) => ranked(MOVIES.slice(0, k), false, 'imp-popular', CHALLENGER) });
    render(<App />);
    expect(await footerOnceLoaded()).toHaveTextContent(
      /^Model version 5 · experiment v4-vs-v5 · you are in the challenger arm$/,
    );
    expect(screen.getByTestId('model-version')).toHaveTextContent(/^5$/);
    expect(screen.getByTestId('experiment-arm')).toHaveTextContent('you are in the challenger arm');
  });

  it('names only the model version when no experiment runs', async () => {
    serve({ popular: ({ k }) => ranked(MOVIES.slice(0, k), false, 'imp-popular', NO_EXPERIMENT) });
    render(<App />);
    expect(await footerOnceLoaded()).toHaveTextContent(/^Model version 4$/);
    expect(screen.queryByTestId('experiment-arm')).toBeNull();
  });

  it('follows the latest recommendation answer', async () => {
    serve({
      popular: ({ k }) => ranked(MOVIES.slice(0, k), false, 'imp-popular', NO_EXPERIMENT),
      recommend: () => ranked(MOVIES.slice(20, 25), false, 'imp-user', CHALLENGER),
    });
    const user = userEvent.setup();
    render(<App />);
    expect(await footerOnceLoaded()).toHaveTextContent(/^Model version 4$/);
    await user.type(screen.getByLabelText('User id'), '1{Enter}');
    expect(await screen.findByTestId('experiment-arm')).toHaveTextContent(
      /^· experiment v4-vs-v5 · you are in the challenger arm$/,
    );
    expect(screen.getByTestId('model-version')).toHaveTextContent(/^5$/);
  });

  it('names only the model version when an older server names no arm or experiment', async () => {
    serve({ popular: ({ k }) => ranked(MOVIES.slice(0, k), false, 'imp-popular', CHALLENGER) });
    const { unmount } = render(<App />);
    expect(await footerOnceLoaded()).toHaveTextContent(/challenger arm$/);
    unmount();

    serve(); // answers without `arm` and `experiment`
    render(<App />);
    expect(await footerOnceLoaded()).toHaveTextContent(/^Model version 4$/);
    expect(screen.queryByTestId('experiment-arm')).toBeNull();
  });
});
