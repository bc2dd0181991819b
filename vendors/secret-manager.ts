/**
 * Google Secret Manager client for the activities: the real SecretManagerServiceClient, pointed at the local
 * emulator when SECRET_MANAGER_EMULATOR_HOST is set, wrapped so that it
 *  - throws only VendorError (never a GoogleError, whose message and metadata we do not control),
 *  - never retries by itself (google-gax retries UNAVAILABLE/RESOURCE_EXHAUSTED on AccessSecretVersion by
 *    default; Temporal is the only retry layer, so every call passes `retry: null`),
 *  - gives every call a deadline, and checks CRC32C both ways.
 */
import * as grpc from '@grpc/grpc-js';
import { SecretManagerServiceClient } from '@google-cloud/secret-manager';
import { crc32c } from '../lib/crc32c';
import { VendorError, kindForHttpStatus, type VendorErrorKind } from '../lib/errors';

/** How to reach Secret Manager. */
export interface SecretStoreOptions {
  /** host:port of an emulator (plain gRPC, no auth); unset = real service with ADC */
  emulatorHost?: string;
  /** Deadline of every call, in milliseconds (default 15000). */
  timeoutMs?: number;
}

/** A secret version as listed. */
export interface SecretVersionInfo {
  name: string;
  state: 'ENABLED' | 'DISABLED' | 'DESTROYED';
  /** ISO 8601. */
  createTime?: string;
}

type ClientOptions = NonNullable<ConstructorParameters<typeof SecretManagerServiceClient>[0]>;

/** The per-call options we pass; `retry: null` switches google-gax's own retry layer off for that call. */
interface NoRetryCallOptions {
  timeout: number;
  retry: null;
  autoPaginate?: false;
}

const DEFAULT_TIMEOUT_MS = 15_000;
const MAX_LIST_PAGES = 100;
const MAX_SERVER_MESSAGE = 300;

/** gRPC status names by code. */
const GRPC_CODE_NAMES: readonly string[] = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
];

const GRPC_KINDS: Record<string, VendorErrorKind> = {
  CANCELLED: 'unavailable',
  UNKNOWN: 'unavailable',
  INVALID_ARGUMENT: 'invalid',
  DEADLINE_EXCEEDED: 'unavailable',
  NOT_FOUND: 'not-found',
  ALREADY_EXISTS: 'conflict',
  PERMISSION_DENIED: 'forbidden',
  RESOURCE_EXHAUSTED: 'rate-limited',
  FAILED_PRECONDITION: 'failed-precondition',
  ABORTED: 'unavailable',
  OUT_OF_RANGE: 'invalid',
  UNIMPLEMENTED: 'invalid',
  INTERNAL: 'unavailable',
  UNAVAILABLE: 'unavailable',
  DATA_LOSS: 'unavailable',
  UNAUTHENTICATED: 'auth',
};

/**
 * Classifies what a Secret Manager call failed with. `code` is a gRPC status code (0-16), an HTTP status
 * (>= 100, from the REST fallback), or a status name such as `FAILED_PRECONDITION` (the REST body's
 * `error.status`, which is more precise than the HTTP status: FAILED_PRECONDITION arrives as HTTP 400).
 * No code at all means the call never got an answer: 'unavailable'.
 */
export function secretManagerErrorKind(code: number | string | undefined | null): VendorErrorKind {
  if (typeof code === 'string') {
    const upper = code.trim().toUpperCase();
    if (/^\d+$/.test(upper)) return secretManagerErrorKind(Number(upper));
    return GRPC_KINDS[upper] ?? 'unavailable';
  }
  if (typeof code !== 'number' || !Number.isFinite(code)) return 'unavailable';
  if (code >= 0 && code <= 16) return GRPC_KINDS[GRPC_CODE_NAMES[code]] ?? 'unavailable';
  if (code === 408) return 'unavailable';
  return kindForHttpStatus(code);
}

/** The name shown in messages for a code: `NOT_FOUND`, `HTTP 404`... */
function codeName(code: number | string | undefined): string {
  if (typeof code === 'string') return code;
  if (typeof code !== 'number') return 'NO_RESPONSE';
  if (code >= 0 && code <= 16) return GRPC_CODE_NAMES[code];
  return `HTTP ${code}`;
}

/**
 * Turns anything a SecretManagerServiceClient call threw into a VendorError whose message names the method and
 * resource and carries the server's message, with every string in `redact` (payloads we sent) cut out.
 */
