/**
 * Day-two activities: the invariant check, key rotation (mint, retire, roll back) and fleet listing. Like the
 * provisioning activities they are idempotent, read secrets from Secret Manager themselves and never return one.
 */
import { ApplicationFailure } from '@temporalio/common';
import { isVendorError } from '../lib/errors';
import {
  SEND_KEY_GRANTS,
  SEND_KEY_LABEL,
  SMTP_USERNAME,
  hasSendKeyGrants,
  senderAddress,
  sendKeySecretName,
} from '../lib/instance';
import { sanitizeText } from '../lib/sanitize';
import { ownershipOf, readEmailSettings, REDACTED } from '../lib/site-config';
import { CUSTOMER_OWNED } from './failures';
import type { EnableSpec, Finding, InstanceState, SendingDomainState } from '../lib/types';
import type { ActivityDeps, SiteRef } from './index';
import type { SiteAccess } from './site-access';
import { createKeyHousekeeping, refuseForeignSendKeySecret } from './send-keys';

/** What the check needs to know about the instance (from its workflow state). */
export interface CheckInput {
  instance: string;
  state: InstanceState;
  spec: EnableSpec;
  subaccountId: number | null;
  keyId: string | null;
  /**
   * The recorded custom sending domain (null: none). Absent when the caller does not know it (the fleet check): then
   * a sender on a verified sending domain of the instance's own subaccount is accepted.
   */
  sendingDomain?: { domain: string; state: SendingDomainState } | null;
  /** The recorded IP pool (null: none); absent when managed-smtp does not manage the pool. */
  ipPool?: string | null;
}

/** The send key in force after a rotation step. */
export interface KeyRef {
  keyId: string;
  secretVersion: string;
}

/** Longest quoted value in a finding: findings land in status.lastCheck (history, smtpctl output). */
const MAX_QUOTED = 200;

/** A value (from the instance or a vendor) quoted in a finding: JSON, bounded, one line without control characters. */
function quoted(value: unknown): string {
  // A hostile string is cut before it is serialised, so a megabyte is never copied.
  const v = typeof value === 'string' && value.length > MAX_QUOTED * 2 ? value.slice(0, MAX_QUOTED * 2) : value;
  return sanitizeText(JSON.stringify(v) ?? String(v), MAX_QUOTED);
}

