/**
 * The typed client of managed SMTP: what `smtpctl` and other tooling use to enable, disable and inspect instances.
 */
import { randomUUID } from 'node:crypto';
import {
  Client,
  ScheduleAlreadyRunning,
  ScheduleOverlapPolicy,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
} from '@temporalio/client';
import { workflowIdFor, instanceFromWorkflowId } from '../lib/instance';
import { ENTITY_QUERY, INSTANCE_KEY, STATE_KEY } from '../lib/search-attributes';
import { STUCK_AFTER_ATTEMPTS } from '../lib/types';
import type { CheckResult, EnableSpec, InstanceState, InstanceStatus } from '../lib/types';
import {
  checkUpdate,
  disableSignal,
  enableSignal,
  ipPoolUpdate,
  requestQuery,
  rotateKeyUpdate,
  sendingDomainUpdate,
  statusQuery,
} from '../contract/messages';
import { parseRequest, requestSchemas } from '../contract/requests';
import type { RequestOutcome } from '../contract/types';
import {
  domainStatusQuery,
  domainWorkflowIdFor,
  fleetCheckWorkflow,
  managedSmtpWorkflow,
  type FleetCheckInput,
  type FleetCheckReport,
  verifySendingDomainSignal,
  type DomainWorkflowStatus,
} from '../workflows';

/** The default task queue (MANAGED_SMTP_TASK_QUEUE). */
export const DEFAULT_TASK_QUEUE = 'managed-smtp';

/** There is no workflow for the instance. */
export class NoWorkflowError extends Error {
  constructor(readonly instance: string) {
    super(`no managed SMTP workflow for instance ${instance}`);
    this.name = 'NoWorkflowError';
  }
}

/** The workflow refused a request (an update validator said no); the message says why. */
export class RequestRejectedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RequestRejectedError';
  }
}

/** An instance whose provisioning keeps retrying a step. */
export interface StuckInfo {
  /** The activity being retried. */
  activity: string;
  attempts: number;
  lastFailure: string | null;
  /** When the step started retrying (first attempt scheduled). */
  since: string | null;
}

/** A status with, for `list --stuck`, what it is stuck on. */
export type ListedStatus = InstanceStatus & { stuck?: StuckInfo };

export { STUCK_AFTER_ATTEMPTS } from '../lib/types';

/** Waiting for a request ran out of time. */
export class WaitTimeoutError extends Error {
  constructor(
    readonly instance: string,
    readonly lastStatus: InstanceStatus | null,
    seconds: number,
  ) {
    const where = lastStatus
      ? `; it is ${lastStatus.state}${lastStatus.step ? ` at step ${lastStatus.step}` : ''}`
      : '';
    super(`timed out after ${seconds}s waiting for ${instance}${where}`);
    this.name = 'WaitTimeoutError';
  }
}

/** Options of a sending-domain addition. */
export interface AddSendingDomainOptions {
  /** Seconds between verification checks (default 6 h). */
  recheckSeconds?: number;
  /** Seconds to wait for verification before giving up and deleting the domain (default 13 days). */
  maxWaitSeconds?: number;
}

/** The request did not parse against the contract's schema; nothing was sent. */
export class InvalidRequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidRequestError';
  }
}

/** The instance's workflow run closed (terminated, reset, failed) before the request finished. */
export class RunEndedError extends Error {
  constructor(
    readonly instance: string,
    readonly requestId: string,
    readonly runStatus: string,
  ) {
    super(`the workflow of ${instance} ended (${runStatus}) before request ${requestId} finished`);
    this.name = 'RunEndedError';
  }
}

/** A request that was sent. */
export interface RequestHandle {
  instance: string;
  requestId: string;
  workflowId: string;
}

/** Options for waiting. */
export interface WaitOptions {
  timeoutMs?: number;
  pollMs?: number;
  /** Called when the state or step changes. */
  onProgress?: (status: InstanceStatus) => void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Id of the fleet check schedule. */
export const FLEET_CHECK_SCHEDULE_ID = 'managed-smtp-fleet-check';

/** Client of the managed SMTP workflows. */
export class ManagedSmtpClient {
  constructor(
    readonly temporal: Client,
    readonly taskQueue: string = process.env.MANAGED_SMTP_TASK_QUEUE || DEFAULT_TASK_QUEUE,
  ) {}

