// Poster tints, most distinctive genre first: a generated poster takes its label and main hue
// from the first of its genres in this list (MovieLens lists genres alphabetically, which would
// make half the catalog "Action").
const GENRE_HUES = new Map([
  ['Documentary', 95],
  ['Animation', 170],
  ['Film-Noir', 230],
  ['Western', 24],
  ['War', 75],
  ['Musical', 318],
  ['Horror', 352],
  ['Sci-Fi', 190],
  ['Fantasy', 282],
  ['Children', 135],
  ['Mystery', 300],
  ['Crime', 248],
  ['Thriller', 268],
  ['Romance', 335],
  ['Comedy', 40],
  ['Adventure', 28],
  ['Action', 6],
  ['Drama', 214],
  ['IMAX', 200],
]);
const RANK = new Map([...GENRE_HUES.keys()].map((genre, index) => [genre, index]));
const NEUTRAL_HUE = 220;

export const BROWSE_GENRES = [
  'Action', 'Adventure', 'Animation', 'Comedy', 'Crime', 'Documentary', 'Drama',
  'Fantasy', 'Horror', 'Romance', 'Sci-Fi', 'Thriller',
];

/** The genre a generated poster names and its two hues (the second from the next genre). */
export function posterTint(genres) {
  const [first, second] = genres.filter((genre) => RANK.has(genre)).sort((a, b) => RANK.get(a) - RANK.get(b));
  const hue = GENRE_HUES.get(first) ?? NEUTRAL_HUE;
  return { genre: first ?? genres[0] ?? 'Film', hue, accentHue: GENRE_HUES.get(second) ?? (hue + 40) % 360 };
}
