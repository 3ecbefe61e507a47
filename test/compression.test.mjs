// routes[].compression end to end: round trips per coding, every skip rule, headers, levels,
// decoding upstream bodies, generated responses, and config validation.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import { URLSearchParams } from 'node:url';
import { readFileSync } from 'node:fs';
import { EventEmitter, once } from 'node:events';
import { startOrigin, startProxy, request, configFrom } from './helpers.mjs';
import { CompressingWriter } from '../dist/filters/compression/writer.js';
import { createPolicy } from '../dist/filters/compression/index.js';

const HAS_ZSTD = typeof zlib.zstdDecompressSync === 'function';

/** Compressible, deterministic text (JSON-ish records with varying numbers). */
function makeText(length) {
  let out = '';
  let seed = 12345;
  while (out.length < length) {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    out += `{"id":${seed % 100000},"name":"item-${seed % 977}","tags":["a","b"],"ok":${seed % 2 === 0}}\n`;
  }
  return Buffer.from(out.slice(0, length));
}

/** Incompressible, deterministic bytes (every byte value appears). */
function makeBinary(length) {
  const out = Buffer.alloc(length);
  let seed = 987654321;
  for (let i = 0; i < length; i++) {
    seed = (seed * 1664525 + 1013904223) >>> 0;
    out[i] = seed >>> 24;
  }
  return out;
}

const ENCODE = {
  gzip: zlib.gzipSync,
  br: zlib.brotliCompressSync,
  deflate: zlib.deflateSync,
  ...(HAS_ZSTD ? { zstd: zlib.zstdCompressSync } : {}),
};
const DECODE = {
  gzip: zlib.gunzipSync,
  br: zlib.brotliDecompressSync,
  deflate: zlib.inflateSync,
  ...(HAS_ZSTD ? { zstd: zlib.zstdDecompressSync } : {}),
};

/**
 * The origin is driven by the query string: len, body (text|binary), type, chunked, status,
 * cc (Cache-Control), etag, vary (repeatable), ar (Accept-Ranges), ce (send the body already
 * coded with this coding), corrupt (break the coded body), range (Content-Range).
 */
function originHandler(req, res) {
  const q = new URL(req.url, 'http://x').searchParams;
  const len = Number(q.get('len') ?? 4096);
  let body = q.get('body') === 'binary' ? makeBinary(len) : makeText(len);
  const status = Number(q.get('status') ?? 200);
  const headers = {};
  if (q.get('type') !== 'none') headers['content-type'] = q.get('type') ?? 'application/json';
  if (q.has('cc')) headers['cache-control'] = q.get('cc');
  if (q.has('etag')) headers.etag = q.get('etag');
  if (q.has('vary')) headers.vary = q.getAll('vary');
  if (q.has('ar')) headers['accept-ranges'] = q.get('ar');
  if (q.has('range')) headers['content-range'] = q.get('range');
  if (q.has('ce')) {
    headers['content-encoding'] = q.get('ce');
    body = ENCODE[q.get('ce')](body);
    if (q.has('corrupt')) body = Buffer.concat([body.subarray(0, 20), makeBinary(4000)]);
  }
  if (status === 204 || status === 304) {
    res.writeHead(status, headers);
    return res.end();
  }
  if (q.has('chunked')) {
    res.writeHead(status, headers);
    // Several writes across turns of the event loop, so the proxy sees separate chunks.
    let offset = 0;
    const step = () => {
      if (offset >= body.length) return res.end();
      res.write(body.subarray(offset, offset + 7000));
      offset += 7000;
      setImmediate(step);
    };
    return step();
  }
  headers['content-length'] = body.length;
  res.writeHead(status, headers);
  res.end(req.method === 'HEAD' ? undefined : body);
}

let origin;
let proxy;
const BIG_RESPOND = 'switchyard compresses generated answers too. '.repeat(60);

