/**
 * The activities of managed SMTP, built from injected vendor clients (`createActivities(deps)`), so tests swap a
 * client, not a module. Each activity is idempotent: it can run twice, be killed halfway, or have its request applied
 * while its response was lost, and the world still converges to one subaccount, one live key and one matching secret.
 * Secrets never leave an activity: the send key goes straight from SparkPost into Secret Manager, and activities that
 * need a key or an admin token read it from Secret Manager themselves.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { isVendorError } from '../lib/errors';
import { parseUrlPatterns, type UrlPattern } from '../lib/allow-list';
import { sanitizeText } from '../lib/sanitize';
import { TargetGuard, type Resolver } from '../lib/target-guard';
import {
  SEND_KEY_GRANTS,
  SEND_KEY_LABEL,
  SEND_KEY_SECRET_ID,
  hasSendKeyGrants,
  instanceFromWorkflowId,
  sendKeySecretLabels,
  sendKeySecretName,
} from '../lib/instance';
import {
  ownershipOf,
  readEmailSettings,
  restoreSettings,
  sameSettings,
  withoutRedacted,
  type EmailSettings,
  type Ownership,
} from '../lib/site-config';
import type { TestEmailRecord } from '../lib/types';
import type { SecretStore } from '../vendors/secret-manager';
import type { SourcegraphClientOptions } from '../vendors/sourcegraph';
import type { SparkPostClient, Subaccount } from '../vendors/sparkpost';
import type { Client } from '@temporalio/client';
import { TEST_EMAIL_FAILED, siteConfigUnusable, withFailureMapping } from './failures';
import { createKeyHousekeeping, refuseForeignSendKeySecret, sendKeySecretOwner } from './send-keys';
import { createOperationActivities } from './operations';
import { createGdprActivities } from './gdpr';
import { createOffboardActivities } from './offboard';
import { createDeliverabilityActivities } from './deliverability';
import { createDomainActivities } from './domains';
import { createFleetActivities } from './fleet';
import { createProtectionActivities } from './protection';
import { heartbeating } from './heartbeat';
import { IDEMPOTENT_READS, retryingReads } from './progress';
import { createKeyProgress } from './key-progress';
import { reportingRetries } from './stuck';
import {
  createSiteAccess,
  ownershipWith,
  type OwnershipGuard,
  type SiteAccess,
  type SiteRef,
  type SourcegraphApi,
} from './site-access';

export type { SiteRef, SourcegraphApi } from './site-access';
import type { CodecKey } from '../lib/codec';

/** The SparkPost calls the activities make. */
export type SparkPostApi = Pick<
  SparkPostClient,
  | 'createSubaccount'
  | 'getSubaccount'
  | 'findSubaccountsByName'
  | 'updateSubaccount'
  | 'createApiKey'
  | 'listApiKeys'
  | 'updateApiKeyValidIps'
  | 'deleteApiKey'
  | 'createRtbfRequest'
  | 'createOptOutRequest'
  | 'listMessageEventRecipients'
  // issue 11: GDPR verification and offboarding
  | 'searchMessageEvents'
  | 'searchSuppressions'
  | 'getDeliverability'
  | 'getDeliverabilityBySubaccount'
  | 'listSubaccounts'
  | 'createSendingDomain'
  | 'getSendingDomain'
  | 'verifySendingDomain'
  | 'deleteSendingDomain'
  | 'createIpPool'
  | 'listIpPools'
>;

/** The Secret Manager calls the activities make. */
export type SecretsApi = Pick<
  SecretStore,
  | 'ensureSecret'
  | 'addVersion'
  | 'access'
  | 'accessIfExists'
  | 'listVersions'
  | 'destroyVersion'
  | 'deleteSecret'
  // issue 11: offboarding deletes every secret managed-smtp made for the instance
  | 'listSecrets'
  | 'getSecretLabels'
>;

