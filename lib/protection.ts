/**
 * Reputation protection: the per-instance ladder as a pure state machine. Every instance shares one sending domain
 * and IP pool, so one instance's bad list hurts all the others; the ladder reacts on its own.
 *
 *   ok ──warning obs──▶ warning ──severe obs at volume──▶ quarantined | suspended | severe (alert-only)
 *    ▲                     │                                        │
 *    └──── quiet for quietSeconds, `protection clear`, or disable ◀─┘
 *
 * `decide(state, input, now)` returns the next state and the effects the entity must carry out (an alert per
 * transition, a vendor action to apply or lift). It does no I/O and reads no clock, so the entity workflow (which
 * owns the state) can run it deterministically, and tests can drive it directly. Observations carry counts only,
 * never addresses. Pure module: imported by workflow code.
 */

/** Where an instance is on the ladder. `severe` is the top rung when the configured action is `alert-only`. */
export type ProtectionLevel = 'ok' | 'warning' | 'quarantined' | 'suspended' | 'severe';

/** What the top rung does: move the subaccount to a quarantine IP pool, suspend it, or only alert. */
export type ProtectionAction = 'quarantine' | 'suspend' | 'alert-only';

/** Thresholds and the action. Rates are fractions (0.001 = 0.1 %) of messages sent in the observed window. */
export interface ProtectionConfig {
  /** Complaint rate above which an instance is warned. SparkPost: above 0.1 % is bad. */
  warnComplaintRate: number;
  /** Complaint rate above which the action runs (with at least minVolume sent). */
  severeComplaintRate: number;
  /** Hard-bounce rate above which an instance is warned (a list that was not kept clean). */
  warnHardBounceRate: number;
  /** Hard-bounce rate above which the action runs (with at least minVolume sent). */
  severeHardBounceRate: number;
  /** Rates say little about a few messages: rate rules need this many sent in the window. */
  minVolume: number;
  /** Below minVolume, this many complaints in one window warn (a burst the rates cannot see yet). */
  burstComplaints: number;
  /** Below minVolume, this many hard bounces in one window warn. */
  burstHardBounces: number;
  action: ProtectionAction;
  /** The IP pool quarantined subaccounts move to (created when missing). */
  quarantinePool: string;
  /** Recover after this long without an observation over a threshold. */
  quietSeconds: number;
}

/**
 * Defaults after SparkPost's guidance: complaints above 0.1 % are bad and above 0.5 % get accounts blocked by
 * mailbox providers; hard bounces above 2 % mean a stale list, above 5 % put the shared pool at risk.
 */
export const DEFAULT_PROTECTION_CONFIG: ProtectionConfig = {
  warnComplaintRate: 0.001,
  severeComplaintRate: 0.005,
  warnHardBounceRate: 0.02,
  severeHardBounceRate: 0.05,
  minVolume: 200,
  burstComplaints: 5,
  burstHardBounces: 25,
  action: 'quarantine',
  quarantinePool: 'quarantine',
  quietSeconds: 6 * 3600,
};

/** Counts over a window, from the polled metrics or from the webhook events. Never an address. */
export interface ProtectionObservation {
  source: 'metrics' | 'events';
  /** When it was measured (ISO). */
  at: string;
  /** Start of the measured window (ISO). */
  from: string;
  /** Messages that reached a verdict in the window (delivered + bounced). */
  sent: number;
  hardBounces: number;
  complaints: number;
}

/** One change of level: the audit trail. */
export interface ProtectionTransition {
  at: string;
  from: ProtectionLevel;
  to: ProtectionLevel;
  /** Why, in words (counts and rates only). */
  reason: string;
  /** metrics, events, operator <name>, disable, quiet period, configure. */
  by: string;
  /** What the vendor action did, filled in by the entity once it ran. */
  outcome?: string;
}

/** The ladder's durable state (kept in the instance status). */
export interface ProtectionState {
  level: ProtectionLevel;
  /** When the current level started. */
  since: string | null;
  /** The last observation over a threshold. */
  lastBadAt: string | null;
  /** Observations measured from before this (an operator clear) cannot raise the level again. */
  clearedAt: string | null;
  /** The subaccount's pool before quarantine ('' = none), to put back. */
  previousPool: string | null;
  config: ProtectionConfig;
  /** The last observation and what it amounted to. */
  last: (ProtectionObservation & { severity: Severity }) | null;
  /** Newest last, bounded. */
  transitions: ProtectionTransition[];
}

/** Where protection alerts go: a Slack-compatible webhook URL or (better) the Secret Manager version holding it. */
export interface AlertTarget {
  url?: string;
  secret?: string;
}

/** The last protection request the entity finished, so a caller can wait for its own. */
export interface ProtectionRequestRecord {
  requestId: string;
  at: string;
  outcome: string;
}

/** The ladder as kept in the instance status. */
export interface ProtectionStatus extends ProtectionState {
  alertWebhook?: AlertTarget | null;
  lastRequest?: ProtectionRequestRecord | null;
}

