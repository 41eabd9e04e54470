/**
 * Failover (issue 6 item 4; docs/failover.md "Failover"): the primary is down, a standby takes
 * its place. The manual command (`pgwarden failover`) and the watcher's automatic failover both
 * go through here.
 *
 * 1. chooseCandidate (pure) applies DESIGN §7 rule 10: only reachable standbys on the newest
 *    timeline among them, behind the primary's last known position (or, when nobody knows it,
 *    the most advanced standby) by at most maxLagBytes; the most advanced wins, ties in config
 *    order. A node forced with `to` is still refused when it does not qualify.
 * 2. planFailover looks at every node first and refuses, before anything changes, when a node
 *    answers as a writable primary (then it is a switchover, or a split brain), when a standby
 *    still streams from the old primary (it is not down for everyone), when no candidate
 *    qualifies, or when PgBouncer cannot be repointed. The plan lists every SQL statement and
 *    command in order.
 * 3. runFailover: with PgBouncer paused (withPause, rule 13) the candidate is promoted and
 *    PgBouncer pointed at it; then the other standbys follow the new primary. The old primary is
 *    not touched (it is down): it is recorded as deposed in the state directory, to be fenced and
 *    rejoined (src/cluster/fence.ts) when it comes back.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../atomic-file.js';
import { defaultStateDir } from '../config/alerting.js';
import { describeConnection, parseDsn } from '../config/conninfo.js';
import type { ClusterConfig, NodeConfig } from '../config/types.js';
import { UserError, messageOf } from '../errors.js';
import { formatBytes } from '../format/units.js';
import { number, stringOrNull } from '../probes/values.js';
import { upstreamConninfo } from './local-node.js';
import { allowQuickLogins, manualResume, PgBouncerControl, repointIni, repointPgBouncer, withPause, type Endpoint } from './pgbouncer-control.js';
import { quoteSql, throwIfAborted } from './processes.js';
import { defaultSlotName } from './replica.js';
import { ensureSlot, follow, lsnBytes, promote, readPosition, waitStreaming, withSession } from './roles.js';

// ---------------------------------------------------------------------------------------------
// Choosing the candidate (pure)

/** What pgwarden saw of one node when it looked for a candidate. */
export interface NodeStanding {
  readonly name: string;
  readonly reachable: boolean;
  /** null: not reachable, so not known. */
  readonly inRecovery: boolean | null;
  readonly timeline: number | null;
  readonly receivedLsn: string | null;
  readonly replayedLsn: string | null;
  readonly streaming: boolean;
}

/** A node weighed as the new primary: its standing, how far behind it is, and whether it qualifies (and why not). */
export interface FailoverCandidate extends NodeStanding {
  /** Bytes behind the reference position (the primary's last known LSN, else the most advanced standby); null when unknown. */
  readonly lagBytes: number | null;
  readonly eligible: boolean;
  /** Why it does not qualify; null when it does. */
  readonly reason: string | null;
}

export interface CandidateOptions {
  readonly maxLagBytes: number;
  /** The primary's last known flush position (the watcher knows it); undefined: the most advanced standby is the reference. */
  readonly lastPrimaryLsn?: string | undefined;
  /** Forces this node; it is still refused when it does not qualify. */
  readonly to?: string | undefined;
}

export interface CandidateChoice {
  readonly chosen?: FailoverCandidate;
  /** One line per node that was refused ("s2: on timeline 1, older than timeline 2"), or why none was chosen. */
  readonly refusals: string[];
  /** Every node weighed, in the order given. */
  readonly candidates: readonly FailoverCandidate[];
  /** What the lag was measured against. */
  readonly reference: string | null;
}

/** The furthest WAL position a standby has: what it received, or what it replayed when it has not streamed since it started. */
export function standingPosition(standing: NodeStanding): number | null {
  const positions = [standing.receivedLsn, standing.replayedLsn].filter((lsn): lsn is string => lsn !== null).map(lsnBytes);
  return positions.length === 0 ? null : Math.max(...positions);
}

/**
 * Rule 10: which standby may become the primary. Pure; `candidates` in config order (ties go to
 * the first). Only reachable standbys on the newest timeline among them, whose lag behind the
 * reference stays within maxLagBytes; the most advanced wins.
 */
