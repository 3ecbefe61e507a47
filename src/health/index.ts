export { HealthManager, type HealthManagerOptions } from './manager.js';
export { HostChecker, type CheckResult } from './active.js';
export { OutlierDetector } from './passive.js';
