import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { URLSearchParams } from 'node:url';
import { createRouter, normalizeHost } from '../dist/routing/index.js';

/** A RouteConfig as normalize.ts would produce it; only `match` matters to the router. */
function route(match, name = 'r') {
  return { name, index: 0, match, action: { type: 'upstream', upstream: 'app' }, features: {} };
}

/** Builds a router whose values are the route positions, from a list of match objects. */
function routerOf(matches) {
  return createRouter(
    matches.map((match, i) => ({ config: route(match, `routes[${i}]`), value: i })),
  );
}

function request(overrides = {}) {
  return {
    method: 'GET',
    host: 'example.com',
    path: '/',
    query: '',
    headers: {},
    listener: 'web',
    ...overrides,
  };
}

describe('normalizeHost', () => {
  const cases = [
    ['example.com', 'example.com'],
    ['Example.COM', 'example.com'],
    ['example.com:8080', 'example.com'],
    ['EXAMPLE.com.:443', 'example.com'],
    ['example.com.', 'example.com'],
    ['[::1]:8080', '::1'],
    ['[::1]', '::1'],
    ['[2001:DB8::1]:443', '2001:db8::1'],
    ['::1', '::1'],
    ['127.0.0.1:80', '127.0.0.1'],
    ['', ''],
    [':8080', ''],
  ];
  for (const [input, expected] of cases) {
    test(`${JSON.stringify(input)} -> ${JSON.stringify(expected)}`, () => {
      assert.equal(normalizeHost(input), expected);
    });
  }
});