before(async () => {
  origin = await startOrigin(originHandler);
  proxy = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams:
  app: { servers: [{ url: "${origin.url}" }] }
routes:
  - { match: { pathPrefix: /plain/ }, upstream: app }
  - match: { pathPrefix: /all/ }
    upstream: app
    compression: { algorithms: [br, zstd, gzip, deflate] }
  - { match: { pathPrefix: /min10/ }, upstream: app, compression: { minLength: 10 } }
  - match: { pathPrefix: /custom/ }
    upstream: app
    compression: { types: [application/x-custom, "text/*"], minLength: 1KiB }
  - match: { pathPrefix: /levels/ }
    upstream: app
    compression: { level: { gzip: 1, br: 1 }, cachedLevel: { gzip: 9 } }
  - { match: { pathPrefix: /decode/ }, upstream: app, compression: { decompress: true } }
  - match: { path: /respond }
    respond: { status: 200, body: "${BIG_RESPOND}" }
    compression: true
  - { upstream: app, compression: true }
`);
});

after(async () => {
  await proxy?.close();
  await origin?.close();
});

const get = (path, headers = {}, method = 'GET') =>
  request(`${proxy.url}${path}`, { headers, method });

function assertNotCoded(res, expectedBody) {
  assert.equal(res.headers['content-encoding'], undefined);
  if (expectedBody !== undefined) assert.ok(res.body.equals(expectedBody), 'body unchanged');
}

// ------------------------------------------------------------------ round trips

const CODINGS = ['gzip', 'br', 'deflate', 'zstd'];
const BODIES = [
  ['text 300KiB', 'len=307200'],
  ['binary 200KiB', 'len=204800&body=binary&type=text/plain'],
  ['text 1KiB', 'len=1024'],
];

for (const coding of CODINGS) {
  for (const framing of ['fixed-length', 'chunked']) {
    for (const [label, query] of BODIES) {
      test(
        `round trip: ${coding}, ${framing}, ${label} decodes to the exact upstream bytes`,
        { skip: coding === 'zstd' && !HAS_ZSTD ? 'no zstd in this Node.js' : false },
        async () => {
          const q = framing === 'chunked' ? `${query}&chunked=1` : query;
          const params = new URLSearchParams(q);
          const len = Number(params.get('len'));
          const expected = params.get('body') === 'binary' ? makeBinary(len) : makeText(len);
          const res = await get(`/all/x?${q}`, { 'accept-encoding': coding });
          assert.equal(res.status, 200);
          assert.equal(res.headers['content-encoding'], coding);
          if (framing === 'chunked') {
            assert.equal(res.headers['content-length'], undefined);
            assert.equal(res.headers['transfer-encoding'], 'chunked');
          } else {
            // A known length up to WHOLE_BODY_LIMIT is compressed whole: exact Content-Length.
            assert.equal(res.headers['content-length'], String(res.body.length));
            assert.equal(res.headers['transfer-encoding'], undefined);
          }
          assert.equal(res.headers.vary, 'Accept-Encoding');
          const decoded = DECODE[coding](res.body);
          assert.equal(decoded.length, expected.length);
          assert.ok(decoded.equals(expected), 'decoded body differs from the upstream body');
          if (label.startsWith('text 300')) assert.ok(res.body.length < expected.length / 3);
        },
      );
    }
  }
}

test('round trip: an empty chunked body of a compressible type is a valid empty stream', async () => {
  const res = await get('/x?len=0&chunked=1', { 'accept-encoding': 'gzip' });
  assert.equal(res.headers['content-encoding'], 'gzip');
  assert.equal(zlib.gunzipSync(res.body).length, 0);
});

test('round trip: the default route prefers br, then gzip; deflate only where configured', async () => {
  const all = 'gzip, deflate, br';
  assert.equal((await get('/x', { 'accept-encoding': all })).headers['content-encoding'], 'br');
  const gz = await get('/x', { 'accept-encoding': 'gzip, deflate' });
  assert.equal(gz.headers['content-encoding'], 'gzip');
  assertNotCoded(await get('/x', { 'accept-encoding': 'deflate' }));
  const def = await get('/all/x', { 'accept-encoding': 'deflate' });
  assert.equal(def.headers['content-encoding'], 'deflate');
});

test('round trip: zstd where the runtime has it, otherwise the next coding', async () => {
  const res = await get('/x', { 'accept-encoding': 'zstd, gzip' });
  assert.equal(res.headers['content-encoding'], HAS_ZSTD ? 'zstd' : 'gzip');
  assert.ok(DECODE[res.headers['content-encoding']](res.body).equals(makeText(4096)));
});

test('round trip: a generated `respond` answer is compressed too', async () => {
  const res = await get('/respond', { 'accept-encoding': 'gzip' });
  assert.equal(res.headers['content-encoding'], 'gzip');
  assert.equal(zlib.gunzipSync(res.body).toString(), BIG_RESPOND);
});

test('round trip: a route without compression is untouched', async () => {
  const res = await get('/plain/x', { 'accept-encoding': 'gzip, br' });
  assertNotCoded(res, makeText(4096));
  assert.equal(res.headers.vary, undefined);
  assert.equal(res.headers['content-length'], '4096');
});

// ------------------------------------------------------------------ skip rules

test('skip: a body shorter than minLength (1KiB by default)', async () => {
  const res = await get('/x?len=1023', { 'accept-encoding': 'gzip' });
  assertNotCoded(res, makeText(1023));
  assert.equal(res.headers['content-length'], '1023');
  assert.equal(res.headers.vary, undefined, 'a size-based decision does not vary');
  const atLimit = await get('/x?len=1024', { 'accept-encoding': 'gzip' });
  assert.equal(atLimit.headers['content-encoding'], 'gzip');
});

test('skip: minLength is configurable', async () => {
  const res = await get('/min10/x?len=20', { 'accept-encoding': 'gzip' });
  assert.equal(res.headers['content-encoding'], 'gzip');
  assert.ok(zlib.gunzipSync(res.body).equals(makeText(20)));
  assertNotCoded(await get('/min10/x?len=9', { 'accept-encoding': 'gzip' }), makeText(9));
});

test('skip: types that do not compress, and a missing Content-Type', async () => {
  for (const type of ['image/png', 'application/octet-stream', 'video/mp4', 'none']) {
    const res = await get(`/x?len=5000&type=${encodeURIComponent(type)}`, {
      'accept-encoding': 'gzip, br',
    });
    assertNotCoded(res, makeText(5000));
    assert.equal(res.headers.vary, undefined, type);
  }
});

test('skip: configured types replace the defaults', async () => {
  const custom = await get('/custom/x?type=application/x-custom', { 'accept-encoding': 'gzip' });
  assert.equal(custom.headers['content-encoding'], 'gzip');
  const text = await get('/custom/x?type=text/csv', { 'accept-encoding': 'gzip' });
  assert.equal(text.headers['content-encoding'], 'gzip');
  assertNotCoded(await get('/custom/x?type=application/json', { 'accept-encoding': 'gzip' }));
});

test('skip: a response that already has a Content-Encoding is never compressed twice', async () => {
  const original = zlib.gzipSync(makeText(4096));
  for (const ae of ['gzip', 'br, gzip', 'br', undefined]) {
    const res = await get('/x?ce=gzip', ae === undefined ? {} : { 'accept-encoding': ae });
    assert.equal(res.headers['content-encoding'], 'gzip', String(ae));
    assert.ok(res.body.equals(original), 'the upstream bytes pass as they are');
    assert.equal(res.headers['content-length'], String(original.length));
  }
});

test('skip: Cache-Control: no-transform on the response or the request', async () => {
  const res = await get('/x?cc=no-transform', { 'accept-encoding': 'gzip' });
  assertNotCoded(res, makeText(4096));
  assert.equal(res.headers['content-length'], '4096');
  const res2 = await get('/x?cc=public,%20no-transform', { 'accept-encoding': 'gzip' });
  assertNotCoded(res2, makeText(4096));
  const req = await get('/x', { 'accept-encoding': 'gzip', 'cache-control': 'no-transform' });
  assertNotCoded(req, makeText(4096));
});

test('skip: 204 and 304 answers', async () => {
  const r204 = await get('/x?status=204', { 'accept-encoding': 'gzip' });
  assert.equal(r204.status, 204);
  assertNotCoded(r204);
  assert.equal(r204.body.length, 0);
  const r304 = await get('/x?status=304&etag=%22v1%22', { 'accept-encoding': 'gzip' });
  assert.equal(r304.status, 304);
  assertNotCoded(r304);
  assert.equal(r304.headers.etag, '"v1"', 'the validator stays strong');
});

test('304: a client revalidating the weak ETag it got compressed gets that ETag back', async () => {
  const res = await get('/x?status=304&etag=%22v1%22', {
    'accept-encoding': 'gzip',
    'if-none-match': 'W/"v1"',
  });
  assert.equal(res.status, 304);
  assert.equal(res.headers.etag, 'W/"v1"');
  assert.equal(res.headers.vary, 'Accept-Encoding');
  const other = await get('/x?status=304&etag=%22v1%22', { 'if-none-match': '"v1"' });
  assert.equal(other.headers.etag, '"v1"');
});

test('skip: a 206 range answer (and any Content-Range)', async () => {
  const res = await get('/x?status=206&range=bytes%200-4095/9000&etag=%22v1%22', {
    'accept-encoding': 'gzip',
    range: 'bytes=0-4095',
  });
  assert.equal(res.status, 206);
  assertNotCoded(res, makeText(4096));
  assert.equal(res.headers['content-range'], 'bytes 0-4095/9000');
  assert.equal(res.headers.etag, '"v1"');
});

test('skip: a HEAD answer keeps its length and says it varies', async () => {
  const res = await get('/x?ar=bytes', { 'accept-encoding': 'gzip' }, 'HEAD');
  assert.equal(res.status, 200);
  assertNotCoded(res);
  assert.equal(res.headers['content-length'], '4096');
  assert.equal(res.headers['accept-ranges'], 'bytes');
  assert.equal(res.headers.vary, 'Accept-Encoding');
});

test('skip: a client that accepts no offered coding gets the body as is, with Vary', async () => {
  for (const ae of [undefined, '', 'identity', 'compress', 'gzip;q=0, br;q=0']) {
    const res = await get('/x', ae === undefined ? {} : { 'accept-encoding': ae });
    assertNotCoded(res, makeText(4096));
    assert.equal(res.headers.vary, 'Accept-Encoding', String(ae));
    assert.equal(res.headers['content-length'], '4096');
  }
});

test('identity;q=0: a coding is used even below minLength and for other types', async () => {
  const small = await get('/x?len=100', { 'accept-encoding': 'gzip, identity;q=0' });
  assert.equal(small.headers['content-encoding'], 'gzip');
  assert.ok(zlib.gunzipSync(small.body).equals(makeText(100)));
  assert.equal(small.headers.vary, 'Accept-Encoding');
  const png = await get('/x?type=image/png', { 'accept-encoding': 'br, *;q=0' });
  assert.equal(png.headers['content-encoding'], 'br');
  // Nothing acceptable at all: the body goes as it is rather than failing the request.
  const none = await get('/x', { 'accept-encoding': 'identity;q=0, compress' });
  assertNotCoded(none, makeText(4096));
});

// ------------------------------------------------------------------ headers

test('headers: strong ETag made weak, weak one kept, Accept-Ranges dropped, length exact', async () => {
  const res = await get('/x?etag=%22abc%22&ar=bytes', { 'accept-encoding': 'gzip' });
  assert.equal(res.headers['content-encoding'], 'gzip');
  assert.equal(res.headers.etag, 'W/"abc"');
  assert.equal(res.headers['accept-ranges'], undefined);
  // The upstream's length (4096) is replaced by the coded body's.
  assert.equal(res.headers['content-length'], String(res.body.length));
  assert.ok(res.body.length < 4096);
  const chunked = await get('/x?chunked=1', { 'accept-encoding': 'gzip' });
  assert.equal(chunked.headers['content-length'], undefined);
  const weak = await get('/x?etag=W/%22abc%22', { 'accept-encoding': 'gzip' });
  assert.equal(weak.headers.etag, 'W/"abc"');
});

test('headers: Vary: Accept-Encoding is merged with the upstream Vary', async () => {
  const cases = [
    ['', 'Accept-Encoding'],
    ['&vary=Origin', 'Origin, Accept-Encoding'],
    ['&vary=Origin&vary=Cookie', 'Origin, Cookie, Accept-Encoding'],
    ['&vary=accept-encoding', 'accept-encoding'],
    ['&vary=Origin,%20Accept-Encoding', 'Origin, Accept-Encoding'],
    ['&vary=*', '*'],
    ['&vary=Accept-Encoding-Extra', 'Accept-Encoding-Extra, Accept-Encoding'],
  ];
  for (const [query, expected] of cases) {
    const res = await get(`/x?len=2000${query}`, { 'accept-encoding': 'br' });
    assert.equal(res.headers['content-encoding'], 'br');
    assert.equal(res.headers.vary, expected, query);
    // The same merge applies when this client gets the body as it is.
    const plain = await get(`/x?len=2000${query}`);
    assert.equal(plain.headers.vary, expected, `${query} (identity)`);
  }
});

// ------------------------------------------------------------------ levels

/** gzip's XFL byte: 2 = slowest (level 9), 4 = fastest (level 1), 0 = anything else. */
const gzipXfl = (body) => body[8];

test('levels: gzip 6 by default, 9 for responses a shared cache may store', async () => {
  const dynamic = await get('/x?len=50000', { 'accept-encoding': 'gzip' });
  assert.equal(gzipXfl(dynamic.body), 0);
  const cached = await get('/x?len=50000&cc=public,%20max-age=60', { 'accept-encoding': 'gzip' });
  assert.equal(gzipXfl(cached.body), 2);
  const smax = await get('/x?len=50000&cc=s-maxage=60', { 'accept-encoding': 'gzip' });
  assert.equal(gzipXfl(smax.body), 2);
  for (const cc of ['private,%20max-age=60', 'no-store', 'max-age=0', 'public,%20no-cache']) {
    const res = await get(`/x?len=50000&cc=${cc}`, { 'accept-encoding': 'gzip' });
    assert.equal(gzipXfl(res.body), 0, cc);
  }
});

test('levels: configured per encoding', async () => {
  const fast = await get('/levels/x?len=50000', { 'accept-encoding': 'gzip' });
  assert.equal(gzipXfl(fast.body), 4);
  const cached = await get('/levels/x?len=50000&cc=max-age=60', { 'accept-encoding': 'gzip' });
  assert.equal(gzipXfl(cached.body), 2);
  const br1 = await get('/levels/x?len=100000', { 'accept-encoding': 'br' });
  const br4 = await get('/x?len=100000', { 'accept-encoding': 'br' });
  assert.ok(zlib.brotliDecompressSync(br1.body).equals(makeText(100000)));
  assert.ok(br1.body.length > br4.body.length, 'quality 1 is larger than quality 4');
});

// ------------------------------------------------------------------ decoding upstream bodies

test('decompress: a client that does not accept the upstream coding gets it decoded', async () => {
  const res = await get('/decode/x?ce=gzip&etag=%22e%22&len=30000');
  assertNotCoded(res, makeText(30000));
  assert.equal(res.headers['content-length'], undefined);
  assert.equal(res.headers.etag, 'W/"e"');
  assert.equal(res.headers.vary, 'Accept-Encoding');
});

test('decompress: a client that accepts another offered coding gets it re-encoded', async () => {
  const res = await get('/decode/x?ce=gzip&len=30000', { 'accept-encoding': 'br' });
  assert.equal(res.headers['content-encoding'], 'br');
  assert.ok(zlib.brotliDecompressSync(res.body).equals(makeText(30000)));
  const fromBr = await get('/decode/x?ce=br&len=30000&chunked=1', { 'accept-encoding': 'gzip' });
  assert.equal(fromBr.headers['content-encoding'], 'gzip');
  assert.ok(zlib.gunzipSync(fromBr.body).equals(makeText(30000)));
});

test(
  'decompress: zstd upstream bodies',
  { skip: HAS_ZSTD ? false : 'no zstd in this Node.js' },
  async () => {
    const plain = await get('/decode/x?ce=zstd&len=30000');
    assertNotCoded(plain, makeText(30000));
    const gz = await get('/decode/x?ce=zstd&len=30000', { 'accept-encoding': 'gzip' });
    assert.equal(gz.headers['content-encoding'], 'gzip');
    assert.ok(zlib.gunzipSync(gz.body).equals(makeText(30000)));
  },
);

test('decompress: a client that accepts the upstream coding gets the upstream bytes', async () => {
  const res = await get('/decode/x?ce=gzip&len=30000', { 'accept-encoding': 'gzip, br' });
  assert.equal(res.headers['content-encoding'], 'gzip');
  assert.ok(res.body.equals(zlib.gzipSync(makeText(30000))));
  assert.equal(res.headers.vary, 'Accept-Encoding');
});

test('decompress: off by default, and never for no-transform, HEAD or 206', async () => {
  const off = await get('/x?ce=gzip');
  assert.equal(off.headers['content-encoding'], 'gzip');
  const nt = await get('/decode/x?ce=gzip&cc=no-transform');
  assert.equal(nt.headers['content-encoding'], 'gzip');
  const head = await get('/decode/x?ce=gzip', {}, 'HEAD');
  assert.equal(head.headers['content-encoding'], 'gzip');
  const partial = await get('/decode/x?ce=gzip&status=206&range=bytes%200-9/99');
  assert.equal(partial.headers['content-encoding'], 'gzip');
});

test('decompress: a corrupt upstream body cuts the response and is logged', async () => {
  await assert.rejects(get('/decode/x?ce=gzip&corrupt=1&len=30000'));
  const warning = proxy.logs.find((l) => l.message.includes('not valid gzip'));
  assert.ok(warning, 'a warning names the problem');
  assert.ok(warning.requestId);
  // The proxy keeps serving.
  const next = await get('/decode/x?ce=gzip&len=3000');
  assert.ok(next.body.equals(makeText(3000)));
});

// ------------------------------------------------------------------ config

test('config: algorithms, levels and decompress are validated with their key paths', () => {
  const base = (compression) => `
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "http://127.0.0.1:1" }] } }
routes: [{ upstream: app, compression: ${compression} }]
`;
  assert.throws(() => configFrom(base('{ algorithms: [lzma] }')), /compression.*algorithms/s);
  assert.throws(() => configFrom(base('{ level: { gzip: 12 } }')), /compression.*level.*gzip/s);
  assert.throws(() => configFrom(base('{ level: { brotli: 4 } }')), /compression.*level/s);
  assert.throws(() => configFrom(base('{ decompress: "yes" }')), /compression.*decompress/s);
  assert.throws(() => configFrom(base('{ minLength: lots }')), /compression.*minLength/s);
  const ok = configFrom(
    base('{ algorithms: [zstd, br, gzip, deflate], level: { br: 5, zstd: 19 }, decompress: true }'),
  );
  assert.deepEqual(ok.routes[0].features.compression.level, { br: 5, zstd: 19 });
});

test(
  'config: zstd asked for on a runtime without it is dropped with a warning',
  {
    skip: HAS_ZSTD ? 'this Node.js has zstd' : false,
  },
  async () => {
    const p = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes: [{ upstream: app, compression: { algorithms: [zstd, gzip] } }]
`);
    try {
      assert.ok(p.logs.some((l) => l.level === 'warn' && l.message.includes('zstd')));
      const res = await request(`${p.url}/x`, { headers: { 'accept-encoding': 'zstd, gzip' } });
      assert.equal(res.headers['content-encoding'], 'gzip');
    } finally {
      await p.close();
    }
  },
);

