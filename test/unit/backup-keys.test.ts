import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decryptBuffer, encryptBuffer, encryptedKeyId } from '../../src/backup/crypto.js';
import { decodeMasterKey, generateKeyFile, loadKeyring, makeKeyring, parseKeySources, readKeyEnv, readKeyFile } from '../../src/backup/keys.js';
import { Validator, type Json } from '../../src/config/load.js';
import { UserError } from '../../src/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'pgwarden-keys-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Key texts written by the tests, checked at the end against every error message and hint. */
const secrets: string[] = [];
const seen: string[] = [];

function keyFile(name: string, text: string, mode = 0o600): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  chmodSync(file, mode);
  secrets.push(text.trim());
  return file;
}

/** The UserError `run` throws, recorded for the key-material check. */
function userError(run: () => unknown): UserError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(UserError);
    const failure = error as UserError;
    seen.push(failure.message, failure.hint ?? '');
    return failure;
  }
  throw new Error('expected an error');
}

const parse = (value: Json): ReturnType<typeof parseKeySources> => parseKeySources(new Validator('/etc/pgwarden/config.json'), value);

describe('key sources in the config', () => {
  it('parses files and environment variables in order', () => {
    expect(parse([{ id: '2026-11', file: '/etc/pgwarden/keys/2026-11.key' }, { id: '2026-05', env: 'PGWARDEN_BACKUP_KEY_OLD' }])).toEqual([
      { id: '2026-11', file: '/etc/pgwarden/keys/2026-11.key' },
      { id: '2026-05', env: 'PGWARDEN_BACKUP_KEY_OLD' },
    ]);
  });

  it.each([
    [[], /backup\.keys: the list is empty/],
    [[{ id: 'a', file: '/k/a' }, { id: 'a', env: 'K' }], /backup\.keys\[1\]\.id: duplicate key id "a"/],
    [[{ id: 'a b', file: '/k/a' }], /backup\.keys\[0\]\.id: "a b" is not a valid key id/],
    [[{ id: 'a', file: '/k/a', env: 'K' }], /backup\.keys\[0\]: key a has both "file" and "env"/],
    [[{ id: 'a' }], /backup\.keys\[0\]: key a has neither "file" nor "env"/],
    [[{ id: 'a', file: 'keys/a.key' }], /backup\.keys\[0\]\.file: "keys\/a\.key" is a relative path/],
    [[{ id: 'a', env: 'MY-KEY' }], /backup\.keys\[0\]\.env: "MY-KEY" is not an environment variable name/],
    [[{ id: 'a', file: '/k/a', key: 'c2VjcmV0' }], /backup\.keys\[0\]\.key: unknown key/],
  ])('refuses %j', (value, message) => {
    const error = userError(() => parse(value));
    expect(error.message).toMatch(message);
    expect(error.message.startsWith('/etc/pgwarden/config.json: ')).toBe(true);
    expect(error.hint).toBeTruthy();
  });
});

describe('key files', () => {
  it('generateKeyFile writes 32 random bytes as base64 with mode 0600, and refuses to overwrite', async () => {
    const file = join(dir, 'generated.key');
    await generateKeyFile(file);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const text = readFileSync(file, 'latin1');
    secrets.push(text.trim());
    expect(text).toMatch(/^[A-Za-z0-9+/]{43}=\n$/);
    const key = readKeyFile('gen', file);
    expect(key.key.length).toBe(32);
    expect(key.key.equals(Buffer.from(text.trim(), 'base64'))).toBe(true);
    await expect(generateKeyFile(file)).rejects.toThrow(`${file} already exists; a key file is never overwritten`);
    expect(readFileSync(file, 'latin1')).toBe(text);
    await generateKeyFile(join(dir, 'second.key'));
    expect(readFileSync(join(dir, 'second.key'), 'latin1')).not.toBe(text);
    await expect(generateKeyFile(join(dir, 'absent', 'x.key'))).rejects.toThrow(/directory .* does not exist/);
  });

  it('reads base64 and hex, with or without a trailing newline, mode 0600 or 0400', () => {
    const bytes = randomBytes(32);
    expect(readKeyFile('b64', keyFile('b64.key', `${bytes.toString('base64')}\n`)).key.equals(bytes)).toBe(true);
    expect(readKeyFile('hex', keyFile('hex.key', bytes.toString('hex'), 0o400)).key.equals(bytes)).toBe(true);
    expect(readKeyFile('url', keyFile('url.key', bytes.toString('base64url'))).key.equals(bytes)).toBe(true);
  });

  it('refuses a key file readable by others, naming the key and the chmod fix', () => {
    const file = keyFile('open.key', randomBytes(32).toString('base64'), 0o644);
    const error = userError(() => readKeyFile('2026-11', file));
    expect(error.message).toBe(`backup key 2026-11: the key file ${file} has mode 0644; a key file must be readable by its owner only (0600 or 0400)`);
    expect(error.hint).toBe(`chmod 600 ${file}`);
    expect(userError(() => readKeyFile('g', keyFile('group.key', randomBytes(32).toString('hex'), 0o640))).hint).toBe(`chmod 600 ${join(dir, 'group.key')}`);
  });

  it('refuses a missing file, a directory, and content that is not a 32-byte key', () => {
    expect(userError(() => readKeyFile('k1', join(dir, 'nope.key'))).message).toBe(`backup key k1: the key file ${join(dir, 'nope.key')} does not exist`);
    mkdirSync(join(dir, 'adir'));
    expect(userError(() => readKeyFile('k2', join(dir, 'adir'))).message).toMatch(/^backup key k2: .*adir is not a regular file$/);
    for (const [name, text] of [
      ['short.key', randomBytes(31).toString('base64')],
      ['long.key', randomBytes(33).toString('hex')],
      ['raw.key', randomBytes(32).toString('latin1')],
      ['hexish.key', 'zz'.repeat(32)],
    ] as const) {
      const error = userError(() => readKeyFile('k3', keyFile(name, text)));
      expect(error.message).toBe(`backup key k3: the key file ${join(dir, name)} does not hold a 32-byte key`);
      expect(error.hint).toMatch(/openssl rand -base64 32/);
    }
  });
});

