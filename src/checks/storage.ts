/** Checks on where the server writes: free disk (with a 24 h forecast), the size of pg_wal, checkpoints. */
import { formatBytes, formatCount, formatDuration, formatPercent } from '../format/units.js';
import { resultOf } from '../probes/index.js';
import type { CheckpointCounters, Filesystem } from '../probes/storage.js';
import type { Check, Finding, Severity } from './types.js';
import { finding, numberIn, recordOf, snapshotOf, thresholdFor, unknownFinding } from './helpers.js';

// ---------------------------------------------------------------------------------------------
// Disk

/** Free space growth is measured over at most this long (the oldest sample kept). */
export const diskForecastWindowMs = 3_600_000;
/** Samples kept per filesystem. */
const maxDiskSamples = 12;

interface DiskSample {
  /** When the free space was measured (ms since epoch). */
  readonly at: number;
  readonly availableBytes: number;
}

/** Per filesystem (device number), the free space at the recent evaluations, oldest first. */
interface DiskState {
  readonly samples: Readonly<Record<string, readonly DiskSample[]>>;
}

function diskStateOf(previous: unknown): DiskState {
  const samples: Record<string, DiskSample[]> = {};
  for (const [device, list] of Object.entries(recordOf(recordOf(previous)?.['samples']) ?? {})) {
    if (!Array.isArray(list)) continue;
    samples[device] = list.flatMap((item: unknown) => {
      const at = numberIn(recordOf(item)?.['at']);
      const availableBytes = numberIn(recordOf(item)?.['availableBytes']);
      return at === undefined || availableBytes === undefined ? [] : [{ at, availableBytes }];
    });
  }
  return { samples };
}

/** How fast free space falls on a filesystem, from the oldest sample in the window to now. */
interface Growth {
  /** Bytes of free space lost over `seconds` (negative: space was freed). */
  readonly fellBytes: number;
  readonly seconds: number;
  /** Seconds until no space is left at that rate; null when free space is not falling. */
  readonly secondsToFull: number | null;
}

function growthOf(fs: Filesystem, samples: readonly DiskSample[] | undefined, at: number): Growth | null {
  const oldest = (samples ?? []).find((sample) => sample.at < at && at - sample.at <= diskForecastWindowMs);
  if (oldest === undefined) return null;
  const seconds = (at - oldest.at) / 1000;
  const fellBytes = oldest.availableBytes - fs.availableBytes;
  return { fellBytes, seconds, secondsToFull: fellBytes > 0 ? fs.availableBytes / (fellBytes / seconds) : null };
}

function growthText(growth: Growth | null): string {
  if (growth === null) return 'growth not measured yet (it compares free space between evaluations)';
  const over = `over the last ${formatDuration(growth.seconds)} (between evaluations)`;
  if (growth.secondsToFull === null) return growth.fellBytes === 0 ? `free space unchanged ${over}` : `free space grew by ${formatBytes(-growth.fellBytes)} ${over}`;
  return `free space fell by ${formatBytes(growth.fellBytes)} ${over}: full in about ${formatDuration(growth.secondsToFull)} at that rate`;
}

type DiskThresholds = { readonly warningFraction: number; readonly criticalFraction: number; readonly fullWithinSeconds: number };

