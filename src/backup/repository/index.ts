/**
 * Opening a backup repository from its validated settings: a local directory or S3-compatible
 * object storage. Credentials for S3 are read here, from the environment only.
 */
import type { Readable } from 'node:stream';
import type { PutOptions, Repository, StoredObject } from '../types.js';
import type { RepositorySpec } from './config.js';
import { LocalRepository } from './local.js';
import type { S3Repository } from './s3.js';
import { defaultCredentialNames, s3CredentialsFromEnv, s3Description, type S3RepositoryOptions } from './s3-settings.js';

export type { LocalRepositorySpec, RepositoryConfig, RepositorySpec, S3RepositorySpec } from './config.js';
export { parseRepositories } from './config.js';
export { LocalRepository } from './local.js';
export { s3CredentialsFromEnv, type S3Credentials, type S3CredentialNames, type S3RepositoryOptions } from './s3-settings.js';
export { ChecksumMismatchError } from './checksum.js';
export { InvalidKeyError, checkKey, checkPrefix } from './keys.js';

/** A repository that holds connections until closed. */
export interface OpenRepository extends Repository {
  /** Releases connections (S3); nothing for a local directory. */
  close(): void;
}

/**
 * Opens the repository described by `spec`. S3 credentials come from the variables the spec names
 * (or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN); a missing one is a UserError.
 * `name` is used in messages.
 */
export function openRepository(spec: RepositorySpec, env: Readonly<Record<string, string | undefined>> = process.env, name?: string): OpenRepository {
  if (spec.type === 'local') return new LocalRepository(spec.path);
  const label = name === undefined ? `the S3 repository s3://${spec.bucket}` : `repository "${name}"`;
  return new LazyS3Repository({
    endpoint: spec.endpoint,
    region: spec.region,
    bucket: spec.bucket,
    prefix: spec.prefix,
    forcePathStyle: spec.forcePathStyle,
    conditionalWrites: spec.conditionalWrites,
    credentials: s3CredentialsFromEnv(spec.credentialsEnv ?? defaultCredentialNames, env, label),
  });
}

/**
 * An S3 repository whose SDK is loaded at its first operation (about 0.7 s of start-up that a
 * `wal fetch` from a local repository, run once per WAL file during recovery, must not pay).
 */
class LazyS3Repository implements OpenRepository {
  readonly description: string;
  private loaded: Promise<S3Repository> | undefined;

  constructor(private readonly options: S3RepositoryOptions) {
    this.description = s3Description(options);
  }

  private repository(): Promise<S3Repository> {
    this.loaded ??= import('./s3.js').then(({ S3Repository: Implementation }) => new Implementation(this.options));
    return this.loaded;
  }

  async put(key: string, body: Readable | Buffer, options?: PutOptions): Promise<StoredObject> {
    return (await this.repository()).put(key, body, options);
  }

  async get(key: string, expectedSha256?: string): Promise<Readable> {
    return (await this.repository()).get(key, expectedSha256);
  }

  async head(key: string): Promise<StoredObject | undefined> {
    return (await this.repository()).head(key);
  }

  async *list(prefix: string): AsyncIterable<StoredObject> {
    yield* (await this.repository()).list(prefix);
  }

  async delete(keys: readonly string[]): Promise<void> {
    return (await this.repository()).delete(keys);
  }

  close(): void {
    void this.loaded?.then((repository) => repository.close(), () => undefined);
  }
}
