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
import { createStderrLogger, type LogFn } from './observability/logger.js';
import { Runtime } from './runtime.js';
import { Listener } from './server/listener.js';
import { HostRegistry } from './upstream/registry.js';
import { HealthManager } from './health/index.js';

/** The features this build ships, in no particular order (each carries its chain position). */
export const builtinFeatures: readonly FilterFactory[] = [responseHeadersFeature, rateLimitFeature, ipFilterFeature, basicAuthFeature, forwardAuthFeature, wafFeature, compressionFeature, cacheFeature];

export interface StartOptions {
  log?: LogFn;
  /** Prints `listening on ...` lines to stderr (the contract's start-up output). Default true. */
  announce?: boolean;
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
  private readonly shared = new Map<string, unknown>();
  private readonly log: LogFn;
  private readonly announce: boolean;
  private stopping: Promise<void> | null = null;

  private constructor(config: Config, options: StartOptions) {
    this.log = options.log ?? createStderrLogger();
    this.announce = options.announce ?? true;
    this.runtime = this.buildRuntime(config);
    this.health = new HealthManager({ log: this.log });
    this.health.update(this.runtime.groups.values());
  }

  static async start(config: Config, options: StartOptions = {}): Promise<Switchyard> {
    const proxy = new Switchyard(config, options);
    try {
      for (const listenerConfig of config.listeners) await proxy.openListener(listenerConfig);
    } catch (err) {
      await proxy.stop(0);
      throw err;
    }
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
    });
    try {
      const url = await listener.listen();
      if (this.announce) process.stderr.write(`listening on ${url}\n`);
    } catch (err) {
      const e = err as Error & { code?: string };
      const reason =
        e.code === 'EADDRINUSE'
          ? 'the address is already in use'
          : e.code === 'EACCES'
            ? 'permission denied (ports below 1024 need privileges)'
            : e.message;
      throw new Error(
        `listeners.${config.name}: cannot listen on ${config.addressText}: ${reason}`,
        {
          cause: err,
        },
      );
    }
    return listener;
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
    const next = this.buildRuntime(config);
    const previous = this.runtime;
    const wanted = new Map(config.listeners.map((l) => [l.name, l]));
    // Open new sockets before switching, so a port conflict aborts the reload with nothing changed.
    const opened = new Map<string, Listener>();
    const updated: Array<[Listener, ListenerConfig]> = [];
    try {
      for (const [name, listenerConfig] of wanted) {
        const current = this.listeners.get(name);
        if (current && current.config.addressText === listenerConfig.addressText) {
          updated.push([current, listenerConfig]);
          continue;
        }
        opened.set(name, await this.createListener(listenerConfig));
      }
    } catch (err) {
      await Promise.all([...opened.values()].map((l) => l.drain(0)));
      throw err;
    }
    this.runtime = next;
    this.health.update(next.groups.values());
    for (const [listener, listenerConfig] of updated) {
      const needsRestart = listener.update(listenerConfig);
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
        void listener.drain(config.shutdownTimeoutMs);
      }
    }
    for (const [name, listener] of opened) this.listeners.set(name, listener);
    const grace = setTimeout(() => void previous.close(), config.shutdownTimeoutMs);
    grace.unref();
  }

  /** Stops accepting, finishes in-flight requests up to `timeoutMs`, then closes everything. */
  stop(timeoutMs = this.runtime.config.shutdownTimeoutMs): Promise<void> {
    this.stopping ??= (async () => {
      this.health.stop();
      await Promise.all([...this.listeners.values()].map((l) => l.drain(timeoutMs)));
      await this.runtime.close();
      await this.hosts.destroy();
    })();
    return this.stopping;
  }
}
