/**
 * Client for the parts of a Sourcegraph instance's GraphQL API that managed-smtp uses: reading and writing the
 * site configuration, and asking the instance to send a test email. It throws only VendorError, never retries
 * (Temporal does), and keeps the access token and the configuration text (which holds SMTP passwords) out of
 * every error message.
 */
import axios, { type AxiosRequestConfig, type AxiosResponse } from 'axios';
import { findNodeAtLocation, parseTree } from 'jsonc-parser';

import { TIMEOUT_CODE, VendorError, kindForHttpStatus, parseRetryAfter, type VendorErrorKind } from '../lib/errors';
import { sanitizeText } from '../lib/sanitize';
import { TargetRefusedError, pinnedLookup, type PinnedTarget } from '../lib/target-guard';
import { SEND_TEST_EMAIL_MUTATION, SITE_CONFIG_QUERY, UPDATE_SITE_CONFIG_MUTATION } from './sourcegraph-documents';

/** How to reach one Sourcegraph instance. */
export interface SourcegraphClientOptions {
  /** Instance base URL, e.g. `https://acme.sourcegraph.com` (may carry a path prefix, with or without '/'). */
  url: string;
  /** A site admin's access token, sent as `Authorization: token <token>`. */
  token: string;
  /** Per-request timeout in milliseconds (default 15 000), for the whole exchange (a slow drip included). */
  timeoutMs?: number;
  /**
   * Checks the URL and resolves it to the one address to connect to, right before each request (lib/target-guard.ts).
   * Without it the system resolver is used unchecked (tests of the client itself).
   */
  resolveTarget?: (url: string) => Promise<PinnedTarget>;
  /** Largest response body read, in bytes (default 4 MiB); a longer one is cut off and refused. */
  maxBodyBytes?: number;
}

/** The site configuration as the API returns it. */
export interface SiteConfig {
  /** Version id; pass it back as `lastID` when writing. */
  id: number;
  /** JSONC text with `email.smtp.password` (and on newer versions `username`) reading as "REDACTED". */
  contents: string;
  /** Schema problems and deprecation notes the instance reports for the stored configuration. */
  validationMessages: string[];
}

/** Outcome of a `sendTestEmail` call that the instance answered. */
export interface TestEmailResult {
  /** True when the instance reports that its SMTP server accepted the message. */
  ok: boolean;
  /** The instance's own sentence (success, or `Failed to send test email: ...`). */
  message: string;
  /** The 5-character id in the message subject, when the instance reports one (4.x and later). */
  testId?: string;
}

const DEFAULT_TIMEOUT_MS = 15_000;
/** Largest response body read from an instance. */
export const MAX_BODY_BYTES = 4 * 1024 * 1024;
/** Most validation messages kept from one configuration read. */
const MAX_VALIDATION_MESSAGES = 50;
/** Longest server text quoted in an error message. */
const MAX_QUOTE = 300;
const TOKEN_PATTERN = /^[\x21-\x7e]+$/;

interface GraphQLErrorBody {
  message?: unknown;
  path?: unknown;
}

interface GraphQLBody {
  data?: unknown;
  errors?: unknown;
}

/** A GraphQL response that carried errors, before it is classified. */
class GraphQLErrors {
  constructor(
    readonly messages: string[],
    /** True when no error has a `path`: the request itself was rejected (parse, validation, variables). */
    readonly requestLevel: boolean,
  ) {}
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Joins the instance URL and the GraphQL path without losing a path prefix or doubling a slash. */
export function graphqlEndpoint(baseUrl: string): string {
  const u = new URL(baseUrl);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new TypeError('unsupported protocol');
  u.pathname = `${u.pathname.replace(/\/+$/, '')}/.api/graphql`;
  // Credentials in the URL would compete with the token header (and end up in logs).
  u.username = '';
  u.password = '';
  u.search = '';
  u.hash = '';
  return u.toString();
}

/** Values of `email.smtp.password`/`username` in a config text, so they can be scrubbed from echoed messages. */
function secretsIn(configText: string): string[] {
  const tree = parseTree(configText);
  if (!tree) return [];
  const out: string[] = [];
  for (const key of ['password', 'username']) {
    const node = findNodeAtLocation(tree, ['email.smtp', key]);
    if (node && typeof node.value === 'string' && node.value.length >= 4 && node.value !== 'REDACTED')
      out.push(node.value);
  }
  return out;
}

/** Client of one Sourcegraph instance's GraphQL API. */
export class SourcegraphClient {
  private readonly endpoint: string;
  private readonly token: string;
  private readonly timeoutMs: number;
  private readonly resolveTarget?: (url: string) => Promise<PinnedTarget>;
  private readonly maxBodyBytes: number;