/** Used space of each filesystem the server writes to, and when it fills at the current growth. */
export const diskCheck: Check<DiskThresholds> = {
  id: 'disk',
  title: 'Disk space',
  description: 'Used space of the filesystems holding the data directory, pg_wal and each tablespace (as df counts it: root\'s reserved blocks are not free for PostgreSQL), and when they fill at the growth measured between evaluations. Free disk cannot be read over SQL: it is measured with statfs only when pgwarden runs on the database host and proves the data directory is this server\'s (its postmaster.pid and pg_control match); otherwise the check is UNKNOWN with the reason.',
  cadence: 'normal',
  probes: ['storage'],
  defaults: { warningFraction: 0.8, criticalFraction: 0.9, fullWithinSeconds: 86_400 },
  levels: (t) => ({
    warning: `${formatPercent(t.warningFraction, 0)} used, or full within ${formatDuration(t.fullWithinSeconds)} at the current growth`,
    critical: `${formatPercent(t.criticalFraction, 0)} used`,
  }),
  evaluate({ results, thresholds: t, previous }) {
    const id = 'disk';
    const result = resultOf(results, 'storage');
    const { snapshot, unknown } = snapshotOf(id, results, 'storage');
    if (unknown !== undefined || result.status !== 'ok') return [unknown ?? unknownFinding(id, 'no storage result')];
    const { disk } = snapshot;
    if (!disk.local || disk.filesystems.length === 0) return [unknownFinding(id, disk.unknownReason ?? 'no filesystem was measured')];
    const state = diskStateOf(previous);
    const at = result.at.getTime();
    const findings: Finding[] = disk.filesystems.map((fs) => {
      const growth = growthOf(fs, state.samples[fs.device], at);
      const fillsSoon = growth?.secondsToFull !== null && growth?.secondsToFull !== undefined && growth.secondsToFull <= t.fullWithinSeconds;
      const byFraction: Severity = fs.usedFraction >= t.criticalFraction ? 'critical' : fs.usedFraction >= t.warningFraction ? 'warning' : 'ok';
      const severity: Severity = byFraction === 'ok' && fillsSoon ? 'warning' : byFraction;
      const limits = byFraction === 'critical' ? `(critical ≥ ${formatPercent(t.criticalFraction, 0)})`
        : byFraction === 'warning' ? `(warning ≥ ${formatPercent(t.warningFraction, 0)})`
          : fillsSoon ? `(warning: full within ${formatDuration(t.fullWithinSeconds)})`
            : `(warning ≥ ${formatPercent(t.warningFraction, 0)}, or full within ${formatDuration(t.fullWithinSeconds)})`;
      return finding(id, {
        severity, subject: fs.locations.join(' + '), value: fs.usedFraction,
        threshold: thresholdFor(severity, t.warningFraction, t.criticalFraction), warningThreshold: t.warningFraction, unit: 'fraction',
        message: `${fs.locations.join(', ')} (${fs.paths.join(', ')}): ${formatPercent(fs.usedFraction)} used, ${formatBytes(fs.availableBytes)} free of ${formatBytes(fs.totalBytes)}; ${growthText(growth)} ${limits}`,
        context: {
          details: {
            paths: fs.paths.join(', '), availableBytes: fs.availableBytes, totalBytes: fs.totalBytes,
            secondsToFull: growth?.secondsToFull ?? null, growthSeconds: growth?.seconds ?? null, fellBytes: growth?.fellBytes ?? null,
          },
        },
      });
    });
    // Some locations measured, others not (a tablespace statfs could not read): say so too.
    if (disk.unknownReason !== null) findings.push(unknownFinding(id, disk.unknownReason, 'disk'));
    return findings;
  },
  nextState({ results, previous }) {
    const state = diskStateOf(previous);
    const result = resultOf(results, 'storage');
    if (result.status !== 'ok' || !result.snapshot.disk.local) return state;
    const at = result.at.getTime();
    const samples: Record<string, DiskSample[]> = {};
    for (const fs of result.snapshot.disk.filesystems) {
      const kept = (state.samples[fs.device] ?? []).filter((sample) => sample.at < at && at - sample.at <= diskForecastWindowMs);
      samples[fs.device] = [...kept, { at, availableBytes: fs.availableBytes }].slice(-maxDiskSamples);
    }
    return { samples } satisfies DiskState;
  },
  runbook: {
    summary: 'A filesystem the server writes to is filling up. When the data directory or a tablespace is full, writes fail; when pg_wal is full, the server stops (PANIC) and will not start until space is freed.',
    steps: [
      'Look on the database host: `df -h <paths from the finding>` and what grew: `du -xsh <data_directory>/* | sort -h | tail`, `du -sh <data_directory>/pg_wal`, and the largest relations: `select pg_size_pretty(pg_total_relation_size(oid)), oid::regclass from pg_class order by pg_total_relation_size(oid) desc limit 10;`.',
      'If pg_wal is what grows: an inactive replication slot or a failing archive_command keeps WAL (see the replication-slots, wal-archiving and pg-wal-size checks). Fix the cause; never delete files from pg_wal by hand.',
      'Free space safely: remove old server logs and core files outside PGDATA, temporary files of a runaway query (cancel it; they go away with it), drop a slot that is no longer used (`select pg_drop_replication_slot(\'<name>\');` after checking with its owner).',
      'Reclaim space inside tables only with a plan: VACUUM FULL and REINDEX need room for a full copy first (see the bloat check).',
      'Escalate to grow the volume when usage keeps climbing: at 90 % or when it is full within hours, ask for more disk now, before the server stops.',
    ],
  },
};

