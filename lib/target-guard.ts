/**
 * The last check before the worker sends an admin token to a Sourcegraph URL: the URL must match a pattern of
 * MANAGED_SMTP_SOURCEGRAPH_URLS, and every address its host resolves to must be public, unless the matching pattern
 * names the host (or IP literal) explicitly. The request then connects to the address that was checked (a pinned
 * `lookup`), so a second DNS answer cannot swap it (no time-of-check/time-of-use gap).
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import { matchingPattern, parseUrlParts, quoteUrl, sourcegraphUrlProblem, type UrlPattern } from './allow-list';

/** One resolved address. */
export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/** Resolves a host name to every address (injectable so tests need no DNS). */
export type Resolver = (host: string) => Promise<ResolvedAddress[]>;

/** The address a request must connect to, after the checks passed. */
export interface PinnedTarget extends ResolvedAddress {
  /** The pattern that allowed the URL. */
  pattern: string;
}

/** The URL or an address it resolves to is not allowed. `argument` names the spec field. */
export class TargetRefusedError extends Error {
  readonly argument = 'sourcegraphUrl';
  constructor(message: string) {
    super(message);
    this.name = 'TargetRefusedError';
  }
}

/** Resolving the host failed (transient: DNS may answer later). */
export class TargetUnresolvedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TargetUnresolvedError';
  }
}

/** Address ranges that are not public, by what they are. */
const RANGES: Array<[string, Array<[string, number, 'ipv4' | 'ipv6']>]> = [
  [
    'unspecified',
    [
      ['0.0.0.0', 8, 'ipv4'],
      ['::', 128, 'ipv6'],
    ],
  ],
  [
    'loopback',
    [
      ['127.0.0.0', 8, 'ipv4'],
      ['::1', 128, 'ipv6'],
    ],
  ],
  [
    'private',
    [
      ['10.0.0.0', 8, 'ipv4'],
      ['172.16.0.0', 12, 'ipv4'],
      ['192.168.0.0', 16, 'ipv4'],
      ['100.64.0.0', 10, 'ipv4'],
      ['198.18.0.0', 15, 'ipv4'],
      ['192.0.0.0', 24, 'ipv4'],
      ['fc00::', 7, 'ipv6'],
    ],
  ],
  [
    'link-local',
    [
      ['169.254.0.0', 16, 'ipv4'],
      ['fe80::', 10, 'ipv6'],
    ],
  ],
  [
    'multicast or reserved',
    [
      ['224.0.0.0', 3, 'ipv4'],
      ['ff00::', 8, 'ipv6'],
    ],
  ],
];

const BLOCKS: Array<[string, BlockList]> = RANGES.map(([what, ranges]) => {
  const list = new BlockList();
  for (const [net, prefix, type] of ranges) list.addSubnet(net, prefix, type);
  return [what, list];
});

/** What kind of non-public address `ip` is, or null for a public one. IPv4-mapped IPv6 is judged as IPv4. */
export function nonPublicKind(ip: string): string | null {
  let address = ip;
  let family = isIP(address);
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) {
    address = mapped[1];
    family = 4;
  }
  if (family === 0) return 'not an IP address';
  const type = family === 4 ? 'ipv4' : 'ipv6';
  for (const [what, list] of BLOCKS) if (list.check(address, type)) return what;
  // NAT64 and 6to4 embed an IPv4 address that may be internal.
  if (type === 'ipv6' && /^(64:ff9b::|2002:)/i.test(address)) return 'an IPv6 translation address';
  return null;
}

/** The system resolver (getaddrinfo), every address. */
export const systemResolver: Resolver = async (host) => {
  const found = await dnsLookup(host, { all: true, verbatim: true });
  return found.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
};

/** Most addresses of one host looked at (a hostile DNS answer may be huge). */
const MAX_ADDRESSES = 32;

/** Checks URLs against `patterns` and resolves them to one allowed address. */
export class TargetGuard {
  constructor(
    readonly patterns: readonly UrlPattern[],
    private readonly resolver: Resolver = systemResolver,
  ) {}

  /** Why the URL is refused before any DNS, or null. */
  problem(url: string): string | null {
    return sourcegraphUrlProblem(url, this.patterns);
  }

  /**
   * Resolves the URL's host and checks every address. Throws TargetRefusedError (permanent) or TargetUnresolvedError
   * (transient); returns the address to connect to.
   */
  async resolve(url: string): Promise<PinnedTarget> {
    const problem = this.problem(url);
    if (problem) throw new TargetRefusedError(problem);
    const { parts } = parseUrlParts(url);
    const pattern = matchingPattern(url, this.patterns)!;
    const host = parts!.host.replace(/^\[|\]$/g, '');
    let addresses: ResolvedAddress[];
    if (isIP(host)) addresses = [{ address: host, family: isIP(host) === 6 ? 6 : 4 }];
    else {
      try {
        addresses = (await this.resolver(host)).slice(0, MAX_ADDRESSES);
      } catch (err) {
        const code = typeof err === 'object' && err && 'code' in err ? String(err.code) : 'error';
        throw new TargetUnresolvedError(`sourcegraphUrl ${quoteUrl(url)}: its host did not resolve (${code})`);
      }
      if (addresses.length === 0) {
        throw new TargetUnresolvedError(`sourcegraphUrl ${quoteUrl(url)}: its host resolved to no address`);
      }
    }
    if (!pattern.explicitHost) {
      // Every address is checked, not only the one used: a client library may fall back to another.
      for (const a of addresses) {
        const kind = nonPublicKind(a.address);
        if (kind) {
          throw new TargetRefusedError(
            `sourcegraphUrl ${quoteUrl(url)} is refused: its host resolves to ${a.address} (${kind}), which ` +
              `only a pattern naming the host explicitly may allow (${pattern.source} has a wildcard)`,
          );
        }
      }
    }
    return { ...addresses[0], pattern: pattern.source };
  }
}

/** A `lookup` for http(s).request that always answers the pinned address, whatever name it is asked for. */
export function pinnedLookup(target: ResolvedAddress): LookupFunction {
  return ((_host: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
    const cb = typeof options === 'function' ? (options as (...args: unknown[]) => void) : callback;
    const all = typeof options === 'object' && options !== null && options.all === true;
    if (all) cb(null, [{ address: target.address, family: target.family }]);
    else cb(null, target.address, target.family);
  }) as unknown as LookupFunction;
}
