/**
 * `pgwarden replica list` (issue 6 item 2; docs/replicas.md): the standbys as the primary sees them
 * (pg_stat_replication and the slots), the slots no standby uses, and each configured standby node
 * as a read replica: its connection string and whether it is fit for reporting queries (streaming,
 * and behind by less than the replication-lag check's warning thresholds).
 */
import { resolveThresholds } from '../checks/catalogue.js';
import { replicationLagCheck } from '../checks/replication.js';
import { thresholdOverridesFor } from '../config/alerting.js';
import type { ClusterConfig, Config } from '../config/types.js';
import { DbSession } from '../db/session.js';
import type { Row } from '../db/types.js';
import { messageOf } from '../errors.js';
import { formatBytes, formatDuration } from '../format/units.js';
import { lagSeconds } from '../probes/replication.js';
import { number, numberOrNull, string, stringOrNull } from '../probes/values.js';
import { APPLICATION, connectPrimary } from './replica.js';
import { publicUri } from './processes.js';

/** One standby connected to the primary. */
export interface ListedStandby {
  readonly pid: number;
  readonly application: string;
  readonly client: string | null;
  readonly state: string | null;
  readonly syncState: string | null;
  readonly slot: string | null;
  readonly replayLagBytes: number | null;
  readonly replayLagSeconds: number | null;
  /** The configured node it is, when one matches (its slot, application_name or cluster_name). */
  readonly node: string | null;
}

/** A slot on the primary no standby is using now. */
export interface IdleSlot {
  readonly name: string;
  readonly type: string;
  readonly retainedBytes: number | null;
  readonly walStatus: string | null;
}

/** A configured node that is a standby: a read replica. */
export interface ReadReplica {
  readonly node: string;
  readonly connection: string;
  /** Reachable, streaming from the primary, and behind by less than the warning thresholds. */
  readonly fitForReporting: boolean;
  readonly reason: string;
}

export interface ReplicaListing {
  readonly cluster: string;
  readonly primary: { readonly node: string; readonly connection: string };
  readonly standbys: readonly ListedStandby[];
  readonly idleSlots: readonly IdleSlot[];
  readonly readReplicas: readonly ReadReplica[];
  /** Configured nodes that could not be asked, with the reason. */
  readonly unreachable: readonly { readonly node: string; readonly error: string }[];
  /** One libpq string for reporting clients: the fit replicas, then the primary, prefer-standby. */
  readonly reportingConnection: string | null;
  /** The replication-lag warning thresholds that decide "fit". */
  readonly thresholds: { readonly warningBytes: number; readonly warningSeconds: number };
}

const standbysSql = `
select r.pid, coalesce(r.application_name, '') as application,
       case when r.client_addr is not null then host(r.client_addr) when r.client_port = -1 then 'local' end as client,
       r.state, r.sync_state, s.slot_name,
       pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn) as replay_bytes,
       extract(epoch from r.replay_lag)::float8 as replay_lag_seconds
  from pg_stat_replication r
  left join pg_replication_slots s on s.active_pid = r.pid
 order by r.application_name, r.pid`;

const idleSlotsSql = `
select slot_name, slot_type, wal_status, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) as retained_bytes
  from pg_replication_slots where not active order by slot_name`;

const standbySideSql = `
select pg_is_in_recovery() as standby, current_setting('cluster_name') as cluster_name,
       (select slot_name from pg_stat_wal_receiver) as slot, (select status from pg_stat_wal_receiver) as receiver`;

function parseStandbyRow(row: Row): Omit<ListedStandby, 'node'> {
  const bytes = numberOrNull(row, 'replay_bytes');
  return {
    pid: number(row, 'pid'), application: string(row, 'application'), client: stringOrNull(row, 'client'),
    state: stringOrNull(row, 'state'), syncState: stringOrNull(row, 'sync_state'), slot: stringOrNull(row, 'slot_name'),
    replayLagBytes: bytes, replayLagSeconds: lagSeconds(numberOrNull(row, 'replay_lag_seconds'), bytes),
  };
}

