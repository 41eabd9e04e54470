/**
 * Planned switchover (issue 6 item 3; docs/failover.md "Switchover"): the primary hands over to a
 * streaming standby with no acknowledged write lost (DESIGN §7 rules 9 and 12) and, with PgBouncer
 * in front, without a client error (rule 13).
 *
 * planSwitchover checks everything first and refuses with the reason and the fix: the target is a
 * configured node, a streaming standby of the one reachable primary, on its timeline, behind by no
 * more than failover.maxLagBytes; the primary's data directory is on this host (pgwarden must stop
 * it cleanly); PgBouncer, when configured, answers, has an ini file pgwarden can rewrite, and its
 * [databases] point at the primary. It returns every step as the SQL or command that will run.
 *
 * runSwitchover, with PgBouncer: inside withPause — stop the old primary (pg_ctl stop -m fast: the
 * shutdown checkpoint reaches the standbys), read its last checkpoint LSN, wait until the
 * candidate has replayed up to it, promote it, repoint PgBouncer — then RESUME; then the other
 * standbys follow the new primary and the old primary rejoins as a standby (pg_rewind, rule 11).
 * Without PgBouncer the same, without the pause and the repoint.
 *
 * A failure (or an interrupt) before the promotion restarts the old primary as it was: it is still
 * the primary. Once the promotion was asked for, the old primary is never started as a primary
 * again; a later step that fails is reported with the command to finish it by hand.
 */
import { readFile } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { describeConnection } from '../config/conninfo.js';
import type { FailoverConfig } from '../config/failover.js';
import type { ClusterConfig, ConnectionSpec, NodeConfig } from '../config/types.js';
import { UserError, messageOf } from '../errors.js';
import { formatBytes } from '../format/units.js';
import { boolean, number, stringOrNull } from '../probes/values.js';
import { isRunning, localNode, readControlData, rejoinAsStandby, startLocal, stopLocal, upstreamConninfo } from './local-node.js';
import { manualResume, PgBouncerControl, repointIni, repointPgBouncer, withPause, type Endpoint } from './pgbouncer-control.js';
import { quoteShell, quoteSql, throwIfAborted } from './processes.js';
import { defaultSlotName } from './replica.js';
import { ensureSlot, follow, lsnBytes, promote, waitStreaming, withSession } from './roles.js';

const streamTimeoutMs = 60_000;

/** One step of the plan: what it does and the exact SQL or command. */
export interface SwitchoverStep {
  readonly title: string;
  readonly command: string;
}

export interface SwitchoverPlan {
  readonly cluster: string;
  readonly primary: NodeConfig;
  readonly candidate: NodeConfig;
  /** The primary's data directory here, stopped and rewound by pgwarden. */
  readonly primaryDataDir: string;
  /** Configured standbys streaming from the primary now, besides the candidate: they follow the new primary. */
  readonly followers: readonly NodeConfig[];
  /** Bytes of WAL the candidate had still to replay when planned. */
  readonly lagBytes: number;
  readonly timeline: number;
  /** PgBouncer to pause and repoint, and the [databases] entries that point at the primary; undefined: none configured. */
  readonly pgbouncer: { readonly config: NonNullable<ClusterConfig['pgbouncer']>; readonly entries: readonly string[] } | undefined;
  /** Whether pg_rewind can work on the old primary (wal_log_hints or checksums). */
  readonly rewindable: boolean;
  readonly failover: FailoverConfig;
  /** Things that do not stop the switchover but that the DBA must know before saying yes. */
  readonly warnings: readonly string[];
  readonly steps: readonly SwitchoverStep[];
}

/** Refused before anything was changed. */
export class SwitchoverRefusedError extends UserError {}

/** Failed before the promotion: the old primary was restarted and is still the primary. */
export class SwitchoverAbortedError extends UserError {}

/** Something after the promotion did not finish: the new primary stays; what is left is in the message. */
export interface LeftOver {
  readonly step: string;
  readonly error: string;
  /** What to run by hand to finish it. */
  readonly manual: string;
}

export interface SwitchoverResult {
  readonly cluster: string;
  readonly oldPrimary: string;
  readonly newPrimary: string;
  /** PAUSE to RESUME with PgBouncer; without it, from the stop of the old primary to the end of the promotion. */
  readonly stallMs: number;
  /** The old primary's shutdown checkpoint that the candidate replayed before its promotion. */
  readonly checkpointLsn: string;
  readonly repointed: readonly string[];
  readonly followed: readonly string[];
  readonly rejoined: boolean;
  readonly leftOver: readonly LeftOver[];
  readonly totalMs: number;
}

