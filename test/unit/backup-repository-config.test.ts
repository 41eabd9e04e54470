/** Repository settings (`backups.repositories`): what is accepted, and every refusal naming the file, the key and the fix. */
import { homedir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Validator, type Json } from '../../src/config/load.js';
import { UserError } from '../../src/errors.js';
import { parseRepositories } from '../../src/backup/repository/config.js';

const file = '/etc/pgwarden/config.json';
const parse = (value: Json): ReturnType<typeof parseRepositories> => parseRepositories(new Validator(file), value);

function errorOf(value: Json): UserError {
  try {
    parse(value);
  } catch (error) {
    if (error instanceof UserError) return error;
    throw error;
  }
  throw new Error('expected a UserError');
}

describe('parseRepositories', () => {
  it('accepts a local directory and an S3 bucket, with their defaults', () => {
    expect(parse([
      { name: 'local', type: 'local', path: '/var/lib/pgwarden/repo' },
      { name: 'home', type: 'local', path: '~/repo' },
      { name: 'aws', type: 's3', region: 'eu-west-1', bucket: 'db-backups' },
      {
        name: 'offsite', type: 's3', endpoint: 'https://s3.example.com', region: 'us-east-1', bucket: 'db.backups-2', prefix: '/pgwarden/prod/',
        access_key_id_env: 'OFFSITE_ID', secret_access_key_env: 'OFFSITE_SECRET', session_token_env: 'OFFSITE_TOKEN', conditional_writes: false,
      },
    ])).toEqual([
      { name: 'local', spec: { type: 'local', path: '/var/lib/pgwarden/repo' } },
      { name: 'home', spec: { type: 'local', path: join(homedir(), 'repo') } },
      { name: 'aws', spec: { type: 's3', endpoint: undefined, region: 'eu-west-1', bucket: 'db-backups', prefix: '', forcePathStyle: false, conditionalWrites: true, credentialsEnv: undefined } },
      {
        name: 'offsite',
        spec: {
          type: 's3', endpoint: 'https://s3.example.com', region: 'us-east-1', bucket: 'db.backups-2', prefix: 'pgwarden/prod', forcePathStyle: true, conditionalWrites: false,
          credentialsEnv: { accessKeyIdEnv: 'OFFSITE_ID', secretAccessKeyEnv: 'OFFSITE_SECRET', sessionTokenEnv: 'OFFSITE_TOKEN' },
        },
      },
    ]);
  });

  it('never accepts keys in the file, and does not echo them', () => {
    for (const secret of ['secret_access_key', 'access_key_id', 'session_token', 'credentials']) {
      const error = errorOf([{ name: 'offsite', type: 's3', region: 'eu-west-1', bucket: 'db-backups', [secret]: 'AKIAVERYSECRETVALUE' }]);
      expect(error.message).toBe(`${file}: backups.repositories[0].${secret}: S3 keys are never read from the config file`);
      expect(error.hint).toContain('access_key_id_env');
      expect(`${error.message} ${error.hint ?? ''}`).not.toContain('AKIAVERYSECRETVALUE');
    }
    const inUrl = errorOf([{ name: 'offsite', type: 's3', endpoint: 'https://id:hunter2@s3.example.com', region: 'eu-west-1', bucket: 'db-backups' }]);
    expect(inUrl.message).toBe(`${file}: backups.repositories[0].endpoint: the URL holds a user or password`);
    expect(`${inUrl.message} ${inUrl.hint ?? ''}`).not.toContain('hunter2');
    const valueForName = errorOf([{ name: 'offsite', type: 's3', region: 'eu-west-1', bucket: 'db-backups', access_key_id_env: 'AKIA/SECRET+value', secret_access_key_env: 'X' }]);
    expect(valueForName.message).toContain('backups.repositories[0].access_key_id_env: "AKIA/SECRET+value" is not an environment variable name');
  });

  it('names the key and the fix for each mistake', () => {
    const cases: [Json, string, string][] = [
      [{ name: 'r', type: 'local', path: 'repo' }, 'backups.repositories[0].path: "repo" is a relative path', 'give an absolute path'],
      [{ name: 'r', type: 'ftp' }, 'backups.repositories[0].type: expected "local" or "s3", found "ftp"', 'set backups.repositories[0].type to "local"'],
      [{ name: 'r', type: 's3', region: 'eu-west-1', bucket: 'Bad_Bucket' }, 'backups.repositories[0].bucket: "Bad_Bucket" is not a valid bucket name', 'lowercase letters'],
      [{ name: 'r', type: 's3', bucket: 'db-backups' }, 'backups.repositories[0].region: expected a non-empty string, found nothing', 'for example "eu-west-1"'],
      [{ name: 'r', type: 's3', region: 'x', bucket: 'db-backups', endpoint: 'ftp://host' }, 'backups.repositories[0].endpoint: not an http or https URL', 'write the full URL'],
      [{ name: 'r', type: 's3', region: 'x', bucket: 'db-backups', prefix: 'a/../b' }, 'backups.repositories[0].prefix: the S3 prefix "a/../b" has an invalid segment ".."', 'segments of letters'],
      [{ name: 'r', type: 's3', region: 'x', bucket: 'db-backups', access_key_id_env: 'ID' }, 'backups.repositories[0].secret_access_key_env: the key id and the secret are named as a pair', 'set backups.repositories[0].secret_access_key_env too'],
      [{ name: 'r', type: 's3', region: 'x', bucket: 'db-backups', session_token_env: 'T' }, 'backups.repositories[0].session_token_env: a session token variable is named without the key pair', 'AWS_SESSION_TOKEN'],
      [{ name: 'r', type: 's3', region: 'x', bucket: 'db-backups', force_path_style: 'yes' }, 'backups.repositories[0].force_path_style: expected true or false, found string "yes"', 'set backups.repositories[0].force_path_style to true or false'],
      [{ name: 'r', type: 's3', region: 'x', bucket: 'db-backups', pathstyle: true }, 'backups.repositories[0].pathstyle: unknown key', 'remove it'],
      [{ name: 'r', type: 'local', path: '/r', bucket: 'b' }, 'backups.repositories[0].bucket: unknown key', 'remove it'],
      [{ name: 'has space', type: 'local', path: '/r' }, 'backups.repositories[0].name: "has space" has characters other than letters, digits, "_" and "-"', 'choose a short name'],
    ];
    for (const [item, message, hint] of cases) {
      const error = errorOf([item]);
      expect(error.message).toBe(`${file}: ${message}`);
      expect(error.hint).toContain(hint);
    }
    const duplicate = errorOf([{ name: 'r', type: 'local', path: '/a' }, { name: 'r', type: 'local', path: '/b' }]);
    expect(duplicate.message).toBe(`${file}: backups.repositories[1].name: duplicate repository name "r"`);
    expect(errorOf([]).message).toBe(`${file}: backups.repositories: no repository is listed`);
    expect(errorOf({}).message).toBe(`${file}: backups.repositories: expected a list, found an object`);
  });
});
