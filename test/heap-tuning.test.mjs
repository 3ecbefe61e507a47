// The V8 heap flags `switchyard run` starts with (src/heap-tuning.ts): bin/switchyard adds them
// when executed directly, `node bin/switchyard run` relaunches itself with them where node has
// process.execve, a flag the user gave wins, and SWITCHYARD_HEAP_TUNING=0 turns it off.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HEAP_FLAGS, missingHeapFlags } from '../dist/heap-tuning.js';
import { request } from './helpers.mjs';

const BIN = new URL('../bin/switchyard', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'switchyard-heap-'));
const config = join(dir, 'switchyard.yaml');
writeFileSync(
  config,
  'listeners: [{ name: web, address: "127.0.0.1:0" }]\nroutes:\n  - respond: { status: 200, body: "ok" }\n',
);
const hasExecve = typeof process.execve === 'function';
const children = [];
after(() => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
});

/** Starts `run`, waits for its listening line; returns the process's own command line. */
async function run(command, args, env = {}) {
  const child = spawn(command, [...args, 'run', '-c', config], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  children.push(child);
  let stderr = '';
  child.stderr.setEncoding('utf8');
  const url = await new Promise((resolve, reject) => {
    child.stderr.on('data', (d) => {
      stderr += d;
      const m = /^listening on (http:\/\/\S+)$/m.exec(stderr);
      if (m) resolve(m[1]);
    });
    child.on('exit', (code) => reject(new Error(`exited ${code}:\n${stderr}`)));
  });
  // Same pid as spawned: the relaunch replaces the process rather than starting a child.
  const argv = readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  const res = await request(`${url}/`);
  assert.equal(res.status, 200);
  assert.equal(String(res.body), 'ok');
  child.kill('SIGTERM');
  await new Promise((resolve) => child.once('exit', resolve));
  return argv.slice(1, argv.indexOf(BIN) === -1 ? undefined : argv.indexOf(BIN));
}

test("bin/switchyard's shell line carries exactly HEAP_FLAGS", () => {
  const line = readFileSync(BIN, 'utf8').split('\n')[1];
  assert.match(line, /^":" \/\/; exec node .* "\$0" "\$@"$/);
  const flags = line
    .replace(/^":" \/\/; exec node /, '')
    .replace(/ "\$0" "\$@"$/, '')
    .split(' ');
  assert.deepEqual(flags, HEAP_FLAGS);
});

test('missingHeapFlags: by name, whatever the value, underscores or dashes', () => {
  assert.deepEqual(missingHeapFlags([]), HEAP_FLAGS);
  assert.deepEqual(missingHeapFlags(['--max_semi_space_size=16', '--inspect']), [
    '--heap-growing-percent=30',
  ]);
  assert.deepEqual(missingHeapFlags([...HEAP_FLAGS]), []);
});

test('executed directly, bin/switchyard starts node with the heap flags', async () => {
  const flags = await run(BIN, []);
  for (const flag of HEAP_FLAGS) assert.ok(flags.includes(flag), `${flag} in ${flags}`);
});

test(
  '`node bin/switchyard run` relaunches itself with the heap flags (same pid)',
  { skip: hasExecve ? false : 'this node has no process.execve (Node.js < 22.15)' },
  async () => {
    const flags = await run(process.execPath, [BIN]);
    assert.deepEqual(flags, [...HEAP_FLAGS]);
  },
);

test('a heap flag the user gave wins; SWITCHYARD_HEAP_TUNING=0 adds none', async () => {
  const own = await run(process.execPath, ['--max-semi-space-size=8', BIN]);
  assert.ok(own.includes('--max-semi-space-size=8'));
  assert.ok(!own.includes('--max-semi-space-size=4'));
  if (hasExecve) assert.ok(own.includes('--heap-growing-percent=30'));
  const off = await run(process.execPath, [BIN], { SWITCHYARD_HEAP_TUNING: '0' });
  assert.deepEqual(off, []);
});