  /** Starts the instance's workflow if needed and asks it to (re-)provision. */
  async enable(instance: string, spec: EnableSpec): Promise<RequestHandle> {
    const requestId = randomUUID();
    const workflowId = workflowIdFor(instance);
    // The workflow parses the same schema; refusing here says so at once instead of in the status.
    const parsed = parseRequest(requestSchemas().enableRequest, { requestId, spec });
    if (!parsed.ok) throw new InvalidRequestError(`invalid enable request: ${parsed.problem}`);
    await this.temporal.workflow.signalWithStart(managedSmtpWorkflow, {
      workflowId,
      taskQueue: this.taskQueue,
      args: [{ instance }],
      signal: enableSignal,
      signalArgs: [{ requestId, spec }],
      typedSearchAttributes: [{ key: INSTANCE_KEY, value: instance }],
      staticSummary: `Managed SMTP for ${instance}`,
      staticDetails: `SparkPost subaccount, send key in ${spec.gcpProject}, site configuration of ${spec.sourcegraphUrl}`,
    });
    return { instance, requestId, workflowId };
  }

  /** Asks the instance's workflow to undo provisioning. */
  async disable(instance: string, reason?: string): Promise<RequestHandle> {
    const requestId = randomUUID();
    const workflowId = workflowIdFor(instance);
    const parsed = parseRequest(requestSchemas().disableRequest, { requestId, reason });
    if (!parsed.ok) throw new InvalidRequestError(`invalid disable request: ${parsed.problem}`);
    try {
      await this.temporal.workflow.getHandle(workflowId).signal(disableSignal, { requestId, reason });
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) throw new NoWorkflowError(instance);
      throw err;
    }
    return { instance, requestId, workflowId };
  }

  /** Runs the fleet check once and returns its report (summary plus the problems). */
  async checkFleet(input: FleetCheckInput): Promise<FleetCheckReport> {
    return this.temporal.workflow.execute(fleetCheckWorkflow, {
      workflowId: `${FLEET_CHECK_SCHEDULE_ID}/${randomUUID()}`,
      taskQueue: this.taskQueue,
      args: [input],
      // Bounded: without a worker on the task queue this would otherwise wait forever.
      workflowExecutionTimeout: '30m',
    });
  }

  /** Creates or updates the fleet check schedule (`every` like 1h); returns what it did. */
  async scheduleFleetCheck(input: FleetCheckInput, every: string): Promise<'created' | 'updated'> {
    const action = {
      type: 'startWorkflow' as const,
      workflowType: fleetCheckWorkflow,
      args: [input] as [FleetCheckInput],
      taskQueue: this.taskQueue,
      workflowId: `${FLEET_CHECK_SCHEDULE_ID}/run`,
    };
    const spec = { intervals: [{ every }] };
    const policies = { overlap: ScheduleOverlapPolicy.SKIP };
    try {
      await this.temporal.schedule.create({ scheduleId: FLEET_CHECK_SCHEDULE_ID, spec, action, policies });
      return 'created';
    } catch (err) {
      if (!(err instanceof ScheduleAlreadyRunning)) throw err;
      await this.temporal.schedule
        .getHandle(FLEET_CHECK_SCHEDULE_ID)
        .update((prev) => ({ ...prev, spec, action, policies: { ...prev.policies, ...policies } }));
      return 'updated';
    }
  }

