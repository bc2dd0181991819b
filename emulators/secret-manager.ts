/**
 * A local Google Secret Manager: a real gRPC server speaking `google.cloud.secretmanager.v1.SecretManagerService`,
 * built from the .proto files that @google-cloud/secret-manager itself ships, so the real
 * SecretManagerServiceClient talks to it unchanged (SECRET_MANAGER_EMULATOR_HOST=127.0.0.1:PORT).
 *
 * It mirrors the service's behaviour that our code depends on: ALREADY_EXISTS on a duplicate id, `latest` being
 * the most recently *created* version (FAILED_PRECONDITION when that one is disabled or destroyed), CRC32C
 * verification of payloads, PERMISSION_DENIED "(or it may not exist)" for projects without a grant, and the
 * shared fault knobs (the gRPC method name is the route).
 */
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { crc32c } from '../lib/crc32c';
import { Faults, type FaultConfig } from '../lib/faults';

/** Options of the Secret Manager emulator. */
export interface SecretManagerEmulatorOptions {
  /** Interface to bind; 127.0.0.1 unless given. */
  host?: string;
  /** Port to bind; 0 (random) unless given. */
  port?: number;
  /** Initial fault knobs. */
  faults?: Partial<FaultConfig>;
  /** Projects the caller has no IAM grant on: every call there fails PERMISSION_DENIED. */
  deniedProjects?: string[];
  /**
   * Project id → project number. The real service answers with the project NUMBER in every resource name
   * (`projects/123456789012/secrets/s`) even when the request used the id; list a project here to get that quirk.
   * Requests may then use either form. Unlisted projects keep the name they were addressed with.
   */
  projectNumbers?: Record<string, string>;
}

/** State of a secret version, as the API names it. */
export type SecretVersionState = 'ENABLED' | 'DISABLED' | 'DESTROYED';

/** A version as the test helpers show it (payload in clear: helpers are in-process only). */
export interface EmulatedSecretVersion {
  name: string;
  state: SecretVersionState;
  /** The payload as UTF-8; absent once destroyed. */
  data?: string;
  createTime: string;
}

/** A secret as the test helpers show it. */
export interface EmulatedSecret {
  name: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  createTime: string;
  etag: string;
  /** Oldest first. */
  versions: EmulatedSecretVersion[];
}

interface VersionRecord {
  id: number;
  state: SecretVersionState;
  data?: Buffer;
  createTime: Date;
  destroyTime?: Date;
  etag: string;
  clientChecksum: boolean;
}

interface SecretRecord {
  project: string;
  id: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  replication: Record<string, unknown>;
  createTime: Date;
  etag: string;
  versions: VersionRecord[];
}

/** A gRPC error the handlers throw; turned into the call's status. */
class RpcError extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
  }
}

// Protobuf messages decoded by proto-loader with the options below: camelCase keys, enums and int64 as strings.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Msg = Record<string, any>;
type Handler = (req: Msg) => Msg;

const SECRET_ID = /^[A-Za-z0-9_-]{1,255}$/;
// Label keys: lowercase letters first, then lowercase letters, digits, _ and -; at most 63 characters.
const LABEL_KEY = /^[\p{Ll}\p{Lo}][\p{Ll}\p{Lo}\p{N}_-]{0,62}$/u;
const LABEL_VALUE = /^[\p{Ll}\p{Lo}\p{N}_-]{0,63}$/u;
const MAX_PAYLOAD_BYTES = 64 * 1024;
const MAX_PAGE_SIZE = 25000;
const STATES: readonly SecretVersionState[] = ['ENABLED', 'DISABLED', 'DESTROYED'];