  /** Validates the options; a bad URL or token throws VendorError 'invalid' (naming neither value). */
  constructor(opts: SourcegraphClientOptions) {
    try {
      this.endpoint = graphqlEndpoint(opts.url);
    } catch {
      throw new VendorError({
        vendor: 'sourcegraph',
        kind: 'invalid',
        message: 'Sourcegraph client: the instance URL is not an absolute http(s) URL',
      });
    }
    if (typeof opts.token !== 'string' || !TOKEN_PATTERN.test(opts.token)) {
      throw new VendorError({
        vendor: 'sourcegraph',
        kind: 'invalid',
        message: 'Sourcegraph client: the access token is empty or contains whitespace or control characters',
      });
    }
    this.token = opts.token;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.resolveTarget = opts.resolveTarget;
    this.maxBodyBytes = opts.maxBodyBytes ?? MAX_BODY_BYTES;
  }

  /** Reads the site configuration (redacted by the instance). */
  async getSiteConfig(): Promise<SiteConfig> {
    const op = 'SiteConfiguration';
    const data = await this.call(op, SITE_CONFIG_QUERY, {});
    const site = isRecord(data) ? data.site : undefined;
    const conf = isRecord(site) ? site.configuration : undefined;
    if (
      !isRecord(conf) ||
      !Number.isSafeInteger(conf.id) ||
      typeof conf.effectiveContents !== 'string' ||
      !Array.isArray(conf.validationMessages) ||
      !conf.validationMessages.every((m) => typeof m === 'string')
    ) {
      throw this.error(op, 'malformed', 'response data does not have the SiteConfiguration shape');
    }
    return {
      id: conf.id as number,
      contents: conf.effectiveContents,
      validationMessages: (conf.validationMessages as string[])
        .slice(0, MAX_VALIDATION_MESSAGES)
        .map((m) => sanitizeText(m)),
    };
  }

  /** Writes the whole config; a stale lastID → VendorError kind 'conflict'. */
  async updateSiteConfig(lastID: number, input: string): Promise<void> {
    const op = 'UpdateSiteConfiguration';
    const data = await this.call(op, UPDATE_SITE_CONFIG_MUTATION, { lastID, input }, secretsIn(input));
    if (!isRecord(data) || typeof data.updateSiteConfiguration !== 'boolean') {
      throw this.error(op, 'malformed', 'response data does not have the updateSiteConfiguration Boolean');
    }
  }

  /**
   * Read-modify-write with optimistic concurrency: edit(contents) returns the new text, or null for "no change".
   * On a stale id it re-reads and re-applies the edit, at most maxAttempts (default 5) times, then throws
   * 'conflict'. (This is concurrency control, not a retry of failures: any other error is thrown at once.)
   * The returned id is the one the instance gives the written version (the id read plus one); with
   * `changed: false` it is the id read. An exception thrown by `edit` itself propagates unchanged.
   */
  async editSiteConfig(
    edit: (contents: string) => string | null,
    maxAttempts = 5,
    initial?: SiteConfig,
  ): Promise<{ id: number; changed: boolean }> {
    const attempts = Math.max(1, Math.floor(maxAttempts));
    for (let attempt = 1; attempt <= attempts; attempt++) {
      // `initial` (a config read moments ago) saves the first read; if it is stale, lastID makes the write fail.
      const current = attempt === 1 && initial ? initial : await this.getSiteConfig();
      const next = edit(current.contents);
      if (next === null || next === current.contents) return { id: current.id, changed: false };
      try {
        await this.updateSiteConfig(current.id, next);
        return { id: current.id + 1, changed: true };
      } catch (err) {
        if (!(err instanceof VendorError) || err.kind !== 'conflict') throw err;
        if (attempt === attempts) {
          throw this.error(
            'UpdateSiteConfiguration',
            'conflict',
            `site config was modified by another request on each of ${attempts} attempts, write not allowed`,
          );
        }
      }
    }
    // Unreachable: the loop either returns or throws on its last attempt.
    throw this.error('UpdateSiteConfiguration', 'conflict', 'no attempt was made');
  }

