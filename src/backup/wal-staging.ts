/**
 * WAL staged ahead of recovery. Recovery asks restore_command for one file at a time and waits for
 * each: a `pgwarden wal fetch` costs a Node start, a read, a decryption and a decompression, about
 * 0.3 s per segment. While the base backup unpacks, restore fetches the segments recovery will ask
 * for first (after the ones the backup brought in pg_wal/, up to STAGE_LIMIT_SEGMENTS) into
 * `pgwarden-wal-staged/` in the data directory, each checked as `wal fetch` checks it; restore_command
 * moves a staged file into place in the shell, and recovery_end_command removes what is left.
 *
 * Staging is a head start, never a requirement: a segment that cannot be staged (missing, damaged,
 * a wrong key) ends the staging with a progress line, and restore_command fetches it and reports
 * it then, only if recovery needs it.
 */
import { chown, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { messageOf } from '../errors.js';
import type { Keyring, Repository } from './types.js';
import { fetchWal } from './wal/fetch.js';
import { parseWalFileName, segmentFileName, segmentNumber } from './wal/segment.js';
import type { BackupReach } from './window.js';

/** The directory, inside the data directory, that holds staged segments. */
export const STAGED_WAL_DIR = 'pgwarden-wal-staged';

/** At most this many segments are staged (1 GiB of 16 MB segments): the rest is fetched on demand. */
export const STAGE_LIMIT_SEGMENTS = 64;

/** What to stage for a backup: its own stop WAL (it brought everything up to it) and what it reaches. */
export interface StagingScope {
  readonly backupTimeline: number;
  readonly stopWal: string;
  readonly ranges: BackupReach['ranges'];
  readonly segmentSize: number;
  /** No segment after this one (a target LSN's segment), on any timeline. */
  readonly lastSegment?: bigint;
  readonly limit?: number;
}

/**
 * The archived segments recovery will read after the backup's own, in the order it reads them
 * (position, then timeline: at a timeline switch the newer timeline's copy), at most `limit`.
 */
export function segmentsToStage(scope: StagingScope): string[] {
  const stop = parseWalFileName(scope.stopWal);
  const stopNumber = stop === undefined ? undefined : segmentNumber(stop, scope.segmentSize);
  if (stopNumber === undefined) return [];
  const limit = scope.limit ?? STAGE_LIMIT_SEGMENTS;
  const found: { timeline: number; number: bigint }[] = [];
  for (const range of scope.ranges) {
    const from = parseWalFileName(range.fromWal);
    const to = parseWalFileName(range.toWal);
    const first = from === undefined ? undefined : segmentNumber(from, scope.segmentSize);
    const last = to === undefined ? undefined : segmentNumber(to, scope.segmentSize);
    if (first === undefined || last === undefined) continue;
    // The backup's own timeline up to its stop segment is in pg_wal/ already.
    const start = range.timeline === scope.backupTimeline && first <= stopNumber ? stopNumber + 1n : first;
    const end = scope.lastSegment !== undefined && scope.lastSegment < last ? scope.lastSegment : last;
    for (let number = start; number <= end && found.length < limit * 2; number++) found.push({ timeline: range.timeline, number });
  }
  found.sort((a, b) => (a.number !== b.number ? (a.number < b.number ? -1 : 1) : a.timeline - b.timeline));
  return found.slice(0, limit).map(({ timeline, number }) => segmentFileName(timeline, number, scope.segmentSize));
}

export interface StageOptions {
  readonly repository: Repository;
  readonly keyring: Keyring | undefined;
  /** The restored data directory, the staging directory's parent. */
  readonly dataDir: string;
  readonly owner: { readonly uid: number; readonly gid: number };
  readonly signal?: AbortSignal | undefined;
}

export interface StageResult {
  readonly staged: readonly string[];
  /** The segment staging stopped at, and why; undefined when every segment was staged. */
  readonly stoppedAt?: { readonly name: string; readonly reason: string };
}

/** Fetches `names` one after the other into the staging directory, owned by the cluster's owner. */
export async function stageWal(names: readonly string[], options: StageOptions): Promise<StageResult> {
  const dir = join(options.dataDir, STAGED_WAL_DIR);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chown(dir, options.owner.uid, options.owner.gid).catch(ignoreUnlessRoot);
  const staged: string[] = [];
  for (const name of names) {
    if (options.signal?.aborted === true) return { staged, stoppedAt: { name, reason: 'the restore was interrupted' } };
    try {
      // The data directory is still being unpacked (its pg_control may be half written): the
      // restore checked the backup against the archive already, so the staging directory, which
      // holds no pg_control, stands in for it.
      const result = await fetchWal(name, join(dir, name), { repository: options.repository, keyring: options.keyring, dataDirectory: dir });
      if (result.outcome === 'not in archive') return { staged, stoppedAt: { name, reason: 'it is not in the archive' } };
      await chown(join(dir, name), options.owner.uid, options.owner.gid).catch(ignoreUnlessRoot);
      staged.push(name);
    } catch (error) {
      return { staged, stoppedAt: { name, reason: messageOf(error) } };
    }
  }
  return { staged };
}

function ignoreUnlessRoot(error: unknown): void {
  if ((process.getuid?.() ?? -1) === 0) throw error;
}

/**
 * The shell that answers restore_command from the staging directory (it runs in the data
 * directory). A move that fails exits 126, which stops recovery: exit 1 would tell the server the
 * file is not in the archive, and it would end recovery early.
 */
export function stagedWalShell(): string {
  return `if [ -f ${STAGED_WAL_DIR}/%f ]; then mv -f ${STAGED_WAL_DIR}/%f %p && exit 0; exit 126; fi`;
}

/** recovery_end_command: the segments recovery did not ask for go at its end. */
export const STAGED_WAL_CLEANUP = `rm -rf ${STAGED_WAL_DIR}`;
