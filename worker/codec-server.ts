/**
 * Codec server: lets the Temporal Web UI and CLI show (and send) payloads that AesGcmCodec encrypted, without the
 * Temporal server ever holding a key. It speaks the Temporal codec server protocol: `POST .../encode` and
 * `POST .../decode` with a proto3-JSON Payloads body (`{"payloads":[{"metadata":{"k":"<base64>"},"data":"<base64>"}]}`)
 * both ways; only the last path segment counts, so `/{namespace}/decode` works too. The UI adds `X-Namespace`
 * (accepted, not used: one key set serves every namespace) and, with "pass access token", `Authorization: Bearer`.
 *
 * Run directly (`npm run codec-server`) it is configured by the environment:
 *   MANAGED_SMTP_CODEC_PORT (8888), MANAGED_SMTP_CODEC_HOST (127.0.0.1), MANAGED_SMTP_CODEC_AUTH_TOKEN (required),
 *   MANAGED_SMTP_CODEC_CORS_ORIGINS (http://localhost:8233,http://127.0.0.1:8233), MANAGED_SMTP_CODEC_PASS_PLAINTEXT
 *   (`1`: decode hands unencrypted payloads back unchanged; otherwise refused), and the keys (lib/codec.ts).
 * Only `npm run dev` runs it without a token, by passing `insecureNoAuth` in-process. Error answers are generic: they
 * never name key ids or say why a payload did not open.
 */
import http from 'node:http';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Payload, PayloadCodec } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { CodecConfigError, ENCODING_ENCRYPTED, codecFromEnvironment } from '../lib/codec';
import { listen } from '../lib/listen';

/** Options of startCodecServer. */
export interface CodecServerOptions {
  /** The codec whose encode/decode the endpoints run. */
  codec: PayloadCodec;
  /** Port to bind; 0 (random) unless given. */
  port?: number;
  /** Interface to bind; 127.0.0.1 unless given. */
  host?: string;
  /** Every POST must carry `Authorization: Bearer <authToken>` (401 otherwise). Required unless `insecureNoAuth`. */
  authToken?: string;
  /** Run without a token: only the local dev stack (`npm run dev`) sets it, bound to 127.0.0.1. */
  insecureNoAuth?: boolean;
  /** Decode hands unencrypted payloads back unchanged instead of refusing them (400). */
  passPlaintext?: boolean;
  /** Browser origins allowed to call (exact, e.g. `http://localhost:8233`); other origins get 403. */
  corsOrigins: string[];
  /** Largest request body accepted (413 above); 4 MiB unless given. */
  maxBodyBytes?: number;
  /** Receives one line per failed request (never payload contents); silent unless given. */
  log?: (line: string) => void;
}

/** A running codec server. */
export interface CodecServer {
  /** Base URL, e.g. `http://127.0.0.1:8888`: what `--ui-codec-endpoint` / the UI's codec endpoint setting takes. */
  url: string;
  /** Stops accepting connections and closes open ones. */
  close(): Promise<void>;
}

const DEFAULT_MAX_BODY = 4 * 1024 * 1024;
const ALLOWED_HEADERS = 'Content-Type, Authorization, X-Namespace';
const ALLOWED_METHODS = 'POST, OPTIONS';
const PREFLIGHT_MAX_AGE_S = 600;
/** How long an over-limit upload may keep the connection after its 413 before the socket is cut. */
const DRAIN_GRACE_MS = 1000;

