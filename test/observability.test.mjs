// Access log (JSON and combined, sampling, per-route switch, SIGUSR1 reopen), request ids and
// W3C trace context, OTLP/HTTP span export, and the Prometheus metrics the admin listener serves.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { once } from 'node:events';
import { spawn } from 'node:child_process';
import fs, {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  renameSync,
  writeFileSync,
  existsSync,
} from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configFrom, startOrigin, startProxy, request } from './helpers.mjs';

const tmp = () => mkdtempSync(join(tmpdir(), 'switchyard-obs-'));
const readLines = (path) =>
  readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l !== '');

/** An origin that records the trace headers it receives. */
async function traceOrigin() {
  const seen = [];
  const origin = await startOrigin((req, res) => {
    seen.push({ traceparent: req.headers.traceparent, tracestate: req.headers.tracestate });
    if (req.url.startsWith('/fail')) {
      res.writeHead(500).end('boom');
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' }).end('hello from origin');
  });
  origin.seen = seen;
  return origin;
}

/** Minimal Prometheus text parser: [{ name, labels, value }]. */
function parseMetrics(text) {
  const samples = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `unparseable metrics line: ${line}`);
    const labels = {};
    if (m[3]) {
      for (const pair of m[3].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
        labels[pair[1]] = pair[2];
    }
    samples.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return samples;
}

const find = (samples, name, labels = {}) =>
  samples.filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );

/** A proxy answering every request itself, with a JSON access log to `output`. */
const logConfig = (output) => `
listeners: [{ name: web, address: "127.0.0.1:0" }]
routes: [{ name: r, respond: { status: 200, body: ok } }]
accessLog: { format: json, output: ${JSON.stringify(output)} }
`;

