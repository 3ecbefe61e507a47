#!/usr/bin/env node
// A tiny origin server for trying Switchyard: `node examples/origin.mjs 3001 3002` starts one
// HTTP server per port on 127.0.0.1. Each answers every request with a JSON description of what
// it received (which port, method, URL and the headers Switchyard added), so you can see load
// balancing, rewrites and header rules at work. Ctrl-C stops it.
import http from 'node:http';

const ports = process.argv.slice(2).map(Number);
if (ports.length === 0 || ports.some((p) => !Number.isInteger(p) || p < 1 || p > 65535)) {
  process.stderr.write('usage: node examples/origin.mjs PORT [PORT...]\n');
  process.exit(2);
}

for (const port of ports) {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const seen = {
        origin: `127.0.0.1:${port}`,
        method: req.method,
        url: req.url,
        host: req.headers.host,
        'x-forwarded-for': req.headers['x-forwarded-for'],
        'x-forwarded-proto': req.headers['x-forwarded-proto'],
        'x-forwarded-host': req.headers['x-forwarded-host'],
        'x-request-id': req.headers['x-request-id'],
      };
      // Server and X-Powered-By are here on purpose: Switchyard removes them.
      res.writeHead(200, {
        'content-type': 'application/json',
        server: 'example-origin',
        'x-powered-by': 'node',
      });
      res.end(`${JSON.stringify(seen, null, 2)}\n`);
    });
  });
  server.on('error', (err) => {
    process.stderr.write(`origin on port ${port}: ${err.message}\n`);
    process.exit(1);
  });
  server.listen(port, '127.0.0.1', () => {
    process.stderr.write(`origin listening on http://127.0.0.1:${port}\n`);
  });
}