  /**
   * Sends a test email. Handles all three behaviours of the reference: ok:false for the data-string failure
   * (3.38 and 4.x/5.x) and for the newest GraphQL-error failure; testId parsed from "look for test ID: <id>"
   * when present.
   */
  async sendTestEmail(to: string): Promise<TestEmailResult> {
    const op = 'SendTestEmail';
    let data: unknown;
    try {
      data = await this.call(op, SEND_TEST_EMAIL_MUTATION, { to }, [], true);
    } catch (err) {
      // The newest versions report a failed send as a GraphQL error rather than a data string.
      if (err instanceof GraphQLErrors) {
        const failure = err.messages.find((m) => m.startsWith('Failed to send test email'));
        if (failure !== undefined) return testEmailResult(false, failure);
        throw this.classify(op, err);
      }
      throw err;
    }
    const answer = isRecord(data) ? data.sendTestEmail : undefined;
    if (typeof answer !== 'string') {
      throw this.error(op, 'malformed', 'response data does not have the sendTestEmail String');
    }
    // The answer goes into the status and the history: the token is cut out like in every error message.
    const message = scrub(answer, [this.token]);
    if (message.startsWith('Sent test email')) return testEmailResult(true, message);
    if (message.startsWith('Failed to send test email')) return testEmailResult(false, message);
    throw this.error(op, 'malformed', `unrecognised sendTestEmail answer: ${quote(message)}`);
  }

  /**
   * POSTs one operation and returns its `data`. With `rawErrors`, GraphQL errors are thrown as GraphQLErrors for
   * the caller to inspect; otherwise they are classified into VendorError.
   */
  private async call(
    op: string,
    query: string,
    variables: Record<string, unknown>,
    extraSecrets: string[] = [],
    rawErrors = false,
  ): Promise<unknown> {
    let target: PinnedTarget | undefined;
    if (this.resolveTarget) {
      try {
        target = await this.resolveTarget(this.endpoint);
      } catch (err) {
        // Refused: permanent, the sentence names the URL and why. Unresolved: DNS may answer on a retry.
        const refused = err instanceof TargetRefusedError;
        throw new VendorError({
          vendor: 'sourcegraph',
          kind: refused ? 'forbidden' : 'unavailable',
          code: refused ? 'target-refused' : undefined,
          message: `Sourcegraph ${op}: ${err instanceof Error ? err.message : String(err)}`,
        });
      }
    }
    let res: AxiosResponse<string>;
    try {
      res = await axios.post<string>(this.endpoint, JSON.stringify({ query, variables, operationName: op }), {
        timeout: this.timeoutMs,
        // axios' timeout only notices an idle socket: the signal bounds the whole exchange against a slow drip.
        signal: AbortSignal.timeout(this.timeoutMs),
        validateStatus: () => true,
        responseType: 'text',
        transformResponse: [(d: unknown) => d],
        // Never followed: a redirect could carry the token elsewhere. A 3xx is an error below.
        maxRedirects: 0,
        // The stream is destroyed as soon as the body passes the cap (also when decompressed).
        maxContentLength: this.maxBodyBytes,
        maxBodyLength: this.maxBodyBytes,
        ...(target ? { lookup: pinnedLookup(target) as AxiosRequestConfig['lookup'] } : {}),
        headers: {
          'Content-Type': 'application/json',
          Accept: 'application/json',
          Authorization: `token ${this.token}`,
        },
      });
    } catch (err) {
      const code = isRecord(err) && typeof err.code === 'string' ? err.code : 'network error';
      const message = isRecord(err) && typeof err.message === 'string' ? err.message : '';
      if (/maxContentLength/.test(message)) {
        throw this.error(op, 'invalid', `the response body is larger than ${this.maxBodyBytes} bytes: refused`);
      }
      const timedOut = code === 'ECONNABORTED' || code === 'ETIMEDOUT' || code === 'ERR_CANCELED';
      throw this.error(
        op,
        'unavailable',
        timedOut ? `no response within ${this.timeoutMs} ms` : `request failed (${code})`,
        undefined,
        timedOut ? TIMEOUT_CODE : undefined,
      );
    }

    const body = typeof res.data === 'string' ? res.data : '';
    if (res.status !== 200) {
      const kind = kindForHttpStatus(res.status);
      const text = isPlainText(res.headers['content-type']) ? `: ${quote(body, [this.token, ...extraSecrets])}` : '';
      throw new VendorError({
        vendor: 'sourcegraph',
        kind,
        status: res.status,
        retryAfterMs: res.status === 429 ? parseRetryAfter(headerString(res.headers['retry-after'])) : undefined,
        message: `Sourcegraph ${op}: HTTP ${res.status}${text}`,
      });
    }

    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
    } catch {
      throw this.error(op, 'malformed', 'HTTP 200 with a body that is not JSON (HTML page or truncated?)', 200);
    }
    if (!isRecord(parsed)) throw this.error(op, 'malformed', 'HTTP 200 with a JSON body that is not an object', 200);
    const gql = parsed as GraphQLBody;

