/**
 * The built-in rule set, in the spirit of the OWASP Core Rule Set: each rule adds to a request's
 * anomaly score; a request at or over the threshold (5 by default, one "critical" rule) is
 * detected or blocked. Ids follow CRS families (913 scanners, 920 protocol, 930 traversal/LFI,
 * 932 command injection, 933 PHP, 934 Node.js/SSRF, 941 XSS, 942 SQLi, 944 Java).
 *
 * Parts: `args` is the decoded path, query and (for form, JSON and text bodies) the body;
 * `ua` the User-Agent; `headers` every header line; `cookies` the Cookie header; `method` the
 * request method. Patterns see decoded, lowercased text (see inspect.ts), so they are written
 * in lowercase.
 */

export type Part =
  'args' | 'path' | 'query' | 'uri' | 'headers' | 'cookies' | 'body' | 'ua' | 'method';

export interface RuleSpec {
  id: number;
  parts: Part[];
  pattern: RegExp;
  score: number;
  message: string;
}

const CRITICAL = 5;
const WARNING = 3;
const NOTICE = 2;

export const BUILTIN_RULES: readonly RuleSpec[] = [
  // 913: security scanners
  {
    id: 913100,
    parts: ['ua'],
    pattern:
      /\b(?:nikto|sqlmap|nmap|masscan|dirbuster|gobuster|wpscan|acunetix|nessus|openvas|w3af|havij|zgrab|nuclei|fimap|arachni|skipfish|netsparker|appscan|jaeles|ffuf|wfuzz)\b/,
    score: CRITICAL,
    message: 'security scanner user agent',
  },
  // 920: protocol anomalies
  {
    id: 920270,
    parts: ['args', 'headers'],
    // eslint-disable-next-line no-control-regex -- control characters are what this rule finds
    pattern: /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/,
    score: CRITICAL,
    message: 'NUL or control character in request',
  },
  {
    id: 920100,
    parts: ['method'],
    pattern: /^(?:trace|track|debug)$/,
    score: CRITICAL,
    message: 'method used for cross-site tracing or debugging',
  },
  {
    id: 920440,
    parts: ['path'],
    pattern:
      /\.(?:bak|backup|old|orig|swp|sql|sqlite|db|env|ini|log|config|conf|pem|key|htpasswd|htaccess|git\/|svn\/)(?:$|[?;#/])|\/\.(?:git|svn|hg|env|aws|ssh|docker)(?:\/|$)/,
    score: CRITICAL,
    message: 'request for a backup, secret or version-control file',
  },
  // 930: path traversal and local file inclusion
  {
    id: 930100,
    parts: ['args', 'headers'],
    pattern: /(?:^|[\\/=\s'"])\.\.(?:[\\/]|$)/,
    score: CRITICAL,
    message: 'path traversal',
  },
  {
    id: 930120,
    parts: ['args'],
    pattern:
      /(?:\/etc\/(?:passwd|shadow|group|hosts|issue)|\/proc\/self\/|c:\\(?:windows|boot\.ini)|win\.ini|boot\.ini|\/var\/log\/|web-inf\/web\.xml)/,
    score: CRITICAL,
    message: 'operating system file access',
  },
  {
    id: 930130,
    parts: ['args'],
    pattern: /\b(?:file|php|phar|zip|expect|gopher|dict|jar|glob):\/\//,
    score: CRITICAL,
    message: 'dangerous URL scheme (file inclusion or SSRF)',
  },
  // 932: remote command execution
  {
    id: 932100,
    parts: ['args', 'cookies'],
    pattern:
      /(?:[;|&`]|\$\(|\|\|)\s*(?:cat|ls|id|whoami|uname|wget|curl|nc|ncat|netcat|bash|sh|zsh|python[0-9.]*|perl|ruby|php|rm|chmod|chown|ping|nslookup|echo|kill|ps|env|sleep|telnet|powershell|cmd)(?:\s|$|[;|&`'")<>])/,
    score: CRITICAL,
    message: 'unix command injection',
  },
  {
    id: 932150,
    parts: ['args', 'cookies'],
    pattern:
      /(?:\/bin\/(?:ba|z|da)?sh\b|\/usr\/bin\/\w|\bcmd(?:\.exe)?\s+\/c\b|\bpowershell(?:\.exe)?\s+-)/,
    score: CRITICAL,
    message: 'direct shell invocation',
  },
  {
    id: 932170,
    parts: ['headers', 'args'],
    pattern: /\(\s*\)\s*\{[^}]*;\s*\}/,
    score: CRITICAL,
    message: 'shellshock function definition',
  },
  // 933: PHP injection
  {
    id: 933100,
    parts: ['args', 'cookies'],
    pattern: /<\?(?:php\b|=)/,
    score: CRITICAL,
    message: 'PHP open tag',
  },
  {
    id: 933150,
    parts: ['args', 'cookies'],
    pattern:
      /\b(?:eval|assert|system|passthru|shell_exec|exec|popen|proc_open|base64_decode|phpinfo|call_user_func|create_function|file_get_contents|file_put_contents|include|require)\s*\(/,
    score: CRITICAL,
    message: 'code execution function call',
  },
  // 934: Node.js injection, prototype pollution, SSRF to metadata services
  {
    id: 934100,
    parts: ['args', 'cookies'],
    pattern:
      /(?:require\s*\(\s*['"`](?:child_process|fs|net|vm)|process\.(?:mainmodule|binding|env)|child_process|__proto__|constructor\s*\[|constructor\.prototype|\.constructor\(\s*['"`]return)/,
    score: CRITICAL,
    message: 'Node.js code injection or prototype pollution',
  },
  {
    id: 934110,
    parts: ['args'],
    pattern:
      /(?:169\.254\.169\.254|metadata\.google\.internal|100\.100\.100\.200|\[?fd00:ec2::254)/,
    score: CRITICAL,
    message: 'cloud metadata address (SSRF)',
  },
  // 941: cross-site scripting
  {
    id: 941110,
    parts: ['args', 'cookies', 'headers'],
    pattern: /<script[\s>/]/,
    score: CRITICAL,
    message: 'script tag',
  },
  {
    id: 941120,
    parts: ['args', 'cookies'],
    pattern:
      /[\s"'`;/0-9=<>]on(?:error|load|click|dblclick|mouse\w+|focus\w*|blur|submit|change|input|key\w+|animation\w+|transition\w+|toggle|pointer\w+|begin|end|show|wheel|scroll|drag\w*|copy|paste|beforeunload|hashchange|message|resize|select|touch\w+)\s*=/,
    score: CRITICAL,
    message: 'event handler attribute',
  },
  {
    id: 941130,
    parts: ['args', 'cookies'],
    pattern:
      /(?:javascript|vbscript|livescript)\s*:|data\s*:\s*(?:text\/html|image\/svg\+xml|application\/x-javascript)/,
    score: CRITICAL,
    message: 'script URL scheme',
  },
  {
    id: 941160,
    parts: ['args', 'cookies'],
    pattern:
      /<(?:iframe|object|embed|svg|img|image|body|math|video|audio|base|link|meta|form|input|details|marquee|isindex|frameset|style|xss)\b[^>]*(?:>|\/|\s(?:src|href|on\w+|action|formaction|style|background)\s*=)/,
    score: CRITICAL,
    message: 'HTML injection',
  },
  {
    id: 941180,
    parts: ['args'],
    pattern:
      /(?:document\s*\.\s*(?:cookie|write|domain|location)|window\s*\.\s*location|\b(?:alert|prompt|confirm)\s*[(`]|string\s*\.\s*fromcharcode|\beval\s*\(|settimeout\s*\(\s*['"`])/,
    score: CRITICAL,
    message: 'JavaScript injection',
  },
  // 942: SQL injection
  {
    id: 942100,
    parts: ['args', 'cookies'],
    pattern:
      /(?:['"`)]|\b\d+)\s*(?:\bor\b|\band\b|\bxor\b|\|\||&&)\s*(?:['"`(]\s*)?[\w'"`]*\s*['"`]?\s*(?:=|<|>|!=|<>|\blike\b|\bis\b)/,
    score: CRITICAL,
    message: 'SQL tautology',
  },
  {
    id: 942190,
    parts: ['args', 'cookies'],
    pattern: /\bunion\b[\s\S]{0,40}?\bselect\b/,
    score: CRITICAL,
    message: 'SQL UNION SELECT',
  },
  {
    id: 942140,
    parts: ['args', 'cookies'],
    pattern:
      /\b(?:information_schema|sysobjects|syscolumns|sys\.tables|pg_catalog|pg_shadow|sqlite_master|mysql\.user|msysaccessobjects|all_tables|user_tables)\b/,
    score: CRITICAL,
    message: 'SQL database catalog access',
  },
  {
    id: 942160,
    parts: ['args', 'cookies'],
    pattern:
      /\b(?:sleep|benchmark|pg_sleep|dbms_pipe\.receive_message)\s*\(|\bwaitfor\s+(?:delay|time)\s+['"]/,
    score: CRITICAL,
    message: 'time-based blind SQL injection',
  },
  {
    id: 942210,
    parts: ['args', 'cookies'],
    pattern:
      /(?:;|['"`])\s*(?:drop|delete|insert|update|shutdown|truncate|alter|create|exec|execute|declare|grant|revoke|rename)\s+(?:\w+\s+)?(?:table|database|from|into|set|user|\w+\s*\(|@|'|\w+\s+(?:set|from|where))/,
    score: CRITICAL,
    message: 'stacked SQL query',
  },
  {
    id: 942330,
    parts: ['args', 'cookies'],
    pattern:
      /\b(?:extractvalue|updatexml|load_file|utl_http\.request|xp_cmdshell|sp_executesql|group_concat)\s*\(|\binto\s+(?:out|dump)file\b/,
    score: CRITICAL,
    message: 'SQL function used for data exfiltration',
  },
  {
    id: 942440,
    parts: ['args', 'cookies'],
    pattern: /['"`]\s*\)?\s*(?:;\s*)?(?:--(?:\s|$|-)|#\s*$)/,
    score: CRITICAL,
    message: 'SQL comment ending a quoted value',
  },
  {
    id: 942200,
    parts: ['args', 'cookies'],
    pattern: /['"`]\s*(?:--|#|\/\*)|\/\*![0-9]*|\*\/\s*(?:or|and|union|select)\b/,
    score: WARNING,
    message: 'SQL comment after a quote',
  },
  {
    id: 942230,
    parts: ['args'],
    pattern:
      /\bselect\b[\s\S]{1,100}?\bfrom\b[\s\S]{1,100}?\b(?:where|limit|order\s+by|group\s+by)\b|\bselect\s+(?:\*|@@|null|count\s*\(|version\s*\()/,
    score: CRITICAL,
    message: 'SQL SELECT statement',
  },
  {
    id: 942350,
    parts: ['args'],
    pattern: /\b(?:concat|char|chr|cast|convert|ascii|substring|hex|unhex)\s*\(/,
    score: NOTICE,
    message: 'SQL function',
  },
  // 944: Java (log4shell, expression language)
  {
    id: 944150,
    parts: ['args', 'headers', 'cookies'],
    pattern:
      /\$\{\s*(?:jndi|env|sys|lower|upper|java|date|ctx|main|base64|::-)[:\s}]|java\.lang\.(?:runtime|processbuilder)|#\{\s*['"]?\s*t\s*\(/,
    score: CRITICAL,
    message: 'Java injection (JNDI lookup, expression language)',
  },
];
