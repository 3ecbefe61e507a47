#!/usr/bin/env node
// A seeded, deterministic simulation of every balancer in src/upstream/lb/ (no sockets, no
// timers): a discrete-event model of one proxy sending requests to three servers with different
// latency distributions. It prints, per scenario and balancer, p50/p99 latency, the error rate
// and each server's share of the requests, and writes an SVG chart (hand-written, no deps).
//
//   npm run build && npm run bench:lb            (or: node bench/lb-sim.mjs [--requests N] [--seed S] [--out FILE])
//
// The model:
// - Open-loop Poisson arrivals (requests do not wait for each other, as on a busy site).
// - Each server has a fixed number of workers (`slots`); a request beyond them queues FIFO at
//   the server, so a server sent more than it can take builds a queue, as a real one does.
// - The latency a client sees is queueing + service time; the balancer sees the same number
//   (its `observe`, for ewma) and each server's requests in flight (`activeRequests`).
// - Common random numbers: every request carries its own draws (client, service-time noise, a
//   failure draw), so all balancers face exactly the same workload and differ only in choices.
// - Clients follow a Zipf-like popularity (a few hot clients), which is what ip-hash and
//   consistent-hash (keyed by the client address) have to live with.
// What it leaves out: health checks, passive ejection, retries and several proxy instances.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { balancerNames, createBalancer } from '../dist/upstream/lb/index.js';
import { seededRandom } from '../dist/upstream/clock.js';

const here = dirname(fileURLToPath(import.meta.url));

function argValue(name, fallback) {
  const i = process.argv.indexOf(name);
  return i === -1 ? fallback : process.argv[i + 1];
}
const REQUESTS = Number(argValue('--requests', 60_000));
const SEED = Number(argValue('--seed', 42));
const OUT = argValue('--out', join(here, 'results', 'lb-sim.svg'));
const CLIENTS = 2000;

/**
 * Server models. `service(draw, t)` gives { ms, failed } for one request from its own uniform
 * draws, at simulated time t (so a server can turn slow part-way through).
 */
const lognormal = (median, sigma, z) => median * Math.exp(sigma * z);

const SCENARIOS = [
  {
    name: 'mixed',
    title: 'fast, slow (4x) and flaky servers, 240 req/s',
    // Round-robin gives "slow" 80 req/s of the ~88 it can take: busy, not overloaded.
    rate: 240,
    servers: [
      { name: 'fast', slots: 8, service: (d) => ({ ms: lognormal(20, 0.5, d.z), failed: false }) },
      { name: 'slow', slots: 8, service: (d) => ({ ms: lognormal(80, 0.5, d.z), failed: false }) },
      {
        name: 'flaky',
        slots: 8,
        // 5% fail fast (a 502 after 2 ms), 2% hang for ~800 ms, the rest like "fast".
        service: (d) =>
          d.u < 0.05
            ? { ms: 2, failed: true }
            : d.u < 0.07
              ? { ms: lognormal(800, 0.3, d.z), failed: false }
              : { ms: lognormal(20, 0.5, d.z), failed: false },
      },
    ],
  },
  {
    name: 'turns-slow',
    title: 'three equal servers; "c" turns 10x slower half-way, 300 req/s',
    rate: 300,
    servers: ['a', 'b', 'c'].map((name) => ({
      name,
      slots: 8,
      service: (d, t, half) => ({
        ms: lognormal(name === 'c' && t >= half ? 200 : 20, 0.5, d.z),
        failed: false,
      }),
    })),
  },
];

/** A binary min-heap of events ordered by time (then by sequence, for determinism). */
class EventQueue {
  heap = [];
  seq = 0;
  push(time, event) {
    event.time = time;
    event.seq = this.seq++;
    const h = this.heap;
    h.push(event);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(h[i], h[p])) break;
      [h[i], h[p]] = [h[p], h[i]];
      i = p;
    }
  }
  pop() {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && before(h[l], h[m])) m = l;
        if (r < h.length && before(h[r], h[m])) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m], h[i]];
        i = m;
      }
    }
    return top;
  }
  get size() {
    return this.heap.length;
  }
}
const before = (a, b) => a.time < b.time || (a.time === b.time && a.seq < b.seq);

