/**
 * `pgwarden switchover --config FILE [--cluster C] --to NODE [--yes] [--dry-run] [--json]`
 * (issue 6 item 3; docs/failover.md "Switchover"). The work is in src/cluster/switchover.ts; this
 * file reads the command line, prints the plan, asks for the target's name (the action is
 * dangerous: it stops the primary) unless --yes, prints progress lines with the elapsed time on
 * stderr, and the summary with the write stall.
 *
 * Exit 0: switched over (the summary lists anything after the promotion left to finish by hand,
 * and then the exit is 1); 1: refused (nothing changed), not confirmed, or failed (the message says
 * which node is the primary); 2: bad usage. SIGINT, SIGTERM and SIGHUP stop the current step:
 * before the promotion the old primary is restarted and PgBouncer resumed.
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/load.js';
import type { ClusterConfig } from '../config/types.js';
import { UserError, messageOf } from '../errors.js';
import { toJsonValue } from '../format/json.js';
import { probeIds } from '../probes/index.js';
import { planSwitchover, renderPlan, renderResult, runSwitchover, type SwitchoverPlan, type SwitchoverResult } from '../cluster/switchover.js';
import { describeError, failure } from './command-output.js';
import { UsageError } from './key-options.js';
import type { CommandOutput } from './show.js';
import { clusterOf, interruptSignals, readLine } from './cluster-command.js';

const usage = 'pgwarden switchover --config FILE [--cluster C] --to NODE [--yes] [--dry-run] [--json]';

export interface SwitchoverCommandOptions {
  /** Progress lines (stderr). */
  readonly progress?: (line: string) => void;
  /** Text for stdout that must appear at once (the plan, before the question). */
  readonly print?: (text: string) => void;
  /** Where the confirmation is read from (default stdin). */
  readonly input?: NodeJS.ReadableStream;
}

/** The plan as JSON (--json --dry-run). */
function planJson(plan: SwitchoverPlan): unknown {
  return toJsonValue({
    cluster: plan.cluster, primary: plan.primary.name, candidate: plan.candidate.name, followers: plan.followers.map((node) => node.name),
    lagBytes: plan.lagBytes, timeline: plan.timeline, pgbouncerEntries: plan.pgbouncer?.entries ?? null, rewindable: plan.rewindable,
    warnings: plan.warnings, steps: plan.steps,
  });
}

/** Runs `pgwarden switchover` with the arguments after "switchover". */
export async function switchoverCommand(args: readonly string[], options: SwitchoverCommandOptions = {}): Promise<CommandOutput> {
  let values;
  let cluster: ClusterConfig;
  try {
    try {
      values = parseArgs({
        args: [...args], allowPositionals: false, strict: true,
        options: {
          config: { type: 'string' }, cluster: { type: 'string' }, to: { type: 'string' },
          yes: { type: 'boolean', default: false }, 'dry-run': { type: 'boolean', default: false }, json: { type: 'boolean', default: false },
        },
      }).values;
    } catch (error) {
      throw new UsageError(messageOf(error));
    }
    if (values.to === undefined || values.to === '') throw new UsageError('switchover needs --to NODE (the standby to promote)');
    if (values.json && !values.yes && !values['dry-run']) throw new UsageError('--json needs --yes or --dry-run (there is no one to answer the question)');
    const config = loadConfig({ configFile: values.config, dsn: undefined, knownProbes: probeIds });
    cluster = clusterOf(config, values.cluster);
  } catch (error) {
    if (error instanceof UsageError) return failure(`pgwarden: switchover: ${error.message}\n  usage: ${usage}`, 2);
    return failure(`pgwarden: switchover: ${describeError(error)}`, 2);
  }

  const started = Date.now();
  const stamp = (line: string): string => `[${((Date.now() - started) / 1000).toFixed(2).padStart(6)} s] ${line}`;
  const progress = (line: string): void => options.progress?.(stamp(line));

  let plan: SwitchoverPlan;
  try {
    progress(`checking cluster ${cluster.name} before promoting ${values.to}`);
    plan = await planSwitchover({ cluster, to: values.to });
  } catch (error) {
    return failure(`pgwarden: ${describeError(error)}`, error instanceof UserError ? 1 : 70);
  }
  const planText = renderPlan(plan);
  if (values['dry-run']) {
    const stdout = values.json ? `${JSON.stringify({ plan: planJson(plan), dryRun: true }, null, 2)}\n` : `${planText}Dry run: every check passed; nothing was changed.\n`;
    return { stdout, stderr: '', exitCode: 0 };
  }
  let printed = '';
  if (!values.json) {
    if (options.print === undefined) printed = planText;
    else options.print(planText);
  }
  if (!values.yes) {
    const question = `This stops ${plan.primary.name} and promotes ${plan.candidate.name}. Type ${plan.candidate.name} to go ahead: `;
    if (options.print === undefined) printed += question;
    else options.print(question);
    const answer = await readLine(options.input ?? process.stdin);
    if (answer?.trim() !== plan.candidate.name) {
      return { stdout: printed, stderr: `pgwarden: switchover: not confirmed (the answer was not "${plan.candidate.name}"); nothing was changed\n`, exitCode: 1 };
    }
  }

  const interrupt = new AbortController();
  const onSignal = (signal: NodeJS.Signals): void => {
    if (!interrupt.signal.aborted) {
      progress(`${signal}: stopping the current step; before the promotion the old primary is restarted and PgBouncer resumed`);
      interrupt.abort(signal);
    } else {
      progress(`${signal} ignored: putting things back in order`);
    }
  };
  for (const signal of interruptSignals) process.on(signal, onSignal);
  let result: SwitchoverResult;
  try {
    result = await runSwitchover(plan, { progress, signal: interrupt.signal });
  } catch (error) {
    return { stdout: printed, stderr: failure(`pgwarden: ${describeError(error)}`, 1).stderr, exitCode: error instanceof UserError ? 1 : 70 };
  } finally {
    for (const signal of interruptSignals) process.off(signal, onSignal);
  }
  const exitCode = result.leftOver.length === 0 ? 0 : 1;
  if (values.json) return { stdout: `${JSON.stringify(toJsonValue({ plan: planJson(plan), result }), null, 2)}\n`, stderr: '', exitCode };
  return { stdout: `${printed}${renderResult(result)}`, stderr: '', exitCode };
}
