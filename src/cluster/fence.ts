/**
 * Fencing and rejoining an old primary (issue 6 item 4; docs/failover.md "Fencing and rejoining an
 * old primary"). After a failover the old primary may come back writable on its old timeline: two
 * primaries, the split brain DESIGN §7 rule 9 forbids. Fencing stops it from taking writes:
 * a node on this host (dataDir) is stopped at once (pg_ctl stop -m immediate); a remote one gets
 * a soft fence over SQL (default_transaction_read_only = on, reload, its client sessions
 * terminated), which a session can still undo, so the DBA is told to stop it on its host.
 * Rejoining makes it a standby of the new primary through pg_rewind only (rule 11): done by
 * pgwarden for a local node, printed as commands for a remote one.
 *
 * Nothing is fenced before both facts are verified: the node answers as a writable primary, and
 * another node is a writable primary on a newer timeline of the same system. The only primary is
 * never fenced.
 */
import { readFile, realpath } from 'node:fs/promises';
import { join } from 'node:path';
import type { ClusterConfig, NodeConfig } from '../config/types.js';
import { describeConnection } from '../config/conninfo.js';
import { UserError, messageOf } from '../errors.js';
import { number } from '../probes/values.js';
import { clearDeposed, deposedNodes, surveyNodes, type DeposedRecord, type NodeSurvey } from './failover.js';
import { isRunning, localNode, rejoinAsStandby, stopLocal, upstreamConninfo } from './local-node.js';
import { quoteConf, quoteShell, quoteSql, throwIfAborted } from './processes.js';
import { defaultSlotName } from './replica.js';
import { withSession } from './roles.js';

// ---------------------------------------------------------------------------------------------
// Which primary to fence (pure)

/** A writable primary as the split-brain check sees it. */
export interface WritablePrimary {
  readonly name: string;
  /** null: not known (then nothing is fenced). */
  readonly timeline: number | null;
}

export interface FenceInput {
  /** The nodes that answer as writable primaries now. */
  readonly primaries: readonly WritablePrimary[];
  /** The deposed records of the cluster (recordDeposed). */
  readonly deposed?: readonly DeposedRecord[];
}

/** The primary to fence and the one that stays. */
export interface FenceDecision {
  readonly node: string;
  readonly keep: string;
  readonly reason: string;
}

/** fenceTarget's answer with the reason when it fences nothing. */
export function explainFence(input: FenceInput): { readonly decision: FenceDecision | undefined; readonly reason: string } {
  const { primaries } = input;
  if (primaries.length === 0) return { decision: undefined, reason: 'no writable primary' };
  if (primaries.length === 1) return { decision: undefined, reason: `${primaries[0]?.name ?? ''} is the only primary: never fenced` };
  const list = primaries.map((p) => `${p.name} (timeline ${p.timeline ?? '?'})`).join(', ');
  const unknown = primaries.filter((p) => p.timeline === null);
  if (unknown.length > 0) return { decision: undefined, reason: `split brain: ${list}; the timeline of ${unknown.map((p) => p.name).join(', ')} is not known: a human decides` };
  const newest = Math.max(...primaries.map((p) => p.timeline ?? 0));
  const top = primaries.filter((p) => p.timeline === newest);
  if (top.length > 1) {
    return { decision: undefined, reason: `split brain: ${top.map((p) => p.name).join(' and ')} accept writes on the same timeline ${newest}: pgwarden cannot tell which is the real primary; a human decides (compare their data, then fence one with pgwarden rejoin NODE)` };
  }
  const keep = top[0] as WritablePrimary;
  const contradiction = (input.deposed ?? []).find((record) => record.node === keep.name);
  if (contradiction !== undefined) {
    return { decision: undefined, reason: `split brain: ${list}; ${keep.name} has the newest timeline but is recorded as deposed by a failover to ${contradiction.newPrimary} at ${contradiction.at}: pgwarden will not guess; a human decides` };
  }
  // The oldest timeline first; with three primaries the next call fences the next one.
  const older = [...primaries].filter((p) => p.name !== keep.name).sort((a, b) => (a.timeline ?? 0) - (b.timeline ?? 0));
  const target = older[0] as WritablePrimary;
  const recorded = (input.deposed ?? []).some((record) => record.node === target.name) ? `, and recorded as deposed by a failover to ${keep.name}` : '';
  const reason = `split brain: ${list}; ${target.name} is on an older timeline than ${keep.name}${recorded}`;
  return { decision: { node: target.name, keep: keep.name, reason }, reason };
}

