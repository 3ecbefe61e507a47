import cluster from 'node:cluster';
import type { Config } from '../config/types.js';
import { channels, type CachePurgeEvent, type HealthChangeEvent } from '../core/events.js';
import { MEMORY_STORE_KEY } from '../filters/ratelimit/index.js';
import { Switchyard } from '../main.js';
import { onFirstLargeBody } from '../proxy/forward.js';
import { keepMallocHeap } from '../server/malloc-tuning.js';
import { createStderrLogger, type LogFn } from '../observability/logger.js';
import type { FromWorker, HostOverride, ToWorker, WorkerUpstreamView } from './messages.js';
import { isToWorker } from './messages.js';
import { PrimaryRateLimitStore } from './ratelimit-store.js';
import { useReusePort } from './reuseport.js';

/** Health verdicts applied from other workers carry this source, so they are not sent back. */
const CLUSTER_SOURCE = 'cluster';

/**
 * A worker process: one Switchyard with every listener of the config, serving requests. The
 * primary sends the config (already validated), reloads, stop, and queries for the admin API;
 * the worker asks the primary for rate-limit decisions and reports health changes.
 */
export function runWorker(): void {
  const id = cluster.worker?.id ?? 0;
  const base = createStderrLogger();
  const log: LogFn = (level, message, fields) => base(level, message, { worker: id, ...fields });
  const send = (message: FromWorker): boolean => {
    if (!process.connected || process.send === undefined) throw new Error('IPC channel closed');
    return process.send(message);
  };
  const rateLimits = new PrimaryRateLimitStore(send);
  let proxy: Switchyard | null = null;
  let stopping = false;

  const stop = (timeoutMs: number) => {
    if (stopping) return;
    stopping = true;
    const done = () => process.exit(0);
    if (proxy === null) done();
    else void proxy.stop(timeoutMs).then(done, done);
  };

  const findHost = (upstream: string, origin: string) =>
    proxy?.runtime.groups.get(upstream)?.hosts.find((h) => h.origin === origin);

  const applyOverride = (o: HostOverride) => {
    const host = findHost(o.upstream, o.origin);
    if (host === undefined) return;
    if (o.draining !== undefined) host.setDraining(o.draining);
    if (o.healthy !== undefined) host.setHealthy(o.healthy, CLUSTER_SOURCE);
  };

  // Health verdicts of this worker's active checks go to the primary, which tells every other
  // worker: one health state per instance, the latest transition winning.
  const onHealth = (message: unknown) => {
    const e = message as HealthChangeEvent;
    if (e.source !== 'active' || stopping) return;
    try {
      send({ sy: 'health', upstream: e.upstream, origin: e.server, healthy: e.healthy });
    } catch {
      // The primary is gone; this worker is about to stop anyway.
    }
  };

  const reply = (requestId: number, work: () => unknown) => {
    Promise.resolve()
      .then(work)
      .then(
        (data) => send({ sy: 'reply', id: requestId, ok: true, data }),
        (err: unknown) =>
          send({
            sy: 'reply',
            id: requestId,
            ok: false,
            error: err instanceof Error ? err.message : String(err),
          }),
      )
      .catch(() => {});
  };

  const start = async (config: Config, reusePort: boolean, overrides: HostOverride[]) => {
    try {
      proxy = await Switchyard.start(config, {
        log,
        announce: false,
        serveAdmin: false,
        shared: new Map([[MEMORY_STORE_KEY, rateLimits]]),
        ...(reusePort ? { prepareListen: (server) => useReusePort(server) } : {}),
      });
    } catch (err) {
      // Exit only once the primary has the reason (send is asynchronous).
      process.send?.(
        { sy: 'start-failed', error: (err as Error).message } satisfies FromWorker,
        () => process.exit(1),
      );
      return;
    }
    for (const o of overrides) applyOverride(o);
    onFirstLargeBody(() => keepMallocHeap());
    channels.healthChange.subscribe(onHealth);
    send({ sy: 'started', urls: [...proxy.listeners.values()].map((l) => l.url()) });
  };

  const handle = (message: ToWorker) => {
    switch (message.sy) {
      case 'start':
        void start(message.config, message.reusePort, message.overrides);
        return;
      case 'rl':
        rateLimits.answer(message.id, message.decision, message.error);
        return;
      case 'reload':
        reply(message.id, async () => {
          if (proxy === null) throw new Error('worker is still starting');
          await proxy.reload(message.config);
          return null;
        });
        return;
      case 'query':
        reply(message.id, () => query(proxy, message.what));
        return;
      case 'purge':
        reply(message.id, () => purge(message.purge));
        return;
      case 'override':
        applyOverride(message.override);
        return;
      case 'reopen-logs':
        proxy?.reopenLogs();
        return;
      case 'stop':
        stop(message.timeoutMs);
        return;
    }
  };

  process.on('message', (message: unknown) => {
    if (isToWorker(message)) handle(message);
  });
  // The primary went away (killed, crashed): finish what is running and leave.
  process.on('disconnect', () => {
    rateLimits.failAll('the primary process went away');
    stop(proxy?.runtime.config.shutdownTimeoutMs ?? 0);
  });
  // Signals are the primary's business; a worker that gets one (a whole process group signalled,
  // as Ctrl-C does) behaves as the primary would ask it to.
  process.on('SIGHUP', () => {
    try {
      send({ sy: 'reload-request' });
    } catch {
      // no primary: nothing to reload
    }
  });
  process.on('SIGUSR1', () => proxy?.reopenLogs());
  const onStopSignal = () => stop(proxy?.runtime.config.shutdownTimeoutMs ?? 0);
  process.on('SIGTERM', onStopSignal);
  process.on('SIGINT', onStopSignal);
  process.on('uncaughtException', (err) => {
    log('error', 'uncaught exception (worker kept running)', { error: err.stack ?? String(err) });
  });
  process.on('unhandledRejection', (reason) => {
    log('error', 'unhandled rejection (worker kept running)', { error: String(reason) });
  });
  send({ sy: 'ready' });
}

async function query(proxy: Switchyard | null, what: string): Promise<unknown> {
  if (proxy === null) return null;
  const obs = proxy.observability;
  if (what === 'metrics') return (await obs.metrics?.registry.getMetricsAsJSON()) ?? null;
  if (what === 'stats')
    return { active: obs.active, stats: obs.stats?.snapshot(obs.routes) ?? null };
  const upstreams: WorkerUpstreamView[] = [...proxy.runtime.groups.values()].map((group) => ({
    name: group.name,
    config: {
      balancer: group.config.balancer,
      servers: group.config.servers.map((s) => ({
        url: s.url,
        origin: s.origin,
        weight: s.weight,
      })),
    },
    hosts: group.hosts.map((h) => ({
      origin: h.origin,
      weight: h.weight,
      healthy: h.healthy,
      draining: h.draining,
      ejected: h.ejected,
      activeRequests: h.activeRequests,
      totalRequests: h.totalRequests,
      state: h.state,
    })),
  }));
  return upstreams;
}

/** A purge asked of this worker's cache; null when no cache runs here. */
async function purge(request: CachePurgeEvent['purge']): Promise<number | null> {
  if (!channels.cachePurge.hasSubscribers) return null;
  const message: CachePurgeEvent = { purge: request };
  channels.cachePurge.publish(message);
  return message.result === undefined ? null : await message.result;
}
