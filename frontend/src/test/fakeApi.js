import { vi } from 'vitest';

/**
 * A stand-in for `fetch` that answers each API method from `routes` (method name -> function
 * of the request body returning `[status, body]` or a body); it records the calls.
 */
export function fakeApi(routes) {
  const calls = [];
  const fetch = vi.fn(async (url, init) => {
    const body = JSON.parse(init.body);
    calls.push({ method: url, body });
    const route = routes[url];
    if (!route) return { ok: false, status: 404, json: async () => ({ error: `no route ${url}` }) };
    const result = route(body);
    const [status, payload] = Array.isArray(result) ? result : [200, result];
    return { ok: status < 400, status, json: async () => payload };
  });
  return { fetch, calls, callsTo: (method) => calls.filter((call) => call.method === method).map((call) => call.body) };
}
