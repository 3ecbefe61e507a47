import { registerBalancer } from './balancer.js';
import { createConsistentHash } from './consistent-hash.js';
import { createEwma } from './ewma.js';
import { createIpHash } from './ip-hash.js';
import { createLeastConnections } from './least-connections.js';
import { createLeastRequest } from './least-request.js';
import { createRandom } from './random.js';
import { createRoundRobin } from './round-robin.js';

export * from './balancer.js';

registerBalancer('round-robin', createRoundRobin);
registerBalancer('least-connections', createLeastConnections);
registerBalancer('least-request', createLeastRequest);
registerBalancer('random', createRandom);
registerBalancer('ip-hash', createIpHash);
registerBalancer('consistent-hash', createConsistentHash);
registerBalancer('ewma', createEwma);
