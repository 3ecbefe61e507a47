#!/usr/bin/env node
// Summarises a V8 .cpuprofile (from `node --cpu-prof`): where the time goes by area (Switchyard,
// undici, node:http, streams, GC, ...), the top self-time functions, and for Switchyard's own
// functions their inclusive time and what they spend it on. Frames in dist/ are mapped back to
// src/*.ts through the emitted source maps. Usage: node bench/analyze-profile.mjs FILE [TOP]
import { readFileSync, existsSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const file = process.argv[2];
const TOP = Number(process.argv[3] ?? 30);
if (!file) {
  process.stderr.write('usage: node bench/analyze-profile.mjs FILE.cpuprofile [TOP]\n');
  process.exit(2);
}
const profile = JSON.parse(readFileSync(file, 'utf8'));

// ------------------------------------------------------------ source maps
const maps = new Map();
function sourceMapFor(url) {
  if (!maps.has(url)) {
    let map = null;
    try {
      const path = fileURLToPath(url);
      if (existsSync(`${path}.map`)) {
        map = {
          dir: dirname(path),
          map: new SourceMap(JSON.parse(readFileSync(`${path}.map`, 'utf8'))),
        };
      }
    } catch {
      map = null;
    }
    maps.set(url, map);
  }
  return maps.get(url);
}
/** "src/proxy/forward.ts:123" for dist frames, a short location otherwise. */
function location(cf) {
  const url = cf.url ?? '';
  if (url.includes('/dist/')) {
    const m = sourceMapFor(url);
    if (m) {
      const e = m.map.findEntry(cf.lineNumber, cf.columnNumber);
      if (e && e.originalSource) {
        const src = relative(ROOT, resolve(m.dir, e.originalSource.replace(/^file:\/\//, '')));
        return `${src}:${e.originalLine + 1}`;
      }
    }
  }
  if (url.includes('node_modules/'))
    return `${url.slice(url.lastIndexOf('node_modules/') + 13)}:${cf.lineNumber + 1}`;
  if (url.startsWith('node:')) return `${url}:${cf.lineNumber + 1}`;
  return url ? `${url}:${cf.lineNumber + 1}` : '(native)';
}
function area(cf) {
  const url = cf.url ?? '';
  const fn = cf.functionName;
  if (fn === '(garbage collector)') return 'GC';
  if (fn === '(idle)') return 'idle';
  if (fn === '(program)') return 'program (V8/native, unattributed)';
  if (fn === '(root)') return 'root';
  if (url.includes('/dist/')) return 'switchyard (src/)';
  if (url.includes('node_modules/undici')) return 'undici';
  if (url.includes('node_modules/')) return `npm:${url.split('node_modules/')[1].split('/')[0]}`;
  if (/^node:_http_|^node:http$/.test(url)) return 'node:http';
  if (/streams|^node:stream/.test(url)) return 'node streams';
  if (/^node:net$|stream_base_commons|^node:internal\/net/.test(url)) return 'node:net (sockets)';
  if (url.startsWith('node:')) return `node internals`;
  if (url === '') return 'native (builtins, C++)';
  return 'other';
}

// ------------------------------------------------------------ tree
const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const self = new Map();
const skipUntil = profile.startTime + Number(process.env.SKIP ?? 0) * 1e6;
let now = profile.startTime;
for (let i = 0; i < profile.samples.length; i++) {
  now += profile.timeDeltas[i] ?? 0;
  if (now < skipUntil) continue;
  const id = profile.samples[i];
  self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
}
const total = [...self.values()].reduce((a, b) => a + b, 0);
const idle = [...self]
  .filter(([id]) => nodes.get(id).callFrame.functionName === '(idle)')
  .reduce((a, [, t]) => a + t, 0);
const busy = total - idle;
const keyOf = (cf) => `${cf.functionName || '(anonymous)'}\t${location(cf)}`;
const pct = (t) => `${((100 * t) / busy).toFixed(1).padStart(5)}%`;

// inclusive time per node (post-order)
const incl = new Map();
const root = profile.nodes[0];
(function walk(n) {
  let t = self.get(n.id) ?? 0;
  for (const c of n.children ?? []) t += walk(nodes.get(c));
  incl.set(n.id, t);
  return t;
})(root);

const byArea = new Map();
const bySelf = new Map();
for (const [id, t] of self) {
  const cf = nodes.get(id).callFrame;
  if (cf.functionName === '(idle)') continue;
  byArea.set(area(cf), (byArea.get(area(cf)) ?? 0) + t);
  const k = keyOf(cf);
  bySelf.set(k, (bySelf.get(k) ?? 0) + t);
}

// inclusive per function (counted once per stack even when recursive), callers and callees
const inclFn = new Map();
const callees = new Map();
const callers = new Map();
(function walk(n, onStack) {
  const cf = n.callFrame;
  const k = keyOf(cf);
  const first = !onStack.has(k);
  if (first) inclFn.set(k, (inclFn.get(k) ?? 0) + incl.get(n.id));
  const p = parent.get(n.id);
  if (p !== undefined) {
    const pk = keyOf(nodes.get(p).callFrame);
    const m = callers.get(k) ?? new Map();
    m.set(pk, (m.get(pk) ?? 0) + incl.get(n.id));
    callers.set(k, m);
  }
  const m = callees.get(k) ?? new Map();
  for (const c of n.children ?? []) {
    const ck = keyOf(nodes.get(c).callFrame);
    m.set(ck, (m.get(ck) ?? 0) + incl.get(c));
  }
  callees.set(k, m);
  if (first) onStack.add(k);
  for (const c of n.children ?? []) walk(nodes.get(c), onStack);
  if (first) onStack.delete(k);
})(root, new Set());

const out = [];
const seconds = (profile.endTime - profile.startTime) / 1e6;
out.push(
  `profile ${file}: ${seconds.toFixed(1)} s wall, ${(busy / 1e6).toFixed(1)} s busy (idle ${(idle / 1e6).toFixed(1)} s); percentages are of busy time`,
);
out.push('', '## By area (self time)');
for (const [a, t] of [...byArea].sort((x, y) => y[1] - x[1])) out.push(`${pct(t)}  ${a}`);
out.push('', `## Top ${TOP} functions by self time`);
for (const [k, t] of [...bySelf].sort((x, y) => y[1] - x[1]).slice(0, TOP)) {
  const [fn, loc] = k.split('\t');
  // The heaviest caller says what a native or internal frame is doing for us.
  const top = [...(callers.get(k) ?? [])].sort((x, y) => y[1] - x[1])[0];
  const via = top ? `   <- ${top[0].replace('\t', ' ')}` : '';
  out.push(`${pct(t)}  ${fn}  ${loc}${via}`);
}
const ours = [...inclFn]
  .filter(([k]) => k.split('\t')[1].startsWith('src/'))
  .sort((x, y) => y[1] - x[1]);
out.push('', "## Switchyard's functions by inclusive time (self + callees)");
for (const [k, t] of ours.slice(0, TOP)) {
  const [fn, loc] = k.split('\t');
  out.push(`${pct(t)} incl ${pct(bySelf.get(k) ?? 0)} self  ${fn}  ${loc}`);
}
out.push(
  '',
  '## Where the top Switchyard functions spend their time (callees by inclusive time), and who calls them',
);
for (const [k, t] of ours.slice(0, 12)) {
  const [fn, loc] = k.split('\t');
  out.push(`${fn}  ${loc}  (${pct(t).trim()} incl)`);
  const cs = [...(callers.get(k) ?? [])].sort((x, y) => y[1] - x[1]).slice(0, 3);
  for (const [ck, ct] of cs) out.push(`   <- ${pct(ct)}  ${ck.replace('\t', '  ')}`);
  const ce = [...(callees.get(k) ?? [])].sort((x, y) => y[1] - x[1]).slice(0, 8);
  for (const [ck, ct] of ce) out.push(`   -> ${pct(ct)}  ${ck.replace('\t', '  ')}`);
}
process.stdout.write(`${out.join('\n')}\n`);
