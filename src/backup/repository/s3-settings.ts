/**
 * What an S3 repository is configured with, its name in messages, and its credentials from the
 * environment: everything about S3 that does not need the AWS SDK, so that opening a repository
 * (and every `wal push`/`wal fetch`, run once per WAL file) loads the SDK only when it talks to S3.
 */
import { UserError } from '../../errors.js';
import { normalizeS3Prefix } from './keys.js';

/** The access key for the store; `source` names where it came from, for messages. */
export interface S3Credentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken: string | undefined;
  /** E.g. "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY": names, never values. */
  readonly source: string;
}

/** The environment variables that hold the credentials (the defaults are AWS_*). */
export interface S3CredentialNames {
  readonly accessKeyIdEnv: string;
  readonly secretAccessKeyEnv: string;
  readonly sessionTokenEnv: string | undefined;
}

export const defaultCredentialNames: S3CredentialNames = {
  accessKeyIdEnv: 'AWS_ACCESS_KEY_ID',
  secretAccessKeyEnv: 'AWS_SECRET_ACCESS_KEY',
  sessionTokenEnv: 'AWS_SESSION_TOKEN',
};

/**
 * Reads the credentials from the environment variables named (the AWS_* ones by default). Throws a
 * UserError naming the missing variables, never their values.
 */
export function s3CredentialsFromEnv(
  names: S3CredentialNames = defaultCredentialNames,
  env: Readonly<Record<string, string | undefined>> = process.env,
  repository = 'the S3 repository',
): S3Credentials {
  const value = (name: string): string | undefined => {
    const text = env[name];
    return text === undefined || text === '' ? undefined : text;
  };
  const accessKeyId = value(names.accessKeyIdEnv);
  const secretAccessKey = value(names.secretAccessKeyEnv);
  const source = `${names.accessKeyIdEnv} and ${names.secretAccessKeyEnv}`;
  const missing = [accessKeyId === undefined ? names.accessKeyIdEnv : undefined, secretAccessKey === undefined ? names.secretAccessKeyEnv : undefined]
    .filter((name): name is string => name !== undefined);
  if (accessKeyId === undefined || secretAccessKey === undefined) {
    const isDefault = names.accessKeyIdEnv === defaultCredentialNames.accessKeyIdEnv && names.secretAccessKeyEnv === defaultCredentialNames.secretAccessKeyEnv;
    throw new UserError(
      `${repository}: no S3 credentials: ${missing.join(' and ')} ${missing.length === 1 ? 'is' : 'are'} not set in the environment`,
      isDefault
        ? 'export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary credentials) for the pgwarden process, or name other variables with access_key_id_env and secret_access_key_env'
        : `export ${source} for the pgwarden process (the config file names the variables; it never holds the keys)`,
    );
  }
  const sessionToken = names.sessionTokenEnv === undefined ? undefined : value(names.sessionTokenEnv);
  return { accessKeyId, secretAccessKey, sessionToken, source: sessionToken === undefined ? source : `${source} (with ${names.sessionTokenEnv ?? ''})` };
}

export interface S3RepositoryOptions {
  /** E.g. "https://s3.eu-central-003.backblazeb2.com" or "http://127.0.0.1:9000"; undefined: AWS. */
  readonly endpoint?: string | undefined;
  readonly region: string;
  readonly bucket: string;
  /** Key prefix inside the bucket, without leading or trailing '/' ('' for the bucket's root). */
  readonly prefix?: string | undefined;
  /** Path-style URLs (http://host/bucket/key), which most S3-compatible servers need. */
  readonly forcePathStyle?: boolean | undefined;
  /** Send If-None-Match: * on the final write (default true); false for stores that reject it. */
  readonly conditionalWrites?: boolean | undefined;
  readonly credentials: S3Credentials;
  /** Keys per ListObjectsV2 page, 1–1000 (default 1000); tests use small pages. */
  readonly listPageSize?: number | undefined;
}

/** The store's host (never a URL: an endpoint URL could carry a user and password). */
export function s3EndpointName(options: Pick<S3RepositoryOptions, 'endpoint' | 'region'>): string {
  return options.endpoint === undefined ? `AWS S3 (${options.region})` : new URL(options.endpoint).host;
}

/** "s3 s3://bucket/prefix at host", as messages name the repository. */
export function s3Description(options: Pick<S3RepositoryOptions, 'endpoint' | 'region' | 'bucket' | 'prefix'>): string {
  const prefix = normalizeS3Prefix(options.prefix ?? '');
  return `s3 s3://${options.bucket}${prefix === '' ? '' : `/${prefix}`}${options.endpoint === undefined ? '' : ` at ${s3EndpointName(options)}`}`;
}
