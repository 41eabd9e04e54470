/**
 * A cluster's topology, discovered live (issue 6 item 1): from the latest server and replication
 * snapshots of every configured node, who is primary, which upstream each standby streams from
 * (cascades included), what lags, and what is wrong: two writable primaries (split brain, DESIGN
 * §7 rule 9), a standby on an older timeline or of another system, a standby connected to nothing,
 * a node nobody sees. Pure: the console's topology monitor and the tests feed it results.
 *
 * How a standby is tied to its upstream, most trusted first:
 * 1. its own WAL receiver names the upstream: sender_host and sender_port equal to a configured
 *    node's host and port;
 * 2. a row of the upstream's pg_stat_replication belongs to it: the row's WAL sender uses the slot
 *    the standby's receiver names, or the row's application_name is the node's name (the usual
 *    primary_conninfo setting), or — when one row and one standby remain unmatched on that
 *    upstream — by elimination.
 * The matched row gives the lag, the sync state and the stream's state. Rows matching no
 * configured node are shown as standbys outside the config.
 */
import type { ReplicationSnapshot, Standby } from '../probes/replication.js';
import type { ServerSnapshot } from '../probes/server.js';
import type { ProbeResult } from '../probes/types.js';

/** What pgwarden saw of one configured node. */
export interface NodeObservation {
  readonly name: string;
  /** The configured host and port: how the other nodes' WAL receivers name this node. */
  readonly host: string;
  readonly port: number;
  /** Undefined: not probed yet. */
  readonly server: ProbeResult<ServerSnapshot> | undefined;
  readonly replication: ProbeResult<ReplicationSnapshot> | undefined;
}

/** primary: accepts writes; standby: in recovery; unknown: not reachable and seen by nobody. */
export type TopologyRole = 'primary' | 'standby' | 'unknown';

export interface TopologyNode {
  /** The node's name for configured nodes; "<upstream>/pid <n>" for a WAL sender's client outside the config. */
  readonly key: string;
  /** The configured name, or the application name (else the client address) of a standby outside the config. */
  readonly name: string;
  readonly configured: boolean;
  /** ok: pgwarden's probes answer; pending: not probed yet; unreachable: they fail (see `error`); outside: not configured, seen by its upstream only. */
  readonly status: 'ok' | 'pending' | 'unreachable' | 'outside';
  readonly error: string | null;
  readonly role: TopologyRole;
  readonly timeline: number | null;
  readonly systemIdentifier: string | null;
  /** The key of the node it streams from, or null (a primary, or a standby whose upstream is not known). */
  readonly upstream: string | null;
  /** The upstream's host:port as this standby's receiver names it, when that is no configured node. */
  readonly upstreamAddress: string | null;
  /** How far replay is behind the upstream, as the upstream measures it; null when no WAL sender row was matched. */
  readonly lag: { readonly bytes: number | null; readonly seconds: number | null } | null;
  /** async, potential, sync, quorum (from the upstream's row). */
  readonly syncState: string | null;
  /** The replication slot it streams on. */
  readonly slot: string | null;
  /** The stream: the upstream's WAL sender state (streaming, catchup…), else the receiver's status; null for a primary. */
  readonly state: string | null;
}

/** One line of the tree: a node and how deep it sits (0 for a primary or a node without a known upstream). */
export interface TopologyLine {
  readonly node: TopologyNode;
  readonly depth: number;
  /** Whether it is the last child of its parent (for drawing the branches). */
  readonly last: boolean;
  /** For each ancestor level below the root, whether a later sibling follows there (a pipe is drawn). */
  readonly pipes: readonly boolean[];
}

export type TopologyProblemKind = 'split-brain' | 'no-primary' | 'old-timeline' | 'system-identifier' | 'disconnected' | 'unknown-upstream' | 'unseen';

