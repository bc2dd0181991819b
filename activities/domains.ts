/**
 * Activities for custom sending domains and dedicated IP pools. Idempotent like the rest: a create whose response was
 * lost is found (or redone) rather than duplicated, deletes tolerate what is already gone, and SparkPost's refusals
 * (restricted domain 7000, domain in use elsewhere 7004, unknown pool) become non-retryable failures that say why.
 */
import { ApplicationFailure } from '@temporalio/common';
import { isVendorError, VendorError } from '../lib/errors';
import type { DnsRecord } from '../lib/types';
import type { SendingDomainDkim } from '../vendors/sparkpost';
import type { ActivityDeps } from './index';

/** ApplicationFailure type of a domain SparkPost refuses (restricted, in use elsewhere, malformed). */
export const SENDING_DOMAIN_REFUSED = 'SendingDomainRefused';
/** ApplicationFailure type of an IP pool that does not exist (and was not to be created). */
export const IP_POOL_NOT_FOUND = 'IpPoolNotFound';

/** A sending domain of an instance's subaccount. */
export interface DomainRef {
  subaccountId: number;
  domain: string;
}

/** The DNS records that verify a domain with SparkPost: the DKIM public key as TXT. */
export function dnsRecordsFor(domain: string, dkim: SendingDomainDkim): DnsRecord[] {
  return [
    {
      type: 'TXT',
      name: `${dkim.selector}._domainkey.${domain}`,
      value: `v=DKIM1; k=rsa; h=sha256; p=${dkim.public}`,
      purpose: 'DKIM signing key: SparkPost verifies the domain with it',
    },
  ];
}

function refused(domain: string, err: VendorError): ApplicationFailure {
  const why =
    err.code === '7000'
      ? `SparkPost refuses ${domain} as a sending domain: it is a restricted domain (error 7000); use a domain the customer owns`
      : err.code === '7004'
        ? `${domain} is already a sending domain of another SparkPost account or subaccount (error 7004); it has to be removed there first`
        : `SparkPost refused ${domain} as a sending domain: ${err.message}`;
  return ApplicationFailure.nonRetryable(why, SENDING_DOMAIN_REFUSED);
}

/** Builds the sending-domain and IP-pool activities. */
export function createDomainActivities(deps: ActivityDeps) {
  const { sparkpost } = deps;

  async function deleteIfPresent(ref: DomainRef): Promise<boolean> {
    try {
      await sparkpost.deleteSendingDomain(ref.subaccountId, ref.domain);
      return true;
    } catch (err) {
      if (isVendorError(err, 'not-found')) return false;
      throw err;
    }
  }

  return {
    /**
     * Creates the domain on the subaccount with a generated DKIM key and returns the DNS records to publish. When the
     * subaccount already has it (a create whose response was lost, or a leftover), a verified one is kept; an
     * unverified one is recreated, since its DKIM key was never seen and so cannot have been published.
     */
    async createSendingDomain(input: DomainRef): Promise<{ dnsRecords: DnsRecord[]; verified: boolean }> {
      const create = async () => {
        try {
          return await sparkpost.createSendingDomain(input.subaccountId, input.domain);
        } catch (err) {
          if (isVendorError(err, 'invalid')) throw refused(input.domain, err);
          throw err;
        }
      };
      let created;
      try {
        created = await create();
      } catch (err) {
        if (!isVendorError(err, 'conflict')) throw err;
        const existing = await sparkpost.getSendingDomain(input.subaccountId, input.domain);
        if (existing.status.ownership_verified && existing.status.dkim_status === 'valid') {
          return { dnsRecords: [], verified: true };
        }
        await deleteIfPresent(input);
        created = await create();
      }
      if (!created.dkim) {
        throw ApplicationFailure.nonRetryable(
          `SparkPost created ${input.domain} without a DKIM key, so it cannot be verified`,
          SENDING_DOMAIN_REFUSED,
        );
      }
      return { dnsRecords: dnsRecordsFor(input.domain, created.dkim), verified: false };
    },

    /** Asks SparkPost to verify the domain's DKIM record now. `gone` when SparkPost no longer has the domain. */
    async checkSendingDomain(input: DomainRef): Promise<{ verified: boolean; dkimStatus: string; gone: boolean }> {
      try {
        const r = await sparkpost.verifySendingDomain(input.subaccountId, input.domain);
        return { verified: r.ownership_verified && r.dkim_status === 'valid', dkimStatus: r.dkim_status, gone: false };
      } catch (err) {
        if (isVendorError(err, 'not-found')) return { verified: false, dkimStatus: 'missing', gone: true };
        throw err;
      }
    },

    /** Deletes the domain from the subaccount; a domain that is already gone is fine. */
    async deleteSendingDomain(input: DomainRef): Promise<{ deleted: boolean }> {
      return { deleted: await deleteIfPresent(input) };
    },

    /**
     * Sets the subaccount's IP pool (`null` unassigns). An unknown pool is created when `create` is set, else it is a
     * non-retryable failure naming the pools that exist. Returns the pool id now assigned.
     */
    async setIpPool(input: {
      subaccountId: number;
      pool: string | null;
      create: boolean;
    }): Promise<{ pool: string | null; created: boolean }> {
      if (input.pool === null) {
        await sparkpost.updateSubaccount(input.subaccountId, { ipPool: '' });
        return { pool: null, created: false };
      }
      const pools = await sparkpost.listIpPools();
      let id = pools.find((p) => p.id === input.pool)?.id;
      let created = false;
      if (!id) {
        if (!input.create) {
          throw ApplicationFailure.nonRetryable(
            `IP pool "${input.pool}" does not exist (pools: ${pools.map((p) => p.id).join(', ') || 'none'}); ` +
              'pass --create to create it',
            IP_POOL_NOT_FOUND,
          );
        }
        try {
          id = (await sparkpost.createIpPool(input.pool)).id;
          created = true;
        } catch (err) {
          // A create whose response was lost: the pool is there now.
          if (!isVendorError(err, 'conflict')) throw err;
          id = input.pool;
        }
      }
      try {
        await sparkpost.updateSubaccount(input.subaccountId, { ipPool: id });
      } catch (err) {
        // The client cannot delete pools: say that the one just created is left, empty, rather than hide it.
        if (created && err instanceof VendorError && !err.retryable) {
          throw ApplicationFailure.nonRetryable(
            `${err.message} (IP pool ${id} was created and is left unused)`,
            err.type,
          );
        }
        throw err;
      }
      return { pool: id, created };
    },
  };
}
