/**
 * `pgwarden wal push %p`, PostgreSQL's archive_command: stores one WAL file (a 16 MB segment, a
 * .partial segment, a .history or a .backup file) in the repository, and says "done" only when it
 * is durably stored under its final name with a confirmed checksum (DESIGN §7 rule 1).
 *
 * Before storing, it reads who wrote the file: a segment's first page names its cluster (system
 * identifier), timeline and position; a file without a page header is identified by the data
 * directory's pg_control (archive_command runs in the data directory). A file from another cluster
 * than the archive's owner is refused (rule 4). An archived name is never overwritten: a retry of
 * the same bytes (the archiver crashed after storing, before PostgreSQL heard of it) succeeds by
 * checksum; different bytes are refused loudly (rule 2). One difference is not WAL: a segment that
 * ends with a switch holds nothing after its XLOG_SWITCH record, and the server's copy and
 * pg_receivewal's may differ there; such a copy, the same up to the switch, counts as archived
 * (the stored object stays as it is). The repository writes atomically, so a push killed halfway
 * leaves nothing under the final name.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { UserError, messageOf } from '../../errors.js';
import { decryptBuffer, encryptBuffer } from '../crypto.js';
import { ObjectExistsError, type Keyring, type Repository, type StoredObject } from '../types.js';
import {
  decodeObject,
  encodeObjectHeader,
  ensureArchiveInfo,
  findArchived,
  readObject,
  walObjectKey,
  DamagedObjectError,
  type ClusterIdentity,
  type WalObjectHeader,
} from './archive.js';
import { compress, decompress, defaultCompression, type Compression } from './compress.js';
import {
  WalFormatError,
  parseWalFileName,
  readLongPageHeader,
  sameWalUpToSwitch,
  segmentProblems,
  systemIdentifierOfControlFile,
  type WalFileName,
} from './segment.js';

export interface WalPushOptions {
  readonly repository: Repository;
  /** Encrypts what it stores when given. */
  readonly keyring?: Keyring | undefined;
  /** 'auto' (the default): zstd when the program is installed, else gzip. */
  readonly compression?: Compression | 'auto' | undefined;
  /** The data directory, for pg_control and PG_VERSION (default: the working directory, as archive_command runs). */
  readonly dataDirectory?: string | undefined;
  readonly now?: Date | undefined;
  /**
   * Test point for the kill -9 test: hand the repository the first half of the object, then stall
   * forever, so that a test can kill the process in the middle of the upload.
   */
  readonly stallUpload?: boolean | undefined;
}

export interface WalPushResult {
  readonly name: string;
  readonly key: string;
  /** 'stored' now, or 'already archived' with the same bytes (a retry). */
  readonly outcome: 'stored' | 'already archived';
  /** Bytes of the object in the repository. */
  readonly storedSize: number;
  /**
   * Set when the archived copy differs from this one only after the segment's switch record: the
   * offset where that record ends (everything before it is the same WAL).
   */
  readonly switchEnd?: number;
  /** Why an 'already archived' copy with other bytes was accepted, for a log line. */
  readonly note?: string;
}

/** History and backup-label files are a few hundred bytes; anything big is not one. */
const MAX_SMALL_FILE = 1024 * 1024;

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

async function readControlIdentity(dataDirectory: string, file: WalFileName): Promise<ClusterIdentity> {
  let control: Buffer;
  try {
    control = await readFile(join(dataDirectory, 'global', 'pg_control'));
  } catch (error) {
    throw new UserError(
      `cannot tell which cluster wrote ${file.name} (it has no page header, and ${join(dataDirectory, 'global', 'pg_control')} is unreadable: ${messageOf(error)})`,
      'run wal push in the data directory, as archive_command does, or pass --pgdata DIR',
    );
  }
  const version = await readFile(join(dataDirectory, 'PG_VERSION'), 'utf8').then((text) => Number.parseInt(text, 10), () => Number.NaN);
  return { systemIdentifier: systemIdentifierOfControlFile(control), pgVersion: Number.isFinite(version) ? version : null, walSegmentSize: null };
}