export interface SwitchoverRequest {
  readonly cluster: ClusterConfig;
  /** The node to promote. */
  readonly to: string;
}

export interface RunOptions {
  readonly progress?: (line: string) => void;
  readonly signal?: AbortSignal;
}

// ---------------------------------------------------------------------------------------------
// Where each node stands

interface NodeState {
  readonly node: NodeConfig;
  readonly error: string | undefined;
  readonly inRecovery: boolean;
  readonly timeline: number;
  readonly lsn: string | null;
  readonly replayPaused: boolean;
  readonly senderHost: string | null;
  readonly senderPort: number | null;
  readonly streaming: boolean;
}

async function stateOf(node: NodeConfig): Promise<NodeState> {
  try {
    return await withSession(node.connection, async (session) => {
      const [row] = await session.query({
        text: `select pg_is_in_recovery() as in_recovery,
          case when pg_is_in_recovery() then pg_last_wal_replay_lsn() else pg_current_wal_lsn() end::text as lsn,
          case when pg_is_in_recovery() then pg_is_wal_replay_paused() else false end as replay_paused,
          case when pg_is_in_recovery() then coalesce((select received_tli from pg_stat_wal_receiver), (select timeline_id from pg_control_checkpoint()))
            else ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int end as timeline,
          (select sender_host from pg_stat_wal_receiver) as sender_host, (select sender_port from pg_stat_wal_receiver) as sender_port,
          coalesce((select status = 'streaming' from pg_stat_wal_receiver), false) as streaming`,
      });
      if (row === undefined) throw new Error('no row from the state query');
      const port = row['sender_port'];
      return {
        node, error: undefined, inRecovery: boolean(row, 'in_recovery'), timeline: number(row, 'timeline'), lsn: stringOrNull(row, 'lsn'),
        replayPaused: boolean(row, 'replay_paused'), senderHost: stringOrNull(row, 'sender_host'),
        senderPort: port === null || port === undefined ? null : Number(port), streaming: boolean(row, 'streaming'),
      };
    });
  } catch (error) {
    return { node, error: messageOf(error), inRecovery: true, timeline: 0, lsn: null, replayPaused: false, senderHost: null, senderPort: null, streaming: false };
  }
}

function loopback(host: string): string {
  const lower = host.trim().toLowerCase();
  return lower === 'localhost' || lower === '::1' || lower === '127.0.0.1' ? 'loopback' : lower;
}

/** Whether `standby`'s WAL receiver streams from `primary` (by address), or `primary` lists it by name. */
function streamsFrom(standby: NodeState, primary: NodeConfig, namesOnPrimary: ReadonlySet<string>): boolean {
  if (!standby.streaming) return false;
  if (standby.senderHost !== null && standby.senderPort === primary.connection.port && loopback(standby.senderHost) === loopback(primary.connection.host)) return true;
  return namesOnPrimary.has(standby.node.name);
}

function endpoint(spec: ConnectionSpec): Endpoint {
  return { host: spec.host, port: spec.port };
}

function refuse(problem: string, fix: string): never {
  throw new SwitchoverRefusedError(`switchover refused, nothing was changed: ${problem}`, fix);
}

// ---------------------------------------------------------------------------------------------
// The plan

