/**
 * Access to an instance's Sourcegraph for the activities: the admin token read from Secret Manager (kept for a
 * minute in worker memory, since one enable reads it in three activities), and the site configuration that
 * inspectSiteConfig just read, reused as the first read of the edit that follows (a stale copy only costs a
 * conflict and a re-read: the write carries its lastID). Nothing here leaves the worker process.
 */
import { ApplicationFailure } from '@temporalio/common';
import { adminTokenSecretProblem } from '../lib/allow-list';
import { VendorError, isVendorError } from '../lib/errors';
import { TargetGuard, TargetRefusedError } from '../lib/target-guard';
import { SMTP_USERNAME, senderAddress } from '../lib/instance';
import { sanitizeText } from '../lib/sanitize';
import { applyManagedSettings, ownershipOf, readEmailSettings, type EmailSettings } from '../lib/site-config';
import { customerOwned, siteConfigUnusable } from './failures';
import type { SecretStore } from '../vendors/secret-manager';
import { sendKeySecretOwner } from './send-keys';
import type { SiteConfig, SourcegraphClient, SourcegraphClientOptions } from '../vendors/sourcegraph';

/** How long an admin token is reused. */
export const TOKEN_TTL_MS = 60_000;
/** How long a site configuration read by inspect is offered to the next edit. */
export const CONFIG_TTL_MS = 30_000;

/** Where an instance's Sourcegraph is and which secret holds its admin token. */
export interface SiteRef {
  sourcegraphUrl: string;
  adminTokenSecret: string;
  /**
   * The instance's GCP project: the admin token must lie in it. Required (a site without it is refused); optional in
   * the type only so that requests from workflows written before the check fail with a clear sentence.
   */
  gcpProject?: string;
  /**
   * The instance the site belongs to: its admin token is read only if the project's send-key secret is absent or
   * labelled with this instance, so a spec naming another instance's project cannot send that instance's token to a
   * URL of its own. Optional only for requests scheduled by workflow code from before the check.
   */
  instance?: string;
}

/** ApplicationFailure type of a request the worker refuses to make (URL not allowed, secret of another project). */
export const TARGET_REFUSED = 'TargetRefusedError';

/**
 * Refuses, before any secret is read, a site whose admin token lies outside the instance's project or whose URL the
 * allow-list does not match; then resolves the host and refuses internal addresses (TargetGuard). Non-retryable, one
 * sentence naming the argument.
 */
export async function checkSite(site: SiteRef, guard: TargetGuard): Promise<void> {
  const tokenProblem =
    typeof site.gcpProject === 'string' && site.gcpProject
      ? adminTokenSecretProblem(site.adminTokenSecret, site.gcpProject)
      : "adminTokenSecret is refused: the request does not name the instance's gcpProject, so its project cannot be checked";
  if (tokenProblem) throw ApplicationFailure.nonRetryable(tokenProblem, TARGET_REFUSED);
  try {
    await guard.resolve(site.sourcegraphUrl);
  } catch (err) {
    if (err instanceof TargetRefusedError) throw ApplicationFailure.nonRetryable(err.message, TARGET_REFUSED);
    throw ApplicationFailure.create({
      message: err instanceof Error ? err.message : String(err),
      type: 'TargetUnresolved',
    });
  }
}

/** The Sourcegraph calls the activities make. */
export type SourcegraphApi = Pick<SourcegraphClient, 'getSiteConfig' | 'editSiteConfig' | 'sendTestEmail'>;

/** Where managed email goes: the relay and the shared sender domain. */
export interface ManagedEmailSettings {
  relayHost: string;
  relayPort: number;
  senderDomain: string;
}

/**
 * Whose settings a write may replace: `managed` (rotation, sender switch: only settings that are still ours),
 * `managed-or-none` (enable: ours or none at all), `any` (enable --force).
 */
export type OwnershipGuard = 'managed' | 'managed-or-none' | 'any';

/** Whose the settings are, counting a sender on the instance's own custom sending domain as managed. */
export function ownershipWith(
  current: EmailSettings,
  settings: ManagedEmailSettings,
  customSenderDomain?: string,
): 'none' | 'managed' | 'customer' {
  const ownership = ownershipOf(current, settings);
  if (ownership === 'customer' && customSenderDomain) {
    const custom = ownershipOf(current, { relayHost: settings.relayHost, senderDomain: customSenderDomain });
    if (custom === 'managed') return 'managed';
  }
  return ownership;
}

/** Throws CustomerOwnedSettingsError when the guard does not allow replacing `current`. */
export function assertWritable(
  current: EmailSettings,
  settings: ManagedEmailSettings,
  guard: OwnershipGuard,
  customSenderDomain?: string,
): void {
  if (guard === 'any') return;
  const ownership = ownershipWith(current, settings, customSenderDomain);
  if (ownership === 'managed' || (ownership === 'none' && guard === 'managed-or-none')) return;
  // Instance text, quoted in a failure message (and so the status): bounded, one clean line.
  const host = current.smtp && typeof current.smtp.host === 'string' ? sanitizeText(current.smtp.host, 320) : 'unset';
  const domain = current.address?.includes('@') ? sanitizeText(current.address.split('@').pop(), 320) : 'unset';
  customerOwned(
    ownership === 'none'
      ? 'the managed email settings were removed from the site configuration: the instance is customer-managed now'
      : `the site configuration now holds the customer's own SMTP settings (host ${host}, sender domain ${domain})`,
  );
}

