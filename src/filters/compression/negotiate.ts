import Negotiator from 'negotiator';
import type { Encoding } from './codecs.js';

/** What a client's Accept-Encoding allows, against what a route offers. */
export interface Negotiated {
  /** The coding to compress with, or null to send the body as it is. */
  readonly encoding: Encoding | null;
  /** Whether an uncoded response is acceptable (RFC 9110 §12.5.3). */
  readonly identity: boolean;
  /** Every known coding the client accepts with q > 0, lowercased (for passing upstream codings). */
  readonly accepted: ReadonlySet<string>;
}

/** Codings a client may accept whose upstream use we can recognise. */
const KNOWN_CODINGS = ['br', 'zstd', 'gzip', 'deflate', 'x-gzip'];

type RankEncodings = (available: string[], options: { preferred: string[] }) => string[];

const NO_HEADER: Negotiated = { encoding: null, identity: true, accepted: new Set() };

/** Headers longer than this are negotiated but not remembered (they are not worth a slot). */
const MAX_CACHED_HEADER = 256;
const MAX_CACHE_ENTRIES = 512;

/**
 * Picks a content coding with `negotiator`: the client's q-values decide; among equal q-values
 * the route's order of preference wins, and identity counts as the least preferred. Browsers send
 * a handful of distinct Accept-Encoding values, so results are remembered per header value.
 */
export class EncodingNegotiator {
  private readonly candidates: string[];
  private readonly cache = new Map<string, Negotiated>();

  /** `offered`: the codings this route may produce, most preferred first. */
  constructor(offered: readonly Encoding[]) {
    this.candidates = [...offered, 'identity'];
  }

  negotiate(header: string | undefined): Negotiated {
    // No Accept-Encoding: RFC 9110 allows any coding, but clients that send none (curl, probes,
    // old tools) generally cannot decode one, so like nginx we send the body as it is.
    if (header === undefined) return NO_HEADER;
    const cached = this.cache.get(header);
    if (cached !== undefined) return cached;
    const result = this.compute(header);
    if (header.length <= MAX_CACHED_HEADER) {
      if (this.cache.size >= MAX_CACHE_ENTRIES) this.cache.clear();
      this.cache.set(header, result);
    }
    return result;
  }

  private compute(header: string): Negotiated {
    const negotiator = new Negotiator({ headers: { 'accept-encoding': header } });
    const rank = negotiator.encodings.bind(negotiator) as unknown as RankEncodings;
    const ranked = rank(this.candidates, { preferred: this.candidates });
    const first = ranked[0];
    const encoding = first === undefined || first === 'identity' ? null : (first as Encoding);
    const identity = ranked.includes('identity') && !starRefusesIdentity(header);
    const accepted = new Set(rank(KNOWN_CODINGS, { preferred: KNOWN_CODINGS }));
    if (accepted.has('x-gzip')) accepted.add('gzip');
    if (accepted.has('gzip')) accepted.add('x-gzip');
    return { encoding, identity, accepted };
  }
}

const Q_PARAM = /;\s*q\s*=\s*([0-9.]+)/i;

/**
 * RFC 9110 §12.5.3: `*;q=0` refuses identity too unless identity has its own entry. negotiator
 * treats identity as always acceptable in that case, so this one rule is checked here.
 */
function starRefusesIdentity(header: string): boolean {
  let starZero = false;
  for (const part of header.split(',')) {
    const semi = part.indexOf(';');
    const name = (semi === -1 ? part : part.slice(0, semi)).trim().toLowerCase();
    if (name === 'identity') return false;
    if (name === '*') {
      const q = Q_PARAM.exec(part);
      starZero = q !== null && Number(q[1]) === 0;
    }
  }
  return starZero;
}
