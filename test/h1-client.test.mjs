// The built-in HTTP/1.1 upstream client (src/upstream/h1/): strict response parsing, framing,
// keep-alive reuse, the stale-connection retry, timeouts, backpressure both ways, upgrades and
// the pool's lifecycle. Real sockets on 127.0.0.1 (raw net servers for exact bytes); the parser
// is also fed byte by byte to cover every split.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import http from 'node:http';
import { once } from 'node:events';
import { PassThrough, Readable } from 'node:stream';
import { H1Pool } from '../dist/upstream/h1/index.js';
import { ResponseParser, lowerFieldName } from '../dist/upstream/h1/parser.js';

const cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** A raw server: onConnection(socket, info) decides what bytes to send. */
async function rawServer(onConnection) {
  const sockets = new Set();
  let connections = 0;
  const server = net.createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    onConnection(socket, connections);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const s = {
    url: `http://127.0.0.1:${server.address().port}`,
    get connections() {
      return connections;
    },
    sockets,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((r) => server.close(r));
    },
  };
  cleanups.push(s.close);
  return s;
}

/** Calls `onRequest(socket, head, index)` for each request head (bodiless requests). */
function perRequest(onRequest) {
  return (socket) => {
    let buffered = '';
    let index = 0;
    socket.on('data', (chunk) => {
      buffered += chunk.toString('latin1');
      let end;
      while ((end = buffered.indexOf('\r\n\r\n')) !== -1) {
        const head = buffered.slice(0, end);
        buffered = buffered.slice(end + 4);
        onRequest(socket, head, index++);
      }
    });
  };
}

function pool(url, options = {}) {
  const p = new H1Pool(url, { connectTimeoutMs: 2000, keepAliveIdleMs: 10_000, ...options });
  cleanups.push(() => p.destroy());
  return p;
}

/** One exchange; resolves with what the handler saw, rejects with the error. */
function exchange(p, opts = {}, hooks = {}) {
  return new Promise((resolve, reject) => {
    const seen = { interim: [], status: 0, headers: [], chunks: [], trailers: null, abort: null };
    const handler = {
      onConnect(abort) {
        seen.abort = abort;
      },
      onHeaders(status, raw, resume, statusText) {
        if (status < 200) {
          seen.interim.push({ status, headers: raw.map(String) });
          return true;
        }
        seen.status = status;
        seen.statusText = statusText;
        seen.headers = raw.map(String);
        seen.resume = resume;
        return hooks.onHeaders ? hooks.onHeaders(seen) : true;
      },
      onData(chunk) {
        seen.chunks.push(Buffer.from(chunk));
        return hooks.onData ? hooks.onData(seen, chunk) : true;
      },
      onComplete(trailers) {
        seen.trailers = (trailers ?? []).map(String);
        seen.body = Buffer.concat(seen.chunks).toString('latin1');
        resolve(seen);
      },
      onError(err) {
        seen.error = err;
        reject(err);
      },
      onUpgrade(status, raw, socket) {
        resolve({ ...seen, status, headers: raw.map(String), socket });
      },
    };
    p.dispatch({ path: '/', method: 'GET', headers: ['host', 'test'], ...opts }, handler);
  });
}

