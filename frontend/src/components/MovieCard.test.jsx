import { fireEvent, render, screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import { movie } from '../test/movies.js';
import MovieCard from './MovieCard.jsx';

const POSTER = 'https://image.tmdb.org/t/p/w342/toy.jpg';

function renderCard(props = {}) {
  const handlers = { onOpen: vi.fn(), onOpinion: vi.fn() };
  render(<MovieCard movie={movie()} opinion={null} {...handlers} {...props} />);
  return handlers;
}

describe('MovieCard', () => {
  it('shows the title, year and genres', () => {
    renderCard({ movie: movie({ title: 'Matrix, The', year: 1999, genres: ['Action', 'Sci-Fi'] }) });
    expect(screen.getByRole('button', { name: 'The Matrix (1999)' })).toBeInTheDocument();
    expect(screen.getByText('Action · Sci-Fi')).toBeInTheDocument();
  });

  it('generates a poster when the movie has no poster_url', () => {
    renderCard();
    const poster = screen.getByRole('img', { name: 'Poster of Toy Story' });
    expect(poster).toHaveAttribute('data-testid', 'generated-poster');
    expect(poster).toHaveTextContent('Toy Story');
    expect(poster).toHaveTextContent('1995');
    expect(poster).toHaveTextContent('Animation'); // the most distinctive genre tints it
    expect(poster.style.getPropertyValue('--hue')).toBe('170');
    expect(document.querySelector('img')).toBeNull();
  });

  it('shows the TMDB poster when there is one', () => {
    renderCard({ movie: movie({ poster_url: POSTER }) });
    const image = screen.getByRole('img', { name: 'Poster of Toy Story' });
    expect(image.tagName).toBe('IMG');
    expect(image).toHaveAttribute('src', POSTER);
  });

  it('falls back to a generated poster when the image fails to load', () => {
    renderCard({ movie: movie({ poster_url: POSTER }) });
    fireEvent.error(screen.getByRole('img', { name: 'Poster of Toy Story' }));
    expect(document.querySelector('img')).toBeNull();
    expect(screen.getByTestId('generated-poster')).toHaveAccessibleName('Poster of Toy Story');
  });

  it('shows the rating when the movie has one', () => {
    renderCard({ movie: movie({ rating: 3.92 }) });
    expect(screen.getByLabelText('rated 3.9 of 5')).toHaveTextContent('★ 3.9');
  });

  it('opens by click and by keyboard', async () => {
    const user = userEvent.setup();
    const { onOpen } = renderCard();
    await user.click(screen.getByRole('button', { name: 'Toy Story (1995)' }));
    screen.getByRole('button', { name: 'Toy Story (1995)' }).focus();
    await user.keyboard('{Enter}');
    expect(onOpen).toHaveBeenCalledTimes(2);
    expect(onOpen).toHaveBeenCalledWith(movie());
  });

  it('likes, dislikes and takes an opinion back', async () => {
    const user = userEvent.setup();
    const { onOpinion } = renderCard({ opinion: 'like' });
    const like = screen.getByRole('button', { name: 'Like: Toy Story' });
    expect(like).toHaveAttribute('aria-pressed', 'true');
    await user.click(like);
    await user.click(screen.getByRole('button', { name: 'Not for me: Toy Story' }));
    expect(onOpinion.mock.calls).toEqual([
      [movie(), null],
      [movie(), 'dislike'],
    ]);
  });
});