describe('createRouter conditions', () => {
  test('a route with no conditions matches everything', () => {
    const router = routerOf([{}]);
    assert.equal(router.match(request()), 0);
    assert.equal(router.match(request({ host: '', method: 'PATCH', path: '/x' })), 0);
    assert.equal(router.size, 1);
  });

  test('an empty route list matches nothing', () => {
    const router = routerOf([]);
    assert.equal(router.match(request()), undefined);
    assert.equal(router.size, 0);
  });

  test('host: exact names, case-insensitive, port and trailing dot ignored', () => {
    const router = routerOf([{ host: ['api.example.com', 'Other.Example.com'] }]);
    assert.equal(router.match(request({ host: 'api.example.com' })), 0);
    assert.equal(router.match(request({ host: 'API.Example.Com:8443' })), 0);
    assert.equal(router.match(request({ host: 'api.example.com.' })), 0);
    assert.equal(router.match(request({ host: 'other.example.com' })), 0);
    assert.equal(router.match(request({ host: 'example.com' })), undefined);
    assert.equal(router.match(request({ host: 'x.api.example.com' })), undefined);
    assert.equal(router.match(request({ host: '' })), undefined);
  });

  test('host: wildcards match any depth of subdomain but not the apex', () => {
    const router = routerOf([{ host: ['*.example.org'] }]);
    assert.equal(router.match(request({ host: 'a.example.org' })), 0);
    assert.equal(router.match(request({ host: 'a.b.c.example.org:80' })), 0);
    assert.equal(router.match(request({ host: 'A.EXAMPLE.ORG' })), 0);
    assert.equal(router.match(request({ host: 'example.org' })), undefined);
    assert.equal(router.match(request({ host: '.example.org' })), undefined);
    assert.equal(router.match(request({ host: 'badexample.org' })), undefined);
    assert.equal(router.match(request({ host: 'example.org.evil.com' })), undefined);
    assert.equal(router.match(request({ host: '' })), undefined);
  });

  test('host: apex and wildcard together', () => {
    const router = routerOf([{ host: ['example.org', '*.example.org'] }, {}]);
    assert.equal(router.match(request({ host: 'example.org' })), 0);
    assert.equal(router.match(request({ host: 'www.example.org' })), 0);
    assert.equal(router.match(request({ host: 'example.net' })), 1);
  });

  test('host: nested wildcards keep route order', () => {
    const router = routerOf([
      { host: ['*.org'], path: '/broad' },
      { host: ['*.b.example.org'] },
      { host: ['*.example.org'] },
      { host: ['*.org'] },
    ]);
    assert.equal(router.match(request({ host: 'a.b.example.org', path: '/broad' })), 0);
    assert.equal(router.match(request({ host: 'a.b.example.org' })), 1);
    assert.equal(router.match(request({ host: 'b.example.org' })), 2);
    assert.equal(router.match(request({ host: 'x.org' })), 3);
    assert.equal(router.match(request({ host: 'org' })), undefined);
  });

  test('host: an exact name also sees the wildcard routes that cover it, in order', () => {
    const router = routerOf([
      { host: ['*.example.org'], path: '/wild' },
      { host: ['api.example.org'], path: '/exact' },
      { host: ['*.example.org'] },
      { host: ['api.example.org'] },
    ]);
    assert.equal(router.match(request({ host: 'api.example.org', path: '/wild' })), 0);
    assert.equal(router.match(request({ host: 'api.example.org', path: '/exact' })), 1);
    assert.equal(router.match(request({ host: 'api.example.org', path: '/other' })), 2);
    assert.equal(router.match(request({ host: 'www.example.org', path: '/exact' })), 2);
  });

  test('host: IPv6 literals, with and without brackets in the config', () => {
    const router = routerOf([{ host: ['[::1]'] }, { host: ['2001:db8::1'] }]);
    assert.equal(router.match(request({ host: '[::1]:8080' })), 0);
    assert.equal(router.match(request({ host: '[::1]' })), 0);
    assert.equal(router.match(request({ host: '[2001:DB8::1]:443' })), 1);
    assert.equal(router.match(request({ host: '[::2]:8080' })), undefined);
  });

  test('host: an invalid pattern is rejected with the route name', () => {
    assert.throws(() => routerOf([{ host: ['a.*.com'] }]), /routes\[0\]: invalid host pattern/);
    assert.throws(() => routerOf([{ host: ['*'] }]), /invalid host pattern "\*"/);
  });

  test('path: exact, on the path as received', () => {
    const router = routerOf([{ path: '/ping' }, { path: '/a%20b' }]);
    assert.equal(router.match(request({ path: '/ping' })), 0);
    assert.equal(router.match(request({ path: '/ping/' })), undefined);
    assert.equal(router.match(request({ path: '/Ping' })), undefined);
    assert.equal(router.match(request({ path: '/a%20b' })), 1);
    assert.equal(router.match(request({ path: '/a b' })), undefined);
  });

  test('pathPrefix: a plain string prefix; /api/ does not match /api', () => {
    const router = routerOf([{ pathPrefix: '/api/' }, { pathPrefix: '/api' }]);
    assert.equal(router.match(request({ path: '/api/users' })), 0);
    assert.equal(router.match(request({ path: '/api/' })), 0);
    assert.equal(router.match(request({ path: '/api' })), 1);
    assert.equal(router.match(request({ path: '/apiary' })), 1);
    assert.equal(router.match(request({ path: '/other' })), undefined);
  });

  test('pathRegex: a JavaScript RegExp tested against the path', () => {
    const router = routerOf([{ pathRegex: '^/u/[0-9]+$' }, { pathRegex: '\\.css$' }]);
    assert.equal(router.match(request({ path: '/u/42' })), 0);
    assert.equal(router.match(request({ path: '/u/42' })), 0, 'stateless across calls');
    assert.equal(router.match(request({ path: '/u/x' })), undefined);
    assert.equal(router.match(request({ path: '/static/site.css' })), 1);
  });

  test('pathRegex: an invalid expression is rejected with the route name', () => {
    assert.throws(() => routerOf([{ pathRegex: '([' }]), /routes\[0\]: invalid pathRegex/);
  });

  test('path conditions combine', () => {
    const router = routerOf([{ pathPrefix: '/u/', pathRegex: '[0-9]$', path: '/u/7' }]);
    assert.equal(router.match(request({ path: '/u/7' })), 0);
    assert.equal(router.match(request({ path: '/u/8' })), undefined);
  });

  test('methods: listed methods only', () => {
    const router = routerOf([{ methods: ['POST', 'PUT'] }]);
    assert.equal(router.match(request({ method: 'POST' })), 0);
    assert.equal(router.match(request({ method: 'PUT' })), 0);
    assert.equal(router.match(request({ method: 'GET' })), undefined);
    assert.equal(router.match(request({ method: 'HEAD' })), undefined);
  });

  test('methods: HEAD is allowed when GET is listed, but not the reverse', () => {
    const router = routerOf([{ methods: ['GET'] }, { methods: ['HEAD'], path: '/h' }]);
    assert.equal(router.match(request({ method: 'GET' })), 0);
    assert.equal(router.match(request({ method: 'HEAD' })), 0);
    assert.equal(router.match(request({ method: 'POST' })), undefined);
    assert.equal(router.match(request({ method: 'HEAD', path: '/h' })), 0);
    const headOnly = routerOf([{ methods: ['HEAD'] }]);
    assert.equal(headOnly.match(request({ method: 'HEAD' })), 0);
    assert.equal(headOnly.match(request({ method: 'GET' })), undefined);
  });

  test('headers: exact values; any value of a multi-valued header', () => {
    const router = routerOf([{ headers: { 'x-canary': '1', 'x-env': 'prod' } }]);
    assert.equal(router.match(request({ headers: { 'x-canary': '1', 'x-env': 'prod' } })), 0);
    assert.equal(router.match(request({ headers: { 'x-canary': '1' } })), undefined);
    assert.equal(
      router.match(request({ headers: { 'x-canary': '1 ', 'x-env': 'prod' } })),
      undefined,
    );
    assert.equal(
      router.match(request({ headers: { 'x-canary': '1', 'x-env': 'Prod' } })),
      undefined,
    );
    assert.equal(
      router.match(request({ headers: { 'x-canary': ['0', '1'], 'x-env': 'prod' } })),
      0,
    );
    assert.equal(
      router.match(request({ headers: { 'x-canary': ['0', '2'], 'x-env': 'prod' } })),
      undefined,
    );
    assert.equal(
      router.match(request({ headers: { 'x-canary': '0, 1', 'x-env': 'prod' } })),
      undefined,
    );
  });

  test('headers: an empty expected value requires the header to be present', () => {
    const router = routerOf([{ headers: { 'x-empty': '' } }]);
    assert.equal(router.match(request({ headers: { 'x-empty': '' } })), 0);
    assert.equal(router.match(request({ headers: {} })), undefined);
  });

  test('query: each key present with that value, after percent-decoding', () => {
    const router = routerOf([{ query: { debug: '1', q: 'a b' } }, { query: { name: 'é' } }]);
    assert.equal(router.match(request({ query: 'debug=1&q=a%20b' })), 0);
    assert.equal(router.match(request({ query: 'q=a+b&debug=%31' })), 0);
    assert.equal(router.match(request({ query: 'x=2&%64ebug=1&q=a+b' })), 0);
    assert.equal(router.match(request({ query: 'debug=1' })), undefined);
    assert.equal(router.match(request({ query: 'debug=2&q=a+b' })), undefined);
    assert.equal(router.match(request({ query: 'debug=0&debug=1&q=a b' })), 0);
    assert.equal(router.match(request({ query: 'name=%C3%A9' })), 1);
    assert.equal(router.match(request({ query: 'name=%c3%a9' })), 1);
    assert.equal(router.match(request({ query: '' })), undefined);
  });

  test('query: a key without a value, and malformed escapes, do not throw', () => {
    const router = routerOf([{ query: { flag: '' } }, { query: { v: '%zz' } }]);
    assert.equal(router.match(request({ query: 'flag' })), 0);
    assert.equal(router.match(request({ query: 'a=1&flag=&b' })), 0);
    assert.equal(router.match(request({ query: '&&flag&&' })), 0);
    assert.equal(router.match(request({ query: 'v=%zz' })), 1);
    assert.equal(router.match(request({ query: 'v=%E2%82' })), undefined);
  });

  test('listener: exact name', () => {
    const router = routerOf([{ listener: 'websecure' }, { listener: 'web' }]);
    assert.equal(router.match(request({ listener: 'websecure' })), 0);
    assert.equal(router.match(request({ listener: 'web' })), 1);
    assert.equal(router.match(request({ listener: 'admin' })), undefined);
  });

  test('empty lists and maps count as no condition', () => {
    const router = routerOf([{ host: [], methods: [], headers: {}, query: {} }]);
    assert.equal(router.match(request({ method: 'DELETE', host: 'x.y' })), 0);
  });

  test('every given condition must hold', () => {
    const router = routerOf([
      {
        host: ['api.example.com', '*.example.org'],
        pathPrefix: '/api/',
        methods: ['GET', 'POST'],
        headers: { 'x-canary': '1' },
        query: { debug: '1' },
        listener: 'websecure',
      },
    ]);
    const ok = request({
      host: 'x.example.org',
      path: '/api/v1',
      method: 'POST',
      headers: { 'x-canary': '1' },
      query: 'debug=1',
      listener: 'websecure',
    });
    assert.equal(router.match(ok), 0);
    for (const broken of [
      { host: 'example.org' },
      { path: '/api' },
      { method: 'DELETE' },
      { headers: {} },
      { query: 'debug=0' },
      { listener: 'web' },
    ]) {
      assert.equal(router.match({ ...ok, ...broken }), undefined, JSON.stringify(broken));
    }
  });

  test('the first matching route wins, whatever kind of condition it has', () => {
    const router = routerOf([
      { path: '/ping' },
      { host: ['example.com'] },
      { host: ['*.com'] },
      {},
      { host: ['example.com'], path: '/never' },
    ]);
    assert.equal(router.match(request({ path: '/ping' })), 0);
    assert.equal(router.match(request({ host: 'example.com', path: '/never' })), 1);
    assert.equal(router.match(request({ host: 'www.example.com' })), 2);
    assert.equal(router.match(request({ host: 'example.net' })), 3);
  });

  test('values are returned as given', () => {
    const handler = { name: 'h' };
    const router = createRouter([{ config: route({}), value: handler }]);
    assert.equal(router.match(request()), handler);
  });
});

