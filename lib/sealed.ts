/**
 * Sealed values: a small AES-256-GCM envelope for personal data that must cross Temporal (and so its history) but
 * must never be readable there, such as the recipients of a GDPR deletion. The client seals, only the activity that
 * uses the value unseals, and workflow code only ever carries the envelope.
 *
 * Keys are the payload-codec keys (`MANAGED_SMTP_CODEC_KEYS`, parsed by lib/codec.ts): the first encrypts, any
 * loaded key decrypts, so rotation works the same way. A `context` string is bound as additional authenticated
 * data, so an envelope made for one request cannot be replayed into another. Errors name key ids, never key
 * material or plaintext.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import { z } from 'zod';
import type { CodecKey } from './codec';
import { MAX_ADDRESS_LENGTH, MAX_LISTED_RECIPIENTS } from '../contract/gdpr';

/** An AES-256-GCM envelope; every field is JSON-safe. */
export interface Sealed {
  /** Id of the key that sealed it. */
  keyId: string;
  /** base64 of the 12-byte random IV. */
  iv: string;
  /** base64 of ciphertext ‖ 16-byte GCM tag. */
  data: string;
}

/** A sealed value could not be opened (unknown key, altered data, wrong context). One line, no secrets. */
export class UnsealError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnsealError';
  }
}

const IV_BYTES = 12;
const TAG_BYTES = 16;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Whether `v` has the shape of a Sealed envelope (not whether it opens). */
export function isSealed(v: unknown): v is Sealed {
  if (v === null || typeof v !== 'object') return false;
  const s = v as Record<string, unknown>;
  return (
    typeof s.keyId === 'string' &&
    s.keyId.length > 0 &&
    typeof s.iv === 'string' &&
    BASE64.test(s.iv) &&
    typeof s.data === 'string' &&
    BASE64.test(s.data)
  );
}

/** Seals `plaintext` with the current key (`keys[0]`), bound to `context`. */
export function seal(keys: readonly CodecKey[], plaintext: string, context = ''): Sealed {
  if (keys.length === 0) throw new Error('seal: no keys');
  const { id, key } = keys[0];
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(context, 'utf8'));
  const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final(), cipher.getAuthTag()]);
  return { keyId: id, iv: iv.toString('base64'), data: body.toString('base64') };
}

/** Opens an envelope sealed with any of `keys` and the same `context`. Throws UnsealError otherwise. */
export function unseal(keys: readonly CodecKey[], sealed: Sealed, context = ''): string {
  if (!isSealed(sealed)) throw new UnsealError('sealed value is malformed');
  const found = keys.find((k) => k.id === sealed.keyId);
  if (!found) {
    // Ids are names, not secrets; listing the loaded ones makes a missed rotation step obvious.
    throw new UnsealError(
      `sealed with key id ${JSON.stringify(sealed.keyId.slice(0, 64))}, which is not loaded (loaded: ${
        keys.map((k) => k.id).join(', ') || 'none'
      })`,
    );
  }
  const iv = Buffer.from(sealed.iv, 'base64');
  const data = Buffer.from(sealed.data, 'base64');
  if (iv.length !== IV_BYTES || data.length < TAG_BYTES) throw new UnsealError('sealed value is malformed');
  const decipher = createDecipheriv('aes-256-gcm', found.key, iv);
  decipher.setAAD(Buffer.from(context, 'utf8'));
  decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
  try {
    return Buffer.concat([decipher.update(data.subarray(0, data.length - TAG_BYTES)), decipher.final()]).toString(
      'utf8',
    );
  } catch {
    throw new UnsealError(
      `sealed value (key id "${found.id}") failed authentication: wrong key, altered data or another request`,
    );
  }
}

// ---------------------------------------------------------------- GDPR request secrets (issue 11)

/**
 * The payload of a per-request GDPR secret (`managed-smtp-gdpr-<requestId>` in the instance's own project). It is
 * the only place the recipients of a request ever rest, and Secret Manager is what protects them (IAM, encryption at
 * rest); destroying its versions and deleting it at the end is the crypto-shredding. It also holds the request's
 * HMAC key, so the keyed hashes that verification matches against stay useless without the secret.
 *
 * Stage `recipients` holds the addresses (until filed); stage `hashes` only their keyed hashes (for verification).
 * `context` binds the payload to one instance and request, so a secret copied into another request is refused.
 */
export const gdprSecretPayload = z.discriminatedUnion('stage', [
  z.object({
    v: z.literal(1),
    stage: z.literal('recipients'),
    context: z.string().min(1),
    hmacKey: z.string().regex(/^[A-Za-z0-9+/]{43}=$/),
    /** The listed addresses, or null for every recipient the subaccount knows (events and suppression list). */
    recipients: z.array(z.string()).nullable(),
  }),
  z.object({
    v: z.literal(1),
    stage: z.literal('hashes'),
    context: z.string().min(1),
    hmacKey: z.string().regex(/^[A-Za-z0-9+/]{43}=$/),
    hashes: z.array(z.string().regex(/^[0-9a-f]{64}$/)),
  }),
]);

/** A parsed GDPR request secret. */
export type GdprSecretPayload = z.infer<typeof gdprSecretPayload>;

/** A fresh 256-bit HMAC key for one request, base64. */
export function newHmacKey(): string {
  return randomBytes(32).toString('base64');
}

