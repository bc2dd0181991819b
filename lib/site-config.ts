/**
 * Reads and edits the email settings of a Sourcegraph site configuration (JSONC) with jsonc-parser, so every other
 * key and every comment survives. Sourcegraph path segments are whole keys ("email.smtp" is one key, not a path).
 */
import { applyEdits, modify, parse, type ParseError } from 'jsonc-parser';

/** The three keys managed SMTP owns. */
export const EMAIL_KEYS = ['email.address', 'email.smtp', 'email.senderName'] as const;

/** What Sourcegraph returns instead of a stored secret. */
export const REDACTED = 'REDACTED';

/** The value of each email key; null means the key is absent. */
export interface EmailSettings {
  address: string | null;
  smtp: Record<string, unknown> | null;
  senderName: string | null;
}

/** The managed `email.smtp` value. `password` is the send key: build it only inside an activity. */
export interface ManagedSmtp {
  host: string;
  port: number;
  username: string;
  password: string;
  authentication: 'PLAIN';
}

/** Whose email settings these are. */
export type Ownership = 'none' | 'managed' | 'customer';

const FORMAT = { formattingOptions: { insertSpaces: true, tabSize: 2, eol: '\n' } };

/** Parses JSONC; throws an Error naming the first problem (never echoing the text, which may hold secrets). */
export function parseSiteConfig(contents: string): Record<string, unknown> {
  const errors: ParseError[] = [];
  const value = parse(contents, errors, { allowTrailingComma: true, disallowComments: false });
  if (errors.length > 0) throw new Error(`site configuration is not valid JSONC (error at offset ${errors[0].offset})`);
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new Error('site configuration is not a JSON object');
  }
  return value as Record<string, unknown>;
}

/** The email settings of a configuration. */
export function readEmailSettings(contents: string): EmailSettings {
  const config = parseSiteConfig(contents);
  const address = config['email.address'];
  const smtp = config['email.smtp'];
  const senderName = config['email.senderName'];
  return {
    address: typeof address === 'string' ? address : null,
    smtp: smtp && typeof smtp === 'object' && !Array.isArray(smtp) ? (smtp as Record<string, unknown>) : null,
    senderName: typeof senderName === 'string' ? senderName : null,
  };
}

/**
 * Classifies settings: 'none' when there is no (non-empty) email.smtp; 'managed' when it points at the managed relay
 * and the sender is on the managed domain; otherwise 'customer' (the customer configured their own).
 */
export function ownershipOf(settings: EmailSettings, managed: { relayHost: string; senderDomain: string }): Ownership {
  if (!settings.smtp || Object.keys(settings.smtp).length === 0) return 'none';
  const hostIsRelay = String(settings.smtp.host ?? '').toLowerCase() === managed.relayHost.toLowerCase();
  const onDomain = (settings.address ?? '').toLowerCase().endsWith(`@${managed.senderDomain.toLowerCase()}`);
  return hostIsRelay && onDomain ? 'managed' : 'customer';
}

function setKey(contents: string, key: string, value: unknown): string {
  return applyEdits(contents, modify(contents, [key], value, FORMAT));
}

/** Sets the managed settings; senderName is only touched when given. */
export function applyManagedSettings(
  contents: string,
  settings: { address: string; smtp: ManagedSmtp; senderName?: string },
): string {
  parseSiteConfig(contents);
  let out = setKey(contents, 'email.address', settings.address);
  out = setKey(out, 'email.smtp', { ...settings.smtp });
  if (settings.senderName !== undefined) out = setKey(out, 'email.senderName', settings.senderName);
  return out;
}

/**
 * Puts back what enable replaced: each key gets its previous value, or is removed when it had none. A previous
 * password that was only ever seen as REDACTED cannot be restored (Sourcegraph never returns it), so it is left out
 * rather than written as REDACTED (which Sourcegraph would resolve to the managed key being revoked).
 */
export function restoreSettings(contents: string, previous: EmailSettings): string {
  parseSiteConfig(contents);
  let out = setKey(contents, 'email.address', previous.address ?? undefined);
  out = setKey(out, 'email.smtp', previous.smtp ? withoutRedacted(previous.smtp) : undefined);
  out = setKey(out, 'email.senderName', previous.senderName ?? undefined);
  return out;
}

/** A copy of smtp settings without fields that read back as REDACTED. */
export function withoutRedacted(smtp: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(smtp).filter(([, v]) => v !== REDACTED));
}

/** Whether the (redacted) settings hold a password we could not read. */
export function hasRedactedSecret(smtp: Record<string, unknown> | null): boolean {
  return !!smtp && Object.values(smtp).includes(REDACTED);
}

/** Whether two settings are the same, comparing values (not formatting). */
export function sameSettings(a: EmailSettings, b: EmailSettings): boolean {
  return JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));
}

function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.keys(value as object)
        .sort()
        .map((k) => [k, canonical((value as Record<string, unknown>)[k])]),
    );
  }
  return value;
}
