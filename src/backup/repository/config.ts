/**
 * Repository settings as the config file gives them (to be wired under `backups.repositories`):
 * a list of named repositories, each a local directory or an S3 bucket and prefix. Validated with
 * the loader's Validator, so every error names the file, the key and the fix. Keys and secrets
 * are never accepted in the file itself: the file may only name the environment variables that
 * hold them.
 *
 *   "repositories": [
 *     { "name": "local", "type": "local", "path": "/var/lib/pgwarden/repo" },
 *     { "name": "offsite", "type": "s3", "endpoint": "https://s3.example.com", "region": "eu-west-1",
 *       "bucket": "db-backups", "prefix": "pgwarden/prod",
 *       "access_key_id_env": "OFFSITE_KEY_ID", "secret_access_key_env": "OFFSITE_SECRET" }
 *   ]
 */
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { UserError } from '../../errors.js';
import type { Json, JsonObject, Validator } from '../../config/load.js';
import { normalizeS3Prefix } from './keys.js';
import type { S3CredentialNames } from './s3.js';

export interface LocalRepositorySpec {
  readonly type: 'local';
  /** Absolute path of an existing directory. */
  readonly path: string;
}

export interface S3RepositorySpec {
  readonly type: 's3';
  readonly endpoint: string | undefined;
  readonly region: string;
  readonly bucket: string;
  /** Without leading or trailing '/'; '' for the bucket's root. */
  readonly prefix: string;
  readonly forcePathStyle: boolean;
  readonly conditionalWrites: boolean;
  /** undefined: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN. */
  readonly credentialsEnv: S3CredentialNames | undefined;
}

/** What openRepository() needs to open one repository. */
export type RepositorySpec = LocalRepositorySpec | S3RepositorySpec;

/** A repository as configured: the name clusters and commands refer to it by. */
export interface RepositoryConfig {
  readonly name: string;
  readonly spec: RepositorySpec;
}

const secretKeys = ['access_key_id', 'secret_access_key', 'session_token', 'credentials', 'password', 'secret'];
// S3's rules for bucket names (3–63 characters, lowercase, digits, dots and hyphens, starting and ending with a letter or digit).
const bucketPattern = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const envNamePattern = /^[A-Za-z_][A-Za-z0-9_]*$/;

function envName(v: Validator, value: Json | undefined, key: string, example: string): string {
  const name = v.string(value, key, example);
  if (!envNamePattern.test(name)) {
    v.fail(key, `"${name}" is not an environment variable name`, `give the name of the variable that holds the value (letters, digits and _), e.g. "${example}", never the value itself`);
  }
  return name;
}

function parseLocal(v: Validator, value: Json | undefined, key: string): LocalRepositorySpec {
  const raw = v.object(value, key, ['name', 'type', 'path']);
  const text = v.string(raw['path'], `${key}.path`, '/var/lib/pgwarden/repo');
  const path = text.startsWith('~/') ? join(homedir(), text.slice(2)) : text;
  if (!isAbsolute(path)) v.fail(`${key}.path`, `"${text}" is a relative path`, 'give an absolute path (or one starting with ~/), e.g. "/var/lib/pgwarden/repo"');
  return { type: 'local', path };
}

