import { test } from 'node:test';
import assert from 'node:assert/strict';
import { jsonSchema } from '../dist/config/index.js';

/** Visits every schema node with its JSON pointer. */
function walk(node, pointer, visit) {
  if (node === null || typeof node !== 'object') return;
  visit(node, pointer);
  for (const key of ['properties', 'patternProperties']) {
    for (const [name, child] of Object.entries(node[key] ?? {})) {
      walk(child, `${pointer}/${key}/${name}`, visit);
    }
  }
  if (node.items) walk(node.items, `${pointer}/items`, visit);
  (node.anyOf ?? []).forEach((child, i) => walk(child, `${pointer}/anyOf/${i}`, visit));
}

test('jsonSchema: a standalone draft-07 document with an id and a title', () => {
  const schema = jsonSchema();
  assert.equal(schema.$schema, 'http://json-schema.org/draft-07/schema#');
  assert.match(schema.$id, /^https:\/\//);
  assert.equal(schema.title, 'Switchyard configuration');
  assert.deepEqual(schema.required, ['listeners']);
  // Plain JSON: no TypeBox symbols or functions survive, and it round-trips.
  assert.deepEqual(JSON.parse(JSON.stringify(schema)), schema);
  assert.notEqual(jsonSchema(), schema, 'each call returns a fresh copy');
});

test('jsonSchema: every object rejects unknown keys', () => {
  const open = [];
  walk(jsonSchema(), '', (node, pointer) => {
    if (node.type === 'object' && node.additionalProperties !== false) open.push(pointer);
  });
  assert.deepEqual(open, []);
});

test('jsonSchema: every property has a description for editor hover', () => {
  const missing = [];
  walk(jsonSchema(), '', (node, pointer) => {
    for (const [name, child] of Object.entries(node.properties ?? {})) {
      if (typeof child.description !== 'string' || child.description === '') {
        missing.push(`${pointer}/properties/${name}`);
      }
    }
  });
  assert.deepEqual(missing, []);
});

test('jsonSchema: covers every top-level key of the contract', () => {
  const keys = Object.keys(jsonSchema().properties).sort();
  assert.deepEqual(
    keys,
    [
      'accessLog',
      'acme',
      'admin',
      'cache',
      'errorPages',
      'listeners',
      'rateLimitStore',
      'redis',
      'routes',
      'shutdownTimeout',
      'tracing',
      'trustedProxies',
      'upstreams',
      'waf',
      'watch',
      'workers',
    ].sort(),
  );
});

test('jsonSchema: defaults and enums editors can offer', () => {
  const schema = jsonSchema();
  const upstream = schema.properties.upstreams.patternProperties;
  const u = Object.values(upstream)[0];
  assert.equal(u.properties.balancer.default, 'round-robin');
  assert.deepEqual(
    u.properties.balancer.anyOf.map((v) => v.const),
    [
      'round-robin',
      'least-connections',
      'least-request',
      'random',
      'ip-hash',
      'consistent-hash',
      'ewma',
    ],
  );
  const limits = schema.properties.listeners.items.properties.limits.properties;
  assert.equal(limits.maxBodySize.default, '10MiB');
  assert.equal(limits.headersTimeout.default, '10s');
  assert.equal(schema.properties.shutdownTimeout.default, '30s');
  assert.equal(schema.properties.workers.default, 1);
});
