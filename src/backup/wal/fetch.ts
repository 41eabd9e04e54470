/**
 * `pgwarden wal fetch %f %p`, PostgreSQL's restore_command: writes one archived WAL file to the
 * path the server asks for.
 *
 * PostgreSQL reads an exit status of 1–125 as "not in the archive" and then ends recovery (or
 * switches to streaming), so this module tells apart the one answer that may end recovery — the
 * repository verifiably holds no such file — from every other failure (unreachable repository,
 * checksum mismatch, wrong or missing key, bad compressed data, full disk), which the command line
 * turns into a fatal exit status (DESIGN §7 rule 5). A repository without archive.json is not an
 * empty archive but a wrong --repo (an unmounted disk, a typo): that is fatal too.
 *
 * The file is written to `<destination>.pgwarden.tmp`, fsynced and renamed, so the server never
 * sees a partial file.
 */
import { createHash } from 'node:crypto';
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fsyncDir } from '../../atomic-file.js';
import { UserError } from '../../errors.js';
import { decryptBuffer } from '../crypto.js';
import { ObjectNotFoundError, type Keyring, type Repository } from '../types.js';
import { decodeObject, findArchived, readArchiveInfo, readObject } from './archive.js';
import { decompress } from './compress.js';
import { parseWalFileName, systemIdentifierOfControlFile } from './segment.js';

export interface WalFetchOptions {
  readonly repository: Repository;
  /** Needed for encrypted archives; any key of the ring that wrapped an object decrypts it. */
  readonly keyring?: Keyring | undefined;
  /** The restoring data directory, to check it belongs to the archive's cluster (default: the working directory). */
  readonly dataDirectory?: string | undefined;
}

export type WalFetchResult =
  | { readonly outcome: 'restored'; readonly name: string; readonly key: string; readonly size: number }
  /** The repository verifiably holds no file of that name: the only result that may end recovery. */
  | { readonly outcome: 'not in archive'; readonly name: string };

/** The suffix of the temporary file next to the destination. */
export const TEMP_SUFFIX = '.pgwarden.tmp';

/** Writes `bytes` to `destination` through a fsynced temporary file and a rename; nothing is left behind on failure. */
async function writeDurably(destination: string, bytes: Buffer): Promise<void> {
  const temp = `${destination}${TEMP_SUFFIX}`;
  try {
    // 'w', not 'wx': a temporary file left by a fetch that was killed is ours to replace.
    const handle = await open(temp, 'w', 0o600);
    try {
      await handle.writeFile(bytes);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, destination);
  } catch (error) {
    await unlink(temp).catch(() => undefined);
    throw error;
  }
  await fsyncDir(dirname(destination));
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Refuses to restore into a data directory of another cluster than the archive's, when its pg_control is readable. */
async function checkRestoringCluster(dataDirectory: string, archiveSystemIdentifier: string, repository: Repository): Promise<void> {
  let control: Buffer;
  try {
    control = await readFile(join(dataDirectory, 'global', 'pg_control'));
  } catch {
    return; // Not run in a data directory (a manual fetch): nothing to compare.
  }
  const own = systemIdentifierOfControlFile(control);
  if (own !== archiveSystemIdentifier) {
    throw new UserError(
      `the archive in ${repository.description} belongs to system identifier ${archiveSystemIdentifier}, but ${dataDirectory} is system identifier ${own}`,
      'point restore_command at the repository of the cluster this data directory was backed up from',
    );
  }
}

/**
 * Restores the archived WAL file `name` to `destination`. Resolves 'not in archive' only when the
 * archive exists and verifiably has no such file; throws on every other failure.
 */
export async function fetchWal(name: string, destination: string, options: WalFetchOptions): Promise<WalFetchResult> {
  const { repository, keyring } = options;
  const file = parseWalFileName(name);
  if (file === undefined) throw new UserError(`"${name}" is not a WAL file name`, "use restore_command = 'pgwarden wal fetch %f %p'");
  const info = await readArchiveInfo(repository);
  if (info === undefined) {
    throw new UserError(
      `${repository.description} holds no WAL archive (no archive.json): recovery stops here rather than treat every file as missing`,
      'check --repo (a mounted disk, the right path) and that the postgres user may read it',
    );
  }
  await checkRestoringCluster(resolve(options.dataDirectory ?? process.cwd()), info.systemIdentifier, repository);

  const [object] = await findArchived(repository, file);
  if (object === undefined) return { outcome: 'not in archive', name };
  let stored: Buffer;
  try {
    stored = await readObject(repository, object);
  } catch (error) {
    // Removed between the listing and the read (retention): as missing as if never listed.
    if (error instanceof ObjectNotFoundError) return { outcome: 'not in archive', name };
    throw error;
  }
  const { header, payload } = decodeObject(object.key, stored);
  if (header.name !== name) throw new UserError(`${object.key} holds ${header.name}, not ${name}`, 'the repository is damaged: check it with pgwarden verify');
  if (header.encrypted && keyring === undefined) {
    throw new UserError(`${object.key} is encrypted and no key is configured`, 'give wal fetch the keyring the archive was written with');
  }
  const compressed = header.encrypted && keyring !== undefined ? await decryptBuffer(keyring, payload) : payload;
  const original = await decompress(compressed, header.compression);
  if (original.length !== header.size || sha256(original) !== header.sha256) {
    throw new UserError(`${object.key} does not give back the ${header.size} bytes with the SHA-256 its header names`, 'the repository is damaged: check it with pgwarden verify; restore this file from another repository');
  }
  await writeDurably(resolve(destination), original);
  return { outcome: 'restored', name, key: object.key, size: original.length };
}
