/**
 * `pgwarden replica create` and `pgwarden replica list` (issue 6 item 2; docs/replicas.md). The
 * work is in src/cluster/replica.ts; this file reads the command line, picks the cluster and
 * prints.
 *
 *   create  --data-dir DIR [--port N] [--slot NAME] [--name NODE] [--passfile FILE] [--dry-run]
 *           Checks, prints the plan (stdout, before anything runs), runs it (progress on stderr),
 *           then prints the connection string and the config snippet. --dry-run: checks and plan only.
 *           Exit 0 streaming; 1 failed midway (what was undone and what is left are printed) or
 *           no primary reachable; 2 bad usage, or refused by a check (nothing was changed).
 *   list    [--json]   Exit 0; 1 no primary reachable; 2 bad usage.
 *
 * Both take --config FILE [--cluster NAME] (the only cluster when there is one).
 * SIGINT, SIGTERM and SIGHUP during create stop it and undo what it made, then exit 1.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { connectPrimary, createReplica, planReplica, PrimaryUnreachableError, renderCreated, renderPlan, ReplicaRefusedError, type PrimaryConnection } from '../cluster/replica.js';
import { listReplicas, type ReplicaListing } from '../cluster/replica-list.js';
import { loadConfig } from '../config/load.js';
import type { ClusterConfig, Config } from '../config/types.js';
import { UserError, messageOf } from '../errors.js';
import { toJsonValue } from '../format/json.js';
import { renderTextTable } from '../format/text-table.js';
import { formatBytes, formatDuration } from '../format/units.js';
import { probeIds } from '../probes/index.js';
import { describeError, failure } from './command-output.js';
import { UsageError } from './key-options.js';
import type { CommandOutput } from './show.js';
import { clusterOf, interruptSignals } from './cluster-command.js';

const usage = [
  'pgwarden replica create --config FILE [--cluster C] --data-dir DIR [--port N] [--slot NAME] [--name NODE] [--passfile FILE] [--dry-run]',
  'pgwarden replica list --config FILE [--cluster C] [--json]',
].join(' or ');


export interface ReplicaCommandOptions {
  /** Progress lines (stderr). */
  readonly progress?: (line: string) => void;
  /** Text for stdout that must appear at once (the plan, before it runs). */
  readonly print?: (text: string) => void;
}

function portOf(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const port = Number(text);
  if (!/^\d+$/.test(text) || port < 1 || port > 65535) throw new UsageError(`--port takes a port number from 1 to 65535, not "${text}"`);
  return port;
}

/** Runs `pgwarden replica …` with the arguments after "replica". */
export async function replicaCommand(args: readonly string[], options: ReplicaCommandOptions = {}): Promise<CommandOutput> {
  let parsed;
  let config: Config;
  let cluster: ClusterConfig;
  let command: 'create' | 'list';
  try {
    try {
      parsed = parseArgs({
        args: [...args], allowPositionals: true, strict: true,
        options: {
          config: { type: 'string' }, cluster: { type: 'string' }, json: { type: 'boolean', default: false },
          'data-dir': { type: 'string' }, port: { type: 'string' }, slot: { type: 'string' }, name: { type: 'string' }, passfile: { type: 'string' },
          'dry-run': { type: 'boolean', default: false },
        },
      });
    } catch (error) {
      throw new UsageError(messageOf(error));
    }
    const [first, ...extra] = parsed.positionals;
    if (first !== 'create' && first !== 'list') throw new UsageError(`unknown replica command "${first ?? ''}" (known: create, list)`);
    if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0] ?? ''}"`);
    command = first;
    const given = parsed.values;
    const createOnly = (['data-dir', 'port', 'slot', 'name', 'passfile', 'dry-run'] as const).filter((key) => (key === 'dry-run' ? given[key] : given[key] !== undefined));
    if (command === 'list' && createOnly.length > 0) throw new UsageError(`--${createOnly[0] ?? ''} belongs to replica create`);
    if (command === 'create' && (parsed.values['data-dir'] === undefined || parsed.values['data-dir'] === '')) throw new UsageError('replica create needs --data-dir DIR');
    if (command === 'create' && parsed.values.json) throw new UsageError('--json belongs to replica list');
    portOf(parsed.values.port);
    config = loadConfig({ configFile: parsed.values.config, dsn: undefined, knownProbes: probeIds });
    cluster = clusterOf(config, parsed.values.cluster);
  } catch (error) {
    if (error instanceof UsageError) return failure(`pgwarden: replica: ${error.message}\n  usage: ${usage}`, 2);
    return failure(`pgwarden: replica: ${describeError(error)}`, 2);
  }
  if (command === 'list') return list(config, cluster, parsed.values.json);
  const values = parsed.values;
  return create(cluster, {
    dataDir: resolve(values['data-dir'] ?? ''),
    port: portOf(values.port),
    slot: values.slot,
    name: values.name,
    passfile: values.passfile === undefined ? undefined : resolve(values.passfile),
  }, values['dry-run'], options);
}

