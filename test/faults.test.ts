/** The emulators' fault model: seeded decisions, and a load-dependent rate limit like SparkPost's. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Faults } from '../lib/faults';

test('maxPerSecond answers 429 beyond the limit within a second, and counts it', () => {
  const f = new Faults({ maxPerSecond: 5 });
  const decisions = Array.from({ length: 12 }, () => f.decide('POST /api/v1/subaccounts'));
  assert.deepEqual(decisions.slice(0, 5), ['ok', 'ok', 'ok', 'ok', 'ok']);
  assert.ok(decisions.slice(5).every((d) => d === 'rate-limit'));
  assert.equal(f.injected['rate-limit'], 7);
  assert.equal(f.requests, 12);
});

test('the same seed gives the same faults', () => {
  const run = () => {
    const f = new Faults({ errorRate: 0.2, rateLimitRate: 0.2, dropResponseRate: 0.2, seed: 42 });
    return Array.from({ length: 50 }, () => f.decide('GET /x'));
  };
  assert.deepEqual(run(), run());
  assert.ok(run().some((d) => d !== 'ok'));
});

test('match limits faults to matching routes', () => {
  const f = new Faults({ errorRate: 1, match: '^POST ' });
  assert.equal(f.decide('GET /api/v1/subaccounts'), 'ok');
  assert.equal(f.decide('POST /api/v1/subaccounts'), 'error');
});
