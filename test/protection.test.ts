/**
 * The reputation-protection ladder (lib/protection.ts) as a pure state machine: thresholds at SparkPost's guidance,
 * one alert per transition however often an episode is observed, the action applied and lifted exactly once,
 * recovery only after the quiet period, an operator clear that stale windows cannot undo, and a reset by disable.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  DEFAULT_PROTECTION_CONFIG,
  assess,
  decide,
  initialProtection,
  inputProblem,
  type ProtectionEffect,
  type ProtectionObservation,
  type ProtectionState,
} from '../lib/protection';

const T0 = Date.parse('2026-11-29T10:00:00Z');
const at = (minutes: number) => new Date(T0 + minutes * 60_000).toISOString();
const obs = (minutes: number, sent: number, complaints: number, hardBounces = 0): ProtectionObservation => ({
  source: 'metrics',
  at: at(minutes),
  from: at(minutes - 60),
  sent,
  complaints,
  hardBounces,
});

function run(state: ProtectionState, steps: Array<[number, ProtectionObservation]>) {
  const effects: ProtectionEffect[] = [];
  for (const [m, o] of steps) {
    const r = decide(state, { kind: 'observe', observation: o }, at(m));
    state = r.state;
    effects.push(...r.effects);
  }
  return { state, effects };
}

describe('reputation protection ladder', () => {
  test('defaults follow SparkPost: 0.1 % complaints warns, quiet traffic does not', () => {
    const c = DEFAULT_PROTECTION_CONFIG;
    assert.equal(assess(obs(0, 10_000, 10), c).severity, 'quiet', 'exactly 0.1 % is not above it');
    assert.equal(assess(obs(0, 10_000, 11), c).severity, 'warning');
    assert.equal(assess(obs(0, 10_000, 60), c).severity, 'severe');
    assert.equal(assess(obs(0, 100, 4), c).severity, 'quiet', 'rates need volume');
    assert.equal(assess(obs(0, 100, 5), c).severity, 'warning', 'but a burst of complaints warns');
    assert.equal(assess(obs(0, 100, 50), c).severity, 'warning', 'severe needs meaningful volume');
    assert.equal(assess(obs(0, 10_000, 0, 600), c).severity, 'severe', 'hard bounces above 5 %');
  });

  test('warning → quarantine → recovered, one alert each, action applied and lifted once', () => {
    const { state, effects } = run(initialProtection(), [
      [0, obs(0, 10_000, 20)],
      [5, obs(5, 10_000, 20)],
      [10, obs(10, 10_000, 80)],
      [15, obs(15, 10_000, 90)],
      [60, obs(60, 10_000, 0)],
      [15 + 6 * 60, obs(15 + 6 * 60, 10_000, 0)],
      [15 + 6 * 60 + 5, obs(15 + 6 * 60 + 5, 10_000, 0)],
    ]);
    assert.equal(state.level, 'ok');
    assert.deepEqual(
      effects.map((e) =>
        e.type === 'alert' ? `alert ${e.transition.from}->${e.transition.to}` : `${e.type} ${e.action}`,
      ),
      [
        'alert ok->warning',
        'apply quarantine',
        'alert warning->quarantined',
        'lift quarantine',
        'alert quarantined->ok',
      ],
    );
    assert.deepEqual(
      state.transitions.map((t) => t.by),
      ['metrics', 'metrics', 'quiet period'],
    );
  });

  test('suspend and alert-only are configurable', () => {
    const suspend = decide(
      initialProtection(),
      { kind: 'configure', config: { action: 'suspend' }, actor: 'op' },
      at(0),
    );
    const r = run(suspend.state, [[1, obs(1, 1000, 10)]]);
    assert.equal(r.state.level, 'suspended');
    assert.ok(r.effects.some((e) => e.type === 'apply' && e.action === 'suspend'));
    const alertOnly = {
      ...initialProtection(),
      config: { ...DEFAULT_PROTECTION_CONFIG, action: 'alert-only' as const },
    };
    const a = run(alertOnly, [[1, obs(1, 1000, 10)]]);
    assert.equal(a.state.level, 'severe');
    assert.ok(!a.effects.some((e) => e.type === 'apply'));
  });

  test('an operator clear lifts the action, and windows from before it cannot raise it again', () => {
    const q = run(initialProtection(), [[0, obs(0, 10_000, 80)]]).state;
    assert.equal(q.level, 'quarantined');
    const cleared = decide(q, { kind: 'clear', actor: 'alice', reason: 'list cleaned' }, at(1));
    assert.equal(cleared.state.level, 'ok');
    assert.deepEqual(
      cleared.effects.map((e) => e.type),
      ['lift', 'alert'],
    );
    // The next poll still measures the last hour, which holds the cleared complaints.
    const stale = run(cleared.state, [[2, obs(2, 10_000, 80)]]);
    assert.equal(stale.state.level, 'ok');
    assert.equal(stale.effects.length, 0);
    const fresh = run(cleared.state, [[90, obs(90, 10_000, 80)]]);
    assert.equal(fresh.state.level, 'quarantined');
  });

  test('reset by disable lifts a quarantine; a reset of an ok ladder does nothing', () => {
    const q = run(initialProtection(), [[0, obs(0, 10_000, 80)]]).state;
    const r = decide(q, { kind: 'reset', reason: 'reset by disable' }, at(1));
    assert.equal(r.state.level, 'ok');
    assert.deepEqual(
      r.effects.map((e) => e.type),
      ['lift', 'alert'],
    );
    assert.deepEqual(decide(initialProtection(), { kind: 'reset', reason: 'x' }, at(1)).effects, []);
  });

  test('malformed inputs are named', () => {
    assert.match(String(inputProblem({ kind: 'observe', observation: { ...obs(0, 1, 1), sent: -1 } })), /sent/);
    assert.match(
      String(inputProblem({ kind: 'configure', config: { action: 'nuke' as never }, actor: 'a' })),
      /action/,
    );
    assert.match(String(inputProblem({ kind: 'configure', config: { warnComplaintRate: 2 }, actor: 'a' })), /warn/);
    assert.match(String(inputProblem({ kind: 'clear', actor: '' })), /actor/);
    assert.equal(inputProblem({ kind: 'clear', actor: 'bob' }), null);
  });
});
