/**
 * The WAL archive's layout inside a repository, and the format of each archived object.
 *
 *   archive.json                                         which cluster owns the archive (rule 4)
 *   wal/<timeline, 8 hex>/<WAL file name>.<zst|gz>[.enc]  one object per segment, .partial,
 *                                                        .backup or .history file
 *
 * Every object describes itself: a first line `pgwarden-wal 1 {json}\n` (the WAL file's name,
 * size and SHA-256 of its ORIGINAL bytes, the compression, whether it is encrypted, the system
 * identifier and timeline), then the compressed bytes, encrypted when a keyring is configured
 * (the encryption's own header names the key). The header is in clear so that a retried push can
 * compare checksums without the key, as pgBackRest does with the checksum in its file names; it
 * holds no secret. The key's extensions say the same for people listing the repository.
 */
import { buffer } from 'node:stream/consumers';
import { UserError } from '../../errors.js';
import { ObjectExistsError, ObjectNotFoundError, type Repository, type StoredObject } from '../types.js';
import { compressionExtension, compressions, type Compression } from './compress.js';
import { parseWalFileName, timelineHex, type WalFileKind, type WalFileName } from './segment.js';

/** The root object that binds an archive to one cluster. */
export const ARCHIVE_INFO_KEY = 'archive.json';
/** Where WAL lives in a repository. */
export const WAL_PREFIX = 'wal/';
const ENCRYPTED_EXTENSION = 'enc';
const HEADER_MAGIC = 'pgwarden-wal 1 ';
const MAX_HEADER_BYTES = 16 * 1024;

/** The cluster an archive belongs to: written by the first push, checked by every later one. */
export interface ArchiveInfo {
  readonly format: 1;
  /** pg_control's system identifier, decimal. */
  readonly systemIdentifier: string;
  /** PostgreSQL major version, when known. */
  readonly pgVersion: number | null;
  /** wal_segment_size in bytes, when known (null when the first push was a history file). */
  readonly walSegmentSize: number | null;
  readonly createdAt: string;
}

/** The identity a push brings: which cluster wrote the file. */
export interface ClusterIdentity {
  readonly systemIdentifier: string;
  readonly pgVersion: number | null;
  readonly walSegmentSize: number | null;
}

/** The first line of every archived object. */
export interface WalObjectHeader {
  readonly name: string;
  readonly kind: WalFileKind;
  /** Size of the original file in bytes. */
  readonly size: number;
  /** SHA-256 of the original file's bytes, lowercase hex. */
  readonly sha256: string;
  readonly compression: Compression;
  /** Whether the payload is encrypted (the encryption header names the key). */
  readonly encrypted: boolean;
  readonly systemIdentifier: string;
  readonly timeline: number;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The directory prefix of a timeline: `wal/00000001/`. */
export function timelinePrefix(timeline: number): string {
  return `${WAL_PREFIX}${timelineHex(timeline)}/`;
}

/** The key an archived WAL file is stored under. */
export function walObjectKey(file: WalFileName, compression: Compression, encrypted: boolean): string {
  return `${timelinePrefix(file.timeline)}${file.name}.${compressionExtension[compression]}${encrypted ? `.${ENCRYPTED_EXTENSION}` : ''}`;
}

/** What a key under wal/ stands for, or undefined for a key that is not an archived WAL file. */
export function parseWalObjectKey(key: string): { file: WalFileName; compression: Compression; encrypted: boolean } | undefined {
  const slash = key.lastIndexOf('/');
  const dir = key.slice(0, slash + 1);
  let base = key.slice(slash + 1);
  const encrypted = base.endsWith(`.${ENCRYPTED_EXTENSION}`);
  if (encrypted) base = base.slice(0, -ENCRYPTED_EXTENSION.length - 1);
  const dot = base.lastIndexOf('.');
  const compression = compressions.find((method) => compressionExtension[method] === base.slice(dot + 1));
  const file = parseWalFileName(base.slice(0, dot));
  if (dot < 0 || compression === undefined || file === undefined || dir !== timelinePrefix(file.timeline)) return undefined;
  return { file, compression, encrypted };
}

/**
 * Every stored object for this WAL file name, whatever its compression or encryption (a name is
 * archived once: rule 2 holds across settings). Usually none or one.
 */
export async function findArchived(repository: Repository, file: WalFileName): Promise<StoredObject[]> {
  const found: StoredObject[] = [];
  for await (const object of repository.list(`${timelinePrefix(file.timeline)}${file.name}.`)) {
    if (parseWalObjectKey(object.key)?.file.name === file.name) found.push(object);
  }
  return found;
}

/** Serialises the header line that starts every archived object. */
export function encodeObjectHeader(header: WalObjectHeader): Buffer {
  return Buffer.from(`${HEADER_MAGIC}${JSON.stringify(header)}\n`, 'utf8');
}

/** A stored object that is not what pgwarden writes: damaged, truncated or foreign. */
export class DamagedObjectError extends Error {
  override readonly name = 'DamagedObjectError';
}

/** Splits an archived object into its header and its payload (compressed, maybe encrypted). */
export function decodeObject(key: string, bytes: Buffer): { header: WalObjectHeader; payload: Buffer } {
  const end = bytes.subarray(0, MAX_HEADER_BYTES).indexOf(0x0a);
  const line = end < 0 ? '' : bytes.subarray(0, end).toString('utf8');
  if (!line.startsWith(HEADER_MAGIC)) throw new DamagedObjectError(`${key} does not start with a pgwarden WAL header`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(line.slice(HEADER_MAGIC.length));
  } catch {
    throw new DamagedObjectError(`${key} has an unreadable header`);
  }
  if (
    !isRecord(parsed) || typeof parsed['name'] !== 'string' || typeof parsed['size'] !== 'number' || typeof parsed['sha256'] !== 'string' ||
    !compressions.includes(parsed['compression'] as Compression) || typeof parsed['encrypted'] !== 'boolean' ||
    typeof parsed['systemIdentifier'] !== 'string' || typeof parsed['timeline'] !== 'number'
  ) {
    throw new DamagedObjectError(`${key} has a header without the fields pgwarden writes`);
  }
  const file = parseWalFileName(parsed['name']);
  if (file === undefined) throw new DamagedObjectError(`${key} has a header naming "${parsed['name']}", which is not a WAL file name`);
  const header: WalObjectHeader = {
    name: file.name,
    kind: file.kind,
    size: parsed['size'],
    sha256: parsed['sha256'],
    compression: parsed['compression'] as Compression,
    encrypted: parsed['encrypted'],
    systemIdentifier: parsed['systemIdentifier'],
    timeline: parsed['timeline'],
  };
  return { header, payload: bytes.subarray(end + 1) };
}

/** Reads a whole object, checking the repository's checksum of the stored bytes. */
export async function readObject(repository: Repository, object: StoredObject): Promise<Buffer> {
  return buffer(await repository.get(object.key, object.sha256));
}

function parseArchiveInfo(text: string, where: string): ArchiveInfo {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new UserError(`${where} is not valid JSON`, 'restore it from a copy of the repository, or point --repo at the right archive');
  }
  if (!isRecord(parsed) || parsed['format'] !== 1 || typeof parsed['systemIdentifier'] !== 'string' || !/^\d+$/.test(parsed['systemIdentifier'])) {
    throw new UserError(`${where} is not a pgwarden WAL archive description (format 1 with a systemIdentifier)`, 'point --repo at a pgwarden repository');
  }
  const number = (value: unknown): number | null => (typeof value === 'number' ? value : null);
  return {
    format: 1,
    systemIdentifier: parsed['systemIdentifier'],
    pgVersion: number(parsed['pgVersion']),
    walSegmentSize: number(parsed['walSegmentSize']),
    createdAt: typeof parsed['createdAt'] === 'string' ? parsed['createdAt'] : '',
  };
}

