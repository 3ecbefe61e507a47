import { registerBalancer } from './balancer.js';
import { createRoundRobin } from './round-robin.js';

export * from './balancer.js';

registerBalancer('round-robin', createRoundRobin);
