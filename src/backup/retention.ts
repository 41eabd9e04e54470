/**
 * Retention (issue 5 item 6, DESIGN §7 rule 8): which backups and WAL a repository keeps, as a
 * plan computed from its catalog and an explicit `now` (pure), then applied.
 *
 * A complete backup is kept when any of these holds:
 *   - it is the newest restorable backup (rule 8: never deleted, whatever its age or the counts);
 *   - it is among the newest `minCount` complete backups;
 *   - it is younger than `days` (by its consistent time) and among the newest `maxCount`.
 * WAL is deleted only when no kept backup needs it: a kept backup needs every segment from its
 * startWal onward on its timeline and on every timeline that branches from it after that start
 * (a timeline whose history cannot be read counts as branching from every lower one). History
 * files are never deleted. When no backup is restorable, nothing complete and no WAL is deleted.
 * An incomplete backup (no manifest) older than `incompleteGraceHours` by the time in its id is
 * deleted; one whose id holds no time is left for a person to look at.
 *
 * apply() deletes each expired backup's manifest.json FIRST, then its other objects, and WAL only
 * after every backup: a crash midway leaves an incomplete backup (cleaned up by the next run), never
 * a complete backup with missing objects or WAL.
 */
import type { Catalog } from './catalog.js';
import { BACKUPS_PREFIX, MANIFEST_NAME } from './catalog.js';
import type { Repository } from './types.js';
import { parseWalFileName, segmentNumber } from './wal/segment.js';
import { recoveryWindow, type RecoveryWindow } from './window.js';

export interface RetentionPolicy {
  /** Keep backups younger than this many days. */
  readonly days: number;
  /** Keep at least this many of the newest complete backups, whatever their age. */
  readonly minCount: number;
  /** Keep at most this many (the newest restorable and the minCount newest excepted); null: no limit. */
  readonly maxCount: number | null;
  /** Incomplete backups younger than this are left alone (a backup may be in progress). */
  readonly incompleteGraceHours: number;
}

export const defaultRetention: RetentionPolicy = { days: 14, minCount: 1, maxCount: null, incompleteGraceHours: 24 };

/** One thing the plan deletes, with why. */
export interface RetentionStep {
  readonly kind: 'backup' | 'incomplete' | 'wal';
  /** The backup id, or for WAL the timeline and range ("timeline 1: 0000000100000000000000A1 … 0000000100000000000000B7"). */
  readonly subject: string;
  readonly reason: string;
  /** In deletion order; for a backup its manifest.json comes first. */
  readonly keys: readonly string[];
  readonly bytes: number;
}

export interface RetentionPlan {
  readonly repository: string;
  readonly now: string;
  readonly policy: RetentionPolicy;
  /** Backups kept, newest first, with why. */
  readonly keep: readonly { readonly id: string; readonly reason: string }[];
  readonly steps: readonly RetentionStep[];
  /** Why something that might look deletable is kept (no restorable backup, an incomplete id without a time…). */
  readonly notes: readonly string[];
}

const DAY_MS = 86_400_000;

function days(ms: number): string {
  return `${(ms / DAY_MS).toFixed(1)} days`;
}

/** Refuses a policy that cannot be right; returns it otherwise. */
export function checkPolicy(policy: RetentionPolicy): RetentionPolicy {
  if (!(policy.days >= 0)) throw new RangeError(`retention days must be 0 or more, not ${policy.days}`);
  if (!Number.isInteger(policy.minCount) || policy.minCount < 1) throw new RangeError(`retention min_count must be a whole number of at least 1, not ${policy.minCount}`);
  if (policy.maxCount !== null && (!Number.isInteger(policy.maxCount) || policy.maxCount < policy.minCount)) {
    throw new RangeError(`retention max_count (${policy.maxCount}) must be a whole number no smaller than min_count (${policy.minCount})`);
  }
  if (!(policy.incompleteGraceHours >= 0)) throw new RangeError(`the grace period for incomplete backups must be 0 hours or more, not ${policy.incompleteGraceHours}`);
  return policy;
}

/** The retention plan for `catalog` at `now` (pure). `window` may be passed when already computed. */
export function planRetention(catalog: Catalog, policy: RetentionPolicy, now: Date, window: RecoveryWindow = recoveryWindow(catalog)): RetentionPlan {
  checkPolicy(policy);
  const notes: string[] = [];
  const steps: RetentionStep[] = [];
  const keep: { id: string; reason: string }[] = [];
  const newestFirst = [...catalog.backups].reverse();
  const restorable = new Set(window.backups.filter((b) => b.restorable).map((b) => b.id));
  const newestRestorable = newestFirst.find((b) => restorable.has(b.manifest.id));

  if (newestRestorable === undefined) {
    if (catalog.backups.length > 0) notes.push('no backup is restorable (WAL missing between start and stop): no complete backup and no WAL is deleted');
    for (const backup of newestFirst) keep.push({ id: backup.manifest.id, reason: 'kept: no backup is restorable' });
  } else {
    let youngKept = 0;
    newestFirst.forEach((backup, index) => {
      const { id } = backup.manifest;
      const ageMs = now.getTime() - new Date(backup.manifest.consistentAt).getTime();
      if (backup === newestRestorable) {
        keep.push({ id, reason: 'the newest restorable backup (never deleted)' });
        youngKept += 1;
      } else if (index < policy.minCount) {
        keep.push({ id, reason: `among the newest ${policy.minCount} (min_count)` });
        youngKept += 1;
      } else if (ageMs < policy.days * DAY_MS && (policy.maxCount === null || youngKept < policy.maxCount)) {
        keep.push({ id, reason: `younger than ${policy.days} days (${days(ageMs)})` });
        youngKept += 1;
      } else {
        const reason = ageMs >= policy.days * DAY_MS
          ? `older than ${policy.days} days (${days(ageMs)}) and not among the newest ${policy.minCount}`
          : `beyond max_count ${policy.maxCount ?? ''} (${youngKept} newer backups kept)`;
        const manifestKey = `${BACKUPS_PREFIX}${id}/${MANIFEST_NAME}`;
        steps.push({ kind: 'backup', subject: id, reason, keys: [manifestKey, ...backup.keys.filter((key) => key !== manifestKey)], bytes: backup.storedBytes });
      }
    });
  }

  for (const incomplete of catalog.incomplete) {
    if (incomplete.startedAt === null) {
      notes.push(`backups/${incomplete.id}/ has no manifest and its id holds no time: left for a person to look at`);
      continue;
    }
    const ageMs = now.getTime() - new Date(incomplete.startedAt).getTime();
    if (ageMs < policy.incompleteGraceHours * 3_600_000) continue;
    steps.push({
      kind: 'incomplete', subject: incomplete.id,
      reason: `incomplete (no manifest) and started ${days(ageMs)} ago, beyond the ${policy.incompleteGraceHours} h grace period`,
      keys: incomplete.keys, bytes: incomplete.storedBytes,
    });
  }

  if (newestRestorable !== undefined) steps.push(...walSteps(catalog, window, new Set(keep.map((k) => k.id))));
  return { repository: catalog.repository, now: now.toISOString(), policy, keep, steps, notes };
}

