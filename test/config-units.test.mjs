import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDuration, parseSize, parseRate } from '../dist/config/index.js';

test('parseDuration: units, fractions and combinations', () => {
  assert.equal(parseDuration('250ms'), 250);
  assert.equal(parseDuration('5s'), 5000);
  assert.equal(parseDuration('1.5s'), 1500);
  assert.equal(parseDuration('2m'), 120_000);
  assert.equal(parseDuration('1h'), 3_600_000);
  assert.equal(parseDuration('1m30s'), 90_000);
  assert.equal(parseDuration('1h2m3s4ms'), 3_723_004);
  assert.equal(parseDuration('0s'), 0);
});

test('parseDuration: clear errors', () => {
  assert.throws(() => parseDuration('5'), /invalid duration "5": expected a number and a unit/);
  assert.throws(() => parseDuration('5 s'), /invalid duration "5 s"/);
  assert.throws(() => parseDuration('-1s'), /invalid duration "-1s"/);
  assert.throws(() => parseDuration('5d'), /unit \(ms, s, m, h\)/);
  assert.throws(() => parseDuration('30s1m'), /combine units from largest to smallest/);
  assert.throws(() => parseDuration(''), /expected a duration like "5s"/);
});

test('parseSize: numbers, binary and decimal units', () => {
  assert.equal(parseSize(0), 0);
  assert.equal(parseSize(8192), 8192);
  assert.equal(parseSize('100B'), 100);
  assert.equal(parseSize('16KiB'), 16_384);
  assert.equal(parseSize('10MiB'), 10_485_760);
  assert.equal(parseSize('1GiB'), 1_073_741_824);
  assert.equal(parseSize('512KB'), 512_000);
  assert.equal(parseSize('2kB'), 2000);
  assert.equal(parseSize('1.5KiB'), 1536);
  assert.equal(parseSize('1 MiB'), 1_048_576);
});

test('parseSize: clear errors', () => {
  assert.throws(
    () => parseSize('10 MB!'),
    /invalid size "10 MB!": expected bytes or a number with a unit/,
  );
  assert.throws(() => parseSize('10mb'), /invalid size "10mb"/);
  assert.throws(() => parseSize(-1), /invalid size -1: expected a whole number of bytes/);
  assert.throws(() => parseSize(1.5), /invalid size 1.5/);
});

test('parseRate: per second, minute and hour', () => {
  assert.deepEqual(parseRate('100/s'), { count: 100, perMs: 1000 });
  assert.deepEqual(parseRate('600/m'), { count: 600, perMs: 60_000 });
  assert.deepEqual(parseRate('1000/h'), { count: 1000, perMs: 3_600_000 });
});

test('parseRate: clear errors', () => {
  assert.throws(
    () => parseRate('100/day'),
    /invalid rate "100\/day": expected a count per second, minute or hour/,
  );
  assert.throws(() => parseRate('100'), /invalid rate "100"/);
  assert.throws(() => parseRate('0/s'), /the count must be at least 1/);
});