/** The IAM permission each method needs, for PERMISSION_DENIED messages. */
const PERMISSIONS: Record<string, string> = {
  ListSecrets: 'secretmanager.secrets.list',
  CreateSecret: 'secretmanager.secrets.create',
  GetSecret: 'secretmanager.secrets.get',
  UpdateSecret: 'secretmanager.secrets.update',
  DeleteSecret: 'secretmanager.secrets.delete',
  AddSecretVersion: 'secretmanager.versions.add',
  ListSecretVersions: 'secretmanager.versions.list',
  GetSecretVersion: 'secretmanager.versions.get',
  AccessSecretVersion: 'secretmanager.versions.access',
  DisableSecretVersion: 'secretmanager.versions.disable',
  EnableSecretVersion: 'secretmanager.versions.enable',
  DestroySecretVersion: 'secretmanager.versions.destroy',
};

const SERVICE = 'google.cloud.secretmanager.v1.SecretManagerService';

let cachedDefinition: grpc.ServiceDefinition | undefined;

/** Loads the service definition from the protos the installed client ships (resolved, not hard-coded paths). */
function serviceDefinition(): grpc.ServiceDefinition {
  if (cachedDefinition) return cachedDefinition;
  const smRoot = path.dirname(require.resolve('@google-cloud/secret-manager/package.json'));
  // google-gax does not export its package.json; its entry point is build/src/index.js, protos sit in build/protos.
  const gaxEntry = require.resolve('google-gax', { paths: [smRoot] });
  const gaxProtos = path.resolve(path.dirname(gaxEntry), '..', 'protos');
  const smProtos = path.join(smRoot, 'build', 'protos');
  const pkg = protoLoader.loadSync('google/cloud/secretmanager/v1/service.proto', {
    includeDirs: [smProtos, gaxProtos],
    keepCase: false,
    longs: String,
    enums: String,
    defaults: false,
    oneofs: true,
  });
  cachedDefinition = pkg[SERVICE] as grpc.ServiceDefinition;
  if (!cachedDefinition) throw new Error(`${SERVICE} not found in the Secret Manager protos`);
  return cachedDefinition;
}

function timestamp(d: Date): Msg {
  const ms = d.getTime();
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 };
}

function newEtag(): string {
  return `"${randomBytes(7).toString('hex')}"`;
}

/** Short prefix plus a sha256 fingerprint: enough to tell values apart, never enough to use one. */
function mask(data: Buffer): string {
  const text = data.toString('utf8');
  const prefix = text.slice(0, Math.min(4, Math.floor(text.length / 4)));
  return `${prefix}…(${data.length} bytes, sha256:${createHash('sha256').update(data).digest('hex').slice(0, 12)})`;
}

/** A tiny subset of the List filter language: `field:value`, `field=value`, `NOT`/`-`, `(A OR B)`, AND. */
function compileFilter(
  filter: string,
  fields: ReadonlySet<string>,
): (get: (field: string) => string | undefined) => boolean {
  const text = filter.trim();
  if (!text) return () => true;
  const termRe = /^(NOT\s+|-)?([a-zA-Z_][a-zA-Z0-9_.-]*)\s*([:=])\s*(\([^)]*\)|"[^"]*"|[^\s()]+)$/;
  const tokens: string[] = [];
  // Split on whitespace outside parentheses and quotes; the AND keyword is the default conjunction anyway.
  const re = /(NOT\s+|-)?[a-zA-Z_][a-zA-Z0-9_.-]*\s*[:=]\s*(\([^)]*\)|"[^"]*"|[^\s()]+)|\bAND\b/g;
  let consumed = '';
  for (const m of text.matchAll(re)) {
    consumed += m[0];
    if (m[0] !== 'AND') tokens.push(m[0]);
  }
  if (consumed.replace(/\s+/g, '') !== text.replace(/\s+/g, '') || tokens.length === 0) {
    throw new RpcError(grpc.status.INVALID_ARGUMENT, `Invalid filter: ${filter}`);
  }
  const preds = tokens.map((tok) => {
    const m = termRe.exec(tok.trim());
    if (!m) throw new RpcError(grpc.status.INVALID_ARGUMENT, `Invalid filter: ${filter}`);
    const [, neg, field, op, rawValue] = m;
    const base = field.startsWith('labels.') ? 'labels.*' : field;
    if (!fields.has(base)) throw new RpcError(grpc.status.INVALID_ARGUMENT, `Invalid filter field: ${field}`);
    const values = rawValue.startsWith('(')
      ? rawValue
          .slice(1, -1)
          .split(/\s+OR\s+/)
          .map((v) => v.trim())
      : [rawValue];
    const wanted = values.map((v) => v.replace(/^"|"$/g, ''));
    return (get: (f: string) => string | undefined): boolean => {
      const actual = get(field);
      const hit = wanted.some((w) => {
        if (actual === undefined) return false;
        if (w === '*') return true;
        return op === '=' ? actual === w : actual.toLowerCase().includes(w.toLowerCase());
      });
      return neg ? !hit : hit;
    };
  });
  return (get) => preds.every((p) => p(get));
}

