/**
 * The schema of the config file as written: the single source of the JSON Schema served by
 * `switchyard schema` and of the raw TypeScript types. Every object rejects unknown keys so a typo
 * is reported instead of silently ignored. Cross-field rules (exactly one route target, names that
 * refer to each other, placeholders) are checked in validate.ts, where messages can be precise.
 */
import {
  Type,
  type Static,
  type TLiteral,
  type TObject,
  type TOptional,
  type TProperties,
  type TSchema,
  type TUnion,
} from '@sinclair/typebox';

/** `250ms`, `5s`, `1.5s`, `2m`, `1h`, and combinations such as `1m30s`. */
export const DURATION_PATTERN =
  '^(?=[0-9])([0-9]+(\\.[0-9]+)?h)?([0-9]+(\\.[0-9]+)?m)?([0-9]+(\\.[0-9]+)?s)?([0-9]+(\\.[0-9]+)?ms)?$';
/** A byte count with a unit: `100B`, `16KiB`, `10MiB`, `1GiB`, `512KB` (1000-based). */
export const SIZE_PATTERN = '^[0-9]+(\\.[0-9]+)?\\s*([KMGT]i?B|kB|B)$';
/** `100/s`, `6000/m`, `10000/h`. */
export const RATE_PATTERN = '^[1-9][0-9]*/(s|m|h)$';

const DURATION_MESSAGE = 'expected a duration like "5s", "250ms", "2m" or "1h"';
const SIZE_MESSAGE = 'expected a size like "16KiB", "10MiB" or a number of bytes';
const RATE_MESSAGE = 'expected a rate like "100/s", "600/m" or "1000/h"';

const HEADER_NAME_PATTERN = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";
const HEADER_NAME_MESSAGE = 'not a valid header name';
const NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_.-]*$';
const NAME_MESSAGE = 'names use letters, digits, "_", "." and "-", starting with a letter or digit';

/**
 * `patternErrorMessage` is understood by VS Code's JSON/YAML language services and by the
 * loader, so both show the same sentence for a malformed value.
 */
function duration(description: string, def?: string) {
  return Type.String({
    pattern: DURATION_PATTERN,
    patternErrorMessage: DURATION_MESSAGE,
    description,
    examples: ['250ms', '5s', '2m', '1h'],
    ...(def === undefined ? {} : { default: def }),
  });
}

function size(description: string, def?: string) {
  return Type.Union(
    [
      Type.Integer({ minimum: 0, description: 'A number of bytes.' }),
      Type.String({
        pattern: SIZE_PATTERN,
        patternErrorMessage: SIZE_MESSAGE,
        description: 'A size with a unit: B, KiB, MiB, GiB, TiB (1024-based) or kB, MB, GB, TB.',
      }),
    ],
    {
      description,
      errorMessage: SIZE_MESSAGE,
      examples: ['16KiB', '10MiB', '1GiB'],
      ...(def === undefined ? {} : { default: def }),
    },
  );
}

function rate(description: string) {
  return Type.String({
    pattern: RATE_PATTERN,
    patternErrorMessage: RATE_MESSAGE,
    description,
    examples: ['100/s', '600/m'],
  });
}

/** A string that may contain placeholders such as `{host}`; checked by validate.ts. */
function template(description: string, def?: string) {
  return Type.String({ description, ...(def === undefined ? {} : { default: def }) });
}

function headerMap(description: string) {
  return Type.Record(Type.String({ pattern: HEADER_NAME_PATTERN }), Type.String(), {
    additionalProperties: false,
    keyErrorMessage: HEADER_NAME_MESSAGE,
    description,
  });
}

/**
 * An object that rejects unknown keys. Properties are optional unless listed in `required`,
 * which is the common case in a config file full of defaults.
 */
function obj<T extends TProperties, const R extends keyof T & string = never>(
  properties: T,
  description: string,
  required: R[] = [],
): TObject<{ [K in keyof T]: K extends R ? T[K] : TOptional<T[K]> }> {
  const props = Object.fromEntries(
    Object.entries(properties).map(([k, v]) => [
      k,
      (required as string[]).includes(k) ? v : Type.Optional(v),
    ]),
  );
  return Type.Object(props, { additionalProperties: false, description }) as unknown as TObject<{
    [K in keyof T]: K extends R ? T[K] : TOptional<T[K]>;
  }>;
}

