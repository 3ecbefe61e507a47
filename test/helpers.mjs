// Shared test helpers: real origins on 127.0.0.1:0, a real proxy started from YAML text, and a
// raw HTTP client that never pools (each call gets a fresh view of what the proxy sends).
import http from 'node:http';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { loadConfigText, formatIssue } from '../dist/config/index.js';
import { Switchyard } from '../dist/main.js';

/** Starts an origin; `handler(req, res)` as in node:http. Returns { server, port, url, close }. */
export async function startOrigin(handler, options = {}) {
  const server = http.createServer(options, handler);
  const sockets = new Set();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.connections = 0;
  server.on('connection', () => server.connections++);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = server.address().port;
  return {
    server,
    port,
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/** Starts a raw TCP origin: `onSocket(socket, firstData)` writes whatever bytes it likes. */
export async function startRawOrigin(onData) {
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.once('data', (data) => onData(socket, data));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = server.address().port;
  return {
    server,
    port,
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise((r) => server.close(r)),
  };
}

export function configFrom(yaml, env = {}) {
  const { config, issues } = loadConfigText(yaml, {
    path: 'test.yaml',
    env: { ...process.env, ...env },
  });
  if (!config) throw new Error(`config invalid:\n${issues.map(formatIssue).join('\n')}`);
  return config;
}

/** Starts a proxy in this process from YAML text. Returns { proxy, url, close }. */
export async function startProxy(yaml, env) {
  const logs = [];
  const proxy = await Switchyard.start(configFrom(yaml, env), {
    announce: false,
    log: (level, message, fields) => logs.push({ level, message, ...fields }),
  });
  return {
    proxy,
    logs,
    url: proxy.url(),
    port: Number(new URL(proxy.url()).port),
    close: () => proxy.stop(1000),
  };
}

/** A proxy with one listener and one catch-all route to the single server `url`. */
export function startProxyTo(url) {
  return startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${url}" }] } }
routes: [{ upstream: app }]
`);
}

/** One request on a fresh connection. Resolves { status, headers, body (Buffer), trailers }. */
export function request(
  url,
  { method = 'GET', headers = {}, body, agent = false, timeout = 10000 } = {},
) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode,
          headers: res.headers,
          rawHeaders: res.rawHeaders,
          body: Buffer.concat(chunks),
          text: Buffer.concat(chunks).toString(),
          trailers: res.trailers,
        }),
      );
      res.on('error', reject);
    });
    req.setTimeout(timeout, () => req.destroy(new Error('client timeout')));
    req.on('error', reject);
    if (body !== undefined) req.end(body);
    else req.end();
  });
}

/** Sends raw bytes on a fresh TCP connection; resolves with everything read until close. */
export function rawRequest(port, bytes, { timeout = 5000, half = false } = {}) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks = [];
    const timer = setTimeout(() => socket.destroy(), timeout);
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
    socket.write(bytes);
    if (half) socket.end();
  });
}

export const yamlOrigin = (url) => JSON.stringify(url);

// Redis for the tests that share state through it: a real redis-server on a spare port.

export async function sparePort() {
  const s = net.createServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = s.address().port;
  await new Promise((r) => s.close(r));
  return port;
}

export async function startRedis(port) {
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${out}`)), 15_000);
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited ${code}: ${out}`));
    });
  });
  child.stdout.resume();
  child.stderr.resume();
  return child;
}

export async function stopRedis(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGKILL');
  await once(child, 'exit');
}

/** Writes `bytes` on a new connection; collects the answer until `done(text)` or close. */
export async function exchange(port, bytes, done = () => false) {
  const socket = net.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  let text = '';
  let closed = false;
  const finished = new Promise((resolve) => {
    socket.on('data', (c) => {
      text += c.toString('latin1');
      if (done(text)) resolve();
    });
    socket.on('close', () => {
      closed = true;
      resolve();
    });
  });
  socket.write(bytes);
  const timer = setTimeout(() => socket.destroy(), 5000);
  await finished;
  clearTimeout(timer);
  socket.destroy();
  return { text, closed };
}

// Raw HTTP/1.1 answers, as `exchange` returns them.

/** A `done` for `exchange`: the answer text ends with `suffix`. */
export const endsWith = (suffix) => (text) => text.endsWith(suffix);

/** A field's value in a raw answer's head (the first with that name), or null. */
export const headField = (text, name) =>
  new RegExp(`\\r\\n${name}: ([^\\r]*)\\r\\n`, 'i').exec(text)?.[1] ?? null;

/**
 * A raw answer with the fields two equal answers may still differ in masked: the request id,
 * `Date` (a fill or a request a second later) and `Age`.
 */
export const maskVolatileFields = (text) =>
  text
    .replace(/\r\nx-request-id: [^\r]+/i, '\r\nx-request-id: ID')
    .replace(/\r\ndate: [^\r]+/i, '\r\ndate: D')
    .replace(/\r\nage: \d+/i, '\r\nage: N');

/** Runs `start()` with SWITCHYARD_QUICK_ANSWERS=0 (read when a proxy starts) and returns its result. */
export async function withQuickAnswersOff(start) {
  process.env.SWITCHYARD_QUICK_ANSWERS = '0';
  try {
    return await start();
  } finally {
    delete process.env.SWITCHYARD_QUICK_ANSWERS;
  }
}

let incomingByPort = null;

/**
 * Starts counting the requests that became node's IncomingMessage, by the local port they
 * arrived on (the quick-answer tests check which requests were answered without one). Returns
 * `count(port)`. Patches IncomingMessage once per test process.
 */
export function countIncomingMessages() {
  if (incomingByPort === null) {
    const counts = new Map();
    incomingByPort = counts;
    const addHeaderLines = http.IncomingMessage.prototype._addHeaderLines;
    http.IncomingMessage.prototype._addHeaderLines = function (...args) {
      const port = this.socket?.localPort;
      counts.set(port, (counts.get(port) ?? 0) + 1);
      return addHeaderLines.apply(this, args);
    };
  }
  const counts = incomingByPort;
  return (port) => counts.get(port) ?? 0;
}