/** Checks everything and returns the steps; refuses (SwitchoverRefusedError) with the reason and the fix. */
export async function planSwitchover(request: SwitchoverRequest): Promise<SwitchoverPlan> {
  const { cluster, to } = request;
  const names = cluster.nodes.map((node) => node.name);
  const candidate = cluster.nodes.find((node) => node.name === to);
  if (candidate === undefined) refuse(`cluster ${cluster.name} has no node named "${to}"`, `pass --to with one of ${names.join(', ')}`);

  const states = await Promise.all(cluster.nodes.map(stateOf));
  const primaries = states.filter((state) => state.error === undefined && !state.inRecovery);
  if (primaries.length > 1) {
    refuse(`${primaries.map((state) => state.node.name).join(' and ')} are all writable primaries (split brain)`, 'fence the primary that must not take writes first (docs/failover.md "Fencing and rejoining an old primary")');
  }
  const primaryState = primaries[0];
  if (primaryState === undefined) {
    const why = states.map((state) => `${state.node.name}: ${state.error ?? 'a standby'}`).join('; ');
    refuse(`no primary is reachable in cluster ${cluster.name} (${why})`, 'a switchover needs a running primary; when it is down use pgwarden failover');
  }
  const primary = primaryState.node;
  if (primary.name === candidate.name) refuse(`${to} is already the primary of cluster ${cluster.name}`, `pass --to with the standby to promote (${names.filter((name) => name !== to).join(', ')})`);

  const namesOnPrimary = await withSession(primary.connection, async (session) => {
    const rows = await session.query({ text: "select application_name from pg_stat_replication where state = 'streaming'" });
    return new Set(rows.map((row) => String(row['application_name'])));
  });
  const target = states.find((state) => state.node.name === candidate.name) as NodeState;
  if (target.error !== undefined) refuse(`${to} is not reachable: ${target.error}`, `start ${to} or fix its dsn in the config`);
  if (!target.inRecovery) refuse(`${to} is not a standby`, `pass --to with a standby of ${primary.name}`);
  if (!streamsFrom(target, primary, namesOnPrimary)) {
    const from = target.senderHost === null ? 'nowhere (its WAL receiver is not streaming)' : `${target.senderHost}:${target.senderPort ?? '?'}`;
    refuse(`${to} is not a streaming standby of the primary ${primary.name} (${describeConnection(primary.connection)}): it streams from ${from}`, `make ${to} stream from ${primary.name} first (primary_conninfo), or choose a standby that does`);
  }
  if (target.timeline !== primaryState.timeline) refuse(`${to} is on timeline ${target.timeline}, the primary on ${primaryState.timeline}`, `rebuild ${to} from ${primary.name}`);
  const lagBytes = Math.max(0, lsnBytes(primaryState.lsn ?? '0/0') - lsnBytes(target.lsn ?? '0/0'));
  if (lagBytes > cluster.failover.maxLagBytes) {
    refuse(
      `${to} has ${formatBytes(lagBytes)} of WAL still to replay, more than failover.maxLagBytes (${formatBytes(cluster.failover.maxLagBytes)}): the writes would stall while it catches up`,
      `wait until ${to} has caught up (pgwarden replica list shows its lag), then run the switchover again`,
    );
  }

  if (primary.dataDir === undefined) {
    refuse(
      `the primary ${primary.name} has no "dataDir" in the config, so pgwarden cannot stop it cleanly (a clean stop sends its last WAL to the standbys) nor rewind it afterwards`,
      `run pgwarden on the primary's host with "dataDir" set for node ${primary.name}; or switch over by hand: stop it with pg_ctl stop -m fast, check ${to} replayed its last checkpoint, promote ${to}`,
    );
  }
  const old = await localNode(primary);
  const control = await readControlData(old);
  const warnings: string[] = [];
  if (!control.rewindable) {
    warnings.push(`${primary.name} has wal_log_hints off and no data checksums: pg_rewind cannot rejoin it, it will stay stopped and need a fresh clone (pgwarden replica create). Set wal_log_hints = on on every node to avoid this.`);
  }
  if (target.replayPaused) warnings.push(`${to} has its WAL replay paused (pg_wal_replay_pause()): the switchover waits for it to replay everything and gives up after ${cluster.failover.catchUpTimeoutMs / 1000} s; run select pg_wal_replay_resume() on it first`);

  const followers: NodeConfig[] = [];
  for (const state of states) {
    if (state.node.name === primary.name || state.node.name === candidate.name) continue;
    if (state.error !== undefined) warnings.push(`${state.node.name} is not reachable (${state.error}): it will not follow ${to}; point it at ${to} by hand later`);
    else if (!state.inRecovery) continue;
    else if (streamsFrom(state, primary, namesOnPrimary)) followers.push(state.node);
    else warnings.push(`${state.node.name} does not stream from ${primary.name} (a cascade or a broken standby): pgwarden leaves it as it is`);
  }

  let pgbouncer: SwitchoverPlan['pgbouncer'];
  if (cluster.pgbouncer === undefined) {
    warnings.push('no PgBouncer is configured for this cluster: clients connected to the primary get errors when it stops and must reconnect to the new primary themselves');
  } else {
    const bouncer = cluster.pgbouncer;
    if (bouncer.ini === undefined) {
      refuse('the cluster\'s pgbouncer has no "ini" path in the config, so pgwarden cannot point PgBouncer at the new primary', 'add "ini": "/etc/pgbouncer/pgbouncer.ini" to the cluster\'s pgbouncer entry (the file must be on this host), or remove the pgbouncer entry and repoint it by hand');
    }
    const text = await readFile(bouncer.ini, 'utf8').catch((error: unknown) => refuse(`PgBouncer's ini ${bouncer.ini} cannot be read: ${messageOf(error)}`, 'fix pgbouncer.ini in the config, or run pgwarden where the file is'));
    const entries = repointIni(text, endpoint(primary.connection), endpoint(candidate.connection)).entries;
    if (entries.length === 0) refuse(`${bouncer.ini}: no [databases] entry points at the primary ${primary.connection.host}:${primary.connection.port}`, `point PgBouncer's [databases] at ${primary.name} (host and port as in its dsn) and RELOAD it, or fix the pgbouncer.ini path`);
    const admin = new PgBouncerControl(bouncer);
    try {
      await admin.databases();
    } catch (error) {
      refuse(`PgBouncer does not answer on its admin console (${describeConnection(bouncer.connection)}): ${messageOf(error)}`, 'start PgBouncer or fix the cluster\'s pgbouncer dsn');
    } finally {
      await admin.close();
    }
    pgbouncer = { config: bouncer, entries };
  }

  const plan = { cluster: cluster.name, primary, candidate, primaryDataDir: old.dataDir, followers, lagBytes, timeline: primaryState.timeline, pgbouncer, rewindable: control.rewindable, failover: cluster.failover, warnings };
  return { ...plan, steps: switchoverSteps(plan) };
}