describe('query parsing cost', () => {
  /** A request whose `query` getter counts reads: the router reads it once per parse. */
  function countingRequest(query, overrides) {
    let reads = 0;
    const input = request(overrides);
    Object.defineProperty(input, 'query', {
      get() {
        reads++;
        return query;
      },
    });
    return { input, reads: () => reads };
  }

  test('the query is parsed at most once per request', () => {
    const router = routerOf([
      { query: { a: '1' } },
      { query: { b: '1' } },
      { query: { a: '2', b: '2' } },
      { query: { c: '3' } },
    ]);
    const probe = countingRequest('a=0&b=0&c=0');
    assert.equal(router.match(probe.input), undefined);
    assert.equal(probe.reads(), 1);
  });

  test('the query is not parsed when no candidate route needs it', () => {
    const router = routerOf([{ host: ['q.example.com'], query: { a: '1' } }, { path: '/x' }, {}]);
    const probe = countingRequest('a=1', { host: 'example.com' });
    assert.equal(router.match(probe.input), 2);
    assert.equal(probe.reads(), 0);
    const noQueryRoutes = routerOf([{ path: '/x' }]);
    const other = countingRequest('a=1');
    assert.equal(noQueryRoutes.match(other.input), undefined);
    assert.equal(other.reads(), 0);
  });
});

