import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startOrigin, startProxy, request } from './helpers.mjs';

const cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function named(name) {
  const o = await startOrigin((req, res) => res.end(name));
  cleanups.push(o.close);
  return o;
}

test('smooth weighted round-robin: weights 5,1,1 give a,a,b,a,c,a,a', async () => {
  const [a, b, c] = await Promise.all(['a', 'b', 'c'].map(named));
  const p = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams:
  app:
    servers:
      - { url: "${a.url}", weight: 5 }
      - { url: "${b.url}" }
      - { url: "${c.url}" }
routes: [{ upstream: app }]
`);
  cleanups.push(p.close);
  let sequence = '';
  for (let i = 0; i < 14; i++) sequence += (await request(`${p.url}/`)).text;
  assert.equal(sequence, 'aabacaaaabacaa');
});

test('backup servers take traffic only when no primary is available', async () => {
  const [a, b, backup] = await Promise.all(['a', 'b', 'backup'].map(named));
  const p = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams:
  app:
    servers:
      - { url: "${a.url}" }
      - { url: "${b.url}" }
      - { url: "${backup.url}", backup: true }
routes: [{ upstream: app }]
`);
  cleanups.push(p.close);
  const seen = new Set();
  for (let i = 0; i < 6; i++) seen.add((await request(`${p.url}/`)).text);
  assert.deepEqual([...seen].sort(), ['a', 'b']);
  const hosts = p.proxy.runtime.groups.get('app').hosts;
  hosts[0].healthy = false;
  hosts[1].draining = true;
  assert.equal((await request(`${p.url}/`)).text, 'backup');
  hosts[0].healthy = true;
  assert.equal((await request(`${p.url}/`)).text, 'a');
});

test('host state survives a reload for servers that stay', async () => {
  const [a, b] = await Promise.all(['a', 'b'].map(named));
  const yaml = (servers) => `
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams:
  app:
    servers: [${servers.map((s) => `{ url: "${s.url}" }`).join(', ')}]
routes: [{ upstream: app }]
`;
  const p = await startProxy(yaml([a]));
  cleanups.push(p.close);
  const before = p.proxy.runtime.groups.get('app').hosts[0];
  before.draining = true;
  const { configFrom } = await import('./helpers.mjs');
  const next = configFrom(yaml([a, b]));
  next.listeners = p.proxy.runtime.config.listeners;
  await p.proxy.reload(next);
  const hosts = p.proxy.runtime.groups.get('app').hosts;
  assert.equal(hosts[0], before, 'the same Host object is kept');
  assert.equal(hosts[0].draining, true);
  assert.equal((await request(`${p.url}/`)).text, 'b');
});
