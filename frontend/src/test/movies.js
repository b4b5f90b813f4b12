// Movies shaped like the API's responses (recommender/serving.py Movie).
export function movie(overrides = {}) {
  return {
    movie_id: 1,
    title: 'Toy Story',
    year: 1995,
    genres: ['Adventure', 'Animation', 'Children'],
    poster_url: null,
    overview: null,
    ...overrides,
  };
}