// ---------------------------------------------------------------------------------------------
// pg_wal size

/** The size of pg_wal against max_wal_size. */
export const walSizeCheck: Check<{ readonly warningMultiple: number; readonly criticalMultiple: number }> = {
  id: 'pg-wal-size',
  title: 'pg_wal size',
  description: 'The size of the pg_wal directory (the sum of pg_ls_waldir(), which needs pg_monitor) against max_wal_size. Normally pg_wal stays near max_wal_size; beyond it, something keeps WAL: a replication slot, a failing archiver, wal_keep_size, or checkpoints that cannot keep up.',
  cadence: 'normal',
  probes: ['storage'],
  defaults: { warningMultiple: 2, criticalMultiple: 4 },
  levels: (t) => ({ warning: `pg_wal larger than ${t.warningMultiple} × max_wal_size`, critical: `larger than ${t.criticalMultiple} × max_wal_size` }),
  evaluate({ results, thresholds: t }) {
    const id = 'pg-wal-size';
    const { snapshot, unknown } = snapshotOf(id, results, 'storage');
    if (unknown !== undefined) return [unknown];
    const { wal } = snapshot;
    if (wal.sizeBytes === null) return [unknownFinding(id, wal.unknownReason ?? 'the size of pg_wal is unknown')];
    const warning = t.warningMultiple * wal.maxWalSizeBytes;
    const critical = t.criticalMultiple * wal.maxWalSizeBytes;
    const severity: Severity = wal.sizeBytes >= critical ? 'critical' : wal.sizeBytes >= warning ? 'warning' : 'ok';
    const multiple = wal.maxWalSizeBytes > 0 ? wal.sizeBytes / wal.maxWalSizeBytes : null;
    const limit = severity === 'critical' ? `(critical ≥ ${t.criticalMultiple} × = ${formatBytes(critical)})` : `(warning ≥ ${t.warningMultiple} × = ${formatBytes(warning)})`;
    return [finding(id, {
      severity, subject: 'pg_wal', value: wal.sizeBytes, threshold: severity === 'critical' ? critical : warning, warningThreshold: warning, unit: 'bytes',
      message: `pg_wal holds ${formatBytes(wal.sizeBytes)} in ${formatCount(wal.segments)} segments, ${multiple === null ? '?' : multiple.toFixed(1)} × max_wal_size (${formatBytes(wal.maxWalSizeBytes)}) ${limit}`,
      context: { details: { segments: wal.segments, maxWalSizeBytes: wal.maxWalSizeBytes, dataDirectory: snapshot.dataDirectory } },
    })];
  },
  runbook: {
    summary: 'pg_wal is much larger than max_wal_size: WAL is being kept instead of recycled. If it keeps growing it fills the disk and the server stops.',
    steps: [
      'Find what holds WAL: `select slot_name, active, wal_status, pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)) from pg_replication_slots;` (an inactive slot is the usual cause), `select * from pg_stat_archiver;` (a failing archiver keeps every segment), and `show wal_keep_size;`.',
      'A slot nobody uses any more: drop it after checking with its owner (`select pg_drop_replication_slot(\'<name>\');`). A standby that is down: bring it back, or drop its slot if it will be rebuilt anyway. A failing archiver: fix archive_command (see wal-archiving).',
      'If only checkpoints lag (heavy write burst, requested checkpoints in the checkpoints check), pg_wal shrinks again after the next checkpoints; consider raising max_wal_size to absorb the bursts.',
      'Never delete files from pg_wal by hand: the server needs them and will not start without them.',
      'Escalate when pg_wal keeps growing and the disk check warns: the server stops when pg_wal is full.',
    ],
  },
};