describe('scale', () => {
  /**
   * Each route carries a header condition on `x-probe`, and the request's header map counts
   * reads of it: the count is the number of routes the router evaluated for that request.
   */
  function probedRequest(host) {
    let evaluated = 0;
    const headers = new Proxy(
      {},
      {
        get(_target, name) {
          if (name === 'x-probe') evaluated++;
          return undefined;
        },
      },
    );
    return { input: request({ host, headers }), evaluated: () => evaluated };
  }

  function buildTable(count) {
    const matches = [];
    // A few host-less routes at the front and back, as a real config's catch-alls would be.
    matches.push({ headers: { 'x-probe': 'front' } });
    for (let i = 0; i < count; i++) {
      const host = i % 2 === 0 ? `h${i}.example.com` : `*.w${i}.example.net`;
      matches.push({ host: [host], headers: { 'x-probe': String(i) } });
    }
    matches.push({ headers: { 'x-probe': 'back' } });
    return matches;
  }

  test('10,000 host routes compile in under 2 s and match by index', () => {
    const matches = buildTable(10_000);
    const started = performance.now();
    const router = routerOf(matches);
    const elapsed = performance.now() - started;
    assert.ok(elapsed < 2000, `compile took ${elapsed.toFixed(0)} ms`);
    assert.equal(router.size, 10_002);

    for (const host of ['h5000.example.com', 'a.b.w5001.example.net:80', 'unknown.example.org']) {
      const probe = probedRequest(host);
      assert.equal(router.match(probe.input), undefined);
      // The two host-less routes, plus at most the one route for that host.
      assert.ok(probe.evaluated() <= 3, `${host}: evaluated ${probe.evaluated()} routes`);
    }
  });

  test('the number of routes evaluated does not grow with the table', () => {
    const small = routerOf(buildTable(10));
    const large = routerOf(buildTable(10_000));
    for (const host of ['h4.example.com', 'x.w5.example.net', 'nowhere.test', '']) {
      const a = probedRequest(host);
      const b = probedRequest(host);
      small.match(a.input);
      large.match(b.input);
      assert.equal(b.evaluated(), a.evaluated(), host);
    }
  });
});

