#!/usr/bin/env node
// `npm run bench`: Switchyard against nginx (and the origin direct) in one run, on the same origin
// and the same CPU pinning, rounds interleaved, medians reported. See docs/performance.md.
//
// Origin: nginx serving static files (1 KiB, 100 KiB), pinned with wrk on LOAD_CPU. Every proxy
// under test is pinned alone on PROXY_CPU, with upstream keep-alive. Load: wrk -c50 -t1.
// After the rounds, a high-concurrency phase (wrk -c1000) measures peak RSS and p99.
//
// Knobs (env), defaults in brackets:
//   ROUNDS [3]  DURATION [4] seconds per run  WARMUP [1] seconds before each run
//   PREWARM [2] seconds of load per target and size once before round 1 (JIT warm-up)
//   CONNS [50]  THREADS [1]  SIZES ["1k 100k"]
//   TARGETS ["direct nginx switchyard switchyard-obs"]  switchyard-obs: the same Switchyard config
//            plus a JSON access log to a file, the admin listener (metrics, live stats) and
//            tracing (issue 8: at most 10% slower than switchyard)  also: switchyard-undici
//            (the switchyard config with SWITCHYARD_UPSTREAM_CLIENT=undici: undici's Pool instead
//            of Switchyard's own HTTP/1.1 upstream client, for interleaved A/B), ceiling (bench/ceiling-proxy.mjs, a minimal
//            node:http + undici Pool.dispatch proxy: the ceiling for this architecture),
//            ceiling-http (same, node:http Agent upstream), ceiling-hwm (undici, HWM=256KiB)
//   HIGH_CONNS [1000] (0 skips the phase)  HIGH_THREADS [2]  HIGH_DURATION [DURATION]
//   HIGH_TARGETS ["nginx switchyard"]
//   LOAD_CPU [0]  PROXY_CPU [1]  BUILD [1] (run tsc first)  NODE_OPTS [""] (extra node flags
//   for Switchyard and the ceiling proxy, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof")
//   WORK [/tmp/switchyard-bench]  results also go to bench/results/<timestamp>/
//   SUITES [""]: extra suites, off by default so the default run stays near 3 minutes:
//     compression  a ~100 KiB JSON body with Accept-Encoding: gzip through nginx (gzip on;
//                  gzip_comp_level 6; gzip_types application/json) and Switchyard (gzip level 6),
//                  Switchyard br level 4 (bytes saved vs gzip), and both proxies without coding
//     tls          https to the proxy with the same openssl-generated test certificate (ECDSA
//                  P-256) for nginx and Switchyard, 1 KiB body, keep-alive and
//                  `Connection: close` (a full handshake per request)
//     cache        (issue 5) hits of a 1 KiB and a 100 KiB object (origin: Cache-Control
//                  max-age) through nginx proxy_cache and a Switchyard `cache: true` route, and
//                  Switchyard misses (the same route, a no-store path): hits vs nginx, hits vs misses
//     security     (issue 7) the plain Switchyard route vs the same route with a rateLimit that
//                  never triggers and with `waf: { mode: block }`, browser-like requests
//     obs          (issue 8) switchyard-obs vs switchyard (access log, metrics, tracing on/off)
//     workers      (issue 9) Switchyard workers: 2 and workers: 1 vs nginx worker_processes 2,
//                  all three on both cores (LOAD_CPU,PROXY_CPU), wrk still on LOAD_CPU
//     h2           (issue 4) HTTP/2 requests/s with h2load (apt-get install nghttp2-client;
//                  H2_CONNS [10] connections x H2_STREAMS [10] streams) over TLS, nginx
//                  `listen ssl http2` vs a Switchyard TLS listener with http2; and TLS
//                  handshakes/s, full (-new) and resumed (-reuse), with `openssl s_time -www /1k`
//                  (S_TIME_CLIENTS [24] processes in parallel, one connection at a time each)
//   e.g. SUITES="compression tls" TARGETS="" HIGH_CONNS=0 npm run bench  (only the suites)
// Ports (chosen not to collide with ../shared/bench/anchors.sh): origin 18001, nginx 18101,
// switchyard 18200, ceiling 18300; suites: nginx 18103-18104, switchyard 18230-18240;
// cache, security, workers and h2: 18310-18399.
import { spawn, execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = dirname(HERE);
const env = process.env;
const num = (name, dflt) =>
  env[name] === undefined || env[name] === '' ? dflt : Number(env[name]);
const list = (name, dflt) => (env[name] ?? dflt).split(/\s+/).filter(Boolean);

const ROUNDS = num('ROUNDS', 3);
const DURATION = num('DURATION', 4);
const WARMUP = num('WARMUP', 1);
const PREWARM = num('PREWARM', 2);
const CONNS = num('CONNS', 50);
const THREADS = num('THREADS', 1);
const SIZES = list('SIZES', '1k 100k');
const TARGETS = list('TARGETS', 'direct nginx switchyard switchyard-obs');
const HIGH_CONNS = num('HIGH_CONNS', 1000);
const HIGH_THREADS = num('HIGH_THREADS', 2);
const HIGH_DURATION = num('HIGH_DURATION', DURATION);
const HIGH_TARGETS = list('HIGH_TARGETS', 'nginx switchyard');
const LOAD_CPU = String(num('LOAD_CPU', 0));
const PROXY_CPU = String(num('PROXY_CPU', 1));
const BUILD = num('BUILD', 1) === 1;
const NODE_OPTS = list('NODE_OPTS', '');
/** NODE_OPTS plus the heap flags bin/switchyard starts with (src/heap-tuning.ts); set after the build. */
let SWITCHYARD_NODE_OPTS = NODE_OPTS;
const WORK = env.WORK ?? '/tmp/switchyard-bench';
const SUITES = list('SUITES', '');
const PORTS = {
  direct: 18001,
  nginx: 18101,
  switchyard: 18200,
  'switchyard-obs': 18210,
  'switchyard-undici': 18220,
  'nginx-gzip': 18103,
  'nginx-tls': 18104,
  'switchyard-compress': 18230,
  'switchyard-tls': 18240,
  'node-https-floor': 18250,
  'nginx-cache': 18310,
  'switchyard-cache': 18320,
  'switchyard-ratelimit': 18330,
  'switchyard-waf': 18340,
  'nginx-h2': 18350,
  'switchyard-h2': 18360,
  'nginx-w2': 18370,
  'switchyard-w1': 18380,
  'switchyard-w2': 18390,
  ceiling: 18300,
  'ceiling-http': 18301,
  'ceiling-hwm': 18302,
};
// Variants of bench/ceiling-proxy.mjs that can run side by side (interleaved A/B).
const CEILING_VARIANTS = {
  ceiling: {},
  'ceiling-http': { CLIENT: 'http' }, // node:http Agent upstream instead of undici
  'ceiling-hwm': { HWM: '262144' }, // undici keeps reading until 256 KiB are buffered
};
const ORIGIN = `127.0.0.1:${PORTS.direct}`;
/** Targets that listen with TLS (https URLs, the bench's self-signed certificate). */
const TLS_TARGETS = new Set([
  'nginx-tls',
  'switchyard-tls',
  'nginx-h2',
  'switchyard-h2',
  'node-https-floor',
]);
/** Targets spread over both cores (the workers suite); all others run on PROXY_CPU alone. */
const BOTH_CPUS = `${LOAD_CPU},${PROXY_CPU}`;
const H2_CONNS = num('H2_CONNS', 10);
const H2_STREAMS = num('H2_STREAMS', 10);
const S_TIME_CLIENTS = num('S_TIME_CLIENTS', 24);
/** Ordinary browser-like request headers for the security suite (the WAF inspects them). */
const BROWSER_HEADERS = [
  'User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0',
  'Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
  'Accept-Language: en-GB,en;q=0.7',
  'Referer: https://shop.example.com/catalog?category=shoes',
  'Cookie: session=4f2a9c1e7b3d; theme=dark; cart=3',
];
const BROWSER_PATH = '/1k?page=2&sort=price&q=blue+running+shoes';
const baseUrl = (target) =>
  `${TLS_TARGETS.has(target) ? 'https' : 'http'}://127.0.0.1:${PORTS[target]}`;
const JSON_PATH = '/100k.json';
/**
 * The optional suites: each case is one wrk run per round against a target process (started
 * for the suite), interleaved with the suite's other cases. `expect` is the Content-Encoding
 * the case must get, checked once before measuring.
 */
const SUITE_CASES = {
  compression: [
    {
      name: 'nginx identity',
      target: 'nginx',
      path: JSON_PATH,
      headers: [],
      base: 'nginx identity',
    },
    {
      name: 'switchyard identity',
      target: 'switchyard',
      path: JSON_PATH,
      headers: [],
      base: 'nginx identity',
    },
    {
      name: 'nginx gzip 6',
      target: 'nginx-gzip',
      path: JSON_PATH,
      headers: ['Accept-Encoding: gzip'],
      expect: 'gzip',
      base: 'nginx gzip 6',
    },
    {
      name: 'switchyard gzip 6',
      target: 'switchyard-compress',
      path: JSON_PATH,
      headers: ['Accept-Encoding: gzip'],
      expect: 'gzip',
      base: 'nginx gzip 6',
    },
    {
      name: 'switchyard br 4',
      target: 'switchyard-compress',
      path: JSON_PATH,
      headers: ['Accept-Encoding: br'],
      expect: 'br',
      base: 'nginx gzip 6',
    },
  ],
  tls: [
    {
      name: 'nginx keep-alive',
      target: 'nginx-tls',
      path: '/1k',
      headers: [],
      base: 'nginx keep-alive',
    },
    {
      name: 'switchyard keep-alive',
      target: 'switchyard-tls',
      path: '/1k',
      headers: [],
      base: 'nginx keep-alive',
    },
    {
      // Not a proxy: node:https answering 1 KiB itself (bench/node-floor.mjs), the floor for
      // any Node.js TLS server on this core.
      name: 'node https floor keep-alive',
      target: 'node-https-floor',
      path: '/1k',
      headers: [],
      base: 'nginx keep-alive',
    },
    {
      name: 'nginx new handshake',
      target: 'nginx-tls',
      path: '/1k',
      headers: ['Connection: close'],
      base: 'nginx new handshake',
    },
    {
      name: 'switchyard new handshake',
      target: 'switchyard-tls',
      path: '/1k',
      headers: ['Connection: close'],
      base: 'nginx new handshake',
    },
  ],
  cache: ['1k', '100k'].flatMap((size) => [
    {
      name: `nginx hit ${size}`,
      target: 'nginx-cache',
      path: `/cache/${size}`,
      headers: [],
      base: `nginx hit ${size}`,
      expectHeader: ['x-cache-status', /^HIT$/],
    },
    {
      name: `switchyard hit ${size}`,
      target: 'switchyard-cache',
      path: `/cache/${size}`,
      headers: [],
      base: `nginx hit ${size}`,
      expectHeader: ['cache-status', /^switchyard; hit/],
    },
    {
      // The same cache route; the origin answers no-store, so every request is a miss.
      name: `switchyard miss ${size}`,
      target: 'switchyard-cache',
      path: `/nostore/${size}`,
      headers: [],
      base: `switchyard hit ${size}`,
      expectHeader: ['cache-status', /^switchyard; fwd=miss$/],
    },
  ]),
  security: [
    ['switchyard plain', 'switchyard'],
    ['switchyard rateLimit', 'switchyard-ratelimit'],
    ['switchyard waf block', 'switchyard-waf'],
  ].map(([name, target]) => ({
    name,
    target,
    path: BROWSER_PATH,
    size: '1k',
    headers: BROWSER_HEADERS,
    base: 'switchyard plain',
  })),
  obs: ['1k', '100k'].flatMap((size) => [
    {
      name: `switchyard ${size}`,
      target: 'switchyard',
      path: `/${size}`,
      headers: [],
      base: `switchyard ${size}`,
    },
    {
      name: `switchyard-obs ${size}`,
      target: 'switchyard-obs',
      path: `/${size}`,
      headers: [],
      base: `switchyard ${size}`,
    },
  ]),
  workers: ['1k', '100k'].flatMap((size) =>
    [
      ['nginx 2 workers', 'nginx-w2'],
      ['switchyard 1 worker', 'switchyard-w1'],
      ['switchyard 2 workers', 'switchyard-w2'],
    ].map(([name, target]) => ({
      name: `${name} ${size}`,
      target,
      path: `/${size}`,
      headers: [],
      base: `nginx 2 workers ${size}`,
    })),
  ),
  h2: [
    ['nginx h2', 'nginx-h2', 'h2load', undefined, 'nginx h2'],
    ['switchyard h2', 'switchyard-h2', 'h2load', undefined, 'nginx h2'],
    ['nginx full handshake', 'nginx-h2', 's_time', 'new', 'nginx full handshake'],
    ['switchyard full handshake', 'switchyard-h2', 's_time', 'new', 'nginx full handshake'],
    ['nginx resumed', 'nginx-h2', 's_time', 'reuse', 'nginx resumed'],
    ['switchyard resumed', 'switchyard-h2', 's_time', 'reuse', 'nginx resumed'],
  ].map(([name, target, tool, mode, base]) => ({
    name,
    target,
    path: '/1k',
    headers: [],
    base,
    tool,
    mode,
  })),
};
/**
 * How each suite's table reads: its title, the ratio column, whether to show each case's base,
 * extra columns, and the issue targets checked as medians of per-round ratios of case a to b.
 */
const SUITE_INFO = {
  compression: { ratio: 'x nginx' },
  tls: {
    ratio: 'x nginx',
    checks: [
      [
        'HTTPS keep-alive rps >= 0.6x nginx',
        'switchyard keep-alive',
        'nginx keep-alive',
        'rps',
        0.6,
      ],
      [
        'HTTPS keep-alive rps per core >= 0.6x nginx',
        'switchyard keep-alive',
        'nginx keep-alive',
        'perCore',
        0.6,
      ],
      [
        'full handshakes/s >= 0.5x nginx',
        'switchyard new handshake',
        'nginx new handshake',
        'rps',
        0.5,
      ],
    ],
  },
  cache: {
    title: () =>
      `Cache (issue 5): objects the origin sends with Cache-Control: public, max-age=3600 (hits) or no-store (misses, through the same cache route), wrk -t${THREADS} -c${CONNS}, keep-alive. nginx: proxy_cache (files under WORK, in the page cache); Switchyard: cache: true, memory store.`,
    ratio: 'x base',
    showBase: true,
    checks: ['1k', '100k'].flatMap((s) => [
      [
        `${s} hits rps >= 0.7x nginx proxy_cache hits`,
        `switchyard hit ${s}`,
        `nginx hit ${s}`,
        'rps',
        0.7,
      ],
      [
        `${s} hits rps per core >= 0.7x nginx`,
        `switchyard hit ${s}`,
        `nginx hit ${s}`,
        'perCore',
        0.7,
      ],
      [`${s} hits rps >= 3x misses`, `switchyard hit ${s}`, `switchyard miss ${s}`, 'rps', 3],
      [
        `${s} hits rps per core >= 3x misses`,
        `switchyard hit ${s}`,
        `switchyard miss ${s}`,
        'perCore',
        3,
      ],
    ]),
  },
  security: {
    title: () =>
      `Security (issue 7): GET ${BROWSER_PATH} with browser-like headers (User-Agent, Accept, Accept-Language, Referer, Cookie), 1 KiB body, wrk -t${THREADS} -c${CONNS}; the same route plain, with rateLimit { rate: 1000000000/s, burst: 1000000000 } (never triggers) and with waf { mode: block }.`,
    ratio: 'x plain',
    checks: [
      [
        'rateLimit: rps loss < 15% (>= 0.85x plain)',
        'switchyard rateLimit',
        'switchyard plain',
        'rps',
        0.85,
      ],
      [
        'rateLimit: rps per core >= 0.85x plain',
        'switchyard rateLimit',
        'switchyard plain',
        'perCore',
        0.85,
      ],
      [
        'WAF block: rps loss < 25% (>= 0.75x plain)',
        'switchyard waf block',
        'switchyard plain',
        'rps',
        0.75,
      ],
      [
        'WAF block: rps per core >= 0.75x plain',
        'switchyard waf block',
        'switchyard plain',
        'perCore',
        0.75,
      ],
    ],
  },
  obs: {
    title: () =>
      `Observability (issue 8): switchyard-obs (JSON access log to a file, admin listener with metrics, tracing) vs the same config without, wrk -t${THREADS} -c${CONNS}.`,
    ratio: 'x off',
    checks: ['1k', '100k'].flatMap((s) => [
      [
        `${s} rps loss < 10% (on >= 0.9x off)`,
        `switchyard-obs ${s}`,
        `switchyard ${s}`,
        'rps',
        0.9,
      ],
      [
        `${s} rps per core on >= 0.9x off`,
        `switchyard-obs ${s}`,
        `switchyard ${s}`,
        'perCore',
        0.9,
      ],
    ]),
  },
  workers: {
    title: () =>
      `Workers (issue 9): every proxy here may use both cores (taskset ${BOTH_CPUS}); wrk and the origin stay on cpu ${LOAD_CPU}, so the proxies share that core with them. wrk -t${THREADS} -c${CONNS}; "proxy cores" is the whole process tree (primary + workers).`,
    ratio: 'x nginx',
    checks: ['1k', '100k'].flatMap((s) => [
      [
        `${s} workers 2 / workers 1 (rps)`,
        `switchyard 2 workers ${s}`,
        `switchyard 1 worker ${s}`,
        'rps',
      ],
      [
        `${s} workers 2 / nginx 2 workers (rps)`,
        `switchyard 2 workers ${s}`,
        `nginx 2 workers ${s}`,
        'rps',
      ],
      [
        `${s} workers 1 / nginx 2 workers (rps)`,
        `switchyard 1 worker ${s}`,
        `nginx 2 workers ${s}`,
        'rps',
      ],
    ]),
  },
  h2: {
    title: () =>
      `HTTP/2 and TLS handshakes (issue 4): h2load -t${THREADS} -c${H2_CONNS} -m${H2_STREAMS} over TLS (ALPN h2), 1 KiB body (h2load reports no percentiles: "mean ms" is its mean time per request); handshakes: ${S_TIME_CLIENTS} x openssl s_time -www /1k in parallel, -new (full handshake per connection) or -reuse (resumed session), "rps" is connections/s.`,
    ratio: 'x nginx',
    extra: {
      header: ['mean ms', 'resumed'],
      cells: (rs) => [
        ms(median(rs.map((r) => r.meanUs))),
        rs.some((r) => r.resumed !== undefined)
          ? `${fmt(100 * median(rs.map((r) => r.resumed)))}%`
          : '-',
      ],
    },
    checks: [
      ['HTTP/2 rps (no target in the issue)', 'switchyard h2', 'nginx h2', 'rps'],
      [
        'full handshakes/s >= 0.5x nginx (s_time -new)',
        'switchyard full handshake',
        'nginx full handshake',
        'rps',
        0.5,
      ],
      [
        'resumed handshakes/s (no target in the issue)',
        'switchyard resumed',
        'nginx resumed',
        'rps',
      ],
    ],
  },
};
for (const suite of SUITES)
  if (!SUITE_CASES[suite])
    throw new Error(`unknown suite ${suite} (${Object.keys(SUITE_CASES).join(' ')})`);
const suiteCases = SUITES.flatMap((suite) => SUITE_CASES[suite].map((c) => ({ ...c, suite })));

const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-');
const RESULTS = join(HERE, 'results', stamp);
const log = (msg) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

// ------------------------------------------------------------------ processes
const started = new Set();
function startBg(name, cpu, cmd, args, extraEnv = {}) {
  const logFile = join(RESULTS, 'logs', `${name}.log`);
  const child = spawn('taskset', ['-c', cpu, cmd, ...args], {
    detached: true, // own process group, so the whole tree is stopped together
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...env, ...extraEnv },
  });
  const chunks = [];
  child.stdout.on('data', (c) => chunks.push(c));
  child.stderr.on('data', (c) => chunks.push(c));
  child.on('exit', () => writeFileSync(logFile, Buffer.concat(chunks)));
  started.add(child);
  child.on('exit', () => started.delete(child));
  return child;
}
async function stopBg(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  try {
    process.kill(-child.pid, 'SIGTERM');
  } catch {
    return;
  }
  const timer = setTimeout(() => {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }, 5000);
  await exited;
  clearTimeout(timer);
}
function stopAllSync() {
  for (const child of started) {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}
process.on('exit', stopAllSync);
process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));

