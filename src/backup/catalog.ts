/**
 * The backup catalog: what a repository holds, read from the repository alone (issue 5 items 6, 8,
 * 11), so that any host with the repository can list, verify, expire and restore.
 *
 *   backups/<id>/manifest.json        a complete backup (written last, rule 7)
 *   backups/<id>/verify-<time>.json   verification records
 *   backups/<id>/…                    without manifest.json: an incomplete backup (in progress or
 *                                     abandoned); its age comes from the time in its id
 *   wal/<timeline>/<name>.<ext>       archived WAL, read from the keys only (no downloads)
 *   wal/<timeline>/<tli>.history.<ext> timeline history: downloaded (small) to learn where each
 *                                     timeline branched; without the key it is inferred from names
 *
 * Objects of one backup are listed once; manifests and records are small JSON files.
 */
import { buffer } from 'node:stream/consumers';
import { messageOf } from '../errors.js';
import { decryptBuffer } from './crypto.js';
import type { BackupManifest, Keyring, Repository, StoredObject, VerificationRecord } from './types.js';
import { ARCHIVE_INFO_KEY, WAL_PREFIX, decodeObject, parseWalObjectKey, readArchiveInfo, readObject, type ArchiveInfo } from './wal/archive.js';
import { decompress } from './wal/compress.js';
import type { WalFileName } from './wal/segment.js';

/** Where backups live in a repository. */
export const BACKUPS_PREFIX = 'backups/';
/** The name of the object that makes a backup complete. */
export const MANIFEST_NAME = 'manifest.json';

/** A complete backup: its manifest, its stored objects and what verification said of it. */
export interface CatalogBackup {
  readonly manifest: BackupManifest;
  /** Every key under backups/<id>/, manifest included, in key order. */
  readonly keys: readonly string[];
  /** Bytes stored under backups/<id>/. */
  readonly storedBytes: number;
  /** Oldest first. */
  readonly verifications: readonly VerificationRecord[];
}

/** A backups/<id>/ without manifest.json: never restored from, removed after a grace period. */
export interface IncompleteBackup {
  readonly id: string;
  readonly keys: readonly string[];
  readonly storedBytes: number;
  /** The time in the id ("20261127T183000Z-full" → 2026-11-27T18:30:00Z), or null when the id holds none. */
  readonly startedAt: string | null;
}

/** One archived WAL object, as its key names it. */
export interface ArchivedWal {
  readonly key: string;
  readonly size: number;
  readonly file: WalFileName;
}

/** A timeline history file: where its timeline branched from its parent. */
export interface TimelineHistory {
  readonly key: string;
  readonly timeline: number;
  /**
   * The direct parent and the LSN of the switch, from the file's last line; null when the file
   * could not be read (encrypted and no key given, damaged): the fork is then inferred from names.
   */
  readonly parent: { readonly timeline: number; readonly switchLsn: string } | null;
  /** Why the parent is unknown, when it is. */
  readonly unreadable?: string;
}

