import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startOrigin, startProxy, request, configFrom } from './helpers.mjs';

const cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function freePort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

/** A port something else listens on (until the tests end). */
async function busyPort() {
  const blocker = net.createServer();
  await new Promise((r) => blocker.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise((r) => blocker.close(r)));
  return blocker.address().port;
}

test('reload: listener limits change in place, listeners are added and removed', async () => {
  const origin = await startOrigin((req, res) => {
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  cleanups.push(origin.close);
  const [a, b] = [await freePort(), await freePort()];
  const yaml = (listeners) => `
listeners:
${listeners}
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes: [{ upstream: app }]
`;
  const p = await startProxy(
    yaml(`  - { name: a, address: "127.0.0.1:${a}", limits: { maxBodySize: 10 } }`),
  );
  cleanups.push(p.close);
  assert.equal(
    (await request(`http://127.0.0.1:${a}/`, { method: 'POST', body: 'x'.repeat(50) })).status,
    413,
  );

  await p.proxy.reload(
    configFrom(
      yaml(
        `  - { name: a, address: "127.0.0.1:${a}", limits: { maxBodySize: 100 } }\n  - { name: b, address: "127.0.0.1:${b}" }`,
      ),
    ),
  );
  assert.equal(
    (await request(`http://127.0.0.1:${a}/`, { method: 'POST', body: 'x'.repeat(50) })).status,
    200,
  );
  assert.equal((await request(`http://127.0.0.1:${b}/`)).text, 'ok', 'new listener opened');

  await p.proxy.reload(configFrom(yaml(`  - { name: b, address: "127.0.0.1:${b}" }`)));
  await assert.rejects(
    request(`http://127.0.0.1:${a}/`),
    /ECONNREFUSED/,
    'removed listener closed',
  );
  assert.equal((await request(`http://127.0.0.1:${b}/`)).text, 'ok');
});

test('reload: a port conflict aborts the reload and changes nothing', async () => {
  const origin = await startOrigin((req, res) => res.end('old'));
  cleanups.push(origin.close);
  const busy = await busyPort();
  const p = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes: [{ upstream: app }]
`);
  cleanups.push(p.close);
  const next = configFrom(`
listeners: [{ name: web, address: "127.0.0.1:0" }, { name: other, address: "127.0.0.1:${busy}" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes: [{ respond: { body: "new" } }]
`);
  await assert.rejects(p.proxy.reload(next), /already in use/);
  assert.equal((await request(`${p.url}/`)).text, 'old');
});

test('reload: a dropped listener, and one opened by a refused reload, leave the metrics once drained', async () => {
  const origin = await startOrigin((req, res) => res.end('ok'));
  cleanups.push(origin.close);
  const busy = await busyPort();
  const [a, b, c] = [await freePort(), await freePort(), await freePort()];
  const yaml = (listeners) => `
listeners:
${listeners}
admin: { address: "127.0.0.1:0" }
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes: [{ upstream: app }]
`;
  const p = await startProxy(
    yaml(`  - { name: a, address: "127.0.0.1:${a}" }\n  - { name: b, address: "127.0.0.1:${b}" }`),
  );
  cleanups.push(p.close);
  const listed = async () => {
    const text = (await request(`${p.proxy.adminUrl()}/metrics`)).text;
    return [...text.matchAll(/^switchyard_active_connections\{listener="([^"]+)"\}/gm)]
      .map((m) => m[1])
      .sort();
  };
  assert.deepEqual(await listed(), ['a', 'b']);

  // c opens, then the busy port refuses the reload: c must not linger in the metrics.
  await assert.rejects(
    p.proxy.reload(
      configFrom(
        yaml(
          `  - { name: a, address: "127.0.0.1:${a}" }\n  - { name: c, address: "127.0.0.1:${c}" }\n  - { name: d, address: "127.0.0.1:${busy}" }`,
        ),
      ),
    ),
    /already in use/,
  );
  // b is dropped (shutdownTimeout is short and it has no connections: it drains at once).
  await p.proxy.reload(configFrom(yaml(`  - { name: a, address: "127.0.0.1:${a}" }`)));
  assert.equal((await request(`http://127.0.0.1:${a}/`)).text, 'ok');
  for (let i = 0; i < 100 && (await listed()).length > 1; i++)
    await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(await listed(), ['a']);
});
