import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { formatIssue, loadConfigText } from './config/index.js';
import { Switchyard } from './main.js';
import { createStderrLogger } from './observability/logger.js';

const COLORS = ['#2b7bb9', '#c0392b', '#27ae60', '#8e44ad'];

/** A tiny origin that says who it is, so load balancing is visible from a browser or curl. */
function startOrigin(name: string, color: string): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.url === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      return;
    }
    const accept = req.headers.accept ?? '';
    if (accept.includes('text/html')) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(`<!doctype html><meta name="viewport" content="width=device-width">
<title>${name}</title><body style="font:18px system-ui;background:${color};color:#fff;padding:2em">
<h1>Served by ${name}</h1><p>Path: <code>${escapeHtml(req.url ?? '')}</code></p>
<p>X-Forwarded-For: ${escapeHtml(String(req.headers['x-forwarded-for'] ?? ''))}<br>
X-Request-Id: ${escapeHtml(String(req.headers['x-request-id'] ?? ''))}</p>
<p>Reload the page: Switchyard spreads requests over the origins by weight.</p></body>`);
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', server: 'demo-origin' });
    res.end(
      `${JSON.stringify({ origin: name, method: req.method, url: req.url, requestId: req.headers['x-request-id'] })}\n`,
    );
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function demoConfig(port: number, adminPort: number, origins: number[]): string {
  return `
admin: { address: 127.0.0.1:${adminPort} }
listeners:
  - name: web
    address: 127.0.0.1:${port}
upstreams:
  demo:
    balancer: round-robin
    servers:
      - { url: "http://127.0.0.1:${origins[0]}", weight: 2 }
      - { url: "http://127.0.0.1:${origins[1]}" }
      - { url: "http://127.0.0.1:${origins[2]}" }
      - { url: "http://127.0.0.1:${origins[3]}", backup: true }
routes:
  - name: ping
    match: { path: /ping }
    respond: { status: 200, body: "pong\\n" }
  - name: old-docs
    match: { pathPrefix: /old/ }
    redirect: { location: "{scheme}://{host}/new/", status: 301 }
  - name: api
    match: { pathPrefix: /api/ }
    upstream: demo
    rewrite: { stripPrefix: /api }
    requestHeaders: { set: { X-Demo: "via switchyard" } }
    responseHeaders: { set: { X-Served-Through: switchyard } }
  - name: site
    upstream: demo
`;
}

export async function runDemo(): Promise<number> {
  const names = ['origin-a (weight 2)', 'origin-b', 'origin-c', 'origin-backup'];
  const origins = await Promise.all(names.map((n, i) => startOrigin(n, COLORS[i])));
  const ports = origins.map((o) => (o.address() as AddressInfo).port);
  // The dashboard sits on 9901 next to the usual 8080 (PORT=0: both on free ports); when either
  // is busy, both move to free ports.
  const wanted = Number(process.env.PORT ?? 8080);
  const wantedAdmin = Number(process.env.ADMIN_PORT ?? (wanted === 0 ? 0 : 9901));
  const log = createStderrLogger();
  let proxy: Switchyard | undefined;
  const attempts = [
    [wanted, wantedAdmin],
    [0, 0],
  ];
  for (const [i, [port, adminPort]] of attempts.entries()) {
    const { config, issues } = loadConfigText(demoConfig(port, adminPort, ports), {
      path: 'demo.yaml',
    });
    if (!config) {
      for (const issue of issues) process.stderr.write(`${formatIssue(issue)}\n`);
      return 1;
    }
    try {
      proxy = await Switchyard.start(config, { log });
      break;
    } catch (err) {
      if (i === attempts.length - 1) throw err;
      process.stderr.write(`${whyNotStarted(err)}; using free ports instead\n`);
    }
  }
  if (!proxy) return 1;
  const running = proxy;
  // Handlers first: whoever reads the banner may stop the demo at once.
  const stopped = new Promise<number>((resolve) => {
    const stop = () => {
      void running.stop(2000).then(() => {
        for (const origin of origins) origin.close();
        resolve(0);
      });
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  const url = proxy.url();
  process.stdout.write(`
Switchyard demo is running at ${url}
Live dashboard: ${proxy.adminUrl()}/ (drain a server there and watch the traffic move)

  Open ${url}/ in a browser and reload: origin-a answers twice as often as b and c.
  curl ${url}/ping                 a response from Switchyard itself
  curl -s ${url}/api/hello         proxied with /api stripped, headers added both ways
  curl -si ${url}/old/page         a 301 redirect
  for i in 1 2 3 4; do curl -s ${url}/; done

Ctrl-C stops it.
`);
  return await stopped;
}

/** Names the port that is taken (the proxy's or the dashboard's), else the start error itself. */
function whyNotStarted(err: unknown): string {
  const cause = (err as Error).cause as (NodeJS.ErrnoException & { port?: number }) | undefined;
  if (cause?.code === 'EADDRINUSE' && cause.port !== undefined) return `port ${cause.port} is busy`;
  return (err as Error).message;
}
