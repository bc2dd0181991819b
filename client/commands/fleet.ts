/**
 * `smtpctl check-fleet`: the fleet-wide invariant check, once (prints the report) or as the Temporal Schedule
 * `managed-smtp-fleet-check` (`--schedule 1h`), created or updated in place.
 */
import { Option, type Command } from 'commander';
import type { FleetCheckInput, FleetCheckReport } from '../../workflows/fleet';
import { FLEET_CHECK_SCHEDULE_ID } from '../index';
import type { CommandModule, GlobalOpts } from '../smtpctl';
import { UsageError } from '../validation';

export { FLEET_CHECK_SCHEDULE_ID };

function positiveInt(argument: string, value: string, max: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > max)
    throw new UsageError(argument, `must be a whole number from 1 to ${max}`);
  return n;
}

function interval(value: string): string {
  if (!/^\d+(m|h|d)$/.test(value) || Number.parseInt(value, 10) === 0) {
    throw new UsageError('--schedule', 'must be an interval like 30m, 1h or 1d');
  }
  return value;
}

function formatReport(r: FleetCheckReport): string {
  const lines = [
    `checked ${r.checked} of ${r.instances} instances: ${r.healthy} healthy, ${r.driftedCount} drifted, ${r.deferred} deferred (budget), ${r.skipped} skipped (busy), ${r.errorCount} errors`,
  ];
  for (const d of r.drifted) {
    lines.push(
      `  ${d.instance}: ${d.problems.map((p) => p.message).join('; ')}${d.repairRequested ? ' → repair requested' : ''}`,
    );
  }
  for (const e of r.errors) lines.push(`  ${e.instance}: check failed: ${e.error}`);
  return lines.join('\n') + '\n';
}

/** Registers `check-fleet`. */
export const registerFleetCommands: CommandModule = (program: Command, ctx) => {
  program
    .command('check-fleet')
    .description('check every instance (bounded concurrency and SparkPost budget); --enforce repairs drift')
    .option('--enforce', 'ask drifted instances to repair themselves')
    .addOption(new Option('--concurrency <n>', 'instances checked at once').default('5'))
    .addOption(new Option('--budget <requests>', 'SparkPost requests one run may make').default('600'))
    .option('--schedule <every>', 'install or update the schedule instead of running once (e.g. 1h)')
    .action(async (o: { enforce?: boolean; concurrency: string; budget: string; schedule?: string }, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOpts;
      const input: FleetCheckInput = {
        enforce: o.enforce === true,
        concurrency: positiveInt('--concurrency', o.concurrency, 50),
        sparkpostBudget: positiveInt('--budget', o.budget, 1_000_000),
      };
      const every = o.schedule === undefined ? undefined : interval(o.schedule);
      const c = await ctx.getClient();
      if (every) {
        const verb = await c.scheduleFleetCheck(input, every);
        ctx.emit(
          opts,
          { scheduleId: FLEET_CHECK_SCHEDULE_ID, every, ...input, result: verb },
          `schedule ${FLEET_CHECK_SCHEDULE_ID} ${verb}: every ${every}\n`,
        );
        return;
      }
      const report = await c.checkFleet(input);
      ctx.emit(opts, report, formatReport(report));
    });
};
