/**
 * Payload encryption: an AES-256-GCM PayloadCodec shared by the worker, the client and the codec server, so
 * workflow inputs, results and activity arguments reach Temporal (and its history) only as ciphertext.
 *
 * Wire format of an encrypted payload: metadata `encoding: binary/encrypted` and `encryption-key-id: <id>`;
 * data = 12-byte random IV ‖ AES-256-GCM ciphertext of the serialised original Payload ‖ 16-byte tag.
 * Several keys may be loaded so keys can rotate: the first ("current") encrypts, every loaded key decrypts.
 *
 * Keys come from the environment: MANAGED_SMTP_CODEC_KEYS (`id:base64key,...`) or MANAGED_SMTP_CODEC_KEY_SECRET
 * (a Secret Manager version holding the same text). Errors name ids and variables, never key material.
 */
import { createCipheriv, createDecipheriv, createSecretKey, randomBytes, type KeyObject } from 'node:crypto';
import { ValueError, type DataConverter, type Payload, type PayloadCodec } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import type { SecretStore } from '../vendors/secret-manager';

/** `encoding` metadata value of payloads this codec produced. */
export const ENCODING_ENCRYPTED = 'binary/encrypted';
/** Metadata key naming the key a payload was encrypted with. */
export const METADATA_KEY_ID = 'encryption-key-id';
/** Environment variable holding `id:base64key,...` (first = current). */
export const CODEC_KEYS_ENV = 'MANAGED_SMTP_CODEC_KEYS';
/** Environment variable naming a Secret Manager version that holds `id:base64key,...`. */
export const CODEC_KEY_SECRET_ENV = 'MANAGED_SMTP_CODEC_KEY_SECRET';

const METADATA_ENCODING = 'encoding';
const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_ID = /^[A-Za-z0-9._-]{1,64}$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const VERSION_NAME = /^projects\/[^/\s]+\/secrets\/[^/\s]+\/versions\/[^/\s]+$/;
const MAX_KEYS = 32;

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

/** One named AES-256 key. KeyObject keeps the bytes out of util.inspect and JSON.stringify. */
export interface CodecKey {
  id: string;
  key: KeyObject;
}

/** Thrown when the configured keys are missing, malformed or unreadable; the message is one line, without key material. */
export class CodecConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CodecConfigError';
  }
}

/** AES-256-GCM PayloadCodec with key rotation: the first key encrypts, all keys decrypt. */
export class AesGcmCodec implements PayloadCodec {
  private readonly keys = new Map<string, KeyObject>();
  /** Id of the key new payloads are encrypted with. */
  readonly currentKeyId: string;

  /** `keys[0]` is the current key. Throws on no keys, duplicate or malformed ids, or keys that are not 32 bytes. */
  constructor(keys: readonly CodecKey[]) {
    if (keys.length === 0) throw new CodecConfigError('AesGcmCodec needs at least one key');
    for (const { id, key } of keys) {
      if (!KEY_ID.test(id)) throw new CodecConfigError(`AesGcmCodec: invalid key id ${JSON.stringify(id)}`);
      if (this.keys.has(id)) throw new CodecConfigError(`AesGcmCodec: duplicate key id "${id}"`);
      if (key.type !== 'secret' || key.symmetricKeySize !== KEY_BYTES) {
        throw new CodecConfigError(`AesGcmCodec: key "${id}" must be a ${KEY_BYTES}-byte secret key`);
      }
      this.keys.set(id, key);
    }
    this.currentKeyId = keys[0].id;
  }

  /** Ids of every loaded key, current first. */
  get keyIds(): string[] {
    return [...this.keys.keys()];
  }

  /** Encrypts every payload with the current key. */
  async encode(payloads: Payload[]): Promise<Payload[]> {
    const key = this.keys.get(this.currentKeyId) as KeyObject;
    const keyId = utf8.encode(this.currentKeyId);
    return payloads.map((payload) => {
      const plaintext = temporal.api.common.v1.Payload.encode(payload).finish();
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
      return {
        metadata: { [METADATA_ENCODING]: utf8.encode(ENCODING_ENCRYPTED), [METADATA_KEY_ID]: keyId },
        data: Buffer.concat([iv, body, cipher.getAuthTag()]),
      };
    });
  }

  /** Decrypts payloads this codec encrypted (with any loaded key); passes every other payload through unchanged. */
  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((payload) => this.decodeOne(payload));
  }

  private decodeOne(payload: Payload): Payload {
    const encoding = payload.metadata?.[METADATA_ENCODING];
    if (!encoding || fromUtf8.decode(encoding) !== ENCODING_ENCRYPTED) return payload;
    const idBytes = payload.metadata?.[METADATA_KEY_ID];
    if (!idBytes || idBytes.length === 0) {
      throw new ValueError(`encrypted payload without ${METADATA_KEY_ID} metadata`);
    }
    const keyId = fromUtf8.decode(idBytes);
    const key = this.keys.get(keyId);
    if (!key) {
      // Ids are names, not secrets; listing the loaded ones makes a missed rotation step obvious.
      throw new ValueError(
        `encrypted payload uses unknown key id ${JSON.stringify(keyId.slice(0, 64))} (loaded: ${this.keyIds.join(', ')})`,
      );
    }
    const data = payload.data ?? new Uint8Array(0);
    if (data.length < IV_BYTES + TAG_BYTES) {
      throw new ValueError(`encrypted payload (key id "${keyId}") is too short: ${data.length} bytes`);
    }
    const bytes = Buffer.from(data.buffer, data.byteOffset, data.length);
    const decipher = createDecipheriv('aes-256-gcm', key, bytes.subarray(0, IV_BYTES));
    decipher.setAuthTag(bytes.subarray(bytes.length - TAG_BYTES));
    let plaintext: Buffer;
    try {
      plaintext = Buffer.concat([
        decipher.update(bytes.subarray(IV_BYTES, bytes.length - TAG_BYTES)),
        decipher.final(),
      ]);
    } catch {
      throw new ValueError(`encrypted payload (key id "${keyId}") failed authentication: wrong key or altered data`);
    }
    try {
      const inner = temporal.api.common.v1.Payload.decode(plaintext);
      const { metadata, data, externalPayloads } = inner;
      return externalPayloads.length ? { metadata, data, externalPayloads } : { metadata, data };
    } catch {
      throw new ValueError(`encrypted payload (key id "${keyId}") does not hold a Payload`);
    }
  }
}

