/**
 * Changing a node's role over SQL, which works wherever the node runs: where it stands (recovery,
 * timeline, WAL positions), promote it, point a standby at a new upstream (ALTER SYSTEM and a
 * reload: PostgreSQL 13+ restarts the WAL receiver), the replication slot a standby needs on its
 * new upstream, and the wait until the upstream shows a standby streaming. Superuser (or the
 * matching grants) is needed for each change; pgwarden says so when it is refused.
 */
import { setTimeout as delay } from 'node:timers/promises';
import type { ConnectionSpec } from '../config/types.js';
import { DbSession } from '../db/session.js';
import { UserError } from '../errors.js';
import { boolean, number, string, stringOrNull } from '../probes/values.js';
import { quoteSql, throwIfAborted } from './processes.js';

const application = 'pgwarden-failover';

export interface NodePosition {
  readonly inRecovery: boolean;
  readonly timeline: number;
  /** A primary: pg_current_wal_flush_lsn; a standby: the WAL it received (null when it never streamed). */
  readonly receivedLsn: string | null;
  /** A standby's replay position; a primary's flush position. */
  readonly replayedLsn: string | null;
  /** Whether a standby's WAL receiver streams now. */
  readonly streaming: boolean;
}

/** An LSN as a number of bytes (exact up to 2^53, about 9 PB of WAL). */
export function lsnBytes(lsn: string): number {
  const [high = '0', low = '0'] = lsn.split('/');
  return Number.parseInt(high, 16) * 2 ** 32 + Number.parseInt(low, 16);
}

export async function withSession<T>(spec: ConnectionSpec, work: (session: DbSession) => Promise<T>): Promise<T> {
  const session = await DbSession.open(spec, application);
  try {
    return await work(session);
  } finally {
    await session.close().catch(() => undefined);
  }
}

export async function readPosition(spec: ConnectionSpec): Promise<NodePosition> {
  return withSession(spec, async (session) => {
    const [row] = await session.query({
      text: `select pg_is_in_recovery() as in_recovery,
        case when pg_is_in_recovery() then (select received_tli from pg_stat_wal_receiver) end as receiver_timeline,
        (select timeline_id from pg_control_checkpoint()) as checkpoint_timeline,
        case when pg_is_in_recovery() then pg_last_wal_receive_lsn() else pg_current_wal_flush_lsn() end::text as received,
        case when pg_is_in_recovery() then pg_last_wal_replay_lsn() else pg_current_wal_flush_lsn() end::text as replayed,
        coalesce((select status = 'streaming' from pg_stat_wal_receiver), false) as streaming`,
    });
    if (row === undefined) throw new Error('no row from the position query');
    const inRecovery = boolean(row, 'in_recovery');
    // A primary's own timeline: after a promotion pg_control_checkpoint lags until the next checkpoint.
    const timeline = inRecovery ? (row['receiver_timeline'] === null ? number(row, 'checkpoint_timeline') : number(row, 'receiver_timeline')) : await currentTimeline(session);
    return { inRecovery, timeline, receivedLsn: stringOrNull(row, 'received'), replayedLsn: stringOrNull(row, 'replayed'), streaming: boolean(row, 'streaming') };
  });
}

/** A primary's timeline: the first eight hex digits of the current WAL file's name. */
async function currentTimeline(session: DbSession): Promise<number> {
  const [row] = await session.query({ text: 'select pg_walfile_name(pg_current_wal_lsn()) as name' });
  return row === undefined ? 1 : Number.parseInt(string(row, 'name').slice(0, 8), 16);
}

/** pg_promote, waiting until the node accepts writes. */
export async function promote(spec: ConnectionSpec, timeoutS = 60): Promise<void> {
  await withSession(spec, async (session) => {
    const [row] = await session.query({ text: `select pg_promote(true, ${Math.round(timeoutS)}) as promoted` }, (timeoutS + 5) * 1000);
    if (row === undefined || !boolean(row, 'promoted')) throw new UserError(`${session.label} did not finish its promotion within ${timeoutS} s`, 'look at its server log; it may still be promoting');
  });
}

/** Points a standby at a new upstream: primary_conninfo and primary_slot_name by ALTER SYSTEM, then a reload. */
export async function follow(standby: ConnectionSpec, conninfo: string, slot: string): Promise<void> {
  await withSession(standby, async (session) => {
    // One statement at a time: ALTER SYSTEM cannot run in the implicit transaction of a multi-statement query.
    await session.script(`alter system set primary_conninfo = ${quoteSql(conninfo)}`);
    await session.script(`alter system set primary_slot_name = ${quoteSql(slot)}`);
    await session.script('select pg_reload_conf()');
  });
}

/** Creates the physical slot on the primary unless it exists (reserving WAL from now on). */
export async function ensureSlot(primary: ConnectionSpec, slot: string): Promise<void> {
  await withSession(primary, async (session) => {
    await session.query({
      text: 'select pg_create_physical_replication_slot($1, true) from (select 1) one where not exists (select 1 from pg_replication_slots where slot_name = $1)',
      values: [slot],
    });
  });
}

/** Waits until `upstream` shows the standby (by application_name, or its slot in use) streaming. */
export async function waitStreaming(upstream: ConnectionSpec, name: string, slot: string, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  await withSession(upstream, async (session) => {
    for (;;) {
      throwIfAborted(signal);
      const [row] = await session.query({
        text: `select exists (select 1 from pg_stat_replication where application_name = $1 and state = 'streaming') as streaming,
          coalesce((select active from pg_replication_slots where slot_name = $2), false) as slot_active`,
        values: [name, slot],
      });
      if (row !== undefined && (boolean(row, 'streaming') || boolean(row, 'slot_active'))) return;
      if (Date.now() > deadline) throw new UserError(`${name} did not stream from ${session.label} within ${Math.round(timeoutMs / 1000)} s`, `look at ${name}'s server log`);
      await delay(100);
    }
  });
}