function pageOf<T>(
  items: T[],
  pageSize: number | undefined,
  pageToken: string | undefined,
): { page: T[]; next: string } {
  let offset = 0;
  if (pageToken) {
    const n = Number(Buffer.from(pageToken, 'base64url').toString('utf8'));
    if (!Number.isInteger(n) || n < 0) throw new RpcError(grpc.status.INVALID_ARGUMENT, 'Invalid page token.');
    offset = n;
  }
  const size = pageSize && pageSize > 0 ? Math.min(pageSize, MAX_PAGE_SIZE) : MAX_PAGE_SIZE;
  const page = items.slice(offset, offset + size);
  const end = offset + page.length;
  return { page, next: end < items.length ? Buffer.from(String(end)).toString('base64url') : '' };
}

function validateLabels(labels: Record<string, string>, what: 'labels' | 'annotations'): void {
  const entries = Object.entries(labels);
  if (what === 'labels') {
    if (entries.length > 64) throw new RpcError(grpc.status.INVALID_ARGUMENT, 'A secret can have at most 64 labels.');
    for (const [k, v] of entries) {
      if (!LABEL_KEY.test(k)) throw new RpcError(grpc.status.INVALID_ARGUMENT, `Invalid label key [${k}].`);
      if (!LABEL_VALUE.test(v)) throw new RpcError(grpc.status.INVALID_ARGUMENT, `Invalid value for label [${k}].`);
    }
  } else {
    const size = entries.reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v), 0);
    if (size > 16 * 1024) throw new RpcError(grpc.status.INVALID_ARGUMENT, 'Annotations must total at most 16 KiB.');
  }
}

function normalizeReplication(r: Msg | undefined): Record<string, unknown> {
  if (!r || (!r.automatic && !r.userManaged)) {
    throw new RpcError(grpc.status.INVALID_ARGUMENT, 'Secret.replication must be specified.');
  }
  if (r.automatic) return { automatic: {} };
  const replicas = (r.userManaged.replicas ?? []) as Msg[];
  if (replicas.length === 0 || replicas.some((x) => !x.location)) {
    throw new RpcError(grpc.status.INVALID_ARGUMENT, 'Secret.replication.user_managed.replicas must name locations.');
  }
  return { userManaged: { replicas: replicas.map((x) => ({ location: String(x.location) })) } };
}

/** The local Secret Manager. */
export class SecretManagerEmulator {
  /** "127.0.0.1:PORT", what SECRET_MANAGER_EMULATOR_HOST takes. */
  readonly address: string;
  /** Fault knobs; the route is the gRPC method name, e.g. `AccessSecretVersion`. */
  readonly faults: Faults;
  /** Projects without an IAM grant (ids or numbers); mutable at run time. */
  readonly deniedProjects: Set<string>;
  /** Test knob: AccessSecretVersion answers with a wrong data_crc32c, as if the payload were corrupted in transit. */
  corruptChecksums = false;

  private readonly secrets = new Map<string, SecretRecord>();
  private readonly counts = new Map<string, number>();
  private readonly numberOf: Map<string, string>;
  private readonly idOf: Map<string, string>;