// ---------------------------------------------------------------------------------------------
// Checkpoints

interface CheckpointState {
  /** When the counters were read (ms since epoch). */
  readonly at: number;
  readonly timed: number;
  readonly requested: number;
  readonly backendFsyncs: number | null;
  /** stats_reset (ms), or null when never reset. */
  readonly statsReset: number | null;
}

function checkpointStateOf(previous: unknown): CheckpointState | undefined {
  const record = recordOf(previous);
  const at = numberIn(record?.['at']);
  const timed = numberIn(record?.['timed']);
  const requested = numberIn(record?.['requested']);
  if (at === undefined || timed === undefined || requested === undefined) return undefined;
  return { at, timed, requested, backendFsyncs: numberIn(record?.['backendFsyncs']) ?? null, statsReset: numberIn(record?.['statsReset']) ?? null };
}

function checkpointStateFrom(counters: CheckpointCounters, at: Date): CheckpointState {
  return { at: at.getTime(), timed: counters.timed, requested: counters.requested, backendFsyncs: counters.backendFsyncs, statsReset: counters.statsReset?.getTime() ?? null };
}

/** Why the counters cannot be compared with the previous ones (a reset), or undefined. */
function resetReason(before: CheckpointState, now: CheckpointState): string | undefined {
  if (before.statsReset !== now.statsReset) return `the statistics were reset${now.statsReset === null ? '' : ` at ${new Date(now.statsReset).toISOString()}`}`;
  if (now.timed < before.timed || now.requested < before.requested || (now.backendFsyncs ?? 0) < (before.backendFsyncs ?? 0)) return 'the counters fell (a statistics reset or a server restart)';
  return undefined;
}