/** The workload: the same for every balancer of a scenario. */
function makeWorkload(rate, seed) {
  const random = seededRandom(seed);
  const normal = () => {
    // Box-Muller; 1 - random() keeps the log finite.
    const u = 1 - random();
    const v = random();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  };
  // Zipf (s = 1) over CLIENTS client addresses: client k has weight 1/k.
  const cumulative = new Float64Array(CLIENTS);
  let sum = 0;
  for (let k = 0; k < CLIENTS; k++) cumulative[k] = sum += 1 / (k + 1);
  const pickClient = (u) => {
    let lo = 0;
    let hi = CLIENTS - 1;
    const target = u * sum;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cumulative[mid] < target) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  const requests = [];
  let t = 0;
  for (let i = 0; i < REQUESTS; i++) {
    t += (-Math.log(1 - random()) * 1000) / rate;
    const client = pickClient(random());
    requests.push({
      at: t,
      clientIp: `10.${(client >> 16) & 255}.${(client >> 8) & 255}.${client & 255}`,
      z: normal(),
      u: random(),
    });
  }
  return requests;
}

/** The fields balancers read from a Host, on a plain object (no pool, no sockets). */
function simHost(model, index) {
  return {
    upstream: 'sim',
    origin: `http://server-${index}.sim:80`,
    weight: 1,
    effectiveWeight: 1,
    available: true,
    backup: false,
    activeRequests: 0,
    lbState: 0,
    ewmaMs: 0,
    ewmaStamp: 0,
    // Simulation state, not read by balancers.
    model,
    busy: 0,
    waiting: [],
    served: 0,
  };
}