  private constructor(
    private readonly server: grpc.Server,
    address: string,
    opts: SecretManagerEmulatorOptions,
  ) {
    this.address = address;
    this.faults = new Faults(opts.faults);
    this.deniedProjects = new Set(opts.deniedProjects ?? []);
    this.numberOf = new Map(Object.entries(opts.projectNumbers ?? {}));
    this.idOf = new Map([...this.numberOf].map(([id, num]) => [num, id]));
  }

  /** Starts a server on 127.0.0.1 and a random port unless told otherwise. */
  static async start(opts: SecretManagerEmulatorOptions = {}): Promise<SecretManagerEmulator> {
    const server = new grpc.Server();
    const host = opts.host ?? '127.0.0.1';
    const bindHost = host.includes(':') ? `[${host}]` : host;
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`${bindHost}:${opts.port ?? 0}`, grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    const emulator = new SecretManagerEmulator(server, `${bindHost}:${port}`, opts);
    server.addService(serviceDefinition(), emulator.implementation());
    return emulator;
  }

  /** Requests received for `method` (every method when omitted), faulted ones included. */
  requestCount(method?: string): number {
    if (method) return this.counts.get(method) ?? 0;
    let n = 0;
    for (const v of this.counts.values()) n += v;
    return n;
  }

  /** Zeroes the request counters. */
  resetCounts(): void {
    this.counts.clear();
  }

  /** Test helper: creates the secret if needed and adds a version holding `value`; returns the version name. */
  seed(secretName: string, value: string, labels: Record<string, string> = {}): string {
    const { project, secret } = this.parseSecretName(secretName);
    const key = this.key(project, secret);
    let rec = this.secrets.get(key);
    if (!rec) {
      validateLabels(labels, 'labels');
      rec = {
        project: this.canonicalProject(project),
        id: secret,
        labels: { ...labels },
        annotations: {},
        replication: { automatic: {} },
        createTime: new Date(),
        etag: newEtag(),
        versions: [],
      };
      this.secrets.set(key, rec);
    }
    return this.versionName(rec, this.addVersion(rec, Buffer.from(value, 'utf8'), false));
  }

  /** Test helper: the secret's record (payloads in clear) or undefined. */
  getSecret(secretName: string): EmulatedSecret | undefined {
    const { project, secret } = this.parseSecretName(secretName);
    const rec = this.secrets.get(this.key(project, secret));
    if (!rec) return undefined;
    return {
      name: this.secretName(rec),
      labels: { ...rec.labels },
      annotations: { ...rec.annotations },
      createTime: rec.createTime.toISOString(),
      etag: rec.etag,
      versions: rec.versions.map((v) => ({
        name: this.versionName(rec, v),
        state: v.state,
        ...(v.data ? { data: v.data.toString('utf8') } : {}),
        createTime: v.createTime.toISOString(),
      })),
    };
  }

  /** Test helper: every secret name that exists. */
  listSecretNames(): string[] {
    return [...this.secrets.values()].map((r) => this.secretName(r)).sort();
  }

  /** JSON-safe state for tests and operators; payloads masked (prefix + sha256 fingerprint). */
  snapshot(): object {
    return {
      address: this.address,
      faults: this.faults.current(),
      injected: { ...this.faults.injected },
      deniedProjects: [...this.deniedProjects].sort(),
      requests: Object.fromEntries([...this.counts].sort(([a], [b]) => a.localeCompare(b))),
      secrets: [...this.secrets.values()]
        .sort((a, b) => this.secretName(a).localeCompare(this.secretName(b)))
        .map((rec) => ({
          name: this.secretName(rec),
          labels: { ...rec.labels },
          annotations: { ...rec.annotations },
          createTime: rec.createTime.toISOString(),
          versions: rec.versions.map((v) => ({
            name: this.versionName(rec, v),
            state: v.state,
            createTime: v.createTime.toISOString(),
            ...(v.destroyTime ? { destroyTime: v.destroyTime.toISOString() } : {}),
            ...(v.data ? { payload: mask(v.data) } : {}),
          })),
        })),
    };
  }

