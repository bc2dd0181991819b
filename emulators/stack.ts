/**
 * All local vendor emulators wired together: the SparkPost API and its SMTP relay, a gRPC Secret Manager and a
 * Sourcegraph host serving any number of sites. `npm run dev` and the tests use the same stack, so what a newcomer
 * sees in the dev stack is what the tests prove.
 */
import { randomBytes } from 'node:crypto';
import type { EnableSpec } from '../lib/types';
import { parseUrlPatterns } from '../lib/allow-list';
import type { WorkerConfig } from '../worker/config';
import { SecretManagerEmulator } from './secret-manager';
import { SourcegraphEmulator, type SiteOptions } from './sourcegraph';
import { SmtpRelayEmulator, SparkPostEmulator } from './sparkpost';

/** Fixed ports, for the dev stack; tests leave them unset (random ports). */
export interface StackPorts {
  sparkpost?: number;
  relay?: number;
  secretManager?: number;
  sourcegraph?: number;
}

/** A Sourcegraph site hosted by the stack, with its admin token stored in the Secret Manager emulator. */
export interface EmulatedInstance {
  name: string;
  sourcegraphUrl: string;
  gcpProject: string;
  adminTokenSecret: string;
}

/** The enable spec of an emulated instance (with `extra` on top, e.g. force). */
export function specFor(i: EmulatedInstance, extra: Partial<EnableSpec> = {}): EnableSpec {
  return {
    sourcegraphUrl: i.sourcegraphUrl,
    gcpProject: i.gcpProject,
    adminTokenSecret: i.adminTokenSecret,
    force: false,
    ...extra,
  };
}

/** Domain the emulated SparkPost account shares with every subaccount. */
export const STACK_SENDER_DOMAIN = 'cloud.sourcegraph.com';

/** MANAGED_SMTP_SOURCEGRAPH_URLS of the dev stack and the tests: the emulators listen on 127.0.0.1. */
export const STACK_SOURCEGRAPH_URLS = 'http://127.0.0.1:*';

/** The GCP project an emulated instance gets when none is given. */
export function defaultProject(name: string): string {
  return `sg-${name}`.slice(0, 30).replace(/-+$/, '').padEnd(6, '0');
}

/** The running emulators. */
export class EmulatorStack {
  private constructor(
    readonly sparkpost: SparkPostEmulator,
    readonly relay: SmtpRelayEmulator,
    readonly secretManager: SecretManagerEmulator,
    readonly sourcegraph: SourcegraphEmulator,
    /** The emulated SparkPost operator key. Test-only; never a real credential. */
    readonly operatorKey: string,
  ) {}

  /** Starts every emulator on 127.0.0.1. */
  static async start(opts: { ports?: StackPorts; operatorKey?: string } = {}): Promise<EmulatorStack> {
    const operatorKey = opts.operatorKey ?? `emulated-operator-${randomBytes(12).toString('hex')}`;
    const ports = opts.ports ?? {};
    const sparkpost = await SparkPostEmulator.start({
      operatorKey,
      port: ports.sparkpost,
      sharedSendingDomains: [STACK_SENDER_DOMAIN],
    });
    const relay = await SmtpRelayEmulator.start({ sparkpost, port: ports.relay });
    const secretManager = await SecretManagerEmulator.start({ port: ports.secretManager });
    const sourcegraph = await SourcegraphEmulator.start({ port: ports.sourcegraph, insecureRelayTls: true });
    return new EmulatorStack(sparkpost, relay, secretManager, sourcegraph, operatorKey);
  }

  /**
   * Adds a Sourcegraph site named `name` and stores a fresh admin token for it in the Secret Manager emulator under
   * `projects/<gcpProject>/secrets/sourcegraph-admin-token`.
   */
  addInstance(name: string, opts: Partial<SiteOptions> & { gcpProject?: string } = {}): EmulatedInstance {
    const gcpProject = opts.gcpProject ?? defaultProject(name);
    const adminToken = opts.adminToken ?? `sgp_${randomBytes(20).toString('hex')}`;
    const sourcegraphUrl = this.sourcegraph.addSite(name, { ...opts, adminToken });
    const tokenSecret = `projects/${gcpProject}/secrets/sourcegraph-admin-token`;
    this.secretManager.seed(tokenSecret, adminToken, { instance: name });
    return { name, sourcegraphUrl, gcpProject, adminTokenSecret: `${tokenSecret}/versions/latest` };
  }

  /** The instance record of a site added earlier (same derived project and token secret as addInstance). */
  addInstanceRef(name: string, gcpProject = defaultProject(name)): EmulatedInstance {
    const tokenSecret = `projects/${gcpProject}/secrets/sourcegraph-admin-token`;
    return {
      name,
      sourcegraphUrl: `${this.sourcegraph.origin}/${name}`,
      gcpProject,
      adminTokenSecret: `${tokenSecret}/versions/latest`,
    };
  }

  /** The worker configuration that points at these emulators. */
  workerConfig(taskQueue = 'managed-smtp'): WorkerConfig {
    return {
      taskQueue,
      sparkpostApiUrl: this.sparkpost.url,
      sparkpostApiKey: this.operatorKey,
      relayHost: this.relay.host,
      relayPort: this.relay.port,
      secretManagerEmulatorHost: this.secretManager.address,
      senderDomain: STACK_SENDER_DOMAIN,
      testRecipient: 'cloud-team+test_emails@sourcegraph.com',
      maxCachedWorkflows: 300,
      sourcegraphUrls: parseUrlPatterns(STACK_SOURCEGRAPH_URLS),
    };
  }

  /** The same configuration as environment variables, for `npm run worker`. */
  workerEnv(taskQueue = 'managed-smtp'): Record<string, string> {
    const c = this.workerConfig(taskQueue);
    return {
      MANAGED_SMTP_TASK_QUEUE: c.taskQueue,
      SPARKPOST_API_URL: c.sparkpostApiUrl,
      SPARKPOST_API_KEY: c.sparkpostApiKey,
      SMTP_RELAY_HOST: c.relayHost,
      SMTP_RELAY_PORT: String(c.relayPort),
      SECRET_MANAGER_EMULATOR_HOST: c.secretManagerEmulatorHost!,
      MANAGED_SMTP_SENDER_DOMAIN: c.senderDomain,
      MANAGED_SMTP_TEST_RECIPIENT: c.testRecipient,
      MANAGED_SMTP_SOURCEGRAPH_URLS: STACK_SOURCEGRAPH_URLS,
    };
  }

  /** Every emulator's state, secrets masked. */
  snapshot(): object {
    return {
      sparkpost: this.sparkpost.snapshot(),
      relay: { messages: this.relay.messages },
      secretManager: this.secretManager.snapshot(),
      sourcegraph: this.sourcegraph.snapshot(),
    };
  }

  /** Stops every emulator. */
  async close(): Promise<void> {
    await Promise.allSettled([this.sourcegraph.close(), this.relay.close(), this.secretManager.close()]);
    await this.sparkpost.close();
  }
}