/** What one observation amounts to. */
export type Severity = 'quiet' | 'warning' | 'severe';

/** What the entity feeds the ladder. */
export type ProtectionInput =
  | { kind: 'observe'; observation: ProtectionObservation }
  | { kind: 'clear'; actor: string; reason?: string }
  | { kind: 'configure'; config: Partial<ProtectionConfig>; actor: string }
  | { kind: 'reset'; reason: string };

/** Something the entity must do because of a decision. */
export type ProtectionEffect =
  | { type: 'alert'; transition: ProtectionTransition }
  | { type: 'apply'; action: 'quarantine' | 'suspend'; pool: string }
  | { type: 'lift'; action: 'quarantine' | 'suspend'; previousPool: string | null };

/** How many transitions the state keeps. */
export const MAX_TRANSITIONS = 30;

/** A fresh ladder. */
export function initialProtection(config: ProtectionConfig = DEFAULT_PROTECTION_CONFIG): ProtectionState {
  return {
    level: 'ok',
    since: null,
    lastBadAt: null,
    clearedAt: null,
    previousPool: null,
    config: { ...config },
    last: null,
    transitions: [],
  };
}

const POOL = /^[a-z0-9_]{1,20}$/;
const ACTIONS: readonly ProtectionAction[] = ['quarantine', 'suspend', 'alert-only'];

/** Why a partial config is invalid, or null. */
export function configProblem(c: Partial<ProtectionConfig>): string | null {
  if (!c || typeof c !== 'object') return 'config must be an object';
  for (const k of ['warnComplaintRate', 'severeComplaintRate', 'warnHardBounceRate', 'severeHardBounceRate'] as const) {
    const v = c[k];
    if (v !== undefined && !(typeof v === 'number' && v > 0 && v <= 1)) return `${k} must be a number in (0, 1]`;
  }
  for (const k of ['minVolume', 'burstComplaints', 'burstHardBounces', 'quietSeconds'] as const) {
    const v = c[k];
    if (v !== undefined && !(Number.isSafeInteger(v) && (v as number) >= 0)) return `${k} must be a whole number ≥ 0`;
  }
  if (c.action !== undefined && !ACTIONS.includes(c.action)) return `action must be one of ${ACTIONS.join(', ')}`;
  if (c.quarantinePool !== undefined && !(typeof c.quarantinePool === 'string' && POOL.test(c.quarantinePool))) {
    return 'quarantinePool must be 1-20 of a-z, 0-9, _';
  }
  return null;
}

/** Why an observation is malformed, or null. */
export function observationProblem(o: ProtectionObservation): string | null {
  if (!o || typeof o !== 'object') return 'observation must be an object';
  if (o.source !== 'metrics' && o.source !== 'events') return 'source must be metrics or events';
  if (typeof o.at !== 'string' || Number.isNaN(Date.parse(o.at))) return 'at must be an ISO time';
  if (typeof o.from !== 'string' || Number.isNaN(Date.parse(o.from))) return 'from must be an ISO time';
  for (const k of ['sent', 'hardBounces', 'complaints'] as const) {
    if (!Number.isSafeInteger(o[k]) || o[k] < 0) return `${k} must be a whole number ≥ 0`;
  }
  return null;
}

/** Why an input is malformed, or null (the entity's validator). */
export function inputProblem(input: ProtectionInput): string | null {
  if (!input || typeof input !== 'object') return 'missing input';
  switch (input.kind) {
    case 'observe':
      return observationProblem(input.observation);
    case 'clear':
      return typeof input.actor === 'string' && input.actor !== '' ? null : 'clear needs an actor';
    case 'configure':
      return typeof input.actor === 'string' && input.actor !== '' ? configProblem(input.config) : 'needs an actor';
    case 'reset':
      return typeof input.reason === 'string' ? null : 'reset needs a reason';
    default:
      return 'kind must be observe, clear, configure or reset';
  }
}

function pct(r: number): string {
  return `${(r * 100).toFixed(2)} %`;
}