/** Requested checkpoints and backend fsyncs between two evaluations. */
export const checkpointsCheck: Check<{ readonly requestedFraction: number; readonly backendFsyncs: number }> = {
  id: 'checkpoints',
  title: 'Checkpoints',
  description: 'Checkpoints since the previous evaluation (pg_stat_bgwriter; pg_stat_checkpointer and pg_stat_io from PostgreSQL 17): the share that was requested (max_wal_size reached, CHECKPOINT, a base backup) rather than started by checkpoint_timeout, and fsyncs backends had to do themselves because the checkpointer\'s queue was full. A statistics reset or falling counters restart the count.',
  cadence: 'normal',
  probes: ['storage'],
  defaults: { requestedFraction: 0.5, backendFsyncs: 1 },
  levels: (t) => ({
    warning: `${formatPercent(t.requestedFraction, 0)} or more of the checkpoints since the previous evaluation were requested`,
    critical: `backends were forced to write: ${t.backendFsyncs} or more backend fsyncs since the previous evaluation`,
  }),
  evaluate({ results, thresholds: t, previous }) {
    const id = 'checkpoints';
    const result = resultOf(results, 'storage');
    const { snapshot, unknown } = snapshotOf(id, results, 'storage');
    if (unknown !== undefined || result.status !== 'ok') return [unknown ?? unknownFinding(id, 'no storage result')];
    const counters = snapshot.checkpoints;
    const now = checkpointStateFrom(counters, result.at);
    const before = checkpointStateOf(previous);
    const okNote = (message: string): Finding[] => [finding(id, {
      severity: 'ok', subject: 'requested checkpoints', value: null, threshold: t.requestedFraction, warningThreshold: t.requestedFraction, unit: 'fraction', message,
      context: { details: { timed: counters.timed, requested: counters.requested, backendFsyncs: counters.backendFsyncs } },
    })];
    if (before === undefined) {
      return okNote(`first reading (${formatCount(counters.timed)} timed and ${formatCount(counters.requested)} requested checkpoints so far): checkpoints are counted from the next evaluation`);
    }
    const reset = resetReason(before, now);
    if (reset !== undefined) return okNote(`${reset} since the previous evaluation: checkpoints are counted again from this one`);
    const seconds = (now.at - before.at) / 1000;
    if (seconds <= 0) return okNote('the storage snapshot has not changed since the previous evaluation');
    const interval = `in the last ${formatDuration(seconds)}`;
    const timed = now.timed - before.timed;
    const requested = now.requested - before.requested;
    const total = timed + requested;
    const fraction = total === 0 ? 0 : requested / total;
    const severity: Severity = total > 0 && fraction >= t.requestedFraction ? 'warning' : 'ok';
    const findings: Finding[] = [finding(id, {
      severity, subject: 'requested checkpoints', value: fraction, threshold: t.requestedFraction, warningThreshold: t.requestedFraction, unit: 'fraction',
      message: total === 0
        ? `no checkpoint ${interval}`
        : `${requested} of ${total} checkpoints ${interval} were requested (${formatPercent(fraction)}), ${timed} started by checkpoint_timeout${severity === 'warning' ? `: WAL reaches max_wal_size (${formatBytes(snapshot.wal.maxWalSizeBytes)}) before checkpoint_timeout, or something runs CHECKPOINT` : ''} (warning ≥ ${formatPercent(t.requestedFraction, 0)})`,
      context: { details: { timed, requested, seconds, maxWalSizeBytes: snapshot.wal.maxWalSizeBytes } },
    })];
    if (now.backendFsyncs !== null && before.backendFsyncs !== null) {
      const fsyncs = now.backendFsyncs - before.backendFsyncs;
      const forced = fsyncs >= t.backendFsyncs;
      findings.push(finding(id, {
        severity: forced ? 'critical' : 'ok', subject: 'backend fsyncs', value: fsyncs, threshold: t.backendFsyncs, warningThreshold: t.backendFsyncs, unit: 'fsyncs',
        message: forced
          ? `backends had to fsync ${formatCount(fsyncs)} times themselves ${interval}: the checkpointer could not keep up with their requests (critical ≥ ${t.backendFsyncs})`
          : `no backend had to fsync itself ${interval}`,
      }));
    }
    return findings;
  },
  nextState({ results, previous }) {
    const result = resultOf(results, 'storage');
    return result.status === 'ok' ? checkpointStateFrom(result.snapshot.checkpoints, result.at) : checkpointStateOf(previous);
  },
  runbook: {
    summary: 'Most checkpoints are requested instead of timed: WAL fills max_wal_size before checkpoint_timeout (or something keeps running CHECKPOINT), so the server checkpoints more often than planned, writing more and filling WAL with full-page images. Backend fsyncs mean the checkpointer could not keep up and backends stalled on disk writes themselves.',
    steps: [
      'Look: `select * from pg_stat_bgwriter;` (PostgreSQL 17: `pg_stat_checkpointer`), the `checkpoint starting: wal` / `time` lines in the server log (set `log_checkpoints = on`), and `show max_wal_size; show checkpoint_timeout;`.',
      'If the log says "checkpoints are occurring too frequently" or the requests are `wal`: raise max_wal_size (no restart needed: `alter system set max_wal_size = \'4GB\'; select pg_reload_conf();`), after checking the disk holding pg_wal has room for it.',
      'If the requests are manual (`checkpoint` in scripts, base backups in fast mode), find the job that issues them; a base backup request is normal once per backup.',
      'Backend fsyncs: the disk cannot absorb the writes. Check `iostat -x 1` on the host; spreading checkpoints (checkpoint_completion_target = 0.9) and faster storage help. Escalate to the storage or infrastructure team when the disk is saturated.',
    ],
  },
};
