// Golden config fixtures, like caddy's caddyfile_adapt tests: each input under
// test/fixtures/config/ sits next to its expected result, either the normalized config
// (NAME.out.json) or the issues the CLI would print (NAME.errors.txt).
// Run with UPDATE_GOLDEN=1 to rewrite the expected files after an intended change.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join, basename, extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfigFile, formatIssue } from '../dist/config/index.js';

const dir = fileURLToPath(new URL('./fixtures/config/', import.meta.url));
const env = {
  PORT: '9090',
  WEIGHT: '3',
  TOKEN: 's3cret',
  EMPTY: '',
  SWITCHYARD_ADMIN_TOKEN: 'admin-secret',
};
const update = process.env.UPDATE_GOLDEN === '1';

/** Maps become objects and the machine-specific source path is dropped. */
function serialize(config) {
  const { sourcePath: _sourcePath, ...rest } = config;
  return `${JSON.stringify(rest, (_k, v) => (v instanceof Map ? Object.fromEntries(v) : v), 2)}\n`;
}

const inputs = readdirSync(dir).filter(
  (f) => (f.endsWith('.yaml') || f.endsWith('.json')) && !f.endsWith('.out.json'),
);

test('there are golden fixtures', () => {
  assert.ok(inputs.length >= 7);
});

for (const file of inputs) {
  const stem = basename(file, extname(file));
  test(`golden: ${file}`, async () => {
    const result = await loadConfigFile(join(dir, file), { env });
    const outPath = join(dir, `${stem}.out.json`);
    const errPath = join(dir, `${stem}.errors.txt`);
    if (result.config) {
      assert.deepEqual(result.issues, []);
      assert.equal(result.config.sourcePath, join(dir, file));
      const actual = serialize(result.config);
      if (update) writeFileSync(outPath, actual);
      // Expected files are kept in prettier's layout: run `npx prettier --write` after updating.
      assert.ok(existsSync(outPath), `${stem}.out.json is missing (run with UPDATE_GOLDEN=1)`);
      // Compared as data: prettier may lay the expected file out differently.
      assert.deepEqual(JSON.parse(actual), JSON.parse(readFileSync(outPath, 'utf8')));
      assert.ok(!existsSync(errPath), `${file} loaded but ${stem}.errors.txt expects issues`);
    } else {
      const actual = `${result.issues.map(formatIssue).join('\n')}\n`;
      if (update) writeFileSync(errPath, actual);
      assert.ok(existsSync(errPath), `${stem}.errors.txt is missing (run with UPDATE_GOLDEN=1)`);
      assert.equal(actual, readFileSync(errPath, 'utf8'));
      assert.ok(!existsSync(outPath), `${file} failed but ${stem}.out.json expects a config`);
    }
  });
}