function sqlOn(node: NodeConfig, sql: string): string {
  return `on ${node.name} (${describeConnection(node.connection)}): ${sql}`;
}

/** Every step of a switchover as the SQL or command that runs (no password: rule 14). */
export function switchoverSteps(plan: Omit<SwitchoverPlan, 'steps'>): SwitchoverStep[] {
  const old = { dataDir: plan.primaryDataDir };
  const { primary, candidate, failover } = plan;
  const steps: SwitchoverStep[] = [];
  const bouncer = plan.pgbouncer;
  const admin = bouncer === undefined ? '' : `psql "host=${bouncer.config.connection.host} port=${bouncer.config.connection.port} user=${bouncer.config.connection.user} dbname=pgbouncer"`;
  if (bouncer !== undefined) {
    steps.push({ title: `pause PgBouncer (clients wait; given up and resumed after ${failover.pauseTimeoutMs / 1000} s)`, command: `${admin} -c PAUSE` });
  }
  steps.push({ title: `stop the old primary ${primary.name} cleanly (its shutdown checkpoint reaches the standbys)`, command: `pg_ctl stop -D ${quoteShell(old.dataDir)} -m fast -w` });
  steps.push({ title: 'read its final checkpoint', command: `pg_controldata -D ${quoteShell(old.dataDir)}   (Latest checkpoint location)` });
  steps.push({ title: `wait until ${candidate.name} has replayed it (at most ${failover.catchUpTimeoutMs / 1000} s; otherwise ${primary.name} is restarted as the primary)`, command: sqlOn(candidate, "select pg_last_wal_replay_lsn() > 'CHECKPOINT_LSN'") });
  steps.push({ title: `promote ${candidate.name}`, command: sqlOn(candidate, 'select pg_promote(true, 60)') });
  if (bouncer !== undefined) {
    const to = candidate.connection;
    steps.push({ title: `point PgBouncer's [databases] ${bouncer.entries.join(', ')} at ${candidate.name}`, command: `rewrite ${bouncer.config.ini ?? ''}: host=${to.host} port=${to.port}; ${admin} -c RELOAD` });
    steps.push({ title: 'resume PgBouncer (on every path, also after an error)', command: `${admin} -c RESUME` });
  }
  for (const node of plan.followers) {
    const slot = defaultSlotName(node.name);
    steps.push({ title: `slot for ${node.name} on ${candidate.name}`, command: sqlOn(candidate, `select pg_create_physical_replication_slot(${quoteSql(slot)}, true)`) });
    steps.push({
      title: `${node.name} follows ${candidate.name}`,
      command: sqlOn(node, `alter system set primary_conninfo = ${quoteSql(upstreamConninfo(candidate, node.name, failover))}; alter system set primary_slot_name = ${quoteSql(slot)}; select pg_reload_conf()`),
    });
  }
  if (plan.rewindable) {
    const source = candidate.connection;
    steps.push({ title: `rewind ${primary.name} from ${candidate.name}`, command: `pg_rewind --target-pgdata ${quoteShell(old.dataDir)} --source-server 'host=${source.host} port=${source.port} user=${source.user} dbname=${source.database}'` });
    steps.push({
      title: `${primary.name} becomes a standby of ${candidate.name}`,
      command: `standby.signal; postgresql.auto.conf: primary_conninfo = ${quoteSql(upstreamConninfo(candidate, primary.name, failover))}, primary_slot_name = ${quoteSql(defaultSlotName(primary.name))}; slot on ${candidate.name}; pg_ctl start -D ${quoteShell(old.dataDir)}`,
    });
    const slots = [candidate, ...plan.followers].map((node) => quoteSql(defaultSlotName(node.name))).join(', ');
    steps.push({ title: `drop the slots left on ${primary.name} for the nodes that now stream from ${candidate.name} (a slot on a standby holds WAL)`, command: sqlOn(primary, `select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_type = 'physical' and not active and slot_name in (${slots})`) });
  } else {
    steps.push({ title: `${primary.name} stays stopped: it cannot be rewound (wal_log_hints off, no checksums)`, command: `re-create it: move ${old.dataDir} aside, then pgwarden replica create` });
  }
  return steps;
}