export interface TopologyProblem {
  readonly kind: TopologyProblemKind;
  readonly severity: 'critical' | 'warning';
  /** The configured nodes it is about. */
  readonly nodes: readonly string[];
  /** One line: what, on which nodes, and the first thing to do. */
  readonly message: string;
}

export interface Topology {
  readonly nodes: readonly TopologyNode[];
  /** Depth first: each primary with its standbys (cascades deeper), then the nodes without a known upstream. */
  readonly lines: readonly TopologyLine[];
  /** The reachable nodes that accept writes, in config order. */
  readonly primaries: readonly string[];
  /** Critical first, then warnings; each in config order. */
  readonly problems: readonly TopologyProblem[];
}

/** A cluster's topology as the console shows it. */
export interface TopologyView {
  readonly cluster: string;
  readonly topology: Topology;
}

/** The client programs that stream WAL without being standbys: never matched to a node by elimination. */
const walClients = new Set(['pg_receivewal', 'pg_basebackup', 'pg_recvlogical', 'pgwarden-receivewal']);

function freshSnapshot<S>(result: ProbeResult<S> | undefined): S | undefined {
  return result?.status === 'ok' ? result.snapshot : undefined;
}

/** Loopback spellings are one host: a receiver says 127.0.0.1 where the config says localhost. */
function hostKey(host: string): string {
  const lower = host.trim().toLowerCase();
  return lower === 'localhost' || lower === '::1' || lower === '127.0.0.1' ? 'loopback' : lower;
}

/** Whether a WAL sender row is a client program (a backup, pg_receivewal) rather than a standby. */
function isWalClient(row: Standby): boolean {
  return row.state === 'backup' || walClients.has(row.application) || row.application.startsWith('pgwarden');
}

interface Observed {
  readonly observation: NodeObservation;
  readonly server: ServerSnapshot | undefined;
  readonly replication: ReplicationSnapshot | undefined;
  readonly status: 'ok' | 'pending' | 'unreachable';
  readonly error: string | null;
  readonly role: TopologyRole;
}

function observe(observation: NodeObservation): Observed {
  const server = freshSnapshot(observation.server);
  const replication = freshSnapshot(observation.replication);
  const failed = [observation.server, observation.replication].find((result) => result?.status === 'error');
  const anyResult = observation.server !== undefined && observation.server.status !== 'pending';
  // The server probe decides reachability: the replication probe may be refused (privilege) on a server that answers.
  let status: Observed['status'] = 'pending';
  if (server !== undefined || replication !== undefined) status = 'ok';
  else if (anyResult || failed !== undefined) status = 'unreachable';
  let error: string | null = null;
  if (status === 'unreachable') {
    if (failed?.status === 'error') error = failed.error.message;
    else if (observation.server?.status === 'unsupported') error = observation.server.unsupported.reason;
  }
  // The replication probe reads the role on every run (2 s), the server probe less often.
  const role: TopologyRole = replication?.role ?? server?.role ?? 'unknown';
  return { observation, server, replication, status, error, role };
}

/** The WAL sender rows of a node: a primary's standbys, or a cascading standby's. */
function senderRows(replication: ReplicationSnapshot | undefined): readonly Standby[] {
  if (replication === undefined) return [];
  return replication.role === 'primary' ? replication.standbys : (replication.standbys ?? []);
}

/** The slot a WAL sender streams on, from the upstream's slots. */
function slotOfSender(replication: ReplicationSnapshot | undefined, pid: number): string | null {
  return replication?.slots.find((slot) => slot.active && slot.activePid === pid)?.name ?? null;
}

/** The standby's receiver, when it is a standby with one. */
function receiverOf(node: Observed): { readonly host: string | null; readonly port: number | null; readonly slot: string | null; readonly status: string | null } | null {
  const replication = node.replication;
  if (replication?.role !== 'standby' || replication.receiver === null) return null;
  const receiver = replication.receiver;
  return { host: receiver.senderHost, port: receiver.senderPort, slot: receiver.slotName, status: receiver.status };
}

