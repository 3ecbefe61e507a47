/** The config module's public API: load, validate, describe and compare configs. */
export { loadConfigFile, loadConfigText, type LoadOptions, type LoadResult } from './load.js';
export { formatIssue, formatPath } from './source.js';
export { jsonSchema, ConfigSchema, type RawConfig } from './schema.js';
export { diffConfigs } from './diff.js';
export { parseDuration, parseSize, parseRate, type Rate } from './units.js';
export { checkTemplate, PLACEHOLDERS } from './templates.js';
export { parseAddress, isLoopbackHost, normalizeCidr } from './net.js';
export type * from './types.js';
