// The freshness decisions, and the edges where http-cache-semantics (used for storability) is
// wrong for a shared cache: each test shows the library's answer next to ours.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import CachePolicy from 'http-cache-semantics';
import {
  analyzeResponse,
  parseCacheControl,
  requestDirectives,
  notModified,
  parseRange,
} from '../dist/filters/cache/policy.js';
import { compileKey } from '../dist/filters/cache/keys.js';

const NOW = Date.parse('2024-01-01T00:00:00Z');
const date = new Date(NOW).toUTCString();
const req = { method: 'GET', headers: { host: 'example.test' } };
const analyze = (headers, status = 200, options = { defaultTtl: 60 }) =>
  analyzeResponse(req, status, { date, ...headers }, NOW, NOW, options);
const library = (headers, status = 200) =>
  new CachePolicy(
    { method: 'GET', url: '/', headers: { host: 'example.test' } },
    { status, headers: { date, ...headers } },
    { shared: true },
  );

test('library edge: must-revalidate responses are reusable while fresh', () => {
  const headers = { 'cache-control': 'max-age=60, must-revalidate' };
  const lib = library(headers);
  // The library asks for revalidation even at age 0.
  assert.equal(
    lib.satisfiesWithoutRevalidation({
      method: 'GET',
      url: '/',
      headers: { host: 'example.test' },
    }),
    false,
  );
  const ours = analyze(headers);
  assert.equal(ours.lifetime, 60);
  assert.equal(ours.mustRevalidate, true);
});

test('library edge: proxy-revalidate and s-maxage keep their freshness in a shared cache', () => {
  assert.equal(library({ 'cache-control': 'max-age=60, proxy-revalidate' }).maxAge(), 0);
  const ours = analyze({ 'cache-control': 'max-age=60, proxy-revalidate' });
  assert.equal(ours.lifetime, 60);
  assert.equal(ours.mustRevalidate, true);
  const sMaxAge = analyze({ 'cache-control': 's-maxage=30, max-age=5' });
  assert.equal(sMaxAge.lifetime, 30);
  assert.equal(sMaxAge.mustRevalidate, true, 's-maxage implies proxy-revalidate');
});

test('library edge: a negative Age is ignored, not added to freshness', () => {
  const headers = { 'cache-control': 'max-age=60', age: '-3600' };
  assert.ok(library(headers).age() < 0);
  assert.equal(analyze(headers).initialAge, 0);
  assert.equal(analyze({ 'cache-control': 'max-age=60', age: '10' }).initialAge, 10);
  assert.equal(analyze({ 'cache-control': 'max-age=60', age: 'soon' }).initialAge, 0);
});

test('library edge: conflicting duplicate max-age makes the response stale', () => {
  const headers = { 'cache-control': 'max-age=3600, max-age=1' };
  assert.equal(library(headers).maxAge(), 1);
  assert.equal(analyze(headers).lifetime, 0);
  assert.equal(analyze({ 'cache-control': 'max-age=60, max-age=60' }).lifetime, 60);
  assert.equal(analyze({ 'cache-control': 'max-age=abc' }).lifetime, 0);
});

test('library edge: immutable alone gives no freshness beyond the normal rules', () => {
  const headers = { 'cache-control': 'immutable' };
  // It even mixes units: the one-day minimum is in ms but maxAge() is in seconds (1000 days).
  assert.equal(library(headers).maxAge(), 86400 * 1000);
  // Heuristic status 200 without Last-Modified: the route ttl.
  assert.equal(analyze(headers).lifetime, 60);
});

test('library edge: the Last-Modified heuristic is bounded by ttl', () => {
  const lastModified = new Date(NOW - 1000 * 86400_000).toUTCString();
  assert.equal(library({ 'last-modified': lastModified }).maxAge(), 100 * 86400);
  assert.equal(analyze({ 'last-modified': lastModified }).lifetime, 60);
  const recent = new Date(NOW - 100_000).toUTCString();
  assert.equal(analyze({ 'last-modified': recent }, 200, { defaultTtl: 3600 }).lifetime, 10);
});

test('storability comes from the library where it is right', () => {
  assert.equal(analyze({ 'cache-control': 'no-store' }).notStorable, 'uncacheable');
  assert.equal(analyze({ 'cache-control': 'private, max-age=60' }).notStorable, 'uncacheable');
  assert.equal(analyze({}, 500).notStorable, 'uncacheable');
  assert.equal(analyze({}, 302).notStorable, 'uncacheable');
  assert.equal(analyze({ 'cache-control': 'max-age=60' }, 302).notStorable, null);
  assert.equal(analyze({ vary: 'a, *' }).notStorable, 'vary-star');
  assert.equal(
    analyze({ 'set-cookie': 'a=1', 'cache-control': 'public, max-age=9' }).notStorable,
    'set-cookie',
  );
  const withAuth = (cc) =>
    analyzeResponse(
      { method: 'GET', headers: { authorization: 'Basic x' } },
      200,
      { date, 'cache-control': cc },
      NOW,
      NOW,
      { defaultTtl: 60 },
    ).notStorable;
  assert.equal(withAuth('max-age=60'), 'uncacheable');
  assert.equal(withAuth('public, max-age=60'), null);
  assert.equal(withAuth('s-maxage=60'), null);
  assert.equal(withAuth('max-age=60, must-revalidate'), null);
});

