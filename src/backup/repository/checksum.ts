/**
 * SHA-256 while bytes flow: a running digest for writers, and a pass-through stream for readers
 * that fails at its end (instead of ending) when the bytes are not the ones expected, so a caller
 * that writes to a temporary name and renames only after a clean end never keeps corrupted bytes.
 */
import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

/** Lowercase hex SHA-256 of a buffer. */
export function sha256Of(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** True for a lowercase or uppercase 64-digit hex string. */
export function isSha256(text: string): boolean {
  return /^[0-9a-fA-F]{64}$/.test(text);
}

/** A running SHA-256 and byte count. */
export class RunningDigest {
  private readonly hash: Hash = createHash('sha256');
  size = 0;

  update(chunk: Uint8Array): void {
    this.hash.update(chunk);
    this.size += chunk.length;
  }

  /** The lowercase hex digest; call once, after the last update. */
  digest(): string {
    return this.hash.digest('hex');
  }
}

/** The bytes read did not match the recorded or expected checksum (or size). */
export class ChecksumMismatchError extends Error {
  override readonly name = 'ChecksumMismatchError';

  constructor(
    message: string,
    readonly key: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(message);
  }
}

/** What a VerifyingStream checks at its end; each check is skipped when undefined. */
export interface Expectations {
  /** Where the bytes come from, for messages, e.g. "local /srv/repo". */
  readonly repository: string;
  readonly key: string;
  /** The caller's checksum: which object it wants. */
  readonly expectedSha256: string | undefined;
  /** The repository's own record of what it stored (sidecar, object metadata). */
  readonly recordedSha256: string | undefined;
  readonly recordedSize: number | undefined;
}

/** A pass-through that hashes everything and errors at the end on any mismatch. */
export class VerifyingStream extends Transform {
  private readonly digest = new RunningDigest();

  constructor(private readonly expectations: Expectations) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.digest.update(chunk);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    const { repository, key, expectedSha256, recordedSha256, recordedSize } = this.expectations;
    const size = this.digest.size;
    const actual = this.digest.digest();
    const where = `${repository}: ${key}`;
    if (recordedSize !== undefined && size !== recordedSize) {
      callback(new ChecksumMismatchError(`${where}: read ${size} bytes but ${recordedSize} were stored: the object is truncated or corrupt`, key, String(recordedSize), String(size)));
    } else if (recordedSha256 !== undefined && actual !== recordedSha256.toLowerCase()) {
      callback(new ChecksumMismatchError(`${where}: the bytes read have SHA-256 ${actual}, but ${recordedSha256} was recorded when it was stored: the stored object is corrupt`, key, recordedSha256, actual));
    } else if (expectedSha256 !== undefined && actual !== expectedSha256.toLowerCase()) {
      callback(new ChecksumMismatchError(`${where}: the bytes read have SHA-256 ${actual}, not the expected ${expectedSha256}: this is not the object the caller expects, or it is corrupt`, key, expectedSha256, actual));
    } else {
      callback();
    }
  }
}
