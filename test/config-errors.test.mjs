// Every class of config problem, with the exact line the CLI prints: `<path>: <message> (<line>:<col>)`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfigText, formatIssue } from '../dist/config/index.js';

/** Joins lines so fixtures read like files; positions in assertions refer to these lines. */
const yaml = (...lines) => `${lines.join('\n')}\n`;

function problems(text, env = {}) {
  const { config, issues } = loadConfigText(text, { env });
  if (issues.length > 0) assert.equal(config, undefined, 'no config is returned with issues');
  return issues.map(formatIssue);
}

function ok(text, env = {}) {
  const { config, issues } = loadConfigText(text, { env });
  assert.deepEqual(issues.map(formatIssue), []);
  return config;
}

const HEAD = [
  'listeners:',
  '  - address: 127.0.0.1:0',
  'upstreams:',
  '  app:',
  '    servers: [{ url: "http://127.0.0.1:3001" }]',
];

test('the contract example: unknown upstream with key path and line:col', () => {
  const text = yaml(
    'listeners:',
    '  - address: :8080',
    'upstreams:',
    '  app:',
    '    servers: [{ url: "http://127.0.0.1:3001" }]',
    'routes:',
    '  - match: { path: /a }',
    '    upstream: app',
    '  - match: { path: /b }',
    '    upstream: app',
    '  - match: { path: /c }',
    '    upstream: ap',
  );
  assert.deepEqual(problems(text), ['routes[2].upstream: unknown upstream "ap" (12:15)']);
});

test('formatIssue: path, message and position; parts left out when unknown', () => {
  assert.equal(formatIssue({ path: 'a.b', message: 'bad', line: 3, column: 7 }), 'a.b: bad (3:7)');
  assert.equal(formatIssue({ path: '', message: 'bad', line: 3, column: 7 }), 'bad (3:7)');
  assert.equal(formatIssue({ path: 'a', message: 'bad', line: 0, column: 0 }), 'a: bad');
});

test('issue objects carry path, message, line and column separately', () => {
  const { issues } = loadConfigText(yaml('listeners:', '  - address: :80', 'workerz: 2'), {
    env: {},
  });
  assert.deepEqual(issues, [
    {
      path: 'workerz',
      message: 'unknown key "workerz" (did you mean "workers"?)',
      line: 3,
      column: 1,
    },
  ]);
});

test('unknown keys are reported at the key, with a suggestion when close', () => {
  assert.deepEqual(
    problems(
      yaml(...HEAD, 'routes:', '  - upstrem: app', '    match: { pathPrefx: /a, nonsense: 1 }'),
    ),
    [
      'routes[0].upstrem: unknown key "upstrem" (did you mean "upstream"?) (7:5)',
      'routes[0].match.pathPrefx: unknown key "pathPrefx" (did you mean "pathPrefix"?) (8:14)',
      'routes[0].match.nonsense: unknown key "nonsense" (8:29)',
    ],
  );
});

test('a missing required key points at the parent mapping', () => {
  assert.deepEqual(problems(yaml('listeners:', '  - name: web', '    http2: true')), [
    'listeners[0].address: missing required key "address" (2:5)',
  ]);
  assert.deepEqual(problems(yaml('workers: 2')), [
    'listeners: missing required key "listeners" (1:1)',
  ]);
});

test('at least one listener; an empty file says so', () => {
  assert.deepEqual(problems(yaml('listeners: []')), [
    'listeners: at least one listener is required (1:12)',
  ]);
  assert.deepEqual(problems(''), ['the config is empty; at least one listener is required (1:1)']);
  assert.deepEqual(problems('# only a comment\n'), [
    'the config is empty; at least one listener is required (1:1)',
  ]);
});

test('type errors say what was expected and what was found', () => {
  assert.deepEqual(
    problems(
      yaml(
        'listeners:',
        '  - address: 8080',
        '    http2: "yes"',
        '    limits: { maxConnections: many, maxBodySize: -1 }',
        'routes: { a: 1 }',
      ),
    ),
    [
      'listeners[0].address: expected a string, got 8080 (2:14)',
      'listeners[0].http2: expected true or false, got "yes" (3:12)',
      'listeners[0].limits.maxConnections: expected a whole number, got "many" (4:31)',
      'listeners[0].limits.maxBodySize: must be at least 0, got -1 (4:50)',
      'routes: expected a list, got a mapping (5:9)',
    ],
  );
});

