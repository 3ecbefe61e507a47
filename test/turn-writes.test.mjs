// Writes held until the event loop's turn ends (src/core/turn-writes.ts): the first write of a
// turn leaves at once, later ones leave together at the turn's end, in order, whatever code
// makes them; SWITCHYARD_WRITE_BATCHING=0 turns the holding off.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { Writable } from 'node:stream';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { holdUntilTurnEnds } from '../dist/core/turn-writes.js';
import { startOrigin, startProxy, startProxyTo } from './helpers.mjs';

/** A writable that records what reaches it, as `name:chunk`. */
function recorder(name, log) {
  return new Writable({
    decodeStrings: false,
    write(chunk, _encoding, done) {
      log.push(`${name}:${chunk}`);
      done();
    },
  });
}

/** In a fresh turn, makes its first write (which leaves at once) on a recorder named `first`. */
async function startTurnWithAWrite(log) {
  await nextTurn();
  const first = recorder('first', log);
  holdUntilTurnEnds(first);
  first.write('x');
}

test('the first write of a turn leaves at once, the later ones when the turn ends, in order', async () => {
  await nextTurn(); // a fresh turn: nothing written in it yet
  const log = [];
  const a = recorder('a', log);
  const b = recorder('b', log);
  const c = recorder('c', log);
  holdUntilTurnEnds(a);
  a.write('1');
  holdUntilTurnEnds(b);
  b.write('2');
  b.write('3'); // not held by this call itself: queued behind the held write
  holdUntilTurnEnds(c);
  c.write('4');
  assert.deepEqual(log, ['a:1']);
  await Promise.resolve();
  process.nextTick(() => log.push('tick'));
  await new Promise((resolve) => process.nextTick(resolve));
  assert.deepEqual(log, ['a:1', 'tick'], 'still held after ticks and microtasks');
  await nextTurn();
  assert.deepEqual(log, ['a:1', 'tick', 'b:2', 'b:3', 'c:4']);
  assert.equal(b.writableCorked, 0);
  assert.equal(c.writableCorked, 0);

  // The next turn starts afresh: its first write leaves at once again.
  await nextTurn();
  holdUntilTurnEnds(c);
  c.write('5');
  assert.deepEqual(log.slice(-1), ['c:5']);
});

test('a held stream that ends flushes at once, and the release finds nothing left to do', async () => {
  const log = [];
  const held = recorder('held', log);
  await startTurnWithAWrite(log);
  holdUntilTurnEnds(held);
  held.write('y');
  held.end('z');
  await once(held, 'finish');
  assert.deepEqual(log, ['first:x', 'held:y', 'held:z']);
  await nextTurn();
  assert.equal(held.writableCorked, 0);
  assert.equal(held.writableFinished, true);
});

test("a caller's own cork and uncork around a held write leave the hold in place", async () => {
  const log = [];
  const s = recorder('s', log);
  await startTurnWithAWrite(log);
  s.cork();
  holdUntilTurnEnds(s);
  s.write('head');
  s.write('body');
  s.uncork();
  assert.deepEqual(log, ['first:x']);
  await nextTurn();
  assert.deepEqual(log, ['first:x', 's:head', 's:body']);
});

test('a held socket that is destroyed before the turn ends is released without an error', async (t) => {
  const server = net.createServer((socket) => socket.resume());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  const held = net.connect(server.address().port, '127.0.0.1');
  await once(held, 'connect');
  const errors = [];
  held.on('error', (err) => errors.push(err));
  await startTurnWithAWrite([]);
  holdUntilTurnEnds(held);
  held.write('y');
  held.destroy();
  await nextTurn();
  await nextTurn();
  assert.equal(held.destroyed, true);
  assert.deepEqual(errors, []);
});

/** Blocks this process's event loop, so that what peers send meanwhile is read in one turn. */
const blockLoop = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/**
 * Sends a GET for `path(i)` on each of `clients` while the loop is blocked, so that the proxy
 * (in this process) reads them together; resolves with the raw answers, `ending(i)` ending each.
 * (Seen here: the proxy reads the first request in one turn and the rest in the next, so the
 * tests count on "all but one or two held", not on one turn exactly.)
 */
