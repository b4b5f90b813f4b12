import { beforeEach, describe, expect, it } from 'vitest';
import { visitorId } from './session.js';

describe('visitorId', () => {
  beforeEach(() => window.sessionStorage.clear());

  it('is a positive integer above every dataset user id, stable for the session', () => {
    const id = visitorId();
    expect(Number.isSafeInteger(id)).toBe(true);
    expect(id).toBeGreaterThan(1_000_000_000);
    expect(visitorId()).toBe(id);
  });

  it('is new for a new session', () => {
    const first = visitorId();
    window.sessionStorage.clear();
    const ids = new Set([first, visitorId(), (window.sessionStorage.clear(), visitorId())]);
    expect(ids.size).toBe(3);
  });
});