function get(url, headers = {}) {
  const client = url.startsWith('https:') ? https : http;
  return new Promise((resolve) => {
    // The bench's certificate is self-signed: no verification (ignored for http).
    const options = { agent: false, timeout: 1000, headers, rejectUnauthorized: false };
    const req = client.get(url, options, (res) => {
      let bytes = 0;
      res.on('data', (c) => (bytes += c.length));
      res.on('end', () =>
        resolve({
          status: res.statusCode,
          bytes,
          encoding: res.headers['content-encoding'],
          headers: res.headers,
        }),
      );
      res.on('error', () => resolve({ status: 0, bytes }));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve({ status: 0, bytes: 0 }));
  });
}
async function waitReady(url, child) {
  for (let i = 0; i < 150; i++) {
    if (child && child.exitCode !== null) return false;
    if ((await get(url)).status === 200) return true;
    await sleep(100);
  }
  return false;
}

/** pid plus all its descendants. */
function treePids(root) {
  const out = execFileSync('ps', ['-e', '-o', 'pid=,ppid=']).toString();
  const parent = new Map();
  for (const line of out.trim().split('\n')) {
    const [pid, ppid] = line.trim().split(/\s+/).map(Number);
    parent.set(pid, ppid);
  }
  const keep = new Set([root]);
  for (let changed = true; changed;) {
    changed = false;
    for (const [pid, ppid] of parent)
      if (!keep.has(pid) && keep.has(ppid)) {
        keep.add(pid);
        changed = true;
      }
  }
  return [...keep];
}
const readOr = (path, dflt) => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return dflt;
  }
};
const rssKiB = (pids) =>
  pids.reduce((sum, pid) => {
    const m = /VmRSS:\s+(\d+)/.exec(readOr(`/proc/${pid}/status`, ''));
    return sum + (m ? Number(m[1]) : 0);
  }, 0);
