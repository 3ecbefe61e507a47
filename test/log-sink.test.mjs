// The access log's file writer (src/observability/log-sink.ts): lines encoded into 64 KiB pages,
// one write in flight, order kept, light traffic flushed on a timer, errors reported, never thrown.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, openSync, readFileSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileLines } from '../dist/observability/log-sink.js';

const dir = mkdtempSync(join(tmpdir(), 'switchyard-sink-'));

test('FileLines: many pages of lines, multi-byte text and a line larger than a page, in order', async () => {
  const path = join(dir, 'order.log');
  const errors = [];
  const sink = new FileLines(openSync(path, 'a'), (err) => errors.push(err));
  const expected = [];
  for (let i = 0; i < 5000; i++) {
    // ~100-byte lines, some with 2-, 3- and 4-byte UTF-8 characters.
    const line = `{"n":${i},"text":"${i % 7 === 0 ? 'héllo ✓ 𝄞 ' : 'plain '}${'x'.repeat(i % 90)}"}\n`;
    expected.push(line);
    sink.write(line);
    if (i === 2500) {
      const big = `${'y'.repeat(200 * 1024)}\n`;
      expected.push(big);
      sink.write(big);
    }
    // Let some writes complete in between, so pages queue behind a write in flight and not.
    if (i % 1000 === 0) await new Promise((r) => setImmediate(r));
  }
  await sink.end();
  assert.equal(readFileSync(path, 'utf8'), expected.join(''));
  assert.deepEqual(errors, []);
  // end() twice is harmless; lines after it are ignored.
  sink.write('late\n');
  await sink.end();
  assert.equal(readFileSync(path, 'utf8'), expected.join(''));
});

test('FileLines: a lone line is written by the timer, without end()', async () => {
  const path = join(dir, 'timer.log');
  const sink = new FileLines(openSync(path, 'a'), () => {});
  sink.write('one line\n');
  let text = '';
  for (let i = 0; i < 100 && text === ''; i++) {
    await new Promise((r) => setTimeout(r, 50));
    text = readFileSync(path, 'utf8');
  }
  assert.equal(text, 'one line\n');
  await sink.end();
});

test('FileLines: a failing descriptor is reported, not thrown, and end() still resolves', async () => {
  const path = join(dir, 'readonly.log');
  closeSync(openSync(path, 'a'));
  // Opened read-only: every write fails with EBADF.
  const errors = [];
  const sink = new FileLines(openSync(path, 'r'), (err) => errors.push(err));
  for (let i = 0; i < 2000; i++) sink.write(`line ${i} ${'z'.repeat(60)}\n`);
  await sink.end();
  assert.ok(errors.length >= 1);
  assert.equal(errors[0].code, 'EBADF');
  assert.equal(readFileSync(path, 'utf8'), '');
});
