// The JSON access-log line is built by hand (access-log.ts jsonLine) for speed. Each
// line must be exactly what pino would write, i.e. JSON.stringify of the record in field order,
// for any value: escapes, non-ASCII, lone surrogates, numbers, huge lines, many batches.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AccessLog } from '../dist/observability/access-log.js';

function context(over = {}) {
  const headers = { 'user-agent': 'wrk/4.2.0', ...over.headers };
  const ctx = {
    requestId: '3f2c1a9e-8b7d-4c6e-9f10-123456789abc',
    traceId: '0af7651916cd43dd8448eb211c80319c',
    clientIp: '127.0.0.1',
    method: 'GET',
    host: 'example.test:8080',
    path: '/a/b',
    query: '',
    routeName: 'api',
    upstreamName: 'app',
    upstreamServer: 'http://127.0.0.1:3001',
    upstreamStartTime: 100,
    upstreamHeadersTime: 101.25,
    cacheStatus: '',
    retries: 0,
    listener: { name: 'web' },
    ...over,
    req: { headers, httpVersion: '1.1', socket: over.socket ?? { encrypted: false } },
  };
  // The access log reads the trace id from the request's trace context (core/context.ts).
  ctx.trace = { traceId: ctx.traceId };
  return ctx;
}

/** What pino writes for the record: JSON.stringify with the fields in this order. */
function expected(ctx, m, time) {
  const r = { level: 30, time, requestId: ctx.requestId };
  if (ctx.traceId) r.traceId = ctx.traceId;
  Object.assign(r, { clientIp: ctx.clientIp, method: ctx.method, host: ctx.host, path: ctx.path });
  if (ctx.query) r.query = ctx.query;
  Object.assign(r, {
    protocol: `HTTP/${ctx.req.httpVersion}`,
    status: m.status,
    bytesIn: m.bytesIn,
    bytesOut: m.bytesOut,
    durationMs: Math.round(m.durationMs * 1000) / 1000,
    route: ctx.routeName,
  });
  if (ctx.upstreamName) r.upstream = ctx.upstreamName;
  if (ctx.upstreamServer) r.upstreamServer = ctx.upstreamServer;
  if (ctx.upstreamHeadersTime > 0)
    r.upstreamTimeMs = Math.round((ctx.upstreamHeadersTime - ctx.upstreamStartTime) * 1000) / 1000;
  if (ctx.cacheStatus) r.cache = ctx.cacheStatus;
  r.retries = ctx.retries;
  if (ctx.req.socket.encrypted) r.tls = ctx.req.socket.getProtocol();
  r.listener = ctx.listener.name;
  if (ctx.req.headers['user-agent']) r.userAgent = ctx.req.headers['user-agent'];
  if (ctx.req.headers.referer) r.referer = ctx.req.headers.referer;
  return `${JSON.stringify(r)}`;
}

async function writeAll(entries) {
  const path = join(mkdtempSync(join(tmpdir(), 'sy-alog-')), 'access.log');
  const log = new AccessLog({ format: 'json', output: path, sampleRatio: 1 }, []);
  for (const [ctx, m] of entries) log.write(ctx, m);
  await log.close();
  return readFileSync(path, 'utf8').split('\n').slice(0, -1);
}

function check(lines, entries) {
  assert.equal(lines.length, entries.length);
  lines.forEach((line, i) => {
    const [ctx, m] = entries[i];
    const { time } = JSON.parse(line);
    assert.match(time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.equal(line, expected(ctx, m, time), `line ${i}`);
  });
}

const m = (over = {}) => ({ status: 200, bytesIn: 78, bytesOut: 1234, durationMs: 0.734, ...over });

test('lines are byte for byte what JSON.stringify writes, for awkward values', async () => {
  const entries = [
    [context(), m()],
    [context({ traceId: '', upstreamName: '', upstreamServer: '', upstreamHeadersTime: 0 }), m()],
    [
      context({
        path: '/ü/日本/"q"\\',
        query: 'a=%20&b="x"&c=\u0001',
        host: 'bücher.example',
        method: 'PROPFIND',
        cacheStatus: 'hit',
        retries: 2,
        headers: { 'user-agent': 'agent \u0000 \u001f \u007f \u2028 \ud800 lone', referer: 'é' },
      }),
      m({ status: 404, bytesIn: 0, bytesOut: 2 ** 40, durationMs: 0 }),
    ],
    [
      context({
        socket: { encrypted: true, getProtocol: () => 'TLSv1.3' },
        requestId: 'client-id-"quoted"',
      }),
      m({ status: 502, durationMs: 0.0005 }),
    ],
    ...[0.0004, 0.05, 1.5, 12.3456, 99.9999, 1234567.891, 3, 10.01, 7.1].map((ms) => [
      context({ upstreamStartTime: 5, upstreamHeadersTime: 5 + ms }),
      m({ durationMs: ms }),
    ]),
  ];
  check(await writeAll(entries), entries);
});

test('a line with a 70 KiB header is written whole and in order', async () => {
  const huge = 'x'.repeat(70 * 1024);
  const entries = [
    [context({ path: '/before' }), m()],
    [context({ path: '/huge', headers: { 'user-agent': huge } }), m()],
    [context({ path: '/after' }), m()],
  ];
  check(await writeAll(entries), entries);
});

test('thousands of lines across many batches arrive intact and in order', async () => {
  const entries = Array.from({ length: 3000 }, (_, i) => [
    context({ path: `/item/${i}`, query: i % 7 === 0 ? `page=${i}&ü=1` : '' }),
    m({ bytesOut: i, durationMs: i / 7 }),
  ]);
  check(await writeAll(entries), entries);
});

test('lines stay exact when the repeated runs (client, route, connection) change one field at a time', async () => {
  const base = context();
  const variants = [
    {},
    { clientIp: '10.0.0.2' },
    { method: 'POST' },
    { host: 'other.test' },
    {},
    { routeName: 'web' },
    { upstreamName: 'b' },
    { upstreamServer: 'http://127.0.0.1:3002' },
    { upstreamName: '', upstreamServer: '' },
    {},
    { retries: 1 },
    { retries: 0 },
    { socket: { encrypted: true, getProtocol: () => 'TLSv1.2' } },
    { listener: { name: 'other' } },
    { headers: { 'user-agent': 'curl/8' } },
    { headers: { referer: 'https://r.test/' } },
    { headers: { 'user-agent': '' } },
    {},
  ];
  const entries = variants.map((over) => [context({ ...over }), m()]);
  assert.equal(base.clientIp, entries[0][0].clientIp);
  check(await writeAll(entries), entries);
});
