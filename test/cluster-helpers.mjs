// Helpers for the multi-process tests (cluster, reload under load, shared Redis): the real CLI in
// a child process, spare ports, a bounded keep-alive load generator and a redis-server.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRedis as startRedisServer, stopRedis } from './helpers.mjs';

const BIN = new URL('../bin/switchyard', import.meta.url).pathname;
/** Starting processes is slow on a busy 2-core machine; these bounds are generous on purpose. */
const START_TIMEOUT_MS = 40_000;

/** A TCP port that was free a moment ago (bind 0, read, close). */
export async function freePort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * Runs `switchyard run -c <file>` with `yaml` written to a temp dir. Resolves once every
 * `listening on` line in `expect` (a count) was printed. Returns helpers to read its log, wait
 * for a log line, rewrite the config, signal it and wait for its exit.
 */
export async function startCli(yaml, { expectListeners = 1, env = {} } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-test-'));
  const file = join(dir, 'switchyard.yaml');
  writeFileSync(file, yaml);
  const child = spawn(process.execPath, [BIN, 'run', '-c', file], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ...env },
  });
  let log = '';
  const waiters = new Set();
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => {
    log += d;
    for (const w of waiters) w();
  });
  const exited = new Promise((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const waitFor = (predicate, timeoutMs = START_TIMEOUT_MS, what = String(predicate)) =>
    new Promise((resolve, reject) => {
      const check = () => {
        const m = typeof predicate === 'function' ? predicate(log) : log.match(predicate);
        if (m) {
          waiters.delete(check);
          clearTimeout(timer);
          resolve(m);
        }
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`timed out waiting for ${what}; log:\n${log}`));
      }, timeoutMs);
      waiters.add(check);
      void exited.then(() => {
        if (!waiters.has(check)) return;
        waiters.delete(check);
        clearTimeout(timer);
        reject(new Error(`switchyard exited while waiting for ${what}; log:\n${log}`));
      });
      check();
    });
  await waitFor(
    (text) => (text.match(/listening on /g) ?? []).length >= expectListeners,
    START_TIMEOUT_MS,
    `${expectListeners} listening lines`,
  );
  return {
    child,
    file,
    get log() {
      return log;
    },
    waitFor,
    write(text) {
      writeFileSync(file, text);
    },
    /** Pids of the workers, from the primary's `worker N started {"pid":...}` lines, latest per slot. */
    workerPids() {
      const pids = new Map();
      for (const m of log.matchAll(/worker (\d+) started \{"pid":(\d+)\}/g))
        pids.set(m[1], Number(m[2]));
      return pids;
    },
    exited,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const result = await exited;
      rmSync(dir, { recursive: true, force: true });
      return result;
    },
  };
}

/** One request through `agent`; resolves { status, headers, body } or rejects on a socket error. */
export function get(
  url,
  { agent = false, headers = {}, method = 'GET', body, timeout = 10_000 } = {},
) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { agent, headers, method, timeout }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode,
          headers: res.headers,
          body: Buffer.concat(chunks).toString(),
        }),
      );
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * A steady load: `concurrency` loops, each sending requests back to back on a keep-alive agent,
 * until `stop()` is called or `durationMs` passes. Counts statuses and socket errors. `check`
 * (optional) sees every response, e.g. to record a header.
 */
export function startLoad(url, { concurrency = 8, durationMs = 30_000, pauseMs = 0, check } = {}) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const stats = { ok: 0, failed: 0, statuses: {}, errors: [], latencies: [] };
  let running = true;
  const deadline = Date.now() + durationMs;
  const loop = async () => {
    while (running && Date.now() < deadline) {
      const started = performance.now();
      try {
        const res = await get(url, { agent });
        stats.statuses[res.status] = (stats.statuses[res.status] ?? 0) + 1;
        if (res.status === 200) stats.ok++;
        else stats.failed++;
        check?.(res);
      } catch (err) {
        stats.failed++;
        if (stats.errors.length < 20) stats.errors.push(err.message);
      }
      stats.latencies.push(performance.now() - started);
      // A steady load, not a flood: leaves CPU to the processes under test on a small machine.
      if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
    }
  };
  const loops = Array.from({ length: concurrency }, loop);
  const done = Promise.all(loops).then(() => {
    agent.destroy();
    return stats;
  });
  return {
    stats,
    /** Resolves once at least `n` more requests finished. */
    async progress(n) {
      const target = stats.ok + stats.failed + n;
      while (stats.ok + stats.failed < target && running && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
    },
    stop() {
      running = false;
      return done;
    },
  };
}

/** Polls `fn` until it returns a truthy value (or throws after `timeoutMs`). */
export async function eventually(
  fn,
  { timeoutMs = 15_000, intervalMs = 50, what = 'condition' } = {},
) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const value = await fn();
      if (value) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Starts redis-server on `port` (helpers.mjs); returns the child and a `kill()` that awaits exit. */
export async function startRedis(port) {
  const child = await startRedisServer(port);
  return { child, kill: () => stopRedis(child) };
}