/**
 * Parses `id:base64key,id:base64key,...` (first = current). `source` names where the text came from (a variable,
 * or a variable and secret version) and starts every error message.
 */
export function parseCodecKeys(text: string, source: string): CodecKey[] {
  const fail = (why: string): never => {
    throw new CodecConfigError(`${source}: ${why}`);
  };
  const entries = text.trim().split(',');
  if (entries.length === 1 && entries[0].trim() === '') fail('no keys: expected id:base64key[,id:base64key...]');
  if (entries.length > MAX_KEYS) fail(`at most ${MAX_KEYS} keys, got ${entries.length}`);
  const keys: CodecKey[] = [];
  const seen = new Set<string>();
  entries.forEach((raw, i) => {
    const entry = raw.trim();
    const n = i + 1;
    // Never echo an entry: without its colon it may be a bare key.
    const colon = entry.indexOf(':');
    if (colon < 0) fail(`entry ${n} must be id:base64key`);
    const id = entry.slice(0, colon).trim();
    const encoded = entry.slice(colon + 1).trim();
    if (!KEY_ID.test(id)) fail(`entry ${n}: key id must be 1-64 characters of A-Z a-z 0-9 . _ -`);
    if (seen.has(id)) fail(`duplicate key id "${id}"`);
    seen.add(id);
    if (!BASE64.test(encoded)) fail(`key "${id}" is not valid base64`);
    const bytes = Buffer.from(encoded, 'base64');
    if (bytes.length !== KEY_BYTES) fail(`key "${id}" must be ${KEY_BYTES} bytes, got ${bytes.length}`);
    keys.push({ id, key: createSecretKey(bytes) });
    bytes.fill(0);
  });
  return keys;
}

/** A fresh random key as `id:base64key`, e.g. for a local dev stack or to rotate (prepend it to the list). */
export function generateCodecKey(id: string): string {
  if (!KEY_ID.test(id)) throw new CodecConfigError(`invalid key id ${JSON.stringify(id)}`);
  return `${id}:${randomBytes(KEY_BYTES).toString('base64')}`;
}

/**
 * The codec keys configured in `env`: MANAGED_SMTP_CODEC_KEYS, or the Secret Manager version named by
 * MANAGED_SMTP_CODEC_KEY_SECRET (read once, through SecretStore; SECRET_MANAGER_EMULATOR_HOST honoured).
 * Null when neither is set (no encryption). Throws CodecConfigError with one line naming the variable.
 */
export async function codecKeysFromEnvironment(env: NodeJS.ProcessEnv = process.env): Promise<CodecKey[] | null> {
  const inline = env[CODEC_KEYS_ENV]?.trim() ?? '';
  const secret = env[CODEC_KEY_SECRET_ENV]?.trim() ?? '';
  if (inline && secret) throw new CodecConfigError(`set only one of ${CODEC_KEYS_ENV} and ${CODEC_KEY_SECRET_ENV}`);
  if (inline) return parseCodecKeys(inline, CODEC_KEYS_ENV);
  if (!secret) return null;
  if (!VERSION_NAME.test(secret)) {
    throw new CodecConfigError(`${CODEC_KEY_SECRET_ENV} must be projects/P/secrets/S/versions/V`);
  }
  let store: SecretStore;
  try {
    // Loaded only here: the Secret Manager client takes about as long to load as the Temporal client (smtpctl start).
    const { SecretStore } = await import('../vendors/secret-manager.js');
    store = SecretStore.fromEnvironment(env);
  } catch (err) {
    throw new CodecConfigError(`${CODEC_KEY_SECRET_ENV}: ${oneLine(err)}`);
  }
  try {
    let data: string;
    try {
      ({ data } = await store.access(secret));
    } catch (err) {
      // SecretStore errors carry the method, resource and server message, never the payload.
      throw new CodecConfigError(`${CODEC_KEY_SECRET_ENV}: ${oneLine(err)}`);
    }
    return parseCodecKeys(data, `${CODEC_KEY_SECRET_ENV} (${secret})`);
  } finally {
    await store.close();
  }
}

/** An AesGcmCodec over the keys configured in `env`, or null when none are (see codecKeysFromEnvironment). */
export async function codecFromEnvironment(env: NodeJS.ProcessEnv = process.env): Promise<AesGcmCodec | null> {
  const keys = await codecKeysFromEnvironment(env);
  return keys ? new AesGcmCodec(keys) : null;
}

/** Path of the module exporting the failure converter that encodes messages and stacks (lib/failure-converter.ts). */
export const FAILURE_CONVERTER_PATH = require.resolve('./failure-converter');

/**
 * The data converter for worker, clients and schedules: `{ payloadCodecs: [codec], failureConverterPath }` (failure
 * messages and stack traces encrypted with the payloads), or undefined (SDK default) without a codec.
 */
export function dataConverterFor(codec: PayloadCodec | null | undefined): DataConverter | undefined {
  return codec ? { payloadCodecs: [codec], failureConverterPath: FAILURE_CONVERTER_PATH } : undefined;
}

function oneLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.replace(/\s+/g, ' ').trim();
}
