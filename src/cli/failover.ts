/**
 * `pgwarden failover` and `pgwarden rejoin` (issue 6 item 4; docs/failover.md "Failover" and
 * "Fencing and rejoining an old primary"). The work is in src/cluster/failover.ts and
 * src/cluster/fence.ts; this file reads the command line, prints the plan, asks for the node's
 * name unless --yes, prints progress lines with the elapsed time on stderr, and the summary.
 *
 *   failover --config FILE [--cluster C] [--to NODE] [--yes] [--dry-run]
 *            The primary is down: promote the most advanced standby within the lag limit (or
 *            NODE), repoint PgBouncer and the other standbys. The summary gives the time from the
 *            start to the new primary accepting writes.
 *   rejoin   --config FILE [--cluster C] NODE [--yes] [--dry-run]
 *            NODE, an old primary: fenced when it is writable (after checking that another
 *            primary runs on a newer timeline), then rewound and started as a standby of that
 *            primary (a remote node: the commands to run on its host).
 *
 * Exit 0: done; 1: refused (nothing changed), not confirmed, failed (the message says which node
 * is the primary and what is left), or done except for steps left to do by hand; 2: bad usage.
 * SIGINT, SIGTERM and SIGHUP stop a failover before the promotion; after it, the remaining steps
 * run to their end.
 */
import { parseArgs } from 'node:util';
import { planFailover, renderFailoverPlan, renderFailoverResult, runFailover, surveyNodes, type FailoverPlan, type FailoverResult, deposedNodes } from '../cluster/failover.js';
import { explainFence, fenceNode, rejoinNode, type FenceResult, type RejoinResult } from '../cluster/fence.js';
import { loadConfig } from '../config/load.js';
import type { ClusterConfig, Config } from '../config/types.js';
import { UserError, messageOf } from '../errors.js';
import { probeIds } from '../probes/index.js';
import { describeError, failure } from './command-output.js';
import { UsageError } from './key-options.js';
import type { CommandOutput } from './show.js';
import { clusterOf, interruptSignals, readLine } from './cluster-command.js';

const failoverUsage = 'pgwarden failover --config FILE [--cluster C] [--to NODE] [--yes] [--dry-run]';
const rejoinUsage = 'pgwarden rejoin --config FILE [--cluster C] NODE [--yes] [--dry-run]';

export interface FailoverCommandOptions {
  /** Progress lines (stderr). */
  readonly progress?: (line: string) => void;
  /** Text for stdout that must appear at once (the plan, before the question). */
  readonly print?: (text: string) => void;
  /** Where the confirmation is read from (default stdin). */
  readonly input?: NodeJS.ReadableStream;
}

interface Parsed {
  readonly config: Config;
  readonly cluster: ClusterConfig;
  readonly to: string | undefined;
  readonly node: string | undefined;
  readonly yes: boolean;
  readonly dryRun: boolean;
}

function parse(command: 'failover' | 'rejoin', args: readonly string[]): Parsed {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...args], allowPositionals: command === 'rejoin', strict: true,
      options: {
        config: { type: 'string' }, cluster: { type: 'string' },
        ...(command === 'failover' ? { to: { type: 'string' } } : {}),
        yes: { type: 'boolean', default: false }, 'dry-run': { type: 'boolean', default: false },
      },
    });
  } catch (error) {
    throw new UsageError(messageOf(error));
  }
  const values = parsed.values as { config?: string; cluster?: string; to?: string; yes: boolean; 'dry-run': boolean };
  if (values.to === '') throw new UsageError('--to needs a node name');
  const [node, ...extra] = parsed.positionals;
  if (command === 'rejoin' && (node === undefined || node === '')) throw new UsageError('rejoin needs the NODE to rejoin');
  if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0] ?? ''}"`);
  const config = loadConfig({ configFile: values.config, dsn: undefined, knownProbes: probeIds });
  const cluster = clusterOf(config, values.cluster);
  for (const name of [values.to, node]) {
    if (name !== undefined && !cluster.nodes.some((n) => n.name === name)) {
      throw new UserError(`cluster ${cluster.name} has no node named "${name}"`, `use one of ${cluster.nodes.map((n) => n.name).join(', ')}`);
    }
  }
  return { config, cluster, to: values.to, node, yes: values.yes, dryRun: values['dry-run'] };
}

/** Prints `text` at once when a printer is there, else keeps it for stdout. */
class Output {
  private kept = '';

  constructor(private readonly print: ((text: string) => void) | undefined) {}

  write(text: string): void {
    if (this.print === undefined) this.kept += text;
    else this.print(text);
  }

  stdout(tail = ''): string {
    return `${this.kept}${tail}`;
  }
}

async function confirmed(out: Output, question: string, expected: string, input: NodeJS.ReadableStream): Promise<boolean> {
  out.write(question);
  const answer = await readLine(input);
  return answer?.trim() === expected;
}