/** What an observation amounts to under a config, with the reason in words. */
export function assess(o: ProtectionObservation, c: ProtectionConfig): { severity: Severity; reason: string } {
  const complaintRate = o.sent > 0 ? o.complaints / o.sent : 0;
  const hardRate = o.sent > 0 ? o.hardBounces / o.sent : 0;
  const counts = `${o.complaints} complaints, ${o.hardBounces} hard bounces of ${o.sent} sent since ${o.from} (${o.source})`;
  const atVolume = o.sent >= c.minVolume;
  if (atVolume && complaintRate > c.severeComplaintRate) {
    return {
      severity: 'severe',
      reason: `complaint rate ${pct(complaintRate)} > ${pct(c.severeComplaintRate)}: ${counts}`,
    };
  }
  if (atVolume && hardRate > c.severeHardBounceRate) {
    return {
      severity: 'severe',
      reason: `hard-bounce rate ${pct(hardRate)} > ${pct(c.severeHardBounceRate)}: ${counts}`,
    };
  }
  if (atVolume && complaintRate > c.warnComplaintRate) {
    return {
      severity: 'warning',
      reason: `complaint rate ${pct(complaintRate)} > ${pct(c.warnComplaintRate)}: ${counts}`,
    };
  }
  if (atVolume && hardRate > c.warnHardBounceRate) {
    return {
      severity: 'warning',
      reason: `hard-bounce rate ${pct(hardRate)} > ${pct(c.warnHardBounceRate)}: ${counts}`,
    };
  }
  if (!atVolume && c.burstComplaints > 0 && o.complaints >= c.burstComplaints) {
    return { severity: 'warning', reason: `complaint burst (≥ ${c.burstComplaints}): ${counts}` };
  }
  if (!atVolume && c.burstHardBounces > 0 && o.hardBounces >= c.burstHardBounces) {
    return { severity: 'warning', reason: `hard-bounce burst (≥ ${c.burstHardBounces}): ${counts}` };
  }
  return { severity: 'quiet', reason: counts };
}

/** The level the configured action leads to. */
function topLevel(c: ProtectionConfig): ProtectionLevel {
  return c.action === 'quarantine' ? 'quarantined' : c.action === 'suspend' ? 'suspended' : 'severe';
}

/** The vendor action in force at a level, if any. */
export function actionAt(level: ProtectionLevel): 'quarantine' | 'suspend' | null {
  return level === 'quarantined' ? 'quarantine' : level === 'suspended' ? 'suspend' : null;
}

/** Whether a level is the top rung (acting or alert-only). */
function isTop(level: ProtectionLevel): boolean {
  return level === 'quarantined' || level === 'suspended' || level === 'severe';
}

/**
 * The next state and the effects of one input at time `now` (ISO). Each transition yields exactly one alert; an
 * input that changes no level yields none, so however often the same episode is observed it is announced once.
 */
export function decide(
  state: ProtectionState,
  input: ProtectionInput,
  now: string,
): { state: ProtectionState; effects: ProtectionEffect[] } {
  const s: ProtectionState = { ...state, config: { ...state.config }, transitions: [...state.transitions] };
  const effects: ProtectionEffect[] = [];
  const move = (to: ProtectionLevel, reason: string, by: string) => {
    const from = s.level;
    const acting = actionAt(from);
    if (acting && actionAt(to) !== acting) effects.push({ type: 'lift', action: acting, previousPool: s.previousPool });
    const next = actionAt(to);
    if (next && next !== acting) effects.push({ type: 'apply', action: next, pool: s.config.quarantinePool });
    const transition: ProtectionTransition = { at: now, from, to, reason, by };
    s.level = to;
    s.since = to === 'ok' ? null : now;
    if (to === 'ok') s.lastBadAt = null;
    s.transitions.push(transition);
    if (s.transitions.length > MAX_TRANSITIONS) s.transitions.splice(0, s.transitions.length - MAX_TRANSITIONS);
    effects.push({ type: 'alert', transition });
  };

  switch (input.kind) {
    case 'configure':
      s.config = { ...s.config, ...input.config };
      return { state: s, effects };
    case 'reset':
      if (s.level !== 'ok') move('ok', input.reason, 'disable');
      s.clearedAt = now;
      return { state: s, effects };
    case 'clear':
      if (s.level !== 'ok') {
        move('ok', `cleared by ${input.actor}${input.reason ? `: ${input.reason}` : ''}`, `operator ${input.actor}`);
      }
      s.clearedAt = now;
      return { state: s, effects };
    case 'observe': {
      const o = input.observation;
      const { severity, reason } = assess(o, s.config);
      // A window that began before an operator clear still holds the counts that were cleared.
      const stale = s.clearedAt !== null && Date.parse(o.from) < Date.parse(s.clearedAt);
      const effective: Severity = stale ? 'quiet' : severity;
      s.last = { ...o, severity };
      if (effective !== 'quiet') s.lastBadAt = o.at;
      if (effective === 'severe' && !isTop(s.level)) move(topLevel(s.config), reason, o.source);
      else if (effective === 'warning' && s.level === 'ok') move('warning', reason, o.source);
      else if (effective === 'quiet' && s.level !== 'ok') {
        const since = s.lastBadAt ?? s.since;
        if (since === null || Date.parse(now) - Date.parse(since) >= s.config.quietSeconds * 1000) {
          move('ok', `quiet for ${s.config.quietSeconds} s: ${reason}`, 'quiet period');
        }
      }
      return { state: s, effects };
    }
  }
}

/** One line for status and the Web UI. */
export function describeProtection(p: ProtectionState): string {
  if (p.level === 'ok') return 'reputation protection: ok';
  const last = p.transitions.at(-1);
  return `reputation protection: **${p.level}** since ${p.since ?? '?'}${last ? `: ${last.reason}` : ''}`;
}
