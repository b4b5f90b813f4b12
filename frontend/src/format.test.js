import { describe, expect, it } from 'vitest';
import { displayTitle, listNames } from './format.js';

describe('displayTitle', () => {
  it.each([
    ['Matrix, The', 'The Matrix'],
    ['Usual Suspects, The', 'The Usual Suspects'],
    ['Beautiful Mind, A', 'A Beautiful Mind'],
    ["Auberge espagnole, L'", "L'Auberge espagnole"],
    ['Toy Story', 'Toy Story'],
    ['Good, the Bad and the Ugly, The', 'The Good, the Bad and the Ugly'],
    ['Amelie (Fabuleux destin d\'Amélie Poulain, Le)', 'Amelie (Fabuleux destin d\'Amélie Poulain, Le)'],
  ])('%s -> %s', (title, shown) => {
    expect(displayTitle(title)).toBe(shown);
  });
});

describe('listNames', () => {
  it.each([
    [[], ''],
    [['A'], 'A'],
    [['A', 'B'], 'A and B'],
    [['A', 'B', 'C'], 'A, B and C'],
    [['A', 'B', 'C', 'D'], 'A, B and 2 more'],
  ])('%j -> %s', (names, text) => {
    expect(listNames(names)).toBe(text);
  });
});