describe('strict response parsing: malformed responses are errors', () => {
  const big = 'x'.repeat(70 * 1024);
  const cases = [
    ['bare LF line endings', 'HTTP/1.1 200 OK\nContent-Length: 0\n\n', /HPE_LF_EXPECTED/],
    ['bare LF after a field', 'HTTP/1.1 200 OK\r\nA: b\nC: d\r\n\r\n', /HPE_/],
    ['bare CR in a value', 'HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n', /HPE_LF_EXPECTED/],
    ['HTTP/2.0 status line', 'HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n', /HPE_INVALID_VERSION/],
    ['lower-case version', 'http/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', /HPE_INVALID_VERSION/],
    ['two-digit status', 'HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n', /HPE_INVALID_STATUS/],
    ['non-digit status', 'HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n', /HPE_INVALID_STATUS/],
    ['status 700', 'HTTP/1.1 700 OK\r\nContent-Length: 0\r\n\r\n', /HPE_INVALID_STATUS/],
    ['status 099', 'HTTP/1.1 099 OK\r\nContent-Length: 0\r\n\r\n', /HPE_INVALID_STATUS/],
    ['control byte in the reason', 'HTTP/1.1 200 O\x01K\r\n\r\n', /HPE_INVALID_STATUS/],
    ['space in a field name', 'HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n', /HPE_INVALID_HEADER_TOKEN/],
    ['space before the colon', 'HTTP/1.1 200 OK\r\nName : x\r\n\r\n', /HPE_INVALID_HEADER_TOKEN/],
    ['no colon', 'HTTP/1.1 200 OK\r\nNameOnly\r\n\r\n', /HPE_INVALID_HEADER_TOKEN/],
    ['NUL in a value', 'HTTP/1.1 200 OK\r\nA: b\x00c\r\n\r\n', /HPE_INVALID_HEADER_TOKEN/],
    [
      'obs-fold',
      'HTTP/1.1 200 OK\r\nA: b\r\n c\r\nContent-Length: 0\r\n\r\n',
      /HPE_INVALID_HEADER_TOKEN/,
    ],
    [
      'conflicting Content-Length',
      'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok',
      /HPE_UNEXPECTED_CONTENT_LENGTH/,
    ],
    [
      'duplicate Content-Length',
      'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok',
      /HPE_UNEXPECTED_CONTENT_LENGTH/,
    ],
    [
      'Content-Length list',
      'HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok',
      /HPE_INVALID_CONTENT_LENGTH/,
    ],
    [
      'signed Content-Length',
      'HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok',
      /HPE_INVALID_CONTENT_LENGTH/,
    ],
    [
      'Content-Length with Transfer-Encoding',
      'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n',
      /HPE_UNEXPECTED_CONTENT_LENGTH/,
    ],
    [
      'chunked not last',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n',
      /HPE_INVALID_TRANSFER_ENCODING/,
    ],
    [
      'invalid chunk size',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n',
      /HPE_INVALID_CHUNK_SIZE/,
    ],
    [
      'space after the chunk size',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2 \r\nok\r\n0\r\n\r\n',
      /HPE_INVALID_CHUNK_SIZE/,
    ],
    [
      'huge chunk size',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n',
      /HPE_INVALID_CHUNK_SIZE/,
    ],
    [
      'chunk data longer than its size',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokX\r\n0\r\n\r\n',
      /HPE_STRICT/,
    ],
    [
      'bare LF after the chunk size',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\nok\r\n0\r\n\r\n',
      /HPE_/,
    ],
    [
      'control byte in a chunk extension',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;a\x01\r\nok\r\n0\r\n\r\n',
      /HPE_STRICT/,
    ],
    ['head over 64 KiB', `HTTP/1.1 200 OK\r\nX-Big: ${big}\r\n\r\n`, /HPE_HEADER_OVERFLOW/],
    [
      '101 to a request that asked no upgrade',
      'HTTP/1.1 101 Switching\r\n\r\n',
      /HPE_INVALID_STATUS/,
    ],
  ];
  for (const [name, response, code] of cases) {
    test(name, async () => {
      const s = await rawServer((socket) =>
        socket.on('data', () => socket.write(response, 'latin1')),
      );
      const p = pool(s.url);
      const err = await exchange(p).then(
        (r) => assert.fail(`expected an error, got ${r.status} ${JSON.stringify(r.body)}`),
        (e) => e,
      );
      assert.match(err.code, code, `${err.code}: ${err.message}`);
      // The broken connection is never reused.
      await p.close();
      assert.equal(p.size, 0);
    });
  }
});

/** Feeds `text` to a fresh parser in pieces of `step` bytes; returns what it reported. */
function parseInPieces(text, step, { noBody = false } = {}) {
  const out = { heads: [], body: '', trailers: null };
  const parser = new ResponseParser({
    onHead(status, statusText, headers) {
      out.heads.push({ status, statusText, headers });
      return true;
    },
    onUpgradeHead() {
      throw new Error('no upgrade expected');
    },
    onBody(chunk) {
      out.body += chunk.toString('latin1');
      return true;
    },
    onComplete(trailers) {
      out.trailers = trailers;
    },
  });
  parser.reset(noBody, false);
  const bytes = Buffer.from(text, 'latin1');
  for (let i = 0; i < bytes.length; i += step) parser.execute(bytes.subarray(i, i + step));
  return { out, parser };
}

