/**
 * The pure checks of issue 10 (lib/allow-list.ts, lib/sanitize.ts) and the address guard (lib/target-guard.ts) with
 * an injected resolver: which URLs, tokens and addresses pass, and what the refusals say.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, test } from 'node:test';
import { randomBytes } from 'node:crypto';
import {
  DEFAULT_SOURCEGRAPH_URLS,
  adminTokenSecretProblem,
  egressIpsProblem,
  matchingPattern,
  parseUrlPatterns,
  sourcegraphUrlProblem,
} from '../lib/allow-list';
import { sanitizeText, stripControlChars } from '../lib/sanitize';
import { TargetGuard, TargetRefusedError, nonPublicKind, pinnedLookup, type Resolver } from '../lib/target-guard';

const DEFAULTS = parseUrlPatterns(undefined);

describe('URL patterns', () => {
  test('the default is the production list; malformed patterns are refused with one line', () => {
    assert.deepEqual(
      DEFAULTS.map((p) => p.source),
      DEFAULT_SOURCEGRAPH_URLS.split(','),
    );
    assert.deepEqual(parseUrlPatterns('  '), DEFAULTS);
    // Only commas and spaces: a typo, refused at start-up rather than read as "allow nothing".
    assert.throws(() => parseUrlPatterns(' , '), /names no URL pattern/);
    for (const bad of ['ftp://x.com', 'https://*', 'https://*.*', 'https://a.com/path', 'https://a.com:99999', 'x']) {
      assert.throws(() => parseUrlPatterns(bad), /pattern|port/, bad);
    }
  });

  test('`*` stands for one or more labels, or any port; hosts and schemes match exactly', () => {
    const allowed = [
      'https://acme.sourcegraph.com',
      'https://acme.eu.sourcegraph.com/',
      'https://ACME.sourcegraph.com/prefix',
      'https://acme.sourcegraphcloud.com:443',
    ];
    for (const url of allowed) assert.equal(sourcegraphUrlProblem(url, DEFAULTS), null, url);
    const refused: Array<[string, RegExp]> = [
      ['https://sourcegraph.com', /matches none/],
      ['https://evilsourcegraph.com', /matches none/],
      ['https://acme.sourcegraph.com.evil.com', /matches none/],
      ['https://acme.sourcegraph.com:8443', /matches none/],
      ['http://acme.sourcegraph.com', /plain http/],
      ['https://user:pw@acme.sourcegraph.com', /credentials/],
      ['https://acme.sourcegraph.com/?q=1', /query or fragment/],
      ['https://acme.sourcegraph.com./', /host/],
      ['https://2130706433/', /canonical IPv4/],
      ['https://0x7f.1/', /canonical IPv4/],
      ['file:///etc/passwd', /only http and https/],
      ['https://acme.sourcegraph.com\u001b[2J', /whitespace or non-ASCII|host/],
    ];
    for (const [url, why] of refused) {
      const problem = sourcegraphUrlProblem(url, DEFAULTS);
      assert.ok(problem, url);
      assert.match(problem, why, url);
      assert.match(problem, /^sourcegraphUrl /);
      assert.ok(!problem.includes('\u001b'), 'no escape byte in the sentence');
    }
    const local = parseUrlPatterns('http://127.0.0.1:*,http://localhost:8080,https://[::1]:*');
    assert.equal(sourcegraphUrlProblem('http://127.0.0.1:4567/acme', local), null);
    assert.equal(sourcegraphUrlProblem('http://localhost:8080', local), null);
    assert.match(sourcegraphUrlProblem('http://localhost:8081', local) ?? '', /matches none/);
    assert.equal(sourcegraphUrlProblem('https://[::1]:9', local), null);
    assert.equal(matchingPattern('http://127.0.0.1:1', local)?.explicitHost, true);
  });

  test('random hosts: a wildcard never matches a host outside its suffix, nor an IP literal', () => {
    const label = () => randomBytes(1 + (randomBytes(1)[0] % 6)).toString('hex');
    for (let n = 0; n < 500; n++) {
      const labels = Array.from({ length: 1 + (n % 4) }, label);
      assert.equal(sourcegraphUrlProblem(`https://${labels.join('.')}.sourcegraph.com`, DEFAULTS), null);
      assert.ok(sourcegraphUrlProblem(`https://${labels.join('.')}.sourcegraph.co`, DEFAULTS));
      assert.ok(sourcegraphUrlProblem(`https://${labels.join('')}sourcegraph.com`, DEFAULTS));
      assert.ok(sourcegraphUrlProblem(`https://sourcegraph.com.${labels.join('.')}.com`, DEFAULTS));
    }
    const wild = parseUrlPatterns('http://*.0.1:*,http://*.1:*');
    assert.ok(sourcegraphUrlProblem('http://127.0.0.1:80', wild));
  });
});

describe('admin token secret', () => {
  test('must lie in the instance project and not be its send-key secret', () => {
    assert.equal(
      adminTokenSecretProblem('projects/acme-prj/secrets/sourcegraph-admin-token/versions/latest', 'acme-prj'),
      null,
    );
    assert.match(
      adminTokenSecretProblem('projects/other-prj/secrets/sourcegraph-admin-token/versions/3', 'acme-prj') ?? '',
      /^adminTokenSecret .* own project \(projects\/acme-prj\/secrets\/\.\.\.\)/,
    );
    assert.match(adminTokenSecretProblem('projects/acme-prj2/secrets/x/versions/1', 'acme-prj') ?? '', /own project/);
    assert.match(
      adminTokenSecretProblem('projects/acme-prj/secrets/managed-smtp-send-key/versions/latest', 'acme-prj') ?? '',
      /send-key secret/,
    );
    assert.match(adminTokenSecretProblem('projects/acme-prj/secrets/../versions/1', 'acme-prj') ?? '', /version name/);
  });
});

describe('egress IPs', () => {
  test('IPv4 addresses and CIDR blocks only, bounded, no duplicates', () => {
    assert.equal(egressIpsProblem(['203.0.113.7', '198.51.100.0/24']), null);
    assert.equal(egressIpsProblem([]), null);
    for (const bad of [['::1'], ['10.0.0.300'], ['10.0.0.0/33'], ['a.b.c.d'], ['1.2.3.4', '1.2.3.4']]) {
      assert.ok(egressIpsProblem(bad), JSON.stringify(bad));
    }
    assert.match(egressIpsProblem(Array.from({ length: 21 }, (_, i) => `10.0.0.${i}`)) ?? '', /at most 20/);
  });
});

describe('sanitize', () => {
  test('control characters (ESC, C1, bidi overrides) go, whitespace becomes a space, length is bounded', () => {
    assert.equal(sanitizeText('a\u001b[2Jb\u009bc\u202ed\r\ne\u0000'), 'a[2Jbcd  e');
    const long = sanitizeText('x'.repeat(10_000));
    assert.equal(long.length, 2000);
    assert.ok(long.endsWith('…'));
    assert.equal(sanitizeText('ok'), 'ok');
    assert.equal(stripControlChars('line1\n\u001b[31mred\u001b[0m\tx\n'), 'line1\n[31mred[0m\tx\n');
    for (let n = 0; n < 200; n++) {
      // Random UTF-16 text, control characters and lone surrogates included.
      const raw = randomBytes(2 * (n * 25));
      const text = String.fromCharCode(
        ...Array.from({ length: raw.length / 2 }, (_, i) => raw.readUInt16LE(2 * i) % 0x2100),
      );
      const out = sanitizeText(text);
      assert.ok(out.length <= 2000);
      assert.ok(!/[\u0000-\u001f\u007f-\u009f\u202a-\u202e]/.test(out)); // eslint-disable-line no-control-regex
    }
  });
});

describe('target guard', () => {
  const dns: Record<string, string[]> = {
    'pub.sourcegraph.com': ['93.184.216.34'],
    'loop.sourcegraph.com': ['127.0.0.1'],
    'mapped.sourcegraph.com': ['::ffff:10.0.0.1'],
    'ula.sourcegraph.com': ['fd00::1'],
    'nat64.sourcegraph.com': ['64:ff9b::a9fe:a9fe'],
  };
  const resolver: Resolver = async (host) =>
    (dns[host] ?? []).map((a) => ({ address: a, family: a.includes(':') ? 6 : 4 }));

  test('classifies addresses', () => {
    assert.equal(nonPublicKind('93.184.216.34'), null);
    assert.equal(nonPublicKind('2606:4700::1111'), null);
    assert.equal(nonPublicKind('127.0.0.53'), 'loopback');
    assert.equal(nonPublicKind('::1'), 'loopback');
    assert.equal(nonPublicKind('10.9.8.7'), 'private');
    assert.equal(nonPublicKind('172.31.0.1'), 'private');
    assert.equal(nonPublicKind('192.168.1.1'), 'private');
    assert.equal(nonPublicKind('100.64.0.1'), 'private');
    assert.equal(nonPublicKind('fd12::1'), 'private');
    assert.equal(nonPublicKind('169.254.169.254'), 'link-local');
    assert.equal(nonPublicKind('fe80::1'), 'link-local');
    assert.equal(nonPublicKind('0.0.0.0'), 'unspecified');
    assert.equal(nonPublicKind('::'), 'unspecified');
    assert.equal(nonPublicKind('::ffff:127.0.0.1'), 'loopback');
  });

  test('wildcard patterns admit public addresses only; explicit hosts may be internal', async () => {
    const guard = new TargetGuard(parseUrlPatterns(`${DEFAULT_SOURCEGRAPH_URLS},http://127.0.0.1:*`), resolver);
    assert.deepEqual(await guard.resolve('https://pub.sourcegraph.com/.api/graphql'), {
      address: '93.184.216.34',
      family: 4,
      pattern: 'https://*.sourcegraph.com',
    });
    assert.equal((await guard.resolve('http://127.0.0.1:9/x')).address, '127.0.0.1');
    for (const [host, kind] of [
      ['loop', 'loopback'],
      ['mapped', 'private'],
      ['ula', 'private'],
      ['nat64', 'translation'],
    ]) {
      await assert.rejects(
        guard.resolve(`https://${host}.sourcegraph.com`),
        (err) => err instanceof TargetRefusedError && err.message.includes(kind),
        host,
      );
    }
    await assert.rejects(guard.resolve('https://nowhere.sourcegraph.com'), /resolved to no address/);
  });

  test('the pinned lookup connects to the checked address whatever name the request carries', async () => {
    const server = http.createServer((req, res) => res.end(req.headers.host));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const port = (server.address() as AddressInfo).port;
      const body = await new Promise<string>((resolve, reject) => {
        http
          .get(
            { host: 'never-resolves.invalid', port, lookup: pinnedLookup({ address: '127.0.0.1', family: 4 }) },
            (res) => {
              let text = '';
              res.on('data', (c) => (text += c));
              res.on('end', () => resolve(text));
            },
          )
          .on('error', reject);
      });
      assert.equal(body, `never-resolves.invalid:${port}`);
    } finally {
      server.close();
    }
  });
});
