/**
 * Every database of the cluster: transaction, cache, temp-file, deadlock and conflict counters with
 * rates against the previous snapshot, wraparound ages, connections, and sizes on a slow cadence.
 */
import type { Row } from '../db/types.js';
import type { Probe, Stamped } from './types.js';
import { boolean, dateOrNull, number, numberOrNull, rowsOf, string } from './values.js';

/** One database's statistics. Counters are cumulative since `statsReset` (or since the server started). */
export interface DatabaseStats {
  readonly oid: number;
  readonly name: string;
  readonly allowConnections: boolean;
  /** Backends connected to this database (pg_stat_database.numbackends). */
  readonly connections: number;
  readonly commits: number;
  readonly rollbacks: number;
  /** Per second since the previous snapshot; null on the first snapshot and after a stats reset. */
  readonly commitsPerSecond: number | null;
  readonly rollbacksPerSecond: number | null;
  readonly blocksRead: number;
  readonly blocksHit: number;
  /** blks_hit / (blks_hit + blks_read) since the stats reset; null when nothing was read yet. */
  readonly cacheHitFraction: number | null;
  /** The same ratio over the interval since the previous snapshot; null when no block was read in it. */
  readonly recentCacheHitFraction: number | null;
  readonly tempFiles: number;
  readonly tempBytes: number;
  readonly tempFilesPerSecond: number | null;
  readonly tempBytesPerSecond: number | null;
  readonly deadlocks: number;
  /** Deadlocks since the previous snapshot; null on the first snapshot and after a stats reset. */
  readonly deadlocksDelta: number | null;
  /** Queries cancelled by recovery conflicts (standbys only). */
  readonly conflicts: number;
  readonly conflictsDelta: number | null;
  /** age(datfrozenxid): transactions since the oldest unfrozen XID. */
  readonly xidAge: number | null;
  /** xidAge / 2^31: 1.0 is wraparound. */
  readonly xidFraction: number | null;
  /** mxid_age(datminmxid). */
  readonly multixactAge: number | null;
  readonly multixactFraction: number | null;
  readonly statsReset: Date | null;
  /** True when the counters went backwards or stats_reset changed since the previous snapshot. */
  readonly statsWereReset: boolean;
  /** pg_database_size(), measured at the snapshot's `sizesAt`; null when not measured (yet) or not permitted. */
  readonly sizeBytes: number | null;
}

export interface DatabasesSnapshot {
  /** When the counters were read (rates are computed against the previous snapshot's value). */
  readonly sampledAt: Date;
  /** Seconds since the previous snapshot; null on the first one. */
  readonly intervalSeconds: number | null;
  /** When the sizes were measured; they are carried forward between measurements. */
  readonly sizesAt: Date | null;
  readonly databases: readonly DatabaseStats[];
}

/** How often pg_database_size() runs: it walks every file of every database. */
export const sizeCadenceMs = 5 * 60_000;

const wraparound = 2 ** 31;

const statsSql = `
select d.oid, d.datname as name, d.datallowconn as allow_connections,
       s.numbackends, s.xact_commit, s.xact_rollback, s.blks_read, s.blks_hit,
       s.temp_files, s.temp_bytes, s.deadlocks, s.conflicts, s.stats_reset,
       age(d.datfrozenxid) as xid_age, mxid_age(d.datminmxid) as multixact_age
  from pg_database d
  join pg_stat_database s on s.datid = d.oid
 order by d.datname`;

// pg_read_all_stats (in pg_monitor) may size every database; others only those they may connect to.
const sizesSql = `
select d.oid,
       case when has_database_privilege(d.oid, 'CONNECT') or pg_has_role('pg_read_all_stats', 'member')
            then pg_database_size(d.oid) end as size_bytes
  from pg_database d`;

/** Whether the sizes of `previous` are missing or older than sizeCadenceMs at `now`. */
export function sizesDue(previous: Stamped<DatabasesSnapshot> | undefined, now: Date): boolean {
  const sizesAt = previous?.snapshot.sizesAt;
  if (sizesAt === undefined || sizesAt === null) return true;
  return now.getTime() - sizesAt.getTime() >= sizeCadenceMs;
}

interface Counters {
  readonly commits: number;
  readonly rollbacks: number;
  readonly blocksRead: number;
  readonly blocksHit: number;
  readonly tempFiles: number;
  readonly tempBytes: number;
  readonly deadlocks: number;
  readonly conflicts: number;
}

