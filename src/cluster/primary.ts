import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import client from 'prom-client';
import { AdminServer, type AdminUpstreamView, type ReloadResult } from '../admin/server.js';
import { packageVersion } from '../admin/version.js';
import { diffConfigs, formatIssue, loadConfigFile } from '../config/index.js';
import type { Config } from '../config/types.js';
import { channels, type CachePurgeEvent } from '../core/events.js';
import { MemoryRateLimitStore } from '../filters/ratelimit/index.js';
import type { Observability } from '../observability/index.js';
import type { LogFn } from '../observability/logger.js';
import type { FromWorker, HostOverride, ToWorker, WorkerUpstreamView } from './messages.js';
import { isFromWorker } from './messages.js';
import { describeListenError } from '../server/listener.js';
import { detectReusePort } from './reuseport.js';
import { mergeStats, mergeUpstreams, type StatsSnapshot } from './view.js';
import { watchConfigFile } from './watch.js';

/** A worker that lived this long before dying starts its restart backoff from zero again. */
const STABLE_MS = 10_000;
const RESTART_BASE_MS = 250;
const RESTART_MAX_MS = 30_000;
/** How long a worker gets to answer an admin query or apply a reload. */
const QUERY_TIMEOUT_MS = 2_000;
const RELOAD_TIMEOUT_MS = 15_000;
const VIEW_REFRESH_MS = 1_000;

/** `workers: N | auto` as a number of processes. */
export function workerCount(workers: number | 'auto'): number {
  return workers === 'auto' ? Math.max(1, availableParallelism()) : workers;
}

/** Whether `run` should start a cluster for this config (`workers: 1`, the default, does not). */
export function wantsCluster(config: Config): boolean {
  return config.workers === 'auto' || config.workers > 1;
}

interface Slot {
  index: number;
  worker: Worker | null;
  state: 'starting' | 'running' | 'stopped';
  /** Generation of the config the worker runs. */
  generation: number;
  startedAt: number;
  /** Quick deaths in a row; drives the restart backoff. */
  failures: number;
  restartTimer: NodeJS.Timeout | null;
  urls: string[];
  startError?: string;
}

interface PendingRequest {
  worker: Worker;
  resolve(value: unknown): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

/**
 * The cluster primary: forks the workers and restarts any that dies (with backoff), owns the
 * state that must be one per instance (memory rate limits, admin drains, shared health
 * verdicts), serves the admin API with whole-instance views gathered from the workers over IPC,
 * and switches every worker to a new config on reload. It serves no proxy traffic itself; with
 * the cluster module (no SO_REUSEPORT) it accepts connections and hands them to workers round
 * robin.
 */
export class ClusterPrimary {
  private current: Config;
  private generation = 1;
  private loadedAt = new Date();
  private readonly startedAt = new Date();
  private readonly slots: Slot[] = [];
  private reusePort = false;
  private stopping: Promise<void> | null = null;
  private readonly rateLimits = new MemoryRateLimitStore();
  /** Drains and health verdicts every worker must share, by `upstream origin`. */
  private readonly overrides = new Map<string, HostOverride>();
  private readonly pending = new Map<number, PendingRequest>();
  private nextId = 1;
  private admin: AdminServer | null = null;
  private reloadQueue: Promise<unknown> = Promise.resolve();
  private startup: { resolve(): void; reject(err: Error): void } | null = null;
  private upstreamView: AdminUpstreamView[] = [];
  private statsView: { active: number; stats: StatsSnapshot | null } = { active: 0, stats: null };
  private refreshing: Promise<void> | null = null;
  private refreshTimer: NodeJS.Timeout | null = null;
  private purgeSubscribed = false;
  private stopWatch: (() => void) | null = null;
  private readonly registry = new client.Registry();
  private readonly reloads: client.Counter<'result'>;
  private readonly restarts: client.Counter;

  constructor(
    private readonly configPath: string,
    config: Config,
    private readonly log: LogFn,
  ) {
    this.current = config;
    const registers = [this.registry];
    this.reloads = new client.Counter({
      name: 'switchyard_config_reloads_total',
      help: 'Config reloads, by result (ok, refused).',
      labelNames: ['result'],
      registers,
    });
    this.restarts = new client.Counter({
      name: 'switchyard_worker_restarts_total',
      help: 'Worker processes restarted after they exited unexpectedly.',
      registers,
    });
    new client.Gauge({
      name: 'switchyard_workers',
      help: 'Worker processes serving requests.',
      registers,
      collect: () => undefined,
    });
  }