export function secretManagerError(err: unknown, method: string, resource: string, redact: string[] = []): VendorError {
  if (err instanceof VendorError) return err;
  const e = (err ?? {}) as { code?: unknown; details?: unknown; message?: unknown; status?: unknown };
  let code: number | string | undefined =
    typeof e.code === 'number' ? e.code : typeof e.code === 'string' && e.code !== '' ? e.code : undefined;
  // The REST fallback may carry the canonical name in `status` next to the HTTP code.
  if (typeof e.status === 'string' && GRPC_KINDS[e.status]) code = e.status;
  let serverMessage =
    typeof e.details === 'string' && e.details !== ''
      ? e.details
      : typeof e.message === 'string'
        ? e.message.replace(/^\d+ [A-Z_]+: /, '')
        : '';
  for (const secret of redact) if (secret) serverMessage = serverMessage.split(secret).join('[redacted]');
  serverMessage = serverMessage.replace(/\s+/g, ' ').trim();
  if (serverMessage.length > MAX_SERVER_MESSAGE) serverMessage = `${serverMessage.slice(0, MAX_SERVER_MESSAGE)}…`;
  const kind = secretManagerErrorKind(code);
  const numeric = typeof code === 'number' ? code : GRPC_CODE_NAMES.indexOf(String(code));
  return new VendorError({
    vendor: 'secret-manager',
    kind,
    message: `Secret Manager ${method} ${resource}: ${codeName(code)}${serverMessage ? `: ${serverMessage}` : ''}`,
    ...(numeric >= 0 ? { status: numeric } : {}),
    ...(code !== undefined ? { code: codeName(code) } : {}),
  });
}

/** Splits `host:port` (or `[v6]:port`). */
function parseHostPort(value: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port <= 0 || port > 65535) {
    throw new VendorError({
      vendor: 'secret-manager',
      kind: 'invalid',
      message: `SECRET_MANAGER_EMULATOR_HOST must be host:port, got ${JSON.stringify(value)}`,
    });
  }
  return { host: m[1] ?? m[2], port };
}

/**
 * An auth client that adds nothing. With it, google-auth-library never looks for Application Default
 * Credentials nor asks the metadata server (GoogleAuth returns a given authClient as is, and its
 * `universeDomain` answers the universe check gax makes). getRequestHeaders returns a WHATWG Headers, as
 * google-auth-library 10 does; the gRPC path does not even call it because `sslCreds` is given.
 */
function noAuthClient(): NonNullable<ClientOptions['authClient']> {
  const stub = {
    universeDomain: 'googleapis.com',
    getRequestHeaders: async () => new Headers(),
  };
  return stub as unknown as NonNullable<ClientOptions['authClient']>;
}

/** The real client, pointed at the emulator when emulatorHost is set. */
export function createSecretManagerClient(opts: SecretStoreOptions): SecretManagerServiceClient {
  if (!opts.emulatorHost) return new SecretManagerServiceClient();
  const { host, port } = parseHostPort(opts.emulatorHost);
  return new SecretManagerServiceClient({
    // gax joins `${apiEndpoint}:${port}`, so an IPv6 literal needs its brackets back.
    apiEndpoint: host.includes(':') ? `[${host}]` : host,
    port,
    sslCreds: grpc.credentials.createInsecure(),
    authClient: noAuthClient(),
  });
}

function isoTime(ts: { seconds?: unknown; nanos?: unknown } | null | undefined): string | undefined {
  if (!ts || ts.seconds === undefined || ts.seconds === null) return undefined;
  const ms = Number(String(ts.seconds)) * 1000 + Math.floor(Number(ts.nanos ?? 0) / 1_000_000);
  return Number.isFinite(ms) ? new Date(ms).toISOString() : undefined;
}

const STATE_BY_NUMBER: Record<number, SecretVersionInfo['state']> = { 1: 'ENABLED', 2: 'DISABLED', 3: 'DESTROYED' };

function stateOf(value: unknown): SecretVersionInfo['state'] | undefined {
  if (typeof value === 'number') return STATE_BY_NUMBER[value];
  if (value === 'ENABLED' || value === 'DISABLED' || value === 'DESTROYED') return value;
  return undefined;
}

/** Secret Manager operations the activities need, over the real client. */
export class SecretStore {
  private readonly client: SecretManagerServiceClient;
  private readonly timeoutMs: number;

