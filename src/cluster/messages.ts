/**
 * The messages between the cluster primary and its workers (over the cluster IPC channel, with
 * `serialization: 'advanced'` so a normalized Config, Maps included, crosses as it is). Every
 * message carries `sy` (its type), so nothing else sent on the channel is mistaken for one.
 */
import type { Config } from '../config/types.js';
import type { CachePurgeRequest } from '../core/events.js';
import type { GcraLimit, RateLimitDecision } from '../filters/ratelimit/index.js';

/** Shared runtime state a new worker must adopt: admin drains and health verdicts. */
export interface HostOverride {
  upstream: string;
  origin: string;
  draining?: boolean;
  healthy?: boolean;
}

export type ToWorker =
  | {
      sy: 'start';
      config: Config;
      generation: number;
      reusePort: boolean;
      overrides: HostOverride[];
    }
  | { sy: 'reload'; id: number; config: Config; generation: number }
  | { sy: 'stop'; timeoutMs: number }
  | { sy: 'rl'; id: number; decision?: RateLimitDecision; error?: string }
  | { sy: 'query'; id: number; what: 'metrics' | 'upstreams' | 'stats' }
  | { sy: 'purge'; id: number; purge: CachePurgeRequest }
  | { sy: 'override'; override: HostOverride }
  | { sy: 'reopen-logs' };

export type FromWorker =
  | { sy: 'ready' }
  | { sy: 'started'; urls: string[] }
  | { sy: 'start-failed'; error: string }
  | { sy: 'reply'; id: number; ok: boolean; data?: unknown; error?: string }
  | { sy: 'rl'; id: number; key: string; limit: GcraLimit }
  | { sy: 'health'; upstream: string; origin: string; healthy: boolean }
  | { sy: 'reload-request' };

export function isFromWorker(message: unknown): message is FromWorker {
  return typeof message === 'object' && message !== null && 'sy' in message;
}

export function isToWorker(message: unknown): message is ToWorker {
  return typeof message === 'object' && message !== null && 'sy' in message;
}

/** The server view a worker reports for /api/upstreams (a structural AdminServerView). */
export interface WorkerHostView {
  origin: string;
  weight: number;
  healthy: boolean;
  draining: boolean;
  ejected: boolean;
  activeRequests: number;
  totalRequests: number;
  state: string;
}

export interface WorkerUpstreamView {
  name: string;
  config: { balancer: string; servers: Array<{ url: string; origin: string; weight: number }> };
  hosts: WorkerHostView[];
}