/**
 * Pure: of writable primaries, which one to fence: one on an older timeline than the only
 * primary on the newest (a promotion always starts a new timeline). undefined: fence none — a
 * single primary, equal newest timelines, an unknown timeline, or a deposed record naming the
 * newest as deposed: a human decides, pgwarden never guesses.
 */
export function fenceTarget(input: FenceInput): FenceDecision | undefined {
  return explainFence(input).decision;
}

// ---------------------------------------------------------------------------------------------
// Fencing

export interface FenceRequest {
  readonly cluster: ClusterConfig;
  /** The old primary that came back writable (its name or its config). */
  readonly node: string | NodeConfig;
  /** The primary on the newer timeline. */
  readonly newPrimary: string | NodeConfig;
  readonly progress: (line: string) => void;
  readonly signal?: AbortSignal | undefined;
  /** Where the deposed records are: config.alerting.stateDir. */
  readonly stateDir?: string | undefined;
}

export interface FenceResult {
  readonly node: string;
  /** stopped: a local node, stopped immediately; read-only: a remote node's soft fence. */
  readonly how: 'stopped' | 'read-only';
  /** Client sessions terminated by a soft fence. */
  readonly terminated: number;
  readonly message: string;
}

/** Refused: nothing was changed. */
export class FenceRefusedError extends UserError {}

function nodeNamed(cluster: ClusterConfig, ref: string | NodeConfig): NodeConfig {
  const name = typeof ref === 'string' ? ref : ref.name;
  const node = cluster.nodes.find((n) => n.name === name);
  if (node === undefined) throw new FenceRefusedError(`cluster ${cluster.name} has no node named "${name}"`, `use one of ${cluster.nodes.map((n) => n.name).join(', ')}`);
  return node;
}

function surveyOf(surveys: readonly NodeSurvey[], name: string): NodeSurvey {
  return surveys.find((s) => s.name === name) as NodeSurvey;
}

/** The port of the postmaster running on a data directory (line 4 of postmaster.pid), undefined when none runs. */
async function postmasterPort(dataDir: string): Promise<number | undefined> {
  const text = await readFile(join(dataDir, 'postmaster.pid'), 'utf8').catch(() => undefined);
  const port = Number(text?.split('\n')[3]);
  return Number.isInteger(port) && port > 0 ? port : undefined;
}

/** Verifies the two facts fencing needs, on the nodes as they answer now; returns the node's survey. */
async function verifySplitBrain(cluster: ClusterConfig, node: NodeConfig, newPrimary: NodeConfig, stateDir: string | undefined): Promise<NodeSurvey> {
  if (node.name === newPrimary.name) throw new FenceRefusedError(`${node.name} cannot be fenced in favour of itself`, 'name the node to fence and the primary that stays');
  const surveys = await surveyNodes(cluster);
  const old = surveyOf(surveys, node.name);
  const current = surveyOf(surveys, newPrimary.name);
  if (!old.reachable) throw new FenceRefusedError(`${node.name} does not answer (${old.error ?? 'unreachable'}): it takes no writes, there is nothing to fence`, `rejoin it when it is back, or now if it is a stopped local node: pgwarden rejoin ${node.name}`);
  if (old.inRecovery !== false) throw new FenceRefusedError(`${node.name} is a standby (in recovery), not a writable primary: nothing to fence`, `pgwarden rejoin ${node.name} makes it follow ${newPrimary.name}`);
  if (!current.reachable || current.inRecovery !== false) {
    throw new FenceRefusedError(
      `${newPrimary.name} is not a reachable writable primary (${current.reachable ? 'it is in recovery' : current.error ?? 'unreachable'}), so ${node.name} may be the only primary: it is never fenced; nothing was changed`,
      'if the primary is down, run pgwarden failover instead',
    );
  }
  if (old.systemIdentifier !== null && current.systemIdentifier !== null && old.systemIdentifier !== current.systemIdentifier) {
    throw new FenceRefusedError(`${node.name} and ${newPrimary.name} are different database systems (system identifiers ${old.systemIdentifier} and ${current.systemIdentifier}); nothing was changed`, 'fix the cluster\'s nodes in the config');
  }
  const { decision, reason } = explainFence({ primaries: [{ name: node.name, timeline: old.timeline }, { name: newPrimary.name, timeline: current.timeline }], deposed: await deposedNodes(cluster, stateDir) });
  if (decision?.node !== node.name) throw new FenceRefusedError(`${node.name} is not fenced: ${reason}; nothing was changed`, 'compare the two primaries by hand (docs/failover.md "Fencing and rejoining an old primary")');
  return old;
}

