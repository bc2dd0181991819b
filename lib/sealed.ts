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
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { CodecKey } from './codec';

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
