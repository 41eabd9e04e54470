/**
 * Copying a finished backup to another repository (issue 5 item 1: local plus off-site): its
 * stored objects byte for byte (still encrypted, so the off-site store never sees a key or plain
 * data), each checked against the manifest's SHA-256 on the way, then the manifest last, so the
 * copy exists in the other repository only once all of it is there (rule 7, as for a backup).
 *
 * The WAL the copy needs is not copied here: `pgwarden wal push --config` stores every segment in
 * every repository of the cluster, so the other repository must already hold the archive of the
 * same system (archive.json); a copy into a repository without it is refused, since it could not
 * be restored.
 */
import { UserError } from '../errors.js';
import { ObjectNotFoundError, type BackupManifest, type Repository } from './types.js';
import { backupPrefix, manifestKey } from './verify.js';
import { readArchiveInfo } from './wal/archive.js';

export class CopyFailedError extends UserError {}

export interface CopyOptions {
  readonly from: Repository;
  readonly to: Repository;
  readonly manifest: BackupManifest;
  readonly progress?: (line: string) => void;
}

export type CopyOutcome = 'copied' | 'present';

/**
 * Copies the backup `manifest` describes from one repository to another; 'present' when the
 * other already has it (a rerun). On failure, deletes what it stored there and throws.
 */
export async function copyBackup(options: CopyOptions): Promise<CopyOutcome> {
  const { from, to, manifest } = options;
  if ((await to.head(manifestKey(manifest.id))) !== undefined) return 'present';
  const archive = await readArchiveInfo(to);
  if (archive === undefined || archive.systemIdentifier !== manifest.systemIdentifier) {
    throw new CopyFailedError(
      `${to.description} does not hold this cluster's WAL archive (${archive === undefined ? 'no archive.json' : `its archive.json is of system ${archive.systemIdentifier}`}), so a copy of backup ${manifest.id} there could not be restored`,
      "archive to every repository: archive_command = 'pgwarden wal push %p --config FILE --cluster NAME'",
    );
  }
  // Leftovers of an earlier, interrupted copy: objects without a manifest are replaced.
  const leftovers: string[] = [];
  for await (const object of to.list(backupPrefix(manifest.id))) leftovers.push(object.key);
  if (leftovers.length > 0) await to.delete(leftovers);
  const stored: string[] = [];
  try {
    let done = 0;
    for (const object of manifest.objects) {
      const body = await from.get(object.key, object.sha256);
      const put = await to.put(object.key, body);
      stored.push(object.key);
      if (put.sha256 !== object.sha256 || put.size !== object.size) {
        throw new CopyFailedError(`${to.description} stored ${object.key} with other bytes than the manifest lists`, 'check the repository and run the copy again');
      }
      done++;
      options.progress?.(`copy ${manifest.id} to ${to.description}: ${done} of ${manifest.objects.length} parts`);
    }
    const manifestBody = await from.get(manifestKey(manifest.id));
    await to.put(manifestKey(manifest.id), manifestBody);
    return 'copied';
  } catch (error) {
    await to.delete(stored).catch(() => undefined);
    if (error instanceof ObjectNotFoundError) {
      throw new CopyFailedError(`${from.description} lacks ${error.key} of backup ${manifest.id}`, `verify it: pgwarden verify ${manifest.id}`);
    }
    throw error;
  }
}