function stringEnum<const T extends string[]>(
  values: [...T],
  description: string,
  def?: T[number],
): TUnion<{ [K in keyof T]: TLiteral<T[K]> }> {
  return Type.Union(
    values.map((v) => Type.Literal(v)),
    {
      description,
      errorMessage: `must be one of ${values.join(', ')}`,
      ...(def === undefined ? {} : { default: def }),
    },
  ) as unknown as TUnion<{ [K in keyof T]: TLiteral<T[K]> }>;
}

/** Both `true`/`false` and an object with settings; reported as one message when neither fits. */
function toggleOr<T extends TSchema>(object: T, description: string, what: string) {
  return Type.Union([Type.Boolean(), object], {
    description,
    errorMessage: `expected true, false or an object with ${what}`,
  });
}

// ---------------------------------------------------------------------------------------------
// Listeners

const ListenerTls = obj(
  {
    certificates: Type.Array(
      obj(
        {
          cert: Type.String({ description: 'Path to the PEM certificate chain.' }),
          key: Type.String({ description: 'Path to the PEM private key.' }),
        },
        'A certificate and its key.',
      ),
      {
        description:
          "Certificates; SNI picks one by the certificate's names (wildcards too). The first is the default.",
      },
    ),
    minVersion: stringEnum(['TLSv1.2', 'TLSv1.3'], 'Oldest TLS version accepted.', 'TLSv1.2'),
    clientAuth: obj(
      {
        ca: Type.String({
          description: 'Path to the PEM CA bundle that signs client certificates.',
        }),
        required: Type.Boolean({
          description: 'Reject clients without a valid certificate.',
          default: true,
        }),
      },
      'Mutual TLS: ask clients for a certificate.',
    ),
  },
  'Serve HTTPS on this listener.',
);

const ListenerLimits = obj(
  {
    maxConnections: Type.Integer({
      minimum: 1,
      description: 'Open connections accepted at once on this listener.',
      default: 10000,
    }),
    maxConnectionsPerIp: Type.Integer({
      minimum: 1,
      description: 'Open connections accepted at once from one client address.',
      default: 256,
    }),
    headersTimeout: duration(
      'Time allowed to receive the request headers (slowloris defence).',
      '10s',
    ),
    requestTimeout: duration('Time allowed to receive the whole request.', '60s'),
    idleTimeout: duration('How long an idle keep-alive connection stays open.', '5s'),
    maxHeaderSize: size('Largest request head accepted.', '16KiB'),
    maxBodySize: size('Largest request body accepted; past it the answer is 413.', '10MiB'),
    minBodyRate: size(
      'Slowest request body accepted, in bytes per second, once the body has taken longer than headersTimeout (slow POST defence; then 408).',
      '1KiB',
    ),
  },
  'Connection and request limits.',
);

const Listener = obj(
  {
    name: Type.String({
      pattern: NAME_PATTERN,
      patternErrorMessage: NAME_MESSAGE,
      description: 'Name used by route matches, metrics and logs. Default: `listeners[i]`.',
    }),
    address: Type.String({
      description: 'Where to listen: `host:port`, `:port` (all interfaces) or `[::1]:port`.',
      examples: ['127.0.0.1:8080', ':8443', '[::1]:8080'],
    }),
    tls: ListenerTls,
    http2: Type.Boolean({
      description: 'Offer HTTP/2 through ALPN next to HTTP/1.1. Default: true with tls.',
    }),
    proxyProtocol: Type.Boolean({
      description: 'Accept the PROXY protocol (v1/v2) from a TCP load balancer.',
      default: false,
    }),
    limits: ListenerLimits,
  },
  'A socket that accepts client connections.',
  ['address'],
);

// ---------------------------------------------------------------------------------------------
// Upstreams

const Server = obj(
  {
    url: Type.String({
      description: 'The server origin, `http://host:port` or `https://host:port`, with no path.',
      examples: ['http://127.0.0.1:3001'],
    }),
    weight: Type.Integer({ minimum: 1, description: 'Relative share of requests.', default: 1 }),
    backup: Type.Boolean({
      description: 'Used only when no primary server is healthy.',
      default: false,
    }),
  },
  'One server of the upstream.',
  ['url'],
);

