// The cache filter end to end with the memory store: real origin, real proxy, real sockets.
// Each test uses its own paths on one shared origin whose behaviour is set per path.
import { test, after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import diagnostics_channel from 'node:diagnostics_channel';
import { once } from 'node:events';
import { startOrigin, startProxy, request } from './helpers.mjs';

const cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** path -> handler(req, res, n) where n counts requests for that path (1-based). */
const behaviours = new Map();
const hits = new Map();
const seen = new Map();
let origin;
let p;

before(async () => {
  origin = await startOrigin((req, res) => {
    const path = req.url.split('?')[0];
    const n = (hits.get(req.url) ?? 0) + 1;
    hits.set(req.url, n);
    hits.set(path, path === req.url ? n : (hits.get(path) ?? 0) + 1);
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
  p = await proxyWith();
});

const count = (path) => hits.get(path) ?? 0;

async function proxyWith(routeCache = 'true', extra = '') {
  const p = await startProxy(`
listeners: [{ address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
${extra}
routes:
  - name: cached
    upstream: app
    cache: ${routeCache}
`);
  cleanups.push(p.close);
  return p;
}

const get = (path, headers = {}, method = 'GET') => request(`${p.url}${path}`, { method, headers });

function fixed(body, headers = {}, status = 200) {
  return (req, res) => {
    res.writeHead(status, { 'content-type': 'text/plain', ...headers });
    res.end(body);
  };
}

describe('freshness and storing', () => {
  test('a miss is stored, then served from cache with Age and Cache-Status hit', async () => {
    behaviours.set('/basic', fixed('hello', { 'cache-control': 'max-age=60' }));
    const first = await get('/basic');
    assert.equal(first.status, 200);
    assert.equal(first.headers['cache-status'], 'switchyard; fwd=miss; stored');
    const second = await get('/basic');
    assert.equal(second.text, 'hello');
    assert.equal(second.headers['cache-status'], 'switchyard; hit');
    assert.match(second.headers.age, /^[0-9]+$/);
    assert.equal(second.headers['content-length'], '5');
    assert.ok(second.headers['x-request-id']);
    assert.notEqual(second.headers['x-request-id'], first.headers['x-request-id']);
    assert.equal(count('/basic'), 1);
  });

  test('a hit repeats the stored head exactly: repeated fields, status, upstream Cache-Status', async () => {
    // A hit is written from a template derived once per entry; it must equal the stored head.
    behaviours.set('/head-template', (req, res) => {
      res.writeHead(203, [
        ['content-type', 'text/plain'],
        ['cache-control', 'public, max-age=60'],
        ['link', '</a.css>; rel=preload'],
        ['link', '</b.js>; rel=preload'],
        ['x-origin', 'one'],
        ['cache-status', 'upstream; hit'],
      ]);
      res.end('template');
    });
    const miss = await get('/head-template');
    assert.equal(miss.headers['cache-status'], 'upstream; hit, switchyard; fwd=miss; stored');
    for (let i = 0; i < 2; i++) {
      const hit = await get('/head-template');
      assert.equal(hit.status, 203);
      assert.equal(hit.text, 'template');
      assert.equal(hit.headers['cache-status'], 'upstream; hit, switchyard; hit');
      const links = [];
      for (let j = 0; j < hit.rawHeaders.length; j += 2)
        if (hit.rawHeaders[j].toLowerCase() === 'link') links.push(hit.rawHeaders[j + 1]);
      assert.deepEqual(links, ['</a.css>; rel=preload', '</b.js>; rel=preload']);
      assert.equal(hit.headers['x-origin'], 'one');
      assert.equal(hit.headers['content-length'], '8');
      assert.equal(hit.headers.date, miss.headers.date);
      assert.match(hit.headers.age, /^[0-9]+$/);
      assert.notEqual(hit.headers['x-request-id'], miss.headers['x-request-id']);
    }
    const head = await get('/head-template', {}, 'HEAD');
    assert.equal(head.status, 203);
    assert.equal(head.body.length, 0);
    assert.equal(head.headers['content-length'], '8');
    assert.equal(count('/head-template'), 1);
  });

  test('the origin Age counts toward freshness', async () => {
    behaviours.set('/aged', fixed('aged', { 'cache-control': 'max-age=60', age: '100' }));
    await get('/aged');
    const second = await get('/aged');
    assert.equal(second.headers['cache-status'], 'switchyard; fwd=stale; stored');
    assert.equal(count('/aged'), 2);
  });

  for (const [name, headers] of [
    ['no-store', { 'cache-control': 'no-store, max-age=60' }],
    ['private', { 'cache-control': 'private, max-age=60' }],
    ['Set-Cookie', { 'cache-control': 'max-age=60', 'set-cookie': 'a=1' }],
    ['Vary: *', { 'cache-control': 'max-age=60', vary: '*' }],
  ]) {
    test(`${name} responses are never stored`, async () => {
      const path = `/never-${name.replace(/[^a-z]/gi, '')}`;
      behaviours.set(path, fixed('x', headers));
      const first = await get(path);
      assert.equal(first.headers['cache-status'], 'switchyard; fwd=miss');
      await get(path);
      assert.equal(count(path), 2);
    });
  }

  test('a request with Authorization is stored only when the response allows it', async () => {
    behaviours.set('/auth', fixed('secret', { 'cache-control': 'max-age=60' }));
    await get('/auth', { authorization: 'Bearer a' });
    await get('/auth', { authorization: 'Bearer a' });
    assert.equal(count('/auth'), 2);
    behaviours.set('/auth-public', fixed('shared', { 'cache-control': 'public, max-age=60' }));
    await get('/auth-public', { authorization: 'Bearer a' });
    assert.equal((await get('/auth-public')).headers['cache-status'], 'switchyard; hit');
    assert.equal(count('/auth-public'), 1);
  });

  test('Expires and the heuristic (bounded by ttl) give freshness; 302 without it does not', async () => {
    const future = new Date(Date.now() + 60_000).toUTCString();
    behaviours.set('/expires', fixed('e', { expires: future, date: new Date().toUTCString() }));
    await get('/expires');
    assert.equal((await get('/expires')).headers['cache-status'], 'switchyard; hit');
    behaviours.set('/expired', fixed('e', { expires: '0' }));
    await get('/expired');
    await get('/expired');
    assert.equal(count('/expired'), 2);
    const old = new Date(Date.now() - 365 * 86400_000).toUTCString();
    behaviours.set('/heuristic', fixed('h', { 'last-modified': old }));
    await get('/heuristic');
    assert.equal((await get('/heuristic')).headers['cache-status'], 'switchyard; hit');
    behaviours.set('/redirect', (req, res) => {
      res.writeHead(302, { location: '/elsewhere' });
      res.end();
    });
    await get('/redirect');
    await get('/redirect');
    assert.equal(count('/redirect'), 2);
  });

  test('404 is cacheable by default; 500 is not', async () => {
    // Heuristic freshness (no ttl on the route) needs a Last-Modified.
    const lastModified = new Date(Date.now() - 86400_000).toUTCString();
    behaviours.set('/gone', fixed('nope', { 'last-modified': lastModified }, 404));
    await get('/gone');
    assert.equal((await get('/gone')).status, 404);
    assert.equal(count('/gone'), 1);
    // 500 is not cacheable by default: no heuristic freshness (explicit freshness would do).
    behaviours.set('/broken', fixed('err', { 'last-modified': lastModified }, 500));
    await get('/broken');
    await get('/broken');
    assert.equal(count('/broken'), 2);
  });

  test('must-revalidate responses are served from cache while fresh', async () => {
    behaviours.set('/mr', fixed('mr', { 'cache-control': 'max-age=60, must-revalidate' }));
    await get('/mr');
    assert.equal((await get('/mr')).headers['cache-status'], 'switchyard; hit');
    behaviours.set('/pr', fixed('pr', { 'cache-control': 's-maxage=60, proxy-revalidate' }));
    await get('/pr');
    assert.equal((await get('/pr')).headers['cache-status'], 'switchyard; hit');
  });

  test('no-cache responses are revalidated on every use', async () => {
    behaviours.set('/nc', (req, res) => {
      if (req.headers['if-none-match'] === '"v1"') {
        res.writeHead(304, { etag: '"v1"', 'cache-control': 'no-cache' });
        res.end();
        return;
      }
      res.writeHead(200, { etag: '"v1"', 'cache-control': 'no-cache' });
      res.end('body');
    });
    await get('/nc');
    const second = await get('/nc');
    assert.equal(second.status, 200);
    assert.equal(second.text, 'body');
    assert.equal(second.headers['cache-status'], 'switchyard; fwd=stale; fwd-status=304; stored');
    assert.equal(count('/nc'), 2);
    assert.equal(seen.get('/nc')[1]['if-none-match'], '"v1"');
  });
});

describe('request Cache-Control', () => {
  test('no-cache and max-age=0 revalidate; max-stale and min-fresh are honoured', async () => {
    behaviours.set('/rcc', (req, res) => {
      if (req.headers['if-none-match'] === '"a"') {
        res.writeHead(304, { etag: '"a"', 'cache-control': 'max-age=60' });
        res.end();
        return;
      }
      res.writeHead(200, { etag: '"a"', 'cache-control': 'max-age=60' });
      res.end('A');
    });
    await get('/rcc');
    const nc = await get('/rcc', { 'cache-control': 'no-cache' });
    assert.equal(nc.text, 'A');
    assert.equal(nc.headers['cache-status'], 'switchyard; fwd=request; fwd-status=304; stored');
    const pragma = await get('/rcc', { pragma: 'no-cache' });
    assert.match(pragma.headers['cache-status'], /fwd=request/);
    const ma0 = await get('/rcc', { 'cache-control': 'max-age=0' });
    assert.match(ma0.headers['cache-status'], /fwd=request/);
    const minFresh = await get('/rcc', { 'cache-control': 'min-fresh=3600' });
    assert.match(minFresh.headers['cache-status'], /fwd=request/);
    const fine = await get('/rcc', { 'cache-control': 'max-age=3600' });
    assert.equal(fine.headers['cache-status'], 'switchyard; hit');
    assert.equal(count('/rcc'), 5);

    behaviours.set('/stale-ok', fixed('S', { 'cache-control': 'max-age=1', age: '30' }));
    await get('/stale-ok');
    const stale = await get('/stale-ok', { 'cache-control': 'max-stale' });
    assert.match(stale.headers['cache-status'], /^switchyard; hit; ttl=-/);
    const bounded = await get('/stale-ok', { 'cache-control': 'max-stale=5' });
    assert.match(bounded.headers['cache-status'], /fwd=stale/);
  });

  test('max-stale never serves a must-revalidate response stale', async () => {
    behaviours.set(
      '/mr-stale',
      fixed('M', { 'cache-control': 'max-age=1, must-revalidate', age: '30', etag: '"m"' }),
    );
    await get('/mr-stale');
    const r = await get('/mr-stale', { 'cache-control': 'max-stale' });
    assert.match(r.headers['cache-status'], /fwd=stale/);
    assert.equal(count('/mr-stale'), 2);
  });

  test('only-if-cached answers 504 without going upstream, or from cache', async () => {
    behaviours.set('/oic', fixed('O', { 'cache-control': 'max-age=60' }));
    const miss = await get('/oic', { 'cache-control': 'only-if-cached' });
    assert.equal(miss.status, 504);
    assert.equal(count('/oic'), 0);
    await get('/oic');
    const hit = await get('/oic', { 'cache-control': 'only-if-cached' });
    assert.equal(hit.status, 200);
    assert.equal(hit.text, 'O');
  });

  test('request no-store: forwarded and not stored', async () => {
    behaviours.set('/rns', fixed('R', { 'cache-control': 'max-age=60' }));
    const r = await get('/rns', { 'cache-control': 'no-store' });
    assert.equal(r.headers['cache-status'], 'switchyard; fwd=miss');
    await get('/rns');
    assert.equal(count('/rns'), 2);
  });
});

describe('methods, HEAD and invalidation', () => {
  test('HEAD is answered from a cached GET', async () => {
    behaviours.set('/head', fixed('0123456789', { 'cache-control': 'max-age=60' }));
    await get('/head');
    const head = await get('/head', {}, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.body.length, 0);
    assert.equal(head.headers['content-length'], '10');
    assert.equal(head.headers['cache-status'], 'switchyard; hit');
    assert.equal(count('/head'), 1);
  });

  test('POST bypasses the cache and a success invalidates the URI, Location and Content-Location', async () => {
    for (const path of ['/inv', '/inv-loc', '/inv-cl']) {
      behaviours.set(path, (req, res) => {
        if (req.method === 'POST') {
          res.writeHead(201, {
            location: '/inv-loc',
            'content-location': `http://${req.headers.host}/inv-cl`,
          });
          res.end('made');
          return;
        }
        res.writeHead(200, { 'cache-control': 'max-age=60', vary: 'accept-language' });
        res.end(`${path} ${req.headers['accept-language'] ?? ''}`);
      });
    }
    for (const path of ['/inv', '/inv-loc', '/inv-cl']) {
      await get(path, { 'accept-language': 'en' });
      await get(path, { 'accept-language': 'fr' });
      assert.equal(
        (await get(path, { 'accept-language': 'fr' })).headers['cache-status'],
        'switchyard; hit',
      );
    }
    const post = await get('/inv', {}, 'POST');
    assert.equal(post.status, 201);
    assert.equal(post.headers['cache-status'], 'switchyard; fwd=method');
    for (const path of ['/inv', '/inv-loc', '/inv-cl']) {
      for (const lang of ['en', 'fr']) {
        const r = await get(path, { 'accept-language': lang });
        assert.match(r.headers['cache-status'], /fwd=(vary-)?miss; stored/, `${path} ${lang}`);
      }
    }
  });

  test('a failed unsafe request does not invalidate', async () => {
    behaviours.set('/inv-fail', (req, res) => {
      res.writeHead(req.method === 'DELETE' ? 500 : 200, { 'cache-control': 'max-age=60' });
      res.end('x');
    });
    await get('/inv-fail');
    await get('/inv-fail', {}, 'DELETE');
    assert.equal((await get('/inv-fail')).headers['cache-status'], 'switchyard; hit');
  });
});

describe('Vary', () => {
  test('a variant per header value; a hit only for the same value', async () => {
    behaviours.set('/vary', (req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=60', vary: 'Accept-Language' });
      res.end(`lang=${req.headers['accept-language'] ?? ''}`);
    });
    const en = await get('/vary', { 'accept-language': 'en' });
    assert.equal(en.headers['cache-status'], 'switchyard; fwd=miss; stored');
    const fr = await get('/vary', { 'accept-language': 'fr' });
    assert.equal(fr.headers['cache-status'], 'switchyard; fwd=vary-miss; stored');
    assert.equal((await get('/vary', { 'accept-language': 'en' })).text, 'lang=en');
    const frHit = await get('/vary', { 'accept-language': 'fr' });
    assert.equal(frHit.text, 'lang=fr');
    assert.equal(frHit.headers['cache-status'], 'switchyard; hit');
    const none = await get('/vary');
    assert.equal(none.text, 'lang=');
    assert.equal(count('/vary'), 3);
  });
});

describe('revalidation and conditionals', () => {
  test('a stale entry is revalidated with If-None-Match / If-Modified-Since; a 304 updates headers', async () => {
    const lm = new Date(Date.now() - 3600_000).toUTCString();
    behaviours.set('/reval', (req, res, n) => {
      if (n > 1 && req.headers['if-none-match'] === '"r1"') {
        res.writeHead(304, { etag: '"r1"', 'cache-control': 'max-age=60', 'x-version': '2' });
        res.end();
        return;
      }
      res.writeHead(200, {
        etag: '"r1"',
        'last-modified': lm,
        'cache-control': 'max-age=1',
        age: '10',
        'x-version': '1',
        'content-type': 'text/plain',
      });
      res.end('revalidated body');
    });
    await get('/reval');
    const second = await get('/reval');
    assert.equal(second.status, 200);
    assert.equal(second.text, 'revalidated body');
    assert.equal(second.headers['x-version'], '2');
    assert.equal(second.headers['content-type'], 'text/plain');
    assert.equal(seen.get('/reval')[1]['if-none-match'], '"r1"');
    assert.equal(seen.get('/reval')[1]['if-modified-since'], lm);
    const third = await get('/reval');
    assert.equal(third.headers['cache-status'], 'switchyard; hit');
    assert.equal(third.headers['x-version'], '2');
    assert.equal(count('/reval'), 2);
  });

  test("clients' conditional requests are answered 304 from cache", async () => {
    const lm = new Date(Date.now() - 3600_000).toUTCString();
    behaviours.set(
      '/cond',
      fixed('conditional', { etag: 'W/"c1"', 'last-modified': lm, 'cache-control': 'max-age=60' }),
    );
    await get('/cond');
    const inm = await get('/cond', { 'if-none-match': '"other", W/"c1"' });
    assert.equal(inm.status, 304);
    assert.equal(inm.body.length, 0);
    assert.equal(inm.headers.etag, 'W/"c1"');
    assert.equal(inm.headers['cache-status'], 'switchyard; hit');
    const ims = await get('/cond', { 'if-modified-since': new Date().toUTCString() });
    assert.equal(ims.status, 304);
    const changed = await get('/cond', { 'if-none-match': '"nope"' });
    assert.equal(changed.status, 200);
    assert.equal(count('/cond'), 1);
  });

  test('a conditional miss is fetched in full (stored) and answered 304 to the client', async () => {
    behaviours.set('/cond-miss', fixed('full', { etag: '"m"', 'cache-control': 'max-age=60' }));
    const r = await get('/cond-miss', { 'if-none-match': '"m"' });
    assert.equal(r.status, 304);
    assert.equal(seen.get('/cond-miss')[0]['if-none-match'], undefined);
    const full = await get('/cond-miss');
    assert.equal(full.text, 'full');
    assert.equal(full.headers['cache-status'], 'switchyard; hit');
  });
});

describe('stale-while-revalidate and stale-if-error', () => {
  test('stale-while-revalidate answers stale at once and refreshes once in the background', async () => {
    let refreshed;
    const refreshedP = new Promise((r) => (refreshed = r));
    behaviours.set('/swr', (req, res, n) => {
      res.writeHead(200, {
        'cache-control': n === 1 ? 'max-age=1, stale-while-revalidate=600' : 'max-age=600',
        age: n === 1 ? '5' : '0',
      });
      res.end(`v${n}`);
      if (n === 2) res.once('finish', refreshed);
    });
    await get('/swr');
    const [a, b] = await Promise.all([get('/swr'), get('/swr')]);
    assert.equal(a.text, 'v1');
    assert.equal(b.text, 'v1');
    assert.match(a.headers['cache-status'], /^switchyard; hit; ttl=-/);
    await refreshedP;
    let fresh;
    for (let i = 0; i < 50; i++) {
      fresh = await get('/swr');
      if (fresh.text === 'v2') break;
      await new Promise((r) => setImmediate(r));
    }
    assert.equal(fresh.text, 'v2');
    assert.equal(count('/swr'), 2);
  });

  test('stale-if-error serves the stale entry on a 5xx', async () => {
    behaviours.set('/sie', (req, res, n) => {
      if (n === 1) {
        res.writeHead(200, { 'cache-control': 'max-age=1, stale-if-error=600', age: '5' });
        res.end('good');
      } else {
        res.writeHead(503);
        res.end('down');
      }
    });
    await get('/sie');
    const r = await get('/sie');
    assert.equal(r.status, 200);
    assert.equal(r.text, 'good');
    assert.equal(r.headers['cache-status'], 'switchyard; fwd=stale; fwd-status=503');
    behaviours.set('/no-sie', (req, res, n) => {
      res.writeHead(n === 1 ? 200 : 503, { 'cache-control': 'max-age=1', age: '5' });
      res.end(n === 1 ? 'good' : 'down');
    });
    await get('/no-sie');
    assert.equal((await get('/no-sie')).status, 503);
  });

  test('route overrides: staleIfError on a connection failure, staleWhileRevalidate', async () => {
    const own = await startOrigin((req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=1', age: '5' });
      res.end('from own origin');
    });
    const q = await startProxy(`
listeners: [{ address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${own.url}" }] } }
routes:
  - upstream: app
    cache: { staleIfError: 10m, staleWhileRevalidate: 0s }
`);
    cleanups.push(q.close);
    await request(`${q.url}/x`);
    await own.close();
    const r = await request(`${q.url}/x`);
    assert.equal(r.status, 200);
    assert.equal(r.text, 'from own origin');
    assert.match(r.headers['cache-status'], /fwd=stale; fwd-status=50[23]/);
  });
});

describe('request collapsing', () => {
  test('100 concurrent misses make one upstream request', async () => {
    let release;
    const gate = new Promise((r) => (release = r));
    behaviours.set('/collapse', async (req, res) => {
      await gate;
      res.writeHead(200, { 'cache-control': 'max-age=60' });
      res.end('collapsed body');
    });
    let started = 0;
    const onStart = () => {
      if (++started === 100) setImmediate(release);
    };
    diagnostics_channel.subscribe('switchyard:request:start', onStart);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 100 });
    try {
      const all = await Promise.all(
        Array.from({ length: 100 }, () => request(`${p.url}/collapse`, { agent })),
      );
      assert.ok(all.every((r) => r.status === 200 && r.text === 'collapsed body'));
      assert.equal(count('/collapse'), 1);
      assert.equal(all.filter((r) => r.headers['cache-status'].includes('stored')).length, 1);
    } finally {
      diagnostics_channel.unsubscribe('switchyard:request:start', onStart);
      agent.destroy();
    }
  });

  test('when the response is uncacheable, the waiting requests go upstream themselves', async () => {
    let release;
    const gate = new Promise((r) => (release = r));
    behaviours.set('/collapse-private', async (req, res) => {
      await gate;
      res.writeHead(200, { 'cache-control': 'private' });
      res.end('mine');
    });
    let started = 0;
    const onStart = () => {
      if (++started === 10) setImmediate(release);
    };
    diagnostics_channel.subscribe('switchyard:request:start', onStart);
    try {
      const all = await Promise.all(
        Array.from({ length: 10 }, () => request(`${p.url}/collapse-private`)),
      );
      assert.ok(all.every((r) => r.status === 200 && r.text === 'mine'));
      assert.equal(count('/collapse-private'), 10);
    } finally {
      diagnostics_channel.unsubscribe('switchyard:request:start', onStart);
    }
  });

  test('waiting is bounded by collapseTimeout', async () => {
    let release;
    const gate = new Promise((r) => (release = r));
    behaviours.set('/collapse-slow', async (req, res, n) => {
      if (n === 1) await gate;
      res.writeHead(200, { 'cache-control': 'max-age=60' });
      res.end(`n${n}`);
    });
    const q = await proxyWith('{ collapseTimeout: 50ms }');
    const first = request(`${q.url}/collapse-slow`);
    await once(origin.server, 'request');
    const second = await request(`${q.url}/collapse-slow`);
    assert.equal(second.text, 'n2');
    release();
    assert.equal((await first).text, 'n1');
  });
});

describe('ranges', () => {
  test('single ranges are answered 206 from a cached full response', async () => {
    behaviours.set(
      '/range',
      fixed('0123456789', { 'cache-control': 'max-age=60', etag: '"r"', 'content-length': '10' }),
    );
    const miss = await get('/range', { range: 'bytes=2-4' });
    assert.equal(miss.status, 206);
    assert.equal(miss.text, '234');
    assert.equal(miss.headers['content-range'], 'bytes 2-4/10');
    assert.equal(seen.get('/range')[0].range, undefined);
    const hit = await get('/range', { range: 'bytes=-3' });
    assert.equal(hit.status, 206);
    assert.equal(hit.text, '789');
    assert.equal(hit.headers['cache-status'], 'switchyard; hit');
    const open = await get('/range', { range: 'bytes=7-' });
    assert.equal(open.text, '789');
    const bad = await get('/range', { range: 'bytes=50-60' });
    assert.equal(bad.status, 416);
    assert.equal(bad.headers['content-range'], 'bytes */10');
    const multi = await get('/range', { range: 'bytes=0-1,3-4' });
    assert.equal(multi.status, 200);
    assert.equal(multi.text, '0123456789');
    const ifRangeOld = await get('/range', { range: 'bytes=0-1', 'if-range': '"old"' });
    assert.equal(ifRangeOld.status, 200);
    const ifRange = await get('/range', { range: 'bytes=0-1', 'if-range': '"r"' });
    assert.equal(ifRange.status, 206);
    assert.equal(count('/range'), 1);
  });
});

describe('sizes and streaming', () => {
  test('objects over maxObjectSize stream through uncached', async () => {
    const q = await proxyWith('true', 'cache: { maxObjectSize: 1KiB }');
    const big = Buffer.alloc(4096, 'b');
    behaviours.set('/big', fixed(big, { 'cache-control': 'max-age=60' }));
    behaviours.set('/big-chunked', (req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=60' });
      res.write(big.subarray(0, 1000));
      res.end(big.subarray(1000));
    });
    for (const path of ['/big', '/big-chunked']) {
      const r = await request(`${q.url}${path}`);
      assert.deepEqual(r.body, big);
      const again = await request(`${q.url}${path}`);
      assert.deepEqual(again.body, big);
      assert.doesNotMatch(again.headers['cache-status'], /hit/);
      assert.equal(count(path), 2);
    }
  });

  test('a response being stored reaches the client before it is complete', async () => {
    let finish;
    const finished = new Promise((r) => (finish = r));
    behaviours.set('/stream', async (req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=60' });
      res.write('first,');
      await finished;
      res.end('second');
    });
    const text = await new Promise((resolve, reject) => {
      http
        .get(`${p.url}/stream`, (res) => {
          let body = '';
          res.on('data', (c) => {
            body += c;
            if (body === 'first,') finish();
          });
          res.on('end', () => resolve(body));
        })
        .on('error', reject);
    });
    assert.equal(text, 'first,second');
    const hit = await get('/stream');
    assert.equal(hit.text, 'first,second');
    assert.equal(hit.headers['cache-status'], 'switchyard; hit');
  });

  test('a response cut short by the origin is not stored', async () => {
    behaviours.set('/cut', (req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=60', 'content-length': '100' });
      res.write('only part');
      setImmediate(() => res.socket.destroy());
    });
    await get('/cut').catch(() => {});
    behaviours.set('/cut', fixed('whole', { 'cache-control': 'max-age=60' }));
    const r = await get('/cut');
    assert.equal(r.text, 'whole');
  });
});

describe('keys', () => {
  test('query parameters can be sorted and dropped; the default key keeps them', async () => {
    behaviours.set('/q', (req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=60' });
      res.end(req.url);
    });
    await get('/q?a=1&b=2');
    assert.match((await get('/q?b=2&a=1')).headers['cache-status'], /fwd=miss/);
    const q = await proxyWith('{ query: { sort: true, drop: [utm_*, fbclid] } }');
    await request(`${q.url}/q?a=1&b=2&utm_source=x`);
    const r = await request(`${q.url}/q?b=2&fbclid=z&a=1`);
    assert.equal(r.headers['cache-status'], 'switchyard; hit');
    assert.equal(r.text, '/q?a=1&b=2&utm_source=x');
  });

  test('a key template with placeholders', async () => {
    behaviours.set('/tpl', (req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=60' });
      res.end(`tenant ${req.headers['x-tenant']}`);
    });
    const q = await proxyWith('{ key: "{method}{host}{path}|{header.x-tenant}" }');
    await request(`${q.url}/tpl?one`, { headers: { 'x-tenant': 'a' } });
    const sameTenant = await request(`${q.url}/tpl?two`, { headers: { 'x-tenant': 'a' } });
    assert.equal(sameTenant.headers['cache-status'], 'switchyard; hit');
    const other = await request(`${q.url}/tpl`, { headers: { 'x-tenant': 'b' } });
    assert.equal(other.text, 'tenant b');
  });
});

describe('purge, tags and events', () => {
  test('tags are stripped from clients; purge by tag, URL, prefix and all', async () => {
    for (const path of ['/p/one', '/p/two', '/p/three', '/other']) {
      behaviours.set(
        path,
        fixed(path, {
          'cache-control': 'max-age=60',
          'cache-tag': path === '/p/one' ? 'red, blue' : 'green',
          'surrogate-key': 'sk1 sk2',
        }),
      );
    }
    const fill = async () => {
      for (const path of ['/p/one', '/p/two', '/p/three', '/other']) await get(path);
    };
    const status = async (path) => (await get(path)).headers['cache-status'];
    const purge = (purgeRequest) => {
      const event = { purge: purgeRequest };
      diagnostics_channel.channel('switchyard:cache:purge').publish(event);
      return event.result;
    };
    await fill();
    const r = await get('/p/one');
    assert.equal(r.headers['cache-tag'], undefined);
    assert.equal(r.headers['surrogate-key'], undefined);
    assert.equal(await purge({ tag: 'blue' }), 1);
    assert.match(await status('/p/one'), /fwd=miss/);
    assert.equal(await status('/p/two'), 'switchyard; hit');
    assert.equal(await purge({ url: `${p.url}/p/two` }), 1);
    assert.match(await status('/p/two'), /fwd=miss/);
    assert.ok((await purge({ prefix: `${p.url}/p/` })) >= 3);
    assert.match(await status('/p/three'), /fwd=miss/);
    assert.equal(await status('/other'), 'switchyard; hit');
    await purge({ all: true });
    assert.match(await status('/other'), /fwd=miss/);
    await get('/other');
    assert.equal((await purge({ tag: 'sk2' })) >= 1, true);
    await assert.rejects(purge({ url: 'not a url' }), /url must be an http/);
    await assert.rejects(purge({ url: 'http://x/', all: true }), /exactly one/);
  });

  test('cache results are published on switchyard:cache:result', async () => {
    const results = [];
    const onResult = (m) => results.push(m.result);
    diagnostics_channel.subscribe('switchyard:cache:result', onResult);
    try {
      behaviours.set('/events', fixed('e', { 'cache-control': 'max-age=60' }));
      await get('/events');
      await get('/events');
      await get('/events', {}, 'POST');
      assert.deepEqual(results, ['miss', 'hit', 'bypass']);
    } finally {
      diagnostics_channel.unsubscribe('switchyard:cache:result', onResult);
    }
  });

  test('outer filters shape every copy: responseHeaders are not stored', async () => {
    const q = await startProxy(`
listeners: [{ address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes:
  - upstream: app
    cache: true
    responseHeaders: { add: { x-added: "{request_id}" } }
`);
    cleanups.push(q.close);
    behaviours.set('/outer', fixed('o', { 'cache-control': 'max-age=60' }));
    const first = await request(`${q.url}/outer`);
    const second = await request(`${q.url}/outer`);
    assert.equal(second.headers['cache-status'], 'switchyard; hit');
    assert.equal(first.headers['x-added'], first.headers['x-request-id']);
    assert.equal(second.headers['x-added'], second.headers['x-request-id']);
  });
});

describe('with compression', () => {
  test('one stored variant per content-encoding; a hit does no compression work', async () => {
    const q = await startProxy(`
listeners: [{ address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes:
  - upstream: app
    cache: true
    compression: true
`);
    cleanups.push(q.close);
    const text = 'compress me please '.repeat(400);
    behaviours.set('/gz', fixed(text, { 'cache-control': 'max-age=60' }));
    const gz = await request(`${q.url}/gz`, { headers: { 'accept-encoding': 'gzip' } });
    assert.equal(gz.headers['content-encoding'], 'gzip');
    assert.match(gz.headers.vary, /accept-encoding/i);
    assert.equal(gz.headers['cache-status'], 'switchyard; fwd=miss; stored');
    const gzHit = await request(`${q.url}/gz`, { headers: { 'accept-encoding': 'gzip' } });
    assert.equal(gzHit.headers['cache-status'], 'switchyard; hit');
    assert.equal(gzHit.headers['content-encoding'], 'gzip');
    assert.deepEqual(gzHit.body, gz.body);
    assert.equal(Number(gzHit.headers['content-length']), gz.body.length);
    const { gunzipSync } = await import('node:zlib');
    assert.equal(gunzipSync(gzHit.body).toString(), text);
    const plain = await request(`${q.url}/gz`);
    assert.equal(plain.headers['content-encoding'], undefined);
    assert.equal(plain.text, text);
    assert.equal(plain.headers['cache-status'], 'switchyard; fwd=vary-miss; stored');
    const plainHit = await request(`${q.url}/gz`);
    assert.equal(plainHit.headers['cache-status'], 'switchyard; hit');
    assert.equal(plainHit.text, text);
    assert.equal(count('/gz'), 2);
  });
});

describe('admin API', () => {
  test('POST /api/cache/purge removes entries by URL, prefix and all', async () => {
    const q = await startProxy(`
listeners: [{ address: "127.0.0.1:0" }]
admin: { address: "127.0.0.1:0" }
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes: [{ upstream: app, cache: true }]
`);
    cleanups.push(q.close);
    behaviours.set('/admin/a', fixed('a', { 'cache-control': 'max-age=60' }));
    behaviours.set('/admin/b', fixed('b', { 'cache-control': 'max-age=60' }));
    const host = { host: 'purge.test' };
    const status = async (path) =>
      (await request(`${q.url}${path}`, { headers: host })).headers['cache-status'];
    const purge = async (body) => {
      const r = await request(`${q.proxy.adminUrl()}/api/cache/purge`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      return { status: r.status, json: JSON.parse(r.text) };
    };
    await status('/admin/a');
    await status('/admin/b');
    assert.equal(await status('/admin/a'), 'switchyard; hit');
    const byUrl = await purge({ url: 'http://purge.test/admin/a' });
    assert.deepEqual(byUrl, { status: 200, json: { purged: 1 } });
    assert.match(await status('/admin/a'), /fwd=miss/);
    assert.equal(await status('/admin/b'), 'switchyard; hit');
    assert.equal((await purge({ prefix: 'http://purge.test/admin/' })).json.purged, 2);
    assert.match(await status('/admin/b'), /fwd=miss/);
    assert.equal((await purge({ all: true })).status, 200);
    assert.match(await status('/admin/b'), /fwd=miss/);
  });
});
