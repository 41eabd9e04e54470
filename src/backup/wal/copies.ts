/**
 * Copies of one WAL file name in a repository, and whether they hold the same WAL.
 *
 * A name is archived once, whatever the compression or encryption (DESIGN §7 rule 2): a push
 * claims the name, not a key. Two pushes with different settings racing on one segment (the WAL
 * receiver and archive_command) can still each store an object before either sees the other's,
 * and archives written by older versions may hold such pairs. These helpers read the copies back,
 * compare them (the same original bytes, or the same WAL up to the XLOG_SWITCH record a segment
 * ends with) and describe the pairs for `pgwarden verify`.
 */
import { createHash } from 'node:crypto';
import { messageOf } from '../../errors.js';
import { decryptBuffer } from '../crypto.js';
import { ObjectNotFoundError, type Keyring, type Repository, type StoredObject } from '../types.js';
import { DamagedObjectError, decodeObject, parseWalObjectKey, readObject, type WalObjectHeader } from './archive.js';
import { decompress } from './compress.js';
import { sameWalUpToSwitch, type WalFileKind } from './segment.js';

/** An archived object read back and checked against its header. */
export interface ArchivedCopy {
  readonly object: StoredObject;
  readonly header: WalObjectHeader;
  /** The original bytes; undefined when the object is encrypted and no keyring is at hand. */
  readonly original: Buffer | undefined;
}

/** What is known of one copy of a WAL file: its size and checksum, and its bytes when decoded. */
export interface WalCopy {
  readonly size: number;
  readonly sha256: string;
  readonly original: Buffer | undefined;
}

/** How two copies of one WAL file compare. */
export type CopyVerdict =
  | { readonly verdict: 'same' }
  /** Both end with a switch record ending at `switchEnd`, and every byte before it is the same. */
  | { readonly verdict: 'same up to switch'; readonly switchEnd: number }
  | { readonly verdict: 'different' }
  /** Different checksums and at least one copy cannot be decoded here (encrypted, no key). */
  | { readonly verdict: 'unknown' };

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * Reads an archived object back, checking the repository's checksum of the stored bytes and, when
 * it can be decoded here (not encrypted, or encrypted and the keyring is at hand), that it gives
 * back the bytes its header names. Throws ObjectNotFoundError when it is gone, DamagedObjectError
 * when it is not what pgwarden writes.
 */
export async function readArchivedCopy(repository: Repository, object: StoredObject, keyring: Keyring | undefined): Promise<ArchivedCopy> {
  const { header, payload } = decodeObject(object.key, await readObject(repository, object));
  if (header.encrypted && keyring === undefined) return { object, header, original: undefined };
  const compressed = header.encrypted && keyring !== undefined ? await decryptBuffer(keyring, payload) : payload;
  const original = await decompress(compressed, header.compression);
  if (original.length !== header.size || sha256(original) !== header.sha256) {
    throw new DamagedObjectError(`${object.key} does not give back the ${header.size} bytes its header names`);
  }
  return { object, header, original };
}

/** The WalCopy of an archived copy. */
export function copyOf(archived: ArchivedCopy): WalCopy {
  return { size: archived.header.size, sha256: archived.header.sha256, original: archived.original };
}

/** Whether two copies of a WAL file of this kind hold the same WAL (pure). */
export function compareCopies(kind: WalFileKind, a: WalCopy, b: WalCopy): CopyVerdict {
  if (a.sha256 === b.sha256 && a.size === b.size) return { verdict: 'same' };
  if (a.original === undefined || b.original === undefined) return { verdict: 'unknown' };
  const switchEnd = kind === 'segment' ? sameWalUpToSwitch(a.original, b.original) : undefined;
  return switchEnd === undefined ? { verdict: 'different' } : { verdict: 'same up to switch', switchEnd };
}

/** Keys that name one WAL file more than once, grouped by that name (pure; keys sorted). */
export function duplicateKeys(keys: Iterable<string>): { readonly name: string; readonly kind: WalFileKind; readonly keys: readonly string[] }[] {
  const byName = new Map<string, { kind: WalFileKind; keys: string[] }>();
  for (const key of keys) {
    const parsed = parseWalObjectKey(key);
    if (parsed === undefined) continue;
    const entry = byName.get(parsed.file.name);
    if (entry === undefined) byName.set(parsed.file.name, { kind: parsed.file.kind, keys: [key] });
    else entry.keys.push(key);
  }
  return [...byName]
    .filter(([, entry]) => entry.keys.length > 1)
    .map(([name, entry]) => ({ name, kind: entry.kind, keys: [...entry.keys].sort() }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** What `pgwarden verify` says of WAL names stored under more than one key. */
export interface DuplicateReport {
  /** Pairs holding the same WAL, or that cannot be compared here: harmless, but worth tidying. */
  readonly warnings: string[];
  /** Pairs holding different WAL, or a copy that cannot be read: a broken rule 2. */
  readonly problems: string[];
}

/**
 * Reads every copy of each WAL name stored under more than one key (by older versions, or by two
 * pushes with different settings that raced) and compares each with the first (the one
 * `wal fetch` reads). The same WAL is a warning naming the keys; different WAL is a problem.
 */
export async function checkDuplicateWal(repository: Repository, keyring: Keyring | undefined, keys: Iterable<string>): Promise<DuplicateReport> {
  const warnings: string[] = [];
  const problems: string[] = [];
  for (const group of duplicateKeys(keys)) {
    const copies: ArchivedCopy[] = [];
    let unreadable: string | undefined;
    for (const key of group.keys) {
      const object = await repository.head(key);
      if (object === undefined) continue; // removed since the listing
      try {
        copies.push(await readArchivedCopy(repository, object, keyring));
      } catch (error) {
        if (error instanceof ObjectNotFoundError) continue;
        unreadable = `${key}: ${messageOf(error)}`;
        break;
      }
    }
    const keyList = group.keys.join(' and ');
    if (unreadable !== undefined) {
      problems.push(`WAL ${group.name} is stored under ${group.keys.length} keys (${keyList}), and one cannot be read back: ${unreadable}`);
      continue;
    }
    const [first, ...others] = copies;
    if (first === undefined || others.length === 0) continue;
    const verdicts = others.map((other) => compareCopies(group.kind, copyOf(first), copyOf(other)));
    const stored = `WAL ${group.name} is stored under ${copies.length} keys (${copies.map((copy) => copy.object.key).join(' and ')})`;
    if (verdicts.some((v) => v.verdict === 'different')) {
      problems.push(`${stored} with different WAL in them (SHA-256 ${copies.map((copy) => `${copy.header.sha256.slice(0, 16)}…`).join(' and ')}): two clusters or a restored copy wrote this name; wal fetch reads ${first.object.key}`);
    } else if (verdicts.some((v) => v.verdict === 'unknown')) {
      warnings.push(`${stored}; their checksums differ and they are encrypted: give the keys to compare them (wal fetch reads ${first.object.key})`);
    } else {
      const how = verdicts.some((v) => v.verdict === 'same up to switch') ? 'the same WAL up to the segment\'s switch record' : 'the same bytes';
      warnings.push(`${stored}, holding ${how}; wal fetch reads ${first.object.key}, and the other can be deleted`);
    }
  }
  return { warnings, problems };
}