function askTogether(clients, path, ending) {
  const ask = (socket, i) => {
    let text = '';
    const answered = new Promise((resolve) =>
      socket.on('data', function onData(chunk) {
        text += chunk;
        if (text.endsWith(ending(i))) {
          socket.off('data', onData);
          resolve(text);
        }
      }),
    );
    socket.write(`GET ${path(i)} HTTP/1.1\r\nHost: example.test\r\n\r\n`);
    return answered;
  };
  return new Promise((resolve) =>
    setImmediate(() => {
      const answers = clients.map(ask);
      blockLoop(100);
      resolve(Promise.all(answers));
    }),
  );
}

/**
 * Counts the writes the hold released on sockets `which(socket)` names ('upstream', 'client'
 * or undefined): bytes still queued in the stream when its last cork is lifted.
 */
function countReleased(t, which) {
  const released = { upstream: 0, client: 0 };
  const uncork = net.Socket.prototype.uncork;
  net.Socket.prototype.uncork = function () {
    const side = this.writableCorked === 1 && this.writableLength > 0 ? which(this) : undefined;
    if (side !== undefined) released[side]++;
    return uncork.call(this);
  };
  t.after(() => {
    net.Socket.prototype.uncork = uncork;
  });
  return released;
}

async function connectClients(port, n) {
  const clients = [];
  for (let i = 0; i < n; i++) {
    const socket = net.connect(port, '127.0.0.1');
    await once(socket, 'connect');
    socket.setEncoding('latin1');
    clients.push(socket);
  }
  return clients;
}

test('requests read in one turn: the proxy holds all but the first of their upstream writes', async (t) => {
  const origin = await startOrigin((req, res) => res.end(`answer for ${req.url}`));
  const proxy = await startProxyTo(origin.url);
  t.after(async () => {
    await proxy.close();
    await origin.close();
  });
  const clients = await connectClients(proxy.port, 6);
  t.after(() => clients.forEach((socket) => socket.destroy()));
  const ending = (i) => `answer for /${i}`;
  // A request each first, so that every client has an upstream connection waiting.
  await askTogether(clients, (i) => `/${i}`, ending);
  const released = countReleased(t, (socket) =>
    socket.remotePort === origin.port ? 'upstream' : undefined,
  );
  const texts = await askTogether(clients, (i) => `/${i}`, ending);
  for (const [i, text] of texts.entries()) {
    assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
    assert.ok(text.endsWith(ending(i)), text);
  }
  assert.ok(released.upstream >= 2, `held upstream writes: ${released.upstream}`);
});

test('requests read in one turn: the proxy holds all but the first of their answers', async (t) => {
  const origin = await startOrigin((req, res) => {
    res.setHeader('Cache-Control', 'max-age=600');
    res.end(`cached answer for ${req.url}`);
  });
  const proxy = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes: [{ upstream: app, cache: true }]
`);
  t.after(async () => {
    await proxy.close();
    await origin.close();
  });
  const clients = await connectClients(proxy.port, 6);
  t.after(() => clients.forEach((socket) => socket.destroy()));
  const ending = () => 'cached answer for /c';
  // The first answer fills the cache; the rest are hits, answered in the turn that reads them.
  await askTogether(clients.slice(0, 1), () => '/c', ending);
  const released = countReleased(t, (socket) =>
    socket.localPort === proxy.port ? 'client' : undefined,
  );
  const texts = await askTogether(clients, () => '/c', ending);
  for (const text of texts) {
    assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(text, /\r\nAge: /i);
  }
  assert.ok(released.client >= 2, `held answers: ${released.client}`);
});

test('SWITCHYARD_WRITE_BATCHING=0: every write leaves when it is made', () => {
  const script = `
    import { Writable } from 'node:stream';
    import { holdUntilTurnEnds } from ${JSON.stringify(new URL('../dist/core/turn-writes.js', import.meta.url).href)};
    const log = [];
    const w = (n) => new Writable({ write(c, e, done) { log.push(n); done(); } });
    const a = w('a'), b = w('b');
    holdUntilTurnEnds(a); a.write('1');
    holdUntilTurnEnds(b); b.write('2');
    console.log(JSON.stringify(log));`;
  const run = (value) =>
    JSON.parse(
      execFileSync(process.execPath, ['--input-type=module', '-e', script], {
        env: { ...process.env, SWITCHYARD_WRITE_BATCHING: value },
        encoding: 'utf8',
      }),
    );
  assert.deepEqual(run('0'), ['a', 'b']);
  assert.deepEqual(run('1'), ['a']);
});