const HealthCheck = obj(
  {
    path: Type.String({
      pattern: '^/',
      patternErrorMessage: 'must start with "/", like /healthz',
      description: 'Path requested on each server.',
      default: '/',
    }),
    method: stringEnum(['GET', 'HEAD', 'OPTIONS'], 'Method of the check request.', 'GET'),
    host: Type.String({
      description: "Host header of the check request. Default: the server's host:port.",
    }),
    interval: duration('Time between checks.', '5s'),
    timeout: duration('Time allowed for one check.', '2s'),
    jitter: duration(
      'Random spread added to each interval (plus or minus) so checks do not line up. Default: a tenth of interval.',
    ),
    body: Type.String({
      description: 'Regular expression the first 64 KiB of the response body must match.',
    }),
    healthyThreshold: Type.Integer({
      minimum: 1,
      description: 'Consecutive passes that mark a server healthy.',
      default: 2,
    }),
    unhealthyThreshold: Type.Integer({
      minimum: 1,
      description: 'Consecutive failures that mark a server unhealthy.',
      default: 3,
    }),
    expectStatus: Type.String({
      pattern: '^[1-5][0-9][0-9](-[1-5][0-9][0-9])?$',
      patternErrorMessage: 'expected a status or a range like "200-399"',
      description: 'Status (or range) that counts as healthy.',
      default: '200-399',
    }),
  },
  'Active health checks.',
);

const PassiveHealth = obj(
  {
    maxFails: Type.Integer({
      minimum: 1,
      description: 'Failures within the window that eject a server.',
      default: 3,
    }),
    window: duration('Window in which failures are counted.', '10s'),
    ejectFor: duration(
      'How long an ejected server is left out; multiplied by the number of recent ejections.',
      '30s',
    ),
    maxEjectFor: duration('Longest ejection, however often a server is ejected.', '5m'),
    maxEjectionPercent: Type.Integer({
      minimum: 0,
      maximum: 100,
      description:
        'Most servers (in percent, but always at least one) ejected at once; the last serving one never is.',
      default: 50,
    }),
    failOn5xx: Type.Boolean({
      description:
        'Count 5xx responses as failures too (connect errors, resets and timeouts always are).',
      default: false,
    }),
  },
  'Passive health: eject servers that fail real requests.',
);

const UpstreamTls = obj(
  {
    ca: Type.String({ description: 'Path to a PEM CA bundle trusted for the servers.' }),
    serverName: Type.String({ description: 'SNI name and name to verify.' }),
    cert: Type.String({ description: 'Path to a PEM client certificate (with key).' }),
    key: Type.String({ description: 'Path to the PEM key of the client certificate.' }),
    insecureSkipVerify: Type.Boolean({
      description: 'Do not verify the server certificate (testing only).',
      default: false,
    }),
  },
  'TLS settings for https:// servers.',
);