function stamper(options: FailoverCommandOptions): { progress: (line: string) => void; started: number } {
  const started = Date.now();
  return { started, progress: (line) => options.progress?.(`[${((Date.now() - started) / 1000).toFixed(2).padStart(6)} s] ${line}`) };
}

/** Runs `pgwarden failover` with the arguments after "failover". */
export async function failoverCommand(args: readonly string[], options: FailoverCommandOptions = {}): Promise<CommandOutput> {
  let parsed: Parsed;
  try {
    parsed = parse('failover', args);
  } catch (error) {
    if (error instanceof UsageError) return failure(`pgwarden: failover: ${error.message}\n  usage: ${failoverUsage}`, 2);
    return failure(`pgwarden: failover: ${describeError(error)}`, 2);
  }
  const { cluster } = parsed;
  const { progress, started } = stamper(options);
  const stateDir = parsed.config.alerting.stateDir;
  let plan: FailoverPlan;
  try {
    progress(`looking at every node of cluster ${cluster.name}`);
    plan = await planFailover({ cluster, to: parsed.to, reason: 'manual', stateDir });
  } catch (error) {
    return failure(`pgwarden: failover: ${describeError(error)}`, error instanceof UserError ? 1 : 70);
  }
  const planText = renderFailoverPlan(plan);
  if (parsed.dryRun) return { stdout: `${planText}Dry run: every check passed; nothing was changed.\n`, stderr: '', exitCode: 0 };
  const out = new Output(options.print);
  out.write(planText);
  if (!parsed.yes) {
    const question = `This promotes ${plan.candidate.name} while ${plan.oldPrimary.name} is down. Type ${plan.candidate.name} to go ahead: `;
    if (!(await confirmed(out, question, plan.candidate.name, options.input ?? process.stdin))) {
      return { stdout: out.stdout(), stderr: `pgwarden: failover: not confirmed (the answer was not "${plan.candidate.name}"); nothing was changed\n`, exitCode: 1 };
    }
  }
  const interrupt = new AbortController();
  const onSignal = (signal: NodeJS.Signals): void => {
    if (!interrupt.signal.aborted) {
      progress(`${signal}: stopping before the promotion (PgBouncer is resumed); once promoted, the remaining steps run to their end`);
      interrupt.abort(signal);
    } else {
      progress(`${signal} ignored: finishing the failover`);
    }
  };
  for (const signal of interruptSignals) process.on(signal, onSignal);
  let result: FailoverResult;
  try {
    result = await runFailover(plan, { progress, signal: interrupt.signal, startedAt: started });
  } catch (error) {
    return { stdout: out.stdout(), stderr: failure(`pgwarden: failover: ${describeError(error)}`, 1).stderr, exitCode: error instanceof UserError ? 1 : 70 };
  } finally {
    for (const signal of interruptSignals) process.off(signal, onSignal);
  }
  const exitCode = result.notFollowed.length === 0 && result.toRejoin.length === 0 ? 0 : 1;
  return { stdout: out.stdout(renderFailoverResult(result)), stderr: '', exitCode };
}

interface RejoinPlan {
  readonly node: string;
  readonly newPrimary: string;
  /** Why the node is fenced first; undefined: it is not writable, no fence. */
  readonly fence: string | undefined;
  readonly local: boolean;
}

/** Which primary NODE rejoins, and whether it must be fenced first; refused (UserError) otherwise. */
async function planRejoin(cluster: ClusterConfig, name: string, stateDir: string): Promise<RejoinPlan> {
  const surveys = await surveyNodes(cluster);
  const node = surveys.find((s) => s.name === name);
  if (node === undefined) throw new UserError(`cluster ${cluster.name} has no node named "${name}"`);
  const writable = surveys.filter((s) => s.reachable && s.inRecovery === false);
  const others = writable.filter((s) => s.name !== name);
  const local = node.node.dataDir !== undefined;
  if (others.length === 0) {
    const why = node.reachable && node.inRecovery === false ? `${name} is the only writable primary: it is never fenced` : `no other node is a writable primary (${surveys.filter((s) => s.name !== name).map((s) => `${s.name}: ${s.reachable ? (s.inRecovery === true ? 'standby' : '?') : 'down'}`).join(', ')})`;
    throw new UserError(`${name} cannot rejoin: ${why}; nothing was changed`, 'run pgwarden failover first if the cluster has no primary');
  }
  if (!(node.reachable && node.inRecovery === false)) {
    if (others.length > 1) throw new UserError(`split brain among ${others.map((s) => s.name).join(', ')}: pgwarden does not know which primary ${name} should follow; nothing was changed`, 'fence the old primary first: pgwarden rejoin NODE for the one on the older timeline');
    return { node: name, newPrimary: (others[0] as { name: string }).name, fence: undefined, local };
  }
  const { decision, reason } = explainFence({ primaries: writable.map((s) => ({ name: s.name, timeline: s.timeline })), deposed: await deposedNodes(cluster, stateDir) });
  if (decision?.node !== name) throw new UserError(`${name} accepts writes and is not the one to fence: ${reason}; nothing was changed`, 'compare the primaries by hand (docs/failover.md "Fencing and rejoining an old primary")');
  return { node: name, newPrimary: decision.keep, fence: reason, local };
}

