import { createHash, X509Certificate } from 'node:crypto';

/**
 * OCSP stapling (RFC 6960 requests, RFC 6066 status_request): for a certificate whose
 * authorityInfoAccess names an OCSP responder, the stapler asks the responder, keeps the answer
 * until its nextUpdate, refreshes it in the background past half its validity, and hands it to
 * node's 'OCSPRequest' event. A responder that is down or slow never fails a handshake: the
 * handshake goes on without a staple (or with the last good one while it is valid).
 */

// ---------------------------------------------------------------------------------------------
// A minimal DER reader and writer: just what OCSP requests and responses need.

interface Tlv {
  tag: number;
  /** The whole element (tag, length, content). */
  start: number;
  contentStart: number;
  end: number;
}

function readTlv(buf: Buffer, offset: number): Tlv {
  if (offset + 2 > buf.length) throw new Error('DER: truncated');
  const tag = buf[offset];
  let length = buf[offset + 1];
  let contentStart = offset + 2;
  if (length & 0x80) {
    const n = length & 0x7f;
    if (n === 0 || n > 4 || contentStart + n > buf.length) throw new Error('DER: bad length');
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + buf[contentStart + i];
    contentStart += n;
  }
  const end = contentStart + length;
  if (end > buf.length) throw new Error('DER: truncated');
  return { tag, start: offset, contentStart, end };
}

/** The elements inside a constructed element. */
function children(buf: Buffer, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = parent.contentStart; at < parent.end;) {
    const child = readTlv(buf, at);
    out.push(child);
    at = child.end;
  }
  return out;
}

function encodeLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function der(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), encodeLength(body.length), body]);
}

const SEQUENCE = 0x30;
const OCTET_STRING = 0x04;
const INTEGER = 0x02;
const NULL = Buffer.from([0x05, 0x00]);
/** 1.3.14.3.2.26, SHA-1: what every responder accepts for CertID hashes. */
const SHA1_OID = Buffer.from([0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a]);
/** 1.3.6.1.5.5.7.48.1.1, id-pkix-ocsp-basic. */
const OCSP_BASIC_OID = Buffer.from('06092b0601050507300101', 'hex');

/** The parts of a certificate OCSP needs: tbs fields by position (version is optional). */
function certificateParts(cert: Buffer): { serial: Buffer; subject: Buffer; publicKey: Buffer } {
  const root = readTlv(cert, 0);
  const tbs = children(cert, children(cert, root)[0]);
  const i = tbs[0].tag === 0xa0 ? 1 : 0;
  const serial = cert.subarray(tbs[i].contentStart, tbs[i].end);
  const subject = cert.subarray(tbs[i + 4].start, tbs[i + 4].end);
  const spki = children(cert, tbs[i + 5]);
  // The BIT STRING's content without its leading "unused bits" byte.
  const publicKey = cert.subarray(spki[1].contentStart + 1, spki[1].end);
  return { serial, subject, publicKey };
}

/** The DER CertID (SHA-1) identifying `cert` as issued by `issuer`. */
export function buildCertId(cert: Buffer, issuer: Buffer): Buffer {
  const leaf = certificateParts(cert);
  const ca = certificateParts(issuer);
  return der(
    SEQUENCE,
    der(SEQUENCE, SHA1_OID, NULL),
    der(OCTET_STRING, createHash('sha1').update(ca.subject).digest()),
    der(OCTET_STRING, createHash('sha1').update(ca.publicKey).digest()),
    der(INTEGER, leaf.serial),
  );
}

/** An OCSPRequest for one certificate, without a nonce (so responses can be cached). */
export function buildOcspRequest(cert: Buffer, issuer: Buffer): Buffer {
  return ocspRequestFor(buildCertId(cert, issuer));
}

/** OCSPRequest { TBSRequest { requestList { Request { CertID } } } }. */
function ocspRequestFor(certId: Buffer): Buffer {
  return der(SEQUENCE, der(SEQUENCE, der(SEQUENCE, der(SEQUENCE, certId))));
}