describe('keys from the environment', () => {
  it('reads base64 or hex', () => {
    const bytes = randomBytes(32);
    secrets.push(bytes.toString('base64'));
    expect(readKeyEnv('e', 'K', { K: bytes.toString('base64') }).key.equals(bytes)).toBe(true);
    expect(readKeyEnv('e', 'K', { K: ` ${bytes.toString('hex')}\n` }).key.equals(bytes)).toBe(true);
  });

  it('refuses a value of the wrong length, and an unset variable', () => {
    const short = randomBytes(16).toString('base64');
    const long = randomBytes(48).toString('hex');
    secrets.push(short, long);
    for (const value of [short, long]) {
      const error = userError(() => readKeyEnv('2026-11', 'PGWARDEN_BACKUP_KEY', { PGWARDEN_BACKUP_KEY: value }));
      expect(error.message).toBe('backup key 2026-11: the environment variable PGWARDEN_BACKUP_KEY does not hold a 32-byte key');
    }
    expect(userError(() => readKeyEnv('2026-11', 'PGWARDEN_BACKUP_KEY', {})).message).toBe('backup key 2026-11: the environment variable PGWARDEN_BACKUP_KEY is not set');
  });
});

describe('keyrings', () => {
  it('loads the sources in order: the first is the current key, all of them decrypt', async () => {
    const newKey = randomBytes(32);
    const oldKey = randomBytes(32);
    const file = keyFile('2026-11.key', newKey.toString('base64'));
    secrets.push(oldKey.toString('hex'));
    const env = { PGWARDEN_BACKUP_KEY_OLD: oldKey.toString('hex') };
    const ring = loadKeyring([{ id: '2026-11', file }, { id: '2026-05', env: 'PGWARDEN_BACKUP_KEY_OLD' }], env);
    expect(ring.current.id).toBe('2026-11');
    expect(ring.current.key.equals(newKey)).toBe(true);
    expect(ring.all.map((key) => key.id)).toEqual(['2026-11', '2026-05']);

    const before = await encryptBuffer(makeKeyring([{ id: '2026-05', key: oldKey }]), Buffer.from('written before the rotation'));
    expect((await decryptBuffer(ring, before)).toString()).toBe('written before the rotation');
    expect(encryptedKeyId(await encryptBuffer(ring, Buffer.from('after')))).toBe('2026-11');
  });

  it('fails on the first unusable key, naming it', () => {
    const file = keyFile('loose.key', randomBytes(32).toString('base64'), 0o604);
    expect(userError(() => loadKeyring([{ id: 'good', env: 'K' }, { id: 'loose', file }], { K: randomBytes(32).toString('hex') })).message).toMatch(/^backup key loose: /);
  });

  it('refuses an empty keyring, duplicate ids and keys of the wrong size', () => {
    expect(userError(() => makeKeyring([])).message).toBe('no backup key is configured');
    const key = randomBytes(32);
    expect(userError(() => makeKeyring([{ id: 'a', key }, { id: 'a', key }])).message).toBe('backup key a is listed twice');
    expect(userError(() => makeKeyring([{ id: 'a', key: randomBytes(16) }])).message).toBe('backup key a is 16 bytes, not 32');
    expect(decodeMasterKey('not a key')).toBeUndefined();
  });

  it('no error message or hint holds key material', () => {
    expect(seen.length).toBeGreaterThan(20);
    expect(secrets.length).toBeGreaterThan(10);
    for (const text of seen) {
      for (const secret of secrets) expect(text.includes(secret), `"${text}" holds a key`).toBe(false);
    }
  });
});
