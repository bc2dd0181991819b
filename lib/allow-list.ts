/**
 * Which Sourcegraph URLs the worker may send an admin token to (MANAGED_SMTP_SOURCEGRAPH_URLS), and where an
 * instance's admin token may be read from. Pure (no Node imports, no `URL`): workflow code, the CLI and the activities
 * share these checks. The address checks that need DNS live in lib/target-guard.ts.
 */
import { SECRET_VERSION_PATTERN, SEND_KEY_SECRET_ID } from './instance';
import { sanitizeText } from './sanitize';

/** The environment variable holding the comma-separated URL patterns. */
export const SOURCEGRAPH_URLS_ENV = 'MANAGED_SMTP_SOURCEGRAPH_URLS';

/** The patterns in force when MANAGED_SMTP_SOURCEGRAPH_URLS is unset. */
export const DEFAULT_SOURCEGRAPH_URLS = 'https://*.sourcegraph.com,https://*.sourcegraphcloud.com';

/** One parsed pattern, e.g. `https://*.sourcegraph.com` or `http://127.0.0.1:*`. */
export interface UrlPattern {
  /** The pattern as written (lowercased). */
  source: string;
  scheme: 'http' | 'https';
  /** Host labels; a `*` label stands for one or more labels. An IPv6 literal is one label in brackets. */
  labels: string[];
  /** A port number, `*` for any port, or null for the scheme's default port only. */
  port: number | '*' | null;
  /**
   * True when the host has no wildcard: the pattern names this host (or IP literal) explicitly, so loopback, private
   * and link-local addresses it resolves to are allowed.
   */
  explicitHost: boolean;
}

/** The parts of an http(s) URL these checks look at. */
export interface UrlParts {
  scheme: 'http' | 'https';
  /** Lowercased host; an IPv6 literal keeps its brackets. */
  host: string;
  /** The explicit port, or the scheme's default. */
  port: number;
}

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const IPV6_LITERAL = /^\[[0-9a-f:.]{2,45}\]$/;
const DEFAULT_PORT = { http: 80, https: 443 } as const;
/** At most this many patterns (bounds the matching work per URL). */
const MAX_PATTERNS = 64;

/** A host that is a DNS name of valid labels, a canonical dotted-quad IPv4, or a bracketed IPv6 literal. */
function hostProblem(host: string): string | null {
  if (IPV6_LITERAL.test(host) || IPV4.test(host)) return null;
  if (host.length > 253) return 'the host name is longer than 253 characters';
  const labels = host.split('.');
  if (!labels.every((l) => LABEL.test(l))) return 'the host is not a valid host name';
  // WHATWG URL parsing reads a host ending in a numeric label as IPv4 (e.g. 2130706433 or 0x7f.1): only dotted quads.
  if (/^(0x[0-9a-f]*|\d+)$/.test(labels[labels.length - 1])) return 'the host is not a canonical IPv4 address';
  return null;
}

/** Splits `scheme://host[:port][/path]`; null (with why) when the text is not such a URL. */
export function parseUrlParts(url: string): { parts: UrlParts; problem: null } | { parts: null; problem: string } {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)([^?#]*)(\?[^#]*)?(#.*)?$/.exec(url);
  if (!m) return { parts: null, problem: 'it is not an absolute URL' };
  const scheme = m[1].toLowerCase();
  if (scheme !== 'http' && scheme !== 'https') return { parts: null, problem: 'only http and https URLs are allowed' };
  const authority = m[2];
  if (authority.includes('@')) return { parts: null, problem: 'it carries credentials' };
  if (m[4] !== undefined || m[5] !== undefined) return { parts: null, problem: 'it has a query or fragment' };
  if (/[^\x21-\x7e]/.test(url)) return { parts: null, problem: 'it contains whitespace or non-ASCII characters' };
  const hp = /^(\[[^\]]*\]|[^:]*)(?::(\d{1,5}))?$/.exec(authority.toLowerCase());
  if (!hp || hp[1] === '') return { parts: null, problem: 'it has no valid host' };
  const host = hp[1];
  const why = hostProblem(host);
  if (why) return { parts: null, problem: why };
  const port = hp[2] === undefined ? DEFAULT_PORT[scheme] : Number(hp[2]);
  if (port < 1 || port > 65535) return { parts: null, problem: 'its port is out of range' };
  return { parts: { scheme, host, port }, problem: null };
}