const cpuTicks = (pids) =>
  pids.reduce((sum, pid) => {
    const stat = readOr(`/proc/${pid}/stat`, '');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return sum + (fields.length > 12 ? Number(fields[11]) + Number(fields[12]) : 0);
  }, 0);
/** Busy and total jiffies per CPU, to see foreign load on the proxy's core. */
function cpuSnap() {
  const snap = {};
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = /^cpu(\d+) (.*)$/.exec(line);
    if (!m) continue;
    const v = m[2].trim().split(/\s+/).map(Number);
    const idle = v[3] + v[4];
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    snap[m[1]] = { busy: total - idle, total };
  }
  return snap;
}
const HZ = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

// ------------------------------------------------------------------ setup
function writeFiles() {
  mkdirSync(join(RESULTS, 'logs'), { recursive: true });
  mkdirSync(join(RESULTS, 'raw'), { recursive: true });
  for (const d of ['origin/html', 'origin/logs', 'origin/tmp', 'nginx/logs', 'nginx/tmp'])
    mkdirSync(join(WORK, d), { recursive: true });
  const line = 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-_\n';
  const text = (n) => line.repeat(Math.ceil(n / line.length)).slice(0, n);
  // The obs target's access log starts empty each run: appended to across runs it grew to
  // gigabytes, and the kernel writing back what earlier runs left skewed the obs numbers.
  writeFileSync(join(WORK, 'access.log'), '');
  writeFileSync(join(WORK, 'origin/html/1k'), text(1024));
  writeFileSync(join(WORK, 'origin/html/100k'), text(102400));
  if (SUITES.includes('compression'))
    writeFileSync(join(WORK, `origin/html${JSON_PATH}`), jsonBody(102400));
  const temps =
    'client_body_temp_path tmp/body; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/fastcgi;\n' +
    '    uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;';
  const head = `daemon off;\nmaster_process on;\npid logs/nginx.pid;\nerror_log stderr warn;\nevents { worker_connections 8192; }\n`;
  // Same settings as ../shared/bench/anchors/nginx-origin.conf and nginx-proxy.conf.
  writeFileSync(
    join(WORK, 'origin.conf'),
    `${head}http {
    access_log off; sendfile on; tcp_nopush off; tcp_nodelay on;
    keepalive_timeout 75s; keepalive_requests 10000000;
    open_file_cache max=64 inactive=60s; open_file_cache_valid 60s;
    default_type text/plain;
    ${temps}
    server {
        listen ${ORIGIN} backlog=4096; root html; location / { }
        location = ${JSON_PATH} { default_type application/json; }${originCacheLocations()}
    }
}\n`,
  );
  writeFileSync(
    join(WORK, 'nginx-proxy.conf'),
    `${head}http {
    access_log off; tcp_nodelay on;
    keepalive_timeout 75s; keepalive_requests 10000000;
    ${temps}
    upstream origin { server ${ORIGIN}; keepalive 64; keepalive_requests 10000000; keepalive_timeout 60s; }
    server {
        listen 127.0.0.1:${PORTS.nginx} backlog=4096;
        location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}\n`,
  );
  if (SUITES.length > 0) writeSuiteFiles(head, temps);
  // The smallest config proxying everything to the origin; the same on undici's Pool instead
  // of Switchyard's own HTTP/1.1 client (A/B of the engine); the same with observability on:
  // JSON access log to a file, admin listener (Prometheus metrics and the dashboard's live
  // stats) and tracing (on by default in all three).
  switchyardConf('switchyard');
  switchyardConf('switchyard-undici');
  switchyardConf('switchyard-obs', '', {
    top: `accessLog: { format: json, output: ${JSON.stringify(join(WORK, 'access.log'))} }
admin: { address: 127.0.0.1:${PORTS['switchyard-obs'] + 1} }
`,
  });
  // wrk: keep its fast C path, print one machine-readable line at the end.
  writeFileSync(
    join(WORK, 'report.lua'),
    `done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRKJSON {\\"requests\\":%d,\\"duration_us\\":%d,\\"bytes\\":%d,\\"p50_us\\":%d,\\"p99_us\\":%d,\\"p999_us\\":%d,\\"errors\\":%d}\\n",
    summary.requests, summary.duration, summary.bytes, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), e.connect + e.read + e.write + e.status + e.timeout))
end
`,
  );
}

