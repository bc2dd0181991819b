/**
 * A local stand-in for Sourcegraph instances' GraphQL API, faithful to the shared reference: plain-text 401s,
 * resolver errors as HTTP 200, JSONC site configuration stored with its comments and redacted on read,
 * optimistic concurrency on `lastID`, schema validation of the email settings, and a `sendTestEmail` that really
 * talks SMTP (through nodemailer) to whatever `email.smtp` points at. Every document is parsed, validated against
 * the real schema subset and executed with graphql-js, so a client cannot send what a real instance would refuse.
 * Several instances ("sites") live on one HTTP server, each under its own path prefix.
 */
import { createHash, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import { isIP } from 'node:net';

import {
  buildSchema,
  execute,
  GraphQLError,
  parse as parseGraphQL,
  validate,
  type DocumentNode,
  type ExecutionResult,
  type GraphQLSchema,
} from 'graphql';
import {
  applyEdits,
  findNodeAtLocation,
  format as formatJsonc,
  getNodePath,
  modify,
  parse as parseJsonc,
  parseTree,
  printParseErrorCode,
  type FormattingOptions,
  type JSONPath,
  type Node as JsonNode,
  type ParseError,
} from 'jsonc-parser';
import nodemailer from 'nodemailer';
import type SMTPTransport from 'nodemailer/lib/smtp-transport';

import { Faults, type FaultConfig } from '../lib/faults';
import { SCHEMA_PATH } from '../vendors/sourcegraph-documents';
import { listen } from '../lib/listen';

/** Which `sendTestEmail` generation to imitate (see the shared reference). */
export type TestEmailBehaviour = '3.38' | '5.x' | 'newest';

/** How one emulated instance is set up. */
export interface SiteOptions {
  /** Access token of a site admin. */
  adminToken: string;
  /** Access tokens of ordinary users (valid, but `must be site admin`). */
  nonAdminTokens?: string[];
  /** Initial site configuration (JSONC, stored verbatim). Default: a small realistic config with comments. */
  config?: string;
  /** Which sendTestEmail behaviour to emulate (see reference): '3.38' | '5.x' | 'newest'. Default '5.x'. */
  testEmailBehaviour?: TestEmailBehaviour;
  /** Other frontend replicas see a config write only after this many ms (sendTestEmail reads the old settings until then). */
  configPropagationMs?: number;
  /** Emulates SITE_CONFIG_FILE: every write is refused. */
  siteConfigFile?: boolean;
  /** Also redact a non-empty `email.smtp.username` on read, as newer versions do. Default false. */
  redactUsername?: boolean;
  /** Re-indent written configurations to 2 spaces, comments kept, as the server does. Default true. */
  reindentOnWrite?: boolean;
  /** A hostile instance (see HostileMode): what it answers instead of (or on top of) the normal API. */
  hostile?: HostileMode;
}

/**
 * How a hostile (compromised or broken) instance answers its GraphQL endpoint:
 * - `huge-body`: HTTP 200 JSON that never ends (streamed, no Content-Length), up to `bytes` (default 300 MiB);
 * - `slow-drip`: HTTP 200 whose body trickles one byte every `intervalMs` (default 500) for up to 10 minutes;
 * - `escape-sequences`: a working instance whose sendTestEmail answer carries terminal escape sequences and bidi
 *   overrides;
 * - `huge-message`: HTTP 400 text/plain of `bytes` (default 1 MiB) full of escape sequences;
 * - `redirect`: HTTP 307 to `location` (a redirect must never be followed: it would carry the token elsewhere).
 */
export type HostileMode =
  | { kind: 'huge-body'; bytes?: number }
  | { kind: 'slow-drip'; intervalMs?: number }
  | { kind: 'escape-sequences' }
  | { kind: 'huge-message'; bytes?: number }
  | { kind: 'redirect'; location: string };

/** Terminal escape sequences (clear screen, set title, colour) and a right-to-left override, as a hostile text. */
export const HOSTILE_TEXT = '\x1b[2J\x1b]0;owned\x07\x1b[31mred\x1b[0m\u202egnp.exe\r\n\x00';

/** One `sendTestEmail` the emulator carried out. */
export interface SentTestEmail {
  /** ISO time of the attempt. */
  at: string;
  /** Recipient asked for. */
  to: string;
  /** The 5-character id put in the subject. */
  testId: string;
  /** Whether the SMTP server accepted the message. */
  ok: boolean;
  /** The underlying error (as wrapped in the answer), when not ok. */
  error?: string;
  /** `email.smtp.host` the replica used ('' when none was configured). */
  smtpHost: string;
  /** `email.smtp.port` the replica used (0 when none was configured). */
  smtpPort: number;
  /** `email.address` the replica used ('' when none was configured). */
  from: string;
}

/** A document the emulator refused before or while executing it: a client bug a test should catch. */
export interface InvalidDocument {
  /** ISO time of the request. */
  at: string;
  /** Site the request was sent to. */
  site: string;
  /** The `operationName` sent, when any. */
  operationName?: string;
  /** Parse, validation or variable-coercion error messages. */
  errors: string[];
}

/** The raw stored state of a site. */
export interface SiteState {
  /** Unredacted configuration text. */
  config: string;
  /** Current configuration id. */
  id: number;
  /** Test emails attempted, oldest first. */
  sentTestEmails: SentTestEmail[];
  /** Successful `updateSiteConfiguration` calls (human edits not counted). */
  writes: number;
  /** The options the site was added with. */
  options: SiteOptions;
}

/** Options of {@link SourcegraphEmulator.start}. */
export interface SourcegraphEmulatorStartOptions {
  /** Interface to bind (default 127.0.0.1). */
  host?: string;
  /** Port to bind (default 0: random). */
  port?: number;
  /** Initial fault knobs for `/.api/graphql`. */
  faults?: Partial<FaultConfig>;
  /** trust any relay certificate (the local relay's is self-signed) */
  insecureRelayTls?: boolean /* default true */;
}

/** The config a new site gets when none is given: realistic, with comments, and no email settings. */
export const DEFAULT_SITE_CONFIG = `{
  // The externally accessible URL for Sourcegraph (i.e., what you type into your browser).
  "externalURL": "https://sourcegraph.example.com",

  // Builtin username/password sign-in only; sign-up is by invitation.
  "auth.providers": [
    {
      "type": "builtin",
      "allowSignup": false
    }
  ],

  "search.largeFiles": ["go.sum", "package-lock.json"],
  "observability.tracing": {
    "sampling": "selective"
  }
}
`;

const REDACTED = 'REDACTED';
const SMTP_TIMEOUT_MS = 10_000;
const MAX_BODY_BYTES = 5 * 1024 * 1024;
/** Recent invalid documents kept (older ones are dropped). */
const MAX_INVALID_DOCUMENTS = 200;
/** Test emails kept per site. */
const MAX_TEST_EMAILS = 500;
const FMT: FormattingOptions = { tabSize: 2, insertSpaces: true, eol: '\n' };
/** Re-indentation on write: whitespace only, existing line breaks (and so blank lines between sections) kept. */
const REINDENT: FormattingOptions = { ...FMT, keepLines: true };
const SMTP_KEYS = new Set([
  'host',
  'port',
  'username',
  'password',
  'domain',
  'authentication',
  'noVerifyTLS',
  'additionalHeaders',
]);
const AUTH_METHODS = ['none', 'PLAIN', 'CRAM-MD5'];
/** Sourcegraph's opaque GraphQL id of the singleton site. */
const SITE_GRAPHQL_ID = 'U2l0ZToic2l0ZSI=';

type Actor = { kind: 'anonymous' } | { kind: 'user'; admin: boolean };

interface Site {
  name: string;
  options: SiteOptions;
  config: string;
  id: number;
  writes: number;
  requests: number;
  /** Config texts with the time they were written, for replicas that lag (configPropagationMs). */
  versions: { at: number; text: string }[];
  sentTestEmails: SentTestEmail[];
  race: { remaining: number; edit: (text: string) => string } | null;
}

interface RequestContext {
  actor: Actor;
  site: Site;
}

// ---------------------------------------------------------------------------------------------------------------
// JSONC helpers

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function jsonType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

function setAt(text: string, path: JSONPath, value: unknown): string {
  return applyEdits(text, modify(text, path, value, { formattingOptions: FMT }));
}

/** Parses JSONC the way the server does; returns the error list instead of throwing. */
function parseConfig(text: string): { value: unknown; errors: ParseError[] } {
  const errors: ParseError[] = [];
  const value: unknown = parseJsonc(text, errors, { allowTrailingComma: true, disallowComments: false });
  return { value, errors };
}

/** `effectiveContents`: a non-empty password (and optionally username) reads as "REDACTED"; comments survive. */
function redactConfig(text: string, usernameToo: boolean): string {
  let out = text;
  for (const key of usernameToo ? ['password', 'username'] : ['password']) {
    const tree = parseTree(out);
    const node = tree ? findNodeAtLocation(tree, ['email.smtp', key]) : undefined;
    if (node && node.type === 'string' && node.value !== '') out = setAt(out, ['email.smtp', key], REDACTED);
  }
  return out;
}

/** Replaces every "REDACTED" string in `input` with the stored string at the same path, when there is one. */
function unredactConfig(input: string, stored: string): string {
  const paths: JSONPath[] = [];
  const walk = (node: JsonNode | undefined): void => {
    if (!node) return;
    if (node.type === 'string' && node.value === REDACTED) paths.push(getNodePath(node));
    for (const child of node.children ?? []) walk(child);
  };
  walk(parseTree(input));
  const storedTree = parseTree(stored);
  let out = input;
  for (const path of paths) {
    const old = storedTree ? findNodeAtLocation(storedTree, path) : undefined;
    if (old && old.type === 'string' && old.value !== REDACTED) out = setAt(out, path, old.value);
  }
  return out;
}

/** The email part of site.schema.json, as the reference describes it; messages in gojsonschema's style. */
function schemaProblems(value: unknown): string[] {
  if (!isRecord(value)) return [`(root): Invalid type. Expected: object, given: ${jsonType(value)}`];
  const problems: string[] = [];
  const typeIs = (path: string, v: unknown, want: string): boolean => {
    const got = jsonType(v);
    const ok = want === 'number' ? got === 'number' || got === 'integer' : got === want;
    if (!ok) problems.push(`${path}: Invalid type. Expected: ${want}, given: ${got}`);
    return ok;
  };
  if ('email.address' in value) {
    const v = value['email.address'];
    if (typeIs('email.address', v, 'string') && !/^[^@\s]+@[^@\s]+$/.test(v as string)) {
      problems.push("email.address: Does not match format 'email'");
    }
  }
  if ('email.senderName' in value) typeIs('email.senderName', value['email.senderName'], 'string');
  if ('email.smtp' in value) {
    const smtp = value['email.smtp'];
    if (typeIs('email.smtp', smtp, 'object')) {
      const s = smtp as Record<string, unknown>;
      for (const key of ['host', 'port', 'authentication']) {
        if (!(key in s)) problems.push(`email.smtp: ${key} is required`);
      }
      for (const key of Object.keys(s)) {
        if (!SMTP_KEYS.has(key)) problems.push(`email.smtp: Additional property ${key} is not allowed`);
      }
      if ('host' in s) typeIs('email.smtp.host', s.host, 'string');
      if ('port' in s) typeIs('email.smtp.port', s.port, 'integer');
      for (const key of ['username', 'password', 'domain']) if (key in s) typeIs(`email.smtp.${key}`, s[key], 'string');
      if ('noVerifyTLS' in s) typeIs('email.smtp.noVerifyTLS', s.noVerifyTLS, 'boolean');
      if ('authentication' in s && !AUTH_METHODS.includes(s.authentication as string)) {
        problems.push(
          `email.smtp.authentication: email.smtp.authentication must be one of the following: ${AUTH_METHODS.map((m) => `"${m}"`).join(', ')}`,
        );
      }
      if ('additionalHeaders' in s && typeIs('email.smtp.additionalHeaders', s.additionalHeaders, 'array')) {
        (s.additionalHeaders as unknown[]).forEach((h, i) => {
          const at = `email.smtp.additionalHeaders.${i}`;
          if (!typeIs(at, h, 'object')) return;
          const hdr = h as Record<string, unknown>;
          for (const key of ['key', 'value']) {
            if (!(key in hdr)) problems.push(`${at}: ${key} is required`);
            else typeIs(`${at}.${key}`, hdr[key], 'string');
          }
          if ('sensitive' in hdr) typeIs(`${at}.sensitive`, hdr.sensitive, 'boolean');
          for (const key of Object.keys(hdr)) {
            if (!['key', 'value', 'sensitive'].includes(key))
              problems.push(`${at}: Additional property ${key} is not allowed`);
          }
        });
      }
    }
  }
  return problems;
}

function parseProblems(errors: ParseError[]): string {
  return `failed to parse JSON: [${errors.map((e) => `${printParseErrorCode(e.error)} at offset ${e.offset}`).join(', ')}]`;
}

/** A secret as the snapshot shows it: a short prefix and a sha256 fingerprint, never the whole value. */
export function maskSecret(secret: string): string {
  const hex = createHash('sha256').update(secret).digest('hex');
  const prefix = secret.slice(0, Math.min(4, Math.floor(secret.length / 4)));
  return `${prefix}…(sha256:${hex.slice(0, 12)})`;
}

function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

// ---------------------------------------------------------------------------------------------------------------
// SMTP

interface SmtpSettings {
  host: string;
  port: number;
  username: string;
  password: string;
  domain: string;
  authentication: string;
  noVerifyTLS: boolean;
  headers: Record<string, string>;
}

function smtpSettings(raw: Record<string, unknown>): SmtpSettings {
  const str = (v: unknown): string => (typeof v === 'string' ? v : '');
  const headers: Record<string, string> = {};
  if (Array.isArray(raw.additionalHeaders)) {
    for (const h of raw.additionalHeaders) {
      if (isRecord(h) && typeof h.key === 'string' && typeof h.value === 'string') headers[h.key] = h.value;
    }
  }
  return {
    host: str(raw.host),
    port: typeof raw.port === 'number' ? raw.port : 0,
    username: str(raw.username),
    password: str(raw.password),
    domain: str(raw.domain),
    authentication: str(raw.authentication),
    noVerifyTLS: raw.noVerifyTLS === true,
    headers,
  };
}

/** Names a nodemailer failure after the step Sourcegraph's txemail wraps it with (`auth: 535 ...`). */
function describeSmtpError(err: unknown, host: string, port: number): string {
  const e = isRecord(err) ? err : {};
  const code = typeof e.code === 'string' ? e.code : '';
  const command = typeof e.command === 'string' ? e.command : '';
  const response = typeof e.response === 'string' ? e.response.trim() : '';
  const message = err instanceof Error ? err.message : String(err);
  const detail = response || message;
  if (command === 'STARTTLS' || code === 'ETLS') return `send STARTTLS: ${message}`;
  if (code === 'EAUTH' || command.startsWith('AUTH')) return `auth: ${detail}`;
  if (command === 'MAIL FROM') return `send MAIL: ${detail}`;
  if (command === 'RCPT TO') return `send RCPT: ${detail}`;
  if (command === 'DATA') return `send DATA: ${detail}`;
  if (command === 'EHLO' || command === 'HELO') return `send HELO: ${detail}`;
  if (command === 'CONN' || code === 'ECONNECTION' || code === 'ESOCKET' || code === 'ETIMEDOUT' || code === 'EDNS') {
    if (/ECONNREFUSED/.test(message)) return `new SMTP client: dial tcp ${host}:${port}: connect: connection refused`;
    if (/certificate|self.signed|SSL|TLS/i.test(message)) return `send STARTTLS: tls: ${message}`;
    return `new SMTP client: ${message}`;
  }
  return message;
}

/** Sends the Sourcegraph test message; resolves to null on success or the wrapped error text. Never rejects. */
async function deliverTestEmail(
  smtp: SmtpSettings,
  sender: { name: string; address: string },
  to: string,
  testId: string,
  insecureRelayTls: boolean,
): Promise<string | null> {
  const options: SMTPTransport.Options = {
    host: smtp.host,
    port: smtp.port,
    secure: false,
    requireTLS: false,
    ignoreTLS: false,
    name: smtp.domain || 'localhost',
    tls: {
      rejectUnauthorized: !(smtp.noVerifyTLS || insecureRelayTls),
      // SNI carries host names only (RFC 6066).
      ...(isIP(smtp.host) ? {} : { servername: smtp.host }),
    },
    connectionTimeout: SMTP_TIMEOUT_MS,
    greetingTimeout: SMTP_TIMEOUT_MS,
    socketTimeout: SMTP_TIMEOUT_MS,
    dnsTimeout: SMTP_TIMEOUT_MS,
    disableFileAccess: true,
    disableUrlAccess: true,
  };
  if (smtp.authentication !== 'none') {
    options.auth = { user: smtp.username, pass: smtp.password };
    options.authMethod = smtp.authentication === 'CRAM-MD5' ? 'CRAM-MD5' : 'PLAIN';
  }
  const transport = nodemailer.createTransport(options);
  let timer: NodeJS.Timeout | undefined;
  try {
    const send = transport.sendMail({
      from: { name: sender.name, address: sender.address },
      to,
      subject: `TEST: email sent from Sourcegraph (test ID: ${testId})`,
      text: `\nIf you're seeing this, Sourcegraph is able to send email correctly for all of its product features!\n\nCongratulations!\n\n* Sourcegraph\n\nTest ID: ${testId}\n`,
      html: `<p>Sourcegraph is able to send email correctly for all of its product features!</p>\n<br>\n<p>Congratulations!</p>\n<br>\n<p>* Sourcegraph</p>\n<br>\n<p>Test ID: ${testId}</p>\n`,
      headers: smtp.headers,
    });
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(Object.assign(new Error('i/o timeout'), { code: 'ETIMEDOUT' })), SMTP_TIMEOUT_MS);
    });
    await Promise.race([send, deadline]);
    return null;
  } catch (err) {
    return `mail: ${describeSmtpError(err, smtp.host, smtp.port)}`;
  } finally {
    if (timer) clearTimeout(timer);
    transport.close();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP helpers

function send(
  res: http.ServerResponse,
  status: number,
  body: string,
  contentType: string,
  extra: Record<string, string> = {},
): void {
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body), ...extra });
  res.end(body);
}