/** Whether a standby may take reporting queries, and why (or why not). */
function fitness(standby: Omit<ListedStandby, 'node'> | undefined, t: { warningBytes: number; warningSeconds: number }): { fit: boolean; reason: string } {
  if (standby === undefined) return { fit: false, reason: 'not connected to the primary (disconnected, or replicating from another standby)' };
  if (standby.state !== 'streaming') return { fit: false, reason: `not streaming: ${standby.state ?? 'state not visible to this role (grant it pg_monitor)'}` };
  if (standby.replayLagBytes === null) return { fit: false, reason: 'its lag is not visible to this role (grant it pg_monitor)' };
  const bytes = formatBytes(standby.replayLagBytes);
  const secs = standby.replayLagSeconds ?? 0;
  if (standby.replayLagBytes >= t.warningBytes || secs >= t.warningSeconds) {
    return { fit: false, reason: `streaming but ${bytes} and ${formatDuration(secs)} behind (warning at ${formatBytes(t.warningBytes)} or ${formatDuration(t.warningSeconds)})` };
  }
  return { fit: true, reason: `streaming, ${bytes} and ${formatDuration(secs)} behind (under ${formatBytes(t.warningBytes)} and ${formatDuration(t.warningSeconds)})` };
}

/** The cluster's standbys, slots and read replicas (see the file comment). */
export async function listReplicas(config: Config, cluster: ClusterConfig): Promise<ReplicaListing> {
  const lag = resolveThresholds(replicationLagCheck, thresholdOverridesFor(config.alerting, cluster.name, replicationLagCheck.id));
  const thresholds = { warningBytes: lag.warningBytes, warningSeconds: lag.warningSeconds };
  const primary = await connectPrimary(cluster);
  try {
    const seen = (await primary.session.query({ text: standbysSql })).map(parseStandbyRow);
    const idleSlots = (await primary.session.query({ text: idleSlotsSql })).map((row): IdleSlot => ({
      name: string(row, 'slot_name'), type: string(row, 'slot_type'), walStatus: stringOrNull(row, 'wal_status'), retainedBytes: numberOrNull(row, 'retained_bytes'),
    }));
    const nodeOf = new Map<number, string>();
    const readReplicas: ReadReplica[] = [];
    const unreachable: { node: string; error: string }[] = [];
    for (const node of cluster.nodes) {
      if (node === primary.node) continue;
      let row: Row | undefined;
      try {
        const session = await DbSession.open(node.connection, APPLICATION);
        try {
          [row] = await session.query({ text: standbySideSql });
        } finally {
          await session.close();
        }
      } catch (error) {
        unreachable.push({ node: node.name, error: messageOf(error) });
        continue;
      }
      if (row === undefined || row['standby'] !== true) continue;
      const slot = stringOrNull(row, 'slot');
      const clusterName = stringOrNull(row, 'cluster_name') ?? '';
      const match = seen.find((s) => (slot !== null && s.slot === slot) || s.application === node.name || (clusterName !== '' && s.application === clusterName));
      if (match !== undefined) nodeOf.set(match.pid, node.name);
      const { fit, reason } = fitness(match, thresholds);
      readReplicas.push({ node: node.name, connection: publicUri(node.connection), fitForReporting: fit, reason });
    }
    const fitNodes = readReplicas.filter((r) => r.fitForReporting).map((r) => cluster.nodes.find((n) => n.name === r.node)?.connection).filter((c) => c !== undefined);
    const p = primary.node.connection;
    const reportingConnection = fitNodes.length === 0 ? null : publicUri(p, [...fitNodes, p].map((c) => ({ host: c.host, port: c.port })), { target_session_attrs: 'prefer-standby' });
    return {
      cluster: cluster.name,
      primary: { node: primary.node.name, connection: publicUri(p) },
      standbys: seen.map((s) => ({ ...s, node: nodeOf.get(s.pid) ?? null })),
      idleSlots,
      readReplicas,
      unreachable,
      reportingConnection,
      thresholds,
    };
  } finally {
    await primary.session.close();
  }
}
