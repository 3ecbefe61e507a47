/**
 * Routing: compile the configured routes once, then pick the first matching route per request.
 * Pure: no I/O, imports only the config types and Node built-ins.
 */
export { createRouter, type MatchInput, type RouteEntry, type Router } from './router.js';
export { normalizeHost } from './host.js';
