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
 *
 * The claim is on the WAL file's name, not on an object key: a copy stored with any compression or
 * encryption counts. Two pushes with different settings (the WAL receiver and archive_command)
 * can both store before either sees the other, under two keys; each lists the name again after
 * storing and settles it the same way (settleClaim), so that one object per name stays.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { UserError, messageOf } from '../../errors.js';
import { decryptBuffer, encryptBuffer } from '../crypto.js';
import { ObjectExistsError, ObjectNotFoundError, type Keyring, type Repository, type StoredObject } from '../types.js';
import {
  encodeObjectHeader,
  ensureArchiveInfo,
  findArchived,
  walObjectKey,
  DamagedObjectError,
  type ClusterIdentity,
  type WalObjectHeader,
} from './archive.js';
import { compress, decompress, defaultCompression, type Compression } from './compress.js';
import { compareCopies, copyOf, readArchivedCopy, type ArchivedCopy, type WalCopy } from './copies.js';
import {
  WalFormatError,
  parseWalFileName,
  readLongPageHeader,
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
/** Rounds of list, judge or store before giving up when other pushes keep changing the name's copies. */
const MAX_ATTEMPTS = 5;

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

/** The refusal of rule 2: `file` is archived already as `existing` with other WAL than `mine`. */
function differentContents(file: WalFileName, existing: ArchivedCopy, mine: WalCopy, repository: Repository, meanwhile: string): UserError {
  const { header } = existing;
  return new UserError(
    `refused: ${file.name} is archived already with different contents${meanwhile} (archived as ${existing.object.key}: ${header.size} bytes, SHA-256 ${header.sha256.slice(0, 16)}…; ` +
      `this file: ${mine.size} bytes, SHA-256 ${mine.sha256.slice(0, 16)}…) in ${repository.description}; an archived name is never overwritten`,
    'two clusters or a restored copy are writing to one archive: give each cluster (and each restored copy that runs on) its own repository',
  );
}

/**
 * Compares this file with one stored copy of its name: the same bytes, or the same WAL up to the
 * switch record a segment ends with. Returns undefined when the copy is gone (removed as a
 * duplicate since the listing); throws a loud refusal when it differs or is damaged (rule 2). An
 * encrypted copy without the key at hand cannot be compared, and is refused as different.
 */
async function judgeCopy(
  repository: Repository, file: WalFileName, existing: StoredObject, mine: WalCopy, keyring: Keyring | undefined, meanwhile = '',
): Promise<{ copy: ArchivedCopy; switchEnd: number | undefined } | undefined> {
  let copy: ArchivedCopy;
  try {
    copy = await readArchivedCopy(repository, existing, keyring);
  } catch (error) {
    if (error instanceof ObjectNotFoundError) return undefined;
    const why = error instanceof DamagedObjectError ? error.message : `it cannot be read back intact: ${messageOf(error)}`;
    throw new UserError(
      `${file.name} is archived already as ${existing.key} in ${repository.description}, but ${why}`,
      'check the repository (pgwarden verify); move the damaged object aside only after making sure the WAL is safe elsewhere, then the next retry archives it again',
    );
  }
  const verdict = compareCopies(file.kind, copyOf(copy), mine);
  if (verdict.verdict === 'same') return { copy, switchEnd: undefined };
  if (verdict.verdict === 'same up to switch') return { copy, switchEnd: verdict.switchEnd };
  throw differentContents(file, copy, mine, repository, meanwhile);
}

function switchNote(switchEnd: number | undefined): Pick<WalPushResult, 'switchEnd' | 'note'> {
  return switchEnd === undefined ? {} : { switchEnd, note: `same WAL up to the switch at offset ${switchEnd}; tails differ` };
}

/**
 * A retry of a name that is archived already (under any key): success when every stored copy is
 * intact and holds the same WAL; a loud refusal otherwise. Copies after the first (left by a push
 * killed while settling a race, or by older versions) are removed once they are known to hold the
 * same WAL, as settleClaim would have. Undefined when every copy vanished since the listing (the
 * caller lists again).
 */
async function judgeArchived(
  repository: Repository, file: WalFileName, existing: readonly StoredObject[], mine: WalCopy, keyring: Keyring | undefined,
): Promise<WalPushResult | undefined> {
  const judged: { copy: ArchivedCopy; switchEnd: number | undefined }[] = [];
  for (const object of existing) {
    const copy = await judgeCopy(repository, file, object, mine, keyring);
    if (copy !== undefined) judged.push(copy);
  }
  const [first, ...extra] = judged;
  if (first === undefined) return undefined;
  const result: WalPushResult = { name: file.name, key: first.copy.object.key, outcome: 'already archived', storedSize: first.copy.object.size, ...switchNote(first.switchEnd) };
  if (extra.length === 0) return result;
  const keys = extra.map(({ copy }) => copy.object.key);
  const removed = await repository.delete(keys).then(
    () => `removed ${keys.join(', ')}, another copy of the same WAL`,
    (error: unknown) => `could not remove ${keys.join(', ')}, another copy of the same WAL: ${messageOf(error)}`,
  );
  return { ...result, note: result.note === undefined ? removed : `${result.note}; ${removed}` };
}

/**
 * After storing `stored`: the name is claimed by whoever stored first, but two pushes with
 * different settings (so under different keys) may each have stored before seeing the other's.
 * Lists the name again and settles it so that one object stays:
 * - only ours: stored;
 * - another copy with other WAL (or damaged): ours is taken back and the push refused (rule 2);
 * - other copies of the same WAL: the smallest key stays. Ours is removed when another key is
 *   smaller; when ours is the smallest, the others are removed. Every push settles the same way,
 *   and an object is removed only while a smaller key with the same WAL is there, so the name is
 *   never left without a copy (rule 1), even when the other push already reported success.
 * Undefined when ours is gone (another push removed it as a duplicate): the caller judges again.
 */
async function settleClaim(
  repository: Repository, file: WalFileName, stored: StoredObject, mine: WalCopy, keyring: Keyring | undefined,
): Promise<WalPushResult | undefined> {
  const listed = await findArchived(repository, file);
  if (!listed.some((object) => object.key === stored.key)) return undefined;
  const same: { copy: ArchivedCopy; switchEnd: number | undefined }[] = [];
  for (const other of listed.filter((object) => object.key !== stored.key)) {
    let judged;
    try {
      judged = await judgeCopy(repository, file, other, mine, keyring, `, stored at the same time by another push`);
    } catch (error) {
      // Nothing was reported for ours yet: take it back, so that the name keeps the other copy only.
      const left = await repository.delete([stored.key]).then(() => '', (failure: unknown) => `; ${stored.key} could not be removed (${messageOf(failure)}): remove it by hand`);
      if (error instanceof UserError && left !== '') throw new UserError(`${error.message}${left}`, error.hint, { cause: error });
      throw error;
    }
    if (judged !== undefined) same.push(judged);
  }
  const stays = [stored.key, ...same.map(({ copy }) => copy.object.key)].sort()[0] ?? stored.key;
  if (stays === stored.key) {
    if (same.length === 0) return { name: file.name, key: stored.key, outcome: 'stored', storedSize: stored.size };
    const extra = same.map(({ copy }) => copy.object.key);
    const note = await repository.delete(extra).then(
      () => `removed ${extra.join(', ')}: the same WAL, stored at the same time by another push`,
      (error: unknown) => `could not remove ${extra.join(', ')} (the same WAL, stored at the same time by another push): ${messageOf(error)}`,
    );
    return { name: file.name, key: stored.key, outcome: 'stored', storedSize: stored.size, note };
  }
  const kept = same.find(({ copy }) => copy.object.key === stays);
  if (kept === undefined) throw new Error(`${stays} is not among the copies of ${file.name}`);
  const removed = await repository.delete([stored.key]).then(
    () => `removed ${stored.key}`,
    (error: unknown) => `could not remove ${stored.key}: ${messageOf(error)}`,
  );
  const switched = switchNote(kept.switchEnd);
  return {
    name: file.name, key: stays, outcome: 'already archived', storedSize: kept.copy.object.size, ...switched,
    note: `stored at the same time as ${stays} by another push; ${removed}${switched.note === undefined ? '' : `; ${switched.note}`}`,
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

  const keyring = options.keyring;
  const mine: WalCopy = { size: bytes.length, sha256: originalSha256, original: bytes };
  let prepared: { key: string; object: Buffer; objectSha256: string } | undefined;

  for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
    // The name is claimed whatever the compression or encryption: any copy of it counts (rule 2).
    const existing = await findArchived(repository, file);
    if (existing.length > 0) {
      const judged = await judgeArchived(repository, file, existing, mine, keyring);
      if (judged !== undefined) return judged;
      continue; // every copy vanished since the listing: list again
    }
    prepared ??= await prepareObject(file, bytes, originalSha256, identity, options);
    const { key, object, objectSha256 } = prepared;

    let stored: StoredObject;
    try {
      stored = await repository.put(key, options.stallUpload === true ? stallingStream(object) : object, { ifExists: 'fail' });
    } catch (error) {
      // Another push of the same name and settings won the race: judge its copy like any retry.
      if (error instanceof ObjectExistsError) continue;
      throw error;
    }
    if (stored.sha256 !== objectSha256 || stored.size !== object.length) {
      throw new Error(`${repository.description} confirmed ${stored.size} bytes with SHA-256 ${stored.sha256} for ${key}, but pgwarden sent ${object.length} bytes with SHA-256 ${objectSha256}`);
    }
    const confirmed = await repository.head(key);
    if (confirmed?.sha256 !== objectSha256) {
      throw new Error(`${key} is not readable under its final name in ${repository.description} right after it was stored`);
    }
    const settled = await settleClaim(repository, file, stored, mine, keyring);
    if (settled !== undefined) return settled;
  }
  throw new Error(`the copies of ${file.name} in ${repository.description} kept appearing and disappearing during ${MAX_ATTEMPTS} attempts to archive it; nothing was reported as archived`);
}

/**
 * Compresses and (with a keyring) encrypts the file into the object pushWal stores, checking the
 * round trip first: what is stored must give back the original bytes (rule 1); the repository
 * then confirms the checksum of what it stored.
 */
async function prepareObject(
  file: WalFileName, bytes: Buffer, originalSha256: string, identity: ClusterIdentity, options: WalPushOptions,
): Promise<{ key: string; object: Buffer; objectSha256: string }> {
  const compression = options.compression === undefined || options.compression === 'auto' ? await defaultCompression() : options.compression;
  const compressed = await compress(bytes, compression);
  const keyring = options.keyring;
  const payload = keyring === undefined ? compressed : await encryptBuffer(keyring, compressed);
  const unwrapped = keyring === undefined ? payload : await decryptBuffer(keyring, payload);
  if (sha256(await decompress(unwrapped, compression)) !== originalSha256) {
    throw new Error(`${compression} compression${keyring === undefined ? '' : ' and encryption'} of ${file.name} did not give back the original bytes`);
  }
  const header: WalObjectHeader = {
    name: file.name, kind: file.kind, size: bytes.length, sha256: originalSha256, compression, encrypted: keyring !== undefined,
    systemIdentifier: identity.systemIdentifier, timeline: file.timeline,
  };
  const object = Buffer.concat([encodeObjectHeader(header), payload]);
  return { key: walObjectKey(file, compression, keyring !== undefined), object, objectSha256: sha256(object) };
}