/** Parses one pattern; throws Error (one line) when it is malformed. */
function parsePattern(raw: string): UrlPattern {
  const source = raw.trim().toLowerCase();
  const m = /^(https?):\/\/(\[[0-9a-f:.]+\]|[a-z0-9*.-]+)(?::(\*|\d{1,5}))?\/?$/.exec(source);
  if (!m) throw new Error(`pattern ${JSON.stringify(raw.trim())} must be http(s)://host[:port|:*]`);
  const host = m[2];
  const labels = host.startsWith('[') ? [host] : host.split('.');
  for (const l of labels) {
    if (l === '*' || host.startsWith('[')) continue;
    if (!LABEL.test(l))
      throw new Error(`pattern ${JSON.stringify(source)} has an invalid host label ${JSON.stringify(l)}`);
  }
  if (labels.every((l) => l === '*')) throw new Error(`pattern ${JSON.stringify(source)} matches every host`);
  if (host.startsWith('[') && !IPV6_LITERAL.test(host))
    throw new Error(`pattern ${JSON.stringify(source)} has an invalid IPv6 literal`);
  let port: UrlPattern['port'] = null;
  if (m[3] === '*') port = '*';
  else if (m[3] !== undefined) {
    port = Number(m[3]);
    if (port < 1 || port > 65535) throw new Error(`pattern ${JSON.stringify(source)} has a port out of range`);
  }
  return { source, scheme: m[1] as 'http' | 'https', labels, port, explicitHost: !labels.includes('*') };
}

/** Parses MANAGED_SMTP_SOURCEGRAPH_URLS (empty or unset: the default). Throws Error with one line when malformed. */
export function parseUrlPatterns(text: string | undefined | null): UrlPattern[] {
  const value = text?.trim() ? text : DEFAULT_SOURCEGRAPH_URLS;
  const entries = value
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e.length > 0);
  if (entries.length > MAX_PATTERNS) throw new Error(`at most ${MAX_PATTERNS} patterns, got ${entries.length}`);
  // Only commas and spaces is a typo, not a wish to refuse every instance.
  if (entries.length === 0) throw new Error('names no URL pattern (only commas and spaces)');
  return entries.map(parsePattern);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function hostMatches(pattern: UrlPattern, host: string): boolean {
  if (pattern.explicitHost) return pattern.labels.join('.') === host;
  if (host.startsWith('[') || IPV4.test(host)) return false; // a wildcard never stands for an IP literal
  const re = pattern.labels.map((l) => (l === '*' ? '[a-z0-9-]+(?:\\.[a-z0-9-]+)*' : escapeRegExp(l))).join('\\.');
  return new RegExp(`^${re}$`).test(host);
}

function portMatches(pattern: UrlPattern, port: number): boolean {
  if (pattern.port === '*') return true;
  return port === (pattern.port ?? DEFAULT_PORT[pattern.scheme]);
}

/** The first pattern that allows `url`, or null. */
export function matchingPattern(url: string, patterns: readonly UrlPattern[]): UrlPattern | null {
  const { parts } = parseUrlParts(url);
  if (!parts) return null;
  return (
    patterns.find((p) => p.scheme === parts.scheme && portMatches(p, parts.port) && hostMatches(p, parts.host)) ?? null
  );
}

/** The URL, bounded and without control characters, for a sentence about it. */
export function quoteUrl(url: string): string {
  return JSON.stringify(sanitizeText(String(url), 200));
}

/**
 * Why `url` may not be used as an instance's Sourcegraph URL under `patterns` (one sentence naming the URL), or
 * null when a pattern allows it. Address checks after DNS resolution are lib/target-guard.ts's.
 */