test('units: durations, sizes and rates get one readable message each', () => {
  assert.deepEqual(
    problems(
      yaml(
        ...HEAD,
        '    connectTimeout: 5',
        '    readTimeout: 30s1m',
        '    keepAlive: { idleTimeout: 1d }',
        'routes:',
        '  - upstream: app',
        '    rateLimit: { rate: 10/day }',
        '    compression: { minLength: 1 KB!! }',
      ),
    ),
    [
      'upstreams.app.connectTimeout: expected a duration like "5s", "250ms", "2m" or "1h", got 5 (6:21)',
      'upstreams.app.readTimeout: expected a duration like "5s", "250ms", "2m" or "1h" (7:18)',
      'upstreams.app.keepAlive.idleTimeout: expected a duration like "5s", "250ms", "2m" or "1h" (8:31)',
      'routes[0].rateLimit.rate: expected a rate like "100/s", "600/m" or "1000/h" (11:24)',
      'routes[0].compression.minLength: expected a size like "16KiB", "10MiB" or a number of bytes (12:31)',
    ],
  );
});

test('enums list the allowed values', () => {
  assert.deepEqual(problems(yaml(...HEAD, '    balancer: fastest', '    protocol: http3')), [
    'upstreams.app.balancer: must be one of round-robin, least-connections, least-request, random, ip-hash, consistent-hash, ewma, got "fastest" (6:15)',
    'upstreams.app.protocol: must be one of http1, h2, h2c, got "http3" (7:15)',
  ]);
});

test('unions report one message, or descend into the variant the value was meant for', () => {
  const lines = problems(
    yaml(
      ...HEAD,
      'routes:',
      '  - upstream: app',
      '    cache: 5',
      '    compression: { quality: 9 }',
      '  - upstream: app',
      '    match: { path: /x }',
      '    cache: { ttl: soon }',
      '  - upstream: app',
      '    match: { host: 5, path: /y }',
      'workers: many',
    ),
  );
  assert.deepEqual(lines, [
    'routes[0].cache: expected true, false or an object with ttl, staleWhileRevalidate, staleIfError or key, got 5 (8:12)',
    'routes[0].compression.quality: unknown key "quality" (9:20)',
    'routes[1].cache.ttl: expected a duration like "5s", "250ms", "2m" or "1h" (12:19)',
    'routes[2].match.host: expected a host name or a list of host names, got 5 (14:20)',
    'workers: expected a whole number of at least 1 or "auto", got "many" (15:10)',
  ]);
});

test('invalid record keys: header names, status codes, upstream names', () => {
  assert.deepEqual(
    problems(
      yaml(
        'listeners:',
        '  - address: :80',
        'upstreams:',
        '  "bad name":',
        '    servers: [{ url: "http://a" }]',
        'errorPages: { "200": ok.html }',
        'routes:',
        '  - respond: { headers: { "Bad Header": x } }',
      ),
    ),
    [
      'upstreams["bad name"]: invalid key "bad name": names use letters, digits, "_", "." and "-", starting with a letter or digit (4:3)',
      'errorPages["200"]: invalid key "200": expected a status code from 400 to 599 (6:15)',
      'routes[0].respond.headers["Bad Header"]: invalid key "Bad Header": not a valid header name (8:27)',
    ],
  );
});

test('YAML syntax errors carry line:col', () => {
  assert.deepEqual(
    problems(yaml('listeners:', '  - address: :80', '    name: [web', 'workers: 1')),
    [
      'YAML syntax error: Flow sequence in block collection must be sufficiently indented and end with a ] (4:1)',
    ],
  );
  assert.deepEqual(problems(yaml('listeners:', '  - address: :80', 'workers: 1', 'workers: 2')), [
    'YAML syntax error: Map keys must be unique (4:1)',
  ]);
});

test('JSON input, including JSON syntax errors with positions', () => {
  const config = ok(
    '{"listeners": [{"name": "web", "address": "127.0.0.1:0"}], "workers": "auto"}',
  );
  assert.equal(config.listeners[0].name, 'web');
  assert.equal(config.workers, 'auto');
  const lines = problems('{\n  "listeners": [\n    {"address": ":80",}\n  ]\n  "x": 1\n}\n');
  assert.ok(lines.length > 0);
  for (const line of lines) assert.match(line, /^YAML syntax error: .* \(\d+:\d+\)$/);
});

