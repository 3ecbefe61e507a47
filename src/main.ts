import { availableParallelism } from 'node:os';
import { AcmeManager, acmeSettingsOf, type AcmeManagerOptions } from './acme/index.js';
import { AdminServer, type ReloadResult } from './admin/server.js';
import { packageVersion } from './admin/version.js';
import type { Config, ListenerConfig } from './config/types.js';
import type { FilterFactory } from './core/filter.js';
import { cacheFeature } from './filters/cache/index.js';
import { compressionFeature } from './filters/compression/index.js';
import { responseHeadersFeature } from './filters/response-headers/index.js';
import { rateLimitFeature } from './filters/ratelimit/index.js';
import { ipFilterFeature } from './filters/ipfilter/index.js';
import { basicAuthFeature } from './filters/basic-auth/index.js';
import { forwardAuthFeature } from './filters/forward-auth/index.js';
import { wafFeature } from './filters/waf/index.js';
import { Observability } from './observability/index.js';
import { createStderrLogger, type LogFn } from './observability/logger.js';
import { Runtime } from './runtime.js';
import { describeListenError, Listener } from './server/listener.js';
import { tlsTerminatorOf } from './server/http2.js';
import {
  configuredContext,
  type CertificateProvider,
  type ListenerTlsSettings,
} from './server/tls.js';
import { HostRegistry } from './upstream/registry.js';
import { HealthManager } from './health/index.js';

/** The features this build ships, in no particular order (each carries its chain position). */
export const builtinFeatures: readonly FilterFactory[] = [
  responseHeadersFeature,
  rateLimitFeature,
  ipFilterFeature,
  basicAuthFeature,
  forwardAuthFeature,
  wafFeature,
  compressionFeature,
  cacheFeature,
];

export interface StartOptions {
  log?: LogFn;
  /** Prints `listening on ...` lines to stderr (the contract's start-up output). Default true. */
  announce?: boolean;
  /** What POST /api/reload calls (the CLI passes its SIGHUP path); absent: the API answers 501. */
  reload?: () => Promise<ReloadResult>;
  /** Feature state seeded before the first runtime is built (src/cluster: the rate-limit store
   * that asks the primary process). */
  shared?: ReadonlyMap<string, unknown>;
  /** false: metrics are still kept, but no admin listener is opened (a cluster primary serves
   * the admin API for every worker). Default true. */
  serveAdmin?: boolean;
  /** Called with each listener's server just before it listens (src/cluster: SO_REUSEPORT). */
  prepareListen?: (server: import('node:net').Server, config: ListenerConfig) => void;
  /** Clock and retry timing of automatic HTTPS (tests). */
  acme?: Omit<AcmeManagerOptions, 'log'>;
}

/**
 * A running Switchyard: listeners plus the current runtime. The composition root: the only
 * place that knows the concrete features and wires the layers together.
 */
export class Switchyard {
  runtime: Runtime;
  readonly listeners = new Map<string, Listener>();
  private readonly hosts = new HostRegistry();
  /** Active health checkers of the current runtime's upstreams (state lives on the hosts). */
  readonly health: HealthManager;
  private readonly shared: Map<string, unknown>;
  private readonly serveAdmin: boolean;
  private readonly prepareListen: StartOptions['prepareListen'];
  private readonly log: LogFn;
  private readonly announce: boolean;
  private stopping: Promise<void> | null = null;
  /** Access log, tracing, metrics and live stats; subscribed only to what the config enables. */
  readonly observability: Observability;
  /** The admin listener, when `admin` is configured. */
  admin: AdminServer | null = null;
  readonly startedAt = new Date();
  /** Config loaded and every listener up; false again once stopping. */
  private ready = false;
  private readonly reloadHook: (() => Promise<ReloadResult>) | undefined;
  private readonly acmeOptions: Omit<AcmeManagerOptions, 'log'>;
  /** Automatic HTTPS, when `acme` is configured. */
  acme: AcmeManager | null = null;
  /** Handed to every TLS listener once; reads whichever manager is current. */
  private readonly acmeProvider: CertificateProvider = {
    certificateFor: (name) => this.acme?.certificateFor(name),
    alpnChallenge: (name) => this.acme?.alpnChallenge(name),
    sharedAlpnChallenge: (name) => this.acme?.sharedAlpnChallenge(name),
  };

