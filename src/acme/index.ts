export {
  AcmeManager,
  acmeSettingsOf,
  parseCertificate,
  renewalTime,
  type AcmeManagerOptions,
  type AcmeNameStatus,
  type AcmeSettings,
  type ManagedCertificate,
} from './manager.js';
export { managedNames, isManageableName } from './names.js';
export { DiskAcmeStore, writeFileAtomic, type AcmeStore } from './store.js';
