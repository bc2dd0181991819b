/**
 * The benchmark's emulator process (scripts/bench.ts starts it): the whole EmulatorStack in a process of its own, so
 * the emulators' CPU is neither the worker's nor the plain script's. It is driven over Node's IPC channel:
 * `{ id, op, ... }` in, `{ id, result }` or `{ id, error }` out. It exits when its parent goes away.
 */
import { EmulatorStack, type EmulatedInstance } from '../emulators/stack';

/** A request from the benchmark. */
export type EmulatorRequest =
  | { op: 'worker-env'; taskQueue: string }
  | { op: 'add'; names: string[] }
  | { op: 'latency'; latencyMs: number }
  | { op: 'sparkpost-limit'; maxPerSecond: number }
  | { op: 'counters' }
  | { op: 'cpu' };

/** Requests served per emulator since start, and SparkPost's 429s. */
export interface EmulatorCounters {
  sparkpost: number;
  secretManager: number;
  sourcegraph: number;
  sparkpost429s: number;
}

async function main(): Promise<void> {
  if (!process.send) throw new Error('bench-emulators: start me with an IPC channel (scripts/bench.ts does)');
  const stack = await EmulatorStack.start();
  const faults = () => [stack.sparkpost.faults, stack.secretManager.faults, stack.sourcegraph.faults];

  const handle = (req: EmulatorRequest): unknown => {
    switch (req.op) {
      case 'worker-env':
        return stack.workerEnv(req.taskQueue);
      case 'add':
        return req.names.map((n): EmulatedInstance => stack.addInstance(n));
      case 'latency':
        for (const f of faults()) f.set({ latencyMs: req.latencyMs, latencyJitterMs: req.latencyMs / 2 });
        return null;
      case 'sparkpost-limit':
        stack.sparkpost.faults.set({ maxPerSecond: req.maxPerSecond });
        return null;
      case 'counters':
        return {
          sparkpost: stack.sparkpost.faults.requests,
          secretManager: stack.secretManager.faults.requests,
          sourcegraph: stack.sourcegraph.faults.requests,
          sparkpost429s: stack.sparkpost.faults.injected['rate-limit'],
        } satisfies EmulatorCounters;
      case 'cpu': {
        const u = process.cpuUsage();
        return (u.user + u.system) / 1e6;
      }
    }
  };

  process.on('message', (msg: { id: number } & EmulatorRequest) => {
    try {
      process.send!({ id: msg.id, result: handle(msg) });
    } catch (err) {
      process.send!({ id: msg.id, error: err instanceof Error ? err.message : String(err) });
    }
  });
  process.on('disconnect', () => void stack.close().finally(() => process.exit(0)));
  process.send({ ready: true });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