/** Thrown for a request the server answers with a 4xx status. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** `new URL(o).origin`, or a thrown error for anything that is not a plain http(s) origin. */
function normalizeOrigin(origin: string): string {
  let url: URL;
  try {
    url = new URL(origin.trim());
  } catch {
    throw new CodecConfigError(`invalid CORS origin ${JSON.stringify(origin)}: expected scheme://host[:port]`);
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.origin !== origin.trim().replace(/\/$/, '')) {
    throw new CodecConfigError(`invalid CORS origin ${JSON.stringify(origin)}: expected scheme://host[:port]`);
  }
  return url.origin;
}

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/** Parses the proto3-JSON Payloads body strictly: bytes fields must be base64 strings. */
function payloadsFromJson(body: unknown): Payload[] {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new HttpError(400, 'body must be a JSON object {"payloads":[...]}');
  }
  const list = (body as { payloads?: unknown }).payloads;
  // proto3 JSON omits empty repeated fields, so `{}` is zero payloads.
  if (list === undefined || list === null) return [];
  if (!Array.isArray(list)) throw new HttpError(400, '"payloads" must be an array');
  return list.map((item, i) => {
    if (typeof item !== 'object' || item === null || Array.isArray(item)) {
      throw new HttpError(400, `payloads[${i}] must be an object`);
    }
    const { metadata, data, ...rest } = item as Record<string, unknown>;
    const meta: Record<string, Uint8Array> = {};
    if (metadata !== undefined && metadata !== null) {
      if (typeof metadata !== 'object' || Array.isArray(metadata)) {
        throw new HttpError(400, `payloads[${i}].metadata must be an object`);
      }
      for (const [k, v] of Object.entries(metadata)) meta[k] = base64Field(v, `payloads[${i}].metadata.${k}`);
    }
    const bytes = data === undefined || data === null ? new Uint8Array(0) : base64Field(data, `payloads[${i}].data`);
    try {
      // fromObject carries the fields we do not look at (e.g. externalPayloads) through unchanged.
      return temporal.api.common.v1.Payload.fromObject({ ...rest, metadata: meta, data: bytes });
    } catch (err) {
      throw new HttpError(400, `payloads[${i}]: ${err instanceof Error ? err.message : String(err)}`);
    }
  });
}

/** proto3 JSON accepts standard and URL-safe base64, padded or not. */
function base64Field(value: unknown, where: string): Uint8Array {
  if (
    typeof value !== 'string' ||
    !/^[A-Za-z0-9+/_-]*={0,2}$/.test(value) ||
    value.replace(/=+$/, '').length % 4 === 1
  ) {
    throw new HttpError(400, `${where} must be a base64 string`);
  }
  return Buffer.from(value, 'base64');
}

function payloadsToJson(payloads: Payload[]): { payloads: unknown[] } {
  return {
    payloads: payloads.map((p) =>
      temporal.api.common.v1.Payload.toObject(temporal.api.common.v1.Payload.fromObject(p), {
        bytes: String,
        longs: String,
        enums: String,
      }),
    ),
  };
}

