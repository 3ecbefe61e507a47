// Optional libraries load only when a config needs them: a plain HTTP/1.1 proxy runs on the
// built-in upstream client without undici, and acme-client stays out unless `acme` is set.
// Each case runs in a fresh process, where the CommonJS module cache shows what was loaded.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';

const probe = (upstreamUrl) => `
import http from 'node:http';
import { createRequire } from 'node:module';
import { Switchyard } from ${JSON.stringify(new URL('../dist/main.js', import.meta.url).href)};
import { loadConfigText } from ${JSON.stringify(new URL('../dist/config/index.js', import.meta.url).href)};
const origin = http.createServer((req, res) => res.end('hi')).listen(0, '127.0.0.1');
await new Promise((r) => origin.once('listening', r));
const url = ${JSON.stringify(upstreamUrl)}.replace('PORT', origin.address().port);
const { config } = loadConfigText(
  'listeners: [{ address: "127.0.0.1:0" }]\\nupstreams: { app: { servers: [{ url: "' + url + '" }] } }\\nroutes: [{ upstream: app }]\\n',
  { path: 'probe.yaml', env: {} },
);
const proxy = await Switchyard.start(config, { announce: false, log: () => {} });
let body = '';
if (url.startsWith('http:')) {
  body = await new Promise((resolve, reject) =>
    http.get(proxy.url() + '/', (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve(text));
    }).on('error', reject),
  );
}
const loaded = Object.keys(createRequire(import.meta.url).cache);
const has = (name) => loaded.some((file) => file.includes('/node_modules/' + name + '/'));
process.stdout.write(JSON.stringify({ body, undici: has('undici'), acme: has('acme-client') }));
await proxy.stop(100);
origin.close();
`;

function run(upstreamUrl, env = {}) {
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', probe(upstreamUrl)], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 20_000,
  });
  return JSON.parse(out);
}

test('a plain HTTP/1.1 upstream is proxied without loading undici or acme-client', () => {
  const r = run('http://127.0.0.1:PORT', { SWITCHYARD_UPSTREAM_CLIENT: '' });
  assert.equal(r.body, 'hi');
  assert.equal(r.undici, false);
  assert.equal(r.acme, false);
});

test('SWITCHYARD_UPSTREAM_CLIENT=undici and TLS upstreams load undici', () => {
  const viaEnv = run('http://127.0.0.1:PORT', { SWITCHYARD_UPSTREAM_CLIENT: 'undici' });
  assert.equal(viaEnv.body, 'hi');
  assert.equal(viaEnv.undici, true);
  assert.equal(run('https://127.0.0.1:PORT', { SWITCHYARD_UPSTREAM_CLIENT: '' }).undici, true);
});