/**
 * A JSON document of about `size` bytes, the same on every run: an API-like list of records,
 * repetitive in its keys and varied in its values, as real API responses are.
 */
function jsonBody(size) {
  let state = 42;
  const next = () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0);
  const words = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel'];
  const items = [];
  let length = 2;
  for (let id = 1; length < size - 200; id++) {
    const item = {
      id,
      sku: `SKU-${(next() % 1e6).toString().padStart(6, '0')}`,
      name: `${words[next() % 8]} ${words[next() % 8]} ${next() % 1000}`,
      price: (next() % 100000) / 100,
      stock: next() % 500,
      tags: [words[next() % 8], words[next() % 8]],
      active: next() % 2 === 0,
      updated: new Date(1.7e12 + (next() % 1e9) * 1000).toISOString(),
    };
    const text = JSON.stringify(item);
    length += text.length + 1;
    items.push(text);
  }
  return `[${items.join(',')}]`;
}

/**
 * The cache suite's origin paths: the same files, cacheable for an hour under /cache/ and
 * no-store under /nostore/. Written whatever the suites, so the origin config left in WORK
 * serves every path for measurements by hand after any run.
 */
function originCacheLocations() {
  const html = join(WORK, 'origin/html/');
  return `
        location /cache/ { alias ${html}; add_header Cache-Control "public, max-age=3600"; }
        location /nostore/ { alias ${html}; add_header Cache-Control "no-store"; }`;
}

/** nginx and Switchyard configs (and the test certificate) of the optional suites. */
/**
 * Writes `WORK/<name>.yaml`: one listener on the target's port, the origin as the only upstream,
 * one catch-all route (`route`: YAML lines added to it), plus `extra.listener` lines under the
 * listener and `extra.top` top-level sections. Every benchmark client is 127.0.0.1, so the
 * per-address connection cap (default 256) is raised for the c1000 phase.
 */
function switchyardConf(name, route = '', extra = {}) {
  writeFileSync(
    join(WORK, `${name}.yaml`),
    `listeners:
  - name: bench
    address: 127.0.0.1:${PORTS[name]}
    limits: { maxConnections: 100000, maxConnectionsPerIp: 100000, idleTimeout: 75s }${extra.listener ?? ''}
upstreams:
  origin:
    servers:
      - url: http://${ORIGIN}
routes:
  - upstream: origin${route}
${extra.top ?? ''}`,
  );
}

