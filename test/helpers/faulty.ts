/**
 * Wraps a vendor client so chosen methods fail: tests swap a client, not a module.
 */

/** A switch a test flips to turn an injected fault on or off. */
export class FaultSwitch {
  on = true;
  /** How many calls failed because of it. */
  tripped = 0;

  /** `limit`: the fault lifts by itself after failing that many calls (so a compensation calling the same method works). */
  constructor(public limit = Infinity) {}
}

/** Returns a proxy of `target` whose `method` throws `error()` while `fault.on`. */
export function failing<T extends object>(target: T, method: keyof T, error: () => Error, fault: FaultSwitch): T {
  return new Proxy(target, {
    get(obj, prop, receiver) {
      const value = Reflect.get(obj, prop, receiver);
      if (typeof value !== 'function') return value;
      if (prop !== method) return value.bind(obj);
      return async (...args: unknown[]) => {
        if (fault.on) {
          fault.tripped++;
          if (fault.tripped >= fault.limit) fault.on = false;
          throw error();
        }
        return (value as (...a: unknown[]) => unknown).apply(obj, args);
      };
    },
  });
}