function renderRejoinPlan(cluster: ClusterConfig, plan: RejoinPlan): string {
  const lines = [`Rejoin ${plan.node} as a standby of ${plan.newPrimary} (cluster ${cluster.name})`];
  let step = 0;
  if (plan.fence !== undefined) {
    lines.push(`  ${plan.fence}`);
    lines.push(plan.local ? `  ${(step += 1)}. fence ${plan.node}: pg_ctl stop -m immediate (it stops taking writes at once)` : `  ${(step += 1)}. soft-fence ${plan.node}: ALTER SYSTEM SET default_transaction_read_only = on; pg_reload_conf(); terminate its client sessions`);
  }
  if (plan.local) {
    lines.push(`  ${(step += 1)}. stop ${plan.node}; refuse unless pg_rewind can work (wal_log_hints or data checksums)`);
    lines.push(`  ${(step += 1)}. pg_rewind ${plan.node} from ${plan.newPrimary} (${plan.node}'s own configuration files are kept)`);
    lines.push(`  ${(step += 1)}. standby.signal, primary_conninfo (no password) and primary_slot_name in postgresql.auto.conf; the slot on ${plan.newPrimary}`);
    lines.push(`  ${(step += 1)}. start ${plan.node}; wait until ${plan.newPrimary} shows it streaming`);
  } else {
    lines.push(`  ${(step += 1)}. ${plan.node} has no dataDir here: the commands to rewind it on its host are printed`);
  }
  return `${lines.join('\n')}\n`;
}

/** Runs `pgwarden rejoin` with the arguments after "rejoin". */
export async function rejoinCommand(args: readonly string[], options: FailoverCommandOptions = {}): Promise<CommandOutput> {
  let parsed: Parsed;
  try {
    parsed = parse('rejoin', args);
  } catch (error) {
    if (error instanceof UsageError) return failure(`pgwarden: rejoin: ${error.message}\n  usage: ${rejoinUsage}`, 2);
    return failure(`pgwarden: rejoin: ${describeError(error)}`, 2);
  }
  const { cluster } = parsed;
  const name = parsed.node ?? '';
  const stateDir = parsed.config.alerting.stateDir;
  const { progress } = stamper(options);
  let plan: RejoinPlan;
  try {
    plan = await planRejoin(cluster, name, stateDir);
  } catch (error) {
    return failure(`pgwarden: rejoin: ${describeError(error)}`, error instanceof UserError ? 1 : 70);
  }
  const planText = renderRejoinPlan(cluster, plan);
  if (parsed.dryRun) return { stdout: `${planText}Dry run: nothing was changed.\n`, stderr: '', exitCode: 0 };
  const out = new Output(options.print);
  out.write(planText);
  if (!parsed.yes) {
    const question = `This ${plan.fence === undefined ? '' : 'stops and '}rewinds ${plan.node}: what it wrote that ${plan.newPrimary} lacks is discarded. Type ${plan.node} to go ahead: `;
    if (!(await confirmed(out, question, plan.node, options.input ?? process.stdin))) {
      return { stdout: out.stdout(), stderr: `pgwarden: rejoin: not confirmed (the answer was not "${plan.node}"); nothing was changed\n`, exitCode: 1 };
    }
  }
  const interrupt = new AbortController();
  const onSignal = (signal: NodeJS.Signals): void => {
    progress(`${signal}: stopping the current step; ${plan.node} is left stopped, never started as a primary`);
    interrupt.abort(signal);
  };
  for (const signal of interruptSignals) process.on(signal, onSignal);
  const lines: string[] = [];
  try {
    if (plan.fence !== undefined) {
      const fenced: FenceResult = await fenceNode({ cluster, node: plan.node, newPrimary: plan.newPrimary, progress, signal: interrupt.signal, stateDir });
      lines.push(`Fenced: ${fenced.message}.`);
    }
    const rejoined: RejoinResult = await rejoinNode({ cluster, node: plan.node, newPrimary: plan.newPrimary, progress, signal: interrupt.signal, stateDir });
    lines.push(`${rejoined.message}.`);
    if (rejoined.how === 'manual') {
      lines.push(...rejoined.commands.map((command) => `  ${command}`));
      return { stdout: out.stdout(`${lines.join('\n')}\n`), stderr: '', exitCode: 1 };
    }
  } catch (error) {
    const done = lines.length === 0 ? '' : `${lines.join(' ')} `;
    return { stdout: out.stdout(), stderr: failure(`pgwarden: rejoin: ${done}${describeError(error)}`, 1).stderr, exitCode: error instanceof UserError ? 1 : 70 };
  } finally {
    for (const signal of interruptSignals) process.off(signal, onSignal);
  }
  return { stdout: out.stdout(`${lines.join('\n')}\n`), stderr: '', exitCode: 0 };
}