test('duplicate listener names and addresses; port 0 never conflicts', () => {
  assert.deepEqual(
    problems(
      yaml(
        'listeners:',
        '  - { name: a, address: "127.0.0.1:8080" }',
        '  - { name: a, address: "127.0.0.1:8081" }',
        '  - { name: b, address: ":8080" }',
        '  - { name: c, address: "[::1]:8081" }',
        '  - { name: d, address: "127.0.0.1:0" }',
        '  - { name: e, address: "127.0.0.1:0" }',
        'admin: { address: "127.0.0.1:8081" }',
      ),
    ),
    [
      'listeners[1].name: duplicate listener name "a" (also listeners[0]) (3:13)',
      'listeners[2].address: address :8080 is already used by listeners[0] ("a") (4:25)',
      'admin.address: address 127.0.0.1:8081 is already used by listeners[1] ("a") (8:19)',
    ],
  );
});

test('address syntax: host:port, :port, [v6]:port, port 0-65535', () => {
  const config = ok(
    yaml(
      'listeners:',
      '  - address: "127.0.0.1:0"',
      '  - address: ":65535"',
      '  - address: "[::1]:8080"',
      '  - address: "localhost:8081"',
      '  - address: "[fe80::1]:8082"',
    ),
  );
  assert.deepEqual(
    config.listeners.map((l) => l.address),
    [
      { host: '127.0.0.1', port: 0 },
      { host: '', port: 65535 },
      { host: '::1', port: 8080 },
      { host: 'localhost', port: 8081 },
      { host: 'fe80::1', port: 8082 },
    ],
  );
  assert.deepEqual(
    problems(
      yaml(
        'listeners:',
        '  - address: "127.0.0.1"',
        '  - address: ":65536"',
        '  - address: "::1:80"',
        '  - address: "[::1]80"',
        '  - address: "[nope]:80"',
        '  - address: "bad_host:80"',
        '  - address: ":http"',
      ),
    ),
    [
      'listeners[0].address: invalid address "127.0.0.1": missing port; expected host:port, :port or [IPv6]:port, like 127.0.0.1:8080 (2:14)',
      'listeners[1].address: invalid address ":65536": the port must be a number from 0 to 65535 (3:14)',
      'listeners[2].address: invalid address "::1:80": write IPv6 addresses in brackets, like [::1]:8080 (4:14)',
      'listeners[3].address: invalid address "[::1]80": expected host:port, :port or [IPv6]:port, like 127.0.0.1:8080 (5:14)',
      'listeners[4].address: invalid address "[nope]:80": "nope" is not an IPv6 address (6:14)',
      'listeners[5].address: invalid address "bad_host:80": "bad_host" is not a valid host name or IPv4 address (7:14)',
      'listeners[6].address: invalid address ":http": the port must be a number from 0 to 65535 (8:14)',
    ],
  );
});

test('route targets: exactly one of upstream, redirect, respond', () => {
  assert.deepEqual(
    problems(
      yaml(
        ...HEAD,
        'routes:',
        '  - match: { path: /none }',
        '  - match: { path: /two }',
        '    upstream: app',
        '    respond: { body: x }',
        '  - match: { path: /three }',
        '    upstream: app',
        '    redirect: { location: /y }',
        '    respond: {}',
      ),
    ),
    [
      'routes[0]: a route needs one of upstream, redirect or respond (7:5)',
      'routes[1].respond: a route has exactly one of upstream, redirect or respond; this one has upstream and respond (10:5)',
      'routes[2].redirect: a route has exactly one of upstream, redirect or respond; this one has upstream, redirect and respond (13:5)',
    ],
  );
});

test('match: unknown listener, one path condition, regex compiles, unique route names', () => {
  assert.deepEqual(
    problems(
      yaml(
        'listeners:',
        '  - { name: web, address: ":0" }',
        'routes:',
        '  - name: a',
        '    match: { listener: webb, path: /a, pathPrefix: /a/ }',
        '    respond: {}',
        '  - name: a',
        '    match: { pathRegex: "^/u/[0-9+$" }',
        '    respond: {}',
      ),
    ),
    [
      'routes[0].match: use only one of path, pathPrefix or pathRegex (found path and pathPrefix) (5:12)',
      'routes[0].match.listener: unknown listener "webb" (5:24)',
      'routes[1].name: duplicate route name "a" (also routes[0]) (7:11)',
      'routes[1].match.pathRegex: invalid regular expression: /^/u/[0-9+$/: Unterminated character class (8:25)',
    ],
  );
});

