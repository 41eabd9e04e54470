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
 *
 * A name is found whatever compression or encryption stored it. When it is stored under two keys
 * (older versions, or two pushes with different settings caught mid-race), the first key is read
 * and the other copy must hold the same WAL: recovery never picks one of two different copies.
 */
import { createHash } from 'node:crypto';
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fsyncDir } from '../../atomic-file.js';
import { UserError, messageOf } from '../../errors.js';
import { decryptBuffer } from '../crypto.js';
import { ObjectNotFoundError, type Keyring, type Repository, type StoredObject } from '../types.js';
import { decodeObject, findArchived, readArchiveInfo, readObject } from './archive.js';
import { decompress } from './compress.js';
import { compareCopies, copyOf, readArchivedCopy, type ArchivedCopy, type WalCopy } from './copies.js';
import { parseWalFileName, systemIdentifierOfControlFile, type WalFileName } from './segment.js';

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

/** Listings before giving up when the copies of a name keep disappearing between listing and reading. */
const MAX_ATTEMPTS = 5;

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

  // The name is archived once, under a key of whatever compression and encryption its push used;
  // the first key is the one a push keeps when two copies meet (push.ts, settleClaim).
  for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
    const [object, ...others] = await findArchived(repository, file);
    if (object === undefined) return { outcome: 'not in archive', name };
    let stored: Buffer;
    try {
      stored = await readObject(repository, object);
    } catch (error) {
      // Removed between the listing and the read (retention, or a duplicate removed by a push):
      // the next listing tells whether another copy is there.
      if (error instanceof ObjectNotFoundError) continue;
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
    for (const other of others) await checkOtherCopy(repository, file, object.key, { size: header.size, sha256: header.sha256, original }, other, keyring);
    await writeDurably(resolve(destination), original);
    return { outcome: 'restored', name, key: object.key, size: original.length };
  }
  throw new Error(`the copies of ${name} in ${repository.description} disappeared while being read, ${MAX_ATTEMPTS} times`);
}

/**
 * A second copy of the name (from an older version, or two pushes that raced): recovery goes on
 * only when it holds the same WAL as the first; otherwise it stops rather than pick one.
 */
async function checkOtherCopy(
  repository: Repository, file: WalFileName, firstKey: string, first: WalCopy, other: StoredObject, keyring: Keyring | undefined,
): Promise<void> {
  let copy: ArchivedCopy;
  try {
    copy = await readArchivedCopy(repository, other, keyring);
  } catch (error) {
    if (error instanceof ObjectNotFoundError) return;
    throw new UserError(
      `${file.name} is stored twice, as ${firstKey} and ${other.key}, and ${other.key} cannot be read back: ${messageOf(error)}; recovery stops here rather than choose`,
      'check the repository with pgwarden verify; move the damaged copy aside once the other is known to be right',
    );
  }
  const { verdict } = compareCopies(file.kind, first, copyOf(copy));
  if (verdict === 'same' || verdict === 'same up to switch') return;
  throw new UserError(
    verdict === 'unknown'
      ? `${file.name} is stored twice, as ${firstKey} and ${other.key}, with different checksums, and ${other.key} is encrypted with no key at hand to compare them; recovery stops here rather than choose`
      : `${file.name} is stored twice with different WAL, as ${firstKey} and ${other.key}: two clusters or a restored copy wrote this name; recovery stops here rather than choose`,
    verdict === 'unknown'
      ? 'give wal fetch the keyring the archive was written with'
      : 'pgwarden verify names both; move aside the copy that is not of the cluster being restored, then start the server again',
  );
}