test('config: the example in docs/compression.md is valid', () => {
  const doc = readFileSync(new URL('../docs/compression.md', import.meta.url), 'utf8');
  const example = /```yaml\n([\s\S]*?)```/.exec(doc)[1];
  const config = configFrom(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams:
  app: { servers: [{ url: "http://127.0.0.1:1" }] }
  api: { servers: [{ url: "http://127.0.0.1:2" }] }
${example}`);
  assert.equal(config.routes.length, 2);
  assert.equal(config.routes[0].features.compression.decompress, true);
});

// ------------------------------------------------------------------ composing with other features

/** A ResponseWriter that records what reaches it, standing in for the cache's writer. */
class RecordingWriter extends EventEmitter {
  headersSent = false;
  writableEnded = false;
  destroyed = false;
  chunks = [];
  writeHead(status, headers) {
    this.headersSent = true;
    this.head = { status, headers };
  }
  write(chunk) {
    this.chunks.push(Buffer.from(chunk));
    return true;
  }
  end(chunk) {
    if (chunk) this.chunks.push(Buffer.from(chunk));
    this.writableEnded = true;
    this.emit('finish');
  }
  addTrailers() {}
  destroy() {
    this.destroyed = true;
  }
}

function fakeContext(state) {
  return {
    req: { headers: { 'accept-encoding': 'gzip' } },
    method: 'GET',
    requestId: 'test',
    routeName: 'r',
    res: null,
    getState: (key) => state[key],
  };
}

test('compose: another feature can say a response will be cached (compression.cacheable)', async () => {
  const policy = createPolicy(true, { log() {}, shared: () => undefined, globals: {} }, 'r');
  const levels = [];
  for (const cacheable of [true, false, undefined]) {
    const ctx = fakeContext({ 'compression.cacheable': cacheable });
    const inner = new RecordingWriter();
    const writer = new CompressingWriter(ctx, inner, policy);
    ctx.res = writer;
    // `public` would pick the cached level by itself: the state overrides it either way.
    writer.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'public' });
    assert.equal(inner.head.headers['content-encoding'], 'gzip');
    writer.write(makeText(20000));
    writer.end();
    await once(inner, 'finish');
    const body = Buffer.concat(inner.chunks);
    assert.ok(zlib.gunzipSync(body).equals(makeText(20000)));
    levels.push(gzipXfl(body));
  }
  assert.deepEqual(levels, [2, 0, 2]);
});

test('compose: a body that is not compressed gives the wrapped writer back to ctx.res', () => {
  const policy = createPolicy(true, { log() {}, shared: () => undefined, globals: {} }, 'r');
  const ctx = fakeContext({});
  const inner = new RecordingWriter();
  ctx.res = new CompressingWriter(ctx, inner, policy);
  ctx.res.writeHead(200, { 'content-type': 'image/png' });
  assert.equal(ctx.res, inner, 'later writes go straight to the wrapped writer');
});