/** The plan as the DBA reads it before saying yes. */
export function renderPlan(plan: SwitchoverPlan): string {
  const lines = [
    `Switchover of cluster ${plan.cluster}: ${plan.primary.name} (primary, ${describeConnection(plan.primary.connection)}) → ${plan.candidate.name} (${describeConnection(plan.candidate.connection)})`,
    `  ${plan.candidate.name} is a streaming standby of ${plan.primary.name} on timeline ${plan.timeline}, ${formatBytes(plan.lagBytes)} behind (limit ${formatBytes(plan.failover.maxLagBytes)})`,
    `  PgBouncer: ${plan.pgbouncer === undefined ? 'none configured' : `paused, then [databases] ${plan.pgbouncer.entries.join(', ')} repointed (${plan.pgbouncer.config.ini ?? ''})`}`,
    `  other standbys that follow: ${plan.followers.length === 0 ? 'none' : plan.followers.map((node) => node.name).join(', ')}`,
  ];
  for (const warning of plan.warnings) lines.push(`  warning: ${warning}`);
  lines.push('', 'Steps:');
  plan.steps.forEach((step, index) => {
    lines.push(`  ${index + 1}. ${step.title}`, `       ${step.command}`);
  });
  return `${lines.join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------------
// The run

async function waitReplayed(candidate: NodeConfig, lsn: string, timeoutMs: number, signal: AbortSignal | undefined): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  await withSession(candidate.connection, async (session) => {
    for (;;) {
      throwIfAborted(signal);
      const [row] = await session.query({ text: 'select pg_last_wal_replay_lsn()::text as replayed, pg_is_in_recovery() as in_recovery' });
      const replayed = row === undefined ? null : stringOrNull(row, 'replayed');
      // Strictly past it: the shutdown checkpoint record itself is replayed, so everything before it is too.
      if (replayed !== null && lsnBytes(replayed) > lsnBytes(lsn)) return;
      if (Date.now() > deadline) {
        throw new UserError(`${candidate.name} had not replayed the old primary's last checkpoint ${lsn} within ${Math.round(timeoutMs / 1000)} s (it replayed up to ${replayed ?? 'nothing'})`, `look at ${candidate.name}: a paused replay (select pg_wal_replay_resume()), a broken stream; or raise failover.catchUpTimeoutSeconds`);
      }
      await delay(20);
    }
  });
}

function manualFollow(plan: SwitchoverPlan, node: NodeConfig): string {
  const slot = defaultSlotName(node.name);
  return `${sqlOn(plan.candidate, `select pg_create_physical_replication_slot(${quoteSql(slot)}, true)`)}; then ${sqlOn(node, `alter system set primary_conninfo = ${quoteSql(upstreamConninfo(plan.candidate, node.name, plan.failover))}; alter system set primary_slot_name = ${quoteSql(slot)}; select pg_reload_conf()`)}`;
}