/** Who wrote the file, after checking that it is what its name says. */
async function identify(file: WalFileName, bytes: Buffer, dataDirectory: string): Promise<ClusterIdentity> {
  if (file.kind === 'history' || file.kind === 'backup') {
    if (bytes.length > MAX_SMALL_FILE) throw new UserError(`refused: ${file.name} is ${bytes.length} bytes, too big for a ${file.kind} file`, 'archive only the files PostgreSQL hands to archive_command');
    return readControlIdentity(dataDirectory, file);
  }
  let header;
  try {
    header = readLongPageHeader(bytes);
  } catch (error) {
    if (!(error instanceof WalFormatError)) throw error;
    throw new UserError(`refused: ${file.name} is not a WAL segment: ${error.message}`, 'archive only the files PostgreSQL hands to archive_command (%p)');
  }
  const problems = segmentProblems(file, header, bytes.length);
  if (problems.length > 0) {
    throw new UserError(`refused: ${file.name} is not the segment its name says: ${problems.join('; ')}`, 'archive only the files PostgreSQL hands to archive_command (%p), never a renamed or truncated copy');
  }
  return { systemIdentifier: header.systemIdentifier, pgVersion: header.pgVersion ?? null, walSegmentSize: header.segmentSize };
}

/**
 * Reads an archived object back, checking the repository's checksum of the stored bytes and, when
 * it can be decoded here (not encrypted, or encrypted and the keyring is at hand), that it gives
 * back the bytes its header names. Returns the header, and the original bytes when decoded.
 */
async function readVerified(
  repository: Repository, object: StoredObject, keyring: Keyring | undefined,
): Promise<{ header: WalObjectHeader; original: Buffer | undefined }> {
  const { header, payload } = decodeObject(object.key, await readObject(repository, object));
  if (header.encrypted && keyring === undefined) return { header, original: undefined };
  const compressed = header.encrypted && keyring !== undefined ? await decryptBuffer(keyring, payload) : payload;
  const original = await decompress(compressed, header.compression);
  if (original.length !== header.size || sha256(original) !== header.sha256) {
    throw new DamagedObjectError(`${object.key} does not give back the ${header.size} bytes its header names`);
  }
  return { header, original };
}

/**
 * A retry of a name that is archived already: success when the stored copy is intact and holds the
 * same original bytes, or the same WAL up to the switch record a segment ends with; a loud
 * refusal otherwise (rule 2).
 */
async function compareWithArchived(
  repository: Repository, file: WalFileName, existing: StoredObject, bytes: Buffer, originalSha256: string, keyring: Keyring | undefined,
): Promise<WalPushResult> {
  let header: WalObjectHeader;
  let archived: Buffer | undefined;
  try {
    ({ header, original: archived } = await readVerified(repository, existing, keyring));
  } catch (error) {
    const why = error instanceof DamagedObjectError ? error.message : `it cannot be read back intact: ${messageOf(error)}`;
    throw new UserError(
      `${file.name} is archived already as ${existing.key} in ${repository.description}, but ${why}`,
      'check the repository (pgwarden verify); move the damaged object aside only after making sure the WAL is safe elsewhere, then the next retry archives it again',
    );
  }
  const size = bytes.length;
  if (header.sha256 === originalSha256 && header.size === size) {
    return { name: file.name, key: existing.key, outcome: 'already archived', storedSize: existing.size };
  }
  // Both copies end with a switch at the same place and hold the same bytes up to it: the same WAL.
  // An encrypted copy without the key at hand cannot be compared, and is refused as different.
  const switchEnd = file.kind === 'segment' && archived !== undefined ? sameWalUpToSwitch(archived, bytes) : undefined;
  if (switchEnd === undefined) {
    throw new UserError(
      `refused: ${file.name} is archived already with different contents (archived: ${header.size} bytes, SHA-256 ${header.sha256.slice(0, 16)}…; ` +
        `this file: ${size} bytes, SHA-256 ${originalSha256.slice(0, 16)}…) in ${repository.description}; an archived name is never overwritten`,
      'two clusters or a restored copy are writing to one archive: give each cluster (and each restored copy that runs on) its own repository',
    );
  }
  return {
    name: file.name, key: existing.key, outcome: 'already archived', storedSize: existing.size, switchEnd,
    note: `same WAL up to the switch at offset ${switchEnd}; tails differ`,
  };
}