/**
 * Stops an old primary that came back writable from taking writes, after verifying the split
 * brain (FenceRefusedError otherwise, nothing changed): stopped at once when it is on this host,
 * else made read-only with its client sessions terminated (a soft fence).
 */
export async function fenceNode(request: FenceRequest): Promise<FenceResult> {
  const { cluster, progress, signal } = request;
  const node = nodeNamed(cluster, request.node);
  const newPrimary = nodeNamed(cluster, request.newPrimary);
  const old = await verifySplitBrain(cluster, node, newPrimary, request.stateDir);
  throwIfAborted(signal);
  if (node.dataDir !== undefined) {
    const local = await localNode(node);
    // The data directory must be the one serving the node's port, or pgwarden would stop another server.
    const port = await postmasterPort(local.dataDir);
    if (port !== node.connection.port) {
      throw new FenceRefusedError(
        `${local.dataDir} (dataDir of ${node.name}) ${port === undefined ? 'has no running postmaster' : `runs a server on port ${port}`}, but ${node.name} answers on port ${node.connection.port}: the config is wrong; nothing was changed`,
        `fix nodes[].dataDir of ${node.name}, or stop it on its host: pg_ctl stop -m immediate -D <its data directory>`,
      );
    }
    progress(`fencing ${node.name} (timeline ${old.timeline ?? '?'}): pg_ctl stop -m immediate`);
    await stopLocal(local, 'immediate', signal);
    if (await isRunning(local)) throw new UserError(`${node.name} still runs after pg_ctl stop -m immediate`, `stop it by hand now: pg_ctl stop -m immediate -D ${local.dataDir}`);
    return { node: node.name, how: 'stopped', terminated: 0, message: `${node.name} was stopped (immediate): it takes no writes` };
  }
  progress(`fencing ${node.name} over SQL (soft fence): default_transaction_read_only = on, client sessions terminated`);
  const terminated = await withSession(node.connection, async (session) => {
    // One statement at a time: ALTER SYSTEM cannot run in the implicit transaction of a multi-statement query.
    await session.script('alter system set default_transaction_read_only = on');
    await session.script('select pg_reload_conf()');
    const [row] = await session.query({
      text: `select count(*) filter (where pg_terminate_backend(pid))::int as terminated
        from pg_stat_activity where backend_type = 'client backend' and pid <> pg_backend_pid()`,
    });
    return row === undefined ? 0 : number(row, 'terminated');
  });
  return {
    node: node.name, how: 'read-only', terminated,
    message: `${node.name} is soft-fenced: new transactions are read-only and ${terminated} client session(s) were terminated; a session can still SET default_transaction_read_only = off, so stop it on its host now (pg_ctl stop -m immediate)`,
  };
}

// ---------------------------------------------------------------------------------------------
// Rejoining

/** The same as a fencing request: the node, the primary it rejoins, progress, abort, state. */
export type RejoinRequest = FenceRequest;

export interface RejoinResult {
  readonly node: string;
  /** rewound: pgwarden rewound and started it as a standby; already: it streams from the new primary; manual: the commands to run on its host. */
  readonly how: 'rewound' | 'already' | 'manual';
  readonly commands: readonly string[];
  readonly message: string;
}