const Upstream = obj(
  {
    balancer: stringEnum(
      [
        'round-robin',
        'least-connections',
        'least-request',
        'random',
        'ip-hash',
        'consistent-hash',
        'ewma',
      ],
      'How a server is chosen for each request.',
      'round-robin',
    ),
    hashKey: template('Key hashed by consistent-hash.', '{client_ip}'),
    servers: Type.Array(Server, { description: 'The servers requests are spread across.' }),
    hostHeader: template(
      'Host header sent to the servers. Default: the client Host is passed through.',
    ),
    connectTimeout: duration('Time allowed to connect to a server.', '5s'),
    readTimeout: duration(
      'Time allowed waiting for response headers and between body chunks (then 504).',
      '60s',
    ),
    sendTimeout: duration('Time allowed to send the request to a server.', '60s'),
    keepAlive: obj(
      {
        maxIdle: Type.Integer({
          minimum: 0,
          description: 'Idle connections kept per server.',
          default: 64,
        }),
        idleTimeout: duration('How long an idle connection is kept.', '30s'),
      },
      'Connection reuse towards the servers.',
    ),
    healthCheck: HealthCheck,
    passiveHealth: PassiveHealth,
    retries: obj(
      {
        attempts: Type.Integer({
          minimum: 0,
          description: 'Extra attempts on another server, only when safe.',
          default: 2,
        }),
        budget: Type.Number({
          minimum: 0,
          maximum: 1,
          description:
            'Share of requests that may be retried (0.2: one retry per five requests), plus a reserve of 10.',
          default: 0.2,
        }),
        retryOn: Type.Array(
          Type.Union(
            [
              Type.Literal('connect-failure'),
              Type.Literal('reset'),
              Type.Literal('timeout'),
              Type.Integer({ minimum: 500, maximum: 599 }),
            ],
            { errorMessage: 'expected connect-failure, reset, timeout or a 5xx status' },
          ),
          {
            description:
              'Failures that are retried. Only connect-failure is retried for non-idempotent methods.',
            default: ['connect-failure', 'reset', 'timeout', 502, 503, 504],
          },
        ),
        maxBodySize: size(
          'Request bodies up to this size (with Content-Length) are buffered so they can be retried; larger ones are streamed and never retried.',
          '64KiB',
        ),
      },
      'Retry failed requests on another server.',
    ),
    circuitBreaker: obj(
      {
        maxRequests: Type.Integer({
          minimum: 1,
          description: 'Requests in flight to the upstream at once.',
          default: 1000,
        }),
        maxPending: Type.Integer({
          // Every request waits for a connection a moment (until undici assigns it one), so 0
          // would shed all of them.
          minimum: 1,
          description: 'Requests waiting for a connection at once.',
          default: 100,
        }),
        maxConnections: Type.Integer({
          minimum: 1,
          description: 'Connections to each server at once; more requests wait (see maxPending).',
        }),
      },
      'Shed load when the upstream is saturated.',
    ),
    sticky: obj(
      {
        cookie: Type.String({
          pattern: HEADER_NAME_PATTERN,
          description: 'Cookie that remembers the chosen server.',
          default: 'sy_srv',
        }),
        secret: Type.String({
          description:
            'Key for the opaque server ids in the cookie; set one (e.g. from ${ENV}) so ids cannot be guessed from candidate addresses.',
        }),
        maxAge: duration('Cookie lifetime. Default: a session cookie.'),
      },
      'Session affinity.',
    ),
    slowStart: duration("Ramp a returning server's share up over this window."),
    protocol: stringEnum(
      ['http1', 'h2', 'h2c'],
      'Protocol to the servers: http1, h2 (over TLS) or h2c (cleartext HTTP/2, e.g. gRPC).',
      'http1',
    ),
    tls: UpstreamTls,
  },
  'A named group of servers.',
  ['servers'],
);

// ---------------------------------------------------------------------------------------------
// Routes

const RouteMatch = obj(
  {
    host: Type.Union([Type.String(), Type.Array(Type.String(), { minItems: 1 })], {
      description: 'Host name(s); `*.example.org` matches subdomains.',
      errorMessage: 'expected a host name or a list of host names',
    }),
    path: Type.String({ pattern: '^/', description: 'Exact path.' }),
    pathPrefix: Type.String({ pattern: '^/', description: 'Path prefix.' }),
    pathRegex: Type.String({ description: 'JavaScript regular expression tested on the path.' }),
    methods: Type.Array(Type.String({ pattern: '^[A-Za-z]+$' }), {
      minItems: 1,
      description: 'HTTP methods.',
    }),
    headers: headerMap('Request headers that must have these exact values.'),
    query: Type.Record(Type.String(), Type.String(), {
      additionalProperties: false,
      description: 'Query parameters that must have these exact values.',
    }),
    listener: Type.String({ description: 'Name of the listener the request arrived on.' }),
  },
  'Conditions that must all hold; none given matches every request.',
);

const HeaderOps = obj(
  {
    set: headerMap('Headers to set, replacing existing values. Values may use placeholders.'),
    add: headerMap('Headers to append. Values may use placeholders.'),
    remove: Type.Array(
      Type.String({ pattern: HEADER_NAME_PATTERN, patternErrorMessage: HEADER_NAME_MESSAGE }),
      {
        description: 'Headers to remove.',
      },
    ),
  },
  'Header changes.',
);

const RouteCache = obj(
  {
    ttl: duration(
      'Freshness when the response does not say (default: none, as RFC 9111; also caps the Last-Modified heuristic).',
    ),
    staleWhileRevalidate: duration('Serve stale while revalidating for this long.'),
    staleIfError: duration('Serve stale when the upstream fails for this long.'),
    key: template('Cache key. Default: method, scheme, host, path and query.'),
    query: obj(
      {
        sort: Type.Boolean({
          description: 'Sort query parameters by name in the key.',
          default: false,
        }),
        drop: Type.Array(Type.String(), {
          description: 'Query parameters left out of the key; `utm_*` matches a prefix.',
        }),
      },
      'How the query string enters the cache key.',
    ),
    collapseTimeout: duration(
      'How long concurrent misses wait for the first one; 0s turns collapsing off.',
      '5s',
    ),
  },
  'Cache settings.',
);

