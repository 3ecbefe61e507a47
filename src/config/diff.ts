/** A readable summary of what a reload changes, for the log line after SIGHUP. */
import type { Config, RouteConfig, UpstreamConfig } from './types.js';

export function diffConfigs(a: Config, b: Config): string[] {
  const out: string[] = [];

  const listenersA = new Map(a.listeners.map((l) => [l.name, l]));
  const listenersB = new Map(b.listeners.map((l) => [l.name, l]));
  for (const [name, l] of listenersA) {
    if (!listenersB.has(name)) out.push(`listener removed: ${name} (${l.addressText})`);
  }
  for (const [name, l] of listenersB) {
    const old = listenersA.get(name);
    if (!old) out.push(`listener added: ${name} (${l.addressText})`);
    else if (!same(old, l)) {
      out.push(`listener changed: ${name}`);
      const certsA = old.tls?.certificates;
      const certsB = l.tls?.certificates;
      if (!same(certsA, certsB)) out.push(`listener ${name}: certificates changed`);
    }
  }

  for (const name of a.upstreams.keys()) {
    if (!b.upstreams.has(name)) out.push(`upstream removed: ${name}`);
  }
  for (const [name, u] of b.upstreams) {
    const old = a.upstreams.get(name);
    if (!old) out.push(`upstream added: ${name}`);
    else out.push(...diffUpstream(old, u));
  }

  const routesA = new Map(a.routes.map((r) => [r.name, r]));
  const routesB = new Map(b.routes.map((r) => [r.name, r]));
  for (const name of routesA.keys()) {
    if (!routesB.has(name)) out.push(`route removed: ${name}`);
  }
  for (const [name, r] of routesB) {
    const old = routesA.get(name);
    if (!old) out.push(`route added: ${name}`);
    else if (!same(withoutIndex(old), withoutIndex(r))) out.push(`route changed: ${name}`);
    else if (old.index !== r.index)
      out.push(`route moved: ${name} (position ${old.index} -> ${r.index})`);
  }

  const globals: (keyof Config)[] = [
    'trustedProxies',
    'admin',
    'accessLog',
    'workers',
    'shutdownTimeoutMs',
    'errorPages',
    'features',
  ];
  for (const key of globals) {
    if (!same(a[key], b[key])) out.push(`${key} changed`);
  }
  return out;
}

function diffUpstream(a: UpstreamConfig, b: UpstreamConfig): string[] {
  const out: string[] = [];
  const serversA = new Map(a.servers.map((s) => [s.origin, s]));
  const serversB = new Map(b.servers.map((s) => [s.origin, s]));
  for (const origin of serversA.keys()) {
    if (!serversB.has(origin)) out.push(`upstream ${a.name}: server removed: ${origin}`);
  }
  for (const [origin, s] of serversB) {
    const old = serversA.get(origin);
    if (!old) out.push(`upstream ${a.name}: server added: ${origin}`);
    else if (!same(old, s)) out.push(`upstream ${a.name}: server changed: ${origin}`);
  }
  const { servers: _sa, ...restA } = a;
  const { servers: _sb, ...restB } = b;
  for (const key of Object.keys({ ...restA, ...restB }) as (keyof typeof restA)[]) {
    if (!same(restA[key], restB[key])) out.push(`upstream ${a.name}: ${key} changed`);
  }
  return out;
}

function withoutIndex(r: RouteConfig): Omit<RouteConfig, 'index'> {
  const { index: _index, ...rest } = r;
  return rest;
}

/** Structural equality that ignores key order, so reordering keys in the file is no change. */
function same(x: unknown, y: unknown): boolean {
  return stable(x) === stable(y);
}

function stable(v: unknown): string {
  return JSON.stringify(v, (_key, value: unknown) =>
    value !== null && typeof value === 'object' && !Array.isArray(value)
      ? Object.fromEntries(Object.entries(value).sort(([p], [q]) => (p < q ? -1 : p > q ? 1 : 0)))
      : value,
  );
}