/** Settings from the worker's environment that shape what gets provisioned. */
export interface ProvisioningSettings {
  /** Written into every instance's email.smtp.host. */
  relayHost: string;
  relayPort: number;
  /** Sender addresses are noreply+<instance>@<senderDomain>. */
  senderDomain: string;
  /** Where the post-provisioning test email goes. */
  testRecipient: string;
}

/** Everything the activities need. */
export interface ActivityDeps {
  sparkpost: SparkPostApi;
  secrets: SecretsApi;
  /** Builds a client for one instance; called with a token the activity just read from Secret Manager. */
  sourcegraph: (opts: SourcegraphClientOptions) => SourcegraphApi;
  settings: ProvisioningSettings;
  /** Temporal client for activities that list the fleet (optional: only fleet-wide workflows need it). */
  temporal?: Client;
  /** Keys that open sealed GDPR recipient lists (MANAGED_SMTP_CODEC_KEYS); null/absent = none. */
  sealingKeys?: readonly CodecKey[] | null;
  /** Where admin tokens may be sent (MANAGED_SMTP_SOURCEGRAPH_URLS); absent = the production default. */
  sourcegraphUrls?: readonly UrlPattern[];
  /** DNS for the target check (tests inject one); absent = the system resolver. */
  resolver?: Resolver;
  /** Pauses between tries of an idempotent read (a test shortens them); absent = READ_RETRY_PAUSES_MS. */
  readRetryPausesMs?: readonly number[];
}

/** What inspectSiteConfig found. */
export interface SiteInspection {
  ownership: Ownership;
  /** The settings to restore on disable; managed-looking settings count as none (disable leaves no managed SMTP). */
  previous: EmailSettings;
  /** For messages: the host and sender found (no secrets). */
  smtpHost: string | null;
  address: string | null;
}

/** No email settings at all. */
export const NO_SETTINGS: EmailSettings = { address: null, smtp: null, senderName: null };

/** A found or created subaccount. */
export interface SubaccountRef {
  id: number;
  status: Subaccount['status'];
  complianceStatus: string;
}

/** The send key in force after ensureSendKey. */
export interface SendKeyRef {
  keyId: string;
  secretVersion: string;
  /** Whether this call minted a new key (false when an earlier attempt had already finished). */
  minted: boolean;
  /** Extra send keys revoked (orphans of interrupted attempts). */
  revokedOrphans: number;
}

/** The instance whose workflow called the running activity, or null outside one. */
function callingInstance(): string | null {
  try {
    const id = Context.current().info.workflowExecution?.workflowId;
    return id ? instanceFromWorkflowId(id) : null;
  } catch {
    return null;
  }
}

function activityAttempt(): number {
  try {
    return Context.current().info.attempt;
  } catch {
    return 1; // outside an activity
  }
}

/** Whether two valid_ips lists hold the same entries (order does not matter). */
export function sameIps(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && [...a].sort().join(',') === [...b].sort().join(',');
}

/** Largest customer email settings (serialized) kept to be restored on disable. */
export const MAX_PREVIOUS_SETTINGS_BYTES = 64 * 1024;