test('upstreams: servers needed, one primary needed, URLs are bare http(s) origins', () => {
  assert.deepEqual(
    problems(
      yaml(
        'listeners:',
        '  - address: ":0"',
        'upstreams:',
        '  none:',
        '    servers: []',
        '  backups:',
        '    servers:',
        '      - { url: "http://a:1", backup: true }',
        '  urls:',
        '    servers:',
        '      - url: "http://a:1/base"',
        '      - url: "http://a:1?x=1"',
        '      - url: "ws://a:1"',
        '      - url: "not a url"',
        '      - url: "http://user:pw@a:1"',
        '      - url: "http://a:1"',
        '      - url: "http://A:1/"',
      ),
    ),
    [
      'upstreams.none.servers: an upstream needs at least one server (5:14)',
      'upstreams.backups.servers: every server is a backup; at least one must be a primary (backup: false) (8:7)',
      'upstreams.urls.servers[0].url: a server URL has no path or query ("http://a:1/base"); use rewrite.addPrefix on the route (11:14)',
      'upstreams.urls.servers[1].url: a server URL has no path or query ("http://a:1?x=1"); use rewrite.addPrefix on the route (12:14)',
      'upstreams.urls.servers[2].url: unsupported scheme "ws" in "ws://a:1"; use http or https (13:14)',
      'upstreams.urls.servers[3].url: invalid URL "not a url"; expected http://host:port or https://host:port (14:14)',
      'upstreams.urls.servers[4].url: a server URL cannot carry credentials ("http://user:pw@a:1"); use requestHeaders instead (15:14)',
      'upstreams.urls.servers[6].url: duplicate server http://a:1 (also servers[5]) (17:14)',
    ],
  );
});

test('upstream protocol must fit the server schemes', () => {
  assert.deepEqual(
    problems(
      yaml(
        'listeners: [{ address: ":0" }]',
        'upstreams:',
        '  grpc: { protocol: h2, servers: [{ url: "http://a:1" }] }',
        '  h2c: { protocol: h2c, servers: [{ url: "https://a:1" }] }',
      ),
    ),
    [
      'upstreams.grpc.protocol: h2 needs https:// servers; use h2c for cleartext HTTP/2 (3:21)',
      'upstreams.h2c.protocol: h2c is cleartext HTTP/2 and needs http:// servers; use h2 for https:// (4:20)',
    ],
  );
});

test('unreachable routes: an earlier catch-all hides every later route', () => {
  assert.deepEqual(
    problems(
      yaml(
        ...HEAD,
        'routes:',
        '  - match: { path: /ping }',
        '    respond: { body: pong }',
        '  - name: catch-all',
        '    upstream: app',
        '  - match: { path: /late }',
        '    respond: {}',
        '  - upstream: app',
      ),
    ),
    [
      'routes[2]: can never match: routes[1] ("catch-all") matches every request first (11:5)',
      'routes[3]: can never match: routes[1] ("catch-all") matches every request first (13:5)',
    ],
  );
});