/** A stream that yields the first half of `bytes` and then never ends (the stallUpload test point). */
function stallingStream(bytes: Buffer): Readable {
  let started = false;
  return new Readable({
    read() {
      if (started) return;
      started = true;
      this.push(bytes.subarray(0, Math.floor(bytes.length / 2)));
      // Keep the process alive: with nothing pending, Node would exit (13) instead of stalling.
      setInterval(() => undefined, 60_000);
    },
  });
}

/** Archives the WAL file at `path`; throws a UserError naming the cause and the fix when it cannot. */
export async function pushWal(path: string, options: WalPushOptions): Promise<WalPushResult> {
  const { repository } = options;
  const name = basename(path);
  const file = parseWalFileName(name);
  if (file === undefined) throw new UserError(`refused: "${name}" is not a WAL file name`, 'use archive_command = \'pgwarden wal push %p\' (PostgreSQL passes the path as %p)');
  const dataDirectory = resolve(options.dataDirectory ?? process.cwd());
  let bytes: Buffer;
  try {
    bytes = await readFile(resolve(path));
  } catch (error) {
    throw new UserError(`cannot read ${path}: ${messageOf(error)}`, 'wal push runs in the data directory with %p relative to it; check the path and that the postgres user may read it');
  }
  const identity = await identify(file, bytes, dataDirectory);
  await ensureArchiveInfo(repository, identity, options.now);
  const originalSha256 = sha256(bytes);

  const [existing] = await findArchived(repository, file);
  if (existing !== undefined) return compareWithArchived(repository, file, existing, bytes, originalSha256, options.keyring);

  const compression = options.compression === undefined || options.compression === 'auto' ? await defaultCompression() : options.compression;
  const compressed = await compress(bytes, compression);
  const keyring = options.keyring;
  const payload = keyring === undefined ? compressed : await encryptBuffer(keyring, compressed);
  // Rule 1: what is stored must give back the original bytes, so the round trip is checked before
  // the upload; the repository then confirms the checksum of what it stored.
  const unwrapped = keyring === undefined ? payload : await decryptBuffer(keyring, payload);
  if (sha256(await decompress(unwrapped, compression)) !== originalSha256) {
    throw new Error(`${compression} compression${keyring === undefined ? '' : ' and encryption'} of ${file.name} did not give back the original bytes`);
  }
  const header: WalObjectHeader = {
    name: file.name, kind: file.kind, size: bytes.length, sha256: originalSha256, compression, encrypted: keyring !== undefined,
    systemIdentifier: identity.systemIdentifier, timeline: file.timeline,
  };
  const object = Buffer.concat([encodeObjectHeader(header), payload]);
  const objectSha256 = sha256(object);
  const key = walObjectKey(file, compression, keyring !== undefined);

  let stored: StoredObject;
  try {
    stored = await repository.put(key, options.stallUpload === true ? stallingStream(object) : object, { ifExists: 'fail' });
  } catch (error) {
    // Another push of the same name won the race: judge its copy like any retry.
    if (error instanceof ObjectExistsError) return compareWithArchived(repository, file, error.existing, bytes, originalSha256, keyring);
    throw error;
  }
  if (stored.sha256 !== objectSha256 || stored.size !== object.length) {
    throw new Error(`${repository.description} confirmed ${stored.size} bytes with SHA-256 ${stored.sha256} for ${key}, but pgwarden sent ${object.length} bytes with SHA-256 ${objectSha256}`);
  }
  const confirmed = await repository.head(key);
  if (confirmed?.sha256 !== objectSha256) {
    throw new Error(`${key} is not readable under its final name in ${repository.description} right after it was stored`);
  }
  return { name: file.name, key, outcome: 'stored', storedSize: stored.size };
}
