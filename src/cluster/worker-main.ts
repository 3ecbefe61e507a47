/** The entry module of a cluster worker process (see primary.ts: cluster.setupPrimary exec). */
import { runWorker } from './worker.js';

runWorker();
