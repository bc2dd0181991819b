/**
 * The managed SMTP invariant, checked against the emulators' in-process state (never through the code under test):
 * per instance one live subaccount, one live send key with exactly the smtp/inject grant, no orphan keys, one
 * ENABLED secret version holding that key, the managed email settings in the RAW stored site configuration, and
 * every human edit still there. Used by the chaos suite and by tests that want the whole picture at once.
 */
import { parseSiteConfig } from '../../lib/site-config';
import {
  SEND_KEY_GRANTS,
  SEND_KEY_LABEL,
  SMTP_USERNAME,
  senderAddress,
  sendKeySecretLabels,
  sendKeySecretName,
} from '../../lib/instance';
import { STACK_SENDER_DOMAIN, type EmulatorStack } from '../../emulators/stack';

/** An instance to check. */
export interface InstanceRef {
  name: string;
  gcpProject: string;
  /**
   * What the instance should look like: `active` (the full invariant, the default) or `absent` (nothing managed is
   * left: no live key, no send-key secret, no managed email settings; the subaccount suspended or terminated).
   */
  expect?: 'active' | 'absent';
}

/** Options of checkInvariants. */
export interface InvariantOptions {
  /** Sender domain of the managed address (default the stack's). */
  senderDomain?: string;
  /**
   * Text that humans (or the original configuration) put in each instance's site configuration and that must still
   * be there, by instance name: unique comments or keys.
   */
  humanEdits?: ReadonlyMap<string, readonly string[]>;
}

/** What was found for one instance. */
export interface InstanceFinding {
  name: string;
  /** True when every check passed. */
  converged: boolean;
  /** One line per failed check (no secrets: keys are named by id). */
  problems: string[];
  /** Send keys on subaccounts of this name other than the one live key (terminated subaccounts included). */
  orphans: number;
  /** Extra non-terminated subaccounts of this name plus extra ENABLED secret versions. */
  duplicates: number;
  /** Human edits no longer present in the configuration. */
  lostEdits: number;
}

/** The figures of a check over many instances. */
export interface InvariantFigures {
  total: number;
  converged: number;
  orphans: number;
  duplicates: number;
  lostEdits: number;
  findings: InstanceFinding[];
}

function sameGrants(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && [...a].sort().join(',') === [...b].sort().join(',');
}