export function chooseCandidate(candidates: readonly NodeStanding[], options: CandidateOptions): CandidateChoice {
  const standbys = candidates.filter((c) => c.reachable && c.inRecovery === true && standingPosition(c) !== null && c.timeline !== null);
  const newest = standbys.length === 0 ? null : Math.max(...standbys.map((c) => c.timeline ?? 0));
  const current = standbys.filter((c) => c.timeline === newest);
  let referenceBytes: number | null = null;
  let reference: string | null = null;
  if (options.lastPrimaryLsn !== undefined) {
    referenceBytes = lsnBytes(options.lastPrimaryLsn);
    reference = `the primary's last known position ${options.lastPrimaryLsn}`;
  } else if (current.length > 0) {
    const ahead = current.reduce((best, c) => ((standingPosition(c) ?? 0) > (standingPosition(best) ?? 0) ? c : best));
    referenceBytes = standingPosition(ahead);
    reference = `the most advanced standby, ${ahead.name}`;
  }
  const weighed = candidates.map((c): FailoverCandidate => {
    const position = standingPosition(c);
    const lagBytes = position === null || referenceBytes === null ? null : Math.max(0, referenceBytes - position);
    const refuse = (reason: string): FailoverCandidate => ({ ...c, lagBytes, eligible: false, reason });
    if (!c.reachable) return refuse('not reachable');
    if (c.inRecovery === false) return refuse('a primary (not in recovery), not a standby');
    if (c.inRecovery === null) return refuse('its role is not known');
    if (position === null) return refuse('it has received no WAL');
    if (c.timeline === null) return refuse('its timeline is not known');
    if (newest !== null && c.timeline < newest) return refuse(`on timeline ${c.timeline}, older than timeline ${newest} of another standby`);
    if (lagBytes !== null && lagBytes > options.maxLagBytes) {
      return refuse(`${formatBytes(lagBytes)} behind ${reference ?? 'the reference'}, beyond the limit of ${formatBytes(options.maxLagBytes)} (failover.maxLagBytes)`);
    }
    return { ...c, lagBytes, eligible: true, reason: null };
  });
  const refusals = weighed.filter((c) => !c.eligible).map((c) => `${c.name}: ${c.reason ?? ''}`);
  if (options.to !== undefined) {
    const forced = weighed.find((c) => c.name === options.to);
    if (forced === undefined) return { refusals: [`${options.to}: no such node among ${candidates.map((c) => c.name).join(', ') || 'none'}`], candidates: weighed, reference };
    if (!forced.eligible) return { refusals: [`${forced.name}: ${forced.reason ?? ''}`], candidates: weighed, reference };
    return { chosen: forced, refusals, candidates: weighed, reference };
  }
  const eligible = weighed.filter((c) => c.eligible);
  if (eligible.length === 0) return { refusals: refusals.length === 0 ? ['no standby is configured'] : refusals, candidates: weighed, reference };
  // Array.prototype.reduce keeps the first of equals: ties go to config order.
  const chosen = eligible.reduce((best, c) => ((standingPosition(c) ?? 0) > (standingPosition(best) ?? 0) ? c : best));
  return { chosen, refusals, candidates: weighed, reference };
}

// ---------------------------------------------------------------------------------------------
// The deposed-primary record

/** A node that was the primary until a failover promoted another: to be fenced and rejoined. */
export interface DeposedRecord {
  readonly node: string;
  readonly newPrimary: string;
  /** The new primary's timeline after the promotion. */
  readonly timeline: number;
  /** ISO time of the failover. */
  readonly at: string;
}

interface StoredDeposed {
  readonly version: 1;
  readonly cluster: string;
  readonly deposed: readonly DeposedRecord[];
}

/** The directory of the failover records: <stateDir>/failover (stateDir: alerting.state_dir, default $XDG_STATE_HOME/pgwarden). */
export function failoverStateDir(stateDir: string = defaultStateDir()): string {
  return join(stateDir, 'failover');
}

function deposedFile(cluster: ClusterConfig, stateDir: string | undefined): { dir: string; name: string } {
  return { dir: failoverStateDir(stateDir), name: `${encodeURIComponent(cluster.name)}.json` };
}

function nameOf(node: string | { readonly name: string }): string {
  return typeof node === 'string' ? node : node.name;
}

