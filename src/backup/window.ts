/**
 * The recovery window of a catalog (pure): which points in time and WAL positions the repository
 * can restore to, and what stands in the way.
 *
 * - A backup restores from its consistent point (consistentAt, stopLsn) as far as the archived
 *   WAL runs without a hole, starting at its startWal: a missing segment makes everything after it
 *   unreachable from that backup (it is a gap).
 * - Timelines: a child timeline branches from its parent at a switch LSN (its .history file).
 *   Recovery reads the parent's segments up to the switch segment, then the child's from the
 *   switch segment on (the child's copy of that segment holds the parent's WAL up to the switch).
 *   When a history file cannot be read (encrypted and no key), the parent is taken to be the
 *   nearest lower timeline and the switch segment the child's first archived one (`inferred`).
 * - .partial files are not replayed by recovery; .backup files are labels; both are ignored here.
 *
 * Segment arithmetic uses wal_segment_size from archive.json (16 MB when unknown).
 */
import type { Catalog } from './catalog.js';
import { parseWalFileName, segmentFileName, segmentNumber } from './wal/segment.js';

/** PostgreSQL's default wal_segment_size. */
export const DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024;

/** "16/B374D848" → its byte position. */
export function lsnToBigInt(lsn: string): bigint {
  const match = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(lsn);
  if (match === null) throw new Error(`not an LSN: "${lsn}"`);
  return (BigInt(`0x${match[1] ?? '0'}`) << 32n) + BigInt(`0x${match[2] ?? '0'}`);
}

/** A byte position → "16/B374D848". */
export function bigIntToLsn(position: bigint): string {
  return `${(position >> 32n).toString(16).toUpperCase()}/${(position & 0xffff_ffffn).toString(16).toUpperCase()}`;
}

export interface TimelineInfo {
  readonly timeline: number;
  /** The timeline it branched from, or null for a root (no history). */
  readonly parent: number | null;
  /** The switch LSN (from the history file), or null when unknown. */
  readonly switchLsn: string | null;
  /** The first segment on this timeline after the switch, or null for a root. */
  readonly forkWal: string | null;
  /** True when the parent and fork were inferred from names, not read from the history file. */
  readonly inferred: boolean;
  /** Archived segments on this timeline (null when none). */
  readonly firstWal: string | null;
  readonly lastWal: string | null;
  readonly segments: number;
}

/** Missing segments between two archived ones of the same timeline. */
export interface WalGap {
  readonly timeline: number;
  /** The last archived segment before the hole. */
  readonly after: string;
  /** The first and last missing segment names. */
  readonly firstMissing: string;
  readonly lastMissing: string;
  readonly missing: number;
}

/** A position reached by replaying archived WAL. */
export interface WalPoint {
  readonly timeline: number;
  /** The last segment replayed. */
  readonly wal: string;
  /** The end of that segment: recovery can reach any point before it. */
  readonly lsn: string;
}

export interface BackupReach {
  readonly id: string;
  readonly timeline: number;
  /** Whether the WAL from startWal to stopWal is all archived (without it the backup is unusable). */
  readonly restorable: boolean;
  /** Why it is not restorable. */
  readonly problem?: string;
  /** The earliest restore target: the backup's consistent point. */
  readonly from: { readonly time: string; readonly lsn: string };
  /** The furthest point on the newest timeline it reaches (what a restore to "latest" replays to); null when not restorable. */
  readonly to: WalPoint | null;
  /** Per timeline it can follow: the archived range it replays. */
  readonly ranges: readonly { readonly timeline: number; readonly fromWal: string; readonly toWal: string }[];
  /** The first missing segment on each timeline it follows that has later segments: everything after is unreachable. */
  readonly blockedAt: readonly { readonly timeline: number; readonly missingWal: string }[];
}

export interface RecoveryWindow {
  readonly segmentSize: number;
  /** The oldest restorable backup's consistent point, or null when none is restorable. */
  readonly from: { readonly backupId: string; readonly time: string; readonly lsn: string } | null;
  /** The newest archived segment (highest timeline, then position), or null without WAL. */
  readonly newestWal: WalPoint | null;
  /** The furthest point any restorable backup reaches; short of newestWal when a gap is in the way. */
  readonly reachableTo: WalPoint | null;
  readonly gaps: readonly WalGap[];
  readonly timelines: readonly TimelineInfo[];
  readonly backups: readonly BackupReach[];
}

