// Keeps the docs honest: the shipped example config and every complete config in the docs
// (a ```yaml block whose first line is `# switchyard.yaml`) must load through the real loader,
// the example must start through the real CLI, and `switchyard demo` must do what the README says.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatIssue, loadConfigFile, loadConfigText } from '../dist/config/index.js';
import { Switchyard } from '../dist/main.js';
import { request } from './helpers.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = join(root, 'bin', 'switchyard');
const MARKER = /^# switchyard\.yaml\b/;
/** Pages whose examples only use what the core ships, so they must also start. */
const CORE_PAGES = [
  'README.md',
  'docs/configuration.md',
  'docs/listeners.md',
  'docs/upstreams.md',
  'docs/routes.md',
  'docs/headers.md',
  'docs/errors.md',
  'docs/cli.md',
];

/** Every ```yaml block starting with the marker, with the line it starts on. */
function configBlocks(file) {
  const lines = readFileSync(join(root, file), 'utf8').split('\n');
  const blocks = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/^\s*```ya?ml\s*$/.test(lines[i])) continue;
    const indent = lines[i].match(/^\s*/)[0].length;
    const start = i + 1;
    let end = start;
    while (end < lines.length && !/^\s*```\s*$/.test(lines[end])) end++;
    const body = lines.slice(start, end).map((l) => l.slice(indent));
    if (body.length > 0 && MARKER.test(body[0])) {
      blocks.push({ file, line: start + 1, text: body.join('\n') });
    }
    i = end;
  }
  return blocks;
}

const docFiles = [
  'README.md',
  ...readdirSync(join(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];
const blocks = docFiles.flatMap(configBlocks);

/**
 * Docs may show `${NAME}` for values a reader supplies (tokens, hosts). Those without a
 * `:-default` are given a stand-in so the block still validates; the rest of the environment is
 * empty, so a block never depends on the machine it is checked on.
 */
function docEnv(text) {
  const env = {};
  for (const m of text.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g)) env[m[1]] = 'example';
  return env;
}

function load(block) {
  const { config, issues } = loadConfigText(block.text, {
    path: block.file,
    env: docEnv(block.text),
  });
  const where = `${block.file}:${block.line}`;
  assert.ok(
    config,
    `the config block at ${where} is invalid:\n${issues.map(formatIssue).join('\n')}`,
  );
  return config;
}

test('examples/switchyard.yaml validates through the loader', async () => {
  const { config, issues } = await loadConfigFile(join(root, 'examples', 'switchyard.yaml'), {
    env: {},
  });
  assert.deepEqual(issues.map(formatIssue), []);
  assert.equal(config.listeners[0].addressText, '127.0.0.1:8080');
  assert.ok(config.routes.some((r) => r.action.type === 'respond'));
});

test('every page this project documents the core on has a complete, checked config', () => {
  for (const page of CORE_PAGES) {
    assert.ok(
      blocks.some((b) => b.file === page),
      `${page} has no \`# switchyard.yaml\` block`,
    );
  }
});

test('every `# switchyard.yaml` block in README.md and docs/*.md loads', () => {
  assert.ok(blocks.length >= CORE_PAGES.length);
  for (const block of blocks) load(block);
});

test('the core pages’ configs also start (listeners moved to free ports)', async () => {
  for (const block of blocks.filter((b) => CORE_PAGES.includes(b.file))) {
    const config = load(block);
    for (const listener of config.listeners) listener.address = { host: '127.0.0.1', port: 0 };
    // Pages referenced by examples are not shipped; loading them is tested with the feature.
    config.errorPages = {};
    let proxy;
    try {
      proxy = await Switchyard.start(config, { announce: false, log: () => {} });
    } catch (err) {
      assert.fail(`the config block at ${block.file}:${block.line} does not start: ${err.message}`);
    }
    await proxy.stop(0);
  }
});

/** Spawns the CLI and resolves once `pattern` appears on stdout or stderr. */
async function spawnUntil(args, env, pattern) {
  const child = spawn(process.execPath, [bin, ...args], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const seen = new Promise((resolve, reject) => {
    const onData = (chunk) => {
      out += chunk;
      const m = pattern.exec(out);
      if (m) resolve(m);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => reject(new Error(`exited with ${code} before ready:\n${out}`)));
  });
  const match = await seen;
  return { child, match, output: () => out };
}

async function stop(child) {
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const [code] = await exited;
  return code;
}

test('switchyard run -c examples/switchyard.yaml serves its standalone routes', async () => {
  const { child, match } = await spawnUntil(
    ['run', '-c', 'examples/switchyard.yaml'],
    { PORT: '0' },
    /listening on (http:\/\/127\.0\.0\.1:\d+)/,
  );
  try {
    const url = match[1];
    const health = await request(`${url}/healthz`);
    assert.equal(health.status, 200);
    assert.equal(health.body.toString(), 'ok\n');
    assert.ok(health.headers['x-request-id']);
    const moved = await request(`${url}/blog/2024/hello?ref=x`);
    assert.equal(moved.status, 308);
    assert.equal(moved.headers.location, 'https://blog.example.com/blog/2024/hello?ref=x');
  } finally {
    assert.equal(await stop(child), 0);
  }
});

test('switchyard demo starts, prints its URL, balances by weight and stops on SIGTERM', async () => {
  const { child, match } = await spawnUntil(
    ['demo'],
    { PORT: '0' },
    /Switchyard demo is running at (http:\/\/127\.0\.0\.1:\d+)/,
  );
  try {
    const url = match[1];
    const seen = [];
    for (let i = 0; i < 4; i++) {
      const res = await request(`${url}/`);
      assert.equal(res.status, 200);
      assert.equal(res.headers.server, undefined, 'the origin Server header is removed');
      seen.push(JSON.parse(res.body.toString()).origin);
    }
    // Weights 2, 1, 1: origin-a twice, b and c once each, the backup never.
    assert.deepEqual(seen.toSorted(), [
      'origin-a (weight 2)',
      'origin-a (weight 2)',
      'origin-b',
      'origin-c',
    ]);
    const ping = await request(`${url}/ping`);
    assert.equal(ping.body.toString(), 'pong\n');
    const api = await request(`${url}/api/hello`);
    assert.equal(JSON.parse(api.body.toString()).url, '/hello');
    assert.equal(api.headers['x-served-through'], 'switchyard');
  } finally {
    assert.equal(await stop(child), 0);
  }
});
