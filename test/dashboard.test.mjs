// The live dashboard driven in real Chromium (Debian's package, through playwright-core): it
// loads with no console errors, shows the servers, follows a server going down without a reload,
// drains and enables with its buttons, asks for the token when one is set, and fits a phone.
/* global document, window, getComputedStyle -- functions passed to page.evaluate run in the browser */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { startOrigin, startProxy, request } from './helpers.mjs';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
// UPDATE_SCREENSHOTS=1 refreshes the pictures in docs/; otherwise they go to a temp dir.
const shots =
  process.env.UPDATE_SCREENSHOTS === '1'
    ? new URL('../docs/', import.meta.url).pathname
    : mkdtempSync(join(tmpdir(), 'switchyard-shots-'));

let browser;

before(async () => {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
});

after(async () => {
  await browser?.close();
});

/** Two origins with a health endpoint the test can fail, behind a proxy with an admin listener. */
async function setup(adminExtra = '') {
  const health = { a: 200, b: 200 };
  const origin = (name) =>
    startOrigin((req, res) => {
      if (req.url === '/healthz') {
        res.writeHead(health[name]).end();
        return;
      }
      if (req.url.startsWith('/boom')) {
        res.writeHead(503).end('boom');
        return;
      }
      res.end(name);
    });
  const a = await origin('a');
  const b = await origin('b');
  const proxy = await startProxy(`
listeners: [{ name: web, address: "127.0.0.1:0" }]
upstreams:
  app:
    servers: [{ url: "${a.url}", weight: 2 }, { url: "${b.url}" }]
    healthCheck: { path: /healthz, interval: 100ms, timeout: 1s, healthyThreshold: 1, unhealthyThreshold: 1 }
routes:
  - { name: ping, match: { path: /ping }, respond: { status: 200, body: pong } }
  - { name: app, upstream: app }
admin: { address: "127.0.0.1:0"${adminExtra} }
`);
  return {
    proxy,
    a,
    b,
    health,
    admin: proxy.proxy.adminUrl(),
    close: async () => {
      await proxy.close();
      await a.close();
      await b.close();
    },
  };
}