export interface Catalog {
  readonly repository: string;
  /** archive.json, when the repository has one. */
  readonly archive: ArchiveInfo | undefined;
  /** Complete backups, oldest first (by id, which sorts by time). */
  readonly backups: readonly CatalogBackup[];
  readonly incomplete: readonly IncompleteBackup[];
  /** Archived segments, .partial and .backup files, in key order (timeline, then position). */
  readonly wal: readonly ArchivedWal[];
  readonly histories: readonly TimelineHistory[];
  /** Things found that are not what pgwarden writes (unreadable manifests, foreign keys). */
  readonly problems: readonly string[];
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The time a backup id starts with ("20261127T183000Z…"), as an ISO string, or null. */
export function timeOfBackupId(id: string): string | null {
  const match = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z/.exec(id);
  if (match === null) return null;
  const [, y, mo, d, h, mi, s] = match;
  const date = new Date(`${y}-${mo}-${d}T${h}:${mi}:${s}Z`);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

async function readJson(repository: Repository, object: StoredObject): Promise<unknown> {
  return JSON.parse((await buffer(await repository.get(object.key, object.sha256))).toString('utf8')) as unknown;
}

/** The fields every reader relies on; a manifest without them is reported, not trusted. */
function checkManifest(value: unknown, id: string): BackupManifest | string {
  if (!isRecord(value) || value['format'] !== 1) return 'is not a format 1 manifest';
  if (value['id'] !== id) return `names the backup "${String(value['id'])}", not "${id}"`;
  for (const field of ['startLsn', 'stopLsn', 'startWal', 'stopWal', 'startedAt', 'stoppedAt', 'consistentAt', 'systemIdentifier']) {
    if (typeof value[field] !== 'string') return `has no ${field}`;
  }
  if (typeof value['timeline'] !== 'number') return 'has no timeline';
  return value as unknown as BackupManifest;
}

function checkRecord(value: unknown): VerificationRecord | undefined {
  if (!isRecord(value) || typeof value['at'] !== 'string' || typeof value['ok'] !== 'boolean' || !Array.isArray(value['problems'])) return undefined;
  return { at: value['at'], ok: value['ok'], problems: value['problems'].map(String) };
}

/** Parses a timeline history file's text: its last entry names the direct parent and the switch point. */
export function parseHistory(text: string): { timeline: number; switchLsn: string } | undefined {
  let last: { timeline: number; switchLsn: string } | undefined;
  for (const line of text.split('\n')) {
    const match = /^\s*(\d+)\s+([0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8})/.exec(line);
    if (match !== null) last = { timeline: Number(match[1]), switchLsn: (match[2] ?? '').toUpperCase() };
  }
  return last;
}

async function readHistory(repository: Repository, object: StoredObject, keyring: Keyring | undefined): Promise<Omit<TimelineHistory, 'key' | 'timeline'>> {
  try {
    const { header, payload } = decodeObject(object.key, await readObject(repository, object));
    if (header.encrypted && keyring === undefined) return { parent: null, unreadable: 'encrypted, and no key was given' };
    const compressed = header.encrypted && keyring !== undefined ? await decryptBuffer(keyring, payload) : payload;
    const parent = parseHistory((await decompress(compressed, header.compression)).toString('utf8'));
    return parent === undefined ? { parent: null, unreadable: 'it names no parent timeline' } : { parent };
  } catch (error) {
    return { parent: null, unreadable: messageOf(error) };
  }
}

/**
 * Reads the catalog of a repository: complete and incomplete backups, verification records,
 * archived WAL and timeline histories. `keyring` lets encrypted history files be read.
 */
export async function readCatalog(repository: Repository, options: { readonly keyring?: Keyring } = {}): Promise<Catalog> {
  const problems: string[] = [];
  const archive = await readArchiveInfo(repository);

  const byId = new Map<string, StoredObject[]>();
  for await (const object of repository.list(BACKUPS_PREFIX)) {
    const rest = object.key.slice(BACKUPS_PREFIX.length);
    const slash = rest.indexOf('/');
    if (slash <= 0) {
      problems.push(`${object.key} is not inside a backup directory (backups/<id>/…)`);
      continue;
    }
    const id = rest.slice(0, slash);
    byId.set(id, [...(byId.get(id) ?? []), object]);
  }

  const backups: CatalogBackup[] = [];
  const incomplete: IncompleteBackup[] = [];
  for (const [id, objects] of [...byId].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const keys = objects.map((object) => object.key);
    const storedBytes = objects.reduce((sum, object) => sum + object.size, 0);
    const manifestObject = objects.find((object) => object.key === `${BACKUPS_PREFIX}${id}/${MANIFEST_NAME}`);
    if (manifestObject === undefined) {
      incomplete.push({ id, keys, storedBytes, startedAt: timeOfBackupId(id) });
      continue;
    }
    let manifest: BackupManifest | string;
    try {
      manifest = checkManifest(await readJson(repository, manifestObject), id);
    } catch (error) {
      manifest = `cannot be read: ${messageOf(error)}`;
    }
    if (typeof manifest === 'string') {
      // Not trusted as complete; not deleted as incomplete either (a person should look at it).
      problems.push(`${manifestObject.key} ${manifest}`);
      continue;
    }
    const verifications: VerificationRecord[] = [];
    for (const object of objects) {
      const name = object.key.slice(object.key.lastIndexOf('/') + 1);
      if (!/^verify-.*\.json$/.test(name)) continue;
      try {
        const record = checkRecord(await readJson(repository, object));
        if (record === undefined) problems.push(`${object.key} is not a verification record`);
        else verifications.push(record);
      } catch (error) {
        problems.push(`${object.key} cannot be read: ${messageOf(error)}`);
      }
    }
    verifications.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
    backups.push({ manifest, keys, storedBytes, verifications });
  }

  const wal: ArchivedWal[] = [];
  const histories: TimelineHistory[] = [];
  for await (const object of repository.list(WAL_PREFIX)) {
    const parsed = parseWalObjectKey(object.key);
    if (parsed === undefined) {
      problems.push(`${object.key} is not an archived WAL file name`);
      continue;
    }
    if (parsed.file.kind === 'history') {
      histories.push({ key: object.key, timeline: parsed.file.timeline, ...(await readHistory(repository, object, options.keyring)) });
    } else {
      wal.push({ key: object.key, size: object.size, file: parsed.file });
    }
  }
  if (archive === undefined && wal.length > 0) problems.push(`the repository has WAL but no ${ARCHIVE_INFO_KEY}`);
  return { repository: repository.description, archive, backups, incomplete, wal, histories, problems };
}