  private constructor(config: Config, options: StartOptions) {
    this.shared = new Map(options.shared ?? []);
    this.serveAdmin = options.serveAdmin ?? true;
    this.prepareListen = options.prepareListen;
    this.log = options.log ?? createStderrLogger();
    this.announce = options.announce ?? true;
    this.reloadHook = options.reload;
    this.acmeOptions = options.acme ?? {};
    this.runtime = this.buildRuntime(config);
    this.observability = new Observability(config, {
      version: packageVersion(),
      servers: () => this.hosts.all(),
      log: this.log,
    });
    this.health = new HealthManager({ log: this.log });
    this.health.update(this.runtime.groups.values());
  }

  static async start(config: Config, options: StartOptions = {}): Promise<Switchyard> {
    const proxy = new Switchyard(config, options);
    try {
      for (const listenerConfig of config.listeners) await proxy.openListener(listenerConfig);
      if (config.admin && proxy.serveAdmin) await proxy.startAdmin(config);
      await proxy.updateAcme(config);
    } catch (err) {
      await proxy.stop(0);
      throw err;
    }
    proxy.ready = true;
    return proxy;
  }

  private buildRuntime(config: Config): Runtime {
    return new Runtime(config, {
      features: builtinFeatures,
      hosts: this.hosts,
      log: this.log,
      shared: this.shared,
    });
  }

  private async openListener(config: ListenerConfig): Promise<void> {
    this.listeners.set(config.name, await this.createListener(config));
  }

  private async createListener(config: ListenerConfig): Promise<Listener> {
    const listener = new Listener(config, {
      dispatcher: () => this.runtime,
      log: this.log,
      acmeChallenge: (token) => this.acme?.lookupHttpChallenge(token),
    });
    tlsTerminatorOf(listener.server)?.setProvider(this.acmeProvider);
    this.prepareListen?.(listener.server, config);
    try {
      const url = await listener.listen();
      this.observability.addListener(config.name, listener.info, listener.server);
      if (this.announce) process.stderr.write(`listening on ${url}\n`);
    } catch (err) {
      const reason = describeListenError(err);
      throw new Error(
        // An unnamed listener is called `listeners[i]`, already its key path.
        `${config.name.startsWith('listeners[') ? '' : 'listeners.'}${config.name}: cannot listen on ${config.addressText}: ${reason}`,
        {
          cause: err,
        },
      );
    }
    return listener;
  }

  /**
   * Starts, updates or stops automatic HTTPS for a config. Stored certificates are loaded before
   * this returns, so they serve from the first handshake; orders run in the background.
   */
  private async updateAcme(config: Config): Promise<void> {
    const settings = acmeSettingsOf(config);
    if (settings === undefined) {
      this.acme?.stop();
      this.acme = null;
      return;
    }
    const covered = (listenerName: string, name: string): boolean => {
      const listener = this.listeners.get(listenerName);
      const terminator = listener && tlsTerminatorOf(listener.server);
      return terminator ? configuredContext(terminator.current, name) !== undefined : false;
    };
    if (this.acme === null) {
      const manager = new AcmeManager(settings, { ...this.acmeOptions, log: this.log });
      manager.update(config, covered);
      this.acme = manager;
      await manager.start();
    } else {
      this.acme.update(config, covered);
    }
  }

  /** Opens the admin listener (API, metrics, dashboard) described by `config.admin`. */
  private async startAdmin(config: Config): Promise<void> {
    if (!config.admin) return;
    const admin = new AdminServer(config.admin, {
      version: packageVersion(),
      startedAt: this.startedAt,
      workers: () => {
        const workers = this.runtime.config.workers;
        return workers === 'auto' ? availableParallelism() : workers;
      },
      configLoadedAt: () => this.runtime.loadedAt,
      upstreams: () => this.runtime.groups.values(),
      observability: this.observability,
      ready: () => this.ready,
      ...(this.reloadHook ? { reload: this.reloadHook } : {}),
      log: this.log,
    });
    try {
      const url = await admin.listen();
      if (this.announce) process.stderr.write(`listening on ${url}\n`);
    } catch (err) {
      const reason = describeListenError(err);
      throw new Error(`admin: cannot listen on ${config.admin.addressText}: ${reason}`, {
        cause: err,
      });
    }
    this.admin = admin;
  }

  /** Applies a reloaded `admin` section: same address keeps the listener, else it moves. */
  private async reloadAdmin(config: Config): Promise<void> {
    if (!this.serveAdmin) return;
    const current = this.admin;
    if (current && config.admin && current.addressText === config.admin.addressText) {
      current.setConfig(config.admin);
      return;
    }
    if (config.admin) await this.startAdmin(config);
    else this.admin = null;
    if (current) await current.close();
  }

