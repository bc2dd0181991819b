/**
 * Connects to Temporal with @temporalio/envconfig, so TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY,
 * TEMPORAL_TLS_* and TEMPORAL_PROFILE (or a Temporal Cloud profile file) work unchanged.
 */
import { Client, Connection } from '@temporalio/client';
import { loadClientConnectConfig } from '@temporalio/envconfig';
import { codecFromEnvironment, dataConverterFor } from '../lib/codec';

/**
 * A connected Temporal client. Payloads are encrypted with the MANAGED_SMTP_CODEC_KEYS (or _KEY_SECRET) keys when set;
 * the worker must use the same keys.
 */
export async function connectTemporal(): Promise<Client> {
  const codec = await codecFromEnvironment(process.env);
  const { connectionOptions, namespace } = loadClientConnectConfig();
  const connection = await Connection.connect({ ...connectionOptions, connectTimeout: '10s' });
  return new Client({
    connection,
    namespace: process.env.TEMPORAL_NAMESPACE || namespace || 'default',
    dataConverter: dataConverterFor(codec),
  });
}