/** The archive's owner, or undefined when the repository verifiably has no archive.json yet. */
export async function readArchiveInfo(repository: Repository): Promise<ArchiveInfo | undefined> {
  let stream;
  try {
    const object = await repository.head(ARCHIVE_INFO_KEY);
    if (object === undefined) return undefined;
    stream = await repository.get(ARCHIVE_INFO_KEY, object.sha256);
  } catch (error) {
    if (error instanceof ObjectNotFoundError) return undefined;
    throw error;
  }
  return parseArchiveInfo((await buffer(stream)).toString('utf8'), `${ARCHIVE_INFO_KEY} in ${repository.description}`);
}

/** Refuses a cluster other than the archive's owner (rule 4); returns nothing when they match. */
export function checkOwner(info: ArchiveInfo, identity: ClusterIdentity, repository: Repository): void {
  if (info.systemIdentifier !== identity.systemIdentifier) {
    throw new UserError(
      `refused: the archive in ${repository.description} belongs to the cluster with system identifier ${info.systemIdentifier}, ` +
        `but this WAL was written by system identifier ${identity.systemIdentifier} (another cluster, or one re-created with initdb)`,
      'give this cluster its own repository (or a new --repo directory); never mix two clusters in one archive',
    );
  }
  if (info.walSegmentSize !== null && identity.walSegmentSize !== null && info.walSegmentSize !== identity.walSegmentSize) {
    throw new UserError(
      `refused: the archive in ${repository.description} holds ${info.walSegmentSize}-byte segments, this one is ${identity.walSegmentSize} bytes`,
      'give this cluster its own repository',
    );
  }
}

/**
 * The archive's owner, created from `identity` when the repository has none yet (the first push);
 * refuses a push from any other cluster (rule 4). Two first pushes racing each other are settled
 * by the repository's refusal to overwrite archive.json.
 */
export async function ensureArchiveInfo(repository: Repository, identity: ClusterIdentity, now: Date = new Date()): Promise<ArchiveInfo> {
  let info = await readArchiveInfo(repository);
  if (info === undefined) {
    const created: ArchiveInfo = { format: 1, ...identity, createdAt: now.toISOString() };
    try {
      await repository.put(ARCHIVE_INFO_KEY, Buffer.from(`${JSON.stringify(created, null, 2)}\n`, 'utf8'), { ifExists: 'fail' });
      info = created;
    } catch (error) {
      if (!(error instanceof ObjectExistsError)) throw error;
      info = await readArchiveInfo(repository);
      if (info === undefined) throw new Error(`${ARCHIVE_INFO_KEY} exists and yet cannot be read in ${repository.description}`, { cause: error });
    }
  }
  checkOwner(info, identity, repository);
  return info;
}