export interface OcspResult {
  status: 'good' | 'revoked' | 'unknown';
  thisUpdate: number;
  /** Absent from the response: treated as thisUpdate + 1 hour. */
  nextUpdate: number;
}

function generalizedTime(buf: Buffer, tlv: Tlv): number {
  const s = buf.toString('latin1', tlv.contentStart, tlv.end);
  const m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(?:\.\d+)?Z$/.exec(s);
  if (!m) throw new Error(`OCSP: bad time "${s}"`);
  return Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]);
}

/**
 * Reads an OCSPResponse and returns the status of the certificate `certId` names. Throws when
 * the response is not a successful basic response about that certificate. The signature is
 * the client's to check (it has to anyway); the stapler only makes sure it staples the right,
 * current answer.
 */
export function parseOcspResponse(response: Buffer, certId: Buffer): OcspResult {
  const top = children(response, readTlv(response, 0));
  const status = response[top[0].contentStart];
  if (top[0].tag !== 0x0a || status !== 0) {
    throw new Error(`OCSP: responder answered status ${status} (not successful)`);
  }
  if (top.length < 2 || top[1].tag !== 0xa0) throw new Error('OCSP: no response bytes');
  const responseBytes = children(response, children(response, top[1])[0]);
  const type = response.subarray(responseBytes[0].start, responseBytes[0].end);
  if (!type.equals(OCSP_BASIC_OID)) throw new Error('OCSP: not a basic response');
  const basic = response.subarray(responseBytes[1].contentStart, responseBytes[1].end);
  const tbs = children(basic, children(basic, readTlv(basic, 0))[0]);
  const i = tbs[0].tag === 0xa0 ? 1 : 0;
  const responses = children(basic, tbs[i + 2]);
  for (const single of responses) {
    const fields = children(basic, single);
    if (!basic.subarray(fields[0].start, fields[0].end).equals(certId)) continue;
    const statusTag = fields[1].tag & 0x1f;
    const thisUpdate = generalizedTime(basic, fields[2]);
    let nextUpdate = thisUpdate + 3600_000;
    if (fields[3] !== undefined && fields[3].tag === 0xa0) {
      nextUpdate = generalizedTime(basic, children(basic, fields[3])[0]);
    }
    return {
      status: statusTag === 0 ? 'good' : statusTag === 1 ? 'revoked' : 'unknown',
      thisUpdate,
      nextUpdate,
    };
  }
  throw new Error('OCSP: the response is about another certificate');
}

/** The OCSP responder URL from authorityInfoAccess, if the certificate names one. */
export function ocspUrlOf(cert: Buffer): string | null {
  let info: string | undefined;
  try {
    info = new X509Certificate(cert).infoAccess;
  } catch {
    return null;
  }
  const m = info ? /OCSP - URI:(\S+)/.exec(info) : null;
  return m && /^https?:\/\//.test(m[1]) ? m[1] : null;
}

// ---------------------------------------------------------------------------------------------

type LogFn = (
  level: 'info' | 'warn' | 'error',
  message: string,
  fields?: Record<string, unknown>,
) => void;

interface Staple {
  url: string | null;
  certId: Buffer | null;
  response: Buffer | null;
  result: OcspResult | null;
  fetching: Promise<void> | null;
  /** No new attempt before this (after a failure). */
  retryAt: number;
}

export interface OcspStaplerOptions {
  log?: LogFn;
  now?: () => number;
  /** How long the first handshake waits for a fetch in progress. Default 2 s. */
  handshakeWaitMs?: number;
  /** Bound on one request to a responder. Default 5 s. */
  fetchTimeoutMs?: number;
  /** After a failed fetch, no new one before this. Default 60 s. */
  retryMs?: number;
}

export class OcspStapler {
  private readonly staples = new Map<string, Staple>();
  private readonly log: LogFn;
  private readonly now: () => number;
  private readonly handshakeWaitMs: number;
  private readonly fetchTimeoutMs: number;
  private readonly retryMs: number;