/** Builds the site access for one worker's activities. */
export function createSiteAccess(
  secrets: Pick<SecretStore, 'access' | 'getSecretLabels'>,
  sourcegraph: (opts: SourcegraphClientOptions) => SourcegraphApi,
  settings: ManagedEmailSettings,
  guard: TargetGuard,
) {
  const tokens = new Map<string, { token: string; until: number }>();
  const configs = new Map<string, { config: SiteConfig; until: number }>();
  /** Instances whose project claim was confirmed (`project/instance`), re-read after TOKEN_TTL_MS like a token. */
  const claims = new Map<string, number>();

  /**
   * Refuses a site whose project another instance has claimed (its send-key secret is labelled with that instance):
   * checked on every request, before the token cache, since a cached token must not go to another instance's URL.
   */
  async function checkProjectClaim(site: SiteRef): Promise<void> {
    if (typeof site.instance !== 'string' || typeof site.gcpProject !== 'string') return;
    const key = `${site.gcpProject}/${site.instance}`;
    const now = Date.now();
    if ((claims.get(key) ?? 0) > now) return;
    const owner = await sendKeySecretOwner(secrets, site.instance, site.gcpProject);
    if (typeof owner === 'object') {
      throw ApplicationFailure.nonRetryable(
        `adminTokenSecret is refused: project ${site.gcpProject} belongs to instance ${owner.owner}, not ` +
          `${sanitizeText(site.instance, 63)} (its send-key secret says so), so no token of it goes to this site`,
        TARGET_REFUSED,
      );
    }
    for (const [k, until] of claims) if (until <= now) claims.delete(k);
    if (owner === 'own') claims.set(key, now + TOKEN_TTL_MS);
  }

  /** A token from the cache dropped after a 401 makes the call retryable, so Temporal retries with a fresh read. */
  function refreshOnAuthError(client: SourcegraphApi, secret: string): SourcegraphApi {
    return new Proxy(client, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver);
        if (typeof value !== 'function') return value;
        return async (...args: unknown[]) => {
          try {
            return await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          } catch (err) {
            if (!isVendorError(err, 'auth')) throw err;
            tokens.delete(secret);
            throw new VendorError({
              vendor: 'sourcegraph',
              kind: 'unavailable',
              status: err.status,
              message: `${err.message} (with a cached admin token; retrying with a fresh read)`,
            });
          }
        };
      },
    });
  }

  const access = {
    /** A client for the instance, authenticated with its admin token. */
    async sourcegraphFor(site: SiteRef): Promise<SourcegraphApi> {
      // Before the token is read (or taken from the cache): a refused site never sees it.
      await checkSite(site, guard);
      await checkProjectClaim(site);
      // Every request checks and pins the address again (the client's resolveTarget): DNS may change in between.
      const resolveTarget = (url: string) => guard.resolve(url);
      const cached = tokens.get(site.adminTokenSecret);
      if (cached && cached.until > Date.now()) {
        return refreshOnAuthError(
          sourcegraph({ url: site.sourcegraphUrl, token: cached.token, resolveTarget }),
          site.adminTokenSecret,
        );
      }
      const token = (await secrets.access(site.adminTokenSecret)).data.trim();
      const now = Date.now();
      // Expired entries go as new ones come, so memory follows the instances active in the last minute.
      for (const [k, v] of tokens) if (v.until <= now) tokens.delete(k);
      for (const [k, v] of configs) if (v.until <= now) configs.delete(k);
      tokens.set(site.adminTokenSecret, { token, until: now + TOKEN_TTL_MS });
      return sourcegraph({ url: site.sourcegraphUrl, token, resolveTarget });
    },

    /** Offers a configuration just read to the next edit of the same instance. */
    rememberConfig(site: SiteRef, config: SiteConfig): void {
      configs.set(site.sourcegraphUrl, { config, until: Date.now() + CONFIG_TTL_MS });
    },

    /** The configuration offered for this instance, once. */
    takeConfig(site: SiteRef): SiteConfig | undefined {
      const c = configs.get(site.sourcegraphUrl);
      configs.delete(site.sourcegraphUrl);
      return c && c.until > Date.now() ? c.config : undefined;
    },

    /**
     * Writes the managed email settings with `key` as the password (sender on `senderDomain` when given, else the
     * shared domain); every other key and comment stays. Returns the sender address.
     */
    async writeManagedSettings(
      site: SiteRef,
      input: {
        instance: string;
        key: string;
        senderName?: string;
        senderDomain?: string;
        /** Whose settings may be replaced; checked inside the read-modify-write, so a concurrent edit is seen. */
        guard: OwnershipGuard;
        /** A custom sending domain whose sender counts as managed (the one being switched to or from). */
        customSenderDomain?: string;
      },
    ): Promise<string> {
      const sg = await access.sourcegraphFor(site);
      const sender = senderAddress(input.instance, input.senderDomain ?? settings.senderDomain);
      const smtp = {
        host: settings.relayHost,
        port: settings.relayPort,
        username: SMTP_USERNAME,
        password: input.key,
        authentication: 'PLAIN' as const,
      };
      await sg.editSiteConfig(
        (contents) => {
          let current: EmailSettings;
          try {
            current = readEmailSettings(contents);
          } catch (err) {
            return siteConfigUnusable(err);
          }
          // Ownership is decided on the very contents this write replaces (re-read after a lastID conflict).
          assertWritable(current, settings, input.guard, input.customSenderDomain ?? input.senderDomain);
          try {
            return applyManagedSettings(contents, { address: sender, smtp, senderName: input.senderName });
          } catch (err) {
            return siteConfigUnusable(err);
          }
        },
        undefined,
        access.takeConfig(site),
      );
      return sender;
    },
  };
  return access;
}

/** The site access of one worker. */
export type SiteAccess = ReturnType<typeof createSiteAccess>;