function watchConsole(page) {
  const problems = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning')
      problems.push(`${msg.type()}: ${msg.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  page.on('requestfailed', (req) => {
    // The SSE fetch is aborted when the page closes; anything else failing is a problem.
    if (!req.url().endsWith('/api/events')) problems.push(`requestfailed: ${req.url()}`);
  });
  return problems;
}

const badge = (page, url) => page.locator(`tr[data-key="app ${url}"] .badge`);
const button = (page, url) => page.locator(`tr[data-key="app ${url}"] button`);

test('dashboard: servers, live state, drain and enable, no console errors', async () => {
  const s = await setup();
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const problems = watchConsole(page);
  const external = [];
  page.on('request', (req) => {
    if (!req.url().startsWith(s.admin)) external.push(req.url());
  });
  try {
    for (let i = 0; i < 20; i++) await request(`${s.proxy.url}/page/${i}`);
    await request(`${s.proxy.url}/boom`);
    await request(`${s.proxy.url}/ping`);
    const response = await page.goto(s.admin);
    assert.equal(response.status(), 200);
    await page.locator('#conn', { hasText: 'live' }).waitFor();
    await badge(page, s.a.url).waitFor();
    assert.equal(await badge(page, s.a.url).textContent(), 'up');
    assert.equal(await badge(page, s.b.url).textContent(), 'up');
    assert.equal(await page.title(), 'Switchyard dashboard');
    // Routes table and recent errors come from the same stream.
    await page.locator('#routes-body tr[data-key="app"]').waitFor();
    await page.locator('#errors-body tr', { hasText: '/boom' }).waitFor();
    assert.match(await page.locator('#total').textContent(), /^\d+$/);

    // The server fails its health check: the page follows without a reload.
    s.health.b = 503;
    await page.locator(`tr[data-key="app ${s.b.url}"] .badge[data-state="down"]`).waitFor();
    // Traffic goes on on the page while it is live: the rate sparkline gets points.
    for (let i = 0; i < 10; i++) await request(`${s.proxy.url}/more/${i}`);
    await page.waitForFunction(() => document.querySelector('#spark-rps polyline') !== null);
    await page.screenshot({ path: join(shots, 'dashboard.png'), fullPage: true });

    // The drain button drains the server (checked through the API too), then enables it back.
    await button(page, s.a.url).click();
    await page.locator(`tr[data-key="app ${s.a.url}"] .badge[data-state="draining"]`).waitFor();
    const listed = JSON.parse((await request(`${s.admin}/api/upstreams`)).text);
    assert.equal(listed.upstreams[0].servers[0].state, 'draining');
    assert.equal(await button(page, s.a.url).textContent(), 'Enable');
    await button(page, s.a.url).click();
    await page.locator(`tr[data-key="app ${s.a.url}"] .badge[data-state="up"]`).waitFor();
    const again = JSON.parse((await request(`${s.admin}/api/upstreams`)).text);
    assert.equal(again.upstreams[0].servers[0].state, 'up');

    // The server recovers: shown up again, still without a reload.
    s.health.b = 200;
    await page.locator(`tr[data-key="app ${s.b.url}"] .badge[data-state="up"]`).waitFor();
    assert.deepEqual(problems, []);
    assert.deepEqual(external, [], 'everything is served by the admin listener (no CDN)');
  } finally {
    await context.close();
    await s.close();
  }
});

test('dashboard with a token: 401 page asks for it, then goes live', async () => {
  const s = await setup(', token: "tok-123"');
  const context = await browser.newContext({ viewport: { width: 1024, height: 768 } });
  const page = await context.newPage();
  const problems = watchConsole(page);
  try {
    const response = await page.goto(s.admin);
    assert.equal(response.status(), 401, 'the page itself is refused without the token');
    await page.locator('#login').waitFor();
    // Nothing about the servers is on the page before the token is given.
    assert.equal(await page.locator('#upstreams tr').count(), 0);
    await page.fill('#token', 'wrong');
    await page.click('#login button[type=submit]');
    await page.locator('#login-message', { hasText: 'refused' }).waitFor();
    await page.fill('#token', 'tok-123');
    await page.click('#login button[type=submit]');
    await page.locator('#conn', { hasText: 'live' }).waitFor();
    await badge(page, s.a.url).waitFor();
    assert.equal(await page.locator('#login').isHidden(), true);
    await button(page, s.b.url).click();
    await page.locator(`tr[data-key="app ${s.b.url}"] .badge[data-state="draining"]`).waitFor();
    const listed = JSON.parse(
      (await request(`${s.admin}/api/upstreams`, { headers: { authorization: 'Bearer tok-123' } }))
        .text,
    );
    assert.equal(listed.upstreams[0].servers[1].state, 'draining');
    // Only the expected 401s (the page and the wrong token) were reported by the browser.
    assert.deepEqual(
      problems.filter((p) => !/status of 401/.test(p)),
      [],
    );
  } finally {
    await context.close();
    await s.close();
  }
});

test('dashboard is readable on a phone', async () => {
  const s = await setup();
  const context = await browser.newContext({
    viewport: { width: 390, height: 844 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
  });
  const page = await context.newPage();
  const problems = watchConsole(page);
  try {
    for (let i = 0; i < 5; i++) await request(`${s.proxy.url}/p${i}`);
    await page.goto(s.admin);
    await page.locator('#conn', { hasText: 'live' }).waitFor();
    await badge(page, s.b.url).waitFor();
    const layout = await page.evaluate(() => ({
      scrollWidth: document.documentElement.scrollWidth,
      innerWidth: window.innerWidth,
      rightmost: Math.max(
        ...[...document.querySelectorAll('main .card, main button')].map(
          (e) => e.getBoundingClientRect().right,
        ),
      ),
      fontSize: parseFloat(getComputedStyle(document.body).fontSize),
      cardWidth: document.querySelector('.card.stat').getBoundingClientRect().width,
    }));
    assert.equal(layout.innerWidth, 390);
    assert.ok(
      layout.scrollWidth <= layout.innerWidth,
      `no sideways scrolling: ${JSON.stringify(layout)}`,
    );
    assert.ok(
      layout.rightmost <= layout.innerWidth,
      `cards and buttons fit: ${JSON.stringify(layout)}`,
    );
    assert.ok(layout.fontSize >= 14, 'text is readable');
    assert.ok(layout.cardWidth >= 140, 'stat cards are not squashed');
    const box = await button(page, s.a.url).boundingBox();
    assert.ok(box.height >= 28, 'buttons are big enough to tap');
    await button(page, s.a.url).tap();
    await page.locator(`tr[data-key="app ${s.a.url}"] .badge[data-state="draining"]`).waitFor();
    await page.screenshot({ path: join(shots, 'dashboard-phone.png'), fullPage: true });
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
    await s.close();
  }
});
