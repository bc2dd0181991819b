/**
 * Showing a recipient without showing the address: a mask for people (`j***@e***.com`) and a keyed hash for
 * matching records later (HMAC-SHA256, so the hash of a guessed address cannot be computed without the key), plus a
 * scrubber for vendor texts (bounce reasons quote the address). Used by `why`, `suppression` and their audit records.
 */
import { createHmac, type KeyObject } from 'node:crypto';

/** `<john@example.com>` (a bounce reason's form): replaced inside its brackets. */
const BRACKETED = /<[^\s<>@]*@[^\s<>]*>/g;
/**
 * Anything else around an `@`, whole: an address SparkPost accepts may hold any non-space character before the `@`
 * (quotes, parentheses, angle brackets), and a scrubber that stopped at one would leave the part before it behind.
 */
const ADDRESS_TOKEN = /[^\s@]+@[^\s@]+/g;

/** Replaces every address-shaped token of `text` with `[address]` (no other change). */
export function replaceAddresses(text: string): string {
  return text.replace(BRACKETED, '<[address]>').replace(ADDRESS_TOKEN, '[address]');
}

/** `john.doe@example.com` → `j***@e***.com`. */
export function maskAddress(address: string): string {
  const at = address.lastIndexOf('@');
  if (at < 1) return '***';
  const local = address.slice(0, at);
  const domain = address.slice(at + 1);
  const dot = domain.lastIndexOf('.');
  const tld = dot > 0 ? domain.slice(dot) : '';
  return `${local[0]}***@${domain[0] ?? ''}***${tld}`;
}

/** A keyed hash of the normalised address: `hmac-sha256:<keyId>:<32 hex>`. */
export function recipientHash(address: string, key: { id: string; key: Buffer | string | KeyObject }): string {
  const mac = createHmac('sha256', key.key).update(address.trim().toLowerCase()).digest('hex').slice(0, 32);
  return `hmac-sha256:${key.id}:${mac}`;
}

/** Replaces every address in a vendor text with `[address]`, and bounds it to one line. */
export function scrubAddresses(text: string, max = 300): string {
  const t = replaceAddresses(text).replace(/\s+/g, ' ').trim();
  return t.length > max ? `${t.slice(0, max)}…` : t;
}

/** Whether a text holds something shaped like an address. */
export function holdsAddress(text: string): boolean {
  return new RegExp(ADDRESS_TOKEN.source).test(text);
}