test('freshness: s-maxage > max-age > Expires > heuristics; Expires invalid is stale', () => {
  assert.equal(
    analyze({ 'cache-control': 'max-age=5', expires: new Date(NOW + 60_000).toUTCString() })
      .lifetime,
    5,
  );
  assert.equal(analyze({ expires: new Date(NOW + 60_000).toUTCString() }).lifetime, 60);
  assert.equal(analyze({ expires: '0' }).lifetime, 0);
  assert.equal(analyze({ 'cache-control': 'no-cache, max-age=60' }).lifetime, 0);
  assert.equal(analyze({ pragma: 'no-cache' }).noCache, true);
  assert.equal(analyze({ pragma: 'no-cache', 'cache-control': 'max-age=5' }).noCache, false);
  const swr = analyze({
    'cache-control': 'max-age=1, stale-while-revalidate=30, stale-if-error=60',
  });
  assert.equal(swr.staleWhileRevalidate, 30);
  assert.equal(swr.staleIfError, 60);
});

test('corrected initial age uses the response delay and the Date header', () => {
  const facts = analyzeResponse(
    req,
    200,
    { date: new Date(NOW - 20_000).toUTCString(), age: '5', 'cache-control': 'max-age=60' },
    NOW - 2_000,
    NOW,
    { defaultTtl: 60 },
  );
  assert.equal(facts.initialAge, 20);
});

test('Cache-Control parsing: quoted values, case, unknown directives', () => {
  const cc = parseCacheControl('Max-Age=10, no-cache="set-cookie, x", foo');
  assert.equal(cc.get('max-age'), '10');
  assert.equal(cc.get('no-cache'), 'set-cookie, x');
  assert.equal(cc.get('foo'), true);
  assert.equal(requestDirectives({}), null);
  assert.deepEqual(
    requestDirectives({ 'cache-control': 'max-stale, min-fresh=5' }).maxStale,
    Infinity,
  );
  assert.equal(requestDirectives({ 'cache-control': 'max-age=x' }).maxAge, 0);
  assert.equal(requestDirectives({ pragma: 'no-cache' }).noCache, true);
});

test('conditionals: weak comparison for If-None-Match; IMS only without INM', () => {
  assert.equal(notModified({ 'if-none-match': 'W/"a"' }, '"a"', undefined), true);
  assert.equal(notModified({ 'if-none-match': '*' }, '"a"', undefined), true);
  assert.equal(
    notModified({ 'if-none-match': '"b"', 'if-modified-since': date }, '"a"', NOW),
    false,
  );
  assert.equal(notModified({ 'if-modified-since': date }, undefined, NOW - 1000), true);
  assert.equal(notModified({ 'if-modified-since': 'garbage' }, undefined, NOW), false);
});

test('ranges: single, suffix, open, unsatisfiable; others are ignored', () => {
  assert.deepEqual(parseRange('bytes=0-4', 10), { start: 0, end: 4 });
  assert.deepEqual(parseRange('bytes=-3', 10), { start: 7, end: 9 });
  assert.deepEqual(parseRange('bytes=8-100', 10), { start: 8, end: 9 });
  assert.equal(parseRange('bytes=10-', 10), 'unsatisfiable');
  assert.equal(parseRange('bytes=-0', 10), 'unsatisfiable');
  assert.equal(parseRange('bytes=5-2', 10), null);
  assert.equal(parseRange('bytes=0-1,2-3', 10), null);
  assert.equal(parseRange('items=0-1', 10), null);
});

test('keys: default has method, scheme, host, path and query; HEAD maps to GET by the caller', () => {
  const ctx = { scheme: 'https', host: 'Example.TEST:8443', req: { headers: { 'x-t': 'a' } } };
  const key = compileKey({ template: undefined, sortQuery: false, dropQuery: [] });
  assert.equal(key(ctx, 'GET', '/p', 'b=1&a=2'), 'GET https://example.test:8443/p?b=1&a=2');
  assert.equal(key(ctx, 'GET', '/p', ''), 'GET https://example.test:8443/p');
  const sorted = compileKey({ template: undefined, sortQuery: true, dropQuery: ['utm_*', 'x'] });
  assert.equal(
    sorted(ctx, 'GET', '/p', 'z=1&utm_a=1&x=2&a=2&a=1'),
    'GET https://example.test:8443/p?a=2&a=1&z=1',
  );
  const tpl = compileKey({
    template: '{method}|{uri}|{header.x-t}',
    sortQuery: true,
    dropQuery: [],
  });
  assert.equal(tpl(ctx, 'GET', '/p', 'b=1&a=2'), 'GET|/p?a=2&b=1|a');
});
