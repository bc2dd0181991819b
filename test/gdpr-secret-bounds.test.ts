/**
 * A GDPR request secret is data from Secret Manager, written by smtpctl but readable and writable by anyone with
 * access to the instance's project: a compressed bomb in its versions is refused by size, before it is unzipped
 * whole, while the largest request smtpctl can make still reads back. No server needed.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { MAX_LISTED_RECIPIENTS } from '../contract/gdpr';
import {
  MAX_GDPR_SECRET_BYTES,
  UnsealError,
  gdprSecretVersions,
  newHmacKey,
  readGdprSecretVersions,
} from '../lib/sealed';

const CONTEXT = 'acme/gdpr-1';

/** Version texts carrying `raw` as one write (what gdprSecretVersions makes, without its checks). */
function versionsOf(raw: Buffer): string[] {
  const gz = gzipSync(raw, { level: 9 }).toString('base64');
  const size = 48 * 1024;
  const parts = Math.ceil(gz.length / size);
  return Array.from({ length: parts }, (_, part) =>
    JSON.stringify({ v: 1, write: 'ab'.repeat(8), part, parts, gz: gz.slice(part * size, (part + 1) * size) }),
  );
}

describe('GDPR request secrets', () => {
  test('a compressed bomb is refused with one clear line, without unzipping it whole', () => {
    const bomb = Buffer.alloc(200 * 1024 * 1024, 0x20); // 200 MiB of spaces: about 200 KiB of gzip
    const versions = versionsOf(bomb);
    assert.ok(versions.length <= 50, `${versions.length} versions`);
    const before = process.memoryUsage().arrayBuffers;
    assert.throws(
      () => readGdprSecretVersions(versions, CONTEXT),
      (err: unknown) => {
        assert.ok(err instanceof UnsealError, String(err));
        assert.match(err.message, new RegExp(`more than ${MAX_GDPR_SECRET_BYTES} bytes`));
        assert.ok(!err.message.includes('\n'));
        return true;
      },
    );
    const grown = process.memoryUsage().arrayBuffers - before;
    assert.ok(grown < 64 * 1024 * 1024, `${grown} bytes held after the refusal`);
  });

  test('the largest listed request still reads back', () => {
    const recipients = Array.from({ length: MAX_LISTED_RECIPIENTS }, (_, i) =>
      `${i}.${randomBytes(120).toString('hex').slice(0, 240)}@example.com`.slice(-254),
    );
    const payload = {
      v: 1 as const,
      stage: 'recipients' as const,
      context: CONTEXT,
      hmacKey: newHmacKey(),
      recipients,
    };
    assert.deepEqual(readGdprSecretVersions(gdprSecretVersions(payload), CONTEXT), payload);
  });
});