  /** Forks the workers and waits until every one listens; throws (with workers stopped) if not. */
  async start(): Promise<void> {
    this.reusePort = await detectReusePort();
    cluster.setupPrimary({
      exec: fileURLToPath(new URL('./worker-main.js', import.meta.url)),
      args: [],
      serialization: 'advanced',
    });
    const count = workerCount(this.current.workers);
    for (let i = 0; i < count; i++) {
      this.slots.push({
        index: i + 1,
        worker: null,
        state: 'stopped',
        generation: 0,
        startedAt: 0,
        failures: 0,
        restartTimer: null,
        urls: [],
      });
    }
    const started = new Promise<void>((resolve, reject) => {
      this.startup = { resolve, reject };
    });
    for (const slot of this.slots) this.fork(slot);
    try {
      await started;
    } catch (err) {
      await this.stop(0);
      throw err;
    } finally {
      this.startup = null;
    }
    this.log('info', `${count} workers started`, {
      mode: this.reusePort ? 'SO_REUSEPORT' : 'cluster (primary distributes connections)',
    });
    for (const url of this.slots[0].urls) process.stderr.write(`listening on ${url}\n`);
    if (this.current.admin) await this.startAdmin(this.current);
    this.updatePurge();
    if (this.current.features.watch === true)
      this.stopWatch = watchConfigFile(this.configPath, () => void this.reload(), this.log);
  }

  private fork(slot: Slot): void {
    slot.restartTimer = null;
    slot.state = 'starting';
    slot.startedAt = Date.now();
    slot.startError = undefined;
    const worker = cluster.fork({ SWITCHYARD_WORKER: String(slot.index) });
    slot.worker = worker;
    worker.on('message', (message: unknown) => {
      if (isFromWorker(message)) this.onMessage(slot, worker, message);
    });
    worker.on('exit', (code, signal) => this.onExit(slot, worker, code, signal));
    worker.on('error', (err) => this.log('warn', 'worker IPC error', { error: err.message }));
  }

  private send(worker: Worker, message: ToWorker): void {
    try {
      if (worker.isConnected()) worker.send(message);
    } catch {
      // The worker is going away; its exit handler takes it from here.
    }
  }

  private onMessage(slot: Slot, worker: Worker, message: FromWorker): void {
    switch (message.sy) {
      case 'rl': {
        let decision;
        try {
          decision = this.rateLimits.take(message.key, message.limit);
        } catch (err) {
          this.send(worker, { sy: 'rl', id: message.id, error: (err as Error).message });
          return;
        }
        this.send(worker, { sy: 'rl', id: message.id, decision });
        return;
      }
      case 'ready':
        slot.generation = this.generation;
        this.send(worker, {
          sy: 'start',
          config: this.current,
          generation: this.generation,
          reusePort: this.reusePort,
          overrides: [...this.overrides.values()],
        });
        return;
      case 'started':
        slot.state = 'running';
        slot.urls = message.urls;
        this.log('info', `worker ${slot.index} started`, { pid: worker.process.pid });
        if (this.startup && this.slots.every((s) => s.state === 'running')) this.startup.resolve();
        if (slot.generation !== this.generation) void this.syncWorker(slot);
        return;
      case 'start-failed':
        slot.startError = message.error;
        this.log('error', `worker ${slot.index} could not start`, { error: message.error });
        return;
      case 'reply': {
        const entry = this.pending.get(message.id);
        if (entry === undefined) return;
        this.pending.delete(message.id);
        clearTimeout(entry.timer);
        if (message.ok) entry.resolve(message.data);
        else entry.reject(new Error(message.error ?? 'worker error'));
        return;
      }
      case 'health': {
        const override = this.override(message.upstream, message.origin);
        if (override.healthy === message.healthy) return;
        override.healthy = message.healthy;
        for (const other of this.slots) {
          if (other !== slot && other.worker && other.state === 'running')
            this.send(other.worker, { sy: 'override', override });
        }
        return;
      }
      case 'reload-request':
        void this.reload();
        return;
    }
  }

  private override(upstream: string, origin: string): HostOverride {
    const key = `${upstream} ${origin}`;
    let o = this.overrides.get(key);
    if (o === undefined) {
      o = { upstream, origin };
      this.overrides.set(key, o);
    }
    return o;
  }