/** Day-two activities. */
export function createOperationActivities(deps: ActivityDeps, access: SiteAccess) {
  const { sparkpost, secrets, settings } = deps;
  const sourcegraphFor = access.sourcegraphFor;

  const housekeeping = createKeyHousekeeping(sparkpost, secrets);

  /** 'verified', 'missing', or why the domain is not verified. */
  async function sendingDomainState(subaccountId: number, domain: string): Promise<string> {
    try {
      const d = await sparkpost.getSendingDomain(subaccountId, domain);
      return d.status.ownership_verified && d.status.dkim_status === 'valid'
        ? 'verified'
        : `not verified (DKIM ${d.status.dkim_status})`;
    } catch (err) {
      if (isVendorError(err, 'not-found')) return 'missing';
      throw err;
    }
  }

  /**
   * The old key a rollback puts back: read from its version, or, when an earlier attempt of the rollback already moved
   * it to a newer version and destroyed the old one (then failed revoking, say), from the latest version, provided
   * the old key is the one live send key it matches. Anything else is thrown as the old version's error.
   */
  async function oldKeyForRollback(secretName: string, subaccountId: number, old: KeyRef): Promise<string> {
    try {
      return (await secrets.access(old.secretVersion)).data;
    } catch (err) {
      if (!isVendorError(err, 'failed-precondition') && !isVendorError(err, 'not-found')) throw err;
      const latest = await secrets.accessIfExists(`${secretName}/versions/latest`);
      if (!latest) throw err;
      const matching = (await sparkpost.listApiKeys(subaccountId)).filter(
        (k) => k.label === SEND_KEY_LABEL && k.shortKey !== '' && latest.data.startsWith(k.shortKey),
      );
      if (matching.length !== 1 || matching[0].id !== old.keyId) throw err;
      return latest.data;
    }
  }

  const poolText = (p: string | null) => (p ? `IP pool "${p}"` : 'no dedicated IP pool');

  return {
    /**
     * Verifies the invariant of an active instance (subaccount active and compliant, exactly one send key with only
     * smtp/inject, the secret's latest version is that key, the site configuration's managed settings in place, the
     * recorded custom sending domain verified and used as sender, the recorded IP pool assigned) or of a disabled one
     * (no send key, no secret, subaccount suspended). Changes nothing.
     */
    async checkInstance(input: CheckInput): Promise<Finding[]> {
      const findings: Finding[] = [];
      const add = (check: string, ok: boolean, message: string, repairable = !ok) =>
        findings.push({ check, ok, message, repairable: ok ? false : repairable });
      const secretName = sendKeySecretName(input.spec.gcpProject);

      if (input.state === 'disabled') {
        if (input.subaccountId !== null) {
          try {
            const sub = await sparkpost.getSubaccount(input.subaccountId);
            add('subaccount', sub.status !== 'active', `subaccount ${sub.id} is ${sub.status}`);
            const keys = (await sparkpost.listApiKeys(sub.id)).filter((k) => k.label === SEND_KEY_LABEL);
            add('send-key', keys.length === 0, keys.length ? `${keys.length} send key(s) still live` : 'no send key');
          } catch (err) {
            if (!isVendorError(err, 'not-found')) throw err;
            add('subaccount', true, `subaccount ${input.subaccountId} no longer exists`);
          }
        }
        const versions = await secrets.listVersions(secretName, { enabledOnly: true });
        add(
          'secret',
          versions.length === 0,
          versions.length ? `${secretName} still has enabled versions` : 'no secret',
        );
        return findings;
      }

      // Subaccount
      let subaccountId = input.subaccountId;
      /** The subaccount's IP pool, once read. */
      let subaccountPool: string | null | undefined;
      if (subaccountId === null) {
        add('subaccount', false, 'no subaccount recorded');
      } else {
        try {
          const sub = await sparkpost.getSubaccount(subaccountId);
          subaccountPool = sub.ipPool ?? null;
          add('subaccount', sub.status === 'active', `subaccount ${sub.id} is ${sub.status}`);
          add(
            'compliance',
            sub.complianceStatus === 'active',
            `SparkPost compliance status is ${sub.complianceStatus}`,
            false, // set by SparkPost itself: a human must talk to SparkPost
          );
        } catch (err) {
          if (!isVendorError(err, 'not-found')) throw err;
          add('subaccount', false, `subaccount ${subaccountId} does not exist`);
          subaccountId = null;
        }
      }

      // IP pool: drift from the recorded pool is repaired by re-running provisioning (ensureSubaccount sets it).
      if (input.ipPool !== undefined && subaccountPool !== undefined) {
        const want = input.ipPool;
        if (subaccountPool === want) add('ip-pool', true, `subaccount uses ${poolText(want)}`);
        else if (want !== null && !(await sparkpost.listIpPools()).some((p) => p.id === want)) {
          add(
            'ip-pool',
            false,
            `the recorded IP pool "${want}" no longer exists at SparkPost (subaccount uses ${poolText(subaccountPool)})`,
            false, // re-running provisioning cannot bring a pool back: an operator must create or unassign it
          );
        } else add('ip-pool', false, `subaccount uses ${poolText(subaccountPool)}, expected ${poolText(want)}`);
      }

      // Custom sending domain: only SparkPost (DNS) can verify it again, so a lost verification is an alert.
      let expectedDomain = settings.senderDomain;
      /** A custom domain whose sender counts as managed. */
      let customDomain: string | null = null;
      const recorded = input.sendingDomain;
      if (recorded) {
        customDomain = recorded.domain;
        if (recorded.state === 'active') {
          expectedDomain = recorded.domain;
          if (subaccountId !== null) {
            const state = await sendingDomainState(subaccountId, recorded.domain);
            add(
              'sending-domain',
              state === 'verified',
              state === 'verified'
                ? `sending domain ${recorded.domain} is verified`
                : state === 'missing'
                  ? `sending domain ${recorded.domain} no longer exists at SparkPost; the sender cannot use it: ` +
                    'remove it (smtpctl sending-domain remove) or add it again'
                  : `sending domain ${recorded.domain} is ${state}: check its DNS records`,
              false,
            );
          }
        } else add('sending-domain', true, `sending domain ${recorded.domain} is ${recorded.state}`);
      }

      // Send key and secret
      const latest = await secrets.accessIfExists(`${secretName}/versions/latest`);
      add(
        'secret',
        latest !== null,
        latest ? `${latest.name} is the latest version` : `${secretName} has no usable latest version`,
      );
      if (subaccountId !== null) {
        const keys = (await sparkpost.listApiKeys(subaccountId)).filter((k) => k.label === SEND_KEY_LABEL);
        add('send-key', keys.length === 1, `${keys.length} live send key(s) on subaccount ${subaccountId}`);
        for (const k of keys) {
          if (!hasSendKeyGrants(k.grants)) {
            add('key-grants', false, `send key ${k.id} grants ${quoted(k.grants)}, expected ["smtp/inject"]`);
          }
        }
        // Least privilege: a key limited to the instance's egress IPs; repaired by provisioning (ensureSendKey).
        const egress = input.spec.egressIps;
        if (egress !== undefined) {
          for (const k of keys) {
            const have = k.validIps ?? [];
            const same = have.length === egress.length && [...have].sort().join(',') === [...egress].sort().join(',');
            add(
              'key-valid-ips',
              same,
              same
                ? `send key ${k.id} is limited to ${egress.length ? egress.join(', ') : 'any address'}`
                : `send key ${k.id} is limited to ${have.length ? have.join(', ') : 'any address'}, expected ${egress.length ? egress.join(', ') : 'any address'}`,
            );
          }
        }
        if (latest && keys.length > 0) {
          const match = keys.filter((k) => latest.data.startsWith(k.shortKey));
          add(
            'secret-matches-key',
            match.length === 1,
            match.length === 1
              ? `the secret holds live key ${match[0].id}`
              : 'the secret does not hold a live send key (compared by SparkPost short key)',
          );
        }
      }

      // Site configuration (the password reads back as REDACTED, so only its presence can be checked)
      const sg = await sourcegraphFor({ ...input.spec, instance: input.instance });
      const { contents } = await sg.getSiteConfig();
      let current;
      try {
        current = readEmailSettings(contents);
      } catch (err) {
        add('site-config', false, err instanceof Error ? err.message : String(err), false);
        return findings;
      }
      const managedOn = (domain: string) =>
        ownershipOf(current, { relayHost: settings.relayHost, senderDomain: domain }) === 'managed';
      let ownership = ownershipOf(current, settings);
      if (ownership === 'customer' && customDomain && managedOn(customDomain)) ownership = 'managed';
      if (ownership === 'customer' && input.sendingDomain === undefined && subaccountId !== null) {
        // The caller does not know the recorded domain: a verified domain of the instance's own subaccount is ours.
        const at = (current.address ?? '').lastIndexOf('@');
        const domain = at > 0 ? (current.address ?? '').slice(at + 1).toLowerCase() : '';
        if (domain && managedOn(domain) && (await sendingDomainState(subaccountId, domain)) === 'verified') {
          ownership = 'managed';
          expectedDomain = domain;
        }
      }
      const expected = senderAddress(input.instance, expectedDomain);
      if (ownership === 'customer') {
        add(
          'site-config',
          false,
          `the instance now has its own SMTP settings (host ${sanitizeText(String(current.smtp?.host), MAX_QUOTED)})`,
          false,
        );
        return findings;
      }
      const smtp = current.smtp ?? {};
      const problems: string[] = [];
      if (current.address !== expected) problems.push(`email.address is ${quoted(current.address)}`);
      if (!current.smtp) problems.push('email.smtp is missing');
      else {
        if (smtp.host !== settings.relayHost) problems.push(`host is ${quoted(smtp.host)}`);
        if (smtp.port !== settings.relayPort) problems.push(`port is ${quoted(smtp.port)}`);
        if (smtp.username !== SMTP_USERNAME && smtp.username !== REDACTED)
          problems.push('username is not SMTP_Injection');
        if (smtp.authentication !== 'PLAIN') problems.push(`authentication is ${quoted(smtp.authentication)}`);
        if (!smtp.password) problems.push('password is missing');
      }
      if (input.spec.senderName !== undefined && current.senderName !== input.spec.senderName) {
        problems.push('email.senderName differs');
      }
      add(
        'site-config',
        problems.length === 0,
        problems.length ? problems.join('; ') : 'managed email settings in place',
      );
      return findings;
    },

    /** Mints a new send key and stores it as a new secret version; older keys and versions stay until retired. */
    async mintSendKey(input: {
      instance: string;
      gcpProject: string;
      subaccountId: number;
      /** Limit the new key to these addresses (EnableSpec.egressIps). */
      egressIps?: string[];
    }): Promise<KeyRef> {
      await refuseForeignSendKeySecret(secrets, input.instance, input.gcpProject);
      const created = await sparkpost.createApiKey(
        input.subaccountId,
        SEND_KEY_LABEL,
        [...SEND_KEY_GRANTS],
        input.egressIps ?? [],
      );
      const secretVersion = await secrets.addVersion(sendKeySecretName(input.gcpProject), created.key);
      return { keyId: created.id, secretVersion };
    },

    /**
     * Writes the site configuration with the key held by `secretVersion` (sender on `senderDomain` when given), only
     * over settings that are still the managed ones (a customer who took over is left alone).
     */
    async applyKeyToSiteConfig(
      input: SiteRef & { instance: string; secretVersion: string; senderName?: string; senderDomain?: string },
    ): Promise<void> {
      const { data: key } = await secrets.access(input.secretVersion);
      await access.writeManagedSettings(input, {
        instance: input.instance,
        senderName: input.senderName,
        key,
        senderDomain: input.senderDomain,
        guard: 'managed',
      });
    },

    /** Revokes every send key but `keep` and destroys every enabled secret version but `keepVersion`. */
    async retireSendKeys(input: {
      gcpProject: string;
      subaccountId: number;
      keepKeyId: string;
      keepVersion: string;
    }): Promise<{ revoked: number; destroyed: number }> {
      const revoked = await housekeeping.revokeSendKeys(input.subaccountId, { except: input.keepKeyId });
      const destroyed = await housekeeping.destroyEnabledVersions(
        sendKeySecretName(input.gcpProject),
        input.keepVersion,
      );
      return { revoked, destroyed };
    },

    /**
     * Undoes a rotation that failed midway: the site configuration goes back to the old key, the old key becomes the
     * secret's latest version again (Secret Manager's `latest` is the newest *created* version), and every newer key
     * and version is revoked or destroyed. Returns the version that now holds the old key.
     */
    async rollbackKeyRotation(
      input: SiteRef & {
        instance: string;
        gcpProject: string;
        subaccountId: number;
        old: KeyRef;
        senderName?: string;
        senderDomain?: string;
      },
    ): Promise<KeyRef> {
      const secretName = sendKeySecretName(input.gcpProject);
      const oldKey = await oldKeyForRollback(secretName, input.subaccountId, input.old);
      try {
        await access.writeManagedSettings(input, {
          instance: input.instance,
          senderName: input.senderName,
          key: oldKey,
          senderDomain: input.senderDomain,
          guard: 'managed',
        });
      } catch (err) {
        // A customer who took over keeps their settings; the keys are still put back in order below.
        if (!(err instanceof ApplicationFailure && err.type === CUSTOMER_OWNED)) throw err;
      }
      const latest = await secrets.accessIfExists(`${secretName}/versions/latest`);
      const holder = latest && latest.data === oldKey ? latest.name : await secrets.addVersion(secretName, oldKey);
      await housekeeping.destroyEnabledVersions(secretName, holder);
      await housekeeping.revokeSendKeys(input.subaccountId, { except: input.old.keyId });
      return { keyId: input.old.keyId, secretVersion: holder };
    },
  };
}