/** The keyed hash of an address (trimmed, lowercased: SparkPost compares addresses that way). */
export function recipientHash(hmacKey: string, address: string): string {
  return createHmac('sha256', Buffer.from(hmacKey, 'base64')).update(address.trim().toLowerCase()).digest('hex');
}

/** Parses a GDPR secret bound to `context`; the error says what is wrong and never quotes the payload. */
export function parseGdprSecret(text: string, context: string): GdprSecretPayload {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new UnsealError('the GDPR request secret is not JSON');
  }
  const parsed = gdprSecretPayload.safeParse(raw);
  if (!parsed.success) throw new UnsealError('the GDPR request secret does not have the expected shape');
  if (parsed.data.context !== context) throw new UnsealError('the GDPR request secret belongs to another request');
  return parsed.data;
}

/** Secret Manager takes at most 64 KiB per version: a payload is gzipped and spread over versions of this size. */
const CHUNK_CHARS = 48 * 1024;
/** Most versions one payload may take (about 2.5 MB of gzip). */
const MAX_CHUNKS = 50;

const chunkSchema = z.object({
  v: z.literal(1),
  /** Random id of one write: parts of different writes never mix. */
  write: z.string().regex(/^[0-9a-f]{16}$/),
  part: z.number().int().min(0),
  parts: z.number().int().min(1).max(MAX_CHUNKS),
  gz: z.string(),
});

/**
 * Most bytes a GDPR secret payload may unzip to (about 15 MiB): the larger of a listed request at its longest
 * (MAX_LISTED_RECIPIENTS addresses of MAX_ADDRESS_LENGTH characters, each escaped to at most 6 bytes of JSON) and as
 * many keyed hashes (67 bytes of JSON each) as MAX_CHUNKS versions of gzip can hold (at least 32 bytes each: a hash
 * is 32 random bytes), plus the rest of the payload. Anything larger is no request smtpctl made: a compressed bomb is
 * refused while it is unzipped, before it can exhaust the worker's memory.
 */
export const MAX_GDPR_SECRET_BYTES =
  4096 +
  Math.max(
    MAX_LISTED_RECIPIENTS * (MAX_ADDRESS_LENGTH * 6 + 3),
    Math.ceil((MAX_CHUNKS * CHUNK_CHARS * 3) / 4 / 32) * 67,
  );

/** The version payloads that carry `payload` (gzip, base64, in parts of at most 48 KiB). */
export function gdprSecretVersions(payload: GdprSecretPayload): string[] {
  const json = Buffer.from(JSON.stringify(payload), 'utf8');
  // Never written larger than readGdprSecretVersions reads.
  if (json.length > MAX_GDPR_SECRET_BYTES) {
    throw new UnsealError(`the GDPR request is too large for its secret (${json.length} bytes)`);
  }
  const gz = gzipSync(json).toString('base64');
  const parts = Math.max(1, Math.ceil(gz.length / CHUNK_CHARS));
  if (parts > MAX_CHUNKS) throw new UnsealError(`the GDPR request is too large for its secret (${parts} parts)`);
  const write = randomBytes(8).toString('hex');
  return Array.from({ length: parts }, (_, part) =>
    JSON.stringify({ v: 1, write, part, parts, gz: gz.slice(part * CHUNK_CHARS, (part + 1) * CHUNK_CHARS) }),
  );
}

/**
 * The payload spread over `versions` (version texts, oldest first): of the complete writes, the newest one whose
 * stage is `hashes` wins (it supersedes the list), else the newest. Null when no write is complete.
 */
export function readGdprSecretVersions(versions: readonly string[], context: string): GdprSecretPayload | null {
  const writes = new Map<string, { parts: number; got: Map<number, string>; last: number }>();
  versions.forEach((text, index) => {
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      return;
    }
    const c = chunkSchema.safeParse(raw);
    if (!c.success || c.data.part >= c.data.parts) return;
    const w = writes.get(c.data.write) ?? { parts: c.data.parts, got: new Map<number, string>(), last: index };
    w.got.set(c.data.part, c.data.gz);
    w.last = Math.max(w.last, index);
    writes.set(c.data.write, w);
  });
  const complete = [...writes.values()].filter((w) => w.got.size === w.parts).sort((a, b) => b.last - a.last);
  const payloads = complete.map((w) => {
    const gz = Array.from({ length: w.parts }, (_, i) => w.got.get(i)!).join('');
    let text: string;
    try {
      // Bounded: a compressed bomb stops here, at the bound, instead of filling the worker's memory.
      text = gunzipSync(Buffer.from(gz, 'base64'), { maxOutputLength: MAX_GDPR_SECRET_BYTES }).toString('utf8');
    } catch (err) {
      if (err instanceof RangeError || (err as { code?: unknown }).code === 'ERR_BUFFER_TOO_LARGE') {
        throw new UnsealError(
          `the GDPR request secret unzips to more than ${MAX_GDPR_SECRET_BYTES} bytes, more than any request holds`,
        );
      }
      throw new UnsealError('the GDPR request secret is not valid gzip');
    }
    return parseGdprSecret(text, context);
  });
  return payloads.find((p) => p.stage === 'hashes') ?? payloads[0] ?? null;
}
