import { render, screen, within } from '@testing-library/react';
import { describe, expect, it, vi } from 'vitest';
import { movie } from '../test/movies.js';
import CardGrid from './CardGrid.jsx';

describe('CardGrid', () => {
  it('renders one card per movie, in order', () => {
    const movies = Array.from({ length: 7 }, (_, index) => movie({ movie_id: index + 1, title: `Film ${index + 1}` }));
    render(<CardGrid movies={movies} onOpen={vi.fn()} onOpinion={vi.fn()} />);
    const items = within(screen.getByRole('list')).getAllByRole('listitem');
    expect(items).toHaveLength(7);
    expect(items.map((item) => within(item).getAllByRole('button')[0].getAttribute('aria-label'))).toEqual(
      movies.map((m) => `${m.title} (1995)`),
    );
  });

  it('marks each card with its opinion', () => {
    const movies = [movie({ movie_id: 1, title: 'Liked' }), movie({ movie_id: 2, title: 'Disliked' })];
    const opinions = { 1: 'like', 2: 'dislike' };
    render(<CardGrid movies={movies} opinionOf={(id) => opinions[id]} onOpen={vi.fn()} onOpinion={vi.fn()} />);
    expect(screen.getByRole('button', { name: 'Like: Liked' })).toHaveAttribute('aria-pressed', 'true');
    expect(screen.getByRole('button', { name: 'Not for me: Disliked' })).toHaveAttribute('aria-pressed', 'true');
    expect(screen.getByRole('button', { name: 'Like: Disliked' })).toHaveAttribute('aria-pressed', 'false');
  });

  it('renders an empty list for no movies', () => {
    render(<CardGrid movies={[]} onOpen={vi.fn()} />);
    expect(screen.queryAllByRole('listitem')).toHaveLength(0);
  });
});