test("bytesIn and bytesOut are each exchange's own bytes on a kept-alive connection, exactly", async () => {
  const dir = tmp();
  const logPath = join(dir, 'access.log');
  const origin = await startOrigin((req, res) => {
    const size = Number(req.url.slice(1));
    // One answer streamed in two writes (no serialized head), the others whole.
    if (size === 3000) {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('x'.repeat(1000));
      setTimeout(() => res.end('y'.repeat(2000)), 20);
    } else res.end('z'.repeat(size));
  });
  const proxy = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes: [{ upstream: app }]
accessLog: { format: json, output: ${JSON.stringify(logPath)} }
`);
  const sent = [];
  const received = [];
  try {
    const socket = (await import('node:net')).connect(proxy.port, '127.0.0.1');
    await once(socket, 'connect');
    let buffered = Buffer.alloc(0);
    socket.on('data', (chunk) => (buffered = Buffer.concat([buffered, chunk])));
    for (const [i, size] of [10, 3000, 70000, 5].entries()) {
      const head = `GET /${size} HTTP/1.1\r\nHost: x\r\nX-Pad: ${'p'.repeat(i * 7)}\r\n\r\n`;
      sent.push(head.length);
      socket.write(head);
      // The whole answer: head, then Content-Length bytes (or the chunked body to its end).
      for (;;) {
        const text = buffered.toString('latin1');
        const end = text.indexOf('\r\n\r\n');
        if (end >= 0) {
          const length = /content-length: (\d+)/i.exec(text.slice(0, end))?.[1];
          const total =
            length !== undefined ? end + 4 + Number(length) : text.indexOf('\r\n0\r\n\r\n') + 7;
          if (length !== undefined ? buffered.length >= total : total > 6) {
            received.push(total);
            buffered = buffered.subarray(total);
            break;
          }
        }
        await once(socket, 'data');
      }
    }
    socket.destroy();
  } finally {
    await proxy.close();
    await origin.close();
  }
  const lines = readLines(logPath).map((l) => JSON.parse(l));
  assert.deepEqual(
    lines.map((l) => l.bytesIn),
    sent,
  );
  assert.deepEqual(
    lines.map((l) => l.bytesOut),
    received,
  );
});

test('JSON access log: one line per request with every field', async () => {
  const dir = tmp();
  const logPath = join(dir, 'access.log');
  const origin = await traceOrigin();
  const proxy = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes:
  - { name: ping, match: { path: /ping }, respond: { status: 200, body: "pong" } }
  - { name: app, upstream: app }
accessLog: { format: json, output: ${JSON.stringify(logPath)} }
`);
  try {
    const res = await request(`${proxy.url}/hello/world?x=1&y=2`, {
      headers: {
        'user-agent': 'obs-test/1.0 "quoted" \\ back',
        referer: 'https://example.test/from',
        traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      },
    });
    assert.equal(res.status, 200);
    const ping = await request(`${proxy.url}/ping`, { method: 'POST', body: 'abcdef' });
    assert.equal(ping.status, 200);
    // Stopping flushes and closes the log: after it, the file holds every line.
    await proxy.close();
    const lines = readLines(logPath).map((l) => JSON.parse(l));
    assert.equal(lines.length, 2);
    const [a, b] = lines;
    assert.ok(!Number.isNaN(Date.parse(a.time)), 'time is an ISO date');
    assert.equal(a.requestId, res.headers['x-request-id']);
    assert.equal(a.traceId, '0af7651916cd43dd8448eb211c80319c');
    assert.equal(a.clientIp, '127.0.0.1');
    assert.equal(a.method, 'GET');
    assert.equal(a.host, `127.0.0.1:${proxy.port}`);
    assert.equal(a.path, '/hello/world');
    assert.equal(a.query, 'x=1&y=2');
    assert.equal(a.protocol, 'HTTP/1.1');
    assert.equal(a.status, 200);
    assert.ok(a.bytesIn > 100, `bytesIn counts the request head (${a.bytesIn})`);
    assert.ok(a.bytesOut > 'hello from origin'.length, `bytesOut counts head and body`);
    assert.equal(typeof a.durationMs, 'number');
    assert.ok(a.durationMs >= 0);
    assert.equal(a.route, 'app');
    assert.equal(a.upstream, 'app');
    assert.equal(a.upstreamServer, origin.url);
    assert.equal(typeof a.upstreamTimeMs, 'number');
    assert.ok(a.upstreamTimeMs <= a.durationMs);
    assert.equal(a.retries, 0);
    assert.equal(a.userAgent, 'obs-test/1.0 "quoted" \\ back', 'escaped and parsed back');
    assert.equal(a.referer, 'https://example.test/from');
    assert.equal(a.listener, 'web');
    assert.equal(a.tls, undefined, 'no TLS on a cleartext listener');
    assert.equal(b.route, 'ping');
    assert.equal(b.method, 'POST');
    assert.equal(b.upstream, undefined);
    assert.equal(b.upstreamTimeMs, undefined);
    assert.ok(b.bytesIn >= 6, 'the body is counted in bytesIn');
    assert.match(b.traceId, /^[0-9a-f]{32}$/, 'a trace is started when the client sent none');
  } finally {
    await proxy.close();
    await origin.close();
  }
});

test('access log and metrics carry the cache result', async () => {
  const dir = tmp();
  const logPath = join(dir, 'cache.log');
  const origin = await startOrigin((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60' }).end('c');
  });
  const proxy = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes: [{ name: cached, upstream: app, cache: true }]
cache: { store: memory }
accessLog: { format: json, output: ${JSON.stringify(logPath)} }
admin: { address: "127.0.0.1:0" }
`);
  try {
    await request(`${proxy.url}/c`);
    await request(`${proxy.url}/c`);
    const samples = parseMetrics((await request(`${proxy.proxy.adminUrl()}/metrics`)).text);
    assert.equal(find(samples, 'switchyard_cache_requests_total', { result: 'miss' })[0].value, 1);
    assert.equal(find(samples, 'switchyard_cache_requests_total', { result: 'hit' })[0].value, 1);
    await proxy.close();
    const lines = readLines(logPath).map((l) => JSON.parse(l));
    assert.deepEqual(
      lines.map((l) => l.cache),
      ['miss', 'hit'],
    );
  } finally {
    await proxy.close();
    await origin.close();
  }
});

test('combined access log format', async () => {
  const dir = tmp();
  const logPath = join(dir, 'combined.log');
  const proxy = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
routes:
  - { name: ping, respond: { status: 201, body: "created" } }
accessLog: { format: combined, output: ${JSON.stringify(logPath)} }
`);
  await request(`${proxy.url}/a/b?q="x"`, {
    headers: { 'user-agent': 'Mozilla/5.0 "quoted"', referer: 'http://r.test/' },
  });
  await request(`${proxy.url}/plain`);
  await proxy.close();
  const lines = readLines(logPath);
  assert.equal(lines.length, 2);
  const clf =
    /^(\S+) - - \[(\d{2}\/[A-Z][a-z]{2}\/\d{4}:\d{2}:\d{2}:\d{2} \+0000)\] "(.*?[^\\])" (\d{3}) (\d+|-) "(.*?)" "(.*)"$/;
  const m = clf.exec(lines[0]);
  assert.ok(m, `combined line: ${lines[0]}`);
  assert.equal(m[1], '127.0.0.1');
  assert.equal(m[3], 'GET /a/b?q=%22x%22 HTTP/1.1');
  assert.equal(m[4], '201');
  assert.ok(Number(m[5]) > 'created'.length);
  assert.equal(m[6], 'http://r.test/');
  assert.equal(m[7], 'Mozilla/5.0 \\"quoted\\"', 'quotes are escaped');
  const m2 = clf.exec(lines[1]);
  assert.ok(m2);
  assert.equal(m2[6], '-', 'no referer is logged as -');
  assert.equal(m2[7], '-');
});