function parseS3(v: Validator, value: Json | undefined, key: string): S3RepositorySpec {
  // Checked before the generic unknown-key error so that the message says why, not just "unknown".
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    for (const secret of secretKeys) {
      if (secret in value) {
        v.fail(
          `${key}.${secret}`,
          'S3 keys are never read from the config file',
          `remove it; export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for pgwarden, or set ${key}.access_key_id_env and ${key}.secret_access_key_env to the names of the variables holding them`,
        );
      }
    }
  }
  const raw = v.object(value, key, [
    'name', 'type', 'endpoint', 'region', 'bucket', 'prefix', 'force_path_style', 'conditional_writes',
    'access_key_id_env', 'secret_access_key_env', 'session_token_env',
  ]);
  let endpoint: string | undefined;
  if (raw['endpoint'] !== undefined) {
    endpoint = v.string(raw['endpoint'], `${key}.endpoint`, 'https://s3.eu-central-1.amazonaws.com');
    let url: URL | undefined;
    try {
      url = new URL(endpoint);
    } catch {
      url = undefined;
    }
    // The URL is not echoed: it could carry a user and password.
    if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
      v.fail(`${key}.endpoint`, 'not an http or https URL', 'write the full URL of the S3 endpoint, e.g. "https://s3.example.com" or "http://127.0.0.1:9000"');
    }
    if (url.username !== '' || url.password !== '') {
      v.fail(`${key}.endpoint`, 'the URL holds a user or password', 'remove them from the URL; credentials come from the environment');
    }
  }
  const region = v.string(raw['region'], `${key}.region`, 'eu-west-1');
  const bucket = v.string(raw['bucket'], `${key}.bucket`, 'db-backups');
  if (!bucketPattern.test(bucket) || bucket.includes('..')) {
    v.fail(`${key}.bucket`, `"${bucket}" is not a valid bucket name`, 'use 3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit');
  }
  let prefix = '';
  if (raw['prefix'] !== undefined) {
    const text = v.string(raw['prefix'], `${key}.prefix`, 'pgwarden/prod');
    try {
      prefix = normalizeS3Prefix(text);
    } catch (error) {
      v.fail(`${key}.prefix`, error instanceof UserError ? error.message : String(error), 'use segments of letters, digits, ".", "_" and "-" separated by "/", e.g. "pgwarden/prod"');
    }
  }
  // Most S3-compatible servers need path-style URLs; AWS prefers virtual-hosted ones.
  const forcePathStyle = raw['force_path_style'] === undefined ? endpoint !== undefined : v.boolean(raw['force_path_style'], `${key}.force_path_style`);
  const conditionalWrites = raw['conditional_writes'] === undefined ? true : v.boolean(raw['conditional_writes'], `${key}.conditional_writes`);
  const idEnv = raw['access_key_id_env'] === undefined ? undefined : envName(v, raw['access_key_id_env'], `${key}.access_key_id_env`, 'OFFSITE_ACCESS_KEY_ID');
  const secretEnv = raw['secret_access_key_env'] === undefined ? undefined : envName(v, raw['secret_access_key_env'], `${key}.secret_access_key_env`, 'OFFSITE_SECRET_ACCESS_KEY');
  const tokenEnv = raw['session_token_env'] === undefined ? undefined : envName(v, raw['session_token_env'], `${key}.session_token_env`, 'OFFSITE_SESSION_TOKEN');
  if ((idEnv === undefined) !== (secretEnv === undefined)) {
    const missing = idEnv === undefined ? 'access_key_id_env' : 'secret_access_key_env';
    v.fail(`${key}.${missing}`, 'the key id and the secret are named as a pair', `set ${key}.${missing} too, or remove both to use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY`);
  }
  if (tokenEnv !== undefined && idEnv === undefined) {
    v.fail(`${key}.session_token_env`, 'a session token variable is named without the key pair', `set ${key}.access_key_id_env and ${key}.secret_access_key_env too, or remove session_token_env to use AWS_SESSION_TOKEN`);
  }
  const credentialsEnv = idEnv === undefined || secretEnv === undefined ? undefined : { accessKeyIdEnv: idEnv, secretAccessKeyEnv: secretEnv, sessionTokenEnv: tokenEnv };
  return { type: 's3', endpoint, region, bucket, prefix, forcePathStyle, conditionalWrites, credentialsEnv };
}

/** Validates a list of repositories (e.g. the value of `backups.repositories`); names must be unique. */
export function parseRepositories(v: Validator, value: Json | undefined, key = 'backups.repositories'): RepositoryConfig[] {
  const names = new Set<string>();
  const repositories = v.array(value, key).map((item, index): RepositoryConfig => {
    const itemKey = `${key}[${index}]`;
    const loose: JsonObject = item !== null && typeof item === 'object' && !Array.isArray(item) ? item : {};
    const name = v.string(loose['name'], `${itemKey}.name`, 'offsite');
    if (!/^[A-Za-z0-9_-]+$/.test(name)) v.fail(`${itemKey}.name`, `"${name}" has characters other than letters, digits, "_" and "-"`, 'choose a short name such as "local" or "offsite"');
    if (names.has(name)) v.fail(`${itemKey}.name`, `duplicate repository name "${name}"`, 'give each repository its own name');
    names.add(name);
    const type = loose['type'];
    if (type === 'local') return { name, spec: parseLocal(v, item, itemKey) };
    if (type === 's3') return { name, spec: parseS3(v, item, itemKey) };
    return v.fail(`${itemKey}.type`, `expected "local" or "s3", found ${JSON.stringify(type ?? null)}`, `set ${itemKey}.type to "local" (a directory) or "s3" (S3-compatible object storage)`);
  });
  if (repositories.length === 0) v.fail(key, 'no repository is listed', 'add { "name": "local", "type": "local", "path": "/var/lib/pgwarden/repo" }');
  return repositories;
}
