/**
 * The contracts of the backup layer (issue 5), written first so that the repository, the
 * encryption and the WAL archiver can be built side by side. Keep them small; grow them with the
 * code that needs more.
 */
import type { Readable } from 'node:stream';

/** An object as the repository stores it. Keys are '/'-separated, relative to the repository root. */
export interface StoredObject {
  readonly key: string;
  readonly size: number;
  /** SHA-256 of the stored bytes (after compression and encryption), lowercase hex. */
  readonly sha256: string;
}

export interface PutOptions {
  /**
   * When the key exists already: 'fail' (default) refuses to overwrite (rule 2: an archived name is
   * never overwritten with different bytes); the caller compares checksums to accept a retry of
   * the same bytes.
   */
  readonly ifExists?: 'fail' | 'replace';
}

/** Thrown by put() when the key exists and ifExists is 'fail'. */
export class ObjectExistsError extends Error {
  constructor(readonly key: string, readonly existing: StoredObject) {
    super(`${key} already exists in the repository`);
  }
}

/** Thrown by get()/head() for a key that is verifiably not in the repository (not for an I/O error). */
export class ObjectNotFoundError extends Error {
  constructor(readonly key: string) {
    super(`${key} is not in the repository`);
  }
}

/**
 * Where backups and WAL live: a local directory or S3-compatible object storage. Every put is
 * atomic (readers see the whole object or nothing: a temporary name, fsync, rename; or a single
 * PUT / completed multipart upload) and checksummed: put() returns the SHA-256 of what was stored
 * and fails unless the store confirms the same bytes; get() verifies it when the caller gives it.
 */
export interface Repository {
  /** A name for messages, e.g. "local /var/lib/pgwarden/repo" or "s3 s3://bucket/prefix" (no secrets). */
  readonly description: string;
  put(key: string, body: Readable | Buffer, options?: PutOptions): Promise<StoredObject>;
  /** The object's bytes; with `expectedSha256`, the stream errors at its end if they differ. */
  get(key: string, expectedSha256?: string): Promise<Readable>;
  /** The object's facts, or undefined when it is verifiably absent. */
  head(key: string): Promise<StoredObject | undefined>;
  /** Every object under the prefix, in key order. */
  list(prefix: string): AsyncIterable<StoredObject>;
  delete(keys: readonly string[]): Promise<void>;
}

/** A master key: wraps the data keys. Loaded from a file or the environment, never logged. */
export interface MasterKey {
  /** A short stable id written into manifests and object headers, e.g. "2026-11". */
  readonly id: string;
  /** 32 bytes. */
  readonly key: Buffer;
}

/** The master keys a process may use: the current one encrypts, any of them decrypts. */
export interface Keyring {
  readonly current: MasterKey;
  readonly all: readonly MasterKey[];
}

/**
 * A physical backup as the repository records it: `backups/<id>/manifest.json`, written last,
 * after every object of the backup is stored and verified and the WAL from start to stop is
 * archived (rule 7). A backup without a manifest is incomplete and never restored from.
 */
export interface BackupManifest {
  readonly format: 1;
  /** Sortable and unique: "20261127T183000Z-full" style. */
  readonly id: string;
  readonly kind: 'full';
  /** pg_control's system identifier, decimal: the same as the archive's (archive.json). */
  readonly systemIdentifier: string;
  readonly pgVersion: number;
  /** The node it was taken from, and whether that node was a standby at the time. */
  readonly source: { readonly cluster: string; readonly node: string; readonly standby: boolean };
  readonly timeline: number;
  /** pg_backup_start / pg_backup_stop positions ("0/3000028"), and the WAL files that span them. */
  readonly startLsn: string;
  readonly stopLsn: string;
  readonly startWal: string;
  readonly stopWal: string;
  readonly startedAt: string;
  readonly stoppedAt: string;
  /** Latest commit time the backup is consistent at (the stop time): the earliest restore target. */
  readonly consistentAt: string;
  readonly compression: 'zstd' | 'gzip' | 'none';
  /**
   * How the objects hold the tar of the data directory. 'parts' (or absent): each object is a slice
   * of the tar compressed on its own; its originalSize/originalSha256 are the tar slice's. 'stream':
   * the server compressed the whole tar as one stream and the objects are consecutive slices of it;
   * an object's originalSize/originalSha256 are those of its compressed slice (before encryption),
   * and originalBytes is pg_basebackup's count of the data (to the kB; pgwarden never sees the tar).
   */
  readonly layout?: 'parts' | 'stream';
  /** The master key id of every encrypted object, or null when the backup is not encrypted. */
  readonly keyId: string | null;
  /** Every stored object of the backup, with the checksum of its stored bytes and of its original bytes. */
  readonly objects: readonly {
    readonly key: string;
    readonly size: number;
    readonly sha256: string;
    readonly originalSize: number;
    readonly originalSha256: string;
  }[];
  /**
   * The tablespaces besides pg_default and pg_global, each stored as its own tar (absent: none, as
   * in every manifest written before pgwarden backed them up). `objects` then holds every part:
   * the data directory's first, then each tablespace's, whose keys its entry lists.
   */
  readonly tablespaces?: readonly BackupTablespace[];
  /** The size of the tar of the data directory (the sum of the parts' original sizes; layout stream: about), tablespaces included. */
  readonly originalBytes: number;
  readonly durationMs: number;
  /** Filled in by verification and drills (rewritten atomically beside the manifest, not in it). */
}

/** A tablespace of a backup: its tar is stored in parts of its own, restored into its location or where mapped. */
export interface BackupTablespace {
  readonly oid: number;
  readonly name: string;
  /** pg_tablespace_location() on the source when the backup was taken. */
  readonly location: string;
  /** The keys of its parts (among the manifest's objects), in order: the slices of one tar, as the manifest's layout says. */
  readonly objects: readonly string[];
}

/** The result of verifying one backup or a recovery window, appended as `backups/<id>/verify-<time>.json`. */
export interface VerificationRecord {
  readonly at: string;
  readonly ok: boolean;
  readonly problems: readonly string[];
}