function checkOne(stack: EmulatorStack, ref: InstanceRef, opts: InvariantOptions): InstanceFinding {
  const expect = ref.expect ?? 'active';
  const problems: string[] = [];
  const name = ref.name;
  const subs = stack.sparkpost.state.subaccounts.filter((s) => s.name === name);
  const live = subs.filter((s) => s.status !== 'terminated');
  const subIds = new Set(subs.map((s) => s.id));
  const sendKeys = stack.sparkpost.state.apiKeys.filter(
    (k) => k.subaccount_id !== null && subIds.has(k.subaccount_id) && k.label === SEND_KEY_LABEL,
  );
  const secretName = sendKeySecretName(ref.gcpProject);
  const secret = stack.secretManager.getSecret(secretName);
  const enabled = secret?.versions.filter((v) => v.state === 'ENABLED') ?? [];
  let orphans = 0;
  let duplicates = 0;
  let lostEdits = 0;

  let config: Record<string, unknown> | null = null;
  let raw = '';
  try {
    raw = stack.sourcegraph.site(name).config;
    config = parseSiteConfig(raw);
  } catch (err) {
    problems.push(`site configuration unreadable: ${err instanceof Error ? err.message : String(err)}`);
  }
  for (const edit of opts.humanEdits?.get(name) ?? []) {
    if (!raw.includes(edit)) {
      lostEdits++;
      problems.push(`human edit lost: ${JSON.stringify(edit)}`);
    }
  }

  if (expect === 'absent') {
    orphans = sendKeys.length;
    if (sendKeys.length) problems.push(`${sendKeys.length} send key(s) left: ${sendKeys.map((k) => k.id).join(', ')}`);
    for (const s of live) {
      if (s.status !== 'suspended')
        problems.push(`subaccount ${s.id} is ${s.status}, expected suspended or terminated`);
    }
    duplicates = Math.max(0, live.length - 1);
    if (secret) problems.push(`send-key secret ${secretName} still exists (${secret.versions.length} versions)`);
    if (config) {
      const smtp = config['email.smtp'];
      const host = smtp && typeof smtp === 'object' ? (smtp as Record<string, unknown>).host : undefined;
      if (host === stack.relay.host) problems.push('email.smtp still points at the managed relay');
      if (config['email.address'] === senderAddress(name, opts.senderDomain ?? STACK_SENDER_DOMAIN)) {
        problems.push('email.address is still the managed sender');
      }
    }
    return { name, converged: problems.length === 0, problems, orphans, duplicates, lostEdits };
  }

  // One live subaccount.
  if (live.length === 0) problems.push('no live subaccount');
  if (live.length > 1) {
    duplicates += live.length - 1;
    problems.push(`${live.length} live subaccounts: ${live.map((s) => s.id).join(', ')}`);
  }
  const sub = [...live].sort((a, b) => a.id - b.id)[0];
  if (sub && sub.status !== 'active') problems.push(`subaccount ${sub.id} is ${sub.status}`);

  // One live send key on it, which the secret's only ENABLED version holds.
  const onSub = sub ? sendKeys.filter((k) => k.subaccount_id === sub.id) : [];
  const latestEnabled = enabled[enabled.length - 1];
  const liveKey =
    onSub.find((k) => latestEnabled?.data !== undefined && k.key === latestEnabled.data) ??
    (onSub.length === 1 ? onSub[0] : undefined);
  if (onSub.length === 0) problems.push('no send key on the live subaccount');
  if (onSub.length > 1) problems.push(`${onSub.length} send keys on subaccount ${sub?.id}`);
  if (liveKey && !sameGrants(liveKey.grants, SEND_KEY_GRANTS)) {
    problems.push(`send key ${liveKey.id} has grants ${JSON.stringify(liveKey.grants)}`);
  }
  const extra = sendKeys.filter((k) => k !== liveKey);
  orphans += extra.length;
  if (extra.length) {
    problems.push(
      `${extra.length} orphan send key(s): ${extra.map((k) => `${k.id} on subaccount ${k.subaccount_id}`).join(', ')}`,
    );
  }

  if (!secret) problems.push(`send-key secret ${secretName} missing`);
  else {
    const labels = sendKeySecretLabels(name);
    for (const [k, v] of Object.entries(labels)) {
      if (secret.labels[k] !== v) problems.push(`secret label ${k} is ${JSON.stringify(secret.labels[k])}`);
    }
    if (enabled.length === 0) problems.push('the send-key secret has no ENABLED version');
    if (enabled.length > 1) {
      duplicates += enabled.length - 1;
      problems.push(`${enabled.length} ENABLED secret versions: ${enabled.map((v) => v.name).join(', ')}`);
    }
    if (latestEnabled && liveKey && latestEnabled.data !== liveKey.key) {
      problems.push(`secret version ${latestEnabled.name} does not hold the live key ${liveKey.id}`);
    }
    const newest = secret.versions[secret.versions.length - 1];
    if (newest && newest.state !== 'ENABLED') {
      problems.push(`the newest secret version ${newest.name} is ${newest.state} (versions/latest is unreadable)`);
    }
  }

  // The managed email settings, read from the raw stored configuration.
  if (config) {
    const wantAddress = senderAddress(name, opts.senderDomain ?? STACK_SENDER_DOMAIN);
    if (config['email.address'] !== wantAddress) {
      problems.push(`email.address is ${JSON.stringify(config['email.address'])}, expected ${wantAddress}`);
    }
    const smtp = config['email.smtp'];
    if (!smtp || typeof smtp !== 'object' || Array.isArray(smtp)) problems.push('email.smtp missing');
    else {
      const s = smtp as Record<string, unknown>;
      const want: Record<string, unknown> = {
        host: stack.relay.host,
        port: stack.relay.port,
        username: SMTP_USERNAME,
        authentication: 'PLAIN',
      };
      for (const [k, v] of Object.entries(want)) {
        if (s[k] !== v) problems.push(`email.smtp.${k} is ${JSON.stringify(s[k])}, expected ${JSON.stringify(v)}`);
      }
      const extraKeys = Object.keys(s).filter((k) => !(k in want) && k !== 'password');
      if (extraKeys.length) problems.push(`email.smtp has extra keys ${extraKeys.join(', ')}`);
      if (!liveKey || s.password !== liveKey.key) problems.push('email.smtp.password is not the live send key');
    }
  }
  return { name, converged: problems.length === 0, problems, orphans, duplicates, lostEdits };
}

/** Checks every instance and sums the figures. */
export function checkInvariants(
  stack: EmulatorStack,
  instances: readonly InstanceRef[],
  opts: InvariantOptions = {},
): InvariantFigures {
  const findings = instances.map((i) => checkOne(stack, i, opts));
  return {
    total: findings.length,
    converged: findings.filter((f) => f.converged).length,
    orphans: findings.reduce((n, f) => n + f.orphans, 0),
    duplicates: findings.reduce((n, f) => n + f.duplicates, 0),
    lostEdits: findings.reduce((n, f) => n + f.lostEdits, 0),
    findings,
  };
}
