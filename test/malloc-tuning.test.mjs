// keepMallocHeap raises glibc's dynamic mmap/trim thresholds (see src/server/malloc-tuning.ts).
// Observable without a profiler: after it, an 8 MiB malloc is served from the brk heap (the
// "[heap]" mapping grows) instead of a separate mmap. Run in a child so the test runner's own
// allocator state does not matter, with --single-threaded-gc so that gc() itself frees the
// block (a background sweeper can be late on a loaded machine).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';

const probe = `
import { readFileSync } from 'node:fs';
import { keepMallocHeap } from ${JSON.stringify(new URL('../dist/server/malloc-tuning.js', import.meta.url).href)};
const heapMiB = () => {
  const line = readFileSync('/proc/self/maps', 'utf8').split('\\n').find((l) => l.endsWith('[heap]'));
  if (!line) return 0;
  const [a, b] = line.split(' ')[0].split('-').map((x) => parseInt(x, 16));
  return (b - a) / 1048576;
};
const applied = keepMallocHeap();
globalThis.gc();
const before = heapMiB();
const block = Buffer.allocUnsafeSlow(8 * 1024 * 1024);
block.fill(1);
process.stdout.write(JSON.stringify({ applied, grew: heapMiB() - before }));
`;

function run(env) {
  const out = execFileSync(
    process.execPath,
    ['--expose-gc', '--single-threaded-gc', '--input-type=module', '-e', probe],
    {
      env: { ...process.env, ...env },
      encoding: 'utf8',
    },
  );
  return JSON.parse(out);
}

const glibc =
  process.platform === 'linux' && Boolean(process.report?.getReport().header.glibcVersionRuntime);

test(
  'keepMallocHeap makes glibc keep blocks up to 31 MiB in the heap',
  { skip: !glibc && 'needs glibc' },
  () => {
    const on = run({});
    assert.equal(on.applied, true);
    // Free space already at the heap top may hold part of the block, so the heap grows by a
    // little less than 8 MiB (CI saw 7.97); an mmap'd block would leave it unchanged.
    assert.ok(on.grew >= 6, `the 8 MiB block came from the heap (grew ${on.grew} MiB)`);
  },
);

test(
  'SWITCHYARD_MALLOC_TUNING=0 leaves glibc at its defaults',
  { skip: !glibc && 'needs glibc' },
  () => {
    const off = run({ SWITCHYARD_MALLOC_TUNING: '0' });
    assert.equal(off.applied, false);
    assert.ok(off.grew < 1, `the 8 MiB block was mmap'd on its own (heap grew ${off.grew} MiB)`);
  },
);

test('onFirstLargeBody fires once, at the first large upstream body, not for small ones', async () => {
  const { onFirstLargeBody } = await import('../dist/proxy/forward.js');
  const { startOrigin, startProxy, request } = await import('./helpers.mjs');
  const big = Buffer.alloc(200 * 1024, 'b');
  const origin = await startOrigin((req, res) => res.end(req.url === '/big' ? big : 'small'));
  const proxy = await startProxy(`
listeners:
  - { name: web, address: "127.0.0.1:0" }
upstreams:
  app: { servers: [{ url: "${origin.url}" }] }
routes:
  - upstream: app
`);
  let calls = 0;
  onFirstLargeBody(() => calls++);
  try {
    assert.equal((await request(`${proxy.url}/small`)).text, 'small');
    assert.equal(calls, 0, 'a small body leaves the hook alone');
    assert.equal((await request(`${proxy.url}/big`)).body.length, big.length);
    assert.equal(calls, 1, 'the first large body runs the hook');
    await request(`${proxy.url}/big`);
    assert.equal(calls, 1, 'and only once');
  } finally {
    await proxy.close();
    await origin.close();
  }
});