test('unreachable routes: listener-only, prefix and subset matches', () => {
  const base = [
    'listeners:',
    '  - { name: web, address: ":0" }',
    '  - { name: admin, address: "127.0.0.1:0" }',
    'routes:',
  ];
  assert.deepEqual(
    problems(
      yaml(
        ...base,
        '  - match: { listener: web }',
        '    redirect: { location: "https://{host}{uri}", status: 308 }',
        '  - match: { listener: web, path: /x }',
        '    respond: {}',
        '  - match: { pathPrefix: /api, methods: [GET, POST] }',
        '    respond: {}',
        '  - match: { pathPrefix: /api/v1, methods: [get], host: a.example }',
        '    respond: {}',
        '  - match: { pathPrefix: /apix }',
        '    respond: {}',
      ),
    ),
    [
      'routes[1]: can never match: routes[0] matches every request this route could match first (7:5)',
      'routes[3]: can never match: routes[2] matches every request this route could match first (11:5)',
    ],
  );
  // Narrower first, broader later: both reachable. Different listeners: both reachable.
  ok(
    yaml(
      ...base,
      '  - match: { listener: web, path: /x }',
      '    respond: {}',
      '  - match: { listener: web }',
      '    respond: {}',
      '  - match: { listener: admin }',
      '    respond: {}',
      '  - match: { host: [a.example, b.example] }',
      '    respond: {}',
      '  - match: { host: [a.example, c.example] }',
      '    respond: {}',
      '  - match: { headers: { X-A: "1" } }',
      '    respond: {}',
      '  - match: { headers: { x-a: "2" } }',
      '    respond: {}',
      '  - match: { query: { q: "1" } }',
      '    respond: {}',
      '  - match: {}',
      '    respond: {}',
    ),
  );
  assert.deepEqual(
    problems(
      yaml(
        ...base,
        '  - match: { headers: { X-A: "1" } }',
        '    respond: {}',
        '  - match: { headers: { x-a: "1", x-b: "2" } }',
        '    respond: {}',
      ),
    ),
    [
      'routes[1]: can never match: routes[0] matches every request this route could match first (7:5)',
    ],
  );
});

test('placeholders: the known set is accepted', () => {
  ok(
    yaml(
      'listeners: [{ address: ":0" }]',
      'upstreams:',
      '  app:',
      '    balancer: consistent-hash',
      '    hashKey: "{cookie.session}"',
      '    hostHeader: "{host}"',
      '    servers: [{ url: "http://a:1" }]',
      'routes:',
      '  - upstream: app',
      '    match: { path: /a }',
      '    requestHeaders:',
      '      set: { X-All: "{host}{path}{query}{uri}{scheme}{method}{client_ip}{request_id}" }',
      '      add: { X-H: "{header.x-user-id} {{literal}} }" }',
      '    rateLimit: { rate: 10/s, key: "{header.authorization}" }',
      '    cache: { key: "{method}{host}{uri}" }',
      '  - redirect: { location: "https://{host}{uri}" }',
    ),
  );
});

test('placeholders: unknown or unclosed ones are reported where they are written', () => {
  const known =
    'known: {host} {path} {query} {uri} {scheme} {method} {client_ip} {request_id} {tls_client_subject} {header.NAME} {cookie.NAME}';
  assert.deepEqual(
    problems(
      yaml(
        'listeners: [{ address: ":0" }]',
        'upstreams:',
        '  app:',
        '    hashKey: "{ip}"',
        '    hostHeader: "{header.}"',
        '    servers: [{ url: "http://a:1" }]',
        'routes:',
        '  - upstream: app',
        '    match: { path: /a }',
        '    responseHeaders: { add: { X-A: "{Host}" } }',
        '    rateLimit: { rate: 10/s, key: "{client-ip}" }',
        '    cache: { key: "{uri" }',
        '  - redirect: { location: "https://{hostname}/" }',
      ),
    ),
    [
      `upstreams.app.hashKey: unknown placeholder "{ip}"; ${known} (4:14)`,
      `upstreams.app.hostHeader: unknown placeholder "{header.}"; ${known} (5:17)`,
      `routes[0].responseHeaders.add.X-A: unknown placeholder "{Host}"; ${known} (10:36)`,
      `routes[0].rateLimit.key: unknown placeholder "{client-ip}"; ${known} (11:35)`,
      'routes[0].cache.key: unclosed "{" in "{uri"; write "{{" for a literal brace (12:19)',
      `routes[1].redirect.location: unknown placeholder "{hostname}"; ${known} (13:27)`,
    ],
  );
});

test('admin: without a token it must bind to loopback', () => {
  const admin = (addr, token) =>
    yaml(
      'listeners: [{ address: ":0" }]',
      `admin: { address: "${addr}"${token ? `, token: "${token}"` : ''} }`,
    );
  assert.deepEqual(problems(admin(':9901')), [
    'admin.address: an admin listener without admin.token must bind to loopback (127.0.0.1 or ::1) (2:19)',
  ]);
  assert.deepEqual(problems(admin('0.0.0.0:9901')), [
    'admin.address: an admin listener without admin.token must bind to loopback (127.0.0.1 or ::1) (2:19)',
  ]);
  assert.deepEqual(problems(admin('0.0.0.0:9901', '${EMPTY:-}')), [
    'admin.address: an admin listener without admin.token must bind to loopback (127.0.0.1 or ::1) (2:19)',
  ]);
  for (const addr of ['127.0.0.1:9901', '[::1]:9901', 'localhost:9901', '127.0.0.2:0']) {
    assert.equal(ok(admin(addr)).admin.token, undefined);
  }
  assert.equal(ok(admin('0.0.0.0:9901', 'secret')).admin.token, 'secret');
});

