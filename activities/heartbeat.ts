/**
 * Heartbeats before every vendor call. With a heartbeat timeout on the activity options, an activity whose worker
 * was killed is retried after that timeout instead of the whole start-to-close timeout. The SDK throttles
 * heartbeats, so calling it often is cheap (but the first one of an attempt always reaches the server: a billed
 * action; activities in SILENT_ACTIVITIES skip it). Not for activities that keep progress in heartbeat details (GDPR
 * filing): a bare heartbeat would replace their details.
 */
import { beat } from './progress';

/** A proxy of `client` whose methods heartbeat before they run. */
export function heartbeating<T extends object>(client: T): T {
  return new Proxy(client, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        beat();
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}