test('sampling keeps server errors; a route can turn its log off', async () => {
  const dir = tmp();
  const logPath = join(dir, 'sampled.log');
  const origin = await traceOrigin();
  const proxy = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes:
  - { name: quiet, match: { pathPrefix: /health }, respond: { status: 200, body: ok }, accessLog: false }
  - { name: half, match: { pathPrefix: /half }, respond: { status: 200, body: ok }, accessLog: { sampleRatio: 1 } }
  - { name: app, upstream: app }
accessLog: { format: json, output: ${JSON.stringify(logPath)}, sampleRatio: 0 }
`);
  try {
    for (let i = 0; i < 5; i++) assert.equal((await request(`${proxy.url}/ok${i}`)).status, 200);
    for (let i = 0; i < 3; i++) assert.equal((await request(`${proxy.url}/health`)).status, 200);
    assert.equal((await request(`${proxy.url}/fail`)).status, 500);
    assert.equal((await request(`${proxy.url}/half`)).status, 200);
    await proxy.close();
    const lines = readLines(logPath).map((l) => JSON.parse(l));
    assert.deepEqual(
      lines.map((l) => `${l.route} ${l.path} ${l.status}`),
      ['app /fail 500', 'half /half 200'],
      'sampleRatio 0 drops 2xx, keeps 5xx; accessLog: false drops the route; a route ratio overrides',
    );
  } finally {
    await proxy.close();
    await origin.close();
  }
});

test('access log is off the hot path when not configured: no subscriber, no file', async () => {
  const { channels } = await import('../dist/core/events.js');
  const proxy = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
routes: [{ respond: { status: 200, body: ok } }]
tracing: { enabled: false }
`);
  try {
    assert.equal(channels.requestEnd.hasSubscribers, false);
    assert.equal(channels.requestStart.hasSubscribers, false);
    assert.equal((await request(proxy.url)).status, 200);
  } finally {
    await proxy.close();
  }
});