  constructor(options: OcspStaplerOptions = {}) {
    this.log = options.log ?? (() => undefined);
    this.now = options.now ?? Date.now;
    this.handshakeWaitMs = options.handshakeWaitMs ?? 2000;
    this.fetchTimeoutMs = options.fetchTimeoutMs ?? 5000;
    this.retryMs = options.retryMs ?? 60_000;
  }

  /** node's 'OCSPRequest' listener (see TlsTerminator.setOcspHandler). */
  readonly handle = (
    certificate: Buffer,
    issuer: Buffer | null,
    callback: (err: Error | null, response: Buffer | null) => void,
  ): void => {
    const staple = this.stapleFor(certificate, issuer);
    if (staple.url === null || staple.certId === null) {
      callback(null, null);
      return;
    }
    const now = this.now();
    const result = staple.result;
    if (result !== null && result.nextUpdate > now) {
      // Past half its validity: fetch a fresh one for the next handshakes.
      if (now > result.thisUpdate + (result.nextUpdate - result.thisUpdate) / 2) {
        this.refresh(staple, certificate);
      }
      callback(null, staple.response);
      return;
    }
    const fetching = this.refresh(staple, certificate);
    if (fetching === null) {
      callback(null, null);
      return;
    }
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const r = staple.result;
      callback(null, r !== null && r.nextUpdate > this.now() ? staple.response : null);
    };
    const timer = setTimeout(finish, this.handshakeWaitMs);
    void fetching.then(finish, finish);
  };

  private stapleFor(certificate: Buffer, issuer: Buffer | null): Staple {
    const key = createHash('sha256').update(certificate).digest('base64');
    let staple = this.staples.get(key);
    if (staple === undefined) {
      const url = ocspUrlOf(certificate);
      let certId: Buffer | null = null;
      if (url !== null && issuer !== null) {
        try {
          certId = buildCertId(certificate, issuer);
        } catch {
          certId = null;
        }
      }
      staple = { url, certId, response: null, result: null, fetching: null, retryAt: 0 };
      // One entry per certificate ever served; certificates are few, so no eviction is needed
      // beyond dropping the whole map when it grows past any sane number.
      if (this.staples.size > 10_000) this.staples.clear();
      this.staples.set(key, staple);
    }
    return staple;
  }

  /** Starts a fetch unless one runs or a failure is too recent; returns the one running. */
  private refresh(staple: Staple, certificate: Buffer): Promise<void> | null {
    if (staple.fetching !== null) return staple.fetching;
    if (this.now() < staple.retryAt || staple.url === null || staple.certId === null) return null;
    const url = staple.url;
    const certId = staple.certId;
    staple.fetching = (async () => {
      try {
        const request = ocspRequestFor(certId);
        const res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/ocsp-request' },
          body: request,
          signal: AbortSignal.timeout(this.fetchTimeoutMs),
        });
        if (res.status !== 200) throw new Error(`OCSP responder answered HTTP ${res.status}`);
        const body = Buffer.from(await res.arrayBuffer());
        const result = parseOcspResponse(body, certId);
        if (result.status === 'unknown')
          throw new Error('OCSP responder does not know the certificate');
        if (result.nextUpdate <= this.now()) throw new Error('OCSP response is already stale');
        staple.response = body;
        staple.result = result;
        staple.retryAt = 0;
        if (result.status === 'revoked') {
          this.log('error', 'OCSP: the certificate is revoked; replace it', {
            subject: new X509Certificate(certificate).subject,
            responder: url,
          });
        }
      } catch (err) {
        staple.retryAt = this.now() + this.retryMs;
        this.log('warn', 'OCSP: no fresh response; handshakes go on without a new staple', {
          responder: url,
          error: (err as Error).message,
        });
      } finally {
        staple.fetching = null;
      }
    })();
    return staple.fetching;
  }
}