/** Builds the activities from injected clients. */
export function createActivities(rawDeps: ActivityDeps) {
  // Every vendor call heartbeats first, so a killed worker's activity is retried after the heartbeat timeout.
  // Idempotent reads get a short bounded retry inside the activity (activities/progress.ts); writes never do.
  const pauses = rawDeps.readRetryPausesMs;
  const deps: ActivityDeps = {
    ...rawDeps,
    sparkpost: retryingReads(heartbeating(rawDeps.sparkpost), IDEMPOTENT_READS.sparkpost, pauses),
    secrets: retryingReads(heartbeating(rawDeps.secrets), IDEMPOTENT_READS.secrets, pauses),
    sourcegraph: (opts) => retryingReads(heartbeating(rawDeps.sourcegraph(opts)), IDEMPOTENT_READS.sourcegraph, pauses),
  };
  const { sparkpost, secrets, settings } = deps;

  const guard = new TargetGuard(rawDeps.sourcegraphUrls ?? parseUrlPatterns(undefined), rawDeps.resolver);
  const access: SiteAccess = createSiteAccess(secrets, deps.sourcegraph, settings, guard);
  const sourcegraphFor = access.sourcegraphFor;

  async function liveSubaccountByName(instance: string): Promise<Subaccount | null> {
    const found = (await sparkpost.findSubaccountsByName(instance)).filter((s) => s.status !== 'terminated');
    found.sort((a, b) => a.id - b.id);
    return found[0] ?? null;
  }

  const housekeeping = createKeyHousekeeping(sparkpost, secrets);
  const keyProgress = createKeyProgress(sparkpost, secrets);

  /** Sets the kept key's valid_ips to `egressIps` when they differ (absent: the key's limit is left alone). */
  async function syncValidIps(
    subaccountId: number,
    keyId: string,
    egressIps: string[] | undefined,
    listed: readonly { id: string; validIps?: string[] }[],
  ): Promise<void> {
    if (egressIps === undefined) return;
    const known =
      listed.find((k) => k.id === keyId) ?? (await sparkpost.listApiKeys(subaccountId)).find((k) => k.id === keyId);
    if (!known || !sameIps(known.validIps ?? [], egressIps)) {
      await sparkpost.updateApiKeyValidIps(subaccountId, keyId, egressIps);
    }
  }

  const activities = {
    /**
     * Reads the instance's email settings and says whose they are. Changes nothing. A sender on the instance's own
     * custom sending domain (`customSenderDomain`, when it has one) counts as managed too.
     */
    async inspectSiteConfig(site: SiteRef & { customSenderDomain?: string }): Promise<SiteInspection> {
      const sg = await sourcegraphFor(site);
      const config = await sg.getSiteConfig();
      access.rememberConfig(site, config);
      const { contents } = config;
      let current: EmailSettings;
      try {
        current = readEmailSettings(contents);
      } catch (err) {
        siteConfigUnusable(err);
      }
      let ownership = ownershipOf(current, settings);
      if (ownership === 'customer' && site.customSenderDomain) {
        const custom = ownershipOf(current, { relayHost: settings.relayHost, senderDomain: site.customSenderDomain });
        if (custom === 'managed') ownership = 'managed';
      }
      // The customer's settings are kept in workflow state (and returned here) to be restored exactly on disable:
      // refused beyond a sane size, so they can never grow the history or exceed Temporal's payload limit.
      const previous = ownership === 'managed' ? NO_SETTINGS : current;
      const size = previous === NO_SETTINGS ? 0 : Buffer.byteLength(JSON.stringify(previous));
      if (size > MAX_PREVIOUS_SETTINGS_BYTES) {
        siteConfigUnusable(
          `its email settings (email.address, email.smtp, email.senderName) are ${size} bytes as JSON, more than ` +
            `the ${MAX_PREVIOUS_SETTINGS_BYTES} that can be kept to restore them on disable; shorten them`,
        );
      }
      return {
        ownership,
        previous,
        // Quoted in the status (enable leaves customer settings alone): instance text, so bounded and one clean line.
        smtpHost: current.smtp && typeof current.smtp.host === 'string' ? sanitizeText(current.smtp.host, 320) : null,
        address: current.address === null ? null : sanitizeText(current.address, 320),
      };
    },

    /** The instance's live (not terminated) subaccount, looked up by exact name; null when there is none. */
    async findSubaccount(input: { instance: string }): Promise<SubaccountRef | null> {
      const s = await liveSubaccountByName(input.instance);
      return s ? { id: s.id, status: s.status, complianceStatus: s.complianceStatus } : null;
    },

    /**
     * Makes sure the instance has one active subaccount: the known one, else one found by name (a create whose
     * response was lost), else a new one. A suspended subaccount is reactivated. When `ipPool` is given (a pool id,
     * or null for none), the subaccount's IP pool is set to it; absent leaves the pool alone.
     */
    async ensureSubaccount(input: {
      instance: string;
      knownId: number | null;
      ipPool?: string | null;
      /** The workflow's findSubaccount just found none: the first attempt may create without looking again. */
      absentAtStart?: boolean;
    }): Promise<SubaccountRef> {
      let sub: Subaccount | null = null;
      if (input.knownId !== null) {
        try {
          sub = await sparkpost.getSubaccount(input.knownId);
        } catch (err) {
          if (!isVendorError(err, 'not-found')) throw err;
        }
        if (sub && (sub.status === 'terminated' || sub.name !== input.instance)) sub = null;
      }
      // A retry always looks: an earlier attempt's create may have been applied with its response lost.
      const firstAttempt = activityAttempt() === 1;
      if (!sub && !(input.absentAtStart && firstAttempt && input.knownId === null)) {
        sub = await liveSubaccountByName(input.instance);
      }
      const pool = input.ipPool;
      if (!sub) {
        const { id } = await sparkpost.createSubaccount(input.instance);
        if (pool) await sparkpost.updateSubaccount(id, { ipPool: pool });
        return { id, status: 'active', complianceStatus: 'active' };
      }
      if (sub.status === 'suspended') await sparkpost.updateSubaccount(sub.id, { status: 'active' });
      // The recorded pool is restored (check --enforce repairs pool drift through here).
      if (pool !== undefined && (sub.ipPool ?? null) !== pool) {
        await sparkpost.updateSubaccount(sub.id, { ipPool: pool ?? '' });
      }
      return { id: sub.id, status: 'active', complianceStatus: sub.complianceStatus };
    },

    /**
     * Ensures exactly one live `send_key` on the subaccount and that the secret's latest version holds it. When an
     * earlier attempt already stored a key that is still live, it is kept; otherwise a new key is minted and stored
     * in the same call (the full key is only returned once). Other send keys (orphans of interrupted attempts) are
     * revoked and older secret versions destroyed.
     */
    async ensureSendKey(input: {
      instance: string;
      gcpProject: string;
      subaccountId: number;
      /** The subaccount was created by this enable: it can hold no key but ones this activity minted. */
      freshSubaccount?: boolean;
      /** Limit the key to these addresses (EnableSpec.egressIps); absent leaves the key's limit alone. */
      egressIps?: string[];
    }): Promise<SendKeyRef> {
      // Checked once: a later attempt that recorded the secret as ready (heartbeat details) was checked then.
      if (!keyProgress.secretReadyEarlier())
        await refuseForeignSendKeySecret(secrets, input.instance, input.gcpProject);
      const secretName = sendKeySecretName(input.gcpProject);
      // An earlier attempt that made sure of the secret says so in its heartbeat details (issue 15).
      const { created } = keyProgress.secretReadyEarlier()
        ? { created: false }
        : await secrets.ensureSecret(input.gcpProject, SEND_KEY_SECRET_ID, sendKeySecretLabels(input.instance));
      keyProgress.secretReady();
      // A secret this call created has no versions, and no earlier attempt got as far as minting (minting comes
      // after creating the secret); on a fresh subaccount there is then no key to find either.
      let keys =
        created && input.freshSubaccount
          ? []
          : (await sparkpost.listApiKeys(input.subaccountId)).filter((k) => k.label === SEND_KEY_LABEL);
      const latest = created ? null : await secrets.accessIfExists(`${secretName}/versions/latest`);

      let keep: { keyId: string; secretVersion: string } | null = null;
      let minted = false;
      if (latest) {
        const matching = keys.filter(
          (k) => k.shortKey === latest.data.slice(0, k.shortKey.length) && hasSendKeyGrants(k.grants),
        );
        if (matching.length === 1) keep = { keyId: matching[0].id, secretVersion: latest.name };
      }
      let revokedFirst = 0;
      if (!keep) {
        // A key an earlier attempt minted but could not store goes before another is minted (issue 15).
        const unstored = keyProgress.unstoredKeyOfEarlierAttempt(keys);
        if (unstored && (await keyProgress.revokeQuietly(input.subaccountId, unstored))) {
          keys = keys.filter((k) => k.id !== unstored);
          revokedFirst++;
        }
        keep = await keyProgress.mintAndStore({
          subaccountId: input.subaccountId,
          secretName,
          before: keys,
          mint: () =>
            sparkpost.createApiKey(input.subaccountId, SEND_KEY_LABEL, [...SEND_KEY_GRANTS], input.egressIps ?? []),
        });
        minted = true;
      }
      if (!minted) await syncValidIps(input.subaccountId, keep.keyId, input.egressIps, keys);
      const revokedOrphans =
        revokedFirst + (await housekeeping.revokeSendKeys(input.subaccountId, { except: keep.keyId, keys }));
      if (!created) await housekeeping.destroyEnabledVersions(secretName, keep.secretVersion);
      return { ...keep, minted, revokedOrphans };
    },

    /**
     * Writes the managed email settings, reading the send key from Secret Manager. Keeps every other key and comment.
     * The sender is on `senderDomain` (the instance's verified custom sending domain) when given, else the shared one.
     */
    async applyManagedSiteConfig(
      input: SiteRef & {
        instance: string;
        secretVersion: string;
        senderName?: string;
        senderDomain?: string;
        /** Whose settings may be replaced (default: ours or none); checked in the same read-modify-write. */
        guard?: OwnershipGuard;
        /** A custom sending domain whose sender also counts as managed (switching back from it). */
        customSenderDomain?: string;
      },
    ): Promise<{ sender: string }> {
      const { data: key } = await secrets.access(input.secretVersion);
      const sender = await access.writeManagedSettings(input, {
        instance: input.instance,
        key,
        senderName: input.senderName,
        senderDomain: input.senderDomain,
        guard: input.guard ?? 'managed-or-none',
        customSenderDomain: input.customSenderDomain,
      });
      return { sender };
    },

    /** Asks the instance to send a test email. A failure is retryable: other replicas may not have the settings yet. */
    async sendTestEmail(site: SiteRef): Promise<TestEmailRecord> {
      const sg = await sourcegraphFor(site);
      const result = await sg.sendTestEmail(settings.testRecipient);
      // Sourcegraph echoes the recipient ("Sent test email to \"...\""); recipient addresses stay out of histories.
      const message = sanitizeText(result.message.split(settings.testRecipient).join('<test recipient>'));
      if (!result.ok) {
        throw ApplicationFailure.create({ message, type: TEST_EMAIL_FAILED });
      }
      return { at: new Date().toISOString(), ok: true, message };
    },

    /**
     * Puts back the email settings enable replaced, only over settings that are still the managed ones (decided in
     * the same read-modify-write): settings the customer changed since are theirs and are left alone.
     */
    async restoreSiteConfig(
      input: SiteRef & { previous: EmailSettings; customSenderDomain?: string },
    ): Promise<{ changed: boolean; leftAlone?: 'customer' | 'none' }> {
      const sg = await sourcegraphFor(input);
      const target: EmailSettings = {
        ...input.previous,
        smtp: input.previous.smtp ? withoutRedacted(input.previous.smtp) : null,
      };
      let leftAlone: 'customer' | 'none' | undefined;
      const { changed } = await sg.editSiteConfig((contents) => {
        leftAlone = undefined;
        try {
          const current = readEmailSettings(contents);
          if (sameSettings(current, target)) return null;
          const ownership = ownershipWith(current, settings, input.customSenderDomain);
          if (ownership !== 'managed') {
            leftAlone = ownership;
            return null;
          }
          return restoreSettings(contents, input.previous);
        } catch (err) {
          return siteConfigUnusable(err);
        }
      });
      return leftAlone ? { changed, leftAlone } : { changed };
    },

    /** Revokes every send key of the subaccount. Keys already gone are fine. */
    async revokeSendKeys(input: { subaccountId: number }): Promise<{ revoked: number }> {
      try {
        return { revoked: await housekeeping.revokeSendKeys(input.subaccountId) };
      } catch (err) {
        if (isVendorError(err, 'not-found')) return { revoked: 0 }; // the subaccount itself is gone
        throw err;
      }
    },

    /**
     * Destroys every version of the send-key secret and deletes it. Missing is fine, and so is a secret another
     * instance owns: it is left alone (`foreign`). The instance is `input.instance`, else the calling workflow's.
     */
    async deleteSendKeySecret(input: {
      gcpProject: string;
      instance?: string;
    }): Promise<{ destroyedVersions: number; deleted: boolean; foreign?: boolean }> {
      const secretName = sendKeySecretName(input.gcpProject);
      const instance = input.instance ?? callingInstance();
      if (instance === null || (await sendKeySecretOwner(secrets, instance, input.gcpProject)) !== 'own') {
        // Absent is fine (nothing to delete); not ours is never touched.
        const absent = instance !== null && (await secrets.getSecretLabels(secretName)) === null;
        return { destroyedVersions: 0, deleted: false, ...(absent ? {} : { foreign: true }) };
      }
      let destroyedVersions = 0;
      for (const v of await secrets.listVersions(secretName)) {
        if (v.state === 'DESTROYED') continue;
        await secrets.destroyVersion(v.name);
        destroyedVersions++;
      }
      const deleted = await secrets.deleteSecret(secretName);
      return { destroyedVersions, deleted };
    },

    /**
     * Suspends the subaccount (reversible: a later enable reactivates it), or terminates it when `terminate` is set
     * (a first enable that failed). With no id, looks the subaccount up by name: a create whose response was lost.
     */
    async releaseSubaccount(input: {
      instance: string;
      subaccountId: number | null;
      terminate: boolean;
    }): Promise<{ released: number[] }> {
      const target = input.terminate ? 'terminated' : 'suspended';
      let ids: number[];
      if (input.subaccountId !== null) ids = [input.subaccountId];
      else {
        // No id: a create whose response was lost (or was cancelled by disable); the name is the instance's.
        ids = (await sparkpost.findSubaccountsByName(input.instance))
          .filter((s) => s.status !== 'terminated')
          .map((s) => s.id);
      }
      const released: number[] = [];
      for (const id of ids) {
        let sub: Subaccount;
        try {
          sub = await sparkpost.getSubaccount(id);
        } catch (err) {
          if (isVendorError(err, 'not-found')) continue;
          throw err;
        }
        if (sub.status !== 'terminated' && sub.status !== target) {
          await sparkpost.updateSubaccount(id, { status: target });
        }
        released.push(id);
      }
      return { released };
    },
  };
  return {
    ...reportingRetries(
      withFailureMapping({
        ...activities,
        ...createOperationActivities(deps, access),
        ...createDomainActivities(deps),
      }),
      deps.temporal,
    ),
    ...createFleetActivities({ temporal: deps.temporal }),
    // GDPR filing keeps progress in its heartbeat details: it gets the clients without the bare heartbeats.
    ...createGdprActivities({ sparkpost: rawDeps.sparkpost, secrets: rawDeps.secrets }),
    ...createOffboardActivities({ temporal: deps.temporal }),
    ...createDeliverabilityActivities({
      sparkpost: rawDeps.sparkpost,
      temporal: deps.temporal,
      secrets: rawDeps.secrets,
    }),
    // Reputation protection (issue 13): quarantine pool or suspension, and undoing it.
    ...createProtectionActivities({ sparkpost: deps.sparkpost }),
  };
}

/** The activity functions, as the workflow proxies them. */
export type Activities = ReturnType<typeof createActivities>;
