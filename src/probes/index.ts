/** Every probe, in one explicit list (no self-registration): the order is the display order. */
import { activityProbe } from './activity.js';
import { connectionsProbe } from './connections.js';
import { databasesProbe } from './databases.js';
import { locksProbe } from './locks.js';
import { pgbouncerProbe } from './pgbouncer.js';
import { pgbouncerConfigProbe } from './pgbouncer-config.js';
import { replicationProbe } from './replication.js';
import { sequencesProbe } from './sequences.js';
import { statementsProbe } from './statements.js';
import { tablesProbe } from './tables.js';
import { serverProbe } from './server.js';
import { storageProbe } from './storage.js';
import { timeoutsProbe } from './timeouts.js';
import type { AnyProbe, Results } from './runner.js';
import type { ProbeId, ProbeResult } from './types.js';
import type { ActivitySnapshot } from './activity.js';
import type { ApplicationSnapshot } from './application.js';
import type { ConnectionsSnapshot } from './connections.js';
import type { DatabasesSnapshot } from './databases.js';
import type { LocksSnapshot } from './locks.js';
import type { PgBouncerSnapshot } from './pgbouncer.js';
import type { PgBouncerConfigSnapshot } from './pgbouncer-config.js';
import type { ReplicationSnapshot } from './replication.js';
import type { SequencesSnapshot } from './sequences.js';
import type { ServerSnapshot } from './server.js';
import type { StatementsSnapshot } from './statements.js';
import type { StorageSnapshot } from './storage.js';
import type { TablesSnapshot } from './tables.js';
import type { TimeoutsSnapshot } from './timeouts.js';

export const probes: readonly AnyProbe[] = [serverProbe, activityProbe, connectionsProbe, locksProbe, databasesProbe, tablesProbe, replicationProbe, statementsProbe, pgbouncerProbe, storageProbe, sequencesProbe, timeoutsProbe, pgbouncerConfigProbe] as readonly AnyProbe[];

/** The probe with this id, or undefined. */
export function probeById(id: string): AnyProbe | undefined {
  return probes.find((probe) => probe.id === id);
}

export const probeIds: readonly ProbeId[] = probes.map((probe) => probe.id);

/** The snapshot type of every probe, for typed access to runner results. */
export interface SnapshotMap {
  server: ServerSnapshot;
  activity: ActivitySnapshot;
  connections: ConnectionsSnapshot;
  locks: LocksSnapshot;
  databases: DatabasesSnapshot;
  tables: TablesSnapshot;
  replication: ReplicationSnapshot;
  statements: StatementsSnapshot;
  pgbouncer: PgBouncerSnapshot;
  storage: StorageSnapshot;
  sequences: SequencesSnapshot;
  timeouts: TimeoutsSnapshot;
  'pgbouncer-config': PgBouncerConfigSnapshot;
  /** Filled in by src/health (the watcher, `alerts check`), not by a probe. */
  application: ApplicationSnapshot;
}

/** The result of one probe with its snapshot type; pending when the probe has not run (or is disabled). */
export function resultOf<K extends ProbeId>(results: Results, id: K): ProbeResult<SnapshotMap[K]> {
  return (results.get(id) as ProbeResult<SnapshotMap[K]> | undefined) ?? { status: 'pending' };
}