test('trustedProxies and ipFilter hold addresses or CIDRs', () => {
  const config = ok(
    yaml(
      'listeners: [{ address: ":0" }]',
      'trustedProxies: [127.0.0.1, 10.0.0.0/8, "::1", "fd00::/8", 0.0.0.0/0]',
      'routes:',
      '  - respond: {}',
      '    ipFilter: { allow: [192.168.0.0/16, "::/0"], deny: [192.168.1.1] }',
    ),
  );
  assert.deepEqual(config.trustedProxies, [
    '127.0.0.1/32',
    '10.0.0.0/8',
    '::1/128',
    'fd00::/8',
    '0.0.0.0/0',
  ]);
  assert.deepEqual(config.routes[0].features.ipFilter, {
    allow: ['192.168.0.0/16', '::/0'],
    deny: ['192.168.1.1'],
  });
  assert.deepEqual(
    problems(
      yaml(
        'listeners: [{ address: ":0" }]',
        'trustedProxies: [10.0.0.0/33, "::1/129", 1.2.3, localhost, 10.0.0.0/]',
        'routes:',
        '  - respond: {}',
        '    ipFilter: { deny: [300.0.0.1] }',
      ),
    ),
    [
      'trustedProxies[0]: invalid address or CIDR "10.0.0.0/33"; expected e.g. 10.0.0.0/8 or ::1 (2:18)',
      'trustedProxies[1]: invalid address or CIDR "::1/129"; expected e.g. 10.0.0.0/8 or ::1 (2:31)',
      'trustedProxies[2]: invalid address or CIDR "1.2.3"; expected e.g. 10.0.0.0/8 or ::1 (2:42)',
      'trustedProxies[3]: invalid address or CIDR "localhost"; expected e.g. 10.0.0.0/8 or ::1 (2:49)',
      'trustedProxies[4]: invalid address or CIDR "10.0.0.0/"; expected e.g. 10.0.0.0/8 or ::1 (2:60)',
      'routes[0].ipFilter.deny[0]: invalid address or CIDR "300.0.0.1"; expected e.g. 10.0.0.0/8 or ::1 (5:24)',
    ],
  );
});

test('stores that need other keys: redis, disk path; TLS needs a certificate or acme', () => {
  assert.deepEqual(
    problems(
      yaml(
        'listeners:',
        '  - address: ":0"',
        '    tls: { minVersion: TLSv1.3 }',
        'rateLimitStore: redis',
        'cache: { store: disk }',
      ),
    ),
    [
      'listeners[0].tls: a TLS listener needs at least one certificate under tls.certificates, or acme configured (3:10)',
      'rateLimitStore: the redis store needs redis.url to be configured (4:17)',
      'cache: the disk store needs cache.path (5:8)',
    ],
  );
  ok(
    yaml(
      'listeners:',
      '  - address: ":0"',
      '    tls: {}',
      'acme: { email: ops@example.com }',
      'rateLimitStore: redis',
      'redis: { url: "redis://127.0.0.1:6379" }',
      'cache: { store: redis }',
    ),
  );
});

test('respond.headers placeholders are checked, and Host cannot be removed', async () => {
  const { loadConfigText, formatIssue } = await import('../dist/config/index.js');
  const { issues } = loadConfigText(
    'listeners: [{ name: web, address: ":0" }]\nroutes:\n  - respond: { headers: { X-A: "{hots}" } }\n    requestHeaders: { remove: [Host] }\n',
  );
  const lines = issues.map(formatIssue);
  assert.ok(
    lines.some((l) => l.startsWith('routes[0].respond.headers.X-A: ')),
    lines.join('\n'),
  );
  assert.ok(
    lines.some((l) => l.startsWith('routes[0].requestHeaders.remove: Host cannot be removed')),
    lines.join('\n'),
  );
});
