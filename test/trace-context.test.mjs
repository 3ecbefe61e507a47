// W3C trace context made on first read (core/context.ts traceInit, observability/tracing.ts):
// a request whose trace fields nobody reads never makes them; read, they are complete and
// consistent, and a caller's traceparent is continued.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RequestContext } from '../dist/core/context.js';
import { Tracing } from '../dist/observability/tracing.js';

const listener = { name: 'web', scheme: 'http', maxBodySize: 0 };
function context(headers = {}) {
  const req = { method: 'GET', url: '/x', headers: { host: 'example.test', ...headers } };
  return new RequestContext(req, {}, listener, '127.0.0.1', 'id-1');
}

test('start leaves the ids to the first read; the first read makes them all, once', async () => {
  const tracing = new Tracing({}, '0.0.0', () => undefined);
  const ctx = context();
  tracing.start(ctx);
  assert.equal(typeof ctx.traceInit, 'function', 'nothing made yet');
  const trace = ctx.trace;
  assert.equal(ctx.traceInit, null);
  assert.match(trace.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  assert.equal(trace.traceparent, `00-${trace.traceId}-${trace.spanId}-01`);
  assert.equal(trace.sampled, true);
  assert.equal(trace.parentSpanId, '');
  assert.equal(ctx.trace, trace, 'the same on every read');
  await tracing.close();
});

test("a caller's traceparent is continued: its trace id and sampling, a new span", async () => {
  const tracing = new Tracing({}, '0.0.0', () => undefined);
  const incoming = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00';
  const ctx = context({ traceparent: incoming });
  tracing.start(ctx);
  const trace = ctx.trace;
  assert.equal(trace.traceId, '0af7651916cd43dd8448eb211c80319c');
  assert.equal(trace.parentSpanId, 'b7ad6b7169203331');
  assert.equal(trace.sampled, false);
  assert.match(trace.traceparent, /^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-00$/);
  assert.notEqual(trace.spanId, 'b7ad6b7169203331');
  await tracing.close();
});

test('without tracing the fields stay empty', () => {
  const ctx = context();
  assert.equal(ctx.traceInit, null);
  assert.equal(ctx.trace.traceId, '');
  assert.equal(ctx.trace.traceparent, null);
});