function writeSuiteFiles(head, temps) {
  for (const n of ['nginx-gzip', 'nginx-tls', 'nginx-cache', 'nginx-h2', 'nginx-w2'])
    for (const d of ['logs', 'tmp']) mkdirSync(join(WORK, n, d), { recursive: true });
  const upstream = `upstream origin { server ${ORIGIN}; keepalive 64; keepalive_requests 10000000; keepalive_timeout 60s; }`;
  const pass = `location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; }`;
  if (SUITES.includes('compression')) {
    // gzip_vary matches Switchyard, which always sends Vary: Accept-Encoding.
    writeFileSync(
      join(WORK, 'nginx-gzip.conf'),
      `${head}http {
    access_log off; tcp_nodelay on;
    keepalive_timeout 75s; keepalive_requests 10000000;
    ${temps}
    gzip on; gzip_comp_level 6; gzip_types application/json; gzip_vary on;
    ${upstream}
    server { listen 127.0.0.1:${PORTS['nginx-gzip']} backlog=4096; ${pass} }
}\n`,
    );
    switchyardConf(
      'switchyard-compress',
      `
    compression:
      algorithms: [br, gzip]
      types: [application/json]
      level: { br: 4, gzip: 6 }`,
    );
  }
  const cert = join(WORK, 'tls-cert.pem');
  const key = join(WORK, 'tls-key.pem');
  if (SUITES.includes('tls') || SUITES.includes('h2')) {
    // One certificate for both proxies: ECDSA P-256, self-signed for 127.0.0.1 and localhost.
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-days',
        '30',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=IP:127.0.0.1,DNS:localhost',
        '-keyout',
        key,
        '-out',
        cert,
      ],
      { stdio: 'ignore' },
    );
    // Protocols and session handling as Switchyard's defaults: TLS 1.2 and 1.3, tickets on.
    writeFileSync(
      join(WORK, 'nginx-tls.conf'),
      `${head}http {
    access_log off; tcp_nodelay on;
    keepalive_timeout 75s; keepalive_requests 10000000;
    ${temps}
    ${upstream}
    server {
        listen 127.0.0.1:${PORTS['nginx-tls']} ssl backlog=4096;
        ssl_certificate ${cert}; ssl_certificate_key ${key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ${pass}
    }
}\n`,
    );
    switchyardConf('switchyard-tls', '', {
      listener: `
    tls:
      certificates:
        - { cert: ${JSON.stringify(cert)}, key: ${JSON.stringify(key)} }`,
    });
  }
  const proxyConf = (name, extraHttp, listen, serverExtra = '', location = pass) =>
    writeFileSync(
      join(WORK, `${name}.conf`),
      `${head}http {
    access_log off; tcp_nodelay on;
    keepalive_timeout 75s; keepalive_requests 10000000;
    ${temps}
    ${extraHttp}
    ${upstream}
    server {
        listen 127.0.0.1:${PORTS[name]} ${listen};${serverExtra}
        ${location}
    }
}\n`,
    );
  if (SUITES.includes('cache')) {
    // proxy_cache keeps bodies in files (here under WORK, so in the page cache after the first
    // hit); it follows the origin's Cache-Control like Switchyard's RFC 9111 cache.
    proxyConf(
      'nginx-cache',
      `proxy_cache_path ${join(WORK, 'nginx-cache/cache')} levels=1:2 keys_zone=bench:10m max_size=256m inactive=60m use_temp_path=off;`,
      'backlog=4096',
      '',
      `location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_cache bench; add_header X-Cache-Status $upstream_cache_status; }`,
    );
    switchyardConf('switchyard-cache', '\n    cache: true', {
      listener: '',
      top: 'cache: { store: memory, maxSize: 256MiB }\n',
    });
  }
  if (SUITES.includes('security')) {
    // A limit no benchmark reaches: the filter runs (key, bucket) but never answers 429.
    switchyardConf(
      'switchyard-ratelimit',
      '\n    rateLimit: { rate: 1000000000/s, burst: 1000000000 }',
    );
    switchyardConf('switchyard-waf', '\n    waf: { mode: block }');
  }
  if (SUITES.includes('h2')) {
    proxyConf(
      'nginx-h2',
      '',
      'ssl http2 backlog=4096',
      `
        ssl_certificate ${cert}; ssl_certificate_key ${key};
        ssl_protocols TLSv1.2 TLSv1.3;`,
    );
    switchyardConf('switchyard-h2', '', {
      listener: `
    http2: true
    tls:
      certificates:
        - { cert: ${JSON.stringify(cert)}, key: ${JSON.stringify(key)} }`,
      top: '',
    });
  }
  if (SUITES.includes('workers')) {
    proxyConf('nginx-w2', '', 'backlog=4096'); // worker_processes 2 on the command line
    switchyardConf('switchyard-w1', '', { listener: '', top: 'workers: 1\n' });
    switchyardConf('switchyard-w2', '', { listener: '', top: 'workers: 2\n' });
  }
}

function startOrigin() {
  return startBg('origin', LOAD_CPU, '/usr/sbin/nginx', [
    '-p',
    `${WORK}/origin/`,
    '-c',
    join(WORK, 'origin.conf'),
    '-e',
    'stderr',
    '-g',
    'worker_processes 1;',
  ]);
}

function startTarget(name) {
  switch (name) {
    case 'nginx':
      return startBg('nginx', PROXY_CPU, '/usr/sbin/nginx', [
        '-p',
        `${WORK}/nginx/`,
        '-c',
        join(WORK, 'nginx-proxy.conf'),
        '-e',
        'stderr',
        '-g',
        'worker_processes 1;',
      ]);
    case 'nginx-gzip':
    case 'nginx-tls':
    case 'nginx-cache':
    case 'nginx-h2':
    case 'nginx-w2': {
      const two = name === 'nginx-w2';
      return startBg(name, two ? BOTH_CPUS : PROXY_CPU, '/usr/sbin/nginx', [
        '-p',
        `${WORK}/${name}/`,
        '-c',
        join(WORK, `${name}.conf`),
        '-e',
        'stderr',
        '-g',
        `worker_processes ${two ? 2 : 1};`,
      ]);
    }
    case 'switchyard-w1':
    case 'switchyard-w2':
      return startBg(name, BOTH_CPUS, process.execPath, [
        ...SWITCHYARD_NODE_OPTS,
        join(ROOT, 'bin/switchyard'),
        'run',
        '-c',
        join(WORK, `${name}.yaml`),
      ]);
    case 'switchyard-compress':
    case 'switchyard-tls':
    case 'switchyard-cache':
    case 'switchyard-ratelimit':
    case 'switchyard-waf':
    case 'switchyard-h2':
      return startBg(name, PROXY_CPU, process.execPath, [
        ...SWITCHYARD_NODE_OPTS,
        join(ROOT, 'bin/switchyard'),
        'run',
        '-c',
        join(WORK, `${name}.yaml`),
      ]);
    case 'switchyard':
      return startBg('switchyard', PROXY_CPU, process.execPath, [
        ...SWITCHYARD_NODE_OPTS,
        join(ROOT, 'bin/switchyard'),
        'run',
        '-c',
        join(WORK, 'switchyard.yaml'),
      ]);
    case 'switchyard-obs':
      return startBg('switchyard-obs', PROXY_CPU, process.execPath, [
        ...SWITCHYARD_NODE_OPTS,
        join(ROOT, 'bin/switchyard'),
        'run',
        '-c',
        join(WORK, 'switchyard-obs.yaml'),
      ]);
    case 'switchyard-undici':
      return startBg(
        'switchyard-undici',
        PROXY_CPU,
        process.execPath,
        [
          ...SWITCHYARD_NODE_OPTS,
          join(ROOT, 'bin/switchyard'),
          'run',
          '-c',
          join(WORK, 'switchyard-undici.yaml'),
        ],
        { SWITCHYARD_UPSTREAM_CLIENT: 'undici' },
      );
    case 'node-https-floor':
      return startBg(
        name,
        PROXY_CPU,
        process.execPath,
        [...NODE_OPTS, join(HERE, 'node-floor.mjs')],
        {
          PORT: String(PORTS[name]),
          TLS_CERT: join(WORK, 'tls-cert.pem'),
          TLS_KEY: join(WORK, 'tls-key.pem'),
        },
      );
    case 'ceiling':
    case 'ceiling-http':
    case 'ceiling-hwm':
      return startBg(
        name,
        PROXY_CPU,
        process.execPath,
        [...NODE_OPTS, join(HERE, 'ceiling-proxy.mjs')],
        { PORT: String(PORTS[name]), UPSTREAM: ORIGIN, ...CEILING_VARIANTS[name] },
      );
    default:
      throw new Error(
        `unknown target ${name} (direct nginx switchyard switchyard-obs switchyard-undici ceiling ceiling-http ceiling-hwm)`,
      );
  }
}

// ------------------------------------------------------------------ measuring
function wrk(args) {
  return new Promise((resolve) => {
    execFile(
      'taskset',
      ['-c', LOAD_CPU, 'wrk', ...args],
      { maxBuffer: 1 << 20 },
      (err, stdout, stderr) => resolve(String(stdout) + String(stderr)),
    );
  });
}

/** `cmd args` on LOAD_CPU, resolving with its stdout and stderr (never rejecting). */
function onLoadCpu(cmd, args) {
  return new Promise((resolve) => {
    execFile('taskset', ['-c', LOAD_CPU, cmd, ...args], { maxBuffer: 16 << 20 }, (err, o, e) =>
      resolve(String(o) + String(e)),
    );
  });
}
/** h2load's durations: "1.23ms", "850us", "1.2s" -> microseconds. */
const h2loadUs = (text) => {
  const m = /^([\d.]+)(us|ms|s)$/.exec(text ?? '');
  return m ? Number(m[1]) * { us: 1, ms: 1e3, s: 1e6 }[m[2]] : NaN;
};
/**
 * Runs a case's load generator for `seconds` and returns its raw output and totals in wrk's
 * terms (`result` null when the tool failed or measured the wrong thing): wrk (default),
 * h2load (HTTP/2 over TLS; no percentiles, a mean) or openssl s_time (TLS connections/s with a
 * request each, `mode` new or reuse; S_TIME_CLIENTS processes, each one connection at a time).
 */