  constructor(opts: SecretStoreOptions) {
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.client = createSecretManagerClient(opts);
  }

  /** SECRET_MANAGER_EMULATOR_HOST from the environment. */
  static fromEnvironment(env: NodeJS.ProcessEnv = process.env): SecretStore {
    const emulatorHost = env.SECRET_MANAGER_EMULATOR_HOST?.trim();
    return new SecretStore({ emulatorHost: emulatorHost || undefined });
  }

  private get callOptions(): NoRetryCallOptions {
    return { timeout: this.timeoutMs, retry: null };
  }

  private async call<T>(method: string, resource: string, fn: () => Promise<T>, redact: string[] = []): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw secretManagerError(err, method, resource, redact);
    }
  }

  /** Creates the secret (automatic replication) or gets it when it exists (ALREADY_EXISTS is not an error). */
  async ensureSecret(
    project: string,
    secretId: string,
    labels: Record<string, string>,
  ): Promise<{ name: string; created: boolean }> {
    const parent = `projects/${project}`;
    const name = `${parent}/secrets/${secretId}`;
    try {
      const [secret] = await this.call('CreateSecret', name, () =>
        this.client.createSecret(
          { parent, secretId, secret: { replication: { automatic: {} }, labels } },
          this.callOptions,
        ),
      );
      return { name: secret.name ?? name, created: true };
    } catch (err) {
      if (!(err instanceof VendorError) || err.kind !== 'conflict') throw err;
    }
    const [secret] = await this.call('GetSecret', name, () => this.client.getSecret({ name }, this.callOptions));
    return { name: secret.name ?? name, created: false };
  }

  /** Adds a version, with dataCrc32c; returns the version name (projects/P/secrets/S/versions/N). */
  async addVersion(secretName: string, data: string): Promise<string> {
    const bytes = Buffer.from(data, 'utf8');
    const [version] = await this.call(
      'AddSecretVersion',
      secretName,
      () =>
        this.client.addSecretVersion(
          { parent: secretName, payload: { data: bytes, dataCrc32c: crc32c(bytes) } },
          this.callOptions,
        ),
      [data],
    );
    if (!version.name) {
      throw new VendorError({
        vendor: 'secret-manager',
        kind: 'malformed',
        message: `Secret Manager AddSecretVersion ${secretName}: response without a version name`,
      });
    }
    return version.name;
  }

  /** Reads a version (".../versions/latest" allowed); returns the resolved version name and the payload;
   *  verifies the returned CRC32C (mismatch → 'malformed'). */
  async access(versionName: string): Promise<{ name: string; data: string }> {
    const [res] = await this.call('AccessSecretVersion', versionName, () =>
      this.client.accessSecretVersion({ name: versionName }, this.callOptions),
    );
    const malformed = (why: string) =>
      new VendorError({
        vendor: 'secret-manager',
        kind: 'malformed',
        message: `Secret Manager AccessSecretVersion ${versionName}: ${why}`,
      });
    const raw = res.payload?.data;
    if (raw === undefined || raw === null) throw malformed('response without a payload');
    const bytes = typeof raw === 'string' ? Buffer.from(raw, 'base64') : Buffer.from(raw);
    const sum = res.payload?.dataCrc32c;
    if (sum !== undefined && sum !== null && Number(String(sum)) !== crc32c(bytes)) {
      throw malformed('payload CRC32C mismatch');
    }
    let data: string;
    try {
      data = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      throw malformed('payload is not UTF-8');
    }
    return { name: res.name || versionName, data };
  }

  /** Like access but returns null when the secret or version does not exist, or has no enabled latest version. */
  async accessIfExists(versionName: string): Promise<{ name: string; data: string } | null> {
    try {
      return await this.access(versionName);
    } catch (err) {
      if (err instanceof VendorError && (err.kind === 'not-found' || err.kind === 'failed-precondition')) return null;
      throw err;
    }
  }

  /** The secret's labels, or null when the secret does not exist. */
  async getSecretLabels(secretName: string): Promise<Record<string, string> | null> {
    try {
      const [secret] = await this.call('GetSecret', secretName, () =>
        this.client.getSecret({ name: secretName }, this.callOptions),
      );
      return { ...(secret.labels ?? {}) };
    } catch (err) {
      if (err instanceof VendorError && err.kind === 'not-found') return null;
      throw err;
    }
  }

  /** The secret's versions, newest first; [] when the secret does not exist. */
  async listVersions(secretName: string, opts: { enabledOnly?: boolean } = {}): Promise<SecretVersionInfo[]> {
    const out: SecretVersionInfo[] = [];
    let pageToken: string | undefined;
    for (let page = 0; page < MAX_LIST_PAGES; page++) {
      let versions;
      let next;
      try {
        [versions, next] = await this.call('ListSecretVersions', secretName, () =>
          this.client.listSecretVersions(
            { parent: secretName, filter: opts.enabledOnly ? 'state:ENABLED' : '', pageToken },
            { ...this.callOptions, autoPaginate: false },
          ),
        );
      } catch (err) {
        if (err instanceof VendorError && err.kind === 'not-found') return [];
        throw err;
      }
      for (const v of versions) {
        const state = stateOf(v.state);
        if (!v.name || !state) continue;
        const createTime = isoTime(v.createTime);
        out.push({ name: v.name, state, ...(createTime ? { createTime } : {}) });
      }
      pageToken = next?.pageToken ?? undefined;
      if (!pageToken) return out;
    }
    throw new VendorError({
      vendor: 'secret-manager',
      kind: 'malformed',
      message: `Secret Manager ListSecretVersions ${secretName}: more than ${MAX_LIST_PAGES} pages`,
    });
  }

  /**
   * Names of the project's secrets whose labels include every one of `labels` (issue 11: offboarding deletes what
   * managed-smtp made). Label values are checked here as well, so a looser server-side filter cannot widen it.
   */
  async listSecrets(project: string, labels: Record<string, string>): Promise<string[]> {
    const parent = `projects/${project}`;
    const filter = Object.entries(labels)
      .map(([k, v]) => `labels.${k}=${v}`)
      .join(' AND ');
    const out: string[] = [];
    let pageToken: string | undefined;
    for (let page = 0; page < MAX_LIST_PAGES; page++) {
      const [secrets, next] = await this.call('ListSecrets', parent, () =>
        this.client.listSecrets({ parent, filter, pageToken }, { ...this.callOptions, autoPaginate: false }),
      );
      for (const s of secrets) {
        const own = s.labels ?? {};
        if (s.name && Object.entries(labels).every(([k, v]) => own[k] === v)) out.push(s.name);
      }
      pageToken = next?.pageToken ?? undefined;
      if (!pageToken) return out;
    }
    throw new VendorError({
      vendor: 'secret-manager',
      kind: 'malformed',
      message: `Secret Manager ListSecrets ${parent}: more than ${MAX_LIST_PAGES} pages`,
    });
  }

  /** Disables a version; disabling a disabled version is a no-op on the service. */
  async disableVersion(versionName: string): Promise<void> {
    await this.call('DisableSecretVersion', versionName, () =>
      this.client.disableSecretVersion({ name: versionName }, this.callOptions),
    );
  }

  /** Destroys a version; already destroyed or missing is fine (idempotent). */
  async destroyVersion(versionName: string): Promise<void> {
    try {
      await this.call('DestroySecretVersion', versionName, () =>
        this.client.destroySecretVersion({ name: versionName }, this.callOptions),
      );
    } catch (err) {
      if (!(err instanceof VendorError)) throw err;
      if (err.kind === 'not-found') return;
      if (err.kind !== 'failed-precondition') throw err;
      // The service refuses to destroy twice; confirm that is why before calling it done.
      let state: SecretVersionInfo['state'] | undefined;
      try {
        const [v] = await this.call('GetSecretVersion', versionName, () =>
          this.client.getSecretVersion({ name: versionName }, this.callOptions),
        );
        state = stateOf(v.state);
      } catch (getErr) {
        if (getErr instanceof VendorError && getErr.kind === 'not-found') return;
        throw getErr;
      }
      if (state !== 'DESTROYED') throw err;
    }
  }

  /** Deletes the secret; returns false when it did not exist (idempotent). */
  async deleteSecret(secretName: string): Promise<boolean> {
    try {
      await this.call('DeleteSecret', secretName, () =>
        this.client.deleteSecret({ name: secretName }, this.callOptions),
      );
      return true;
    } catch (err) {
      if (err instanceof VendorError && err.kind === 'not-found') return false;
      throw err;
    }
  }

  /** Closes the gRPC channel. */
  async close(): Promise<void> {
    try {
      await this.client.close();
    } catch {
      // Closing a client that never connected can reject; nothing is left open either way.
    }
  }
}