describe('field names', () => {
  test('keep their spelling whether the parser knows them or not, split at every byte boundary', () => {
    const head =
      'HTTP/1.1 200 OK\r\nContent-Type: a\r\ncontent-type: b\r\nCONTENT-TYPE: c\r\n' +
      'Content-Typo: d\r\nETag: "e"\r\nDate: f\r\nX-Own: g\r\nContent-Length: 0\r\n\r\n';
    for (const step of [1, 5, 1000]) {
      const { out } = parseInPieces(head, step);
      const names = out.heads[0].headers.filter((_, i) => i % 2 === 0);
      assert.deepEqual(names, [
        'Content-Type',
        'content-type',
        'CONTENT-TYPE',
        'Content-Typo',
        'ETag',
        'Date',
        'X-Own',
        'Content-Length',
      ]);
    }
  });

  test('lowerFieldName lowercases known and unknown names alike', () => {
    for (const name of [
      'Content-Type',
      'content-type',
      'CONTENT-TYPE',
      'ETag',
      'X-Own',
      'Set-Cookie',
    ])
      assert.equal(lowerFieldName(name), name.toLowerCase());
  });
});

describe('framing', () => {
  const chunked =
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n' +
    '5;ext=1;name="quoted value"\r\nhello\r\n6\r\n world\r\nA\r\n0123456789\r\n' +
    '0;last\r\nX-Checksum: abc\r\nX-Other:  spaced \r\n\r\n';

  test('chunked with extensions and trailers, split at every byte boundary', () => {
    for (const step of [1, 2, 3, 7, 1000]) {
      const { out } = parseInPieces(chunked, step);
      assert.equal(out.heads.length, 1);
      assert.deepEqual(out.heads[0].headers, ['Transfer-Encoding', 'chunked', 'X-A', '1']);
      assert.equal(out.body, 'hello world0123456789', `step ${step}`);
      assert.deepEqual(out.trailers, ['X-Checksum', 'abc', 'X-Other', 'spaced']);
    }
  });

  test('Content-Length, interim 103 and a reason-less status line, byte by byte', () => {
    const text =
      'HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n' +
      'HTTP/1.1 200\r\nContent-Length: 5\r\n\r\nhello';
    const { out, parser } = parseInPieces(text, 1);
    assert.deepEqual(
      out.heads.map((h) => [h.status, h.statusText]),
      [
        [103, 'Early Hints'],
        [200, ''],
      ],
    );
    assert.equal(out.body, 'hello');
    assert.deepEqual(out.trailers, []);
    assert.equal(parser.keepAlive, true);
  });

  test('no body for HEAD, 204 and 304 even with a Content-Length', () => {
    for (const [text, noBody] of [
      ['HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n', true],
      ['HTTP/1.1 204 No Content\r\nContent-Length: 100\r\n\r\n', false],
      ['HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n', false],
    ]) {
      const { out } = parseInPieces(text, 1000, { noBody });
      assert.deepEqual(out.trailers, [], text);
      assert.equal(out.body, '');
    }
  });

  test('HTTP/1.0 and Connection: close are not kept alive; Keep-Alive timeout is read', () => {
    assert.equal(
      parseInPieces('HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n', 99).parser.keepAlive,
      false,
    );
    assert.equal(
      parseInPieces('HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n', 99)
        .parser.keepAlive,
      true,
    );
    const closing = parseInPieces(
      'HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n',
      99,
    );
    assert.equal(closing.parser.keepAlive, false);
    const hinted = parseInPieces(
      'HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5, max=100\r\nContent-Length: 0\r\n\r\n',
      99,
    );
    assert.equal(hinted.parser.keepAliveHintMs, 5000);
  });

  test('a body cut short of its Content-Length is an error, not a short success', async () => {
    const s = await rawServer((socket) =>
      socket.on('data', () => socket.end('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc')),
    );
    await assert.rejects(exchange(pool(s.url)), { code: 'ECONNRESET' });
  });

  test('a chunked body cut mid-chunk is an error', async () => {
    const s = await rawServer((socket) =>
      socket.on('data', () =>
        socket.end('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel'),
      ),
    );
    await assert.rejects(exchange(pool(s.url)), { code: 'ECONNRESET' });
  });

  test('no framing: the body runs until the server closes, and the connection is not reused', async () => {
    const s = await rawServer((socket) =>
      socket.on('data', () => {
        socket.write('HTTP/1.1 200 OK\r\nX: y\r\n\r\nfirst ');
        setImmediate(() => socket.end('second'));
      }),
    );
    const p = pool(s.url);
    const r = await exchange(p);
    assert.equal(r.body, 'first second');
    const r2 = await exchange(p);
    assert.equal(r2.body, 'first second');
    assert.equal(s.connections, 2);
  });

  test('1xx interim responses reach the handler before the final one', async () => {
    const s = await rawServer((socket) =>
      socket.on('data', () =>
        socket.write(
          'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n' +
            'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok',
        ),
      ),
    );
    const r = await exchange(pool(s.url));
    assert.deepEqual(
      r.interim.map((i) => i.status),
      [100, 103],
    );
    assert.deepEqual(r.interim[1].headers, ['Link', '</s.css>']);
    assert.equal(r.status, 200);
    assert.equal(r.body, 'ok');
  });

  test('bytes after a complete response make the connection unusable (never reused)', async () => {
    const s = await rawServer((socket) =>
      socket.on('data', () => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA')),
    );
    const p = pool(s.url);
    assert.equal((await exchange(p)).body, 'ok');
    assert.equal((await exchange(p)).body, 'ok');
    assert.equal(s.connections, 2);
  });
});

describe('keep-alive', () => {
  test('sequential requests reuse one connection; HEAD and 204 keep it too', async () => {
    let connections = 0;
    const origin = http.createServer((req, res) => {
      if (req.url === '/204') {
        res.writeHead(204);
        res.end();
      } else res.end(`hello ${req.url}`);
    });
    origin.on('connection', () => connections++);
    origin.listen(0, '127.0.0.1');
    await once(origin, 'listening');
    cleanups.push(() => new Promise((r) => origin.close(r)));
    const p = pool(`http://127.0.0.1:${origin.address().port}`);
    for (let i = 0; i < 20; i++) {
      const r = await exchange(p, { path: `/${i}` });
      assert.equal(r.body, `hello /${i}`);
    }
    const head = await exchange(p, { method: 'HEAD', path: '/h' });
    assert.equal(head.body, '');
    assert.equal((await exchange(p, { path: '/204' })).status, 204);
    assert.equal(p.connectionsOpened, 1);
    assert.equal(connections, 1);
    // 30 concurrent requests, then the same again: no more connections than in flight.
    await Promise.all(Array.from({ length: 30 }, () => exchange(p)));
    const afterBurst = p.connectionsOpened;
    assert.ok(afterBurst <= 31, `${afterBurst} connections`);
    await Promise.all(Array.from({ length: 30 }, () => exchange(p)));
    assert.equal(p.connectionsOpened, afterBurst);
    origin.closeAllConnections();
  });

  test('maxConnections bounds the connections; the rest wait in order', async () => {
    const s = await rawServer(
      perRequest((socket, head) =>
        setImmediate(() =>
          socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${head.length}\r\n\r\n${head}`),
        ),
      ),
    );
    const p = pool(s.url, { maxConnections: 2 });
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) => exchange(p, { path: `/${i}` })),
    );
    results.forEach((r, i) => assert.match(r.body, new RegExp(`^GET /${i} HTTP/1.1`)));
    assert.equal(s.connections, 2);
  });

  test('Connection: close from the server is honoured even if it keeps the socket open', async () => {
    const s = await rawServer(
      perRequest((socket) =>
        socket.write('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok'),
      ),
    );
    const p = pool(s.url);
    await exchange(p);
    await exchange(p);
    assert.equal(s.connections, 2);
  });

  test('a Keep-Alive timeout hint of 1 s or less means: do not reuse', async () => {
    const s = await rawServer(
      perRequest((socket) =>
        socket.write('HTTP/1.1 200 OK\r\nKeep-Alive: timeout=1\r\nContent-Length: 2\r\n\r\nok'),
      ),
    );
    const p = pool(s.url);
    await exchange(p);
    await exchange(p);
    assert.equal(s.connections, 2);
  });

  test('idle connections are closed after keepAliveIdleMs', async () => {
    let serverSide;
    const s = await rawServer((socket) => {
      serverSide = socket;
      perRequest((sock) => sock.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'))(socket);
    });
    const p = pool(s.url, { keepAliveIdleMs: 100 });
    await exchange(p);
    assert.equal(p.size, 1);
    await once(serverSide, 'close');
    // The pool learns of it from its own socket's 'close', a moment later.
    while (p.size > 0) await new Promise((r) => setTimeout(r, 5));
    assert.equal(p.connectionsOpened, 1);
  });

  test('stale connection: a GET that lost the race is sent again once on a new connection', async () => {
    // The server answers the first request of each connection, then drops the connection
    // when the second arrives without answering: what a server closing an idle connection does.
    const s = await rawServer(
      perRequest((socket, _head, index) => {
        if (index === 0) socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
        else socket.destroy();
      }),
    );
    const p = pool(s.url);
    await exchange(p);
    const r = await exchange(p);
    assert.equal(r.body, 'ok');
    assert.equal(s.connections, 2);
  });

  test('stale connection: a POST with a sent body is not replayed', async () => {
    const s = await rawServer(
      perRequest((socket, _head, index) => {
        if (index === 0) socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
        else socket.destroy();
      }),
    );
    const p = pool(s.url);
    await exchange(p);
    await assert.rejects(exchange(p, { method: 'POST', body: Buffer.from('data') }), {
      code: 'ECONNRESET',
    });
    assert.equal(s.connections, 1);
  });

  test('stale connection: a streamed body none of which was sent is replayed', async () => {
    let bodies = '';
    let secondConnection;
    const second = new Promise((r) => (secondConnection = r));
    const s = await rawServer((socket, n) => {
      if (n === 1) {
        perRequest((sock, _head, index) => {
          if (index === 0) sock.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
          else sock.destroy();
        })(socket);
        return;
      }
      secondConnection();
      socket.on('data', (c) => {
        bodies += c.toString('latin1');
        if (bodies.endsWith('0\r\n\r\n'))
          socket.write('HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n');
      });
    });
    const p = pool(s.url);
    await exchange(p);
    const body = new PassThrough();
    const pending = exchange(p, { method: 'POST', body });
    // The body gets its bytes only once the request was moved to the second connection.
    await second;
    body.end('late body');
    const r = await pending;
    assert.equal(r.status, 201);
    assert.match(bodies, /^POST \/ HTTP\/1.1\r\n/);
    assert.match(bodies, /transfer-encoding: chunked\r\n/);
    assert.match(bodies, /9\r\nlate body\r\n0\r\n\r\n$/);
  });
});

describe('timeouts', () => {
  test('headersTimeout: no answer -> UND_ERR_HEADERS_TIMEOUT, connection dropped', async () => {
    const s = await rawServer(() => {});
    const p = pool(s.url);
    await assert.rejects(exchange(p, { headersTimeout: 100 }), { code: 'UND_ERR_HEADERS_TIMEOUT' });
    await p.close();
  });

  test('bodyTimeout: a body that stalls -> UND_ERR_BODY_TIMEOUT', async () => {
    const s = await rawServer(
      perRequest((socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc')),
    );
    const p = pool(s.url);
    let got = '';
    await assert.rejects(
      exchange(p, { bodyTimeout: 100 }, { onData: (_s, c) => ((got += c), true) }),
      { code: 'UND_ERR_BODY_TIMEOUT' },
    );
    assert.equal(got, 'abc');
  });

  test('refused connection -> ECONNREFUSED', async () => {
    const s = await rawServer(() => {});
    const url = s.url;
    await s.close();
    await assert.rejects(exchange(pool(url)), { code: 'ECONNREFUSED' });
  });
});

describe('backpressure', () => {
  test('a paused response stops reading the socket until resumed', async () => {
    const total = 64 * 1024 * 1024;
    let serverSocket;
    const s = await rawServer(
      perRequest(async (socket) => {
        serverSocket = socket;
        socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${total}\r\n\r\n`);
        const piece = Buffer.alloc(64 * 1024, 97);
        for (let sent = 0; sent < total; sent += piece.length) {
          if (!socket.write(piece)) await once(socket, 'drain');
        }
      }),
    );
    const p = pool(s.url);
    let paused = true;
    let callsWhilePaused = 0;
    let received = 0;
    let firstPause;
    const pausedOnce = new Promise((r) => (firstPause = r));
    let seenRef;
    const done = exchange(
      p,
      {},
      {
        onData: (seen, chunk) => {
          seenRef = seen;
          received += chunk.length;
          if (paused) {
            callsWhilePaused++;
            firstPause();
            return false;
          }
          return true;
        },
      },
    );
    await pausedOnce;
    // Nothing to await for "nothing happens": give a running transfer time to show itself.
    // Unpaused, 64 MiB cross loopback in well under this; paused, the kernel buffers hold a
    // few MiB at most.
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(callsWhilePaused, 1, 'no data is delivered while paused');
    assert.ok(serverSocket.bytesWritten < total / 2, `${serverSocket.bytesWritten} bytes sent`);
    paused = false;
    seenRef.resume();
    const r = await done;
    assert.equal(received, total);
    assert.equal(r.status, 200);
  });

  test('"pause" on the last chunk does not leave the reused connection paused', async () => {
    const s = await rawServer(
      perRequest((socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello')),
    );
    const p = pool(s.url);
    const first = await exchange(p, {}, { onData: () => false });
    assert.equal(first.body, 'hello');
    const second = await exchange(p);
    assert.equal(second.body, 'hello');
    assert.equal(s.connections, 1);
  });

  test('a request body is read only as fast as the upstream takes it (chunked, no length)', async () => {
    const total = 32 * 1024 * 1024;
    let serverSocket;
    let receivedBytes = 0;
    let headSeen;
    const gotHead = new Promise((r) => (headSeen = r));
    const server = await rawServer((socket) => {
      serverSocket = socket;
      socket.once('data', (c) => {
        receivedBytes += c.length;
        socket.pause();
        headSeen();
      });
    });
    let pulled = 0;
    const piece = Buffer.alloc(64 * 1024, 98);
    const body = new Readable({
      read() {
        if (pulled >= total) return this.push(null);
        pulled += piece.length;
        this.push(piece);
      },
    });
    const paused = once(body, 'pause');
    const done = exchange(pool(server.url), { method: 'POST', body });
    await gotHead;
    await paused;
    assert.ok(pulled < total / 2, `${pulled} bytes pulled while the upstream did not read`);
    serverSocket.on('data', (c) => {
      receivedBytes += c.length;
      if (c.toString('latin1').endsWith('0\r\n\r\n'))
        serverSocket.write('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
    });
    serverSocket.resume();
    const r = await done;
    assert.equal(r.status, 200);
    assert.equal(pulled, total);
    assert.ok(receivedBytes > total, 'all chunks with their framing arrived');
  });

  test('a streamed body shorter than its content-length fails the request', async () => {
    const s = await rawServer(() => {});
    await assert.rejects(
      exchange(pool(s.url), {
        method: 'PUT',
        headers: ['host', 'x', 'content-length', '10'],
        body: Readable.from([Buffer.from('abc')]),
      }),
      { code: 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH' },
    );
  });
});

describe('requests, upgrades and lifecycle', () => {
  test('the request head: one write, host added when missing, framing chosen by the body', async () => {
    const heads = [];
    const s = await rawServer((socket) => {
      let buf = '';
      socket.on('data', (c) => {
        buf += c.toString('latin1');
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return;
        const head = buf.slice(0, end);
        const length = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
        if (buf.length < end + 4 + length) return;
        heads.push(buf);
        buf = '';
        socket.write('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
      });
    });
    const p = pool(s.url);
    await exchange(p, {
      method: 'POST',
      path: '/a?b=%2F',
      headers: ['X-Latin', 'caf\xe9'],
      body: 'hi',
    });
    await exchange(p, { method: 'POST', headers: { host: 'h', 'x-list': ['1', '2'] } });
    assert.equal(
      heads[0],
      `POST /a?b=%2F HTTP/1.1\r\nX-Latin: caf\xe9\r\nhost: ${s.url.slice(7)}\r\n` +
        'content-length: 2\r\nconnection: keep-alive\r\n\r\nhi',
    );
    assert.equal(
      heads[1],
      'POST / HTTP/1.1\r\nhost: h\r\nx-list: 1\r\nx-list: 2\r\ncontent-length: 0\r\n' +
        'connection: keep-alive\r\n\r\n',
    );
  });

  test('header injection and framing headers are refused before anything is sent', async () => {
    const s = await rawServer(() => assert.fail('nothing should connect'));
    const p = pool(s.url);
    for (const headers of [
      ['x', 'a\r\nInjected: 1'],
      ['bad name', 'x'],
      ['transfer-encoding', 'chunked'],
      ['upgrade', 'h2c'],
    ]) {
      await assert.rejects(exchange(p, { headers }), { code: 'UND_ERR_INVALID_ARG' });
    }
    await assert.rejects(exchange(p, { path: '/a b' }), { code: 'UND_ERR_INVALID_ARG' });
  });

  test('abort from a handler fails the request at once and drops its connection', async () => {
    const s = await rawServer(
      perRequest((socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart')),
    );
    const p = pool(s.url);
    const reason = new Error('client went away');
    await assert.rejects(
      exchange(
        p,
        {},
        {
          onData: (seen) => {
            seen.abort(reason);
            return false;
          },
        },
      ),
      (err) => err === reason,
    );
    await p.close();
    assert.equal(p.size, 0);
  });

  test('upgrade: a 101 hands over the socket with the bytes that followed the head', async () => {
    const s = await rawServer(
      perRequest((socket, head) => {
        assert.match(head, /\r\nconnection: upgrade\r\nupgrade: websocket/);
        socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\nearly');
        socket.on('data', (c) => socket.write(`echo:${c}`));
      }),
    );
    const p = pool(s.url);
    const r = await exchange(p, { upgrade: 'websocket' });
    assert.equal(r.status, 101);
    assert.deepEqual(r.headers, ['Upgrade', 'websocket']);
    // Handed over paused (like undici): the new owner starts reading when it is ready.
    const firstData = once(r.socket, 'data');
    r.socket.resume();
    const [first] = await firstData;
    assert.equal(first.toString(), 'early');
    r.socket.write('ping');
    const [echo] = await once(r.socket, 'data');
    assert.equal(echo.toString(), 'echo:ping');
    r.socket.destroy();
    assert.equal(p.size, 0, 'an upgraded socket leaves the pool');
  });

  test('close() lets in-flight requests finish and refuses new ones; destroy() fails them', async () => {
    let release;
    const s = await rawServer(
      perRequest((socket, head) => {
        if (head.startsWith('GET /slow'))
          release = () => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow');
        else socket.write('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
      }),
    );
    const p = pool(s.url);
    const slow = exchange(p, { path: '/slow' });
    while (release === undefined) await new Promise((r) => setImmediate(r));
    const closed = p.close();
    await assert.rejects(exchange(p), { code: 'UND_ERR_CLOSED' });
    release();
    assert.equal((await slow).body, 'slow');
    await closed;
    assert.equal(p.size, 0);

    const p2 = pool(s.url);
    release = undefined;
    const slow2 = exchange(p2, { path: '/slow' });
    while (release === undefined) await new Promise((r) => setImmediate(r));
    const failed = assert.rejects(slow2, { code: 'UND_ERR_DESTROYED' });
    await p2.destroy();
    await failed;
  });
});