async function runLoad(tool, { url, headers, conns, threads, seconds, mode, final }) {
  if (tool === 'h2load') {
    const out = await onLoadCpu('h2load', [
      `-t${threads}`,
      `-c${H2_CONNS}`,
      `-m${H2_STREAMS}`,
      `-D${seconds}`,
      ...headers.flatMap((h) => ['-H', h]),
      url,
    ]);
    const fin = /finished in ([\d.]+(?:us|ms|s)), ([\d.]+) req\/s/.exec(out);
    const req =
      /requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(
        out,
      );
    const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out);
    const traffic = /traffic: \S+ \((\d+)\) total/.exec(out);
    const time = /time for request:\s+(\S+)\s+(\S+)\s+(\S+)/.exec(out);
    const protocol = /Application protocol: (\S+)/.exec(out)?.[1];
    if (!fin || !req || !codes || protocol !== 'h2') return { out, result: null };
    // `succeeded` counts requests completed within the duration (status codes also count the
    // responses that arrived while stopping); errors are the failures plus 4xx/5xx responses.
    const ok = Number(req[3]);
    return {
      out,
      result: {
        requests: ok,
        duration_us: h2loadUs(fin[1]),
        bytes: traffic ? Number(traffic[1]) : 0,
        p50_us: NaN,
        p99_us: NaN,
        p999_us: NaN,
        mean_us: h2loadUs(time?.[3]),
        errors:
          Number(req[4]) + Number(req[5]) + Number(req[6]) + Number(codes[3]) + Number(codes[4]),
      },
    };
  }
  if (tool === 's_time') {
    const { host, port, pathname } = new URL(url);
    // s_time reports whole seconds only, so the rate uses the wall time of the whole batch.
    const started = process.hrtime.bigint();
    const outs = await Promise.all(
      Array.from({ length: S_TIME_CLIENTS }, () =>
        onLoadCpu('openssl', [
          's_time',
          '-connect',
          host.includes(':') ? host : `${host}:${port}`,
          `-${mode}`,
          '-time',
          String(seconds),
          '-www',
          pathname,
        ]),
      ),
    );
    const wall = Number(process.hrtime.bigint() - started) / 1e9;
    const out = outs.join('\n----\n');
    let connections = 0;
    let bytes = 0;
    let resumed = 0;
    let marks = 0;
    for (const o of outs) {
      const m = /(\d+) connections in ([\d.]+) real seconds, (\d+) bytes read per connection/.exec(
        o,
      );
      if (!m) return { out, result: null };
      connections += Number(m[1]);
      bytes += Number(m[1]) * Number(m[3]);
      // s_time prints one character per connection on its own lines: 'r' for a resumed session.
      for (const line of o.match(/^[rt3*]+$/gm) ?? []) {
        resumed += (line.match(/r/g) ?? []).length;
        marks += line.length;
      }
    }
    if (connections === 0) return { out, result: null };
    return {
      out,
      result: {
        requests: connections,
        duration_us: wall * 1e6,
        bytes,
        p50_us: NaN,
        p99_us: NaN,
        p999_us: NaN,
        mean_us: (S_TIME_CLIENTS * wall * 1e6) / connections,
        resumed: marks > 0 ? resumed / marks : NaN,
        errors: (out.match(/ERROR|error/g) ?? []).length,
      },
    };
  }
  const out = await wrk([
    `-t${threads}`,
    `-c${conns}`,
    ...headers.flatMap((h) => ['-H', h]),
    `-d${seconds}s`,
    ...(final ? ['--latency', '-s', join(WORK, 'report.lua')] : []),
    url,
  ]);
  const m = /WRKJSON (\{.*\})/.exec(out);
  return { out, result: m ? JSON.parse(m[1]) : null };
}

async function measure({ target, size, round, conns, threads, duration, pid, ...suiteCase }) {
  // Suite cases bring their own URL, request headers, label and load generator.
  const {
    url = `http://127.0.0.1:${PORTS[target]}/${size}`,
    headers = [],
    label = target,
    tool = 'wrk',
    mode,
  } = suiteCase;
  const clients =
    tool === 'h2load' ? `${H2_CONNS}x${H2_STREAMS}` : tool === 's_time' ? S_TIME_CLIENTS : conns;
  const load = (seconds, final) =>
    runLoad(tool, { url, headers, conns, threads, seconds, mode, final });
  if (WARMUP > 0) await load(WARMUP, false);
  const pids = treePids(pid);
  let rss = rssKiB(pids);
  const sampler = setInterval(() => (rss = Math.max(rss, rssKiB(pids))), 200);
  const t0 = cpuTicks(pids);
  const c0 = cpuSnap();
  const { out, result: j } = await load(duration, true);
  const c1 = cpuSnap();
  const t1 = cpuTicks(pids);
  clearInterval(sampler);
  rss = Math.max(rss, rssKiB(pids));
  const file = `${label.replace(/[^\w.-]+/g, '_')}.${size.replace(/[^\w.-]+/g, '_')}`;
  writeFileSync(join(RESULTS, 'raw', `${file}.c${conns}.r${round}.txt`), out);
  if (!j) {
    log(`${tool} failed for ${label} ${size} round ${round}:\n${out}`);
    return null;
  }
  const seconds = j.duration_us / 1e6;
  const busy = (cpu) => {
    const d = c1[cpu].total - c0[cpu].total;
    return d > 0 ? (100 * (c1[cpu].busy - c0[cpu].busy)) / d : 0;
  };
  const measuredCores = (t1 - t0) / HZ / seconds;
  const row = {
    target,
    size,
    round,
    conns,
    rps: j.requests / seconds,
    p50: j.p50_us,
    p99: j.p99_us,
    p999: j.p999_us,
    meanUs: j.mean_us,
    resumed: j.resumed,
    errors: j.errors,
    bytesPerReq: j.requests > 0 ? j.bytes / j.requests : 0,
    rssKiB: rss,
    // CPU used by what we measure (the origin for `direct`), and how busy each core was:
    // busy% on the proxy core minus the proxy's own share is load from someone else.
    cores: measuredCores,
    // Requests per CPU-second of the measured process: much less sensitive than rps to other
    // load on the shared machine (a proxy that only got half its core still shows its cost).
    perCore: measuredCores > 0 ? j.requests / seconds / measuredCores : NaN,
    loadCpuBusy: busy(LOAD_CPU),
    proxyCpuBusy: busy(PROXY_CPU),
    foreignOnProxyCpu:
      target === 'direct' ? busy(PROXY_CPU) : Math.max(0, busy(PROXY_CPU) - 100 * measuredCores),
  };
  log(
    `r${round} ${label.padEnd(10)} ${size.padEnd(5)} c${String(clients).padEnd(4)} ${row.rps.toFixed(0).padStart(7)} rps` +
      `  p50 ${String(row.p50).padStart(6)}us  p99 ${String(row.p99).padStart(7)}us  rss ${(rss / 1024).toFixed(1)}MiB` +
      `  cores ${row.cores.toFixed(2)}  cpu% ${row.loadCpuBusy.toFixed(0)},${row.proxyCpuBusy.toFixed(0)}` +
      `  foreign ${row.foreignOnProxyCpu.toFixed(0)}%  err ${row.errors}`,
  );
  return row;
}

// ------------------------------------------------------------------ report
const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
};
const fmt = (x, digits = 0) => (Number.isFinite(x) ? x.toFixed(digits) : '-');
const ms = (us) => (Number.isFinite(us) ? (us / 1000).toFixed(2) : '-');