function manualRejoin(plan: SwitchoverPlan): string {
  return `keep ${plan.primary.name} stopped; rewind it (pg_rewind --target-pgdata ${quoteShell(plan.primaryDataDir)} --source-server 'host=${plan.candidate.connection.host} port=${plan.candidate.connection.port} user=${plan.candidate.connection.user} dbname=${plan.candidate.connection.database}'), add standby.signal and primary_conninfo pointing at ${plan.candidate.name}, then start it; or re-create it with pgwarden replica create`;
}

/**
 * Runs the plan (see the file's comment). Throws SwitchoverAbortedError when it stopped before the
 * promotion (the old primary restarted); returns what it did, with anything left to do by hand.
 */
export async function runSwitchover(plan: SwitchoverPlan, options: RunOptions = {}): Promise<SwitchoverResult> {
  const progress = options.progress ?? ((): void => undefined);
  const signal = options.signal;
  const started = Date.now();
  const old = await localNode(plan.primary);
  let promotionAsked = false;
  let promoted = false;
  let checkpointLsn = '';
  let repointed: readonly string[] = [];

  // The part that clients wait for: stop, catch up, promote, repoint.
  const handOver = async (): Promise<void> => {
    try {
      throwIfAborted(signal);
      progress(`stopping ${plan.primary.name} (pg_ctl stop -m fast)`);
      await stopLocal(old, 'fast', signal);
      const control = await readControlData(old);
      if (control.state !== 'shut down') throw new UserError(`${plan.primary.name} did not shut down cleanly (pg_control says "${control.state}")`, 'look at its server log');
      checkpointLsn = control.checkpointLsn;
      progress(`${plan.primary.name} stopped; its last checkpoint is at ${checkpointLsn}; waiting for ${plan.candidate.name} to replay it`);
      await waitReplayed(plan.candidate, checkpointLsn, plan.failover.catchUpTimeoutMs, signal);
      throwIfAborted(signal);
      progress(`${plan.candidate.name} replayed everything ${plan.primary.name} wrote; promoting it`);
      promotionAsked = true;
      await promote(plan.candidate.connection);
      promoted = true;
      progress(`${plan.candidate.name} is the primary`);
    } catch (error) {
      if (promotionAsked) {
        throw new UserError(
          `${messageOf(error)}; the promotion of ${plan.candidate.name} was asked for, so ${plan.primary.name} stays stopped (it must not run as a second primary)`,
          `check ${plan.candidate.name} with select pg_is_in_recovery(): when false it is the primary, point the clients and the other standbys at it; when true promote it by hand (select pg_promote())`,
        );
      }
      await restoreOldPrimary(error);
    }
    if (plan.pgbouncer !== undefined && control !== undefined) {
      progress(`pointing PgBouncer at ${plan.candidate.name}`);
      repointed = await repointPgBouncer(control, endpoint(plan.primary.connection), endpoint(plan.candidate.connection));
    }
  };

  const restoreOldPrimary = async (error: unknown): Promise<never> => {
    progress(`failed before the promotion (${messageOf(error)}); restarting ${plan.primary.name} as the primary`);
    let how = 'it never stopped';
    try {
      // Not with the run's signal: an interrupt must still get the old primary back.
      if (!(await isRunning(old))) {
        await startLocal(old);
        how = 'restarted';
      }
    } catch (startError) {
      throw new SwitchoverAbortedError(
        `switchover stopped before the promotion (${messageOf(error)}), and ${plan.primary.name} could not be restarted: ${messageOf(startError)}. No node is primary now; ${plan.candidate.name} is still a standby`,
        `start ${plan.primary.name} by hand: pg_ctl start -D ${quoteShell(plan.primaryDataDir)}`,
      );
    }
    throw new SwitchoverAbortedError(
      `switchover stopped before the promotion: ${messageOf(error)}. The old primary ${plan.primary.name} is still the primary (${how}), ${plan.candidate.name} is still a standby${plan.pgbouncer === undefined ? '' : ', PgBouncer was resumed'}`,
      error instanceof UserError && error.hint !== undefined ? error.hint : 'fix the cause, then run the switchover again',
    );
  };

  const control = plan.pgbouncer === undefined ? undefined : new PgBouncerControl(plan.pgbouncer.config);
  let stallMs: number;
  try {
    const stallStart = Date.now();
    if (control === undefined) {
      await handOver();
    } else {
      progress(`pausing PgBouncer (at most ${plan.failover.pauseTimeoutMs / 1000} s for the transactions in flight)`);
      await withPause(control, plan.failover.pauseTimeoutMs, handOver);
      progress('PgBouncer resumed');
    }
    stallMs = Date.now() - stallStart;
  } catch (error) {
    if (!promotionAsked && !(error instanceof SwitchoverAbortedError)) {
      // The PAUSE was given up before anything else ran (withPause resumed PgBouncer).
      throw new SwitchoverAbortedError(`switchover stopped before anything changed: ${messageOf(error)}. ${plan.primary.name} is still the primary`, error instanceof UserError ? error.hint : undefined);
    }
    if (!promoted || control === undefined) throw error;
    // After the promotion: the new primary stays, whatever failed (the repoint, the RESUME).
    throw new UserError(
      `${messageOf(error)}. ${plan.candidate.name} is the new primary; ${plan.primary.name} is stopped`,
      `point PgBouncer at ${plan.candidate.name} by hand ([databases] host=${plan.candidate.connection.host} port=${plan.candidate.connection.port}, RELOAD) and make sure it is resumed: ${manualResume(control.config)}`,
    );
  } finally {
    await control?.close();
  }

  const leftOver: LeftOver[] = [];
  const followed: string[] = [];
  for (const node of plan.followers) {
    try {
      throwIfAborted(signal);
      const slot = defaultSlotName(node.name);
      progress(`${node.name} follows ${plan.candidate.name}`);
      await ensureSlot(plan.candidate.connection, slot);
      await follow(node.connection, upstreamConninfo(plan.candidate, node.name, plan.failover), slot);
      await waitStreaming(plan.candidate.connection, node.name, slot, streamTimeoutMs, signal);
      followed.push(node.name);
    } catch (error) {
      leftOver.push({ step: `${node.name} follows ${plan.candidate.name}`, error: messageOf(error), manual: manualFollow(plan, node) });
    }
  }
  let rejoined = false;
  if (!plan.rewindable) {
    leftOver.push({ step: `${plan.primary.name} rejoins as a standby`, error: 'it cannot be rewound (wal_log_hints off, no data checksums); it stays stopped', manual: `move ${plan.primaryDataDir} aside, then pgwarden replica create` });
  } else {
    try {
      throwIfAborted(signal);
      await rejoinAsStandby(old, plan.candidate, plan.failover, progress, signal);
      rejoined = true;
    } catch (error) {
      leftOver.push({ step: `${plan.primary.name} rejoins as a standby`, error: messageOf(error), manual: manualRejoin(plan) });
    }
  }
  if (rejoined) {
    // A slot left on a standby holds WAL there forever: drop those of the nodes that now stream from the new primary.
    const slots = [plan.candidate, ...plan.followers.filter((node) => followed.includes(node.name))].map((node) => defaultSlotName(node.name));
    const sql = `select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_type = 'physical' and not active and slot_name in (${slots.map(quoteSql).join(', ')})`;
    try {
      await withSession(plan.primary.connection, async (session) => session.query({ text: sql }));
    } catch (error) {
      leftOver.push({ step: `drop the slots ${slots.join(', ')} left on ${plan.primary.name}`, error: messageOf(error), manual: sqlOn(plan.primary, sql) });
    }
  }
  return {
    cluster: plan.cluster, oldPrimary: plan.primary.name, newPrimary: plan.candidate.name, stallMs, checkpointLsn, repointed, followed, rejoined, leftOver,
    totalMs: Date.now() - started,
  };
}

/** The summary printed at the end. */
export function renderResult(result: SwitchoverResult): string {
  const lines = [
    `Switchover done: ${result.newPrimary} is the primary of cluster ${result.cluster} (was ${result.oldPrimary}).`,
    `  write stall: ${(result.stallMs / 1000).toFixed(2)} s; total ${(result.totalMs / 1000).toFixed(1)} s; ${result.newPrimary} replayed up to ${result.oldPrimary}'s last checkpoint ${result.checkpointLsn}`,
  ];
  if (result.repointed.length > 0) lines.push(`  PgBouncer: ${result.repointed.join(', ')} → ${result.newPrimary}, resumed`);
  lines.push(`  following ${result.newPrimary}: ${[...result.followed, ...(result.rejoined ? [result.oldPrimary] : [])].join(', ') || 'no standby'}`);
  if (result.leftOver.length > 0) {
    lines.push('', 'Not finished (the new primary stays; finish these by hand):');
    for (const item of result.leftOver) lines.push(`  - ${item.step}: ${item.error}`, `    by hand: ${item.manual}`);
  }
  return `${lines.join('\n')}\n`;
}
