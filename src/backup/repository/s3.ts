/**
 * A repository in S3-compatible object storage (@aws-sdk/client-s3), under a key prefix of a
 * bucket. Every object carries the SHA-256 of its bytes as metadata (x-amz-meta-sha256) and
 * appears whole or not at all:
 *
 * - a body whose checksum is known before sending (a Buffer, or a stream that ends within
 *   8 MiB) goes to its final key directly: one PutObject with Content-MD5 (the store checks the
 *   bytes in transit) up to 8 MiB, a multipart upload (lib-storage, 8 MiB parts) above;
 * - a longer stream is hashed while it is uploaded (multipart) to a staging key
 *   `<prefix>/.pgwarden-staging/<uuid>`, then copied server-side to its final key with the
 *   checksum as metadata (CopyObject up to 5 GiB, UploadPartCopy above), and the staging object
 *   is deleted. A crash leaves at most a staging object (never listed; expire it with a lifecycle
 *   rule), never a final key without its checksum.
 *
 * "Fail if exists": a HEAD before writing, plus If-None-Match: * on the final write where the
 * store supports conditional writes (a 412 becomes ObjectExistsError). After writing, a HEAD must
 * report the size and checksum sent, or put() fails. get() verifies the bytes at the end of the
 * stream. Credentials come from the environment only (see index.ts); no message ever holds them.
 */
import { createHash, randomUUID } from 'node:crypto';
import { Readable, pipeline } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCopyCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { UserError } from '../../errors.js';
import { ObjectExistsError, ObjectNotFoundError, type PutOptions, type Repository, type StoredObject } from '../types.js';
import { RunningDigest, VerifyingStream, isSha256, sha256Of } from './checksum.js';
import { checkKey, checkPrefix, normalizeS3Prefix } from './keys.js';
import { s3Description, s3EndpointName, type S3RepositoryOptions } from './s3-settings.js';

/** Bodies above this size go up in parts of this size. */
export const multipartThreshold = 8 * 1024 * 1024;
/** CopyObject's limit; larger staged objects are copied in parts. */
const maxSingleCopy = 5 * 1024 ** 3;
const copyPartSize = 512 * 1024 ** 2;
/** The hidden folder under the prefix that holds streams being uploaded. */
export const stagingFolder = '.pgwarden-staging';
/** HEADs (or DELETEs) in flight while list() fetches checksums (or delete() deletes). */
const headConcurrency = 8;

export { defaultCredentialNames, s3CredentialsFromEnv, type S3CredentialNames, type S3Credentials } from './s3-settings.js';

export type { S3RepositoryOptions } from './s3-settings.js';


interface Facts {
  readonly size: number;
  readonly sha256: string | undefined;
}

/** The parts of an SDK error that tell what went wrong. */
function errorFacts(error: unknown): { name: string; status: number | undefined; code: string | undefined; message: string } {
  if (!(error instanceof Error)) return { name: 'Error', status: undefined, code: undefined, message: String(error) };
  const metadata = (error as { $metadata?: { httpStatusCode?: number } }).$metadata;
  return { name: error.name, status: metadata?.httpStatusCode, code: (error as NodeJS.ErrnoException).code, message: error.message };
}

