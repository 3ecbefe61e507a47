// Zero-downtime reloads with workers: 2, measured with a steady keep-alive load: 20 reloads
// (SIGHUP and POST /api/reload) with no failed request, every worker switched; an invalid config
// or one the workers cannot apply changes nothing; `watch: true` reloads on a file change.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startOrigin } from './helpers.mjs';
import { eventually, freePort, get, startCli, startLoad } from './cluster-helpers.mjs';

let origin;
let sy;
let web;
let adminUrl;
let port;
let adminPort;

const config = (gen, extra = '') => `
listeners:
  - name: web
    address: 127.0.0.1:${port}
${extra}
upstreams:
  app:
    servers: [{ url: ${origin.url} }]
routes:
  - name: main
    upstream: app
    responseHeaders: { set: { X-Gen: "${gen}" } }
admin: { address: 127.0.0.1:${adminPort} }
workers: 2
shutdownTimeout: 5s
`;

/** X-Gen of `n` requests on fresh connections (spread over both workers). */
async function generations(n = 6) {
  const seen = new Set();
  for (let i = 0; i < n; i++) seen.add((await get(`${web}/probe/${i}`)).headers['x-gen']);
  return [...seen];
}

before(async () => {
  origin = await startOrigin((_req, res) => res.end('ok'));
  port = await freePort();
  adminPort = await freePort();
  web = `http://127.0.0.1:${port}`;
  adminUrl = `http://127.0.0.1:${adminPort}`;
  sy = await startCli(config(0), { expectListeners: 2 });
});

after(async () => {
  if (sy) await sy.stop('SIGKILL');
  await origin?.close();
});

const reloadApi = () => get(`${adminUrl}/api/reload`, { method: 'POST' });

describe('reloads across workers', () => {
  test('20 reloads under steady load: zero failed requests, every worker switched', async () => {
    const load = startLoad(`${web}/load`, { concurrency: 6, durationMs: 60_000, pauseMs: 1 });
    await load.progress(50);
    for (let gen = 1; gen <= 20; gen++) {
      sy.write(config(gen));
      if (gen % 2 === 0) {
        const answer = await reloadApi();
        assert.equal(answer.status, 200, answer.body);
        assert.deepEqual(JSON.parse(answer.body).changes, ['route changed: main']);
      } else {
        const count = (sy.log.match(/config reloaded/g) ?? []).length;
        sy.child.kill('SIGHUP');
        await sy.waitFor((log) => (log.match(/config reloaded/g) ?? []).length > count);
      }
      await load.progress(10);
    }
    const stats = await load.stop();
    assert.equal(stats.failed, 0, `${JSON.stringify(stats.statuses)} ${stats.errors.join('; ')}`);
    assert.ok(stats.ok >= 200, `only ${stats.ok} requests`);
    assert.deepEqual(await generations(), ['20']);
    const metrics = (await get(`${adminUrl}/metrics`)).body;
    assert.match(metrics, /^switchyard_config_reloads_total\{result="ok"\} 20$/m);
  });

  test('an invalid config is refused (API answer, log, metric) and changes nothing', async () => {
    sy.write(config(21).replace('upstream: app', 'upstream: nope'));
    const answer = await reloadApi();
    assert.equal(answer.status, 422);
    const body = JSON.parse(answer.body);
    assert.match(body.errors.join('\n'), /routes\[0\]\.upstream/);
    sy.child.kill('SIGHUP');
    await sy.waitFor(/reload refused[^\n]*\n[^]*reload refused/);
    assert.deepEqual(await generations(), ['20']);
    const metrics = (await get(`${adminUrl}/metrics`)).body;
    assert.match(metrics, /^switchyard_config_reloads_total\{result="refused"\} 2$/m);
  });

  test('a config the workers cannot apply (a port in use) changes nothing', async () => {
    const blocker = net.createServer();
    await new Promise((r) => blocker.listen(0, '127.0.0.1', r));
    const busy = blocker.address().port;
    try {
      sy.write(config(22, `  - name: extra\n    address: 127.0.0.1:${busy}`));
      const answer = await reloadApi();
      assert.equal(answer.status, 422, answer.body);
      assert.match(JSON.parse(answer.body).errors.join('\n'), /already in use/);
      assert.deepEqual(await generations(), ['20']);
    } finally {
      blocker.close();
    }
    // The same file once the port is free: both workers open the new listener.
    const answer = await reloadApi();
    assert.equal(answer.status, 200, answer.body);
    assert.deepEqual(await generations(), ['22']);
    assert.equal((await get(`http://127.0.0.1:${busy}/x`)).headers['x-gen'], '22');
  });
});

describe('watch: true', () => {
  test('a changed file is validated and applied; an invalid one is refused', async () => {
    const watchPort = await freePort();
    const yaml = (gen) => `
listeners: [{ name: web, address: 127.0.0.1:${watchPort} }]
upstreams: { app: { servers: [{ url: ${origin.url} }] } }
routes: [{ name: main, upstream: app, responseHeaders: { set: { X-Gen: "${gen}" } } }]
watch: true
`;
    const single = await startCli(yaml('a'));
    try {
      await single.waitFor(/watching the config file/);
      const url = `http://127.0.0.1:${watchPort}/w`;
      assert.equal((await get(url)).headers['x-gen'], 'a');
      single.write(yaml('b'));
      await eventually(async () => (await get(url)).headers['x-gen'] === 'b', {
        what: 'the watched change to apply',
      });
      single.write(yaml('c').replace('upstream: app', 'upstream: nope'));
      await single.waitFor(/reload refused/);
      assert.equal((await get(url)).headers['x-gen'], 'b');
    } finally {
      await single.stop();
    }
  });
});