function sendJson(res: http.ServerResponse, status: number, value: unknown): void {
  send(res, status, JSON.stringify(value), 'application/json');
}

function sendText(res: http.ServerResponse, status: number, text: string, extra: Record<string, string> = {}): void {
  // Go's http.Error: the text plus a newline, as text/plain.
  send(res, status, `${text}\n`, 'text/plain; charset=utf-8', { 'X-Content-Type-Options': 'nosniff', ...extra });
}

/** Answers as a hostile instance does (HostileMode); every loop is bounded and stops when the client goes. */
async function hostileReply(req: http.IncomingMessage, res: http.ServerResponse, mode: HostileMode): Promise<void> {
  req.resume();
  if (mode.kind === 'redirect') {
    res.writeHead(307, { Location: mode.location, 'Content-Length': '0' });
    res.end();
    return;
  }
  if (mode.kind === 'huge-message') {
    const n = Math.max(1, Math.floor((mode.bytes ?? 1024 * 1024) / HOSTILE_TEXT.length));
    return sendText(res, 400, `bad request: ${HOSTILE_TEXT.repeat(n)}`);
  }
  let gone = false;
  res.once('close', () => (gone = true));
  res.writeHead(200, { 'Content-Type': 'application/json' });
  if (mode.kind === 'huge-body') {
    const chunk = Buffer.alloc(64 * 1024, 0x41);
    const total = mode.bytes ?? 300 * 1024 * 1024;
    res.write('{"data":{"x":"');
    for (let sent = 0; sent < total && !gone; sent += chunk.length) {
      if (!res.write(chunk)) {
        await new Promise<void>((resolve) => {
          const done = () => {
            res.off('drain', done);
            res.off('close', done);
            resolve();
          };
          res.once('drain', done);
          res.once('close', done);
        });
      }
    }
  } else if (mode.kind === 'slow-drip') {
    const interval = mode.intervalMs ?? 500;
    for (let i = 0; i < Math.ceil(600_000 / interval) && !gone; i++) {
      res.write(i === 0 ? '{' : ' ');
      await new Promise((r) => setTimeout(r, interval));
    }
  }
  if (!gone) res.end('"}}');
}