/** Builds the topology from every configured node's latest results, in config order. */
export function buildTopology(observations: readonly NodeObservation[]): Topology {
  const nodes = observations.map(observe);
  const byName = new Map(nodes.map((node) => [node.observation.name, node]));

  // 1. What each standby's receiver says of its upstream.
  const upstreamByReceiver = new Map<string, string>();
  const foreignUpstream = new Map<string, string>();
  for (const node of nodes) {
    const receiver = receiverOf(node);
    if (receiver === null || receiver.host === null || receiver.port === null) continue;
    const host = hostKey(receiver.host);
    const port = receiver.port;
    const upstream = nodes.find((other) => other !== node && hostKey(other.observation.host) === host && other.observation.port === port);
    if (upstream !== undefined) upstreamByReceiver.set(node.observation.name, upstream.observation.name);
    else foreignUpstream.set(node.observation.name, `${receiver.host}:${port}`);
  }

  // 2. Which row of which upstream's pg_stat_replication belongs to which configured node.
  const matched = new Map<string, { readonly upstream: string; readonly row: Standby; readonly slot: string | null }>();
  const outside: TopologyNode[] = [];
  for (const upstream of nodes) {
    if (upstream.status !== 'ok') continue;
    const upstreamName = upstream.observation.name;
    const rows = senderRows(upstream.replication);
    const free = new Set(rows);
    const claim = (row: Standby, name: string): void => {
      matched.set(name, { upstream: upstreamName, row, slot: slotOfSender(upstream.replication, row.pid) });
      free.delete(row);
    };
    const claimable = (name: string | undefined): name is string => {
      if (name === undefined || name === upstreamName || matched.has(name) || byName.get(name)?.role === 'primary') return false;
      const named = upstreamByReceiver.get(name);
      return named === undefined || named === upstreamName;
    };
    for (const row of rows) {
      const slot = slotOfSender(upstream.replication, row.pid);
      // Slot names are per server: two upstreams may each have one of the same name.
      const bySlot = slot === null ? undefined : nodes.filter((node) => receiverOf(node)?.slot === slot).map((node) => node.observation.name).find(claimable);
      if (claimable(bySlot)) {
        claim(row, bySlot);
        continue;
      }
      const byApplication = row.application === '' ? undefined : nodes.find((node) => node.observation.name.toLowerCase() === row.application.toLowerCase())?.observation.name;
      if (claimable(byApplication)) claim(row, byApplication);
    }
    // Elimination: one standby row left and one standby that names this upstream, unmatched.
    const leftRows = [...free].filter((row) => !isWalClient(row));
    const leftStandbys = [...upstreamByReceiver].filter(([name, up]) => up === upstreamName && !matched.has(name)).map(([name]) => name);
    const [onlyRow] = leftRows;
    const [onlyStandby] = leftStandbys;
    if (leftRows.length === 1 && leftStandbys.length === 1 && onlyRow !== undefined && onlyStandby !== undefined) claim(onlyRow, onlyStandby);
    // Rows left while configured standbys name this upstream are theirs, just not told apart
    // (no slot, no application_name): listing them again as strangers would double them.
    const ambiguous = leftStandbys.some((name) => !matched.has(name));
    for (const row of free) {
      if (ambiguous && !isWalClient(row)) continue;
      outside.push(outsideNode(upstreamName, row, slotOfSender(upstream.replication, row.pid)));
    }
  }

  // 3. Each configured node as the tree shows it.
  const topologyNodes: TopologyNode[] = nodes.map((node) => {
    const name = node.observation.name;
    const row = matched.get(name);
    const upstream = upstreamByReceiver.get(name) ?? row?.upstream ?? null;
    const sameUpstream = row !== undefined && row.upstream === upstream;
    const receiver = receiverOf(node);
    const seenStreaming = sameUpstream && node.status !== 'ok';
    const role: TopologyRole = node.role === 'unknown' && seenStreaming ? 'standby' : node.role;
    return {
      key: name,
      name,
      configured: true,
      status: node.status,
      error: node.error,
      role,
      timeline: node.server?.timeline ?? (node.replication?.role === 'standby' ? (node.replication.receiver?.receivedTimeline ?? null) : null),
      systemIdentifier: node.server?.systemIdentifier ?? null,
      upstream: role === 'primary' ? null : upstream,
      upstreamAddress: role === 'primary' || upstream !== null ? null : (foreignUpstream.get(name) ?? null),
      lag: sameUpstream ? row.row.lag : null,
      syncState: sameUpstream ? row.row.syncState : null,
      slot: receiver?.slot ?? (sameUpstream ? row.slot : null),
      state: role === 'primary' ? null : sameUpstream ? row.row.state : (receiver?.status ?? null),
    };
  });
  const all = [...topologyNodes, ...outside];
  const primaries = topologyNodes.filter((node) => node.status === 'ok' && node.role === 'primary').map((node) => node.name);
  return { nodes: all, lines: treeLines(all), primaries, problems: problemsOf(topologyNodes, nodes, byName, primaries) };
}