  private onExit(slot: Slot, worker: Worker, code: number | null, signal: string | null): void {
    for (const [id, entry] of this.pending) {
      if (entry.worker !== worker) continue;
      this.pending.delete(id);
      clearTimeout(entry.timer);
      entry.reject(new Error('the worker exited'));
    }
    if (slot.worker !== worker) return;
    slot.worker = null;
    const wasStarting = slot.state === 'starting';
    slot.state = 'stopped';
    if (this.stopping) return;
    if (this.startup) {
      this.startup.reject(
        new Error(slot.startError ?? `worker ${slot.index} exited during start-up (code ${code})`),
      );
      return;
    }
    const lived = Date.now() - slot.startedAt;
    if (lived >= STABLE_MS && !wasStarting) slot.failures = 0;
    const delay =
      slot.failures === 0
        ? 0
        : Math.min(RESTART_BASE_MS * 2 ** (slot.failures - 1), RESTART_MAX_MS);
    slot.failures++;
    this.restarts.inc();
    this.log('warn', `worker ${slot.index} exited; restarting`, {
      pid: worker.process.pid,
      code,
      signal,
      restartInMs: delay,
    });
    slot.restartTimer = setTimeout(() => this.fork(slot), delay);
  }

  /** Sends a request to one worker and resolves with its reply's data. */
  private request(
    worker: Worker,
    build: (id: number) => ToWorker,
    timeoutMs = QUERY_TIMEOUT_MS,
  ): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error('the worker did not answer in time'));
      }, timeoutMs);
      this.pending.set(id, { worker, resolve, reject, timer });
      try {
        worker.send(build(id));
      } catch (err) {
        this.pending.delete(id);
        clearTimeout(timer);
        reject(err as Error);
      }
    });
  }

  private running(): Array<Slot & { worker: Worker }> {
    return this.slots.filter(
      (s): s is Slot & { worker: Worker } => s.state === 'running' && s.worker !== null,
    );
  }

  /** Asks every running worker; answers that fail or time out are left out. */
  private async gather<T>(build: (id: number) => ToWorker): Promise<T[]> {
    const answers = await Promise.allSettled(
      this.running().map((s) => this.request(s.worker, build)),
    );
    const out: T[] = [];
    for (const a of answers)
      if (a.status === 'fulfilled' && a.value != null) out.push(a.value as T);
    return out;
  }

  /**
   * Reloads from the config file: validate first (an invalid file changes nothing), then switch
   * every worker. Each worker switches atomically (Switchyard.reload builds everything before it
   * swaps; in-flight requests finish on the old config); if any worker cannot apply the new
   * config, those that did are switched back, so the instance never runs two configs for longer
   * than one round trip.
   */
  reload(): Promise<ReloadResult> {
    const attempt = this.reloadQueue.then(() => this.reloadNow());
    this.reloadQueue = attempt;
    return attempt;
  }

  private async reloadNow(): Promise<ReloadResult> {
    if (this.stopping) return { ok: false, errors: ['switchyard is stopping'] };
    let next: Config | undefined;
    try {
      const loaded = await loadConfigFile(this.configPath);
      if (!loaded.config || loaded.issues.length > 0) {
        const errors = loaded.issues.map(formatIssue);
        if (errors.length === 0) errors.push(`${this.configPath}: could not be loaded`);
        return this.refused(
          'reload refused: the new config is invalid; the old one keeps serving',
          errors,
        );
      }
      next = loaded.config;
    } catch (err) {
      return this.refused('reload refused: the config could not be read', [(err as Error).message]);
    }
    const targets = this.running();
    const results = await Promise.allSettled(
      targets.map((s) =>
        this.request(
          s.worker,
          (id) => ({ sy: 'reload', id, config: next, generation: this.generation + 1 }),
          RELOAD_TIMEOUT_MS,
        ),
      ),
    );
    const errors = [
      ...new Set(
        results.flatMap((r) => (r.status === 'rejected' ? [(r.reason as Error).message] : [])),
      ),
    ];
    if (errors.length > 0) {
      const previous = this.current;
      await Promise.allSettled(
        targets
          .filter((_s, i) => results[i].status === 'fulfilled')
          .map((s) =>
            this.request(
              s.worker,
              (id) => ({ sy: 'reload', id, config: previous, generation: this.generation }),
              RELOAD_TIMEOUT_MS,
            ),
          ),
      );
      return this.refused('reload failed; the old config keeps serving', errors);
    }
    const changes = diffConfigs(this.current, next);
    if (next.workers !== this.current.workers)
      changes.push('workers: the new count applies after a restart');
    this.current = next;
    this.generation++;
    this.loadedAt = new Date();
    for (const s of targets) s.generation = this.generation;
    // Workers that were starting got the old config; bring them up to date.
    for (const s of this.running()) if (s.generation !== this.generation) void this.syncWorker(s);
    try {
      await this.reloadAdmin(next);
    } catch (err) {
      this.log('error', 'admin listener not moved; the old one keeps serving', {
        error: (err as Error).message,
      });
    }
    this.updatePurge();
    this.reloads.inc({ result: 'ok' });
    this.log('info', 'config reloaded', { changes, workers: targets.length });
    return { ok: true, changes };
  }

  private refused(message: string, errors: string[]): ReloadResult {
    this.log('error', message, { issues: errors });
    this.reloads.inc({ result: 'refused' });
    return { ok: false, errors };
  }

  private async syncWorker(slot: Slot & { worker: Worker | null }): Promise<void> {
    const worker = slot.worker;
    if (worker === null) return;
    const generation = this.generation;
    const config = this.current;
    try {
      await this.request(
        worker,
        (id) => ({ sy: 'reload', id, config, generation }),
        RELOAD_TIMEOUT_MS,
      );
      if (slot.worker === worker) slot.generation = generation;
    } catch (err) {
      // It cannot run the current config (e.g. a new port it cannot bind): replace it.
      this.log('error', `worker ${slot.index} could not take the current config; restarting it`, {
        error: (err as Error).message,
      });
      worker.process.kill('SIGTERM');
    }
  }

  /** Stops every worker gracefully (each drains up to `timeoutMs`), then the admin listener. */
  stop(timeoutMs = this.current.shutdownTimeoutMs): Promise<void> {
    this.stopping ??= (async () => {
      this.stopWatch?.();
      if (this.refreshTimer !== null) clearInterval(this.refreshTimer);
      if (this.purgeSubscribed) channels.cachePurge.unsubscribe(this.onPurge);
      const exits: Array<Promise<void>> = [];
      for (const slot of this.slots) {
        if (slot.restartTimer !== null) clearTimeout(slot.restartTimer);
        const worker = slot.worker;
        if (worker === null) continue;
        exits.push(
          new Promise<void>((resolve) => {
            if (worker.isDead()) return resolve();
            worker.once('exit', () => resolve());
            // Past the drain time plus a margin, a stuck worker is killed.
            const kill = setTimeout(() => worker.process.kill('SIGKILL'), timeoutMs + 5_000);
            kill.unref();
            this.send(worker, { sy: 'stop', timeoutMs });
          }),
        );
      }
      await Promise.all(exits);
      await this.admin?.close();
      this.admin = null;
    })();
    return this.stopping;
  }

  /** SIGUSR1: every worker reopens its access log file. */
  reopenLogs(): void {
    for (const s of this.running()) this.send(s.worker, { sy: 'reopen-logs' });
  }

  // ---- admin API (served here, for the whole instance) ----

  private async startAdmin(config: Config): Promise<void> {
    if (!config.admin) return;
    const admin = new AdminServer(config.admin, {
      version: packageVersion(),
      startedAt: this.startedAt,
      workers: () => this.running().length,
      configLoadedAt: () => this.loadedAt,
      upstreams: () => this.upstreamView,
      observability: this.observabilityView(),
      ready: () => this.stopping === null && this.slots.every((s) => s.state === 'running'),
      reload: () => this.reload(),
      log: this.log,
    });
    // The API answers synchronously from the last gathered views: refresh them first, so
    // /api/upstreams and /api/status are current when they answer.
    const server = admin.server;
    const handlers = server.listeners('request') as Array<(...args: unknown[]) => void>;
    server.removeAllListeners('request');
    server.on('request', (req: { url?: string }, res: unknown) => {
      const run = () => {
        for (const h of handlers) h.call(server, req, res);
      };
      if ((req.url ?? '').startsWith('/api/')) void this.refreshViews().then(run, run);
      else run();
    });
    try {
      const url = await admin.listen();
      process.stderr.write(`listening on ${url}\n`);
    } catch (err) {
      const reason = describeListenError(err);
      throw new Error(`admin: cannot listen on ${config.admin.addressText}: ${reason}`, {
        cause: err,
      });
    }
    this.admin = admin;
    if (this.refreshTimer === null) {
      this.refreshTimer = setInterval(() => void this.refreshViews(), VIEW_REFRESH_MS);
      this.refreshTimer.unref();
    }
  }

  private async reloadAdmin(config: Config): Promise<void> {
    const current = this.admin;
    if (current && config.admin && current.addressText === config.admin.addressText) {
      current.setConfig(config.admin);
      return;
    }
    if (config.admin) await this.startAdmin(config);
    else this.admin = null;
    if (current) await current.close();
  }

  /** What the admin server reads from "observability": aggregated over the workers. */
  private observabilityView(): Observability {
    const metrics = {
      text: () => this.metricsText(),
      contentType: this.registry.contentType,
    };
    const stats = () => this.statsView;
    const routes = () => this.current.routes.map((r) => r.name);
    const view = {
      metrics,
      stats: { snapshot: () => stats().stats ?? emptyStats() },
      get active(): number {
        return stats().active;
      },
      get routes(): readonly string[] {
        return routes();
      },
    };
    return view as unknown as Observability;
  }

  /** Prometheus text for the whole instance: every worker's registry plus the primary's. */
  private async metricsText(): Promise<string> {
    const parts = await this.gather<client.MetricObjectWithValues<client.MetricValue<string>>[]>(
      (id) => ({ sy: 'query', id, what: 'metrics' }),
    );
    const gauge = this.registry.getSingleMetric('switchyard_workers') as client.Gauge;
    gauge.set(this.running().length);
    const own = await this.registry.getMetricsAsJSON();
    return client.AggregatorRegistry.aggregate([...parts, own]).metrics();
  }

  private refreshViews(): Promise<void> {
    this.refreshing ??= (async () => {
      try {
        const [upstreams, stats] = await Promise.all([
          this.gather<WorkerUpstreamView[]>((id) => ({ sy: 'query', id, what: 'upstreams' })),
          this.gather<{ active: number; stats: StatsSnapshot | null }>((id) => ({
            sy: 'query',
            id,
            what: 'stats',
          })),
        ]);
        this.upstreamView = mergeUpstreams(upstreams, (upstream, origin, draining) =>
          this.setDraining(upstream, origin, draining),
        );
        this.statsView = {
          active: stats.reduce((n, s) => n + s.active, 0),
          stats: mergeStats(stats.flatMap((s) => (s.stats ? [s.stats] : []))),
        };
      } finally {
        this.refreshing = null;
      }
    })();
    return this.refreshing;
  }

  /** Admin drain/enable: remembered here (new workers adopt it) and sent to every worker. */
  private setDraining(upstream: string, origin: string, draining: boolean): void {
    const override = this.override(upstream, origin);
    override.draining = draining;
    for (const s of this.running()) this.send(s.worker, { sy: 'override', override });
  }

  /** Cache purges from the admin API go to every worker's cache. */
  private readonly onPurge = (message: unknown) => {
    const event = message as CachePurgeEvent;
    event.result = this.gather<number>((id) => ({ sy: 'purge', id, purge: event.purge })).then(
      (counts) => counts.reduce((a, b) => a + b, 0),
    );
  };

  private updatePurge(): void {
    const cached = this.current.routes.some(
      (r) => r.features.cache !== undefined && r.features.cache !== false,
    );
    if (cached === this.purgeSubscribed) return;
    channels.cachePurge[cached ? 'subscribe' : 'unsubscribe'](this.onPurge);
    this.purgeSubscribed = cached;
  }
}

