/** Address and CIDR syntax for listeners, admin, trustedProxies and ipFilter. */
import { isIPv4, isIPv6 } from 'node:net';
import type { HostPort } from './types.js';

const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const ADDRESS_HINT = 'expected host:port, :port or [IPv6]:port, like 127.0.0.1:8080';

/**
 * Parses `host:port`, `:port` (all interfaces) or `[v6]:port`. Returns the address or an error
 * message. Port 0 is allowed so tests can ask the system for a free port.
 */
export function parseAddress(text: string): HostPort | string {
  let host: string;
  let portText: string;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0 || text[close + 1] !== ':') return `invalid address "${text}": ${ADDRESS_HINT}`;
    host = text.slice(1, close);
    portText = text.slice(close + 2);
    if (!isIPv6(host)) return `invalid address "${text}": "${host}" is not an IPv6 address`;
  } else {
    const colon = text.lastIndexOf(':');
    if (colon < 0) return `invalid address "${text}": missing port; ${ADDRESS_HINT}`;
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (host.includes(':')) {
      return `invalid address "${text}": write IPv6 addresses in brackets, like [::1]:8080`;
    }
    if (host !== '' && !isIPv4(host) && !HOSTNAME.test(host)) {
      return `invalid address "${text}": "${host}" is not a valid host name or IPv4 address`;
    }
  }
  if (!/^[0-9]{1,5}$/.test(portText) || Number(portText) > 65535) {
    return `invalid address "${text}": the port must be a number from 0 to 65535`;
  }
  return { host: host.toLowerCase(), port: Number(portText) };
}

/** Whether a listen host only accepts connections from this machine. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return isIPv4(v4) && v4.startsWith('127.');
}

/**
 * Validates an address or CIDR and returns it in CIDR form (a bare address gets /32 or /128),
 * or undefined when it is not one.
 */
export function normalizeCidr(text: string): string | undefined {
  const slash = text.indexOf('/');
  const addr = slash < 0 ? text : text.slice(0, slash);
  const bitsText = slash < 0 ? undefined : text.slice(slash + 1);
  const max = isIPv4(addr) ? 32 : isIPv6(addr) ? 128 : 0;
  if (max === 0) return undefined;
  if (bitsText === undefined) return `${addr.toLowerCase()}/${max}`;
  if (!/^[0-9]{1,3}$/.test(bitsText) || Number(bitsText) > max) return undefined;
  return `${addr.toLowerCase()}/${Number(bitsText)}`;
}

/** `host:port` for messages, with IPv6 in brackets. */
export function formatHostPort(a: HostPort): string {
  return `${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
}