/** The nodes of `cluster` recorded as deposed primaries (none when there is no record). Pass config.alerting.stateDir as `stateDir`. */
export async function deposedNodes(cluster: ClusterConfig, stateDir?: string): Promise<readonly DeposedRecord[]> {
  const { dir, name } = deposedFile(cluster, stateDir);
  let text: string;
  try {
    text = await readFile(join(dir, name), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const stored = JSON.parse(text) as StoredDeposed;
  if (stored.version !== 1) throw new UserError(`${join(dir, name)}: unknown version ${String(stored.version)}`, 'move the file aside if it is not pgwarden\'s');
  return stored.deposed;
}

async function saveDeposed(cluster: ClusterConfig, records: readonly DeposedRecord[], stateDir: string | undefined): Promise<void> {
  const { dir, name } = deposedFile(cluster, stateDir);
  await mkdir(dir, { recursive: true });
  const stored: StoredDeposed = { version: 1, cluster: cluster.name, deposed: records };
  await writeFileAtomic(dir, name, `${JSON.stringify(stored, null, 2)}\n`);
}

/** Records that `node` was deposed by a failover to `newPrimary` (on `timeline`); replaces an older record of the node. */
export async function recordDeposed(cluster: ClusterConfig, node: string | { readonly name: string }, newPrimary: string | { readonly name: string }, timeline: number, stateDir?: string): Promise<DeposedRecord> {
  const record: DeposedRecord = { node: nameOf(node), newPrimary: nameOf(newPrimary), timeline, at: new Date().toISOString() };
  const others = (await deposedNodes(cluster, stateDir)).filter((r) => r.node !== record.node && r.node !== record.newPrimary);
  await saveDeposed(cluster, [...others, record], stateDir);
  return record;
}

/** Forgets the record of `node` (it rejoined as a standby). */
export async function clearDeposed(cluster: ClusterConfig, node: string | { readonly name: string }, stateDir?: string): Promise<void> {
  const records = await deposedNodes(cluster, stateDir);
  const kept = records.filter((r) => r.node !== nameOf(node));
  if (kept.length !== records.length) await saveDeposed(cluster, kept, stateDir);
}

// ---------------------------------------------------------------------------------------------
// Looking at the nodes

/** A node as planFailover (and fencing) sees it: its standing plus where its WAL receiver points. */
export interface NodeSurvey extends NodeStanding {
  readonly node: NodeConfig;
  /** Why it could not be reached. */
  readonly error: string | null;
  readonly systemIdentifier: string | null;
  /** The upstream its WAL receiver streams from now (pg_stat_wal_receiver), when it has one. */
  readonly sender: Endpoint | null;
  /** The upstream its primary_conninfo names (null without the privilege to read it, or when empty). */
  readonly configuredUpstream: Endpoint | null;
}

function sameHost(a: string, b: string): boolean {
  const key = (host: string): string => {
    const lower = host.trim().toLowerCase();
    return lower === 'localhost' || lower === '::1' || lower === '127.0.0.1' ? 'loopback' : lower;
  };
  return key(a) === key(b);
}

/** The configured node at `endpoint` (loopback spellings are one host). */
export function nodeAt(cluster: ClusterConfig, endpoint: Endpoint | null): NodeConfig | undefined {
  if (endpoint === null) return undefined;
  return cluster.nodes.find((n) => n.connection.port === endpoint.port && sameHost(n.connection.host, endpoint.host));
}

function endpointOf(node: NodeConfig): Endpoint {
  return { host: node.connection.host, port: node.connection.port };
}

function conninfoEndpoint(conninfo: string | null): Endpoint | null {
  if (conninfo === null || conninfo.trim() === '') return null;
  try {
    const pairs = parseDsn(conninfo, 'primary_conninfo');
    const host = pairs.get('host') ?? pairs.get('hostaddr');
    if (host === undefined) return null;
    return { host, port: Number(pairs.get('port') ?? '5432') };
  } catch {
    return null;
  }
}

/** Connects to every node of the cluster at once and reads its role, timeline, positions and upstream. */
export async function surveyNodes(cluster: ClusterConfig): Promise<readonly NodeSurvey[]> {
  return Promise.all(cluster.nodes.map(async (node): Promise<NodeSurvey> => {
    try {
      const position = await readPosition(node.connection);
      const extra = await withSession(node.connection, async (session) => {
        const [row] = await session.query({
          text: `select (select system_identifier::text from pg_control_system()) as system_identifier,
            (select sender_host from pg_stat_wal_receiver) as sender_host, (select sender_port from pg_stat_wal_receiver) as sender_port,
            (select setting from pg_settings where name = 'primary_conninfo') as primary_conninfo`,
        });
        return row;
      });
      const senderHost = extra === undefined ? null : stringOrNull(extra, 'sender_host');
      return {
        node, name: node.name, reachable: true, error: null,
        inRecovery: position.inRecovery, timeline: position.timeline, receivedLsn: position.receivedLsn, replayedLsn: position.replayedLsn, streaming: position.streaming,
        systemIdentifier: extra === undefined ? null : stringOrNull(extra, 'system_identifier'),
        sender: extra === undefined || senderHost === null || extra['sender_port'] === null ? null : { host: senderHost, port: number(extra, 'sender_port') },
        configuredUpstream: position.inRecovery && extra !== undefined ? conninfoEndpoint(stringOrNull(extra, 'primary_conninfo')) : null,
      };
    } catch (error) {
      return {
        node, name: node.name, reachable: false, error: messageOf(error),
        inRecovery: null, timeline: null, receivedLsn: null, replayedLsn: null, streaming: false,
        systemIdentifier: null, sender: null, configuredUpstream: null,
      };
    }
  }));
}

// ---------------------------------------------------------------------------------------------
// The plan

/** One step of the plan: what it does and the exact SQL or command. */
export interface FailoverStep {
  readonly title: string;
  readonly command: string;
}

/** A standby that follows the new primary after the promotion. */
export interface Follower {
  readonly node: NodeConfig;
  readonly slot: string;
  /** Its new primary_conninfo: never a password. */
  readonly conninfo: string;
}

export interface FailoverPlan {
  readonly cluster: ClusterConfig;
  readonly reason: 'manual' | 'automatic';
  /** The primary that is down: not touched, to be fenced and rejoined. */
  readonly oldPrimary: NodeConfig;
  readonly candidate: FailoverCandidate;
  readonly candidateNode: NodeConfig;
  /** Every node weighed, with why it was or was not chosen. */
  readonly candidates: readonly FailoverCandidate[];
  readonly reference: string | null;
  readonly followers: readonly Follower[];
  /** Standbys that received WAL the candidate does not have (only with --to): they cannot follow and must be rewound. */
  readonly toRejoin: readonly string[];
  /** Things the DBA should know before confirming (lost WAL with a forced candidate, unreachable standbys). */
  readonly warnings: readonly string[];
  /** PgBouncer's move, when the cluster has one. */
  readonly pgbouncer: { readonly from: Endpoint; readonly to: Endpoint; readonly ini: string } | undefined;
  readonly stateDir: string | undefined;
  readonly steps: readonly FailoverStep[];
}

export interface FailoverRequest {
  readonly cluster: ClusterConfig;
  readonly to?: string | undefined;
  readonly lastPrimaryLsn?: string | undefined;
  readonly reason: 'manual' | 'automatic';
  /** Where the deposed record goes: config.alerting.stateDir (default $XDG_STATE_HOME/pgwarden). */
  readonly stateDir?: string | undefined;
}

/** Refused before anything was changed. */
export class FailoverRefusedError extends UserError {}

/** Failed midway: the message says what state it left. */
export class FailoverFailedError extends UserError {}

/** Which configured node was the primary: the one the standbys' receivers name, else the only unreachable node. */
function findOldPrimary(cluster: ClusterConfig, surveys: readonly NodeSurvey[]): NodeConfig {
  const standbys = surveys.filter((s) => s.reachable && s.inRecovery === true);
  const named = new Set<string>();
  for (const s of standbys) {
    const upstream = nodeAt(cluster, s.sender) ?? nodeAt(cluster, s.configuredUpstream);
    const survey = surveys.find((other) => other.name === upstream?.name);
    // A standby streaming from another reachable standby is a cascade, not a pointer to the primary.
    if (upstream !== undefined && survey !== undefined && !survey.reachable) named.add(upstream.name);
  }
  const unreachable = surveys.filter((s) => !s.reachable).map((s) => s.name);
  const pick = named.size > 0 ? [...named] : unreachable;
  if (pick.length === 1) return cluster.nodes.find((n) => n.name === pick[0]) as NodeConfig;
  if (pick.length === 0) {
    throw new FailoverRefusedError(
      `cluster ${cluster.name}: every node answers and none is a primary, so pgwarden cannot tell which node failed`,
      'add the old primary to clusters[].nodes in the config (with its dsn), then run pgwarden failover again',
    );
  }
  throw new FailoverRefusedError(
    `cluster ${cluster.name}: ${pick.join(', ')} are all down and the standbys name none of them as their upstream, so pgwarden cannot tell which was the primary`,
    'check the standbys\' primary_conninfo, or promote by hand: pg_ctl promote on the standby you choose, after reading docs/failover.md',
  );
}

function refuseWritable(cluster: ClusterConfig, writable: readonly NodeSurvey[]): never {
  if (writable.length === 1) {
    const [primary] = writable;
    throw new FailoverRefusedError(
      `${primary?.name ?? '?'} answers as a writable primary (timeline ${primary?.timeline ?? '?'}): the primary is not down, so this is not a failover; nothing was changed`,
      `for a planned change of primary run pgwarden switchover --to NODE; if ${primary?.name ?? 'it'} is not the primary you expected, look at docs/failover.md before anything else`,
    );
  }
  const list = writable.map((s) => `${s.name} (timeline ${s.timeline ?? '?'})`).join(', ');
  throw new FailoverRefusedError(
    `cluster ${cluster.name}: split brain: ${list} all accept writes; a failover would make it worse; nothing was changed`,
    'fence the primary on the older timeline: pgwarden rejoin NODE --config FILE (docs/failover.md "Fencing and rejoining an old primary")',
  );
}

function pgbouncerAdmin(control: PgBouncerControl): string {
  const spec = control.config.connection;
  return `psql "host=${spec.host} port=${spec.port} user=${spec.user} dbname=pgbouncer"`;
}

/** Checks PgBouncer answers and its ini names the old primary; refused (nothing changed) otherwise. */
async function checkPgBouncer(cluster: ClusterConfig, from: Endpoint, to: Endpoint): Promise<{ from: Endpoint; to: Endpoint; ini: string } | undefined> {
  const config = cluster.pgbouncer;
  if (config === undefined) return undefined;
  if (config.ini === undefined) {
    throw new FailoverRefusedError(
      `cluster ${cluster.name} has a PgBouncer but no "ini" path for it, so pgwarden could not point it at the new primary; nothing was changed`,
      'add "ini": "/etc/pgbouncer/pgbouncer.ini" to the cluster\'s pgbouncer entry (clients would otherwise stay on the old primary, and write to it if it comes back)',
    );
  }
  const text = await readFile(config.ini, 'utf8').catch((error: unknown) => {
    throw new FailoverRefusedError(`PgBouncer's ${config.ini} cannot be read (${messageOf(error)}); nothing was changed`, 'fix pgbouncer.ini in the config, or run pgwarden where that file is');
  });
  if (repointIni(text, from, to).entries.length === 0 && repointIni(text, to, to).entries.length === 0) {
    throw new FailoverRefusedError(
      `${config.ini}: no [databases] entry points at the old primary ${from.host}:${from.port}; nothing was changed`,
      'make pgbouncer.ini name the primary by the host and port of its dsn in the pgwarden config',
    );
  }
  const control = new PgBouncerControl(config);
  try {
    await control.databases();
  } catch (error) {
    throw new FailoverRefusedError(`PgBouncer's admin console does not answer (${messageOf(error)}); nothing was changed`, 'start PgBouncer, or fix clusters[].pgbouncer.dsn');
  } finally {
    await control.close();
  }
  return { from, to, ini: config.ini };
}

/**
 * Looks at every node and builds the plan, or refuses (FailoverRefusedError, nothing changed):
 * a node answers as a writable primary, a standby still streams from the old primary, no standby
 * qualifies (rule 10), or PgBouncer could not be repointed.
 */
export async function planFailover(request: FailoverRequest): Promise<FailoverPlan> {
  const { cluster } = request;
  const surveys = await surveyNodes(cluster);
  const writable = surveys.filter((s) => s.reachable && s.inRecovery === false);
  if (writable.length > 0) refuseWritable(cluster, writable);
  const oldPrimary = findOldPrimary(cluster, surveys);
  for (const s of surveys) {
    if (!s.reachable || !s.streaming) continue;
    const upstream = nodeAt(cluster, s.sender);
    const upstreamSurvey = surveys.find((other) => other.name === upstream?.name);
    const cascade = upstreamSurvey !== undefined && upstreamSurvey.reachable && upstreamSurvey.inRecovery === true;
    if (!cascade) {
      const where = s.sender === null ? 'its upstream' : `${s.sender.host}:${s.sender.port}${upstream === undefined ? '' : ` (${upstream.name})`}`;
      throw new FailoverRefusedError(
        `${s.name} still streams WAL from ${where}: the primary is down for pgwarden but not for everyone (a network split between pgwarden and ${oldPrimary.name}?); nothing was changed`,
        `if ${oldPrimary.name} really must go, stop it on its host (pg_ctl stop -m immediate) and run pgwarden failover again; otherwise fix the network between pgwarden and ${oldPrimary.name}`,
      );
    }
  }
  const standings = surveys.filter((s) => s.name !== oldPrimary.name);
  const choice = chooseCandidate(standings, { maxLagBytes: cluster.failover.maxLagBytes, lastPrimaryLsn: request.lastPrimaryLsn, to: request.to });
  if (choice.chosen === undefined) {
    const why = choice.refusals.map((line) => `  - ${line}`).join('\n');
    throw new FailoverRefusedError(
      `cluster ${cluster.name}: no standby may be promoted (DESIGN rule 10: reachable, on the newest timeline, within ${formatBytes(cluster.failover.maxLagBytes)}); nothing was changed:\n${why}`,
      request.to === undefined ? 'bring a standby back, or, if you accept losing the WAL it lacks, raise failover.maxLagBytes for this run (docs/failover.md)' : `run pgwarden failover without --to to let pgwarden choose, or fix ${request.to}`,
    );
  }
  const candidate = choice.chosen;
  const candidateNode = cluster.nodes.find((n) => n.name === candidate.name) as NodeConfig;
  const candidatePosition = standingPosition(candidate) ?? 0;
  const followers: Follower[] = [];
  const toRejoin: string[] = [];
  const warnings: string[] = [];
  for (const s of surveys) {
    if (s.name === oldPrimary.name || s.name === candidate.name) continue;
    if (!s.reachable) {
      warnings.push(`${s.name} does not answer (${s.error ?? 'unreachable'}): point it at ${candidate.name} once it is back (pgwarden rejoin ${s.name})`);
      continue;
    }
    const upstream = nodeAt(cluster, s.sender) ?? nodeAt(cluster, s.configuredUpstream);
    // A cascade below another standby keeps its upstream; the candidate's own cascades follow its new timeline by themselves.
    if (upstream !== undefined && upstream.name !== oldPrimary.name) continue;
    const position = standingPosition(s) ?? 0;
    if (position > candidatePosition) {
      toRejoin.push(s.name);
      warnings.push(`${s.name} received ${formatBytes(position - candidatePosition)} of WAL that ${candidate.name} does not have: those transactions are lost, and ${s.name} must be rewound (pgwarden rejoin ${s.name})`);
      continue;
    }
    const slot = defaultSlotName(s.name);
    followers.push({ node: s.node, slot, conninfo: upstreamConninfo(candidateNode, s.name, cluster.failover) });
  }
  const pgbouncer = await checkPgBouncer(cluster, endpointOf(oldPrimary), endpointOf(candidateNode));
  const steps: FailoverStep[] = [];
  const admin = cluster.pgbouncer === undefined ? undefined : new PgBouncerControl(cluster.pgbouncer);
  if (admin !== undefined) steps.push({ title: `PgBouncer: PAUSE (waits at most ${Math.round(cluster.failover.pauseTimeoutMs / 1000)} s for transactions in flight)`, command: `${pgbouncerAdmin(admin)} -c PAUSE` });
  steps.push({ title: `promote ${candidate.name}, waiting until it accepts writes`, command: `${describeConnection(candidateNode.connection)}: select pg_promote(true, 60);` });
  steps.push({ title: `record ${oldPrimary.name} as deposed`, command: join(failoverStateDir(request.stateDir), `${encodeURIComponent(cluster.name)}.json`) });
  if (pgbouncer !== undefined && admin !== undefined) {
    steps.push({ title: `PgBouncer: point [databases] at ${candidate.name}`, command: `${pgbouncer.ini}: host=${pgbouncer.from.host} port=${pgbouncer.from.port} → host=${pgbouncer.to.host} port=${pgbouncer.to.port}, then ${pgbouncerAdmin(admin)} -c RELOAD` });
    steps.push({ title: 'PgBouncer: RESUME (on every path, also after an error)', command: `${pgbouncerAdmin(admin)} -c RESUME` });
  }
  for (const f of followers) {
    steps.push({ title: `${f.node.name}: a slot on ${candidate.name}`, command: `${describeConnection(candidateNode.connection)}: select pg_create_physical_replication_slot(${quoteSql(f.slot)}, true);` });
    steps.push({
      title: `${f.node.name}: follow ${candidate.name}`,
      command: `${describeConnection(f.node.connection)}: alter system set primary_conninfo = ${quoteSql(f.conninfo)}; alter system set primary_slot_name = ${quoteSql(f.slot)}; select pg_reload_conf();`,
    });
  }
  steps.push({ title: `${oldPrimary.name} is not touched (it is down): fence and rejoin it when it is back`, command: `pgwarden rejoin ${oldPrimary.name} --config FILE --cluster ${cluster.name}` });
  return {
    cluster, reason: request.reason, oldPrimary, candidate, candidateNode, candidates: choice.candidates, reference: choice.reference,
    followers, toRejoin, warnings, pgbouncer, stateDir: request.stateDir, steps,
  };
}

/** The plan as the DBA reads it before confirming. */
export function renderFailoverPlan(plan: FailoverPlan): string {
  const lines = [`Failover of cluster ${plan.cluster.name} (${plan.reason}): ${plan.oldPrimary.name} is down; promote ${plan.candidate.name}`, ''];
  lines.push(`Candidates (lag measured against ${plan.reference ?? 'nothing known'}; limit ${formatBytes(plan.cluster.failover.maxLagBytes)}):`);
  for (const c of plan.candidates) {
    const mark = c.name === plan.candidate.name ? '*' : c.eligible ? ' ' : 'x';
    const position = c.receivedLsn ?? c.replayedLsn ?? '-';
    lines.push(`  ${mark} ${c.name}  timeline ${c.timeline ?? '-'}  received ${position}  lag ${formatBytes(c.lagBytes)}${c.reason === null ? '' : `  (${c.reason})`}`);
  }
  if (plan.warnings.length > 0) {
    lines.push('', 'Warnings:');
    for (const w of plan.warnings) lines.push(`  ! ${w}`);
  }
  lines.push('', 'Steps:');
  plan.steps.forEach((step, i) => {
    lines.push(`  ${i + 1}. ${step.title}`);
    lines.push(`     ${step.command}`);
  });
  return `${lines.join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------------
// Running it

export interface FailoverRunOptions {
  readonly progress: (line: string) => void;
  /** Stops the run before the promotion; once promoted, the remaining steps run to their end. */
  readonly signal?: AbortSignal | undefined;
  /** When the failover began (for promotedAfterMs); default: when runFailover was called. */
  readonly startedAt?: number | undefined;
}

export interface FailoverResult {
  readonly cluster: string;
  readonly newPrimary: string;
  /** Down, not touched, recorded as deposed: to be fenced and rejoined. */
  readonly oldPrimary: string;
  readonly timeline: number;
  /** Milliseconds from the start to the new primary accepting writes. */
  readonly promotedAfterMs: number;
  /** The [databases] entries of pgbouncer.ini that now point at the new primary. */
  readonly pgbouncerEntries: readonly string[];
  readonly followed: readonly string[];
  /** Standbys that could not be pointed at the new primary, with why and what to do. */
  readonly notFollowed: readonly { readonly node: string; readonly error: string }[];
  readonly toRejoin: readonly string[];
  readonly deposed: DeposedRecord;
}

/** What the message of a failure after the promotion says about the state left behind. */
function promotedState(plan: FailoverPlan, timeline: number | string): string {
  return `${plan.candidate.name} IS the new primary (promoted, timeline ${timeline}, accepts writes); ${plan.oldPrimary.name} is down and must not start as a primary (pgwarden rejoin ${plan.oldPrimary.name})`;
}

/**
 * Runs the plan: PgBouncer paused (if any) while the candidate is promoted and PgBouncer pointed
 * at it, then the other standbys follow. A failure before the promotion changes nothing
 * (PgBouncer resumed); one after it says that the candidate is the new primary and what is left.
 */
export async function runFailover(plan: FailoverPlan, options: FailoverRunOptions): Promise<FailoverResult> {
  const { progress, signal } = options;
  const startedAt = options.startedAt ?? Date.now();
  const { cluster, candidateNode, oldPrimary } = plan;
  throwIfAborted(signal);
  let promotedAt: number | undefined;
  let timeline = 0;
  let deposed: DeposedRecord | undefined;
  let entries: readonly string[] = [];
  const promoteStep = async (): Promise<void> => {
    throwIfAborted(signal);
    progress(`promoting ${candidateNode.name}`);
    try {
      await promote(candidateNode.connection);
    } catch (error) {
      throw new FailoverFailedError(
        `the promotion of ${candidateNode.name} failed: ${messageOf(error)}; ${cluster.pgbouncer === undefined ? '' : 'PgBouncer was resumed and still points at the old primary; '}no other node was changed`,
        `check on ${candidateNode.name}: select pg_is_in_recovery(); if it returns false it is the new primary (then run pgwarden rejoin for ${oldPrimary.name} later), else run pgwarden failover again`,
      );
    }
    promotedAt = Date.now();
    timeline = (await readPosition(candidateNode.connection).catch(() => undefined))?.timeline ?? 0;
    progress(`${candidateNode.name} accepts writes (timeline ${timeline}) after ${((promotedAt - startedAt) / 1000).toFixed(1)} s`);
    // Recorded at once: whatever fails next, a later process knows the old primary must not come back as one.
    deposed = await recordDeposed(cluster, oldPrimary, candidateNode, timeline, plan.stateDir).catch((error: unknown) => {
      progress(`could not record ${oldPrimary.name} as deposed: ${messageOf(error)}`);
      return { node: oldPrimary.name, newPrimary: candidateNode.name, timeline, at: new Date().toISOString() };
    });
  };
  if (cluster.pgbouncer !== undefined && plan.pgbouncer !== undefined) {
    const control = new PgBouncerControl(cluster.pgbouncer);
    progress(`PgBouncer: PAUSE (at most ${Math.round(cluster.failover.pauseTimeoutMs / 1000)} s)`);
    let restoreLogins: ((entries: readonly string[], timeoutMs: number) => Promise<void>) | undefined;
    try {
      await withPause(control, cluster.failover.pauseTimeoutMs, async () => {
        await promoteStep();
        progress(`PgBouncer: pointing ${plan.pgbouncer?.ini ?? ''} at ${candidateNode.name}, RELOAD`);
        try {
          entries = await repointPgBouncer(control, plan.pgbouncer?.from ?? endpointOf(oldPrimary), endpointOf(candidateNode));
        } catch (error) {
          throw new FailoverFailedError(
            `${promotedState(plan, timeline)}; but PgBouncer could not be pointed at it: ${messageOf(error)}; PgBouncer was resumed and its clients still reach ${oldPrimary.name}`,
            `point [databases] in ${plan.pgbouncer?.ini ?? 'pgbouncer.ini'} at ${candidateNode.connection.host}:${candidateNode.connection.port} by hand and RELOAD; then point the other standbys at ${candidateNode.name}`,
          );
        }
        // Its logins to the dead primary failed: without this it would wait server_login_retry (15 s) before the new one.
        restoreLogins = await allowQuickLogins(control).catch((error: unknown) => {
          progress(`PgBouncer: could not lower server_login_retry (${messageOf(error)}); new server connections may wait up to its value`);
          return undefined;
        });
      });
    } catch (error) {
      if (promotedAt !== undefined && !(error instanceof FailoverFailedError)) {
        // The RESUME itself failed after a promotion: say both.
        throw new FailoverFailedError(`${promotedState(plan, timeline)}; ${messageOf(error)}`, `resume PgBouncer by hand now: ${manualResume(cluster.pgbouncer)}`);
      }
      throw error;
    } finally {
      await restoreLogins?.(entries, 5000).catch((error: unknown) => progress(`PgBouncer: could not put server_login_retry back (${messageOf(error)}); set it by hand with SET or RELOAD`));
      await control.close();
    }
    progress('PgBouncer: resumed');
  } else {
    await promoteStep();
  }
  const followed: string[] = [];
  const notFollowed: { node: string; error: string }[] = [];
  for (const f of plan.followers) {
    progress(`${f.node.name}: following ${candidateNode.name}`);
    try {
      await ensureSlot(candidateNode.connection, f.slot);
      await follow(f.node.connection, f.conninfo, f.slot);
      await waitStreaming(candidateNode.connection, f.node.name, f.slot, 60_000);
      followed.push(f.node.name);
    } catch (error) {
      notFollowed.push({ node: f.node.name, error: `${messageOf(error)}; point it at ${candidateNode.name} by hand (ALTER SYSTEM SET primary_conninfo, pg_reload_conf()) or run pgwarden rejoin ${f.node.name}` });
    }
  }
  return {
    cluster: cluster.name, newPrimary: candidateNode.name, oldPrimary: oldPrimary.name, timeline,
    promotedAfterMs: (promotedAt ?? Date.now()) - startedAt,
    pgbouncerEntries: entries, followed, notFollowed, toRejoin: plan.toRejoin,
    deposed: deposed ?? { node: oldPrimary.name, newPrimary: candidateNode.name, timeline, at: new Date().toISOString() },
  };
}

/** The summary printed after a failover. */
export function renderFailoverResult(result: FailoverResult): string {
  const lines = [
    `Failover done: ${result.newPrimary} is the primary of cluster ${result.cluster} (timeline ${result.timeline}); it accepted writes ${(result.promotedAfterMs / 1000).toFixed(1)} s after the start.`,
  ];
  if (result.pgbouncerEntries.length > 0) lines.push(`PgBouncer points at ${result.newPrimary} (${result.pgbouncerEntries.join(', ')}) and is resumed.`);
  if (result.followed.length > 0) lines.push(`Following ${result.newPrimary}: ${result.followed.join(', ')}.`);
  for (const f of result.notFollowed) lines.push(`NOT following ${result.newPrimary}: ${f.node}: ${f.error}`);
  for (const name of result.toRejoin) lines.push(`${name} has WAL the new primary lacks: rewind it with pgwarden rejoin ${name}.`);
  lines.push(`${result.oldPrimary} was not touched: it is recorded as deposed. When it comes back it must not take writes: run pgwarden rejoin ${result.oldPrimary} (fences it if it is writable, then pg_rewind and start as a standby).`);
  return `${lines.join('\n')}\n`;
}