function percentile(sorted, p) {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

function simulate(scenario, balancerName, workload) {
  const clock = { now: () => now };
  let now = 0;
  const upstream = {
    name: 'sim',
    balancer: balancerName,
    hashKey: balancerName === 'consistent-hash' ? '{client_ip}' : undefined,
  };
  const balancer = createBalancer(upstream, { random: seededRandom(SEED + 1), clock });
  const hosts = scenario.servers.map(simHost);
  const half = workload[Math.floor(workload.length / 2)].at;
  const queue = new EventQueue();
  for (const request of workload) queue.push(request.at, { kind: 'arrive', request });
  const latencies = [];
  const lateLatencies = [];
  let failed = 0;

  const start = (host, job) => {
    host.busy++;
    const { ms, failed: fails } = host.model.service(job.request, now, half);
    queue.push(now + ms, { kind: 'done', host, job, failed: fails });
  };

  while (queue.size > 0) {
    const event = queue.pop();
    now = event.time;
    if (event.kind === 'arrive') {
      const ctx = { clientIp: event.request.clientIp, headers: {} };
      const host = balancer.select(hosts, ctx, undefined);
      host.activeRequests++;
      host.served++;
      const job = { request: event.request, sentAt: now };
      if (host.busy < host.model.slots) start(host, job);
      else host.waiting.push(job);
    } else {
      const { host, job } = event;
      host.busy--;
      host.activeRequests--;
      const latency = now - job.sentAt;
      balancer.observe?.(host, latency, event.failed);
      if (event.failed) failed++;
      latencies.push(latency);
      if (job.request.at >= half) lateLatencies.push(latency);
      const next = host.waiting.shift();
      if (next !== undefined) start(host, next);
    }
  }
  latencies.sort((a, b) => a - b);
  lateLatencies.sort((a, b) => a - b);
  return {
    balancer: balancerName,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    lateP99: percentile(lateLatencies, 0.99),
    errorRate: failed / workload.length,
    shares: hosts.map((h) => h.served / workload.length),
  };
}

const fmtMs = (ms) => (ms >= 100 ? ms.toFixed(0) : ms.toFixed(1));
const pct = (x) => `${(x * 100).toFixed(1)}%`;

function table(scenario, results) {
  const late = scenario.name === 'turns-slow';
  const head = [
    'balancer',
    'p50 ms',
    'p99 ms',
    ...(late ? ['p99 ms, 2nd half'] : []),
    'errors',
    ...scenario.servers.map((s) => `share ${s.name}`),
  ];
  const rows = results.map((r) => [
    `\`${r.balancer}\``,
    fmtMs(r.p50),
    fmtMs(r.p99),
    ...(late ? [fmtMs(r.lateP99)] : []),
    pct(r.errorRate),
    ...r.shares.map(pct),
  ]);
  const line = (cells) => `| ${cells.join(' | ')} |`;
  return [line(head), line(head.map(() => '---')), ...rows.map(line)].join('\n');
}

// ---- SVG: per scenario, a log-scale latency panel (p50 dot, p99 bar) and a share panel ----
const COLORS = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f'];
const esc = (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');

function svgChart(all) {
  const rowH = 22;
  const labelW = 130;
  const panelW = 330;
  const gap = 40;
  const width = labelW + panelW + gap + panelW + 20;
  const parts = [];
  let y = 10;
  const maxLat = Math.max(...all.flatMap(({ results }) => results.map((r) => r.p99)));
  const minLat = 5;
  // The latency panel keeps 70 px on its right for the p99 labels.
  const logX = (ms) =>
    ((Math.log10(Math.max(ms, minLat)) - Math.log10(minLat)) /
      (Math.log10(maxLat) - Math.log10(minLat))) *
    ((panelW - 70) / panelW);
  for (const { scenario, results } of all) {
    parts.push(
      `<text x="10" y="${y + 16}" font-size="14" font-weight="bold">${esc(scenario.name)}: ${esc(scenario.title)}</text>`,
    );
    y += 28;
    const x0 = labelW;
    const x1 = labelW + panelW + gap;
    parts.push(
      `<text x="${x0}" y="${y + 10}" font-size="11">latency (log scale): bar = p99, dot = p50</text>`,
      `<text x="${x1}" y="${y + 10}" font-size="11">share of requests per server</text>`,
    );
    y += 18;
    const top = y;
    results.forEach((r, i) => {
      const cy = y + i * rowH;
      parts.push(
        `<text x="${labelW - 8}" y="${cy + 14}" font-size="12" text-anchor="end">${esc(r.balancer)}</text>`,
        `<rect x="${x0}" y="${cy + 4}" width="${(logX(r.p99) * panelW).toFixed(1)}" height="12" fill="#bab0ac"/>`,
        `<circle cx="${(x0 + logX(r.p50) * panelW).toFixed(1)}" cy="${cy + 10}" r="4" fill="#333"/>`,
        `<text x="${(x0 + logX(r.p99) * panelW + 4).toFixed(1)}" y="${cy + 14}" font-size="10">${fmtMs(r.p99)} ms</text>`,
      );
      let sx = x1;
      r.shares.forEach((share, s) => {
        const w = share * panelW;
        parts.push(
          `<rect x="${sx.toFixed(1)}" y="${cy + 4}" width="${w.toFixed(1)}" height="12" fill="${COLORS[s]}"/>`,
        );
        if (w > 28)
          parts.push(
            `<text x="${(sx + 3).toFixed(1)}" y="${cy + 14}" font-size="9" fill="#fff">${Math.round(share * 100)}%</text>`,
          );
        sx += w;
      });
    });
    y = top + results.length * rowH;
    // Axis ticks for the latency panel.
    for (const tick of [10, 100, 1000, 10_000, 100_000]) {
      if (tick > maxLat) break;
      const tx = x0 + logX(tick) * panelW;
      parts.push(
        `<line x1="${tx.toFixed(1)}" y1="${top}" x2="${tx.toFixed(1)}" y2="${y}" stroke="#ccc" stroke-dasharray="2,2"/>`,
        `<text x="${tx.toFixed(1)}" y="${y + 12}" font-size="9" text-anchor="middle">${tick} ms</text>`,
      );
    }
    // Legend for the share panel.
    scenario.servers.forEach((s, i) => {
      const lx = x1 + i * 80;
      parts.push(
        `<rect x="${lx}" y="${y + 4}" width="10" height="10" fill="${COLORS[i]}"/>`,
        `<text x="${lx + 14}" y="${y + 13}" font-size="10">${esc(s.name)}</text>`,
      );
    });
    y += 34;
  }
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" viewBox="0 0 ${width} ${y}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    ...parts,
    `</svg>`,
    '',
  ].join('\n');
}

const all = [];
for (const [i, scenario] of SCENARIOS.entries()) {
  const workload = makeWorkload(scenario.rate, SEED + 100 * i);
  const results = balancerNames().map((name) => simulate(scenario, name, workload));
  all.push({ scenario, results });
  console.log(`\n## ${scenario.name}: ${scenario.title}\n`);
  console.log(table(scenario, results));
}
mkdirSync(dirname(OUT), { recursive: true });
writeFileSync(OUT, svgChart(all));
console.log(`\n${REQUESTS} requests per balancer per scenario, seed ${SEED}; chart: ${OUT}`);