type Wanted = { dataDir: string; port: number | undefined; slot: string | undefined; name: string | undefined; passfile: string | undefined };

async function create(cluster: ClusterConfig, wanted: Wanted, dryRun: boolean, options: ReplicaCommandOptions): Promise<CommandOutput> {
  const interrupt = new AbortController();
  const onSignal = (signal: NodeJS.Signals): void => {
    if (!interrupt.signal.aborted) {
      options.progress?.(`replica: ${signal}: stopping; what was made so far is undone (a few seconds)`);
      interrupt.abort(signal);
    } else {
      options.progress?.(`replica: ${signal} ignored: the clean-up is running (stopping the server, dropping the slot, removing the directory)`);
    }
  };
  let primary: PrimaryConnection;
  try {
    primary = await connectPrimary(cluster);
  } catch (error) {
    return failure(`pgwarden: replica create: ${describeError(error)}`, error instanceof PrimaryUnreachableError ? 1 : 2);
  }
  for (const signal of interruptSignals) process.on(signal, onSignal);
  try {
    const request = { cluster, ...wanted, signal: interrupt.signal, ...(options.progress === undefined ? {} : { progress: options.progress }) };
    const plan = await planReplica(request, primary);
    const planText = renderPlan(plan);
    if (dryRun) return { stdout: `${planText}Dry run: every check passed; nothing was changed.\n`, stderr: '', exitCode: 0 };
    if (options.print === undefined) options.progress?.(planText.trimEnd());
    else options.print(planText);
    const created = await createReplica(plan, primary, request);
    return { stdout: `${options.print === undefined ? planText : ''}${renderCreated(created, plan)}`, stderr: '', exitCode: 0 };
  } catch (error) {
    // Refused: nothing changed (2). Failed midway: undone as far as it could be (1). A bug: 70.
    return failure(`pgwarden: ${describeError(error)}`, error instanceof ReplicaRefusedError ? 2 : error instanceof UserError ? 1 : 70);
  } finally {
    for (const signal of interruptSignals) process.off(signal, onSignal);
    await primary.session.close();
  }
}

async function list(config: Config, cluster: ClusterConfig, json: boolean): Promise<CommandOutput> {
  let listing: ReplicaListing;
  try {
    listing = await listReplicas(config, cluster);
  } catch (error) {
    return failure(`pgwarden: replica list: ${describeError(error)}`, error instanceof UserError ? 1 : 70);
  }
  if (json) return { stdout: `${JSON.stringify(toJsonValue(listing), null, 2)}\n`, stderr: '', exitCode: 0 };
  return { stdout: renderListing(listing), stderr: '', exitCode: 0 };
}

/** The human-readable listing. */
export function renderListing(listing: ReplicaListing): string {
  const lines = [`Cluster ${listing.cluster}: primary ${listing.primary.node} (${listing.primary.connection})`, ''];
  if (listing.standbys.length === 0) {
    lines.push('No standby is connected to the primary.');
  } else {
    lines.push('Standbys as the primary sees them');
    lines.push(renderTextTable([
      { title: 'APPLICATION', align: 'left', maxWidth: 30 },
      { title: 'CLIENT', align: 'left', maxWidth: 40 },
      { title: 'STATE', align: 'left', maxWidth: 10 },
      { title: 'SYNC', align: 'left', maxWidth: 9 },
      { title: 'SLOT', align: 'left', maxWidth: 40 },
      { title: 'REPLAY LAG', align: 'right', maxWidth: 20 },
      { title: 'NODE', align: 'left', maxWidth: 30 },
    ], listing.standbys.map((s) => [
      s.application === '' ? '-' : s.application, s.client ?? '-', s.state ?? '?', s.syncState ?? '?', s.slot ?? '-',
      `${formatBytes(s.replayLagBytes)} ${formatDuration(s.replayLagSeconds)}`, s.node ?? '-',
    ])).trimEnd());
  }
  for (const slot of listing.idleSlots) {
    lines.push(`Slot ${slot.name} (${slot.type}) is not in use and keeps ${formatBytes(slot.retainedBytes)} of WAL${slot.walStatus === null ? '' : ` (${slot.walStatus})`}: a standby that is down, or a leftover to drop`);
  }
  lines.push('');
  if (listing.readReplicas.length === 0) {
    lines.push('Read replicas: no configured node of this cluster is a standby.');
  } else {
    lines.push('Read replicas (configured nodes that are standbys)');
    for (const replica of listing.readReplicas) {
      lines.push(`  ${replica.node}  ${replica.connection}`);
      lines.push(`    ${replica.fitForReporting ? 'fit for reporting queries' : 'NOT fit for reporting queries'}: ${replica.reason}`);
    }
  }
  for (const node of listing.unreachable) lines.push(`  ${node.node}: not reachable (${node.error})`);
  if (listing.reportingConnection !== null) lines.push('', `Reporting queries (standbys first, the primary if none answers): ${listing.reportingConnection}`);
  return `${lines.join('\n')}\n`;
}