class BodyTooLarge extends Error {}

function safeDecode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

async function readBody(req: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > MAX_BODY_BYTES) throw new BodyTooLarge();
    chunks.push(buf);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Parses `k="v",k2="v2"` parameters; null when the text is not exactly that. */
function authParams(text: string): Record<string, string> | null {
  const out: Record<string, string> = {};
  const re = /\s*([A-Za-z-]+)="([^"]*)"\s*(,|$)/y;
  let pos = 0;
  while (pos < text.length) {
    re.lastIndex = pos;
    const m = re.exec(text);
    if (!m) return null;
    out[m[1]] = m[2];
    pos = re.lastIndex;
  }
  return out;
}

type AuthResult = { actor: Actor } | { status: 401; message: string };

/** Sourcegraph's access-token middleware: plain-text 401s, unknown schemes fall through to anonymous. */
function authenticate(header: string | undefined, site: Site): AuthResult {
  const invalidHeader: AuthResult = { status: 401, message: 'Invalid Authorization header.' };
  if (header === undefined || header.trim() === '') return { actor: { kind: 'anonymous' } };
  const trimmed = header.trim();
  const sp = trimmed.search(/\s/);
  const scheme = (sp < 0 ? trimmed : trimmed.slice(0, sp)).toLowerCase();
  const rest = sp < 0 ? '' : trimmed.slice(sp).trim();
  let token: string;
  let sudo = false;
  if (scheme === 'token') {
    if (rest === '') return invalidHeader;
    if (rest.includes('=')) {
      const params = authParams(rest);
      if (!params || !params.token) return invalidHeader;
      token = params.token;
    } else {
      if (/\s/.test(rest)) return invalidHeader;
      token = rest;
    }
  } else if (scheme === 'token-sudo') {
    const params = authParams(rest);
    if (!params || !params.token || !params.user) return invalidHeader;
    token = params.token;
    sudo = true;
  } else {
    return { actor: { kind: 'anonymous' } };
  }
  if (token === site.options.adminToken) return { actor: { kind: 'user', admin: true } };
  // Sudo needs a site admin's token; the emulator does not model users, so the sudo target acts as an admin.
  if (!sudo && (site.options.nonAdminTokens ?? []).includes(token)) return { actor: { kind: 'user', admin: false } };
  return { status: 401, message: 'Invalid access token.' };
}