/** Tables of the optional suites: per case medians, ratios to the nginx case of the same kind. */
function suiteReport(suiteRows) {
  const lines = [];
  const pick = (name) => suiteRows.filter((r) => r.case === name);
  const perRound = (name, base, key) =>
    median(
      pick(name).map((r) => {
        const b = pick(base).find((x) => x.round === r.round);
        return b ? r[key] / b[key] : NaN;
      }),
    );
  for (const suite of SUITES) {
    const cases = SUITE_CASES[suite].filter((c) => pick(c.name).length > 0);
    if (cases.length === 0) continue;
    const compression = suite === 'compression';
    const info = SUITE_INFO[suite] ?? {};
    const x = info.ratio ?? 'x nginx';
    const extra = info.extra?.header ?? (compression ? ['body bytes', 'saved vs identity'] : []);
    lines.push(
      '',
      compression
        ? `Compression: ~100 KiB JSON (${suiteCases.find((c) => c.expect === undefined && c.suite === suite)?.bodyBytes ?? '?'} bytes), wrk -t${THREADS} -c${CONNS}, keep-alive; ratios to nginx with the same coding.`
        : suite === 'tls'
          ? `TLS: 1 KiB body over https, wrk -t${THREADS} -c${CONNS}; "new handshake" sends Connection: close (a full handshake per request); ratios to nginx in the same mode.`
          : info.title(),
      '',
      `| case |${info.showBase ? ' vs |' : ''} rps (median) | ${x} | p50 ms | p99 ms | p99 ${x} | proxy cores | rps per proxy core | per core ${x} |${extra.map((h) => ` ${h} |`).join('')} foreign load | errors |`,
      `|---|${info.showBase ? '---|' : ''}---:|---:|---:|---:|---:|---:|---:|---:|${extra.map(() => '---:|').join('')}---:|---:|`,
    );
    const identity = suiteCases.find((c) => c.suite === suite && c.expect === undefined);
    for (const c of cases) {
      const rs = pick(c.name);
      const body = suiteCases.find((x) => x.name === c.name)?.bodyBytes;
      const saved =
        compression && identity?.bodyBytes && body ? 1 - body / identity.bodyBytes : NaN;
      const cells = info.extra
        ? info.extra.cells(rs)
        : compression
          ? [body ?? '-', `${fmt(100 * saved, 1)}%`]
          : [];
      lines.push(
        `| ${c.name} |${info.showBase ? ` ${c.base === c.name ? '-' : c.base} |` : ''} ${fmt(median(rs.map((r) => r.rps)))} | ${fmt(perRound(c.name, c.base, 'rps'), 2)} | ` +
          `${ms(median(rs.map((r) => r.p50)))} | ${ms(median(rs.map((r) => r.p99)))} | ` +
          `${fmt(perRound(c.name, c.base, 'p99'), 2)} | ${fmt(median(rs.map((r) => r.cores)), 2)} | ` +
          `${fmt(median(rs.map((r) => r.perCore)))} | ${fmt(perRound(c.name, c.base, 'perCore'), 2)} |` +
          cells.map((v) => ` ${v} |`).join('') +
          ` ${fmt(median(rs.map((r) => r.foreignOnProxyCpu)))}% | ${rs.reduce((a, r) => a + r.errors, 0)} |`,
      );
    }
    if (compression) {
      const bytes = (name) => suiteCases.find((x) => x.name === name)?.bodyBytes;
      const [br, gzip, nginxGzip] = ['switchyard br 4', 'switchyard gzip 6', 'nginx gzip 6'].map(
        bytes,
      );
      if (br && gzip)
        lines.push(
          '',
          `br 4 vs gzip 6 (Switchyard): ${gzip - br} bytes fewer per response (${fmt(100 * (1 - br / gzip), 1)}% smaller); ` +
            `gzip 6, Switchyard vs nginx: ${gzip} vs ${nginxGzip ?? '-'} bytes.`,
        );
    }
    // Issue targets: medians of per-round ratios; a check without a limit is only reported.
    const checks = (info.checks ?? []).filter(([, a, b]) => pick(a).length && pick(b).length);
    if (checks.length > 0) {
      lines.push('', `| ${suite}: target | measured | verdict |`, '|---|---:|---|');
      for (const [name, a, b, key, limit] of checks) {
        const v = perRound(a, b, key);
        const verdict = limit === undefined ? '(ratio only)' : v >= limit ? 'met' : 'NOT met';
        lines.push(`| ${name} | ${fmt(v, 2)} | ${verdict} |`);
      }
    }
  }
  return lines;
}

