import { render, screen, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { fakeApi } from '../test/fakeApi.js';
import { movie } from '../test/movies.js';
import MovieDetail from './MovieDetail.jsx';

const ALIEN = movie({ movie_id: 1200, title: 'Aliens', year: 1986, genres: ['Action', 'Horror'] });
const SIMILAR = [movie({ movie_id: 1214, title: 'Alien', year: 1979 }), movie({ movie_id: 1240, title: 'Terminator, The', year: 1984 })];

function renderDetail({ routes, userId = null, knownUser = false } = {}) {
  const server = fakeApi({
    similar: () => ({ model_version: '3', fallback: false, movies: SIMILAR }),
    explain: () => ({
      model_version: '3',
      user_id: 1,
      movie: ALIEN,
      score: 0.8,
      contributions: [
        { ...SIMILAR[0], score: 0.04, share: 0.05 },
        { ...SIMILAR[1], score: 0.02, share: 0.025 },
        { ...movie({ movie_id: 5, title: 'Negative' }), score: -0.01, share: -0.01 },
      ],
    }),
    ...routes,
  });
  vi.stubGlobal('fetch', server.fetch);
  const props = {
    movie: ALIEN,
    userId,
    knownUser,
    grid: { opinionOf: () => null, onOpen: vi.fn(), onOpinion: vi.fn() },
    onClose: vi.fn(),
  };
  render(<MovieDetail {...props} />);
  return { server, props };
}

afterEach(() => vi.unstubAllGlobals());

describe('MovieDetail', () => {
  it('is a labelled modal dialog with the movie and its similar movies', async () => {
    const { server } = renderDetail();
    const dialog = screen.getByRole('dialog', { name: 'Aliens' });
    expect(dialog).toHaveAttribute('aria-modal', 'true');
    expect(dialog).toHaveFocus();
    const similar = await screen.findByRole('region', { name: 'Similar movies' });
    expect(within(similar).getAllByRole('listitem')).toHaveLength(2);
    expect(within(similar).getByRole('button', { name: 'The Terminator (1984)' })).toBeInTheDocument();
    expect(server.callsTo('similar')).toMatchObject([{ movie_id: 1200, k: 8 }]);
    expect(server.callsTo('explain')).toEqual([]);
    expect(screen.getByText(/Enter a user id at the top/)).toBeInTheDocument();
  });

  it('does not ask to explain for a user the model has no history of', async () => {
    const { server } = renderDetail({ userId: 999, knownUser: false });
    expect(screen.getByText('User 999 has no history in the model, so there is nothing to explain.')).toBeInTheDocument();
    await screen.findByRole('region', { name: 'Similar movies' });
    expect(server.callsTo('explain')).toEqual([]);
  });

  it("explains the selected user's score with the positive contributions", async () => {
    const { server } = renderDetail({ userId: 1, knownUser: true });
    expect(await screen.findByRole('heading', { name: 'Why user 1 may like it' })).toBeInTheDocument();
    expect(screen.getByText('They watched Alien')).toBeInTheDocument();
    expect(screen.getByText('They watched The Terminator')).toBeInTheDocument();
    expect(screen.queryByText('They watched Negative')).toBeNull();
    expect(screen.getByText('5.0%')).toBeInTheDocument();
    expect(server.callsTo('explain')).toEqual([{ user_id: 1, movie_id: 1200, n: 5 }]);
  });

  it('says so when the model knows nothing similar', async () => {
    renderDetail({ routes: { similar: () => [404, { error: 'movie id(s) 1200 have no ratings' }] } });
    expect(await screen.findByText(/Nobody has rated this one yet/)).toBeInTheDocument();
  });

  it('closes on Escape and with the close button', async () => {
    const user = userEvent.setup();
    const { props } = renderDetail();
    await user.keyboard('{Escape}');
    await user.click(screen.getByRole('button', { name: 'Close' }));
    expect(props.onClose).toHaveBeenCalledTimes(2);
  });
});