/** Starts the codec server; resolves once it listens. */
export async function startCodecServer(opts: CodecServerOptions): Promise<CodecServer> {
  const origins = new Set(opts.corsOrigins.map(normalizeOrigin));
  const maxBody = opts.maxBodyBytes ?? DEFAULT_MAX_BODY;
  if (!opts.authToken && !opts.insecureNoAuth) {
    throw new CodecConfigError('the codec server needs a bearer token (MANAGED_SMTP_CODEC_AUTH_TOKEN)');
  }
  const expectedAuth = opts.authToken ? digest(`Bearer ${opts.authToken}`) : null;
  const encryptedMarker = Buffer.from(ENCODING_ENCRYPTED);
  const log = opts.log ?? (() => undefined);

  /** CORS headers for an allowed origin; nothing for requests without Origin (CLI, curl). */
  const corsHeaders = (origin: string | undefined): Record<string, string> =>
    origin && origins.has(origin)
      ? { 'Access-Control-Allow-Origin': origin, 'Access-Control-Allow-Credentials': 'true', Vary: 'Origin' }
      : { Vary: 'Origin' };

  const send = (
    res: http.ServerResponse,
    status: number,
    body: unknown,
    headers: Record<string, string> = {},
  ): void => {
    const text = JSON.stringify(body);
    res.writeHead(status, {
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(text),
      // Decoded payloads are sensitive: keep them out of every cache.
      'Cache-Control': 'no-store',
      'X-Content-Type-Options': 'nosniff',
      ...headers,
    });
    res.end(text);
  };

  const readBody = (req: http.IncomingMessage): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      const declared = Number(req.headers['content-length']);
      if (Number.isFinite(declared) && declared > maxBody) {
        reject(new HttpError(413, `body larger than ${maxBody} bytes`));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      const onData = (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxBody) {
          req.off('data', onData);
          chunks.length = 0;
          reject(new HttpError(413, `body larger than ${maxBody} bytes`));
          return;
        }
        chunks.push(chunk);
      };
      req.on('data', onData);
      req.once('end', () => resolve(Buffer.concat(chunks)));
      req.once('error', reject);
    });

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const origin = typeof req.headers.origin === 'string' ? req.headers.origin : undefined;
    const cors = corsHeaders(origin);
    const path = (req.url ?? '/').split('?')[0].replace(/\/+$/, '');
    const op = path.slice(path.lastIndexOf('/') + 1);
    if (origin !== undefined && !origins.has(origin)) throw new HttpError(403, 'origin not allowed');
    if (op !== 'encode' && op !== 'decode') throw new HttpError(404, 'not found: POST .../encode or .../decode');

    if (req.method === 'OPTIONS') {
      const preflight: Record<string, string> = {
        ...cors,
        'Access-Control-Allow-Methods': ALLOWED_METHODS,
        'Access-Control-Allow-Headers': ALLOWED_HEADERS,
        'Access-Control-Max-Age': String(PREFLIGHT_MAX_AGE_S),
      };
      // Chrome's Private Network Access: a public UI (e.g. Temporal Cloud) calling a codec server on localhost.
      if (origin && req.headers['access-control-request-private-network'] === 'true') {
        preflight['Access-Control-Allow-Private-Network'] = 'true';
      }
      res.writeHead(204, preflight);
      res.end();
      return;
    }
    if (req.method !== 'POST') throw new HttpError(405, 'method not allowed');
    if (expectedAuth) {
      const given = req.headers.authorization;
      if (typeof given !== 'string' || !timingSafeEqual(digest(given), expectedAuth)) {
        throw new HttpError(401, 'missing or wrong Authorization: Bearer token');
      }
    }
    const contentType = String(req.headers['content-type'] ?? '');
    // Requiring JSON also means a browser must send a preflight first (text/plain would be a "simple" request).
    if (!/^application\/json\s*(;|$)/i.test(contentType))
      throw new HttpError(415, 'Content-Type must be application/json');

    const raw = await readBody(req);
    let body: unknown;
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch {
      throw new HttpError(400, 'body is not valid JSON');
    }
    const payloads = payloadsFromJson(body);
    if (op === 'decode' && !opts.passPlaintext) {
      // A plaintext payload was never encrypted by us: refusing it keeps decode from vouching for forged input.
      const plain = payloads.findIndex((p) => !Buffer.from(p.metadata?.encoding ?? []).equals(encryptedMarker));
      if (plain >= 0) throw new HttpError(400, `decode refused: payloads[${plain}] is not encrypted`);
    }
    let out: Payload[];
    try {
      out = op === 'encode' ? await opts.codec.encode(payloads) : await opts.codec.decode(payloads);
    } catch {
      // Generic on purpose: which key ids are loaded, or why a payload did not open, helps only an attacker.
      throw new HttpError(400, `${op} failed`);
    }
    send(res, 200, payloadsToJson(out), cors);
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      const origin = typeof req.headers.origin === 'string' ? req.headers.origin : undefined;
      const status = err instanceof HttpError ? err.status : 500;
      const message = err instanceof HttpError ? err.message : 'internal error';
      log(`codec-server: ${req.method} ${(req.url ?? '').split('?')[0]} → ${status} ${message}`);
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const headers: Record<string, string> = corsHeaders(origin);
      if (status === 401) headers['WWW-Authenticate'] = 'Bearer';
      if (status === 405) headers.Allow = ALLOWED_METHODS;
      if (!req.complete) {
        // An unread (e.g. oversized) body: answer, drop the rest, and let the connection go.
        headers.Connection = 'close';
        req.resume();
        res.once('finish', () => setTimeout(() => req.socket.destroy(), DRAIN_GRACE_MS).unref());
      }
      send(res, status, { error: message }, headers);
    });
  });
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;

  const { origin } = await listen(server, opts.port, opts.host);
  return {
    url: origin,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

const DEFAULT_PORT = 8888;
const DEFAULT_ORIGINS = 'http://localhost:8233,http://127.0.0.1:8233';

/** Reads the server's own environment; throws CodecConfigError naming the variable. */
export function codecServerSettings(env: NodeJS.ProcessEnv = process.env): {
  port: number;
  host: string;
  authToken?: string;
  corsOrigins: string[];
  passPlaintext: boolean;
} {
  const portText = env.MANAGED_SMTP_CODEC_PORT?.trim() || String(DEFAULT_PORT);
  const port = Number(portText);
  if (!/^\d{1,5}$/.test(portText) || port < 1 || port > 65535) {
    throw new CodecConfigError('MANAGED_SMTP_CODEC_PORT must be a port number (1-65535)');
  }
  const host = env.MANAGED_SMTP_CODEC_HOST?.trim() || '127.0.0.1';
  if (!/^[A-Za-z0-9.:-]+$/.test(host)) throw new CodecConfigError('MANAGED_SMTP_CODEC_HOST must be a host name or IP');
  const authToken = env.MANAGED_SMTP_CODEC_AUTH_TOKEN?.trim() || undefined;
  if (authToken === undefined) {
    throw new CodecConfigError('MANAGED_SMTP_CODEC_AUTH_TOKEN is required: the bearer token callers must present');
  }
  if (!/^[\x21-\x7e]{16,}$/.test(authToken)) {
    throw new CodecConfigError('MANAGED_SMTP_CODEC_AUTH_TOKEN must be at least 16 printable characters, no spaces');
  }
  const originsText = env.MANAGED_SMTP_CODEC_CORS_ORIGINS?.trim() || DEFAULT_ORIGINS;
  let corsOrigins: string[];
  try {
    corsOrigins = originsText
      .split(',')
      .map((o) => o.trim())
      .filter((o) => o !== '')
      .map(normalizeOrigin);
  } catch (err) {
    throw new CodecConfigError(`MANAGED_SMTP_CODEC_CORS_ORIGINS: ${(err as Error).message}`);
  }
  const pass = env.MANAGED_SMTP_CODEC_PASS_PLAINTEXT?.trim() || '0';
  if (pass !== '0' && pass !== '1') throw new CodecConfigError('MANAGED_SMTP_CODEC_PASS_PLAINTEXT must be 0 or 1');
  return { port, host, authToken, corsOrigins, passPlaintext: pass === '1' };
}

async function main(): Promise<void> {
  let settings;
  let codec;
  try {
    settings = codecServerSettings(process.env);
    codec = await codecFromEnvironment(process.env);
    if (!codec) {
      throw new CodecConfigError('no keys: set MANAGED_SMTP_CODEC_KEYS or MANAGED_SMTP_CODEC_KEY_SECRET');
    }
  } catch (err) {
    if (err instanceof CodecConfigError) {
      process.stderr.write(`codec-server: invalid environment: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const server = await startCodecServer({
    codec,
    ...settings,
    log: (line) => process.stderr.write(`${line}\n`),
  });
  console.log(
    `codec-server: listening on ${server.url} (${codec.keyIds.length} key(s); ` +
      `origins: ${settings.corsOrigins.join(', ')}; auth: bearer token; ` +
      `plaintext: ${settings.passPlaintext ? 'passed' : 'refused'})`,
  );
  const stop = () => {
    void server.close().then(() => {
      console.log('codec-server: stopped');
      process.exit(0);
    });
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`codec-server: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}\n`);
    process.exit(1);
  });
}
