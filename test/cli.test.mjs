import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { startOrigin, request } from './helpers.mjs';

const BIN = new URL('../bin/switchyard', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'switchyard-cli-'));
const cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

function file(name, text) {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

function cli(...args) {
  return spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 20000 });
}

/** Starts `switchyard run`, resolves once it printed its listening line. */
async function run(configPath) {
  const child = spawn(process.execPath, [BIN, 'run', '-c', configPath], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line:\n${stderr}`)), 15000);
    child.stderr.on('data', (d) => {
      stderr += d;
      const m = /^listening on (http:\/\/\S+)$/m.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on('exit', () => reject(new Error(`exited early:\n${stderr}`)));
  });
  cleanups.push(() => child.exitCode === null && child.kill('SIGKILL'));
  return { child, url, stderr: () => stderr };
}

test('--version and --help', () => {
  const v = cli('--version');
  assert.equal(v.status, 0);
  assert.match(v.stdout, /^switchyard \d+\.\d+\.\d+/);
  const h = cli('--help');
  assert.equal(h.status, 0);
  for (const cmd of ['run', 'validate', 'schema', 'demo']) assert.match(h.stdout, new RegExp(cmd));
  const bad = cli('frobnicate');
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /unknown command/);
});

test('validate: config OK, or one line per problem with key path and line:col', () => {
  const good = file(
    'good.yaml',
    'listeners: [{ name: web, address: ":0" }]\nupstreams:\n  api: { servers: [{ url: "http://127.0.0.1:1" }] }\nroutes:\n  - upstream: api\n',
  );
  const ok = cli('validate', '-c', good);
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(ok.stdout, 'config OK\n');
  const bad = file(
    'bad.yaml',
    [
      'listeners:',
      '  - name: web',
      '    address: ":0"',
      'upstreams:',
      '  api:',
      '    servers: [{ url: "http://127.0.0.1:1" }]',
      'routes:',
      '  - upstream: api',
      '  - upstream: ap',
    ].join('\n'),
  );
  const res = cli('validate', '-c', bad);
  assert.equal(res.status, 1);
  assert.equal(res.stdout, '');
  const lines = res.stderr.trim().split('\n');
  assert.ok(
    lines.some((l) => /^routes\[1\]\.upstream: unknown upstream "ap" \(9:15\)$/.test(l)),
    res.stderr,
  );
  const badUnit = file(
    'bad-unit.yaml',
    'listeners: [{ name: web, address: ":0" }]\nroutes:\n  - respond: {}\n    timeouts: { read: 5 parsecs }\n',
  );
  const unit = cli('validate', '-c', badUnit);
  assert.equal(unit.status, 1);
  assert.match(unit.stderr, /^routes\[0\]\.timeouts\.read: .*\(4:\d+\)$/m);
  const missing = cli('validate', '-c', join(dir, 'nope.yaml'));
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /nope\.yaml/);
});

test('validate: certificate, key, CA and error-page files must be readable (as nginx -t checks)', () => {
  const page = file('502.html', '<h1>down</h1>');
  const named = (cert, page502) =>
    [
      'listeners:',
      '  - address: "127.0.0.1:0"',
      '    tls:',
      `      certificates: [{ cert: ${JSON.stringify(cert)}, key: ${JSON.stringify(dir)} }]`,
      'upstreams:',
      '  app: { servers: [{ url: "https://127.0.0.1:1" }], tls: { ca: missing-ca.pem } }',
      'routes: [{ upstream: app }]',
      `errorPages: { "502": ${JSON.stringify(page502)} }`,
    ].join('\n');
  const res = cli('validate', '-c', file('files.yaml', named(join(dir, 'none.pem'), 'nope.html')));
  assert.equal(res.status, 1);
  assert.equal(res.stdout, '');
  const lines = res.stderr.trim().split('\n');
  assert.equal(lines.length, 4, res.stderr);
  assert.match(
    lines[0],
    /^listeners\[0\]\.tls\.certificates\[0\]\.cert: cannot read .*none\.pem: no such file \(4:\d+\)$/,
  );
  assert.match(
    lines[1],
    /^listeners\[0\]\.tls\.certificates\[0\]\.key: cannot read .*: is a directory \(4:\d+\)$/,
  );
  assert.match(
    lines[2],
    /^upstreams\.app\.tls\.ca: cannot read missing-ca\.pem: no such file \(6:\d+\)$/,
  );
  assert.match(lines[3], /^errorPages\["502"\]: cannot read nope\.html: no such file \(8:\d+\)$/);
  // Error pages are found next to the config file, wherever validate runs from.
  const good = file(
    'page-ok.yaml',
    [
      'listeners: [{ address: "127.0.0.1:0" }]',
      'routes: [{ respond: { status: 204 } }]',
      `errorPages: { "502": ${JSON.stringify(page.split('/').pop())} }`,
    ].join('\n'),
  );
  const ok = cli('validate', '-c', good);
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(ok.stdout, 'config OK\n');
});

test('schema prints a JSON Schema', () => {
  const res = cli('schema');
  assert.equal(res.status, 0);
  const schema = JSON.parse(res.stdout);
  assert.ok(schema.$schema);
  assert.ok(schema.properties.listeners && schema.properties.routes && schema.properties.upstreams);
});

test('run: serves, reloads on SIGHUP (rejecting an invalid config), drains on SIGTERM', async () => {
  const origin = await startOrigin((req, res) => {
    if (req.url === '/slow') setTimeout(() => res.end('slow done'), 700);
    else res.end(`origin ${req.url}`);
  });
  cleanups.push(origin.close);
  const config = (extra) =>
    `listeners: [{ name: web, address: "127.0.0.1:0" }]\nshutdownTimeout: 5s\nupstreams:\n  app: { servers: [{ url: "${origin.url}" }] }\nroutes:\n${extra}  - upstream: app\n`;
  const path = file('run.yaml', config(''));
  const proc = await run(path);
  assert.equal((await request(`${proc.url}/a`)).text, 'origin /a');

  writeFileSync(path, config('  - match: { path: /hello }\n    respond: { body: "hi" }\n'));
  proc.child.kill('SIGHUP');
  let text;
  for (let i = 0; i < 50; i++) {
    text = (await request(`${proc.url}/hello`)).text;
    if (text === 'hi') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(text, 'hi');

  writeFileSync(path, 'listeners: [oops');
  proc.child.kill('SIGHUP');
  for (let i = 0; i < 50 && !/reload refused/.test(proc.stderr()); i++)
    await new Promise((r) => setTimeout(r, 100));
  assert.match(proc.stderr(), /reload refused/);
  assert.equal((await request(`${proc.url}/hello`)).text, 'hi', 'the old config keeps serving');

  const inflight = request(`${proc.url}/slow`);
  await new Promise((r) => setTimeout(r, 200));
  proc.child.kill('SIGTERM');
  const [code] = await once(proc.child, 'exit');
  assert.equal((await inflight).text, 'slow done');
  assert.equal(code, 0);
});

test('run: a missing config file is a clear error, exit 1', () => {
  const res = cli('run', '-c', join(dir, 'absent.yaml'));
  assert.equal(res.status, 1);
  assert.match(res.stderr, /absent\.yaml/);
});
