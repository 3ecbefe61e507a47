// Accept-Encoding negotiation and the compressible-type decision, as tables.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EncodingNegotiator, createTypeMatcher } from '../dist/filters/compression/index.js';

const DEFAULT = ['br', 'zstd', 'gzip'];

// [Accept-Encoding, offered codings, expected coding (null = none), identity acceptable]
const TABLE = [
  [undefined, DEFAULT, null, true],
  ['', DEFAULT, null, true],
  ['gzip', DEFAULT, 'gzip', true],
  ['br', DEFAULT, 'br', true],
  ['GZIP', DEFAULT, 'gzip', true],
  // Equal q-values: the route's order of preference decides.
  ['gzip, deflate, br, zstd', DEFAULT, 'br', true],
  ['gzip, br', ['gzip', 'br'], 'gzip', true],
  ['zstd, gzip', DEFAULT, 'zstd', true],
  // q-values decide first.
  ['gzip;q=1, br;q=0.5', DEFAULT, 'gzip', true],
  ['br;q=0.9, gzip;q=0.8', DEFAULT, 'br', true],
  ['br;q=0.5, zstd', DEFAULT, 'zstd', true],
  ['gzip;q=0', DEFAULT, null, true],
  ['br;q=0, gzip', DEFAULT, 'gzip', true],
  ['gzip;q=0.5', DEFAULT, 'gzip', true],
  // identity listed with a higher q than any coding: send the body as it is.
  ['gzip;q=0.5, identity', DEFAULT, null, true],
  ['identity', DEFAULT, null, true],
  // Wildcards.
  ['*', DEFAULT, 'br', true],
  ['*', ['gzip'], 'gzip', true],
  ['*;q=0.5, gzip', DEFAULT, 'gzip', true],
  ['*, br;q=0', DEFAULT, 'zstd', true],
  // identity refused (RFC 9110 §12.5.3), directly or through `*;q=0`.
  ['identity;q=0', DEFAULT, null, false],
  ['identity;q=0, gzip', DEFAULT, 'gzip', false],
  ['*;q=0', DEFAULT, null, false],
  ['*;q=0, gzip', DEFAULT, 'gzip', false],
  ['*;q=0, identity', DEFAULT, null, true],
  // Codings not offered.
  ['deflate', DEFAULT, null, true],
  ['deflate', ['gzip', 'deflate'], 'deflate', true],
  ['compress, x-unknown', DEFAULT, null, true],
  // Garbage does not throw and chooses nothing odd.
  [';;;,,,', DEFAULT, null, true],
  ['gzip;q=abc', DEFAULT, null, true],
];

for (const [header, offered, encoding, identity] of TABLE) {
  test(`negotiate ${JSON.stringify(header)} offered [${offered}] -> ${encoding} (identity ${identity})`, () => {
    const negotiator = new EncodingNegotiator(offered);
    const result = negotiator.negotiate(header);
    assert.equal(result.encoding, encoding);
    assert.equal(result.identity, identity);
    // Remembered answers are the same answers.
    assert.deepEqual(negotiator.negotiate(header), result);
  });
}

test('negotiate: the accepted set covers codings not offered, and x-gzip means gzip', () => {
  const negotiator = new EncodingNegotiator(['br']);
  const r = negotiator.negotiate('x-gzip, deflate;q=0.1, br;q=0');
  assert.equal(r.encoding, null);
  assert.ok(r.accepted.has('gzip'));
  assert.ok(r.accepted.has('x-gzip'));
  assert.ok(r.accepted.has('deflate'));
  assert.ok(!r.accepted.has('br'));
});

test('negotiate: many distinct headers keep working (bounded memory)', () => {
  const negotiator = new EncodingNegotiator(['gzip']);
  for (let i = 0; i < 2000; i++) {
    assert.equal(negotiator.negotiate(`gzip;q=0.${(i % 9) + 1}, x-${i}`).encoding, 'gzip');
  }
  assert.equal(negotiator.negotiate(`${'x-long, '.repeat(100)}gzip`).encoding, 'gzip');
});

const DEFAULT_TYPES = [
  ['text/html; charset=utf-8', true],
  ['TEXT/HTML', true],
  ['text/css', true],
  ['text/event-stream', true],
  ['application/json', true],
  ['application/json;charset=utf-8', true],
  ['application/vnd.api+json', true],
  ['application/x-ndjson', true],
  ['application/javascript', true],
  ['text/javascript', true],
  ['application/xml', true],
  ['image/svg+xml', true],
  ['application/wasm', true],
  ['image/png', false],
  ['image/jpeg', false],
  ['video/mp4', false],
  ['application/zip', false],
  ['application/octet-stream', false],
  ['font/woff2', false],
  ['', false],
  [';', false],
];

for (const [type, expected] of DEFAULT_TYPES) {
  test(`default types: ${JSON.stringify(type)} -> ${expected}`, () => {
    assert.equal(createTypeMatcher(undefined)(type), expected);
  });
}

test('configured types: exact, wildcard and everything', () => {
  const match = createTypeMatcher(['text/*', 'Application/JSON']);
  assert.equal(match('text/css'), true);
  assert.equal(match('text/plain; charset=utf-8'), true);
  assert.equal(match('application/json; charset=utf-8'), true);
  assert.equal(match('application/xml'), false);
  assert.equal(match('image/svg+xml'), false);
  const all = createTypeMatcher(['*/*']);
  assert.equal(all('image/png'), true);
  assert.equal(all(''), false);
  const none = createTypeMatcher([]);
  assert.equal(none('text/html'), false);
});
