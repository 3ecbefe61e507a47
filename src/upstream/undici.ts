import { createRequire } from 'node:module';

const requireLazily = createRequire(import.meta.url);
let loaded: typeof import('undici') | null = null;

/**
 * undici, loaded on first use: plain http1 upstreams run on Switchyard's own client
 * (src/upstream/h1/), so a process whose upstreams are all plain HTTP/1.1 and that runs no
 * active health checks never pays undici's start-up time and memory (about 19 MiB resident).
 */
export function undici(): typeof import('undici') {
  return (loaded ??= requireLazily('undici') as typeof import('undici'));
}