function compressionLevels(description: string) {
  const level = (min: number, max: number, what: string) =>
    Type.Integer({ minimum: min, maximum: max, description: `${what} (${min}-${max}).` });
  return obj(
    {
      br: level(0, 11, 'Brotli quality'),
      gzip: level(1, 9, 'gzip level'),
      zstd: level(1, 22, 'zstd level'),
      deflate: level(1, 9, 'deflate level'),
    },
    description,
  );
}

const RouteCompression = obj(
  {
    algorithms: Type.Array(stringEnum(['br', 'zstd', 'gzip', 'deflate'], 'Encoding.'), {
      description:
        'Encodings offered, in order of preference (zstd only where the Node.js runtime has it).',
      default: ['br', 'zstd', 'gzip'],
    }),
    minLength: size('Smallest body compressed.', '1KiB'),
    types: Type.Array(Type.String(), {
      description: 'Media types compressed; `text/*` wildcards allowed.',
    }),
    level: compressionLevels('Levels for dynamic responses.'),
    cachedLevel: compressionLevels('Levels for responses a shared cache may store.'),
    decompress: Type.Boolean({
      description: "Decode upstream bodies for clients that do not accept the upstream's coding.",
      default: false,
    }),
  },
  'Compression settings.',
);

const WafMode = stringEnum(['off', 'detect', 'block'], 'off, detect (log only) or block.');

const Route = obj(
  {
    name: Type.String({
      pattern: NAME_PATTERN,
      patternErrorMessage: NAME_MESSAGE,
      description: 'Name used in metrics and logs. Default: `routes[i]`.',
    }),
    match: RouteMatch,
    upstream: Type.String({ description: 'Send matching requests to this upstream.' }),
    redirect: obj(
      {
        location: template('Target URL; placeholders allowed, e.g. `https://{host}{uri}`.'),
        status: Type.Union(
          [301, 302, 303, 307, 308].map((s) => Type.Literal(s)),
          {
            description: 'Redirect status.',
            default: 302,
            errorMessage: 'must be one of 301, 302, 303, 307, 308',
          },
        ),
      },
      'Answer with a redirect.',
      ['location'],
    ),
    respond: obj(
      {
        status: Type.Integer({
          minimum: 100,
          maximum: 599,
          description: 'Status code.',
          default: 200,
        }),
        body: Type.String({ description: 'Response body.', default: '' }),
        headers: Type.Record(Type.String({ pattern: HEADER_NAME_PATTERN }), Type.String(), {
          additionalProperties: false,
          keyErrorMessage: HEADER_NAME_MESSAGE,
          description: 'Response headers.',
        }),
      },
      'Answer directly.',
    ),
    rewrite: obj(
      {
        stripPrefix: Type.String({ pattern: '^/', description: 'Remove this path prefix.' }),
        addPrefix: Type.String({ pattern: '^/', description: 'Prepend this path prefix.' }),
      },
      'Change the path sent upstream.',
    ),
    requestHeaders: HeaderOps,
    responseHeaders: HeaderOps,
    cache: toggleOr(
      RouteCache,
      'Cache responses (RFC 9111).',
      'ttl, staleWhileRevalidate, staleIfError or key',
    ),
    compression: toggleOr(
      RouteCompression,
      'Compress responses.',
      'algorithms, minLength or types',
    ),
    rateLimit: obj(
      {
        rate: rate('Sustained rate allowed per key.'),
        burst: Type.Integer({
          minimum: 0,
          description: 'Extra requests allowed at once.',
          default: 0,
        }),
        key: template('What is limited.', '{client_ip}'),
        delay: duration(
          'Queue a request over the limit for up to this long (like nginx without nodelay) instead of answering 429 at once.',
        ),
        failOpen: Type.Boolean({
          description:
            'Alias of onStoreError: true = open, false = closed; when given it wins over onStoreError.',
        }),
        onStoreError: stringEnum(
          ['local', 'open', 'closed'],
          'When the shared store (Redis) cannot answer: local (default with Redis) decides with the per-instance memory store and the same limit, open lets requests through, closed answers 429.',
        ),
      },
      'Limit the request rate (429 past it).',
      ['rate'],
    ),
    ipFilter: obj(
      {
        allow: Type.Array(Type.String(), { description: 'Addresses or CIDRs allowed.' }),
        deny: Type.Array(Type.String(), { description: 'Addresses or CIDRs denied.' }),
      },
      'Allow or deny by client address (403).',
    ),
    forwardAuth: obj(
      {
        url: Type.String({ description: 'Auth service asked before each request.' }),
        copyHeaders: Type.Array(Type.String({ pattern: HEADER_NAME_PATTERN }), {
          description: "Headers copied from the auth service's answer to the request.",
        }),
        timeout: duration('Time allowed for the auth service to answer (then 504).', '5s'),
      },
      'Delegate authentication to a service.',
      ['url'],
    ),
    basicAuth: obj(
      {
        realm: Type.String({ description: 'Realm shown by browsers.', default: 'restricted' }),
        users: Type.Record(Type.String(), Type.String(), {
          additionalProperties: false,
          description: 'User names to bcrypt or scrypt hashes.',
        }),
      },
      'HTTP basic authentication.',
      ['users'],
    ),
    waf: obj(
      {
        mode: WafMode,
        exclude: Type.Array(Type.Integer(), {
          description: 'Rule ids (built-in or custom) not evaluated on this route.',
        }),
      },
      'Per-route override of the global waf.',
      ['mode'],
    ),
    accessLog: toggleOr(
      obj(
        {
          sampleRatio: Type.Number({
            minimum: 0,
            maximum: 1,
            description: "Share of this route's requests logged (5xx always are).",
          }),
        },
        'Access log settings for this route.',
      ),
      'Whether (and how much of) this route is written to the access log. Default true.',
      'sampleRatio',
    ),
    timeouts: obj(
      {
        read: duration("Overrides the upstream's readTimeout."),
        connect: duration("Overrides the upstream's connectTimeout."),
        send: duration("Overrides the upstream's sendTimeout."),
      },
      'Per-route timeouts.',
    ),
  },
  'A route: conditions and what to do. Routes are tried in order; the first match wins.',
);