const credentialErrors = new Set(['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'ExpiredToken', 'InvalidToken', 'TokenRefreshRequired', 'AuthorizationHeaderMalformed']);
const networkErrors = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH']);

function toBuffer(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (typeof chunk === 'string') return Buffer.from(chunk);
  throw new TypeError('a repository body stream must yield Buffers, Uint8Arrays or strings');
}

/** The first `limit`+ bytes of a stream; `whole` when it ended within them. */
async function readUpTo(body: Readable, limit: number): Promise<{ whole: Buffer } | { head: Buffer[]; rest: AsyncIterator<unknown> }> {
  const iterator = body[Symbol.asyncIterator]();
  const chunks: Buffer[] = [];
  let size = 0;
  while (size <= limit) {
    const next = await iterator.next();
    if (next.done === true) return { whole: Buffer.concat(chunks) };
    const chunk = toBuffer(next.value);
    chunks.push(chunk);
    size += chunk.length;
  }
  return { head: chunks, rest: iterator };
}

/** `work` over `items` with at most `limit` in flight; results in the items' order. */
async function mapLimited<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

export class S3Repository implements Repository {
  readonly description: string;
  readonly bucket: string;
  readonly prefix: string;
  private readonly client: S3Client;
  private readonly conditionalWrites: boolean;
  private readonly credentialSource: string;
  private readonly endpointName: string;
  private readonly listPageSize: number;

  constructor(options: S3RepositoryOptions) {
    this.bucket = options.bucket;
    this.prefix = normalizeS3Prefix(options.prefix ?? '');
    this.conditionalWrites = options.conditionalWrites ?? true;
    this.credentialSource = options.credentials.source;
    this.listPageSize = options.listPageSize ?? 1000;
    if (!Number.isInteger(this.listPageSize) || this.listPageSize < 1 || this.listPageSize > 1000) throw new RangeError('listPageSize must be a whole number from 1 to 1000');
    this.endpointName = s3EndpointName(options);
    this.description = s3Description(options);
    const { accessKeyId, secretAccessKey, sessionToken } = options.credentials;
    this.client = new S3Client({
      region: options.region,
      ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
      forcePathStyle: options.forcePathStyle ?? false,
      credentials: { accessKeyId, secretAccessKey, ...(sessionToken === undefined ? {} : { sessionToken }) },
      // The SDK's default CRC32 trailers (aws-chunked bodies) are not understood by many
      // S3-compatible stores; integrity is ours: Content-MD5 on single PUTs, SHA-256 end to end.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      // Without these a dead connection hangs a put (and so PostgreSQL's archiver) for ever;
      // requestTimeout is socket inactivity, not the length of a transfer.
      requestHandler: { connectionTimeout: 10_000, requestTimeout: 120_000 },
    });
  }

  /** Releases the HTTP connections. */
  close(): void {
    this.client.destroy();
  }

  private fullKey(key: string): string {
    return this.prefix === '' ? key : `${this.prefix}/${key}`;
  }

  private where(key: string): string {
    return `s3://${this.bucket}/${this.fullKey(key)}`;
  }

  /** An SDK error as the user should read it: the bucket, the key, the cause and the fix; never a secret. */
  private failure(error: unknown, operation: string, key: string): Error {
    const { name, status, code, message } = errorFacts(error);
    // Only the store's answers and network failures are explained here; our own errors pass as they are.
    const fromStore = status !== undefined || (code !== undefined && networkErrors.has(code));
    if (!fromStore && error instanceof Error) return error;
    const what = `${this.description}: ${operation} ${this.where(key)}`;
    if (name === 'NoSuchBucket') {
      return new UserError(`${what}: the bucket "${this.bucket}" does not exist`, `create the bucket, or correct "bucket" in the repository's settings`, { cause: error });
    }
    if (credentialErrors.has(name)) {
      return new UserError(`${what}: the store refused the credentials (${name})`, `check ${this.credentialSource}: the key id, the secret and, for temporary credentials, the session token`, { cause: error });
    }
    if (name === 'AccessDenied' || status === 403) {
      return new UserError(
        `${what}: access denied (HTTP 403)`,
        `check ${this.credentialSource}, and that they may s3:GetObject, s3:PutObject, s3:DeleteObject and s3:ListBucket on ${this.bucket}${this.prefix === '' ? '' : `/${this.prefix}`}`,
        { cause: error },
      );
    }
    if (name === 'NotImplemented' && this.conditionalWrites) {
      return new UserError(
        `${what}: the store does not implement a feature used (${message}); conditional writes (If-None-Match) are the usual one`,
        'set "conditional_writes": false for this repository (docs/repositories.md says what that changes)',
        { cause: error },
      );
    }
    if (code !== undefined && networkErrors.has(code)) {
      return new UserError(`${what}: cannot reach ${this.endpointName} (${code})`, 'check "endpoint" and "region", the network, and that the store is up', { cause: error });
    }
    return new Error(`${what} failed: ${name}${status === undefined ? '' : ` (HTTP ${status})`}: ${message}`, { cause: error });
  }

  private isStatus(error: unknown, status: number): boolean {
    return errorFacts(error).status === status;
  }

  /** HEAD of a key: its size and recorded checksum, or undefined on 404 (which may also be a missing bucket). */
  private async facts(key: string): Promise<Facts | undefined> {
    try {
      const response = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.fullKey(key) }));
      const sha256 = response.Metadata?.['sha256'];
      return { size: response.ContentLength ?? 0, sha256: sha256 !== undefined && isSha256(sha256) ? sha256.toLowerCase() : undefined };
    } catch (error) {
      if (this.isStatus(error, 404)) return undefined;
      throw this.failure(error, 'HEAD', key);
    }
  }

  /** A 404 means "not there" only once the bucket is known to exist (HEAD gives no error body). */
  private async checkBucket(key: string): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch (error) {
      if (this.isStatus(error, 404)) {
        throw new UserError(`${this.description}: HEAD ${this.where(key)}: the bucket "${this.bucket}" does not exist`, `create the bucket, or correct "bucket" in the repository's settings`, { cause: error });
      }
      throw this.failure(error, 'HEAD bucket for', key);
    }
  }

  private stored(key: string, facts: Facts): StoredObject {
    if (facts.sha256 === undefined) {
      throw new UserError(
        `${this.description}: ${this.where(key)} has no recorded SHA-256 (x-amz-meta-sha256): pgwarden did not write it`,
        'remove foreign objects from the repository prefix, or check that "prefix" points at a pgwarden repository',
      );
    }
    return { key, size: facts.size, sha256: facts.sha256 };
  }

  async head(key: string): Promise<StoredObject | undefined> {
    checkKey(key);
    const facts = await this.facts(key);
    if (facts === undefined) {
      await this.checkBucket(key);
      return undefined;
    }
    return this.stored(key, facts);
  }

  async get(key: string, expectedSha256?: string): Promise<Readable> {
    checkKey(key);
    let response;
    try {
      response = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.fullKey(key) }));
    } catch (error) {
      if (errorFacts(error).name === 'NoSuchKey') throw new ObjectNotFoundError(key);
      throw this.failure(error, 'GET', key);
    }
    const body = response.Body;
    if (!(body instanceof Readable)) throw new Error(`${this.description}: GET ${this.where(key)}: the SDK returned a body that is not a Node stream`);
    const recorded = response.Metadata?.['sha256'];
    const verifier = new VerifyingStream({
      repository: this.description,
      key,
      expectedSha256,
      recordedSha256: recorded !== undefined && isSha256(recorded) ? recorded : undefined,
      recordedSize: response.ContentLength,
    });
    pipeline(body, verifier, () => undefined);
    return verifier;
  }

  /** The ObjectExistsError for a key found to exist (after a HEAD or a 412). */
  private async exists(key: string): Promise<Error> {
    const existing = await this.head(key);
    if (existing === undefined) {
      return new UserError(`${this.description}: PUT ${this.where(key)}: refused as existing, then found absent: another writer is working on this key`, 'retry; if it repeats, look for a second writer in this repository');
    }
    return new ObjectExistsError(key, existing);
  }

  async put(key: string, body: Readable | Buffer, options: PutOptions = {}): Promise<StoredObject> {
    const replace = options.ifExists === 'replace';
    const sourceErrors: unknown[] = [];
    try {
      checkKey(key);
      if (!replace) {
        const existing = await this.head(key);
        if (existing !== undefined) throw new ObjectExistsError(key, existing);
      }
      let start: { whole: Buffer } | { head: Buffer[]; rest: AsyncIterator<unknown> };
      if (Buffer.isBuffer(body)) {
        start = { whole: body };
      } else {
        try {
          start = await readUpTo(body, multipartThreshold);
        } catch (error) {
          sourceErrors.push(error);
          throw error;
        }
      }
      const stored = 'whole' in start
        ? await this.putKnown(key, start.whole, replace)
        : await this.putStreamed(key, start.head, start.rest, replace, sourceErrors);
      await this.confirm(key, stored);
      return stored;
    } catch (error) {
      if (!Buffer.isBuffer(body)) body.destroy();
      // The source's failure is the cause, whatever the upload then reported (e.g. a failed abort).
      if (sourceErrors.length > 0) throw sourceErrors[0];
      if (!replace && this.isStatus(error, 412)) throw await this.exists(key);
      throw this.failure(error, 'PUT', key);
    }
  }

  private conditional(replace: boolean): { IfNoneMatch?: string } {
    return this.conditionalWrites && !replace ? { IfNoneMatch: '*' } : {};
  }

  /** A body in memory: straight to its final key with its checksum. */
  private async putKnown(key: string, bytes: Buffer, replace: boolean): Promise<StoredObject> {
    const sha256 = sha256Of(bytes);
    const params = { Bucket: this.bucket, Key: this.fullKey(key), Metadata: { sha256 }, ...this.conditional(replace) };
    if (bytes.length <= multipartThreshold) {
      await this.client.send(new PutObjectCommand({ ...params, Body: bytes, ContentLength: bytes.length, ContentMD5: createHash('md5').update(bytes).digest('base64') }));
    } else {
      await new Upload({ client: this.client, params: { ...params, Body: bytes }, partSize: multipartThreshold, queueSize: 4 }).done();
    }
    return { key, size: bytes.length, sha256 };
  }

  /** A long stream: hashed while uploaded to a staging key, then copied into place with its checksum. */
  private async putStreamed(key: string, head: readonly Buffer[], rest: AsyncIterator<unknown>, replace: boolean, sourceErrors: unknown[]): Promise<StoredObject> {
    const digest = new RunningDigest();
    async function* chunks(): AsyncGenerator<Buffer> {
      for (const chunk of head) {
        digest.update(chunk);
        yield chunk;
      }
      for (;;) {
        let next: IteratorResult<unknown>;
        try {
          next = await rest.next();
        } catch (error) {
          sourceErrors.push(error);
          throw error;
        }
        if (next.done === true) return;
        const chunk = toBuffer(next.value);
        digest.update(chunk);
        yield chunk;
      }
    }
    const staging = `${this.prefix === '' ? '' : `${this.prefix}/`}${stagingFolder}/${randomUUID()}`;
    try {
      await new Upload({ client: this.client, params: { Bucket: this.bucket, Key: staging, Body: Readable.from(chunks()) }, partSize: multipartThreshold, queueSize: 4 }).done();
      const stored: StoredObject = { key, size: digest.size, sha256: digest.digest() };
      await this.copyIntoPlace(staging, key, stored, replace);
      return stored;
    } finally {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: staging })).catch(() => undefined);
    }
  }

  private async copyIntoPlace(staging: string, key: string, stored: StoredObject, replace: boolean): Promise<void> {
    // The prefix and the uuid hold only unreserved URL characters.
    const copySource = `${this.bucket}/${staging}`;
    const target = { Bucket: this.bucket, Key: this.fullKey(key) };
    if (stored.size <= maxSingleCopy) {
      await this.client.send(new CopyObjectCommand({ ...target, CopySource: copySource, MetadataDirective: 'REPLACE', Metadata: { sha256: stored.sha256 }, ...this.conditional(replace) }));
      return;
    }
    const { UploadId } = await this.client.send(new CreateMultipartUploadCommand({ ...target, Metadata: { sha256: stored.sha256 } }));
    try {
      const ranges: { start: number; end: number; part: number }[] = [];
      for (let start = 0, part = 1; start < stored.size; start += copyPartSize, part += 1) ranges.push({ start, end: Math.min(start + copyPartSize, stored.size) - 1, part });
      const parts = await mapLimited(ranges, 4, async ({ start, end, part }): Promise<CompletedPart> => {
        const response = await this.client.send(new UploadPartCopyCommand({ ...target, UploadId, PartNumber: part, CopySource: copySource, CopySourceRange: `bytes=${start}-${end}` }));
        return { PartNumber: part, ETag: response.CopyPartResult?.ETag };
      });
      await this.client.send(new CompleteMultipartUploadCommand({ ...target, UploadId, MultipartUpload: { Parts: parts }, ...this.conditional(replace) }));
    } catch (error) {
      await this.client.send(new AbortMultipartUploadCommand({ ...target, UploadId })).catch(() => undefined);
      throw error;
    }
  }

  /** After a write: the store must report the size and the checksum sent. */
  private async confirm(key: string, stored: StoredObject): Promise<void> {
    const facts = await this.facts(key);
    if (facts === undefined) {
      throw new UserError(`${this.description}: PUT ${this.where(key)}: the object is not there after the upload`, 'check the store (and any lifecycle rule deleting new objects), then retry');
    }
    if (facts.size !== stored.size || facts.sha256 !== stored.sha256) {
      throw new UserError(
        `${this.description}: PUT ${this.where(key)}: after the upload the store reports ${facts.size} bytes with SHA-256 ${facts.sha256 ?? '(none)'}, not the ${stored.size} bytes with SHA-256 ${stored.sha256} sent`,
        'another writer may have replaced the object (is a second cluster or host writing to this repository?), or the store lost bytes; run pgwarden verify',
      );
    }
  }

  async *list(prefix: string): AsyncGenerator<StoredObject> {
    checkPrefix(prefix);
    const base = this.prefix === '' ? '' : `${this.prefix}/`;
    let token: string | undefined;
    do {
      let page;
      try {
        page = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: base + prefix, MaxKeys: this.listPageSize, ...(token === undefined ? {} : { ContinuationToken: token }) }));
      } catch (error) {
        throw this.failure(error, 'LIST', prefix);
      }
      const keys: string[] = [];
      for (const item of page.Contents ?? []) {
        const key = item.Key?.slice(base.length);
        if (key === undefined) continue;
        try {
          checkKey(key); // staging objects and foreign names are not repository objects
        } catch {
          continue;
        }
        keys.push(key);
      }
      const facts = await mapLimited(keys, headConcurrency, (key) => this.facts(key));
      for (const [index, key] of keys.entries()) {
        const found = facts[index];
        if (found !== undefined) yield this.stored(key, found); // undefined: deleted since the listing
      }
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  async delete(keys: readonly string[]): Promise<void> {
    for (const key of keys) checkKey(key);
    // One DeleteObject per key rather than DeleteObjects: the batch call needs a body checksum that
    // several S3-compatible stores reject in the SDK's current form (CRC32 instead of Content-MD5).
    await mapLimited(keys, headConcurrency, async (key) => {
      try {
        await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.fullKey(key) }));
      } catch (error) {
        throw this.failure(error, 'DELETE', key);
      }
    });
  }
}