  /** Stops the server; in-flight calls get a short grace period, then are cancelled. */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, 2000);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  // ---- names ---------------------------------------------------------------------------------------------

  private canonicalProject(project: string): string {
    return this.numberOf.get(project) ?? project;
  }

  private key(project: string, secret: string): string {
    return `projects/${this.canonicalProject(project)}/secrets/${secret}`;
  }

  private secretName(rec: SecretRecord): string {
    return `projects/${rec.project}/secrets/${rec.id}`;
  }

  private versionName(rec: SecretRecord, v: VersionRecord): string {
    return `${this.secretName(rec)}/versions/${v.id}`;
  }

  private isDenied(project: string): boolean {
    const canonical = this.canonicalProject(project);
    return (
      this.deniedProjects.has(project) ||
      this.deniedProjects.has(canonical) ||
      this.deniedProjects.has(this.idOf.get(canonical) ?? '')
    );
  }

  private rejectRegional(name: string): void {
    if (/^projects\/[^/]+\/locations\//.test(name)) {
      throw new RpcError(grpc.status.UNIMPLEMENTED, 'Regional secrets are not supported by this emulator.');
    }
  }

  private parseParent(name: unknown): { project: string } {
    const s = typeof name === 'string' ? name : '';
    this.rejectRegional(s);
    const m = /^projects\/([^/]+)$/.exec(s);
    if (!m)
      throw new RpcError(grpc.status.INVALID_ARGUMENT, `Invalid resource field value in the request: parent [${s}].`);
    return { project: m[1] };
  }

  private parseSecretName(name: unknown): { project: string; secret: string } {
    const s = typeof name === 'string' ? name : '';
    this.rejectRegional(s);
    const m = /^projects\/([^/]+)\/secrets\/([^/]+)$/.exec(s);
    if (!m || !SECRET_ID.test(m[2])) {
      throw new RpcError(grpc.status.INVALID_ARGUMENT, `Invalid resource field value in the request: name [${s}].`);
    }
    return { project: m[1], secret: m[2] };
  }

  private parseVersionName(name: unknown): { project: string; secret: string; version: string } {
    const s = typeof name === 'string' ? name : '';
    this.rejectRegional(s);
    const m = /^projects\/([^/]+)\/secrets\/([^/]+)\/versions\/([^/]+)$/.exec(s);
    if (!m || !SECRET_ID.test(m[2])) {
      throw new RpcError(grpc.status.INVALID_ARGUMENT, `Invalid resource field value in the request: name [${s}].`);
    }
    return { project: m[1], secret: m[2], version: m[3] };
  }

  private authorize(method: string, project: string, resource: string): void {
    if (this.isDenied(project)) {
      throw new RpcError(
        grpc.status.PERMISSION_DENIED,
        `Permission '${PERMISSIONS[method]}' denied for resource '${resource}' (or it may not exist).`,
      );
    }
  }

  // ---- records -------------------------------------------------------------------------------------------

  private requireSecret(project: string, secret: string): SecretRecord {
    const rec = this.secrets.get(this.key(project, secret));
    if (!rec) {
      throw new RpcError(grpc.status.NOT_FOUND, `Secret [${this.key(project, secret)}] not found or has no versions.`);
    }
    return rec;
  }

  private requireVersion(project: string, secret: string, version: string): { rec: SecretRecord; v: VersionRecord } {
    const rec = this.requireSecret(project, secret);
    let v: VersionRecord | undefined;
    if (version === 'latest') {
      // `latest` is the most recently created version, whatever its state.
      v = rec.versions[rec.versions.length - 1];
      if (!v)
        throw new RpcError(grpc.status.NOT_FOUND, `Secret [${this.secretName(rec)}] not found or has no versions.`);
    } else {
      const id = /^[1-9][0-9]*$/.test(version) ? Number(version) : NaN;
      v = rec.versions.find((x) => x.id === id);
      if (!v) {
        throw new RpcError(
          grpc.status.NOT_FOUND,
          `Secret Version [${this.secretName(rec)}/versions/${version}] not found.`,
        );
      }
    }
    return { rec, v };
  }

  private addVersion(rec: SecretRecord, data: Buffer, clientChecksum: boolean): VersionRecord {
    const last = rec.versions[rec.versions.length - 1];
    const v: VersionRecord = {
      id: (last?.id ?? 0) + 1,
      state: 'ENABLED',
      data,
      createTime: new Date(),
      etag: newEtag(),
      clientChecksum,
    };
    rec.versions.push(v);
    return v;
  }

  private secretMsg(rec: SecretRecord): Msg {
    return {
      name: this.secretName(rec),
      replication: rec.replication,
      createTime: timestamp(rec.createTime),
      labels: rec.labels,
      annotations: rec.annotations,
      etag: rec.etag,
    };
  }

  private versionMsg(rec: SecretRecord, v: VersionRecord): Msg {
    return {
      name: this.versionName(rec, v),
      createTime: timestamp(v.createTime),
      ...(v.destroyTime ? { destroyTime: timestamp(v.destroyTime) } : {}),
      state: v.state,
      replicationStatus: rec.replication.automatic ? { automatic: {} } : { userManaged: { replicas: [] } },
      etag: v.etag,
      clientSpecifiedPayloadChecksum: v.clientChecksum,
    };
  }

  private checkEtag(given: unknown, actual: string, what: string): void {
    if (typeof given === 'string' && given !== '' && given !== actual) {
      throw new RpcError(grpc.status.FAILED_PRECONDITION, `The etag provided does not match the current ${what} etag.`);
    }
  }

  // ---- methods -------------------------------------------------------------------------------------------

  private handlers(): Record<string, Handler> {
    return {
      CreateSecret: (req) => {
        const { project } = this.parseParent(req.parent);
        const secretId = typeof req.secretId === 'string' ? req.secretId : '';
        if (!SECRET_ID.test(secretId)) {
          throw new RpcError(
            grpc.status.INVALID_ARGUMENT,
            `The provided Secret ID [${secretId}] does not match the expected format [[a-zA-Z_0-9-]{1,255}].`,
          );
        }
        this.authorize('CreateSecret', project, `projects/${project}`);
        if (!req.secret) throw new RpcError(grpc.status.INVALID_ARGUMENT, 'Secret must be specified.');
        const replication = normalizeReplication(req.secret.replication);
        const labels = { ...((req.secret.labels as Record<string, string>) ?? {}) };
        const annotations = { ...((req.secret.annotations as Record<string, string>) ?? {}) };
        validateLabels(labels, 'labels');
        validateLabels(annotations, 'annotations');
        const key = this.key(project, secretId);
        if (this.secrets.has(key)) throw new RpcError(grpc.status.ALREADY_EXISTS, `Secret [${key}] already exists.`);
        const rec: SecretRecord = {
          project: this.canonicalProject(project),
          id: secretId,
          labels,
          annotations,
          replication,
          createTime: new Date(),
          etag: newEtag(),
          versions: [],
        };
        this.secrets.set(key, rec);
        return this.secretMsg(rec);
      },

      GetSecret: (req) => {
        const { project, secret } = this.parseSecretName(req.name);
        this.authorize('GetSecret', project, req.name);
        return this.secretMsg(this.requireSecret(project, secret));
      },

      ListSecrets: (req) => {
        const { project } = this.parseParent(req.parent);
        this.authorize('ListSecrets', project, req.parent);
        const match = compileFilter(req.filter ?? '', new Set(['name', 'labels.*']));
        const prefix = `projects/${this.canonicalProject(project)}/secrets/`;
        const all = [...this.secrets.entries()]
          .filter(([k]) => k.startsWith(prefix))
          .map(([, r]) => r)
          .sort((a, b) => a.id.localeCompare(b.id))
          .filter((r) => match((f) => (f === 'name' ? this.secretName(r) : r.labels[f.slice('labels.'.length)])));
        const { page, next } = pageOf(all, req.pageSize, req.pageToken);
        return { secrets: page.map((r) => this.secretMsg(r)), nextPageToken: next, totalSize: all.length };
      },

      UpdateSecret: (req) => {
        if (!req.secret) throw new RpcError(grpc.status.INVALID_ARGUMENT, 'Secret must be specified.');
        const { project, secret } = this.parseSecretName(req.secret.name);
        this.authorize('UpdateSecret', project, req.secret.name);
        const paths: string[] = req.updateMask?.paths ?? [];
        if (paths.length === 0) throw new RpcError(grpc.status.INVALID_ARGUMENT, 'update_mask must be specified.');
        const rec = this.requireSecret(project, secret);
        this.checkEtag(req.secret.etag, rec.etag, 'secret');
        const next = { labels: rec.labels, annotations: rec.annotations };
        for (const p of paths) {
          if (p === 'labels') next.labels = { ...(req.secret.labels ?? {}) };
          else if (p === 'annotations') next.annotations = { ...(req.secret.annotations ?? {}) };
          else if (['name', 'create_time', 'createTime', 'replication', 'etag'].includes(p)) {
            throw new RpcError(grpc.status.INVALID_ARGUMENT, `Field [${p}] cannot be updated.`);
          } else throw new RpcError(grpc.status.UNIMPLEMENTED, `Updating [${p}] is not supported by this emulator.`);
        }
        validateLabels(next.labels, 'labels');
        validateLabels(next.annotations, 'annotations');
        rec.labels = next.labels;
        rec.annotations = next.annotations;
        rec.etag = newEtag();
        return this.secretMsg(rec);
      },

      DeleteSecret: (req) => {
        const { project, secret } = this.parseSecretName(req.name);
        this.authorize('DeleteSecret', project, req.name);
        const rec = this.requireSecret(project, secret);
        this.checkEtag(req.etag, rec.etag, 'secret');
        this.secrets.delete(this.key(project, secret));
        return {};
      },

      AddSecretVersion: (req) => {
        const { project, secret } = this.parseSecretName(req.parent);
        this.authorize('AddSecretVersion', project, req.parent);
        const rec = this.requireSecret(project, secret);
        if (!req.payload) throw new RpcError(grpc.status.INVALID_ARGUMENT, 'Payload must be specified.');
        const data = Buffer.from((req.payload.data as Uint8Array | undefined) ?? Buffer.alloc(0));
        if (data.length > MAX_PAYLOAD_BYTES) {
          throw new RpcError(grpc.status.INVALID_ARGUMENT, 'Secret payload data must be at most 64 KiB.');
        }
        const given = req.payload.dataCrc32c;
        const hasChecksum = given !== undefined && given !== null;
        if (hasChecksum && Number(given) !== crc32c(data)) {
          throw new RpcError(
            grpc.status.INVALID_ARGUMENT,
            'Checksum mismatch: the provided data_crc32c does not match the CRC32C of the payload data.',
          );
        }
        return this.versionMsg(rec, this.addVersion(rec, data, hasChecksum));
      },

      GetSecretVersion: (req) => {
        const { project, secret, version } = this.parseVersionName(req.name);
        this.authorize('GetSecretVersion', project, req.name);
        const { rec, v } = this.requireVersion(project, secret, version);
        return this.versionMsg(rec, v);
      },

      AccessSecretVersion: (req) => {
        const { project, secret, version } = this.parseVersionName(req.name);
        this.authorize('AccessSecretVersion', project, req.name);
        const { rec, v } = this.requireVersion(project, secret, version);
        if (v.state !== 'ENABLED' || !v.data) {
          throw new RpcError(
            grpc.status.FAILED_PRECONDITION,
            `Secret Version [${this.versionName(rec, v)}] is in ${v.state} state.`,
          );
        }
        const sum = (crc32c(v.data) ^ (this.corruptChecksums ? 1 : 0)) >>> 0;
        return { name: this.versionName(rec, v), payload: { data: v.data, dataCrc32c: String(sum) } };
      },

      ListSecretVersions: (req) => {
        const { project, secret } = this.parseSecretName(req.parent);
        this.authorize('ListSecretVersions', project, req.parent);
        const rec = this.requireSecret(project, secret);
        const match = compileFilter(req.filter ?? '', new Set(['state', 'name']));
        for (const m of String(req.filter ?? '').matchAll(/state\s*[:=]\s*\(?([^)\s]+)/g)) {
          if (!STATES.includes(m[1].replace(/"/g, '') as SecretVersionState)) {
            throw new RpcError(grpc.status.INVALID_ARGUMENT, `Invalid filter: unknown state ${m[1]}`);
          }
        }
        // Newest first, as the service lists them.
        const all = [...rec.versions]
          .reverse()
          .filter((v) => match((f) => (f === 'state' ? v.state : this.versionName(rec, v))));
        const { page, next } = pageOf(all, req.pageSize, req.pageToken);
        return { versions: page.map((v) => this.versionMsg(rec, v)), nextPageToken: next, totalSize: all.length };
      },

      DisableSecretVersion: (req) => this.transition('DisableSecretVersion', req, 'DISABLED'),
      EnableSecretVersion: (req) => this.transition('EnableSecretVersion', req, 'ENABLED'),
      DestroySecretVersion: (req) => this.transition('DestroySecretVersion', req, 'DESTROYED'),
    };
  }

  private transition(method: string, req: Msg, to: SecretVersionState): Msg {
    const { project, secret, version } = this.parseVersionName(req.name);
    this.authorize(method, project, req.name);
    const { rec, v } = this.requireVersion(project, secret, version);
    this.checkEtag(req.etag, v.etag, 'secret version');
    // DESTROYED is terminal: nothing moves a version out of it, and destroying twice is refused too.
    if (v.state === 'DESTROYED') {
      throw new RpcError(
        grpc.status.FAILED_PRECONDITION,
        `Secret Version [${this.versionName(rec, v)}] is in DESTROYED state.`,
      );
    }
    if (v.state !== to) {
      v.state = to;
      v.etag = newEtag();
      if (to === 'DESTROYED') {
        v.data = undefined;
        v.destroyTime = new Date();
      }
    }
    return this.versionMsg(rec, v);
  }

  private implementation(): grpc.UntypedServiceImplementation {
    const handlers = this.handlers();
    const impl: grpc.UntypedServiceImplementation = {};
    // Every method of the service gets a handler, so unknown ones answer UNIMPLEMENTED through the fault path too.
    for (const method of Object.keys(serviceDefinition())) {
      const handler = handlers[method];
      impl[method] = (call: grpc.ServerUnaryCall<Msg, Msg>, callback: grpc.sendUnaryData<Msg>) => {
        void this.serve(method, handler, call.request, callback);
      };
    }
    return impl;
  }

  private async serve(method: string, handler: Handler | undefined, req: Msg, callback: grpc.sendUnaryData<Msg>) {
    this.counts.set(method, (this.counts.get(method) ?? 0) + 1);
    try {
      await this.faults.delay();
      const decision = this.faults.decide(method);
      if (decision === 'error') throw new RpcError(grpc.status.UNAVAILABLE, 'The service is currently unavailable.');
      if (decision === 'rate-limit') {
        throw new RpcError(grpc.status.RESOURCE_EXHAUSTED, `Quota exceeded for quota metric '${method}' requests.`);
      }
      if (!handler)
        throw new RpcError(grpc.status.UNIMPLEMENTED, `Method ${method} is not implemented by this emulator.`);
      const res = handler(req);
      // A dropped response: the change is applied, the caller only sees the connection fail.
      if (decision === 'drop') throw new RpcError(grpc.status.UNAVAILABLE, 'Connection dropped.');
      callback(null, res);
    } catch (err) {
      if (err instanceof RpcError) callback({ code: err.code, details: err.message });
      else callback({ code: grpc.status.INTERNAL, details: 'Internal error encountered.' });
    }
  }
}
