import compressible from 'compressible';

/** Decides from a Content-Type header value whether a body is worth compressing. */
export type TypeMatcher = (contentType: string) => boolean;

/**
 * mime-db marks application/octet-stream compressible, but it is the label of unknown binary
 * data (downloads, archives, media) that is usually compressed already.
 */
const DEFAULT_EXCLUDED = new Set(['application/octet-stream']);
/** Streaming JSON flavours that mime-db does not list. */
const DEFAULT_EXTRA = new Set([
  'application/x-ndjson',
  'application/jsonl',
  'application/jsonlines',
]);

const MAX_CACHE_ENTRIES = 256;

/** The media type of a Content-Type value: lowercased, without parameters or spaces. */
export function mediaType(contentType: string): string {
  const semi = contentType.indexOf(';');
  return (semi === -1 ? contentType : contentType.slice(0, semi)).trim().toLowerCase();
}

/**
 * Builds the matcher once per route. Without a list, mime-db's `compressible` flag decides
 * (text/*, JSON, JavaScript, XML, SVG, wasm, ... and any `+json`/`+xml`/`+text` type). A list holds
 * exact types, `type/*` wildcards or `*` (everything). Answers are remembered per header value.
 */
export function createTypeMatcher(types: readonly string[] | undefined): TypeMatcher {
  let test: (type: string) => boolean;
  if (types === undefined) {
    test = (type) =>
      DEFAULT_EXTRA.has(type) || (!DEFAULT_EXCLUDED.has(type) && compressible(type) === true);
  } else {
    const exact = new Set<string>();
    const prefixes: string[] = [];
    let all = false;
    for (const entry of types) {
      const type = mediaType(entry);
      if (type === '*' || type === '*/*') all = true;
      else if (type.endsWith('/*')) prefixes.push(type.slice(0, -1));
      else exact.add(type);
    }
    test = (type) => all || exact.has(type) || prefixes.some((p) => type.startsWith(p));
  }
  const cache = new Map<string, boolean>();
  return (contentType) => {
    let answer = cache.get(contentType);
    if (answer === undefined) {
      const type = mediaType(contentType);
      answer = type !== '' && test(type);
      if (cache.size >= MAX_CACHE_ENTRIES) cache.clear();
      cache.set(contentType, answer);
    }
    return answer;
  };
}