  /** The instance's status. Throws NoWorkflowError when there is no workflow. */
  async status(instance: string): Promise<InstanceStatus> {
    try {
      return await this.temporal.workflow.getHandle(workflowIdFor(instance)).query(statusQuery);
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) throw new NoWorkflowError(instance);
      throw err;
    }
  }

  private async update<R>(instance: string, run: () => Promise<R>): Promise<R> {
    try {
      return await run();
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) throw new NoWorkflowError(instance);
      if (err instanceof WorkflowUpdateFailedError) {
        throw new RequestRejectedError(err.cause instanceof Error ? err.cause.message : err.message);
      }
      throw err;
    }
  }

  /** Runs the invariant check in the instance's workflow; `enforce` queues a repair for drift it can fix. */
  async check(instance: string, enforce: boolean): Promise<CheckResult> {
    const handle = this.temporal.workflow.getHandle(workflowIdFor(instance));
    return this.update(instance, () =>
      handle.executeUpdate(checkUpdate, { args: [{ requestId: randomUUID(), enforce }] }),
    );
  }

  /** Queues a send-key rotation. */
  async rotateKey(instance: string): Promise<RequestHandle> {
    const workflowId = workflowIdFor(instance);
    const handle = this.temporal.workflow.getHandle(workflowId);
    const { requestId } = await this.update(instance, () =>
      handle.executeUpdate(rotateKeyUpdate, { args: [{ requestId: randomUUID() }] }),
    );
    return { instance, requestId, workflowId };
  }

  /**
   * Adds a custom sending domain. The instance's workflow starts `managed-smtp-domain/<instance>`, which creates the
   * domain and waits for its DNS verification; the returned request finishes when the sender switched (or it failed).
   */
  async addSendingDomain(
    instance: string,
    domain: string,
    opts: AddSendingDomainOptions = {},
  ): Promise<RequestHandle & { domainWorkflowId: string }> {
    const workflowId = workflowIdFor(instance);
    const handle = this.temporal.workflow.getHandle(workflowId);
    const r = await this.update(instance, () =>
      handle.executeUpdate(sendingDomainUpdate, {
        args: [{ requestId: randomUUID(), action: 'add', domain, ...opts }],
      }),
    );
    return { instance, requestId: r.requestId, workflowId, domainWorkflowId: r.workflowId ?? '' };
  }

  /**
   * Removes the custom sending domain: a verified one after the sender went back to the shared domain; one still
   * waiting for verification by cancelling its workflow (which deletes it). Wait on the returned request.
   */
  async removeSendingDomain(
    instance: string,
  ): Promise<RequestHandle & { accepted: 'removal-queued' | 'verification-cancelled' | 'verification-started' }> {
    const workflowId = workflowIdFor(instance);
    const handle = this.temporal.workflow.getHandle(workflowId);
    const r = await this.update(instance, () =>
      handle.executeUpdate(sendingDomainUpdate, { args: [{ requestId: randomUUID(), action: 'remove' }] }),
    );
    return { instance, requestId: r.requestId, workflowId, accepted: r.accepted };
  }

  /** Asks the waiting domain workflow to check verification now. */
  async verifySendingDomain(instance: string): Promise<{ workflowId: string }> {
    const workflowId = domainWorkflowIdFor(instance);
    try {
      await this.temporal.workflow.getHandle(workflowId).signal(verifySendingDomainSignal);
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) {
        throw new RequestRejectedError(`no sending domain of ${instance} is waiting for verification`);
      }
      throw err;
    }
    return { workflowId };
  }

  /** What the domain workflow is doing (checks made, next check), or null when none is running. */
  async domainWorkflowStatus(instance: string): Promise<DomainWorkflowStatus | null> {
    const handle = this.temporal.workflow.getHandle(domainWorkflowIdFor(instance));
    try {
      const d = await handle.describe();
      if (d.status.name !== 'RUNNING') return null;
      return await handle.query(domainStatusQuery);
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return null;
      throw err;
    }
  }

  /**
   * Waits until the domain of request `handle` has its DNS records (or is verified already), or the request ended.
   * Returns the status then.
   */
  async waitForDnsRecords(handle: RequestHandle, opts: WaitOptions = {}): Promise<InstanceStatus> {
    const timeoutMs = opts.timeoutMs ?? 120_000;
    const deadline = Date.now() + timeoutMs;
    let last: InstanceStatus | null = null;
    while (Date.now() < deadline) {
      last = await this.status(handle.instance);
      const d = last.sendingDomain;
      const mine = d && d.requestId === handle.requestId ? d : null;
      if (mine && (mine.dnsRecords.length > 0 || mine.verifiedAt)) return last;
      if (last.requests.find((r) => r.id === handle.requestId)?.finishedAt) return last;
      await sleep(Math.min(opts.pollMs ?? 300, Math.max(0, deadline - Date.now())));
    }
    throw new WaitTimeoutError(handle.instance, last, Math.round(timeoutMs / 1000));
  }

  /** Queues assigning IP pool `pool` to the instance's subaccount (creating the pool when `create`). */
  async assignIpPool(instance: string, pool: string, create: boolean): Promise<RequestHandle> {
    return this.ipPool(instance, pool, create);
  }

  /** Queues removing the subaccount's dedicated IP pool. */
  async unassignIpPool(instance: string): Promise<RequestHandle> {
    return this.ipPool(instance, null, false);
  }

  private async ipPool(instance: string, pool: string | null, create: boolean): Promise<RequestHandle> {
    const workflowId = workflowIdFor(instance);
    const handle = this.temporal.workflow.getHandle(workflowId);
    const { requestId } = await this.update(instance, () =>
      handle.executeUpdate(ipPoolUpdate, { args: [{ requestId: randomUUID(), pool, create }] }),
    );
    return { instance, requestId, workflowId };
  }

  /** What the instance's workflow is retrying, when it has retried a step STUCK_AFTER_ATTEMPTS times or more. */
  async stuckInfo(instance: string): Promise<StuckInfo | null> {
    const d = await this.temporal.workflow.getHandle(workflowIdFor(instance)).describe();
    for (const a of d.raw.pendingActivities ?? []) {
      const attempts = a.attempt ?? 0;
      if (attempts < STUCK_AFTER_ATTEMPTS) continue;
      const since = a.lastStartedTime?.seconds
        ? new Date(Number(a.lastStartedTime.seconds) * 1000).toISOString()
        : null;
      return {
        activity: a.activityType?.name ?? 'unknown',
        attempts,
        lastFailure: a.lastFailure?.message ?? null,
        since,
      };
    }
    return null;
  }

  /** Waits until the workflow has finished the request, and returns the status it left. */
  async waitFor(handle: RequestHandle, opts: WaitOptions = {}): Promise<InstanceStatus> {
    return (await this.waitForRequest(handle, opts)).status;
  }

  /**
   * Waits until the request is finished (done, rejected, superseded by a later request, dropped) and returns the
   * status with the request's outcome. A run that closes first ends the wait with RunEndedError; never a hang.
   */
  async waitForRequest(
    handle: RequestHandle,
    opts: WaitOptions = {},
  ): Promise<{ status: InstanceStatus; outcome: RequestOutcome | null }> {
    const timeoutMs = opts.timeoutMs ?? 15 * 60_000;
    const pollMs = opts.pollMs ?? 500;
    const deadline = Date.now() + timeoutMs;
    const wf = this.temporal.workflow.getHandle(workflowIdFor(handle.instance));
    let last: InstanceStatus | null = null;
    let lastSeen = '';
    for (let polls = 0; Date.now() < deadline && polls < 1_000_000; polls++) {
      let outcome: RequestOutcome | null = null;
      try {
        // The outcome first: a status read after it is at least as new as the request's end.
        outcome = await wf.query(requestQuery, handle.requestId);
        last = await this.status(handle.instance);
      } catch (err) {
        if (err instanceof NoWorkflowError) throw err;
        // A query can fail while no worker is polling; keep waiting until the deadline.
      }
      if (last) {
        const seen = `${last.state}/${last.step ?? ''}`;
        if (seen !== lastSeen) {
          lastSeen = seen;
          opts.onProgress?.(last);
        }
        const rec = last.requests.find((r) => r.id === handle.requestId);
        if (outcome && !outcome.pending) return { status: last, outcome };
        if (!outcome && rec?.finishedAt) {
          return { status: last, outcome: { id: rec.id, kind: rec.kind, pending: false, outcome: rec.outcome } };
        }
      }
      // Every few polls: a run that closed (terminated, reset) will never finish the request.
      if (polls % 4 === 3) {
        const run = await wf.describe().catch(() => null);
        if (run && run.status.name !== 'RUNNING') {
          throw new RunEndedError(handle.instance, handle.requestId, run.status.name);
        }
      }
      await sleep(Math.min(pollMs, Math.max(0, deadline - Date.now())));
    }
    throw new WaitTimeoutError(handle.instance, last, Math.round(timeoutMs / 1000));
  }

  /** How a request ended, or that it is still pending; null when the entity never saw it. */
  async request(instance: string, requestId: string): Promise<RequestOutcome | null> {
    try {
      return await this.temporal.workflow.getHandle(workflowIdFor(instance)).query(requestQuery, requestId);
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) throw new NoWorkflowError(instance);
      throw err;
    }
  }

  /** The outcome recorded for a request (its final state, or why it was rejected). */
  static outcomeOf(status: InstanceStatus, requestId: string): string | undefined {
    return status.requests.find((r) => r.id === requestId)?.outcome;
  }

  /** Instances with running workflows, optionally in one state or only the stuck ones, with their statuses. */
  async list(filter: { state?: InstanceState; stuck?: boolean } = {}): Promise<ListedStatus[]> {
    let query = ENTITY_QUERY;
    if (filter.state) query += ` AND ${STATE_KEY.name} = '${filter.state}'`;
    const instances: string[] = [];
    for await (const wf of this.temporal.workflow.list({ query })) {
      const name = instanceFromWorkflowId(wf.workflowId);
      if (name) instances.push(name);
      if (instances.length >= 10_000) break;
    }
    instances.sort();
    const out: InstanceStatus[] = [];
    // Bounded concurrency: a fleet listing must not flood the frontend with queries.
    for (let i = 0; i < instances.length; i += 20) {
      const batch = await Promise.allSettled(instances.slice(i, i + 20).map((n) => this.status(n)));
      for (const r of batch) if (r.status === 'fulfilled') out.push(r.value);
    }
    const listed: ListedStatus[] = filter.state ? out.filter((s) => s.state === filter.state) : out;
    if (!filter.stuck) return listed;
    const stuck: ListedStatus[] = [];
    for (const s of listed) {
      if (s.step === null) continue; // idle instances are not retrying anything
      const info = await this.stuckInfo(s.instance).catch(() => null);
      if (info) stuck.push({ ...s, stuck: info });
    }
    return stuck;
  }

  /**
   * One page of `list`, using the visibility API's own paging: up to `pageSize` instance workflows from where
   * `pageToken` (from the previous page, null for the first) points, with their statuses (sorted by instance within the
   * page), and the token of the next page (null on the last). Filters apply within the page, so a page may be short.
   */
  async listPage(
    filter: { state?: InstanceState; stuck?: boolean },
    page: { pageSize: number; pageToken: string | null },
  ): Promise<{ statuses: ListedStatus[]; nextPageToken: string | null; unreadable: string[] }> {
    let query = ENTITY_QUERY;
    if (filter.state) query += ` AND ${STATE_KEY.name} = '${filter.state}'`;
    const res = await this.temporal.workflowService.listWorkflowExecutions({
      namespace: this.temporal.options.namespace,
      query,
      pageSize: page.pageSize,
      nextPageToken: page.pageToken ? Buffer.from(page.pageToken, 'base64url') : undefined,
    });
    const instances: string[] = [];
    for (const e of res.executions ?? []) {
      const name = e.execution?.workflowId ? instanceFromWorkflowId(e.execution.workflowId) : null;
      if (name) instances.push(name);
    }
    instances.sort();
    const statuses: InstanceStatus[] = [];
    // Bounded concurrency, as in list(): a page must not flood the frontend with queries. A query that failed is
    // asked again (twice, a read); a workflow that ended meanwhile is left out; the rest is reported, never dropped.
    let pending = instances;
    for (let attempt = 0; attempt < 3 && pending.length > 0; attempt++) {
      const failed: string[] = [];
      for (let i = 0; i < pending.length; i += 20) {
        const names = pending.slice(i, i + 20);
        const batch = await Promise.allSettled(names.map((n) => this.status(n)));
        batch.forEach((r, k) => {
          if (r.status === 'fulfilled') statuses.push(r.value);
          else if (!(r.reason instanceof NoWorkflowError)) failed.push(names[k]);
        });
      }
      pending = failed;
    }
    statuses.sort((a, b) => a.instance.localeCompare(b.instance));
    let listed: ListedStatus[] = filter.state ? statuses.filter((s) => s.state === filter.state) : statuses;
    if (filter.stuck) {
      const stuck: ListedStatus[] = [];
      for (const s of listed) {
        if (s.step === null) continue;
        const info = await this.stuckInfo(s.instance).catch(() => null);
        if (info) stuck.push({ ...s, stuck: info });
      }
      listed = stuck;
    }
    const token = res.nextPageToken && res.nextPageToken.length > 0 ? Buffer.from(res.nextPageToken) : null;
    return { statuses: listed, nextPageToken: token ? token.toString('base64url') : null, unreadable: pending };
  }
}