test('trace context: propagated with a new span id, started when absent, tracestate kept', async () => {
  const origin = await traceOrigin();
  const proxy = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes: [{ name: app, upstream: app }]
`);
  try {
    const incoming = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    await request(`${proxy.url}/a`, {
      headers: { traceparent: incoming, tracestate: 'vendor=abc' },
    });
    const [first] = origin.seen.splice(0);
    const parts = first.traceparent.split('-');
    assert.equal(parts.length, 4);
    assert.equal(parts[0], '00');
    assert.equal(parts[1], '4bf92f3577b34da6a3ce929d0e0e4736', 'trace id kept');
    assert.match(parts[2], /^[0-9a-f]{16}$/);
    assert.notEqual(parts[2], '00f067aa0ba902b7', "the proxy's own span is the parent upstream");
    assert.equal(parts[3], '01', 'sampled flag kept');
    assert.equal(first.tracestate, 'vendor=abc');

    await request(`${proxy.url}/b`, {
      headers: { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00' },
    });
    assert.match(origin.seen.pop().traceparent, /-00$/, 'not-sampled flag kept');

    await request(`${proxy.url}/c`);
    const started = origin.seen.pop().traceparent;
    assert.match(started, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/, 'a trace is started');
    assert.doesNotMatch(started, /^00-0{32}/);

    for (const bad of [
      'garbage',
      '00-00000000000000000000000000000000-00f067aa0ba902b7-01',
      'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
      '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra',
    ]) {
      await request(`${proxy.url}/d`, { headers: { traceparent: bad } });
      const sent = origin.seen.pop().traceparent;
      assert.match(sent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/, `replaced: ${bad}`);
      assert.ok(!sent.includes('4bf92f3577b34da6a3ce929d0e0e4736'), `not propagated: ${bad}`);
    }
    // A client cannot smuggle a second traceparent past the proxy.
    assert.equal(origin.seen.length, 0);
  } finally {
    await proxy.close();
    await origin.close();
  }
});

test('tracing can be turned off: the client traceparent passes through untouched', async () => {
  const origin = await traceOrigin();
  const proxy = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes: [{ name: app, upstream: app }]
tracing: { enabled: false }
`);
  try {
    const incoming = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    await request(`${proxy.url}/a`, { headers: { traceparent: incoming } });
    assert.equal(origin.seen.pop().traceparent, incoming);
    await request(`${proxy.url}/b`);
    assert.equal(origin.seen.pop().traceparent, undefined, 'no trace is started');
  } finally {
    await proxy.close();
    await origin.close();
  }
});

/** A tiny OTLP/HTTP receiver: collects the JSON bodies posted to /v1/traces. */
async function startOtlpReceiver() {
  const bodies = [];
  let notify = null;
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      bodies.push({
        path: req.url,
        headers: req.headers,
        body: JSON.parse(Buffer.concat(chunks).toString()),
      });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      notify?.();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    bodies,
    /** Resolves once `n` export requests arrived. */
    waitFor: (n) =>
      new Promise((resolve) => {
        const check = () => {
          if (bodies.length >= n) resolve(bodies);
        };
        notify = check;
        check();
      }),
    close: () => new Promise((r) => server.close(r)),
  };
}

