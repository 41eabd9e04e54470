/**
 * Repository keys: '/'-separated segments of a small ASCII alphabet, checked before any I/O so that
 * a key can never leave the repository ('..', absolute paths, empty segments) and never collide
 * with the repository's own hidden files (temporary files, checksum sidecars, S3 staging objects),
 * which all start with a dot. ASCII only also makes JavaScript's string order the same as S3's
 * byte order, so both implementations list keys in the same order.
 */
import { UserError } from '../../errors.js';

/** Characters a key segment may hold; a segment never starts with '.'. */
const segmentPattern = /^[A-Za-z0-9_:+=@,~-][A-Za-z0-9_.:+=@,~-]*$/;
/** The last, partial segment of a list() prefix may be empty. */
const partialPattern = /^([A-Za-z0-9_:+=@,~-][A-Za-z0-9_.:+=@,~-]*)?$/;

/** S3's limit on a whole key; the local file system limits a segment to 255 bytes. */
export const maxKeyLength = 1024;
const maxSegmentLength = 200;

/** A key or prefix that the repository refuses (a bug in the caller, or a hostile name). */
export class InvalidKeyError extends Error {
  override readonly name = 'InvalidKeyError';
}

function problemWithSegment(segment: string): string | undefined {
  if (segment === '') return 'has an empty segment (a leading, trailing or doubled "/")';
  if (segment === '.' || segment === '..') return `has a "${segment}" segment`;
  if (segment.startsWith('.')) return 'has a segment starting with "." (reserved for the repository\'s own files)';
  if (segment.length > maxSegmentLength) return `has a segment longer than ${maxSegmentLength} characters`;
  if (!segmentPattern.test(segment)) return 'has characters outside A-Z a-z 0-9 and _ . : + = @ , ~ -';
  return undefined;
}

/** Throws InvalidKeyError unless `key` is a valid object key. */
export function checkKey(key: string): void {
  if (key === '') throw new InvalidKeyError('an empty key is not a repository key');
  if (key.length > maxKeyLength) throw new InvalidKeyError(`the key ${JSON.stringify(key.slice(0, 60))}… is longer than ${maxKeyLength} characters`);
  if (key.startsWith('/')) throw new InvalidKeyError(`the key ${JSON.stringify(key)} is absolute; keys are relative to the repository root`);
  for (const segment of key.split('/')) {
    const problem = problemWithSegment(segment);
    if (problem !== undefined) throw new InvalidKeyError(`the key ${JSON.stringify(key)} ${problem}`);
  }
}

/**
 * Throws InvalidKeyError unless `prefix` is a valid list() prefix: '' (everything), whole segments
 * followed by '/', or whole segments followed by the start of a segment ("wal/00000001").
 */
export function checkPrefix(prefix: string): void {
  if (prefix === '') return;
  if (prefix.length > maxKeyLength) throw new InvalidKeyError(`the prefix ${JSON.stringify(prefix.slice(0, 60))}… is longer than ${maxKeyLength} characters`);
  if (prefix.startsWith('/')) throw new InvalidKeyError(`the prefix ${JSON.stringify(prefix)} is absolute; keys are relative to the repository root`);
  const segments = prefix.split('/');
  const partial = segments.pop() ?? '';
  for (const segment of segments) {
    const problem = problemWithSegment(segment);
    if (problem !== undefined) throw new InvalidKeyError(`the prefix ${JSON.stringify(prefix)} ${problem}`);
  }
  if (!partialPattern.test(partial)) throw new InvalidKeyError(`the prefix ${JSON.stringify(prefix)} ends with an invalid partial segment`);
}

/** The directory part of a key or prefix ("" for the root): everything before the last '/'. */
export function directoryOf(keyOrPrefix: string): string {
  const slash = keyOrPrefix.lastIndexOf('/');
  return slash < 0 ? '' : keyOrPrefix.slice(0, slash);
}

/** The last segment of a key. */
export function baseNameOf(key: string): string {
  return key.slice(key.lastIndexOf('/') + 1);
}

/** Validates and normalises a key prefix: '' or '/'-separated segments of A-Z a-z 0-9 . _ - (not starting with '.'). */
export function normalizeS3Prefix(prefix: string): string {
  const trimmed = prefix.replace(/^\/+|\/+$/g, '');
  if (trimmed === '') return '';
  for (const segment of trimmed.split('/')) {
    if (!/^[A-Za-z0-9_-][A-Za-z0-9._-]*$/.test(segment)) {
      throw new UserError(
        `the S3 prefix "${prefix}" has an invalid segment "${segment}"`,
        'use segments of letters, digits, ".", "_" and "-" separated by "/", none empty or starting with ".", e.g. "pgwarden/prod"',
      );
    }
  }
  return trimmed;
}