/** The commands that rejoin a node on another host, to run there as the server account. */
export function manualRejoinCommands(cluster: ClusterConfig, node: NodeConfig, newPrimary: NodeConfig): string[] {
  const dir = node.dataDir ?? '<data directory>';
  const p = newPrimary.connection;
  const slot = defaultSlotName(node.name);
  const conninfo = upstreamConninfo(newPrimary, node.name, cluster.failover);
  const source = `host=${p.host} port=${p.port} user=${cluster.failover.replicationUser ?? p.user} dbname=${p.database}`;
  return [
    `# on ${node.name}'s host, as the server account (the password comes from ~/.pgpass, never the command line)`,
    `pg_ctl stop -D ${quoteShell(dir)} -m immediate`,
    `cp -p ${quoteShell(`${dir}/postgresql.conf`)} ${quoteShell(`${dir}/postgresql.auto.conf`)} ${quoteShell(`${dir}/pg_hba.conf`)} /tmp/   # pg_rewind copies the source's configuration files`,
    `pg_rewind --target-pgdata ${quoteShell(dir)} --source-server ${quoteShell(source)} --progress`,
    `cp -p /tmp/postgresql.conf /tmp/postgresql.auto.conf /tmp/pg_hba.conf ${quoteShell(dir)}/`,
    `echo ${quoteShell(`primary_conninfo = ${quoteConf(conninfo)}`)} >> ${quoteShell(`${dir}/postgresql.auto.conf`)}`,
    `echo ${quoteShell(`primary_slot_name = ${quoteConf(slot)}`)} >> ${quoteShell(`${dir}/postgresql.auto.conf`)}`,
    `touch ${quoteShell(`${dir}/standby.signal`)}`,
    `# on ${newPrimary.name} (${describeConnection(p)}):`,
    `select pg_create_physical_replication_slot(${quoteSql(slot)}, true) where not exists (select 1 from pg_replication_slots where slot_name = ${quoteSql(slot)});`,
    `# back on ${node.name}'s host:`,
    `pg_ctl start -D ${quoteShell(dir)}`,
  ];
}

/**
 * Makes `node` a standby of `newPrimary` (rule 11): rewound and started by pgwarden when it is on
 * this host, else the commands to run there. Refused while the node is writable (fence it
 * first) or when `newPrimary` is not a writable primary.
 */
export async function rejoinNode(request: RejoinRequest): Promise<RejoinResult> {
  const { cluster, progress, signal } = request;
  const node = nodeNamed(cluster, request.node);
  const newPrimary = nodeNamed(cluster, request.newPrimary);
  if (node.name === newPrimary.name) throw new FenceRefusedError(`${node.name} cannot rejoin itself`, 'name the primary it should follow');
  const surveys = await surveyNodes(cluster);
  const old = surveyOf(surveys, node.name);
  const current = surveyOf(surveys, newPrimary.name);
  if (!current.reachable || current.inRecovery !== false) {
    throw new FenceRefusedError(`${newPrimary.name} is not a reachable writable primary (${current.reachable ? 'it is in recovery' : current.error ?? 'unreachable'}): ${node.name} has nothing to rejoin; nothing was changed`, 'run pgwarden failover first if the cluster has no primary');
  }
  if (old.reachable && old.inRecovery === false && node.dataDir !== undefined) {
    throw new FenceRefusedError(`${node.name} accepts writes: fence it first; nothing was changed`, `pgwarden rejoin ${node.name} fences it (stopped at once) before it rewinds it`);
  }
  if (old.reachable && old.inRecovery === true && old.streaming) {
    const streamsFromNew = old.sender !== null && old.sender.port === newPrimary.connection.port;
    if (streamsFromNew) {
      await clearDeposed(cluster, node, request.stateDir);
      return { node: node.name, how: 'already', commands: [], message: `${node.name} is already a standby streaming from ${newPrimary.name}` };
    }
  }
  if (node.dataDir === undefined) {
    return {
      node: node.name, how: 'manual', commands: manualRejoinCommands(cluster, node, newPrimary),
      message: `${node.name} has no dataDir in the config, so pgwarden cannot rewind it from here: run these commands on its host`,
    };
  }
  throwIfAborted(signal);
  const local = await localNode(node);
  const dataDir = await realpath(local.dataDir).catch(() => local.dataDir);
  progress(`rejoining ${node.name} (${dataDir}) as a standby of ${newPrimary.name}`);
  try {
    await rejoinAsStandby(local, newPrimary, cluster.failover, progress, signal);
  } catch (error) {
    throw new UserError(
      `the rejoin of ${node.name} stopped: ${messageOf(error)}; ${node.name} is left stopped (and marked standby when the rewind had run), never started as a primary`,
      error instanceof UserError && error.hint !== undefined ? error.hint : `fix the cause and run pgwarden rejoin ${node.name} again; or re-create it with pgwarden replica create`,
    );
  }
  await clearDeposed(cluster, node, request.stateDir);
  return { node: node.name, how: 'rewound', commands: [], message: `${node.name} was rewound with pg_rewind and streams from ${newPrimary.name} as a standby` };
}
