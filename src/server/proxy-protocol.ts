import { isIPv4, isIPv6, type Server, type Socket } from 'node:net';
import ipaddr from 'ipaddr.js';

/**
 * The PROXY protocol (HAProxy's spec, versions 1 and 2): a TCP load balancer in front of the
 * listener prepends the real client address to each connection. On a listener with
 * `proxyProtocol: true` every connection must start with the header (a connection without one
 * is closed: accepting both would let any client forge its address); the socket's
 * `remoteAddress`/`remotePort` then report the client, so connection limits, trustedProxies,
 * ipFilter and logs all see the real address.
 */

const V2_SIGNATURE = Buffer.from([
  0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
]);
const V1_PREFIX = Buffer.from('PROXY ');
/** Spec: a v1 line is at most 107 bytes including CRLF. */
const V1_MAX = 107;
/** A v2 header with TLVs larger than this is refused (real ones are a few hundred bytes). */
const V2_MAX = 16 + 4096;

export type ProxyHeader =
  | { state: 'incomplete' }
  | { state: 'invalid'; reason: string }
  /** `source` is undefined for LOCAL / UNKNOWN (health checks from the balancer itself). */
  | { state: 'done'; length: number; source?: { address: string; port: number } };

function validPort(text: string): boolean {
  return /^[0-9]{1,5}$/.test(text) && Number(text) <= 65535;
}

/** Parses the start of a connection. Pure, so tests can feed it any bytes. */
export function parseProxyHeader(buf: Buffer): ProxyHeader {
  const n = Math.min(buf.length, V2_SIGNATURE.length);
  if (buf.subarray(0, n).equals(V2_SIGNATURE.subarray(0, n))) {
    if (buf.length < 16) return { state: 'incomplete' };
    const versionCommand = buf[12];
    if (versionCommand >> 4 !== 2) return { state: 'invalid', reason: 'unsupported version' };
    const command = versionCommand & 0x0f;
    const length = 16 + buf.readUInt16BE(14);
    if (length > V2_MAX) return { state: 'invalid', reason: 'header too large' };
    if (buf.length < length) return { state: 'incomplete' };
    if (command === 0) return { state: 'done', length };
    if (command !== 1) return { state: 'invalid', reason: 'unknown command' };
    const family = buf[13] >> 4;
    const body = buf.subarray(16, length);
    if (family === 1 && body.length >= 12) {
      const address = `${body[0]}.${body[1]}.${body[2]}.${body[3]}`;
      return { state: 'done', length, source: { address, port: body.readUInt16BE(8) } };
    }
    if (family === 2 && body.length >= 36) {
      const address = ipaddr.fromByteArray([...body.subarray(0, 16)]).toString();
      return { state: 'done', length, source: { address, port: body.readUInt16BE(32) } };
    }
    // AF_UNSPEC, AF_UNIX or a short body: the connection is real but has no usable address.
    if (family === 0 || family === 3) return { state: 'done', length };
    return { state: 'invalid', reason: 'address block too short' };
  }
  const m = Math.min(buf.length, V1_PREFIX.length);
  if (!buf.subarray(0, m).equals(V1_PREFIX.subarray(0, m)))
    return { state: 'invalid', reason: 'no PROXY protocol header' };
  const end = buf.indexOf('\r\n');
  if (end === -1) {
    return buf.length >= V1_MAX
      ? { state: 'invalid', reason: 'v1 line too long' }
      : { state: 'incomplete' };
  }
  if (end + 2 > V1_MAX) return { state: 'invalid', reason: 'v1 line too long' };
  const fields = buf.subarray(0, end).toString('latin1').split(' ');
  if (fields[1] === 'UNKNOWN') return { state: 'done', length: end + 2 };
  if (fields.length !== 6) return { state: 'invalid', reason: 'malformed v1 line' };
  const [, proto, source, dest, sport, dport] = fields;
  const check = proto === 'TCP4' ? isIPv4 : proto === 'TCP6' ? isIPv6 : null;
  if (check === null || !check(source) || !check(dest) || !validPort(sport) || !validPort(dport))
    return { state: 'invalid', reason: 'malformed v1 line' };
  return { state: 'done', length: end + 2, source: { address: source, port: Number(sport) } };
}

/**
 * Puts PROXY protocol parsing in front of every `connection` listener the server has now (the
 * HTTP parser, protocol sniffing, connection limits): they run only once the header is read,
 * with the leftover bytes put back and the socket's address replaced.
 */
export function installProxyProtocol(
  server: Server,
  options: {
    timeoutMs: number;
    log: (level: 'warn', message: string, fields?: Record<string, unknown>) => void;
  },
): void {
  const downstream = server.listeners('connection') as Array<(socket: Socket) => void>;
  server.removeAllListeners('connection');
  server.on('connection', (socket: Socket) => {
    let seen: Buffer = Buffer.alloc(0);
    const peer = socket.remoteAddress;
    const fail = (reason: string) => {
      options.log('warn', 'PROXY protocol header refused; connection closed', {
        peer,
        reason,
      });
      socket.destroy();
    };
    const onError = () => socket.destroy();
    socket.on('error', onError);
    socket.setTimeout(options.timeoutMs, () => fail('timed out waiting for the header'));
    const onData = (chunk: Buffer) => {
      seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
      const header = parseProxyHeader(seen);
      if (header.state === 'incomplete') return;
      socket.off('data', onData);
      if (header.state === 'invalid') {
        fail(header.reason);
        return;
      }
      socket.off('error', onError);
      socket.setTimeout(0);
      socket.pause();
      if (header.source !== undefined) {
        Object.defineProperty(socket, 'remoteAddress', {
          value: header.source.address,
          configurable: true,
        });
        Object.defineProperty(socket, 'remotePort', {
          value: header.source.port,
          configurable: true,
        });
        Object.defineProperty(socket, 'remoteFamily', {
          value: isIPv4(header.source.address) ? 'IPv4' : 'IPv6',
          configurable: true,
        });
      }
      const rest = seen.subarray(header.length);
      if (rest.length > 0) socket.unshift(rest);
      for (const listener of downstream) {
        listener.call(server, socket);
        if (socket.destroyed) return;
      }
      socket.resume();
    };
    socket.on('data', onData);
  });
}
