// One conformance suite run against every cache store (memory, disk, redis), then what only a
// store of each kind promises: disk restarts, corruption, several processes; redis sharing and
// bodies kept local; both through a running proxy. redis-server is started here on a spare port.
import { test, after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, writeFileSync, readdirSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { MemoryStore } from '../dist/filters/cache/stores/memory.js';
import { DiskStore } from '../dist/filters/cache/stores/disk.js';
import { RedisStore } from '../dist/filters/cache/stores/redis.js';
import { startOrigin, startProxy, request, sparePort, startRedis } from './helpers.mjs';

const cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

const logs = [];
const log = (level, message, fields) => logs.push({ level, message, ...fields });

function tempDir() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sy-cache-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function record(key, body = 'body', extra = {}) {
  return {
    meta: {
      kind: 'response',
      key,
      url: `http://example.test/${key}`,
      tags: ['t1'],
      status: 200,
      headers: { 'content-type': 'text/plain', 'set-by': ['a', 'b'] },
      upstreamCacheStatus: undefined,
      responseTime: Date.now(),
      initialAge: 0,
      lifetime: 60,
      noCache: false,
      mustRevalidate: false,
      swr: 0,
      sie: 0,
      etag: '"e"',
      lastModified: undefined,
      expiresAt: Date.now() + 60_000,
      ...extra,
    },
    body: Buffer.isBuffer(body) ? body : Buffer.from(body),
  };
}

const plain = (meta) => JSON.parse(JSON.stringify(meta));

let redisPort;
before(async () => {
  redisPort = await sparePort();
  const redis = await startRedis(redisPort);
  cleanups.push(async () => {
    if (redis.exitCode === null) {
      redis.kill('SIGKILL');
      await once(redis, 'exit');
    }
  });
});

let redisPrefixes = 0;
const factories = {
  memory: async () => new MemoryStore(1 << 20),
  disk: async () => {
    const store = new DiskStore(tempDir(), 1 << 20, log);
    await store.ready;
    return store;
  },
  redis: async () => {
    const store = new RedisStore(
      {
        url: `redis://127.0.0.1:${redisPort}`,
        maxBodySize: 1 << 20,
        localMaxSize: 1 << 20,
        prefix: `conformance${++redisPrefixes}:`,
      },
      log,
    );
    cleanups.push(() => store.close());
    return store;
  },
};

for (const [kind, create] of Object.entries(factories)) {
  describe(`CacheStore conformance: ${kind}`, () => {
    let store;
    before(async () => {
      store = await create();
    });

    test('a missing key is undefined', async () => {
      assert.equal(await store.get('nothing'), undefined);
    });

    test('set then get returns the same meta and body; set overwrites', async () => {
      const r = record('k1', 'hello');
      await store.set('k1', r);
      const got = await store.get('k1');
      assert.deepEqual(plain(got.meta), plain(r.meta));
      assert.equal(got.body.toString(), 'hello');
      await store.set('k1', record('k1', 'again'));
      assert.equal((await store.get('k1')).body.toString(), 'again');
    });

    test('binary bodies of 256 KiB round-trip intact', async () => {
      const body = Buffer.alloc(256 * 1024);
      for (let i = 0; i < body.length; i++) body[i] = (i * 7) & 255;
      await store.set('bin', record('bin', body));
      assert.ok((await store.get('bin')).body.equals(body));
    });

    test('Vary index records round-trip', async () => {
      const meta = {
        kind: 'vary',
        key: 'v',
        url: 'http://example.test/v',
        tags: [],
        vary: ['accept-encoding'],
        variants: ['v\naccept-encoding:gzip'],
        expiresAt: Date.now() + 60_000,
      };
      await store.set('v', { meta, body: Buffer.alloc(0) });
      assert.deepEqual(plain((await store.get('v')).meta), meta);
    });

    test('delete removes a key', async () => {
      await store.set('gone', record('gone'));
      await store.delete('gone');
      assert.equal(await store.get('gone'), undefined);
      await store.delete('never-there');
    });

    test('an expired record is never returned', async () => {
      await store.set('old', record('old', 'x', { expiresAt: Date.now() + 30 }));
      const r = record('old2', 'x');
      r.meta.expiresAt = Date.now() - 1;
      await store.set('old2', r);
      assert.equal(await store.get('old2'), undefined);
    });

    test('purge removes exactly the matching records and counts them', async () => {
      await store.clear();
      await store.set('a', record('a', 'a', { tags: ['red'] }));
      await store.set('b', record('b', 'b', { tags: ['red', 'blue'] }));
      await store.set('c', record('c', 'c', { tags: ['green'] }));
      assert.equal(await store.purge((m) => m.tags.includes('red')), 2);
      assert.equal(await store.get('a'), undefined);
      assert.equal(await store.get('b'), undefined);
      assert.equal((await store.get('c')).body.toString(), 'c');
    });

    test('clear removes everything', async () => {
      await store.set('x', record('x'));
      assert.ok((await store.clear()) >= 1);
      assert.equal(await store.get('x'), undefined);
      assert.equal(await store.get('c'), undefined);
    });
  });
}

describe('memory store', () => {
  test('is bounded by bytes, evicting the least recently used', async () => {
    const store = new MemoryStore(40 * 1024);
    const body = Buffer.alloc(10 * 1024, 'm');
    for (const k of ['a', 'b', 'c']) await store.set(k, record(k, body));
    store.get('a');
    await store.set('d', record('d', body));
    await store.set('e', record('e', body));
    assert.ok(store.size <= 40 * 1024);
    assert.ok(store.get('a'), 'recently used survives');
    assert.equal(store.get('b'), undefined);
  });
});

describe('disk store', () => {
  test('survives a restart', async () => {
    const dir = tempDir();
    const first = new DiskStore(dir, 1 << 20, log);
    await first.set('persist', record('persist', 'still here'));
    await first.close();
    const second = new DiskStore(dir, 1 << 20, log);
    await second.ready;
    assert.equal((await second.get('persist')).body.toString(), 'still here');
    assert.ok(second.size > 0, 'the restart scan counts existing files');
  });

  test('corrupt and truncated files are detected and dropped', async () => {
    const dir = tempDir();
    const store = new DiskStore(dir, 1 << 20, log);
    await store.set('flip', record('flip', 'some body bytes'));
    await store.set('cut', record('cut', 'another body'));
    const files = [];
    const walk = (d) => {
      for (const name of readdirSync(d)) {
        const f = path.join(d, name);
        if (statSync(f).isDirectory()) walk(f);
        else files.push(f);
      }
    };
    walk(path.join(dir, 'v1'));
    assert.equal(files.length, 2);
    for (const file of files) {
      const bytes = readFileSync(file);
      if (bytes.includes(Buffer.from('some body'))) {
        bytes[bytes.length - 3] ^= 0xff;
        writeFileSync(file, bytes);
      } else {
        writeFileSync(file, bytes.subarray(0, bytes.length - 4));
      }
    }
    logs.length = 0;
    assert.equal(await store.get('flip'), undefined);
    assert.equal(await store.get('cut'), undefined);
    assert.equal(logs.filter((l) => /corrupt/.test(l.message)).length, 2);
    files.length = 0;
    walk(path.join(dir, 'v1'));
    assert.equal(files.length, 0, 'corrupt files are deleted');
  });

  test('writes are atomic: concurrent writers and readers never see a torn file', async () => {
    const dir = tempDir();
    const a = new DiskStore(dir, 64 << 20, log);
    const b = new DiskStore(dir, 64 << 20, log);
    const bodyA = Buffer.alloc(512 * 1024, 'a');
    const bodyB = Buffer.alloc(512 * 1024, 'b');
    logs.length = 0;
    const reads = [];
    const writes = [];
    for (let i = 0; i < 10; i++) {
      writes.push(a.set('same', record('same', bodyA)), b.set('same', record('same', bodyB)));
      reads.push(a.get('same'), b.get('same'));
    }
    await Promise.all(writes);
    for (const r of await Promise.all(reads)) {
      if (r === undefined) continue;
      assert.ok(r.body.equals(bodyA) || r.body.equals(bodyB));
    }
    assert.equal(logs.filter((l) => /corrupt/.test(l.message)).length, 0);
  });

  test('is shared by several processes', async () => {
    const dir = tempDir();
    const storeUrl = new URL('../dist/filters/cache/stores/disk.js', import.meta.url).href;
    const script = `
      const { DiskStore } = await import(${JSON.stringify(storeUrl)});
      const store = new DiskStore(${JSON.stringify(dir)}, 1 << 20, () => {});
      await store.set('from-child', {
        meta: { kind: 'response', key: 'from-child', url: 'http://x/', tags: [], status: 200,
          headers: {}, responseTime: Date.now(), initialAge: 0, lifetime: 60, noCache: false,
          mustRevalidate: false, swr: 0, sie: 0, expiresAt: Date.now() + 60000 },
        body: Buffer.from('written by pid ' + process.pid),
      });
      const mine = await store.get('from-parent');
      process.stdout.write(mine ? mine.body.toString() : 'missing');
    `;
    const parent = new DiskStore(dir, 1 << 20, log);
    await parent.set('from-parent', record('from-parent', 'hello child'));
    const { stdout } = await promisify(execFile)(process.execPath, [
      '--input-type=module',
      '-e',
      script,
    ]);
    assert.equal(stdout, 'hello child');
    assert.match((await parent.get('from-child')).body.toString(), /^written by pid \d+$/);
  });

  test('is bounded by bytes, evicting the least recently used files', async () => {
    const store = new DiskStore(tempDir(), 50 * 1024, log);
    await store.ready;
    const body = Buffer.alloc(10 * 1024, 'd');
    for (let i = 0; i < 10; i++) await store.set(`k${i}`, record(`k${i}`, body));
    assert.ok(store.size <= 50 * 1024, `size ${store.size}`);
    assert.ok(await store.get('k9'));
    assert.equal(await store.get('k0'), undefined);
  });
});

describe('redis store', () => {
  test('small bodies are shared between instances; bodies over the limit stay local', async () => {
    const options = {
      url: `redis://127.0.0.1:${redisPort}`,
      maxBodySize: 1024,
      localMaxSize: 1 << 20,
      prefix: 'sharing:',
    };
    const a = new RedisStore(options, log);
    const b = new RedisStore(options, log);
    cleanups.push(
      () => a.close(),
      () => b.close(),
    );
    await a.set('small', record('small', 'tiny'));
    await a.set('large', record('large', Buffer.alloc(4096, 'L')));
    assert.equal((await b.get('small')).body.toString(), 'tiny');
    assert.equal(await b.get('large'), undefined);
    assert.equal((await a.get('large')).body.length, 4096);
    assert.equal(await a.client.exists('sharing:large'), 0);
  });

  test('an unreachable redis is a miss, not an error', async () => {
    const port = await sparePort();
    const store = new RedisStore(
      { url: `redis://127.0.0.1:${port}`, maxBodySize: 1024, localMaxSize: 1 << 20 },
      log,
    );
    cleanups.push(() => store.close());
    assert.equal(await store.get('anything'), undefined);
    await store.set('anything', record('anything'));
  });

  test('a corrupt record is dropped', async () => {
    const store = new RedisStore(
      {
        url: `redis://127.0.0.1:${redisPort}`,
        maxBodySize: 1 << 20,
        localMaxSize: 1 << 20,
        prefix: 'corrupt:',
      },
      log,
    );
    cleanups.push(() => store.close());
    await store.client.set('corrupt:bad', 'not a record');
    assert.equal(await store.get('bad'), undefined);
    assert.equal(await store.client.exists('corrupt:bad'), 0);
  });
});

describe('stores behind a running proxy', () => {
  let origin;
  let hits = 0;
  before(async () => {
    origin = await startOrigin((req, res) => {
      hits++;
      res.writeHead(200, { 'cache-control': 'max-age=600', 'content-type': 'text/plain' });
      res.end(`body of ${req.url}`);
    });
    cleanups.push(origin.close);
  });

  const config = (globals) => `
listeners: [{ address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
${globals}
routes: [{ upstream: app, cache: true }]
`;

  test('disk: entries survive a proxy restart', async () => {
    const dir = tempDir();
    const globals = `cache: { store: disk, path: "${dir}", maxSize: 10MiB }`;
    const first = await startProxy(config(globals));
    const before = hits;
    assert.equal(
      (await request(`${first.url}/disk`, { headers: { host: 'disk.test' } })).headers[
        'cache-status'
      ],
      'switchyard; fwd=miss; stored',
    );
    await first.close();
    const second = await startProxy(config(globals));
    cleanups.push(second.close);
    const r = await request(`${second.url}/disk`, { headers: { host: 'disk.test' } });
    assert.equal(r.headers['cache-status'], 'switchyard; hit');
    assert.equal(r.text, 'body of /disk');
    assert.equal(hits, before + 1);
  });

  test('redis: two proxies share one cache', async () => {
    const globals = `cache: { store: redis }\nredis: { url: "redis://127.0.0.1:${redisPort}" }`;
    const a = await startProxy(config(globals));
    const b = await startProxy(config(globals));
    cleanups.push(a.close, b.close);
    const before = hits;
    await request(`${a.url}/shared`, { headers: { host: 'shared.test' } });
    const r = await request(`${b.url}/shared`, { headers: { host: 'shared.test' } });
    assert.equal(r.headers['cache-status'], 'switchyard; hit');
    assert.equal(hits, before + 1);
  });
});