/** A WAL sender's client that matches no configured node. */
function outsideNode(upstream: string, row: Standby, slot: string | null): TopologyNode {
  const application = row.application === '' || row.application === 'walreceiver' ? null : row.application;
  return {
    key: `${upstream}/pid ${row.pid}`,
    name: application ?? row.client ?? `pid ${row.pid}`,
    configured: false,
    status: 'outside',
    error: null,
    role: isWalClient(row) ? 'unknown' : 'standby',
    timeline: null,
    systemIdentifier: null,
    upstream,
    upstreamAddress: null,
    lag: row.lag,
    syncState: row.syncState,
    slot,
    state: row.state,
  };
}

/** Depth first from the primaries, then from the nodes without a known upstream; a cycle is cut where it closes. */
function treeLines(nodes: readonly TopologyNode[]): TopologyLine[] {
  const keys = new Set(nodes.map((node) => node.key));
  const children = new Map<string, TopologyNode[]>();
  for (const node of nodes) {
    if (node.upstream === null || !keys.has(node.upstream)) continue;
    children.set(node.upstream, [...(children.get(node.upstream) ?? []), node]);
  }
  const lines: TopologyLine[] = [];
  const placed = new Set<string>();
  const walk = (node: TopologyNode, depth: number, last: boolean, pipes: readonly boolean[]): void => {
    if (placed.has(node.key)) return;
    placed.add(node.key);
    lines.push({ node, depth, last, pipes });
    const kids = (children.get(node.key) ?? []).filter((child) => !placed.has(child.key));
    kids.forEach((child, index) => walk(child, depth + 1, index === kids.length - 1, depth === 0 ? [] : [...pipes, !last]));
  };
  const roots = [
    ...nodes.filter((node) => node.role === 'primary' && node.status === 'ok'),
    ...nodes.filter((node) => !(node.role === 'primary' && node.status === 'ok') && (node.upstream === null || !keys.has(node.upstream))),
  ];
  for (const root of roots) walk(root, 0, true, []);
  // Nodes of a cycle (A streams from B, B from A) have no root: shown flat at the end.
  for (const node of nodes) walk(node, 0, true, []);
  return lines;
}

/** Stream states of a standby that is connected: a WAL sender's startup, catchup, streaming; a receiver's streaming. */
const connectedStates = new Set(['startup', 'catchup', 'streaming']);

function list(names: readonly string[]): string {
  if (names.length <= 1) return names.join('');
  return `${names.slice(0, -1).join(', ')} and ${names[names.length - 1] ?? ''}`;
}

function timelineText(timeline: number | null): string {
  return timeline === null ? 'timeline ?' : `timeline ${timeline}`;
}