test('OTLP/HTTP JSON export of server spans', async () => {
  const receiver = await startOtlpReceiver();
  const origin = await traceOrigin();
  const proxy = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes: [{ name: app, upstream: app }]
tracing:
  serviceName: edge-proxy
  otlp: { endpoint: "${receiver.url}", headers: { x-api-key: secret } }
`);
  try {
    const parent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    await request(`${proxy.url}/traced/path?q=1`, { headers: { traceparent: parent } });
    await request(`${proxy.url}/fail`);
    // Not sampled by the caller: no span.
    await request(`${proxy.url}/skip`, {
      headers: { traceparent: '00-11111111111111111111111111111111-2222222222222222-00' },
    });
    await proxy.proxy.observability.tracing.exporter.flush();
    const [exported] = await receiver.waitFor(1);
    assert.equal(exported.path, '/v1/traces');
    assert.equal(exported.headers['content-type'], 'application/json');
    assert.equal(exported.headers['x-api-key'], 'secret');
    const rs = exported.body.resourceSpans[0];
    const attrs = Object.fromEntries(rs.resource.attributes.map((a) => [a.key, a.value]));
    assert.equal(attrs['service.name'].stringValue, 'edge-proxy');
    const spans = receiver.bodies.flatMap((b) => b.body.resourceSpans[0].scopeSpans[0].spans);
    assert.equal(spans.length, 2, 'the unsampled request is not exported');
    const span = spans.find((s) => s.traceId === '4bf92f3577b34da6a3ce929d0e0e4736');
    assert.ok(span);
    assert.equal(span.parentSpanId, '00f067aa0ba902b7');
    assert.match(span.spanId, /^[0-9a-f]{16}$/);
    assert.equal(span.kind, 2);
    assert.equal(span.name, 'GET app');
    assert.ok(BigInt(span.endTimeUnixNano) >= BigInt(span.startTimeUnixNano));
    const startMs = Number(BigInt(span.startTimeUnixNano) / 1_000_000n);
    assert.ok(Math.abs(startMs - Date.now()) < 60_000, 'start time is wall-clock time');
    const sattrs = Object.fromEntries(span.attributes.map((a) => [a.key, a.value]));
    assert.equal(sattrs['http.request.method'].stringValue, 'GET');
    assert.equal(sattrs['http.response.status_code'].intValue, '200');
    assert.equal(sattrs['url.path'].stringValue, '/traced/path');
    assert.equal(sattrs['http.route'].stringValue, 'app');
    // The upstream saw the proxy's span as its parent.
    assert.equal(origin.seen[0].traceparent.split('-')[2], span.spanId);
    const failed = spans.find((s) => s.traceId !== '4bf92f3577b34da6a3ce929d0e0e4736');
    assert.equal(failed.status.code, 2, 'a 5xx span has status ERROR');
    assert.equal(failed.parentSpanId, undefined, 'a started trace has a root span');
  } finally {
    await proxy.close();
    await origin.close();
    await receiver.close();
  }
});

test('metrics: contract names, labels from config only, bounded cardinality', async () => {
  const origin = await traceOrigin();
  const proxy = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }, { url: "http://127.0.0.1:1" }] } }
routes:
  - { name: limited, match: { pathPrefix: /limited }, respond: { status: 200, body: ok }, rateLimit: { rate: 1/h, burst: 0 } }
  - { name: app, upstream: app }
admin: { address: "127.0.0.1:0" }
`);
  try {
    const codes = [];
    for (let i = 0; i < 30; i++) codes.push((await request(`${proxy.url}/p/${i}?r=${i}`)).status);
    assert.ok(codes.includes(200));
    const limited = [];
    for (let i = 0; i < 3; i++) limited.push((await request(`${proxy.url}/limited`)).status);
    assert.ok(limited.includes(429), `rate limit answered ${limited}`);
    const res = await request(`${proxy.proxy.adminUrl()}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/);
    const samples = parseMetrics(res.text);
    const ok = find(samples, 'switchyard_requests_total', {
      route: 'app',
      upstream: 'app',
      code: '200',
    });
    assert.equal(ok.length, 1);
    const okCount = ok[0].value;
    const failed = find(samples, 'switchyard_requests_total', { route: 'app', code: '502' });
    const failedCount = failed.reduce((n, s) => n + s.value, 0);
    assert.equal(okCount + failedCount, 30, 'every request counted once');
    // Histogram: buckets, sum and count for the route.
    const count = find(samples, 'switchyard_request_duration_seconds_count', { route: 'app' });
    assert.equal(count[0].value, 30);
    const inf = find(samples, 'switchyard_request_duration_seconds_bucket', {
      route: 'app',
      le: '+Inf',
    });
    assert.equal(inf[0].value, 30);
    assert.equal(
      find(samples, 'switchyard_request_duration_seconds_sum', { route: 'app' }).length,
      1,
    );
    assert.ok(
      find(samples, 'switchyard_upstream_response_duration_seconds_count', { upstream: 'app' })[0]
        .value >= 1,
    );
    const healthy = find(samples, 'switchyard_upstream_server_healthy', { upstream: 'app' });
    assert.deepEqual(
      healthy.map((s) => s.labels.server).sort(),
      [origin.url, 'http://127.0.0.1:1'].sort(),
    );
    assert.equal(
      find(samples, 'switchyard_ratelimited_total', { route: 'limited' })[0].value,
      limited.filter((c) => c === 429).length,
    );
    assert.equal(find(samples, 'switchyard_ratelimited_total', { route: 'app' })[0].value, 0);
    assert.ok(find(samples, 'switchyard_cache_requests_total', { result: 'hit' }).length === 1);
    assert.ok(find(samples, 'switchyard_active_connections', { listener: 'web' }).length === 1);
    assert.ok(find(samples, 'switchyard_connections_total', { listener: 'web' })[0].value >= 33);
    assert.ok(find(samples, 'switchyard_response_bytes_total', { route: 'app' })[0].value > 0);
    assert.ok(find(samples, 'switchyard_upstream_errors_total', { upstream: 'app' }).length >= 0);
    assert.equal(find(samples, 'switchyard_info')[0].labels.version.length > 0, true);
    assert.ok(find(samples, 'process_cpu_user_seconds_total').length === 1, 'process metrics');
    // Bounded cardinality: no raw path or query ever becomes a label value.
    assert.ok(!/\/p\/\d|r=\d/.test(res.text), 'no raw path in metrics');
    const routes = new Set(find(samples, 'switchyard_requests_total').map((s) => s.labels.route));
    assert.deepEqual([...routes].sort(), ['app', 'limited']);
  } finally {
    await proxy.close();
    await origin.close();
  }
});

test('metrics of two proxies in one process stay apart', async () => {
  const yaml = `
listeners: [{ name: web, address: "127.0.0.1:0" }]
routes: [{ name: r, respond: { status: 200, body: ok } }]
admin: { address: "127.0.0.1:0" }
`;
  const a = await startProxy(yaml);
  const b = await startProxy(yaml);
  try {
    for (let i = 0; i < 3; i++) await request(a.url);
    await request(b.url);
    const countOf = async (p) =>
      find(
        parseMetrics((await request(`${p.proxy.adminUrl()}/metrics`)).text),
        'switchyard_requests_total',
        { route: 'r' },
      )[0].value;
    assert.equal(await countOf(a), 3);
    assert.equal(await countOf(b), 1);
  } finally {
    await a.close();
    await b.close();
  }
});

test('CLI: access log to stdout as JSON, to a file reopened on SIGUSR1', async () => {
  const dir = tmp();
  const logPath = join(dir, 'access.log');
  const configPath = join(dir, 'switchyard.yaml');
  const port = await freePort();
  writeFileSync(
    configPath,
    `
listeners: [{ name: web, address: "127.0.0.1:${port}" }]
routes: [{ name: r, respond: { status: 200, body: ok } }]
accessLog: { format: json, output: ${JSON.stringify(logPath)} }
`,
  );
  const child = spawn(process.execPath, ['bin/switchyard', 'run', '-c', configPath], {
    cwd: new URL('..', import.meta.url),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  try {
    await waitForOutput(child.stderr, /listening on http:\/\/127\.0\.0\.1:\d+/);
    await request(`http://127.0.0.1:${port}/before`);
    await waitUntil(() => existsSync(logPath) && readFileSync(logPath, 'utf8').includes('/before'));
    renameSync(logPath, `${logPath}.1`);
    await request(`http://127.0.0.1:${port}/still-old-file`);
    child.kill('SIGUSR1');
    // The reopen happens in the child; poll the new file until the next line lands in it.
    await waitUntil(async () => {
      await request(`http://127.0.0.1:${port}/after`);
      return existsSync(logPath) && readFileSync(logPath, 'utf8').includes('/after');
    });
    const rotated = readFileSync(`${logPath}.1`, 'utf8');
    assert.ok(rotated.includes('/before'));
    assert.ok(!readFileSync(logPath, 'utf8').includes('/before'), 'the new file starts fresh');
    assert.equal(child.exitCode, null, 'SIGUSR1 did not kill the process');
  } finally {
    child.kill('SIGTERM');
    await once(child, 'exit');
  }

  // stdout
  const port2 = await freePort();
  writeFileSync(
    configPath,
    `
listeners: [{ name: web, address: "127.0.0.1:${port2}" }]
routes: [{ name: r, respond: { status: 200, body: ok } }]
accessLog: { format: json, output: stdout }
`,
  );
  const child2 = spawn(process.execPath, ['bin/switchyard', 'run', '-c', configPath], {
    cwd: new URL('..', import.meta.url),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  try {
    await waitForOutput(child2.stderr, /listening on/);
    const res = await request(`http://127.0.0.1:${port2}/to-stdout`);
    const line = await waitForOutput(child2.stdout, /to-stdout/);
    const entry = JSON.parse(line.split('\n').find((l) => l.includes('to-stdout')));
    assert.equal(entry.requestId, res.headers['x-request-id']);
    assert.equal(entry.status, 200);
  } finally {
    child2.kill('SIGTERM');
    await once(child2, 'exit');
  }
});

async function freePort() {
  const server = http.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

function waitForOutput(stream, pattern, timeoutMs = 10_000) {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(
      () => reject(new Error(`timed out waiting for ${pattern}: ${text}`)),
      timeoutMs,
    );
    const onData = (chunk) => {
      text += chunk;
      if (pattern.test(text)) {
        clearTimeout(timer);
        stream.off('data', onData);
        resolve(text);
      }
    };
    stream.on('data', onData);
  });
}

/** Polls a condition on another process's side effects, with a deadline. */
async function waitUntil(check, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('condition not met in time');
}

test('metrics: a server ejected by passive health checks reads as unhealthy, as in the admin API', async () => {
  const origin = await traceOrigin();
  const proxy = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams:
  app:
    servers: [{ url: "http://127.0.0.1:1" }, { url: "${origin.url}", backup: true }]
    passiveHealth: { maxFails: 1, window: 10s, ejectFor: 60s }
routes: [{ name: app, upstream: app }]
admin: { address: "127.0.0.1:0" }
`);
  try {
    // The refused connection counts as the dead server's failure and ejects it.
    assert.equal((await request(`${proxy.url}/x`)).status, 502);
    const api = JSON.parse((await request(`${proxy.proxy.adminUrl()}/api/upstreams`)).text);
    const dead = api.upstreams[0].servers.find((s) => s.url === 'http://127.0.0.1:1');
    assert.equal(dead.healthy, false);
    const samples = parseMetrics((await request(`${proxy.proxy.adminUrl()}/metrics`)).text);
    const value = (server) =>
      find(samples, 'switchyard_upstream_server_healthy', { upstream: 'app', server })[0].value;
    assert.equal(value('http://127.0.0.1:1'), 0);
    assert.equal(value(origin.url), 1);
  } finally {
    await proxy.close();
    await origin.close();
  }
});

test(
  'an access log path that cannot be written fails the start and refuses a reload',
  { timeout: 30_000 },
  async () => {
    const dir = tmp();
    const bad = '/proc/no-such-dir/access.log';
    const configPath = join(dir, 'bad-log.yaml');
    writeFileSync(
      configPath,
      `
listeners: [{ name: web, address: "127.0.0.1:0" }]
routes: [{ name: r, respond: { status: 200, body: ok } }]
accessLog: { format: json, output: ${bad} }
`,
    );
    const child = spawn(process.execPath, ['bin/switchyard', 'run', '-c', configPath], {
      cwd: new URL('..', import.meta.url),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (c) => (stderr += c));
    const [code] = await once(child, 'exit');
    assert.equal(code, 1);
    assert.match(stderr, /accessLog\.output: cannot open \/proc\/no-such-dir\/access\.log/);

    // A running proxy keeps its config (and its log) when a reload names such a path.
    const good = join(dir, 'good.log');
    const proxy = await startProxy(logConfig(good));
    try {
      await assert.rejects(proxy.proxy.reload(configFrom(logConfig(bad))), /accessLog\.output/);
      assert.equal((await request(`${proxy.url}/still-logged`)).status, 200);
    } finally {
      await proxy.close();
    }
    assert.match(readFileSync(good, 'utf8'), /still-logged/);
  },
);

test('a reload keeps logging and counting the requests of the listeners it keeps (they went unrecorded after any reload)', async () => {
  const logPath = join(tmp(), 'access.log');
  const yaml = `
listeners: [{ name: web, address: "127.0.0.1:0" }]
routes: [{ name: r, respond: { status: 200, body: ok } }]
accessLog: { format: json, output: ${JSON.stringify(logPath)} }
admin: { address: "127.0.0.1:0" }
`;
  const proxy = await startProxy(yaml);
  try {
    assert.equal((await request(`${proxy.url}/before`)).status, 200);
    await proxy.proxy.reload(configFrom(yaml));
    assert.equal((await request(`${proxy.url}/after`)).status, 200);
    const samples = parseMetrics((await request(`${proxy.proxy.adminUrl()}/metrics`)).text);
    assert.deepEqual(
      find(samples, 'switchyard_requests_total', { route: 'r', code: '200' }).map((s) => s.value),
      [2],
    );
  } finally {
    await proxy.close();
  }
  assert.deepEqual(
    readLines(logPath).map((l) => JSON.parse(l).path),
    ['/before', '/after'],
  );
});

/**
 * Counts the opens (fs.open and fs.openSync, which sonic-boom and the access log use) naming one
 * of `paths`. The calls go through unchanged; restore() puts the originals back.
 */
function countOpens(paths) {
  const counts = Object.fromEntries(paths.map((p) => [p, 0]));
  const saved = { open: fs.open, openSync: fs.openSync };
  fs.open = function (path, ...rest) {
    if (typeof path === 'string' && path in counts) counts[path]++;
    return saved.open.call(this, path, ...rest);
  };
  fs.openSync = function (path, ...rest) {
    if (typeof path === 'string' && path in counts) counts[path]++;
    return saved.openSync.call(this, path, ...rest);
  };
  // ESM named imports of node:fs (the access log's) follow the patched functions.
  syncBuiltinESMExports();
  return {
    counts,
    restore() {
      Object.assign(fs, saved);
      syncBuiltinESMExports();
    },
  };
}

/** How many of this process's file descriptors point at `path` (null without /proc). */
function openDescriptors(path) {
  if (!existsSync('/proc/self/fd')) return null;
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === path) n++;
    } catch {
      // The descriptor readdir itself used, already closed.
    }
  }
  return n;
}

test('a reload to another access log file opens it once and closes the old one; lines follow it', async () => {
  const dir = tmp();
  const first = join(dir, 'first.log');
  const second = join(dir, 'second.log');
  const proxy = await startProxy(logConfig(first));
  const opens = countOpens([first, second]);
  try {
    assert.equal(openDescriptors(first) ?? 1, 1);
    assert.equal((await request(`${proxy.url}/one`)).status, 200);
    await proxy.proxy.reload(configFrom(logConfig(second)));
    // It was opened three times (a check in the reload, one in the log, then sonic-boom's own).
    assert.deepEqual(opens.counts, { [first]: 0, [second]: 1 });
    assert.equal(openDescriptors(first) ?? 0, 0, 'the old file is closed');
    assert.equal(openDescriptors(second) ?? 1, 1);
    assert.equal((await request(`${proxy.url}/two`)).status, 200);
    // A reload that keeps the output opens nothing.
    await proxy.proxy.reload(configFrom(logConfig(second)));
    assert.deepEqual(opens.counts, { [first]: 0, [second]: 1 });
    // A reload that fails after the file was opened (a port in use) closes it again.
    const third = join(dir, 'third.log');
    const conflicting = logConfig(third).replace(
      '[{ name: web, address: "127.0.0.1:0" }]',
      `[{ name: web, address: "127.0.0.1:0" }, { name: other, address: "127.0.0.1:${proxy.port}" }]`,
    );
    await assert.rejects(proxy.proxy.reload(configFrom(conflicting)), /in use/);
    assert.equal(openDescriptors(third) ?? 0, 0, 'a refused reload leaves nothing open');
  } finally {
    opens.restore();
    await proxy.close();
  }
  assert.equal(openDescriptors(second) ?? 0, 0);
  assert.deepEqual(
    readLines(first).map((l) => JSON.parse(l).path),
    ['/one'],
  );
  assert.deepEqual(
    readLines(second).map((l) => JSON.parse(l).path),
    ['/two'],
  );
});

test('SIGUSR1 reopen: when the path cannot be opened, the error is logged and lines keep going to the old file', async () => {
  const dir = tmp();
  const logPath = join(dir, 'access.log');
  const rotated = join(dir, 'access.log.1');
  const proxy = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
routes: [{ name: r, respond: { status: 200, body: ok } }]
accessLog: { format: json, output: ${JSON.stringify(logPath)} }
`);
  try {
    assert.equal((await request(`${proxy.url}/before`)).status, 200);
    renameSync(logPath, rotated);
    mkdirSync(logPath); // the path is now a directory: opening it for appending fails
    proxy.proxy.reopenLogs();
    assert.ok(
      proxy.logs.some(
        (l) =>
          l.level === 'error' &&
          /access log not reopened/.test(l.message) &&
          /EISDIR/.test(l.error),
      ),
      JSON.stringify(proxy.logs),
    );
    assert.equal((await request(`${proxy.url}/after`)).status, 200);
  } finally {
    await proxy.close();
  }
  assert.deepEqual(
    readLines(rotated).map((l) => JSON.parse(l).path),
    ['/before', '/after'],
  );
});