function requireSiteAdmin(ctx: RequestContext): void {
  if (ctx.actor.kind === 'anonymous') throw new Error('not authenticated');
  if (!ctx.actor.admin) throw new Error('must be site admin');
}

// ---------------------------------------------------------------------------------------------------------------
// The emulator

/** Hosts any number of emulated Sourcegraph instances on one local HTTP server. */
export class SourcegraphEmulator {
  /** `http://host:port` of the server; sites live under `${origin}/${name}`. */
  readonly origin: string;
  /** Fault knobs applied to every `/.api/graphql` request. */
  readonly faults: Faults;
  /** Documents refused as unparseable or invalid against the schema (most recent last, bounded). */
  readonly invalidDocuments: InvalidDocument[] = [];

  private readonly sites = new Map<string, Site>();
  private readonly schema: GraphQLSchema;
  private readonly insecureRelayTls: boolean;

  private constructor(
    private readonly server: http.Server,
    origin: string,
    faults: Faults,
    schema: GraphQLSchema,
    insecureRelayTls: boolean,
  ) {
    this.origin = origin;
    this.faults = faults;
    this.schema = schema;
    this.insecureRelayTls = insecureRelayTls;
  }

  /** Starts the server on 127.0.0.1 and a random port unless told otherwise. */
  static async start(opts: SourcegraphEmulatorStartOptions = {}): Promise<SourcegraphEmulator> {
    const schema = buildSchema(readFileSync(SCHEMA_PATH, 'utf8'));
    const server = http.createServer();
    const { origin } = await listen(server, opts.port, opts.host);
    const emulator = new SourcegraphEmulator(
      server,
      origin,
      new Faults(opts.faults ?? {}),
      schema,
      opts.insecureRelayTls ?? true,
    );
    server.on('request', (req, res) => {
      emulator.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) sendText(res, 500, `internal error: ${err instanceof Error ? err.message : 'unknown'}`);
        else res.destroy();
      });
    });
    return emulator;
  }

  /** Hosts a site under `${origin}/${name}`; returns that base URL. Its GraphQL endpoint is `${base}/.api/graphql`. */
  addSite(name: string, opts: SiteOptions): string {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) throw new Error(`invalid site name ${JSON.stringify(name)}`);
    if (this.sites.has(name)) throw new Error(`site ${name} exists already`);
    if (!opts.adminToken) throw new Error('adminToken is required');
    const config = opts.config ?? DEFAULT_SITE_CONFIG;
    this.sites.set(name, {
      name,
      options: { ...opts },
      config,
      id: 1,
      writes: 0,
      requests: 0,
      versions: [{ at: 0, text: config }],
      sentTestEmails: [],
      race: null,
    });
    return `${this.origin}/${name}`;
  }

  /** The raw stored state of a site (unredacted config text, current id, test emails sent, how many writes). */
  site(name: string): SiteState {
    const s = this.mustSite(name);
    return {
      config: s.config,
      id: s.id,
      sentTestEmails: s.sentTestEmails.map((e) => ({ ...e })),
      writes: s.writes,
      options: { ...s.options },
    };
  }

  /** Simulates a concurrent human edit through the UI: applies edit(text), bumps the id. */
  humanEdit(name: string, edit: (text: string) => string): void {
    const s = this.mustSite(name);
    this.store(s, edit(s.config));
  }

  /** Make the next N writes of a site race with a human edit (the emulator applies `edit` just before checking lastID), for chaos tests. */
  raceNextWrites(name: string, n: number, edit: (text: string) => string): void {
    const s = this.mustSite(name);
    s.race = n > 0 ? { remaining: Math.floor(n), edit } : null;
  }

  /** JSON-safe state for tests and operators; secrets show as a prefix and a sha256 fingerprint. */
  snapshot(): object {
    const sites: Record<string, object> = {};
    for (const name of this.sites.keys()) sites[name] = this.siteView(name, true);
    return {
      origin: this.origin,
      faults: { config: this.faults.current(), injected: { ...this.faults.injected } },
      sites,
      invalidDocuments: this.invalidDocuments.map((d) => ({ ...d, errors: [...d.errors] })),
    };
  }

  /** Stops the server and cuts open connections. */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  // -------------------------------------------------------------------------------------------------------------

  private mustSite(name: string): Site {
    const s = this.sites.get(name);
    if (!s) throw new Error(`no site named ${name}`);
    return s;
  }

  /** Saves a new config version: bumps the id and remembers when, for lagging replicas. */
  private store(s: Site, text: string): void {
    const now = Date.now();
    s.config = text;
    s.id++;
    s.versions.push({ at: now, text });
    const lag = s.options.configPropagationMs ?? 0;
    // Keep only the newest version every replica already sees, plus those still propagating.
    while (s.versions.length > 1 && s.versions[1].at <= now - lag) s.versions.shift();
  }

  /** The config a (possibly lagging) replica serving sendTestEmail sees. */
  private visibleConfig(s: Site): string {
    const lag = s.options.configPropagationMs ?? 0;
    if (lag <= 0) return s.config;
    const cutoff = Date.now() - lag;
    let visible = s.versions[0];
    for (const v of s.versions) {
      if (v.at <= cutoff) visible = v;
      else break;
    }
    return visible.text;
  }

  private siteView(name: string, forSnapshot: boolean): object {
    const s = this.mustSite(name);
    const { value } = parseConfig(s.config);
    const cfg = isRecord(value) ? value : {};
    const smtpRaw = isRecord(cfg['email.smtp']) ? cfg['email.smtp'] : null;
    let smtp: object | null = null;
    if (smtpRaw) {
      const { password, additionalHeaders, ...rest } = smtpRaw;
      smtp = {
        ...rest,
        // Headers marked sensitive carry credentials too.
        additionalHeaders: Array.isArray(additionalHeaders)
          ? additionalHeaders.map((h: unknown) =>
              isRecord(h) && h.sensitive === true && typeof h.value === 'string'
                ? { ...h, value: maskSecret(h.value) }
                : h,
            )
          : additionalHeaders,
        password: typeof password === 'string' && password !== '' ? maskSecret(password) : password,
        passwordSha256: typeof password === 'string' && password !== '' ? sha256(password) : null,
      };
    }
    const view: Record<string, unknown> = {
      name,
      url: `${this.origin}/${name}`,
      id: s.id,
      writes: s.writes,
      requests: s.requests,
      config: redactConfig(s.config, s.options.redactUsername === true),
      validationMessages: this.validationMessages(s.config),
      email: { address: cfg['email.address'] ?? null, senderName: cfg['email.senderName'] ?? null, smtp },
      sentTestEmails: s.sentTestEmails.map((e) => ({ ...e })),
      pendingRaces: s.race?.remaining ?? 0,
    };
    if (forSnapshot) {
      view.options = {
        testEmailBehaviour: s.options.testEmailBehaviour ?? '5.x',
        configPropagationMs: s.options.configPropagationMs ?? 0,
        siteConfigFile: s.options.siteConfigFile === true,
        adminToken: maskSecret(s.options.adminToken),
        nonAdminTokens: (s.options.nonAdminTokens ?? []).map(maskSecret),
      };
    }
    return view;
  }

  private validationMessages(text: string): string[] {
    const { value, errors } = parseConfig(text);
    return errors.length > 0 ? [parseProblems(errors)] : schemaProblems(value);
  }

  private recordInvalid(site: string, operationName: string | undefined, errors: readonly { message: string }[]): void {
    this.invalidDocuments.push({
      at: new Date().toISOString(),
      site,
      operationName,
      errors: errors.map((e) => e.message),
    });
    if (this.invalidDocuments.length > MAX_INVALID_DOCUMENTS) this.invalidDocuments.shift();
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://emulator');
    const path = url.pathname;
    if (path.startsWith('/__emulator/')) return this.handleAdmin(req, res, path);

    const m = /^\/([^/]+)(\/.*)?$/.exec(path);
    const site = m ? this.sites.get(safeDecode(m[1])) : undefined;
    if (!m || !site || m[2] !== '/.api/graphql') return sendText(res, 404, '404 page not found');

    await this.faults.delay();
    const decision = this.faults.decide(`${req.method} ${path}`);
    if (decision === 'error') {
      return send(
        res,
        502,
        '<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n',
        'text/html',
      );
    }
    if (decision === 'rate-limit') return sendText(res, 429, 'Too Many Requests', { 'Retry-After': '1' });

    site.requests++;
    const hostile = site.options.hostile;
    if (hostile && hostile.kind !== 'escape-sequences') return hostileReply(req, res, hostile);
    const reply = await this.graphqlRequest(req, site);
    if (decision === 'drop') {
      // The request was applied; the answer is lost on the way back.
      req.socket.destroy();
      return;
    }
    if (reply.kind === 'text') return sendText(res, reply.status, reply.text);
    return sendJson(res, 200, reply.body);
  }

  private async graphqlRequest(
    req: http.IncomingMessage,
    site: Site,
  ): Promise<{ kind: 'text'; status: number; text: string } | { kind: 'json'; body: unknown }> {
    if (req.method !== 'POST') return { kind: 'text', status: 405, text: 'method not allowed' };
    const auth = authenticate(req.headers.authorization, site);
    if ('status' in auth) {
      req.resume();
      return { kind: 'text', status: auth.status, text: auth.message };
    }

    let raw: string;
    try {
      raw = await readBody(req);
    } catch (err) {
      if (err instanceof BodyTooLarge) return { kind: 'text', status: 413, text: 'request body too large' };
      throw err;
    }
    let params: unknown;
    try {
      params = JSON.parse(raw);
    } catch {
      // Not the parser's message: V8 quotes the offending input, which may hold a password.
      return { kind: 'text', status: 400, text: 'decoding json: invalid character in request body' };
    }
    if (!isRecord(params)) return { kind: 'text', status: 400, text: 'decoding json: expected an object' };
    const operationName = typeof params.operationName === 'string' ? params.operationName : undefined;
    const variables = params.variables ?? null;
    if (variables !== null && !isRecord(variables)) {
      return { kind: 'text', status: 400, text: 'decoding json: variables must be an object' };
    }
    if (typeof params.query !== 'string' || params.query.trim() === '') {
      const errors = [{ message: 'Must provide query string.' }];
      this.recordInvalid(site.name, operationName, errors);
      return { kind: 'json', body: { errors } };
    }

    let document: DocumentNode;
    try {
      document = parseGraphQL(params.query);
    } catch (err) {
      const e = err instanceof GraphQLError ? err : new GraphQLError(String(err));
      this.recordInvalid(site.name, operationName, [e]);
      return { kind: 'json', body: { errors: [e.toJSON()] } };
    }
    const problems = validate(this.schema, document);
    if (problems.length > 0) {
      this.recordInvalid(site.name, operationName, problems);
      return { kind: 'json', body: { errors: problems.map((p) => p.toJSON()) } };
    }

    const ctx: RequestContext = { actor: auth.actor, site };
    const result: ExecutionResult = await execute({
      schema: this.schema,
      document,
      rootValue: this.rootValue(),
      contextValue: ctx,
      variableValues: variables,
      operationName,
    });
    // Errors without a path come from the request (unknown operation, variables of the wrong type).
    const requestErrors = (result.errors ?? []).filter((e) => e.path === undefined);
    if (requestErrors.length > 0) this.recordInvalid(site.name, operationName, requestErrors);
    return { kind: 'json', body: result };
  }

  /** Resolvers in graphql-js rootValue style: functions on the source object get (args, context). */
  private rootValue(): Record<string, unknown> {
    return {
      site: () => ({
        id: SITE_GRAPHQL_ID,
        configuration: (_args: unknown, ctx: RequestContext) => {
          requireSiteAdmin(ctx);
          const s = ctx.site;
          return {
            id: s.id,
            effectiveContents: redactConfig(s.config, s.options.redactUsername === true),
            validationMessages: this.validationMessages(s.config),
          };
        },
      }),
      updateSiteConfiguration: (args: { lastID: number; input: string }, ctx: RequestContext) =>
        this.updateSiteConfiguration(ctx, args.lastID, args.input),
      sendTestEmail: (args: { to: string }, ctx: RequestContext) => this.sendTestEmail(ctx, args.to),
    };
  }

  private updateSiteConfiguration(ctx: RequestContext, lastID: number, input: string): boolean {
    requireSiteAdmin(ctx);
    const s = ctx.site;
    if (s.options.siteConfigFile) {
      throw new Error('updating site configuration not allowed when using SITE_CONFIG_FILE');
    }
    if (input.trim() === '') {
      throw new Error(
        'blank site configuration is invalid (you can clear the site configuration by entering an empty JSON object: {})',
      );
    }
    const parsed = parseConfig(input);
    if (parsed.errors.length > 0) throw new Error(parseProblems(parsed.errors));

    if (s.race && s.race.remaining > 0) {
      s.race.remaining--;
      const edit = s.race.edit;
      if (s.race.remaining === 0) s.race = null;
      this.store(s, edit(s.config));
    }
    if (lastID !== s.id) throw new Error('site config has been modified by another request, write not allowed');

    const unredacted = unredactConfig(input, s.config);
    const problems = schemaProblems(parseConfig(unredacted).value);
    if (problems.length > 0) throw new Error(`site configuration is invalid: ${problems.join('; ')}`);

    const text =
      s.options.reindentOnWrite === false
        ? unredacted
        : applyEdits(unredacted, formatJsonc(unredacted, undefined, REINDENT));
    this.store(s, text);
    s.writes++;
    // Email settings apply without a restart.
    return false;
  }

  private async sendTestEmail(ctx: RequestContext, to: string): Promise<string> {
    requireSiteAdmin(ctx);
    const s = ctx.site;
    const behaviour = s.options.testEmailBehaviour ?? '5.x';
    const testId = randomUUID().slice(0, 5);
    const { value } = parseConfig(this.visibleConfig(s));
    const cfg = isRecord(value) ? value : {};
    const address = typeof cfg['email.address'] === 'string' ? cfg['email.address'] : '';
    const senderName = typeof cfg['email.senderName'] === 'string' ? cfg['email.senderName'] : 'Sourcegraph';
    const smtp = isRecord(cfg['email.smtp']) ? smtpSettings(cfg['email.smtp']) : null;

    let error: string | null;
    if (address === '') error = 'no "From" email address configured (in email.address)';
    else if (!smtp) error = 'no SMTP server configured (in email.smtp)';
    else error = await deliverTestEmail(smtp, { name: senderName, address }, to, testId, this.insecureRelayTls);

    s.sentTestEmails.push({
      at: new Date().toISOString(),
      to,
      testId,
      ok: error === null,
      ...(error === null ? {} : { error }),
      smtpHost: smtp?.host ?? '',
      smtpPort: smtp?.port ?? 0,
      from: address,
    });
    if (s.sentTestEmails.length > MAX_TEST_EMAILS) s.sentTestEmails.shift();

    const quoted = JSON.stringify(to);
    if (behaviour === '3.38') {
      return error === null
        ? `Sent test email to ${quoted} successfully! Please check it was received.`
        : `Failed to send test email: ${error}`;
    }
    if (error === null) {
      const hostile = s.options.hostile?.kind === 'escape-sequences' ? HOSTILE_TEXT.repeat(500) : '';
      return `Sent test email to ${quoted} successfully! Please check it was received - look for test ID: ${testId}${hostile}`;
    }
    const failure = `Failed to send test email: ${error}, look for test ID: ${testId}`;
    if (behaviour === 'newest') throw new Error(failure);
    return failure;
  }

  private async handleAdmin(req: http.IncomingMessage, res: http.ServerResponse, path: string): Promise<void> {
    if (path === '/__emulator/state' && req.method === 'GET') return sendJson(res, 200, this.snapshot());
    const siteMatch = /^\/__emulator\/sites\/([^/]+)$/.exec(path);
    if (siteMatch && req.method === 'GET') {
      const name = safeDecode(siteMatch[1]);
      if (!this.sites.has(name)) return sendJson(res, 404, { error: `no site named ${name}` });
      return sendJson(res, 200, this.siteView(name, false));
    }
    if (path === '/__emulator/faults' && req.method === 'PUT') {
      let body: unknown;
      try {
        body = JSON.parse(await readBody(req));
      } catch {
        return sendJson(res, 400, { error: 'body must be a JSON object of fault knobs' });
      }
      if (!isRecord(body)) return sendJson(res, 400, { error: 'body must be a JSON object of fault knobs' });
      try {
        return sendJson(res, 200, this.faults.set(body as Partial<FaultConfig>));
      } catch (err) {
        return sendJson(res, 400, { error: err instanceof Error ? err.message : 'invalid fault knobs' });
      }
    }
    if (path === '/__emulator/faults' && req.method === 'DELETE') {
      this.faults.reset();
      return sendJson(res, 200, this.faults.current());
    }
    return sendJson(res, 404, { error: 'not found' });
  }
}
