import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { buildConnector } from 'undici';
import { undici } from './undici.js';

/** The upstream `tls` section as written in the config (validated by the schema). */
export interface UpstreamTlsSettings {
  ca?: string;
  serverName?: string;
  cert?: string;
  key?: string;
  insecureSkipVerify?: boolean;
}

function readPem(file: string, keyPath: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'no such file' : (code ?? (err as Error).message);
    throw new Error(`${keyPath}: cannot read the ${what} file "${file}": ${reason}`);
  }
}

/**
 * Turns an upstream's `tls` section into node tls.connect options for undici's connector.
 * Verification stays on unless insecureSkipVerify says otherwise: an upstream whose certificate
 * does not chain to the configured CA (or the system store) fails to connect, which is a 502.
 * The PEM contents (not the paths) go into the options, so a reload that sees changed files
 * gets a new pool.
 */
export function upstreamTlsOptions(
  upstreamName: string,
  settings: UpstreamTlsSettings | undefined,
): Record<string, unknown> | undefined {
  if (settings === undefined) return undefined;
  const at = `upstreams.${upstreamName}.tls`;
  const options: Record<string, unknown> = {
    rejectUnauthorized: settings.insecureSkipVerify !== true,
  };
  if (settings.ca !== undefined) options.ca = readPem(settings.ca, `${at}.ca`, 'CA');
  if (settings.serverName !== undefined) options.servername = settings.serverName;
  if ((settings.cert === undefined) !== (settings.key === undefined))
    throw new Error(`${at}: a client certificate needs both cert and key`);
  if (settings.cert !== undefined && settings.key !== undefined) {
    options.cert = readPem(settings.cert, `${at}.cert`, 'client certificate');
    options.key = readPem(settings.key, `${at}.key`, 'client key');
  }
  return options;
}

export interface ConnectorSettings {
  connectTimeoutMs: number;
  protocol: 'http1' | 'h2' | 'h2c';
  tls?: Record<string, unknown>;
}

/** True when a pool needs the connector below (TLS or cleartext HTTP/2 upstreams). */
export function needsUpstreamConnector(origin: string, settings: ConnectorSettings): boolean {
  return origin.startsWith('https:') || settings.protocol === 'h2c';
}

/**
 * undici's connector with the SNI name fixed per upstream: `tls.serverName`, else the server
 * URL's host name (none for an IP address). undici would otherwise take it from each request's
 * Host header, i.e. the client-facing name, and verify the upstream against that.
 */
export function createUpstreamConnector(
  origin: string,
  settings: ConnectorSettings,
): buildConnector.connector {
  const hostname = new URL(origin).hostname.replace(/^\[|\]$/g, '');
  const tlsOptions = settings.tls ?? {};
  const servername =
    (tlsOptions.servername as string | undefined) ?? (isIP(hostname) ? undefined : hostname);
  const connector = undici().buildConnector({
    ...tlsOptions,
    timeout: settings.connectTimeoutMs,
    allowH2: settings.protocol !== 'http1',
    // undici 7: cleartext HTTP/2 with prior knowledge (what H2CClient sets).
    useH2c: settings.protocol === 'h2c',
  } as buildConnector.BuildOptions);
  if (servername === undefined) return connector;
  return (options, callback) => connector({ ...options, servername }, callback);
}
