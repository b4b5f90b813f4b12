// How movies read on the page.

// MovieLens files titles as "Matrix, The": show them the way posters do.
const TRAILING_ARTICLE = /^(.*), (The|A|An|Les|La|Le|L'|Il|Das|Der|Die|El)$/;

export function displayTitle(title) {
  const match = TRAILING_ARTICLE.exec(title);
  if (!match) return title;
  const [, rest, article] = match;
  return article.endsWith("'") ? `${article}${rest}` : `${article} ${rest}`;
}

export function yearLabel(movie) {
  return movie.year ?? 'Year unknown';
}

/** "A", "A and B", "A, B and C", "A, B and 2 more". */
export function listNames(names, shown = 3) {
  if (names.length <= 1) return names.join('');
  if (names.length > shown) return `${names.slice(0, shown - 1).join(', ')} and ${names.length - shown + 1} more`;
  return `${names.slice(0, -1).join(', ')} and ${names.at(-1)}`;
}