describe('equivalence with a linear first-match scan', () => {
  /** Deterministic PRNG (mulberry32) so a failure can be replayed from its seed. */
  function prng(seed) {
    let a = seed >>> 0;
    return () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  const HOST_PATTERNS = [
    'a.com',
    'b.com',
    'x.a.com',
    'y.x.a.com',
    'A.COM',
    'a.org',
    'sub.a.org',
    '[::1]',
    '127.0.0.1',
    '*.a.com',
    '*.x.a.com',
    '*.com',
    '*.a.org',
    '*.org',
  ];
  const REQUEST_HOSTS = [
    'a.com',
    'A.com:8080',
    'a.com.',
    'b.com',
    'x.a.com',
    'y.x.a.com',
    'z.y.x.a.com',
    'q.a.com',
    'a.org',
    'sub.a.org:443',
    'deep.sub.a.org',
    'org',
    '[::1]:8080',
    '127.0.0.1:80',
    'unknown.net',
    '.a.com',
    'a..x.a.com',
    '',
  ];
  const PATHS = ['/', '/api', '/api/', '/api/v1', '/u/12', '/u/x', '/static/a.css', '/ping'];
  const PREFIXES = ['/', '/api', '/api/', '/u/', '/static/'];
  const REGEXES = ['^/u/[0-9]+$', 'css$', '^/api', '^/$'];
  const METHOD_SETS = [['GET'], ['POST'], ['GET', 'POST'], ['HEAD'], ['DELETE', 'PUT']];
  const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE'];
  const HEADER_CONDITIONS = [
    { 'x-canary': '1' },
    { 'x-env': 'prod' },
    { 'x-canary': '1', 'x-env': 'prod' },
  ];
  const REQUEST_HEADERS = [
    {},
    { 'x-canary': '1' },
    { 'x-canary': ['0', '1'] },
    { 'x-env': 'prod' },
    { 'x-canary': '1', 'x-env': 'prod' },
    { 'x-canary': '0', 'x-env': ['dev', 'prod'] },
  ];
  const QUERY_CONDITIONS = [
    { debug: '1' },
    { q: 'a b' },
    { q: 'é' },
    { debug: '1', q: 'a b' },
    { flag: '' },
  ];
  const QUERIES = [
    '',
    'debug=1',
    'debug=%31',
    'q=a+b',
    'q=a%20b&debug=1',
    'q=%C3%A9',
    'debug=0&debug=1',
    'x=1',
    'flag',
    'flag=&q=a+b',
  ];
  const LISTENERS = ['web', 'websecure'];

  function randomMatch(random) {
    const pick = (list) => list[Math.floor(random() * list.length)];
    const maybe = (p) => random() < p;
    const match = {};
    if (maybe(0.5)) {
      const count = 1 + Math.floor(random() * 3);
      match.host = Array.from({ length: count }, () => pick(HOST_PATTERNS));
    }
    if (maybe(0.15)) match.path = pick(PATHS);
    if (maybe(0.25)) match.pathPrefix = pick(PREFIXES);
    if (maybe(0.15)) match.pathRegex = pick(REGEXES);
    if (maybe(0.25)) match.methods = pick(METHOD_SETS);
    if (maybe(0.15)) match.headers = pick(HEADER_CONDITIONS);
    if (maybe(0.15)) match.query = pick(QUERY_CONDITIONS);
    if (maybe(0.15)) match.listener = pick(LISTENERS);
    return match;
  }

  function randomRequest(random) {
    const pick = (list) => list[Math.floor(random() * list.length)];
    return request({
      method: pick(METHODS),
      host: pick(REQUEST_HOSTS),
      path: pick(PATHS),
      query: pick(QUERIES),
      headers: pick(REQUEST_HEADERS),
      listener: pick(LISTENERS),
    });
  }

  /** The specification, written as plainly as possible. */
  function linearMatch(matches, input) {
    const host = normalizeHost(input.host);
    const params = new URLSearchParams(input.query);
    const hostMatches = (pattern) => {
      const p = normalizeHost(pattern);
      if (!p.startsWith('*.')) return p === host;
      const suffix = p.slice(1);
      return host.endsWith(suffix) && host.length > suffix.length;
    };
    for (let i = 0; i < matches.length; i++) {
      const m = matches[i];
      if (m.host && !m.host.some(hostMatches)) continue;
      if (m.path !== undefined && input.path !== m.path) continue;
      if (m.pathPrefix !== undefined && !input.path.startsWith(m.pathPrefix)) continue;
      if (m.pathRegex !== undefined && !new RegExp(m.pathRegex).test(input.path)) continue;
      if (m.methods) {
        const allowed =
          m.methods.includes(input.method) ||
          (input.method === 'HEAD' && m.methods.includes('GET'));
        if (!allowed) continue;
      }
      if (m.headers) {
        const ok = Object.entries(m.headers).every(([name, value]) => {
          const actual = input.headers[name];
          return Array.isArray(actual) ? actual.includes(value) : actual === value;
        });
        if (!ok) continue;
      }
      if (m.query) {
        const ok = Object.entries(m.query).every(([key, value]) =>
          params.getAll(key).includes(value),
        );
        if (!ok) continue;
      }
      if (m.listener !== undefined && m.listener !== input.listener) continue;
      return i;
    }
    return undefined;
  }

  test('random route sets and requests agree with the linear scan', () => {
    let compared = 0;
    let matched = 0;
    for (let seed = 1; seed <= 400; seed++) {
      const random = prng(seed);
      const count = 1 + Math.floor(random() * 40);
      const matches = Array.from({ length: count }, () => randomMatch(random));
      const router = routerOf(matches);
      for (let r = 0; r < 60; r++) {
        const input = randomRequest(random);
        const expected = linearMatch(matches, input);
        assert.equal(
          router.match(input),
          expected,
          `seed ${seed}, request ${r}: ${JSON.stringify(input)}\nroutes ${JSON.stringify(matches)}`,
        );
        compared++;
        if (expected !== undefined) matched++;
      }
    }
    // Guard against a generator so strict that everything is a miss (or so loose that nothing is).
    assert.ok(
      matched > compared * 0.2 && matched < compared * 0.95,
      `${matched}/${compared} matched`,
    );
  });
});