function emptyStats(): StatsSnapshot {
  return {
    history: [],
    routes: [],
    recentErrors: [],
    totals: { requests: 0, errors: 0, rateLimited: 0, cache: {}, cacheHitRatio: null },
  };
}

/**
 * `switchyard run` with `workers` above 1 (or auto): runs the primary until SIGTERM/SIGINT.
 * Resolves with the process exit code.
 */
export async function runPrimary(configPath: string, config: Config, log: LogFn): Promise<number> {
  const primary = new ClusterPrimary(configPath, config, log);
  try {
    await primary.start();
  } catch (err) {
    process.stderr.write(`switchyard: ${(err as Error).message}\n`);
    return 1;
  }
  process.on('uncaughtException', (err) => {
    log('error', 'uncaught exception in the primary (kept running)', {
      error: err.stack ?? String(err),
    });
  });
  process.on('unhandledRejection', (reason) => {
    log('error', 'unhandled rejection in the primary (kept running)', { error: String(reason) });
  });
  process.on('SIGHUP', () => void primary.reload());
  process.on('SIGUSR1', () => primary.reopenLogs());
  return await new Promise<number>((resolve) => {
    const stop = (signal: string) => {
      log('info', `${signal} received: draining in-flight requests in every worker`);
      void primary.stop().then(() => resolve(0));
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
