/**
 * Opening a backup repository from its validated settings: a local directory or S3-compatible
 * object storage. Credentials for S3 are read here, from the environment only.
 */
import type { Repository } from '../types.js';
import type { RepositorySpec } from './config.js';
import { LocalRepository } from './local.js';
import { S3Repository, defaultCredentialNames, s3CredentialsFromEnv } from './s3.js';

export type { LocalRepositorySpec, RepositoryConfig, RepositorySpec, S3RepositorySpec } from './config.js';
export { parseRepositories } from './config.js';
export { LocalRepository } from './local.js';
export { S3Repository, multipartThreshold, s3CredentialsFromEnv, type S3Credentials, type S3CredentialNames, type S3RepositoryOptions } from './s3.js';
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
  return new S3Repository({
    endpoint: spec.endpoint,
    region: spec.region,
    bucket: spec.bucket,
    prefix: spec.prefix,
    forcePathStyle: spec.forcePathStyle,
    conditionalWrites: spec.conditionalWrites,
    credentials: s3CredentialsFromEnv(spec.credentialsEnv ?? defaultCredentialNames, env, label),
  });
}