function sortedNumbers(values: Iterable<bigint>): bigint[] {
  return [...values].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Later timeline wins, then the later position. */
function isAfter(a: WalPoint, b: WalPoint, segmentSize: number): boolean {
  if (a.timeline !== b.timeline) return a.timeline > b.timeline;
  return segOf(a.wal, segmentSize) > segOf(b.wal, segmentSize);
}

function segOf(name: string, segmentSize: number): bigint {
  const file = parseWalFileName(name);
  const number = file === undefined ? undefined : segmentNumber(file, segmentSize);
  if (number === undefined) throw new Error(`not a WAL segment name: "${name}"`);
  return number;
}

/** The recovery window of `catalog` (pure). */
export function recoveryWindow(catalog: Pick<Catalog, 'archive' | 'backups' | 'wal' | 'histories'>): RecoveryWindow {
  const segmentSize = catalog.archive?.walSegmentSize ?? DEFAULT_SEGMENT_SIZE;
  const name = (timeline: number, segment: bigint): string => segmentFileName(timeline, segment, segmentSize);
  const pointOf = (timeline: number, segment: bigint): WalPoint => ({ timeline, wal: name(timeline, segment), lsn: bigIntToLsn((segment + 1n) * BigInt(segmentSize)) });

  // Archived segments per timeline.
  const present = new Map<number, Set<bigint>>();
  for (const { file } of catalog.wal) {
    if (file.kind !== 'segment') continue;
    const number = segmentNumber(file, segmentSize);
    if (number === undefined) continue;
    let set = present.get(file.timeline);
    if (set === undefined) present.set(file.timeline, (set = new Set()));
    set.add(number);
  }
  const has = (timeline: number, segment: bigint): boolean => present.get(timeline)?.has(segment) ?? false;

  // Timelines and their forks.
  const ids = new Set<number>([...present.keys(), ...catalog.histories.map((h) => h.timeline), ...catalog.backups.map((b) => b.manifest.timeline)]);
  const ordered = [...ids].sort((a, b) => a - b);
  const timelines: TimelineInfo[] = [];
  const forkSegment = new Map<number, bigint>();
  for (const timeline of ordered) {
    const segments = sortedNumbers(present.get(timeline) ?? []);
    const first = segments[0];
    const last = segments[segments.length - 1];
    const history = catalog.histories.find((h) => h.timeline === timeline);
    let parent: number | null = null;
    let switchLsn: string | null = null;
    let fork: bigint | undefined;
    let inferred = false;
    if (history?.parent != null) {
      parent = history.parent.timeline;
      switchLsn = history.parent.switchLsn;
      fork = lsnToBigInt(switchLsn) / BigInt(segmentSize);
    } else if (timeline > 1 && (history !== undefined || ordered[0] !== timeline)) {
      parent = [...ordered].reverse().find((other) => other < timeline) ?? null;
      fork = first;
      inferred = true;
    }
    if (fork !== undefined) forkSegment.set(timeline, fork);
    timelines.push({
      timeline,
      parent,
      switchLsn,
      forkWal: fork === undefined ? null : name(timeline, fork),
      inferred,
      firstWal: first === undefined ? null : name(timeline, first),
      lastWal: last === undefined ? null : name(timeline, last),
      segments: segments.length,
    });
  }
  const children = (timeline: number): TimelineInfo[] => timelines.filter((t) => t.parent === timeline);

  // Holes inside each timeline's archived range.
  const gaps: WalGap[] = [];
  for (const [timeline, set] of present) {
    const segments = sortedNumbers(set);
    for (let i = 1; i < segments.length; i++) {
      const before = segments[i - 1] ?? 0n;
      const after = segments[i] ?? 0n;
      if (after - before > 1n) {
        gaps.push({ timeline, after: name(timeline, before), firstMissing: name(timeline, before + 1n), lastMissing: name(timeline, after - 1n), missing: Number(after - before - 1n) });
      }
    }
  }
  gaps.sort((a, b) => a.timeline - b.timeline || (a.after < b.after ? -1 : 1));

  // What each backup reaches: follow its timeline from startWal, then every child it reaches the fork of.
  const backups: BackupReach[] = [];
  for (const { manifest } of catalog.backups) {
    const start = segOf(manifest.startWal, segmentSize);
    const stop = segOf(manifest.stopWal, segmentSize);
    const stopTimeline = parseWalFileName(manifest.stopWal)?.timeline ?? manifest.timeline;
    const ranges: { timeline: number; fromWal: string; toWal: string; end: bigint }[] = [];
    const blockedAt: { timeline: number; missingWal: string }[] = [];
    const walk = (timeline: number, from: bigint): void => {
      let end = from - 1n;
      while (has(timeline, end + 1n)) end += 1n;
      if (end >= from) ranges.push({ timeline, fromWal: name(timeline, from), toWal: name(timeline, end), end });
      const newest = sortedNumbers(present.get(timeline) ?? []).pop();
      if (newest !== undefined && newest > end) blockedAt.push({ timeline, missingWal: name(timeline, end + 1n) });
      for (const child of children(timeline)) {
        const fork = forkSegment.get(child.timeline);
        if (fork !== undefined && fork >= from && end >= fork - 1n) walk(child.timeline, fork);
      }
    };
    walk(manifest.timeline, start);
    const reachesStop = ranges.some((r) => r.timeline === stopTimeline && r.end >= stop);
    const from = { time: manifest.consistentAt, lsn: manifest.stopLsn };
    if (!reachesStop) {
      const missing = blockedAt[0]?.missingWal ?? name(manifest.timeline, start);
      backups.push({
        id: manifest.id, timeline: manifest.timeline, restorable: false, from, to: null, ranges: [], blockedAt,
        problem: `WAL ${missing} is not archived, and the backup needs every segment from ${manifest.startWal} to ${manifest.stopWal}`,
      });
      continue;
    }
    let to: WalPoint | undefined;
    for (const range of ranges) {
      const point = pointOf(range.timeline, range.end);
      if (to === undefined || isAfter(point, to, segmentSize)) to = point;
    }
    backups.push({
      id: manifest.id, timeline: manifest.timeline, restorable: true, from, to: to ?? null,
      ranges: ranges.map(({ timeline, fromWal, toWal }) => ({ timeline, fromWal, toWal })), blockedAt,
    });
  }

  let newestWal: WalPoint | null = null;
  for (const [timeline, set] of present) {
    const last = sortedNumbers(set).pop();
    if (last === undefined) continue;
    const point = pointOf(timeline, last);
    if (newestWal === null || isAfter(point, newestWal, segmentSize)) newestWal = point;
  }
  let reachableTo: WalPoint | null = null;
  for (const backup of backups) {
    if (backup.to !== null && (reachableTo === null || isAfter(backup.to, reachableTo, segmentSize))) reachableTo = backup.to;
  }
  const oldest = backups.find((b) => b.restorable);
  return {
    segmentSize,
    from: oldest === undefined ? null : { backupId: oldest.id, ...oldest.from },
    newestWal,
    reachableTo,
    gaps,
    timelines,
    backups,
  };
}

/**
 * What is wrong with a recovery window, one line each (empty when it is continuous): no
 * restorable backup, WAL gaps, backups that cannot reach their consistent point, timelines whose
 * history file is missing, and archived WAL that no backup can reach.
 */
export function windowProblems(window: RecoveryWindow): string[] {
  const problems: string[] = [];
  if (window.from === null) problems.push('window: no restorable backup: nothing can be restored from this repository');
  for (const gap of window.gaps) {
    const range = gap.missing === 1 ? gap.firstMissing : `${gap.firstMissing}..${gap.lastMissing}`;
    problems.push(`window: WAL gap on timeline ${gap.timeline}: ${range} (${gap.missing} segment(s)) missing after ${gap.after}: no restore crosses it`);
  }
  for (const backup of window.backups) {
    if (!backup.restorable) problems.push(`window: backup ${backup.id} is not restorable: ${backup.problem ?? 'its WAL is incomplete'}`);
  }
  for (const timeline of window.timelines) {
    if (timeline.inferred) problems.push(`window: timeline ${timeline.timeline} has no history file in the archive (${segmentFileName(timeline.timeline, 0n, window.segmentSize).slice(0, 8)}.history): its fork point is guessed`);
  }
  if (window.newestWal !== null && window.reachableTo !== null && isAfter(window.newestWal, window.reachableTo, window.segmentSize)) {
    problems.push(`window: archived WAL up to ${window.newestWal.wal} but restores reach only ${window.reachableTo.wal} (timeline ${window.reachableTo.timeline})`);
  }
  return problems;
}