// ---------------------------------------------------------------------------------------------
// Global

const ConfigObject = obj(
  {
    listeners: Type.Array(Listener, {
      minItems: 1,
      description: 'Sockets to listen on; at least one.',
    }),
    upstreams: Type.Record(Type.String({ pattern: NAME_PATTERN }), Upstream, {
      additionalProperties: false,
      keyErrorMessage: NAME_MESSAGE,
      description: 'Named groups of servers.',
      default: {},
    }),
    routes: Type.Array(Route, {
      description: 'Ordered routes; the first match wins. No match answers 404.',
      default: [],
    }),
    cache: obj(
      {
        store: stringEnum(['memory', 'disk', 'redis'], 'Where responses are stored.', 'memory'),
        maxSize: size('Largest total size of the store.', '256MiB'),
        path: Type.String({ description: 'Directory for the disk store.' }),
        maxObjectSize: size('Larger responses stream through uncached.', '8MiB'),
        redisMaxBodySize: size(
          'Bodies larger than this stay in local memory (redis store).',
          '1MiB',
        ),
      },
      'The cache shared by every route with cache on.',
    ),
    rateLimitStore: stringEnum(
      ['memory', 'redis'],
      'Where rate limit counters live; redis shares them between instances.',
      'memory',
    ),
    redis: obj(
      {
        url: Type.String({
          pattern: '^rediss?://',
          patternErrorMessage: 'expected a redis:// or rediss:// URL',
          description: 'Redis URL.',
        }),
      },
      'Redis connection shared by the cache, rate limits and acme.',
      ['url'],
    ),
    trustedProxies: Type.Array(Type.String(), {
      description: 'Addresses or CIDRs whose X-Forwarded-* and Forwarded headers are believed.',
      default: [],
    }),
    waf: obj(
      {
        mode: WafMode,
        threshold: Type.Integer({
          minimum: 1,
          description: 'Anomaly score at which a request is detected or blocked.',
          default: 5,
        }),
        exclude: Type.Array(Type.Integer(), {
          description: 'Rule ids (built-in or custom) not evaluated on any route.',
        }),
        rules: Type.Array(
          obj(
            {
              id: Type.Integer({ description: 'Rule id, reported in logs.' }),
              part: stringEnum(
                ['uri', 'path', 'query', 'headers', 'cookies', 'body'],
                'Part of the request inspected.',
              ),
              pattern: Type.String({ description: 'Regular expression; `(?i)` for no case.' }),
              score: Type.Integer({
                minimum: 0,
                description: 'Anomaly score added on match.',
                default: 5,
              }),
              operator: stringEnum(
                ['regex', 'contains', 'equals', 'startsWith'],
                'How pattern is compared with the part.',
                'regex',
              ),
              action: stringEnum(
                ['score', 'block', 'allow'],
                'score adds to the anomaly score; block blocks at once; allow skips the WAF.',
                'score',
              ),
            },
            'A custom rule.',
            ['id', 'part', 'pattern'],
          ),
          { description: 'Custom rules, next to the built-in ones.' },
        ),
      },
      'Web application firewall.',
    ),
    acme: obj(
      {
        email: Type.String({ description: 'Account contact address.' }),
        directory: Type.String({
          description: 'ACME directory URL.',
          default: 'https://acme-v02.api.letsencrypt.org/directory',
        }),
        caRoot: Type.String({ description: 'PEM CA that signs a private ACME server.' }),
        storage: Type.String({ description: 'Directory for certificates and the account.' }),
      },
      'Automatic HTTPS for route hosts without a configured certificate.',
    ),
    tracing: obj(
      {
        enabled: Type.Boolean({
          description: 'Propagate W3C traceparent (starting a trace when absent).',
          default: true,
        }),
        serviceName: Type.String({
          description: 'service.name of exported spans.',
          default: 'switchyard',
        }),
        otlp: obj(
          {
            endpoint: Type.String({ description: 'OTLP/HTTP endpoint.' }),
            headers: Type.Record(Type.String(), Type.String(), {
              additionalProperties: false,
              description: 'Extra headers sent with each export (e.g. an API key).',
            }),
          },
          'OpenTelemetry export.',
          ['endpoint'],
        ),
        sampleRatio: Type.Number({
          minimum: 0,
          maximum: 1,
          description: 'Share of requests traced.',
          default: 1,
        }),
      },
      'Distributed tracing.',
    ),
    accessLog: obj(
      {
        format: stringEnum(['json', 'combined'], 'Line format.', 'json'),
        output: Type.String({ description: '`stdout` or a file path.', default: 'stdout' }),
        sampleRatio: Type.Number({
          minimum: 0,
          maximum: 1,
          description: 'Share of requests logged; responses with status 500 or more always are.',
          default: 1,
        }),
      },
      'Access log.',
    ),
    admin: obj(
      {
        address: Type.String({
          description: 'Admin listener address; loopback only unless a token is set.',
          examples: ['127.0.0.1:9901'],
        }),
        token: Type.String({ description: 'Bearer token every admin request must carry.' }),
      },
      'Admin API, metrics and dashboard.',
      ['address'],
    ),
    workers: Type.Union([Type.Integer({ minimum: 1 }), Type.Literal('auto')], {
      description: 'Worker processes: a number, or auto for one per core.',
      default: 1,
      errorMessage: 'expected a whole number of at least 1 or "auto"',
    }),
    shutdownTimeout: duration('Time in-flight requests get to finish on stop.', '30s'),
    watch: Type.Boolean({
      description:
        'Reload when the config file changes on disk (validated first, exactly like SIGHUP).',
      default: false,
    }),
    errorPages: Type.Record(Type.String({ pattern: '^[45][0-9][0-9]$' }), Type.String(), {
      additionalProperties: false,
      keyErrorMessage: 'expected a status code from 400 to 599',
      description: 'Status code to the path of an HTML page served for it.',
    }),
  },
  'Configuration of the Switchyard reverse proxy.',
  ['listeners'],
);

export const ConfigSchema = Type.Object(ConfigObject.properties, {
  additionalProperties: false,
  title: 'Switchyard configuration',
  description: 'Configuration of the Switchyard reverse proxy.',
});

export type RawConfig = Static<typeof ConfigSchema>;
export type RawListener = Static<typeof Listener>;
export type RawUpstream = Static<typeof Upstream>;
export type RawRoute = Static<typeof Route>;

export const SCHEMA_ID = 'https://switchyard.dev/schema/config.json';

/** The JSON Schema (draft-07) of the config file, for editors and `switchyard schema`. */
export function jsonSchema(): Record<string, unknown> {
  const plain = JSON.parse(JSON.stringify(ConfigSchema)) as Record<string, unknown>;
  return { $schema: 'http://json-schema.org/draft-07/schema#', $id: SCHEMA_ID, ...plain };
}