/** WAL that no kept backup needs, one step per timeline. */
function walSteps(catalog: Catalog, window: RecoveryWindow, kept: ReadonlySet<string>): RetentionStep[] {
  const { segmentSize } = window;
  const parentOf = new Map(window.timelines.map((t) => [t.timeline, t]));
  /**
   * Whether WAL on `timeline` can be replayed by a backup that starts at segment `start` on
   * `ancestor`: the same timeline, or one descending from it through forks at or after `start`
   * (a branch taken before the backup began is another history). An inferred parent counts as
   * any lower timeline, and an inferred fork as after the start: keep rather than guess.
   */
  const descends = (timeline: number, ancestor: number, start: bigint): boolean => {
    let current = timeline;
    for (let hops = 0; hops <= parentOf.size; hops++) {
      if (current === ancestor) return true;
      const info = parentOf.get(current);
      if (info === undefined || info.parent === null) return false;
      if (info.inferred) return ancestor < current;
      const fork = info.forkWal === null ? undefined : startSegment(info.forkWal, segmentSize);
      if (fork !== undefined && fork < start) return false;
      current = info.parent;
    }
    return true; // a loop in the histories: keep rather than guess
  };
  const needs = catalog.backups
    .filter((b) => kept.has(b.manifest.id))
    .map((b) => ({ timeline: b.manifest.timeline, start: startSegment(b.manifest.startWal, segmentSize) }));
  const byTimeline = new Map<number, { keys: string[]; names: string[]; bytes: number }>();
  for (const wal of catalog.wal) {
    const number = segmentNumber(wal.file, segmentSize);
    if (number === undefined) continue;
    const needed = needs.some((need) => need.start === undefined || (number >= need.start && descends(wal.file.timeline, need.timeline, need.start)));
    if (needed) continue;
    let entry = byTimeline.get(wal.file.timeline);
    if (entry === undefined) byTimeline.set(wal.file.timeline, (entry = { keys: [], names: [], bytes: 0 }));
    entry.keys.push(wal.key);
    entry.names.push(wal.file.name);
    entry.bytes += wal.size;
  }
  const oldestKept = catalog.backups.find((b) => kept.has(b.manifest.id));
  return [...byTimeline].map(([timeline, entry]) => ({
    kind: 'wal' as const,
    subject: `timeline ${timeline}: ${entry.keys.length} files, ${entry.names[0] ?? ''} … ${entry.names[entry.names.length - 1] ?? ''}`,
    reason: `needed by no kept backup (the oldest kept, ${oldestKept?.manifest.id ?? '?'}, starts at ${oldestKept?.manifest.startWal ?? '?'})`,
    keys: entry.keys,
    bytes: entry.bytes,
  }));
}

/** The segment number of a WAL name; undefined (keep everything) for a name that is not one. */
function startSegment(name: string, segmentSize: number): bigint | undefined {
  const file = parseWalFileName(name);
  return file === undefined ? undefined : segmentNumber(file, segmentSize);
}

/** Progress of apply(): called after each step. */
export type RetentionProgress = (step: RetentionStep, done: number, total: number) => void;

/**
 * Executes a plan: every expired backup's manifest first (one delete each, so each backup turns
 * incomplete before any of its objects goes), then the rest of those backups, the incomplete ones,
 * and WAL last.
 */
export async function applyRetention(repository: Repository, plan: RetentionPlan, onProgress?: RetentionProgress): Promise<void> {
  const ordered = [...plan.steps.filter((s) => s.kind === 'backup'), ...plan.steps.filter((s) => s.kind === 'incomplete'), ...plan.steps.filter((s) => s.kind === 'wal')];
  for (const step of ordered) {
    const [first] = step.keys;
    if (step.kind === 'backup' && first !== undefined) await repository.delete([first]);
  }
  let done = 0;
  for (const step of ordered) {
    const rest = step.kind === 'backup' ? step.keys.slice(1) : step.keys;
    for (let i = 0; i < rest.length; i += 500) await repository.delete(rest.slice(i, i + 500));
    done += 1;
    onProgress?.(step, done, ordered.length);
  }
}
