// workers: 2 through the real CLI: worker processes sharing one listener, a supervisor that
// replaces a killed worker under load, exact memory rate limits across workers (decided in the
// primary), whole-instance admin views (metrics, upstreams, drain) and graceful shutdown.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { startOrigin } from './helpers.mjs';
import { eventually, freePort, get, startCli, startLoad } from './cluster-helpers.mjs';

let origin;
let sy;
let web;
let adminUrl;
let slowArrived = 0;

before(async () => {
  origin = await startOrigin((req, res) => {
    if (req.url.startsWith('/slow')) {
      slowArrived++;
      setTimeout(() => res.end('slow done'), 1500);
      return;
    }
    res.end('ok');
  });
  const port = await freePort();
  const adminPort = await freePort();
  web = `http://127.0.0.1:${port}`;
  adminUrl = `http://127.0.0.1:${adminPort}`;
  sy = await startCli(
    `
listeners:
  - name: web
    address: 127.0.0.1:${port}
upstreams:
  app:
    servers: [{ url: ${origin.url} }]
routes:
  - name: limited
    match: { pathPrefix: /limited }
    upstream: app
    rateLimit: { rate: 10/m, burst: 9 }
  - name: main
    upstream: app
admin: { address: 127.0.0.1:${adminPort} }
workers: 2
shutdownTimeout: 10s
`,
    { expectListeners: 2 },
  );
});

after(async () => {
  if (sy) await sy.stop('SIGKILL');
  await origin?.close();
});

describe('workers: 2', () => {
  test('runs two worker processes besides the primary', async () => {
    const pids = sy.workerPids();
    assert.equal(pids.size, 2);
    const [a, b] = [...pids.values()];
    assert.notEqual(a, b);
    assert.ok(![a, b].includes(sy.child.pid));
    const status = JSON.parse((await get(`${adminUrl}/api/status`)).body);
    assert.equal(status.workers, 2);
    assert.match(sy.log, /2 workers started/);
  });

  test('a memory rate limit is exact for the instance, not per worker', async () => {
    const before = origin.server.connections;
    const statuses = [];
    // Fresh connections: the primary (or the kernel) spreads them over both workers.
    for (let i = 0; i < 30; i++) statuses.push((await get(`${web}/limited/${i}`)).status);
    assert.equal(statuses.filter((s) => s === 200).length, 10, statuses.join(' '));
    assert.equal(statuses.filter((s) => s === 429).length, 20);
    // Each worker has its own upstream pool: two new upstream connections show both served.
    assert.ok(origin.server.connections - before >= 2, 'both workers served requests');
  });

  test('/metrics and /api/upstreams add up every worker', async () => {
    for (let i = 0; i < 20; i++) assert.equal((await get(`${web}/m/${i}`)).status, 200);
    const metrics = (await get(`${adminUrl}/metrics`)).body;
    assert.match(
      metrics,
      /^switchyard_requests_total\{route="main",upstream="app",code="200"\} 20$/m,
    );
    assert.match(
      metrics,
      /^switchyard_requests_total\{route="limited",upstream="",code="429"\} 20$/m,
    );
    assert.match(metrics, /^switchyard_ratelimited_total\{route="limited"\} 20$/m);
    assert.match(metrics, /^switchyard_workers 2$/m);
    const { upstreams } = JSON.parse((await get(`${adminUrl}/api/upstreams`)).body);
    assert.equal(upstreams[0].servers[0].totalRequests, 30);
    assert.equal(upstreams[0].servers[0].state, 'up');
  });

  test('a drain through the admin API applies to every worker', async () => {
    const body = JSON.stringify({ url: origin.url });
    const headers = { 'content-type': 'application/json' };
    const drained = await get(`${adminUrl}/api/upstreams/app/drain`, {
      method: 'POST',
      headers,
      body,
    });
    assert.equal(drained.status, 200);
    assert.equal(JSON.parse(drained.body).server.state, 'draining');
    await eventually(
      async () => {
        const statuses = [];
        for (let i = 0; i < 6; i++) statuses.push((await get(`${web}/d/${i}`)).status);
        return statuses.every((s) => s === 503);
      },
      { what: 'every worker to answer 503 for the drained server' },
    );
    const { upstreams } = JSON.parse((await get(`${adminUrl}/api/upstreams`)).body);
    assert.equal(upstreams[0].servers[0].state, 'draining');
    await get(`${adminUrl}/api/upstreams/app/enable`, { method: 'POST', headers, body });
    await eventually(
      async () => {
        const statuses = [];
        for (let i = 0; i < 6; i++) statuses.push((await get(`${web}/e/${i}`)).status);
        return statuses.every((s) => s === 200);
      },
      { what: 'every worker to serve again' },
    );
  });

  test('a killed worker is replaced while a steady load loses under 1% of requests', async () => {
    const load = startLoad(`${web}/load`, { concurrency: 8, durationMs: 40_000, pauseMs: 2 });
    await load.progress(300);
    const victim = sy.workerPids().get('1');
    process.kill(victim, 'SIGKILL');
    await sy.waitFor(() => sy.workerPids().get('1') !== victim, 40_000, 'worker 1 to restart');
    assert.match(sy.log, /worker 1 exited; restarting .*"signal":"SIGKILL"/);
    await load.progress(300);
    const stats = await load.stop();
    const total = stats.ok + stats.failed;
    assert.ok(total >= 600, `total ${total}`);
    assert.ok(
      stats.failed / total < 0.01,
      `failed ${stats.failed} of ${total}: ${stats.errors.join('; ')}`,
    );
    const status = JSON.parse((await get(`${adminUrl}/api/status`)).body);
    assert.equal(status.workers, 2);
  });

  test('SIGTERM lets in-flight requests finish in every worker, then exits 0', async () => {
    slowArrived = 0;
    const slow = [get(`${web}/slow/1`), get(`${web}/slow/2`), get(`${web}/slow/3`)];
    await eventually(() => slowArrived === 3, { what: 'the slow requests to reach the origin' });
    sy.child.kill('SIGTERM');
    const answers = await Promise.all(slow);
    assert.deepEqual(
      answers.map((a) => [a.status, a.body]),
      [
        [200, 'slow done'],
        [200, 'slow done'],
        [200, 'slow done'],
      ],
    );
    const { code } = await sy.exited;
    assert.equal(code, 0);
    await assert.rejects(get(`${web}/after-stop`));
  });
});