const counterKeys: readonly (keyof Counters)[] = ['commits', 'rollbacks', 'blocksRead', 'blocksHit', 'tempFiles', 'tempBytes', 'deadlocks', 'conflicts'];

function countersOf(row: Row): Counters {
  return {
    commits: number(row, 'xact_commit'),
    rollbacks: number(row, 'xact_rollback'),
    blocksRead: number(row, 'blks_read'),
    blocksHit: number(row, 'blks_hit'),
    tempFiles: number(row, 'temp_files'),
    tempBytes: number(row, 'temp_bytes'),
    deadlocks: number(row, 'deadlocks'),
    conflicts: number(row, 'conflicts'),
  };
}

function wasReset(current: Counters, statsReset: Date | null, previous: DatabaseStats): boolean {
  if ((statsReset?.getTime() ?? null) !== (previous.statsReset?.getTime() ?? null)) return true;
  return counterKeys.some((key) => current[key] < previous[key]);
}

function ratio(hit: number, read: number): number | null {
  return hit + read > 0 ? hit / (hit + read) : null;
}

export const databasesProbe: Probe<DatabasesSnapshot> = {
  id: 'databases',
  title: 'Databases',
  target: 'server',
  cadenceMs: 2000,
  minServerVersion: 100000,
  queries: (_server, previous) => ({
    stats: { text: statsSql },
    ...(sizesDue(previous, new Date()) ? { sizes: { text: sizesSql } } : {}),
  }),
  parse(rows, context) {
    const previous = context.previous;
    const intervalMs = previous === undefined ? null : context.now.getTime() - previous.sampledAt.getTime();
    const seconds = intervalMs !== null && intervalMs > 0 ? intervalMs / 1000 : null;
    const before = new Map((previous?.databases ?? []).map((database) => [database.oid, database]));

    // Sizes are measured only when the query ran; otherwise the last measurement is carried forward.
    const measured = 'sizes' in rows;
    const sizes = new Map<number, number | null>(
      measured
        ? rowsOf(rows, 'sizes').map((row) => [number(row, 'oid'), numberOrNull(row, 'size_bytes')])
        : (previous?.databases ?? []).map((database) => [database.oid, database.sizeBytes]),
    );
    const sizesAt = measured ? context.now : (previous?.sizesAt ?? null);

    const databases = rowsOf(rows, 'stats').map((row): DatabaseStats => {
      const oid = number(row, 'oid');
      const counters = countersOf(row);
      const statsReset = dateOrNull(row, 'stats_reset');
      const prior = before.get(oid);
      const reset = prior !== undefined && wasReset(counters, statsReset, prior);
      // No rate across a reset: the counters no longer measure the same interval.
      const comparable = prior !== undefined && !reset && seconds !== null ? prior : undefined;
      const delta = (key: keyof Counters): number | null => (comparable === undefined ? null : counters[key] - comparable[key]);
      const rate = (key: keyof Counters): number | null => {
        const change = delta(key);
        return change === null || seconds === null ? null : change / seconds;
      };
      const readDelta = delta('blocksRead');
      const hitDelta = delta('blocksHit');
      const xidAge = numberOrNull(row, 'xid_age');
      const multixactAge = numberOrNull(row, 'multixact_age');
      return {
        oid,
        name: string(row, 'name'),
        allowConnections: boolean(row, 'allow_connections'),
        connections: number(row, 'numbackends'),
        ...counters,
        commitsPerSecond: rate('commits'),
        rollbacksPerSecond: rate('rollbacks'),
        cacheHitFraction: ratio(counters.blocksHit, counters.blocksRead),
        recentCacheHitFraction: readDelta === null || hitDelta === null ? null : ratio(hitDelta, readDelta),
        tempFilesPerSecond: rate('tempFiles'),
        tempBytesPerSecond: rate('tempBytes'),
        deadlocksDelta: delta('deadlocks'),
        conflictsDelta: delta('conflicts'),
        xidAge,
        xidFraction: xidAge === null ? null : xidAge / wraparound,
        multixactAge,
        multixactFraction: multixactAge === null ? null : multixactAge / wraparound,
        statsReset,
        statsWereReset: reset,
        sizeBytes: sizes.get(oid) ?? null,
      };
    });
    return { sampledAt: context.now, intervalSeconds: seconds, sizesAt, databases };
  },
};