export function sourcegraphUrlProblem(url: string, patterns: readonly UrlPattern[]): string | null {
  if (typeof url !== 'string' || url.length === 0) return 'sourcegraphUrl must be a non-empty string';
  if (url.length > 2048) return 'sourcegraphUrl is longer than 2048 characters';
  const { parts, problem } = parseUrlParts(url);
  if (!parts) return `sourcegraphUrl ${quoteUrl(url)} is refused: ${problem}`;
  if (matchingPattern(url, patterns)) return null;
  const list = patterns.map((p) => p.source).join(', ');
  if (parts.scheme === 'http' && matchingPattern(`https${url.slice(4)}`, patterns)) {
    return `sourcegraphUrl ${quoteUrl(url)} is refused: plain http is allowed only where a pattern of ${SOURCEGRAPH_URLS_ENV} says http:// (${list})`;
  }
  return `sourcegraphUrl ${quoteUrl(url)} is refused: it matches none of ${SOURCEGRAPH_URLS_ENV} (${list})`;
}

/** The prefix of every secret managed-smtp writes in an instance's project; none of them is ever an admin token. */
export const MANAGED_SECRET_PREFIX = 'managed-smtp-';

/**
 * Why `secret` may not be read as the admin token of an instance whose secrets live in `gcpProject`, or null. The
 * worker reads it and sends it to the instance: anything outside the instance's own project (or its send-key secret)
 * would turn the worker into a courier of other secrets.
 */
export function adminTokenSecretProblem(secret: string, gcpProject: string): string | null {
  if (typeof secret !== 'string' || !SECRET_VERSION_PATTERN.test(secret)) {
    return 'adminTokenSecret must be a Secret Manager version name projects/P/secrets/S/versions/(latest|N)';
  }
  const prefix = `projects/${gcpProject}/secrets/`;
  if (!secret.startsWith(prefix)) {
    return `adminTokenSecret ${JSON.stringify(sanitizeText(secret, 300))} is refused: it must lie in the instance's own project (${prefix}...)`;
  }
  if (secret.startsWith(`${prefix}${SEND_KEY_SECRET_ID}/`)) {
    return `adminTokenSecret ${JSON.stringify(secret)} is refused: it is the instance's send-key secret`;
  }
  // Every secret managed-smtp writes is named managed-smtp-* (the send key, GDPR request lists with their HMAC key):
  // read as a token, its contents would go to the instance in a header.
  if (secret.startsWith(`${prefix}${MANAGED_SECRET_PREFIX}`)) {
    return `adminTokenSecret ${JSON.stringify(secret)} is refused: ${MANAGED_SECRET_PREFIX}* secrets are managed-smtp's own, not an admin token`;
  }
  return null;
}

/** Most egress addresses one instance may list. */
export const MAX_EGRESS_IPS = 20;

/** Why `ip` is not an IPv4 address or CIDR block SparkPost accepts in `valid_ips`, or null. */
export function egressIpProblem(ip: string): string | null {
  const m = /^([^/]+)(?:\/(\d{1,2}))?$/.exec(typeof ip === 'string' ? ip : '');
  if (!m || !IPV4.test(m[1]) || (m[2] !== undefined && Number(m[2]) > 32)) {
    return `${JSON.stringify(sanitizeText(String(ip), 60))} is not an IPv4 address or CIDR block (e.g. 203.0.113.7 or 203.0.113.0/28)`;
  }
  return null;
}

/** Why a list of egress IPs is unusable (too many, malformed, duplicated), or null. */
export function egressIpsProblem(ips: unknown): string | null {
  if (!Array.isArray(ips)) return 'egressIps must be a list of IPv4 addresses or CIDR blocks';
  if (ips.length > MAX_EGRESS_IPS) return `egressIps: at most ${MAX_EGRESS_IPS} addresses`;
  for (const ip of ips) {
    const why = egressIpProblem(ip as string);
    if (why) return `egressIps: ${why}`;
  }
  if (new Set(ips).size !== ips.length) return 'egressIps: an address is listed twice';
  return null;
}
