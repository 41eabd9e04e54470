/**
 * Live progress of a long action, read from the server's progress views for the action session's
 * pid on a second query path (the node), while the action session is busy running the statement.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Row } from '../db/types.js';
import { formatCount, formatDuration, formatPercent } from '../format/units.js';
import { numberOrNull, string, stringOrNull } from '../probes/values.js';
import type { Execution } from './execution.js';
import type { ActionId } from './types.js';

/** Which progress views to read: VACUUM (and its ANALYZE), ANALYZE, or an index build. */
export type ProgressKind = 'vacuum' | 'analyze' | 'index';

/** How often the poller reads the progress view. */
export const progressIntervalMs = 500;

const vacuumSql = `
select 'VACUUM' as command, phase,
       case when phase = 'vacuuming heap' then heap_blks_vacuumed else heap_blks_scanned end as done,
       heap_blks_total as total, 'blocks' as unit, null::int as locker
  from pg_stat_progress_vacuum where pid = $1`;

const analyzeSql = `
select 'ANALYZE' as command, phase, sample_blks_scanned as done, sample_blks_total as total, 'sample blocks' as unit, null::int as locker
  from pg_stat_progress_analyze where pid = $1`;

// While it waits for other transactions, the lockers are the useful count, and who it waits for.
const indexSql = `
select command, phase,
       case when phase like 'waiting%' then lockers_done when blocks_total > 0 then blocks_done else tuples_done end as done,
       case when phase like 'waiting%' then lockers_total when blocks_total > 0 then blocks_total else tuples_total end as total,
       case when phase like 'waiting%' then 'transactions' when blocks_total > 0 then 'blocks' else 'tuples' end as unit,
       nullif(current_locker_pid, 0) as locker
  from pg_stat_progress_create_index where pid = $1`;

/** The progress query for a server version, or null when the server has no such view. */
export function progressSql(kind: ProgressKind, version: number): string | null {
  switch (kind) {
    case 'vacuum':
      if (version >= 130000) return `${vacuumSql}\nunion all${analyzeSql}`;
      return version >= 90600 ? vacuumSql : null;
    case 'analyze':
      return version >= 130000 ? analyzeSql : null;
    case 'index':
      return version >= 120000 ? indexSql : null;
  }
}

/** One reading of a progress view. */
export interface ProgressReading {
  readonly fraction: number | null;
  readonly phase: string;
  readonly message: string;
}

/** A progress row as a fraction (done / total, 0..1, null while the total is unknown) and a message. */
export function parseProgress(row: Row, elapsedSeconds: number | null = null): ProgressReading {
  const phase = string(row, 'phase');
  const done = numberOrNull(row, 'done');
  const total = numberOrNull(row, 'total');
  const unit = stringOrNull(row, 'unit') ?? '';
  const locker = numberOrNull(row, 'locker');
  const fraction = done !== null && total !== null && total > 0 ? Math.min(1, Math.max(0, done / total)) : null;
  const parts = [phase];
  if (fraction !== null) parts.push(`${formatPercent(fraction, 0)} (${formatCount(done)} of ${formatCount(total)} ${unit})`);
  if (locker !== null) parts.push(`waiting for pid ${locker}`);
  if (elapsedSeconds !== null) parts.push(formatDuration(elapsedSeconds));
  return { fraction, phase, message: parts.join(', ') };
}

/**
 * Starts `work` and, while it runs, polls the progress view for `pid` every intervalMs, emitting a progress
 * event per reading. Progress is best effort: a failed poll is skipped, never fatal, and no
 * progress event follows the end of `work`.
 */
export async function withProgress<T, A extends ActionId>(run: Execution<A>, kind: ProgressKind, pid: number, work: () => Promise<T>, intervalMs = progressIntervalMs): Promise<T> {
  const version = await run.context.node.serverInfo().then((info) => info.versionNum, () => 0);
  const text = progressSql(kind, version);
  if (text === null) return work();
  const controller = new AbortController();
  const started = Date.now();
  const poll = async (): Promise<void> => {
    while (!controller.signal.aborted) {
      try {
        const rows = await run.context.node.query({ text, values: [pid] }, Math.max(intervalMs * 4, 2000));
        for (const row of rows) {
          if (controller.signal.aborted) break;
          const reading = parseProgress(row, (Date.now() - started) / 1000);
          run.progress(reading.fraction, reading.phase, reading.message);
        }
      } catch {
        // The node may be busy or briefly down: the action itself goes on.
      }
      await sleep(intervalMs, undefined, { signal: controller.signal }).catch(() => undefined);
    }
  };
  const running = work();
  const poller = poll();
  try {
    return await running;
  } finally {
    controller.abort();
    await poller;
  }
}
