// A 1 GiB upload and a 1 GiB download pass through the real CLI process with bounded memory:
// the proxy's peak RSS (VmHWM) stays far below the body size.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startOrigin } from './helpers.mjs';

const GiB = 1024 ** 3;
const CHUNK = Buffer.alloc(256 * 1024, 97);
let origin;
let child;
let url;

before(async () => {
  origin = await startOrigin((req, res) => {
    if (req.method === 'POST') {
      let n = 0;
      req.on('data', (c) => (n += c.length));
      req.on('end', () => res.end(String(n)));
      return;
    }
    res.writeHead(200, { 'content-length': String(GiB) });
    let sent = 0;
    const pump = () => {
      while (sent < GiB) {
        sent += CHUNK.length;
        if (!res.write(CHUNK)) return res.once('drain', pump);
      }
      res.end();
    };
    pump();
  });
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-stream-'));
  const config = join(dir, 'c.yaml');
  writeFileSync(
    config,
    `listeners: [{ name: web, address: "127.0.0.1:0", limits: { maxBodySize: 2GiB, requestTimeout: 0s } }]\nupstreams: { app: { servers: [{ url: "${origin.url}" }] } }\nroutes: [{ upstream: app }]\n`,
  );
  child = spawn(
    process.execPath,
    [new URL('../bin/switchyard', import.meta.url).pathname, 'run', '-c', config],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  url = await new Promise((resolve, reject) => {
    let err = '';
    child.stderr.on('data', (d) => {
      err += d;
      const m = /listening on (\S+)/.exec(err);
      if (m) resolve(m[1]);
    });
    child.on('exit', () => reject(new Error(err)));
  });
});

after(async () => {
  child.kill('SIGKILL');
  await origin.close();
});

function peakRssMiB() {
  const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)[1]) / 1024;
}

test('1 GiB upload streams through with bounded memory', { timeout: 120000 }, async () => {
  const received = await new Promise((resolve, reject) => {
    const req = http.request(
      `${url}/up`,
      { method: 'POST', headers: { 'content-length': String(GiB) } },
      (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve(Number(body)));
      },
    );
    req.on('error', reject);
    let sent = 0;
    const pump = () => {
      while (sent < GiB) {
        sent += CHUNK.length;
        if (!req.write(CHUNK)) return req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
  assert.equal(received, GiB);
  assert.ok(peakRssMiB() < 200, `peak RSS ${peakRssMiB()} MiB`);
});

test('1 GiB download streams through with bounded memory', { timeout: 120000 }, async () => {
  const total = await new Promise((resolve, reject) => {
    http.get(`${url}/down`, (res) => {
      let n = 0;
      res.on('data', (c) => (n += c.length));
      res.on('end', () => resolve(n));
      res.on('error', reject);
    });
  });
  assert.equal(total, GiB);
  assert.ok(peakRssMiB() < 200, `peak RSS ${peakRssMiB()} MiB`);
});
