/**
 * The read-only (and audited) paths that call SparkPost directly with the operator key from smtpctl's own
 * environment (`SPARKPOST_API_KEY`, `SPARKPOST_API_URL`): `why`, `suppression` and `webhooks install`. They carry
 * recipient addresses, which must never enter a workflow history; going direct keeps them in this process only.
 * Without the key these commands stop with exit 2 and say so.
 */
import os from 'node:os';
import { SparkPostClient } from '../../vendors/sparkpost';
import { UsageError } from '../validation';
import { OperationFailed } from '../errors';
import type { ManagedSmtpClient } from '../index';
import { isEmailAddress } from '../../contract/gdpr';

/** The EU default, as the worker has it. */
const DEFAULT_SPARKPOST_URL = 'https://api.eu.sparkpost.com/api/v1';

/** A usage error whose whole message is given. */
export class SettingMissing extends UsageError {
  constructor(argument: string, message: string) {
    super(argument, message);
    this.message = message;
  }
}

/** A SparkPost client with the operator key from the environment; exit 2 without one. */
export function operatorSparkPost(command: string, env: NodeJS.ProcessEnv = process.env): SparkPostClient {
  const apiKey = env.SPARKPOST_API_KEY ?? '';
  if (!apiKey) {
    throw new SettingMissing(
      'SPARKPOST_API_KEY',
      `${command} reads SparkPost directly so that no address enters a workflow history: set SPARKPOST_API_KEY ` +
        '(the operator key) and, outside the EU default, SPARKPOST_API_URL',
    );
  }
  return new SparkPostClient({ baseUrl: env.SPARKPOST_API_URL || DEFAULT_SPARKPOST_URL, apiKey });
}

/** Who is asking: --actor, else the OS user. */
export function actorOf(given: string | undefined): string {
  if (given !== undefined) {
    const a = given.trim();
    if (!/^[\w.@+-]{1,64}$/.test(a)) throw new UsageError('--actor', 'must be 1-64 letters, digits or ._@+-');
    return a;
  }
  try {
    return os.userInfo().username || 'unknown';
  } catch {
    return process.env.USER || 'unknown';
  }
}

/** The subaccount id of an instance from its status; exit 1 when it never had one. */
export async function subaccountOf(client: ManagedSmtpClient, instance: string): Promise<number> {
  const status = await client.status(instance);
  if (status.subaccountId === null) {
    throw new OperationFailed(`instance ${instance} has no SparkPost subaccount, so SparkPost holds nothing for it`);
  }
  return status.subaccountId;
}

/** Checks the address argument; the error never repeats it. */
export function checkAddress(value: string): string {
  const v = value.trim();
  if (!isEmailAddress(v)) throw new UsageError('email', 'not an email address');
  return v;
}