function report(rows, high, suiteRows = []) {
  const lines = [];
  const conf =
    `rounds=${ROUNDS} duration=${DURATION}s warmup=${WARMUP}s wrk -t${THREADS} -c${CONNS}; ` +
    `origin + wrk on cpu ${LOAD_CPU}, proxy on cpu ${PROXY_CPU}; node ${process.version}; ` +
    `load average at start ${startLoad.map((x) => x.toFixed(2)).join(' ')}`;
  lines.push(`# Switchyard bench ${stamp}`, '', conf, '');
  lines.push(
    '| target | body | rps (median) | x nginx | x direct | p50 ms | p99 ms | p99 x nginx | proxy cores | rps per proxy core | per core x nginx | RSS MiB | foreign load on proxy cpu | errors |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  );
  const pick = (t, s) => rows.filter((r) => r.target === t && r.size === s);
  // Ratios are medians of per-round ratios (each round's runs are close in time, so they
  // share the same background noise), which is steadier than a ratio of medians.
  const perRound = (t, s, base, key) =>
    median(
      pick(t, s).map((r) => {
        const b = pick(base, s).find((x) => x.round === r.round);
        return b ? r[key] / b[key] : NaN;
      }),
    );
  for (const size of SIZES) {
    for (const t of TARGETS) {
      const rs = pick(t, size);
      if (rs.length === 0) continue;
      lines.push(
        `| ${t} | ${size} | ${fmt(median(rs.map((r) => r.rps)))} | ${fmt(perRound(t, size, 'nginx', 'rps'), 2)} | ` +
          `${fmt(perRound(t, size, 'direct', 'rps'), 2)} | ${ms(median(rs.map((r) => r.p50)))} | ${ms(median(rs.map((r) => r.p99)))} | ` +
          `${fmt(perRound(t, size, 'nginx', 'p99'), 2)} | ${fmt(median(rs.map((r) => r.cores)), 2)} | ` +
          `${fmt(median(rs.map((r) => r.perCore)))} | ${fmt(perRound(t, size, 'nginx', 'perCore'), 2)} | ` +
          `${fmt(Math.max(...rs.map((r) => r.rssKiB)) / 1024, 1)} | ${fmt(median(rs.map((r) => r.foreignOnProxyCpu)))}% | ` +
          `${rs.reduce((a, r) => a + r.errors, 0)} |`,
      );
    }
  }
  if (high.length > 0) {
    lines.push(
      '',
      `High concurrency: wrk -t${HIGH_THREADS} -c${HIGH_CONNS} -d${HIGH_DURATION}s, 1k body, keep-alive; peak RSS of the proxy process tree.`,
      '',
      '| target | rps | p50 ms | p99 ms | p99 x nginx | peak RSS MiB | errors |',
      '|---|---:|---:|---:|---:|---:|---:|',
    );
    const nginx = high.find((r) => r.target === 'nginx');
    for (const r of high) {
      lines.push(
        `| ${r.target} | ${fmt(r.rps)} | ${ms(r.p50)} | ${ms(r.p99)} | ${nginx ? fmt(r.p99 / nginx.p99, 2) : '-'} | ` +
          `${fmt(r.rssKiB / 1024, 1)} | ${r.errors} |`,
      );
    }
  }
  // Targets from issue 2.
  const sy = (s, k) => perRound('switchyard', s, 'nginx', k);
  const checks = [];
  if (TARGETS.includes('switchyard') && TARGETS.includes('nginx')) {
    if (SIZES.includes('1k')) checks.push(['1 KiB rps >= 0.4x nginx', sy('1k', 'rps'), 0.4, '>=']);
    if (SIZES.includes('100k'))
      checks.push(['100 KiB rps >= 0.6x nginx', sy('100k', 'rps'), 0.6, '>=']);
    for (const s of SIZES) checks.push([`${s} p99 <= 3x nginx`, sy(s, 'p99'), 3, '<=']);
    // The same rps targets on requests per proxy CPU-second (robust to a noisy shared machine).
    if (SIZES.includes('1k'))
      checks.push(['1 KiB rps per core >= 0.4x nginx', sy('1k', 'perCore'), 0.4, '>=']);
    if (SIZES.includes('100k'))
      checks.push(['100 KiB rps per core >= 0.6x nginx', sy('100k', 'perCore'), 0.6, '>=']);
  }
  // Issue 8: access log, metrics and tracing cost at most 10% of throughput.
  if (TARGETS.includes('switchyard') && TARGETS.includes('switchyard-obs')) {
    for (const s of SIZES) {
      const obs = (k) => perRound('switchyard-obs', s, 'switchyard', k);
      checks.push([`${s} rps with observability >= 0.9x without`, obs('rps'), 0.9, '>=']);
      checks.push([
        `${s} rps per core with observability >= 0.9x without`,
        obs('perCore'),
        0.9,
        '>=',
      ]);
    }
  }
  const hs = high.find((r) => r.target === 'switchyard');
  if (hs) checks.push([`RSS at ${HIGH_CONNS} clients < 120 MiB`, hs.rssKiB / 1024, 120, '<']);
  if (checks.length > 0) {
    lines.push('', '| target (issues 2, 8) | measured | verdict |', '|---|---:|---|');
    for (const [name, v, limit, op] of checks) {
      const ok = op === '>=' ? v >= limit : op === '<=' ? v <= limit : v < limit;
      lines.push(`| ${name} | ${fmt(v, 2)} | ${ok ? 'met' : 'NOT met'} |`);
    }
  }
  lines.push(...suiteReport(suiteRows));
  return lines.join('\n');
}

// ------------------------------------------------------------------ main
const startLoad = loadavg();
async function main() {
  const tools = [
    'wrk',
    'taskset',
    '/usr/sbin/nginx',
    ...(SUITES.includes('tls') || SUITES.includes('h2') ? ['openssl'] : []),
    ...(SUITES.includes('h2') ? ['h2load'] : []),
  ];
  for (const tool of tools) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    } catch {
      throw new Error(
        `${tool} not found: apt-get install -y nginx wrk util-linux${tool === 'h2load' ? ' nghttp2-client' : ''}`,
      );
    }
  }
  if (BUILD) {
    log('building (npx tsc -p tsconfig.build.json)');
    try {
      execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'ignore' });
    } catch {
      log('tsc reported type errors (dist/ is emitted anyway)');
    }
  }
  if (!existsSync(join(ROOT, 'dist/cli.js'))) throw new Error('dist/cli.js missing: build first');
  // Node 22.15+ would add them itself (process.execve); Node 20 needs them on the command line.
  const { missingHeapFlags } = await import('../dist/heap-tuning.js');
  SWITCHYARD_NODE_OPTS = [...NODE_OPTS, ...missingHeapFlags(NODE_OPTS)];
  writeFiles();
  log(`results in ${RESULTS}`);
  const origin = startOrigin();
  if (!(await waitReady(`http://${ORIGIN}/1k`, origin))) throw new Error('origin did not start');

  // Proxies stay up for the whole run (idle ones cost nothing), so rounds can interleave
  // targets quickly; each gets a warm-up before every measurement.
  const procs = { direct: origin };
  const wanted = [
    ...new Set([
      ...TARGETS,
      ...(HIGH_CONNS > 0 ? HIGH_TARGETS : []),
      ...suiteCases.map((c) => c.target),
    ]),
  ];
  for (const t of wanted) {
    if (t === 'direct') continue;
    procs[t] = startTarget(t);
    const base = baseUrl(t);
    if (!(await waitReady(`${base}/1k`, procs[t])))
      throw new Error(`${t} did not become ready (see ${RESULTS}/logs)`);
    const check = await get(`${base}/100k`);
    if (check.bytes !== 102400) log(`WARNING: ${t} returned ${check.bytes} bytes for /100k`);
  }

  // A fresh node process runs cold (interpreted, then optimising) for its first seconds; warm
  // every target once so round 1 is not a JIT benchmark.
  if (PREWARM > 0) {
    log(`pre-warming every target for ${PREWARM}s per body size`);
    for (const target of TARGETS)
      for (const size of SIZES)
        await wrk([
          `-t${THREADS}`,
          `-c${CONNS}`,
          `-d${PREWARM}s`,
          `http://127.0.0.1:${PORTS[target]}/${size}`,
        ]);
  }
  const rows = [];
  for (let round = 1; round <= ROUNDS; round++) {
    for (const target of TARGETS) {
      for (const size of SIZES) {
        const row = await measure({
          target,
          size,
          round,
          conns: CONNS,
          threads: THREADS,
          duration: DURATION,
          pid: procs[target].pid,
        });
        if (row) rows.push(row);
      }
    }
  }
  const suiteRows = await runSuites(procs);
  const high = [];
  if (HIGH_CONNS > 0) {
    for (const target of HIGH_TARGETS) {
      const row = await measure({
        target,
        size: '1k',
        round: 1,
        conns: HIGH_CONNS,
        threads: HIGH_THREADS,
        duration: HIGH_DURATION,
        pid: procs[target].pid,
      });
      if (row) high.push(row);
    }
  }
  for (const child of [...started]) await stopBg(child);
  const text = report(rows, high, suiteRows);
  writeFileSync(join(RESULTS, 'runs.json'), JSON.stringify({ rows, high, suiteRows }, null, 2));
  writeFileSync(join(RESULTS, 'report.md'), `${text}\n`);
  process.stdout.write(`${text}\n`);
}

/**
 * The optional suites: each case is checked once (status, coding, body size), pre-warmed, then
 * measured once per round, cases interleaved within a round like the main targets.
 */
async function runSuites(procs) {
  const suiteRows = [];
  if (suiteCases.length === 0) return suiteRows;
  for (const c of suiteCases) {
    const headers = Object.fromEntries(
      c.headers.map((h) => [h.slice(0, h.indexOf(':')), h.slice(h.indexOf(':') + 1).trim()]),
    );
    // A case that expects a header (a cache hit) gets one request first to store the object.
    if (c.expectHeader) await get(`${baseUrl(c.target)}${c.path}`, headers);
    const check = await get(`${baseUrl(c.target)}${c.path}`, headers);
    if (check.status !== 200 || check.encoding !== c.expect)
      throw new Error(
        `${c.name}: got status ${check.status}, Content-Encoding ${check.encoding ?? 'none'}; expected 200, ${c.expect ?? 'none'}`,
      );
    if (c.expectHeader) {
      const [name, pattern] = c.expectHeader;
      const value = check.headers?.[name];
      if (!pattern.test(value ?? ''))
        throw new Error(`${c.name}: got ${name}: ${value ?? '(none)'}; expected ${pattern}`);
    }
    c.bodyBytes = check.bytes;
    if (PREWARM > 0)
      await runLoad(c.tool ?? 'wrk', {
        url: `${baseUrl(c.target)}${c.path}`,
        headers: c.headers,
        conns: CONNS,
        threads: THREADS,
        seconds: PREWARM,
        mode: c.mode,
        final: false,
      });
  }
  for (let round = 1; round <= ROUNDS; round++) {
    for (const c of suiteCases) {
      const row = await measure({
        target: c.target,
        size: c.size ?? c.path.slice(1),
        round,
        conns: CONNS,
        threads: THREADS,
        duration: DURATION,
        pid: procs[c.target].pid,
        url: `${baseUrl(c.target)}${c.path}`,
        headers: c.headers,
        label: c.name,
        tool: c.tool,
        mode: c.mode,
      });
      if (row) suiteRows.push({ ...row, case: c.name, suite: c.suite, bodyBytes: c.bodyBytes });
    }
  }
  return suiteRows;
}

main().catch((err) => {
  log(`FATAL: ${err.message}`);
  process.exit(1);
});
