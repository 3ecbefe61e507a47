import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfigFile, loadConfigText, formatIssue, diffConfigs } from '../dist/config/index.js';

const yaml = (...lines) => `${lines.join('\n')}\n`;
const load = (text, env = {}) => loadConfigText(text, { env });

test('env: ${NAME}, ${NAME:-default}, $${ escape, types of plain scalars', () => {
  const { config, issues } = load(
    yaml(
      'listeners:',
      '  - name: ${NAME:-web}',
      '    address: "127.0.0.1:${PORT}"',
      '    proxyProtocol: ${PP}',
      'workers: ${WORKERS}',
      'routes:',
      '  - respond: { body: "$${HOME} and ${EMPTY:-dflt} and [${EMPTY}] and ${A}${B}" }',
    ),
    { PORT: '8080', PP: 'true', WORKERS: '4', EMPTY: '', A: 'x', B: 'y', HOME: '/root' },
  );
  assert.deepEqual(issues, []);
  assert.equal(config.listeners[0].name, 'web');
  assert.deepEqual(config.listeners[0].address, { host: '127.0.0.1', port: 8080 });
  assert.equal(config.listeners[0].proxyProtocol, true);
  assert.equal(config.workers, 4);
  assert.equal(config.routes[0].action.body, '${HOME} and dflt and [] and xy');
});

test('env: a quoted value stays a string, so the schema can reject it', () => {
  const { issues } = load(yaml('listeners: [{ address: ":0" }]', 'workers: "${W}"'), { W: '2' });
  assert.deepEqual(issues.map(formatIssue), [
    'workers: expected a whole number of at least 1 or "auto", got "2" (2:10)',
  ]);
});

test('env: unset variables are reported at their key; keys are never substituted', () => {
  const { config, issues } = load(
    yaml('listeners:', '  - address: ":${PORT}"', '    name: "${A}-${B:-b}-${C}"', '"${K}": 1'),
  );
  assert.equal(config, undefined);
  assert.deepEqual(issues.map(formatIssue), [
    'listeners[0].address: environment variable PORT is not set (write ${PORT:-default} for a default) (2:14)',
    'listeners[0].name: environment variable A is not set (write ${A:-default} for a default) (3:11)',
    'listeners[0].name: environment variable C is not set (write ${C:-default} for a default) (3:11)',
  ]);
});

test('env: defaults to process.env', () => {
  process.env.SWITCHYARD_TEST_PORT = '8123';
  try {
    const { config } = loadConfigText(yaml('listeners: [{ address: ":${SWITCHYARD_TEST_PORT}" }]'));
    assert.equal(config.listeners[0].address.port, 8123);
  } finally {
    delete process.env.SWITCHYARD_TEST_PORT;
  }
});

test('loadConfigFile: reads a file, records its path; a missing file is one issue', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-config-'));
  try {
    const file = join(dir, 'switchyard.json');
    writeFileSync(file, JSON.stringify({ listeners: [{ address: '127.0.0.1:0' }] }));
    const { config, issues } = await loadConfigFile(file, { env: {} });
    assert.deepEqual(issues, []);
    assert.equal(config.sourcePath, file);
    const missing = await loadConfigFile(join(dir, 'nope.yaml'));
    assert.equal(missing.config, undefined);
    assert.deepEqual(missing.issues.map(formatIssue), [
      `cannot read ${join(dir, 'nope.yaml')}: no such file`,
    ]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('normalize: defaults and features only for keys present', () => {
  const { config, issues } = load(
    yaml(
      'listeners: [{ address: ":0" }, { name: s, address: ":1", tls: {}, http2: false }]',
      'acme: { email: a@b.c }',
      'upstreams:',
      '  app:',
      '    servers: [{ url: "https://app" }]',
      '    sticky: {}',
      '    slowStart: 30s',
      'routes:',
      '  - { redirect: { location: /x }, match: { path: /r } }',
      '  - { upstream: app, cache: true, compression: false }',
    ),
  );
  assert.deepEqual(issues, []);
  assert.equal(config.listeners[0].name, 'listeners[0]');
  assert.equal(config.listeners[0].http2, false);
  assert.equal(
    config.listeners[1].http2,
    false,
    'an explicit http2: false wins over the tls default',
  );
  const app = config.upstreams.get('app');
  assert.deepEqual(app.servers, [
    { url: 'https://app', origin: 'https://app:443', weight: 1, backup: false },
  ]);
  assert.equal(app.balancer, 'round-robin');
  assert.equal(app.hashKey, undefined);
  assert.equal(app.hostHeader, undefined);
  assert.deepEqual(app.keepAlive, { maxIdle: 64, idleTimeoutMs: 30000 });
  assert.deepEqual(app.features, { sticky: {}, slowStart: '30s' });
  assert.deepEqual(config.routes[1].features, { cache: true, compression: false });
  assert.deepEqual(config.routes[0].features, {});
  assert.deepEqual(config.routes[0].action, { type: 'redirect', location: '/x', status: 302 });
  assert.deepEqual(config.features, { acme: { email: 'a@b.c' } });
  assert.equal(config.workers, 1);
  assert.equal(config.shutdownTimeoutMs, 30000);
  assert.deepEqual(config.trustedProxies, []);
  assert.deepEqual(config.errorPages, {});
  assert.equal(config.admin, undefined);
  assert.equal(config.accessLog, undefined);
});

const base = yaml(
  'listeners: [{ name: web, address: ":0" }]',
  'upstreams:',
  '  app: { servers: [{ url: "http://a:1" }, { url: "http://a:2" }] }',
  '  old: { servers: [{ url: "http://o:1" }] }',
  'routes:',
  '  - { name: api, match: { pathPrefix: /api }, upstream: app }',
  '  - { name: gone, match: { path: /gone }, respond: {} }',
  '  - { name: ping, match: { path: /ping }, respond: {} }',
);

test('diffConfigs: nothing for the same config, even with keys reordered', () => {
  const a = load(base).config;
  const b = load(
    base.replace(
      '{ name: api, match: { pathPrefix: /api }, upstream: app }',
      '{ upstream: app, match: { pathPrefix: /api }, name: api }',
    ),
  ).config;
  assert.deepEqual(diffConfigs(a, b), []);
});

test('diffConfigs: listeners, upstreams, servers, routes and globals', () => {
  const a = load(base).config;
  const b = load(
    yaml(
      'listeners: [{ name: web, address: ":0", proxyProtocol: true }, { name: web2, address: ":1" }]',
      'upstreams:',
      '  app: { balancer: random, servers: [{ url: "http://a:1", weight: 3 }, { url: "http://a:3" }] }',
      '  new: { servers: [{ url: "http://n:1" }] }',
      'routes:',
      '  - { name: ping, match: { path: /ping }, respond: {} }',
      '  - { name: api, match: { pathPrefix: /v2 }, upstream: app }',
      '  - { name: added, match: { path: /added }, respond: {} }',
      'workers: 2',
    ),
  ).config;
  assert.deepEqual(diffConfigs(a, b), [
    'listener changed: web',
    'listener added: web2 (:1)',
    'upstream removed: old',
    'upstream app: server removed: http://a:2',
    'upstream app: server changed: http://a:1',
    'upstream app: server added: http://a:3',
    'upstream app: balancer changed',
    'upstream added: new',
    'route removed: gone',
    'route moved: ping (position 2 -> 0)',
    'route changed: api',
    'route added: added',
    'workers changed',
  ]);
});