function problemsOf(
  tree: readonly TopologyNode[],
  observed: readonly Observed[],
  byName: ReadonlyMap<string, Observed>,
  primaries: readonly string[],
): TopologyProblem[] {
  const critical: TopologyProblem[] = [];
  const warning: TopologyProblem[] = [];
  const nodeOf = (name: string): TopologyNode | undefined => tree.find((node) => node.name === name);
  const primaryNodes = primaries.flatMap((name) => nodeOf(name) ?? []);
  if (primaryNodes.length >= 2) {
    const described = primaryNodes.map((node) => `${node.name} (${timelineText(node.timeline)})`);
    critical.push({
      kind: 'split-brain', severity: 'critical', nodes: primaries,
      message: `split brain: ${list(described)} ${described.length === 2 ? 'both' : 'all'} accept writes; stop writes on the one that must not be primary (the older timeline is usually the old primary), then rejoin it as a standby`,
    });
  }
  const settled = observed.every((node) => node.status !== 'pending');
  if (primaryNodes.length === 0 && settled && observed.length > 0) {
    const reachable = observed.filter((node) => node.status === 'ok').length;
    critical.push({
      kind: 'no-primary', severity: 'critical', nodes: observed.map((node) => node.observation.name),
      message: reachable === 0 ? `no primary: none of the ${observed.length} nodes answers` : `no primary: ${reachable} of ${observed.length} nodes answer and none accepts writes`,
    });
  }
  // The reference: the primary on the newest timeline (after a promotion, the new one).
  const reference = [...primaryNodes].sort((a, b) => (b.timeline ?? -1) - (a.timeline ?? -1))[0];
  for (const node of tree) {
    if (node.status !== 'ok') continue;
    if (reference !== undefined && node !== reference && node.systemIdentifier !== null && reference.systemIdentifier !== null && node.systemIdentifier !== reference.systemIdentifier) {
      critical.push({
        kind: 'system-identifier', severity: 'critical', nodes: [node.name],
        message: `${node.name} is another database system (system identifier ${node.systemIdentifier}, the primary ${reference.name} has ${reference.systemIdentifier}): it is no copy of this cluster; check the config or rebuild it`,
      });
      continue;
    }
    if (node.role !== 'standby') continue;
    if (reference !== undefined && node.timeline !== null && reference.timeline !== null && node.timeline < reference.timeline) {
      critical.push({
        kind: 'old-timeline', severity: 'critical', nodes: [node.name],
        message: `${node.name} is on timeline ${node.timeline}, older than the primary ${reference.name}'s ${reference.timeline}: it did not follow the promotion; never promote it, rejoin it (pg_rewind or a fresh clone)`,
      });
    }
    // The upstream's WAL sender for it (any live state) or its own receiver streaming: it is connected.
    const connected = node.state === null ? node.lag !== null : connectedStates.has(node.state);
    if (connected && node.upstream === null && node.upstreamAddress !== null) {
      warning.push({
        kind: 'unknown-upstream', severity: 'warning', nodes: [node.name],
        message: `${node.name} streams from ${node.upstreamAddress}, which is no node of this cluster's config: add it, or fix primary_conninfo`,
      });
    } else if (!connected) {
      const receiver = byName.get(node.name)?.replication;
      const why = receiver?.role === 'standby' && receiver.receiver === null ? 'no WAL receiver runs' : `its stream is ${node.state ?? 'unknown'}`;
      critical.push({
        kind: 'disconnected', severity: 'critical', nodes: [node.name],
        message: `${node.name} is a standby connected to no upstream (${why}): it falls behind; check primary_conninfo and its server log`,
      });
    }
  }
  for (const node of tree) {
    // An upstream listing it gave it its upstream: it is seen, only not by pgwarden.
    if (node.status !== 'unreachable' || node.upstream !== null) continue;
    warning.push({
      kind: 'unseen', severity: 'warning', nodes: [node.name],
      message: `${node.name} is seen by nobody: pgwarden cannot reach it (${node.error ?? 'no answer'}) and no node lists it as a standby`,
    });
  }
  return [...critical, ...warning];
}