  /** Reopens the access log file (SIGUSR1, after log rotation). */
  reopenLogs(): void {
    this.observability.reopenLogs();
  }

  /** URL of the admin listener; throws when none is configured. */
  adminUrl(): string {
    if (!this.admin) throw new Error('no admin listener is configured');
    return this.admin.url();
  }

  /** URL of a listener by name (its real port when configured with port 0). */
  url(listenerName?: string): string {
    const listener =
      listenerName === undefined
        ? this.listeners.values().next().value
        : this.listeners.get(listenerName);
    if (!listener) throw new Error(`no listener ${listenerName ?? ''}`);
    return listener.url();
  }

  /**
   * Switches to a new config. The new runtime is built first, so a config that fails to build
   * changes nothing; requests in flight finish on the old runtime.
   */
  async reload(config: Config): Promise<void> {
    // A log file that cannot be opened refuses the reload before anything changes. It is opened
    // here, once, and becomes the access log when the reload goes through.
    const observabilityStep = this.observability.prepareReload(config);
    let next: Runtime;
    try {
      next = this.buildRuntime(config);
    } catch (err) {
      await observabilityStep.abandon();
      throw err;
    }
    const previous = this.runtime;
    const wanted = new Map(config.listeners.map((l) => [l.name, l]));
    // Open new sockets before switching, so a port conflict aborts the reload with nothing changed.
    const opened = new Map<string, Listener>();
    const updated: Array<[Listener, ListenerConfig]> = [];
    const tlsCommits: Array<() => void> = [];
    try {
      for (const [name, listenerConfig] of wanted) {
        const current = this.listeners.get(name);
        if (current && current.config.addressText === listenerConfig.addressText) {
          updated.push([current, listenerConfig]);
          // Certificates are re-read on every reload; a bad file aborts the reload here.
          const tls = tlsTerminatorOf(current.server);
          if (tls && listenerConfig.tls)
            tlsCommits.push(tls.prepare(listenerConfig.tls as unknown as ListenerTlsSettings));
          continue;
        }
        opened.set(name, await this.createListener(listenerConfig));
      }
    } catch (err) {
      await Promise.all([
        observabilityStep.abandon(),
        ...[...opened.values()].map((l) => this.retire(l, 0)),
        // Built but never used: its filters' timers and pools go now, not never.
        next.close(),
      ]);
      throw err;
    }
    this.runtime = next;
    for (const commit of tlsCommits) commit();
    this.health.update(next.groups.values());
    await observabilityStep.commit();
    try {
      await this.reloadAdmin(config);
    } catch (err) {
      this.log('error', 'admin listener not moved; the old one keeps serving', {
        error: (err as Error).message,
      });
    }
    for (const [listener, listenerConfig] of updated) {
      const needsRestart = listener.update(listenerConfig);
      // update() gives the listener a new ListenerInfo: its requests must still count as ours.
      this.observability.addListener(listenerConfig.name, listener.info, listener.server);
      if (needsRestart.length > 0) {
        this.log(
          'warn',
          `listener ${listener.config.name}: ${needsRestart.join(', ')} change on restart only`,
        );
      }
    }
    for (const [name, listener] of this.listeners) {
      if (!wanted.has(name) || opened.has(name)) {
        this.listeners.delete(name);
        void this.retire(listener, config.shutdownTimeoutMs);
      }
    }
    for (const [name, listener] of opened) this.listeners.set(name, listener);
    try {
      await this.updateAcme(config);
    } catch (err) {
      this.log('error', 'acme: not reconfigured; the previous settings stay', {
        error: (err as Error).message,
      });
    }
    const grace = setTimeout(() => void previous.close(), config.shutdownTimeoutMs);
    grace.unref();
  }

  /**
   * Drains a listener a reload dropped (or opened and then abandoned), then forgets it in the
   * metrics: its requests in flight are still counted while they finish.
   */
  private async retire(listener: Listener, timeoutMs: number): Promise<void> {
    await listener.drain(timeoutMs);
    this.observability.removeListener(listener.info);
  }

  /** Stops accepting, finishes in-flight requests up to `timeoutMs`, then closes everything. */
  stop(timeoutMs = this.runtime.config.shutdownTimeoutMs): Promise<void> {
    this.stopping ??= (async () => {
      this.ready = false;
      this.health.stop();
      this.acme?.stop();
      await Promise.all([...this.listeners.values()].map((l) => l.drain(timeoutMs)));
      await this.admin?.close();
      await this.observability.close();
      await this.runtime.close();
      await this.hosts.destroy();
    })();
    return this.stopping;
  }
}
