// RFC 9111 edges found by running the public HTTP cache conformance suite (cache-tests.fyi)
// against the cache: each test here pins one behaviour that suite checks, with our own origin.
import { test, after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { startOrigin, startProxy, request } from './helpers.mjs';

const cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** path -> (req, res, n) with n the 1-based count of requests for that path. */
const behaviours = new Map();
const counts = new Map();
const seen = new Map();
let origin;
let plain;
let withTtl;

before(async () => {
  origin = await startOrigin((req, res) => {
    const path = req.url.split('?')[0];
    const n = (counts.get(path) ?? 0) + 1;
    counts.set(path, n);
    (seen.get(path) ?? seen.set(path, []).get(path)).push(req.headers);
    const handler = behaviours.get(path);
    if (handler === undefined) {
      res.writeHead(404);
      res.end('no behaviour');
      return;
    }
    handler(req, res, n);
  });
  cleanups.push(origin.close);
  plain = await proxyWith('true');
  withTtl = await proxyWith('{ ttl: 1m }');
});

async function proxyWith(routeCache) {
  const p = await startProxy(`
listeners: [{ address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes:
  - upstream: app
    cache: ${routeCache}
`);
  cleanups.push(p.close);
  return p;
}

const count = (path) => counts.get(path) ?? 0;
const get = (p, path, headers = {}) => request(`${p.url}${path}`, { headers });

/** An origin answer with a body naming the request count, so reuse is visible. */
function respond(status, headers) {
  return (req, res, n) => {
    res.writeHead(status, headers);
    res.end(`${req.url} #${n}`);
  };
}

/** Two requests; resolves to the number of them the origin saw. */
async function twice(p, path, handler) {
  behaviours.set(path, handler);
  await get(p, path);
  await get(p, path);
  return count(path);
}

describe('freshness without explicit lifetime', () => {
  test('without a route ttl, a response with no freshness and no Last-Modified is not reused', async () => {
    assert.equal(await twice(plain, '/none', respond(200, {})), 2);
  });

  test('a route ttl gives such a response freshness, as configured', async () => {
    assert.equal(await twice(withTtl, '/none-ttl', respond(200, {})), 1);
  });

  test('Last-Modified still gives heuristic freshness without a ttl', async () => {
    const lastModified = new Date(Date.now() - 86400_000).toUTCString();
    const seenByOrigin = await twice(
      plain,
      '/heuristic',
      respond(200, { 'last-modified': lastModified }),
    );
    assert.equal(seenByOrigin, 1);
  });
});

describe('Cache-Control parsing', () => {
  test('directive names are case-insensitive: No-StOrE is never stored', async () => {
    const res = await twice(
      plain,
      '/no-store-case',
      respond(200, { 'cache-control': 'No-StOrE, max-age=3600' }),
    );
    assert.equal(res, 2);
    const again = await get(plain, '/no-store-case');
    assert.match(again.headers['cache-status'], /fwd=miss$/);
  });
});

describe('Expires parsing (RFC 9110 HTTP-date)', () => {
  const future = new Date(Date.now() + 30 * 86400_000);
  const imf = future.toUTCString(); // "Thu, 18 Aug 2050 02:01:18 GMT"
  const [dayName, day, month, year, time] = imf.replace(',', '').split(' ');
  const invalid = {
    'a UTC zone': imf.replace('GMT', 'UTC'),
    'a missing comma': imf.replace(',', ''),
    'doubled spaces': `${dayName}, ${day}  ${month}  ${year} ${time} GMT`,
    'dashes in the date': `${dayName}, ${day}-${month}-${year} ${time} GMT`,
    'a one-digit hour': `${dayName}, ${day} ${month} ${year} ${Number(time.slice(0, 2)) % 10}${time.slice(2)} GMT`,
    'a two-digit year': `${dayName}, ${day} ${month} ${year.slice(2)} ${time} GMT`,
  };
  for (const [what, value] of Object.entries(invalid)) {
    test(`an Expires with ${what} is invalid, so already expired`, async () => {
      const path = `/expires-${what.replace(/[^a-z]/g, '-')}`;
      assert.equal(await twice(plain, path, respond(200, { expires: value })), 2, value);
    });
  }

  test('the obsolete RFC 850 and asctime forms are accepted, names in any case', async () => {
    const longDays = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
    const rfc850 = `${longDays[future.getUTCDay()]}, ${day}-${month}-${year.slice(2)} ${time} GMT`;
    const asctime = `${dayName} ${month} ${String(future.getUTCDate()).padStart(2, ' ')} ${time} ${year}`;
    const shouting = imf.toUpperCase().replace('GMT', 'gMT');
    for (const [i, value] of [rfc850, asctime, shouting].entries()) {
      assert.equal(
        await twice(plain, `/expires-ok-${i}`, respond(200, { expires: value })),
        1,
        value,
      );
    }
  });
});

describe('status codes', () => {
  for (const status of [299, 400, 500, 503, 599]) {
    test(`a ${status} with explicit freshness is stored and reused while fresh`, async () => {
      const path = `/status-${status}`;
      const headers = { 'cache-control': 'max-age=3600' };
      assert.equal(await twice(plain, path, respond(status, headers)), 1);
      const hit = await get(plain, path);
      assert.equal(hit.status, status);
      assert.equal(hit.text, `${path} #1`);
    });
  }

  test('without explicit freshness those statuses are not stored, even with Last-Modified', async () => {
    const lastModified = new Date(Date.now() - 86400_000).toUTCString();
    const headers = { 'last-modified': lastModified };
    assert.equal(await twice(plain, '/status-500-lm', respond(500, headers)), 2);
    const publicLm = { 'last-modified': lastModified, 'cache-control': 'public' };
    assert.equal(await twice(plain, '/status-599-public', respond(599, publicLm)), 1);
  });

  test('must-understand: a known status ignores no-store, an unknown one is not stored', async () => {
    const cc = { 'cache-control': 'max-age=3600, no-store, must-understand' };
    assert.equal(await twice(plain, '/understood', respond(200, cc)), 1);
    assert.equal(await twice(plain, '/not-understood', respond(599, cc)), 2);
  });
});

describe('serving stale when the upstream cannot be reached', () => {
  /** An entry that is stale at once (Age beyond max-age) but kept, then the origin hangs up. */
  function staleThenHangUp(cacheControl) {
    return (req, res, n) => {
      if (n === 1) {
        // The ETag keeps even a must-revalidate entry stored, for revalidation.
        res.writeHead(200, { 'cache-control': cacheControl, age: '10', etag: '"v1"' });
        res.end(`${req.url} #1`);
      } else {
        res.socket.destroy();
      }
    };
  }

  test('a stale entry is served when the origin closes the connection', async () => {
    behaviours.set('/gone-away', staleThenHangUp('max-age=5'));
    await get(plain, '/gone-away');
    const r = await get(plain, '/gone-away');
    assert.equal(r.status, 200);
    assert.equal(r.text, '/gone-away #1');
    assert.match(r.headers['cache-status'], /fwd=stale; fwd-status=502/);
    // The refresh reached the origin; the upstream client may try once more on a fresh
    // connection when a reused keep-alive connection closes before any response byte.
    assert.ok([2, 3].includes(count('/gone-away')), `origin saw ${count('/gone-away')} requests`);
  });

  for (const cc of ['must-revalidate', 'proxy-revalidate', 'no-cache', 's-maxage=5']) {
    test(`never when the response says ${cc}`, async () => {
      const path = `/gone-away-${cc.replace('=', '-')}`;
      behaviours.set(path, staleThenHangUp(`max-age=5, ${cc}`));
      await get(plain, path);
      const r = await get(plain, path);
      assert.equal(r.status, 502);
      assert.equal(seen.get(path)[1]['if-none-match'], '"v1"', 'the entry was stored');
    });
  }

  test("an origin's own 503 is passed on without stale-if-error", async () => {
    behaviours.set('/busy', (req, res, n) => {
      res.writeHead(n === 1 ? 200 : 503, { 'cache-control': 'max-age=5', age: '10' });
      res.end(`${req.url} #${n}`);
    });
    await get(plain, '/busy');
    const r = await get(plain, '/busy');
    assert.equal(r.status, 503);
    assert.equal(r.text, '/busy #2');
  });
});

describe('Vary', () => {
  test('Accept-Language values differing only in case select the same variant', async () => {
    behaviours.set(
      '/lang',
      respond(200, { 'cache-control': 'max-age=3600', vary: 'Accept-Language' }),
    );
    await get(plain, '/lang', { 'accept-language': 'en-US, de' });
    const same = await get(plain, '/lang', { 'accept-language': 'EN-us,De' });
    assert.equal(same.headers['cache-status'], 'switchyard; hit');
    const other = await get(plain, '/lang', { 'accept-language': 'de, en-US' });
    assert.match(other.headers['cache-status'], /fwd=vary-miss/);
    assert.equal(count('/lang'), 2);
  });
});

test('an If-Modified-Since that is not an HTTP-date is ignored (RFC 9110 §13.1.3)', async () => {
  const lastModified = 'Sun, 06 Nov 1994 08:49:37 GMT';
  behaviours.set(
    '/ims',
    respond(200, { 'cache-control': 'max-age=3600', 'last-modified': lastModified }),
  );
  await get(plain, '/ims');
  assert.equal((await get(plain, '/ims', { 'if-modified-since': lastModified })).status, 304);
  // Date.parse would take these (a zone other than GMT, no weekday comma); an HTTP-date parser
  // does not, so the cache answers with the full response.
  for (const bad of ['Sun, 06 Nov 2094 08:49:37 UTC', 'Sun 06 Nov 2094 08:49:37 GMT']) {
    const r = await get(plain, '/ims', { 'if-modified-since': bad });
    assert.equal(r.status, 200, bad);
    assert.equal(r.text, '/ims #1');
  }
});