    if (gql.errors !== undefined && gql.errors !== null) {
      if (!Array.isArray(gql.errors) || gql.errors.length === 0) {
        throw this.error(op, 'malformed', 'the "errors" member is not a non-empty array', 200);
      }
      const errors = gql.errors as GraphQLErrorBody[];
      const messages = errors.map((e) => (isRecord(e) && typeof e.message === 'string' ? e.message : ''));
      const requestLevel = errors.every((e) => !isRecord(e) || e.path === undefined);
      const scrubbed = messages.map((m) => scrub(m, [this.token, ...extraSecrets]));
      const failure = new GraphQLErrors(scrubbed, requestLevel);
      if (rawErrors) throw failure;
      throw this.classify(op, failure);
    }
    if (!isRecord(gql.data)) throw this.error(op, 'malformed', 'HTTP 200 without "data" or "errors"', 200);
    return gql.data;
  }

  /** Maps GraphQL error messages onto a VendorError kind, the first recognised message deciding. */
  private classify(op: string, failure: GraphQLErrors): VendorError {
    const all = failure.messages.filter((m) => m.length > 0);
    const first = all[0] ?? '(no message)';
    const rules: [RegExp, VendorErrorKind][] = [
      [/must be site admin/i, 'forbidden'],
      [/not authenticated/i, 'auth'],
      [/modified by another request|write not allowed/i, 'conflict'],
      [/SITE_CONFIG_FILE|site configuration is invalid|failed to parse JSON|blank site configuration/i, 'invalid'],
    ];
    for (const [re, kind] of rules) {
      const hit = all.find((m) => re.test(m));
      if (hit !== undefined) return this.error(op, kind, quote(hit), 200);
    }
    // Errors without a path reject the request itself (syntax, validation, variables): sending it again won't help.
    const kind: VendorErrorKind = failure.requestLevel ? 'invalid' : 'unavailable';
    const more = all.length > 1 ? ` (and ${all.length - 1} more)` : '';
    return this.error(op, kind, `${quote(first)}${more}`, 200);
  }

  private error(op: string, kind: VendorErrorKind, what: string, status?: number, code?: string): VendorError {
    return new VendorError({
      vendor: 'sourcegraph',
      kind,
      status,
      code,
      message: `Sourcegraph ${op}: ${scrub(what, [this.token])}`,
    });
  }
}

function testEmailResult(ok: boolean, raw: string): TestEmailResult {
  // The instance's sentence goes into the status and the history: bounded, without control characters.
  const message = sanitizeText(raw);
  const m = /look for test ID: ([A-Za-z0-9-]{1,40})/.exec(message);
  return m ? { ok, message, testId: m[1] } : { ok, message };
}

function isPlainText(contentType: unknown): boolean {
  return typeof contentType === 'string' && /^text\/plain\b/i.test(contentType);
}

function headerString(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (Array.isArray(v) && typeof v[0] === 'string') return v[0];
  return undefined;
}

/** Removes every occurrence of each secret from `text`. */
function scrub(text: string, secrets: string[]): string {
  let out = text;
  for (const s of secrets) if (s) out = out.split(s).join('[REDACTED]');
  return out;
}

/** One line of server text, secrets removed, bounded in length. */
function quote(text: string, secrets: string[] = []): string {
  const line = sanitizeText(scrub(text.slice(0, 100_000), secrets), 100_000)
    .replace(/\s+/g, ' ')
    .trim();
  return line.length > MAX_QUOTE ? `${line.slice(0, MAX_QUOTE)}…` : line;
}
