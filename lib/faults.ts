/**
 * Fault injection shared by the emulators. Each emulator owns a Faults instance; tests and the chaos suite
 * turn knobs on it (in process, or over the emulator's admin endpoint). Decisions come from a seeded PRNG,
 * so a chaos run with the same seed injects the same faults.
 */

/** Knobs for one emulator. Rates are probabilities in [0, 1] per request. */
export interface FaultConfig {
  /** Probability of a 5xx (or gRPC UNAVAILABLE) without applying the request. */
  errorRate: number;
  /** Probability of a 429 (or gRPC RESOURCE_EXHAUSTED) without applying the request. */
  rateLimitRate: number;
  /** Probability of applying the request and then dropping the connection before the response. */
  dropResponseRate: number;
  /**
   * How long a dropped response hangs before the connection is cut, in milliseconds (0 or unset: cut at once). A hang
   * longer than the client's timeout is an applied-then-hung request: the client gives up not knowing the outcome.
   */
  hangMs?: number;
  /** Fixed latency added to every request, in milliseconds. */
  latencyMs: number;
  /** Random extra latency in [0, latencyJitterMs). */
  latencyJitterMs: number;
  /**
   * A rate limit like SparkPost's: requests beyond this many in the last second get a 429 (0 or unset: none).
   * Unlike `rateLimitRate` it depends on the load, so a client-side ceiling can avoid it.
   */
  maxPerSecond?: number;
  /** Only requests whose `METHOD path` (or gRPC method name) matches this regular expression get faults. */
  match?: string;
  /** Seed for the PRNG; changing it restarts the sequence. */
  seed?: number;
}

/** What an emulator should do with one request. */
export type FaultDecision = 'ok' | 'error' | 'rate-limit' | 'drop';

/** No faults at all. */
export const NO_FAULTS: FaultConfig = {
  errorRate: 0,
  rateLimitRate: 0,
  dropResponseRate: 0,
  latencyMs: 0,
  latencyJitterMs: 0,
};

/** mulberry32: a tiny, well-distributed 32-bit PRNG; the same seed gives the same sequence. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Fault state of one emulator, with counters of what it injected. */
export class Faults {
  private config: FaultConfig = { ...NO_FAULTS };
  private random: () => number = prng(1);
  private matcher: RegExp | null = null;
  /** How many faults of each kind were injected since start (or the last reset). */
  readonly injected: Record<Exclude<FaultDecision, 'ok'>, number> = { error: 0, 'rate-limit': 0, drop: 0 };
  /** How many requests asked for a decision: every request the emulator served (benchmarks count vendor calls). */
  requests = 0;
  /** Times of the requests in the last second, for maxPerSecond. */
  private recent: number[] = [];

  constructor(initial: Partial<FaultConfig> = {}) {
    this.set(initial);
  }

  /** Changes some knobs; the others keep their values. */
  set(partial: Partial<FaultConfig>): FaultConfig {
    this.config = { ...this.config, ...partial };
    if (partial.seed !== undefined) this.random = prng(partial.seed);
    this.matcher = this.config.match ? new RegExp(this.config.match) : null;
    return this.current();
  }

  /** Turns every fault off and zeroes the counters. */
  reset(): void {
    this.config = { ...NO_FAULTS };
    this.matcher = null;
    this.injected.error = this.injected['rate-limit'] = this.injected.drop = 0;
  }

  /** The knobs in force. */
  current(): FaultConfig {
    return { ...this.config };
  }

  /** Decides the fate of one request identified by `route` (e.g. `POST /api/v1/subaccounts`). */
  decide(route: string): FaultDecision {
    this.requests++;
    if (this.matcher && !this.matcher.test(route)) return 'ok';
    const limit = this.config.maxPerSecond ?? 0;
    if (limit > 0) {
      const now = Date.now();
      while (this.recent.length > 0 && this.recent[0] <= now - 1000) this.recent.shift();
      if (this.recent.length >= limit) {
        this.injected['rate-limit']++;
        return 'rate-limit';
      }
      this.recent.push(now);
    }
    const r = this.random();
    const { errorRate, rateLimitRate, dropResponseRate } = this.config;
    let d: FaultDecision = 'ok';
    if (r < errorRate) d = 'error';
    else if (r < errorRate + rateLimitRate) d = 'rate-limit';
    else if (r < errorRate + rateLimitRate + dropResponseRate) d = 'drop';
    if (d !== 'ok') this.injected[d]++;
    return d;
  }

  /** Waits for the configured latency (bounded by the knobs, never forever). */
  async delay(): Promise<void> {
    const ms =
      this.config.latencyMs + (this.config.latencyJitterMs > 0 ? this.random() * this.config.latencyJitterMs : 0);
    if (ms > 0) await new Promise((r) => setTimeout(r, ms));
  }
}
