/**
 * The master keys that wrap each backup object's data key (issue 5 item 5, docs/encryption.md).
 * A key comes from a file holding 32 random bytes as base64 or hex, readable by its owner only
 * (mode 0600 or 0400, as libpq demands of ~/.pgpass), or from an environment variable. The first
 * key listed is the current one and encrypts new objects; the others still decrypt old ones, so a
 * key is rotated without re-encrypting anything. Errors name the key id and the fix and never
 * show key material.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { open, unlink } from 'node:fs/promises';
import { basename, dirname, isAbsolute } from 'node:path';
import { fsyncDir } from '../atomic-file.js';
import { UserError, messageOf } from '../errors.js';
import type { Json, Validator } from '../config/load.js';
import type { Keyring, MasterKey } from './types.js';

/** Bytes in a master key (AES-256). */
export const masterKeyLength = 32;

/** Where one master key comes from, as the config lists it. */
export type KeySource =
  | { readonly id: string; readonly file: string }
  | { readonly id: string; readonly env: string };

/**
 * A key id: written into every object header and manifest, so short and plain. Letters, digits,
 * dot, dash and underscore, starting with a letter or digit, at most 64 characters.
 */
export const keyIdPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

const envNamePattern = /^[A-Za-z_][A-Za-z0-9_]*$/;
const hexPattern = /^[0-9a-fA-F]{64}$/;
// 32 bytes: 43 significant base64 characters, then an optional "=" pad; base64url accepted too.
const base64Pattern = /^[A-Za-z0-9+/_-]{43}=?$/;

/** True when `id` may name a master key. */
export function isKeyId(id: string): boolean {
  return keyIdPattern.test(id);
}

/**
 * Validates the list of key sources (e.g. `backup.keys`) with the config loader's Validator:
 * `[{ "id": "2026-11", "file": "/etc/pgwarden/keys/2026-11.key" }, { "id": "2026-05", "env": "PGWARDEN_BACKUP_KEY_OLD" }]`.
 * Reads nothing: loadKeyring() does, when a backup needs the keys.
 */
export function parseKeySources(v: Validator, value: Json | undefined, key = 'backup.keys'): KeySource[] {
  const items = v.array(value, key);
  if (items.length === 0) v.fail(key, 'the list is empty', `list at least one key, e.g. [{ "id": "2026-11", "file": "/etc/pgwarden/keys/2026-11.key" }]`);
  const ids = new Set<string>();
  return items.map((item, index): KeySource => {
    const at = `${key}[${index}]`;
    const raw = v.object(item, at, ['id', 'file', 'env']);
    const id = v.string(raw['id'], `${at}.id`, '2026-11');
    if (!isKeyId(id)) v.fail(`${at}.id`, `"${id}" is not a valid key id`, 'use letters, digits, ".", "-" and "_" (at most 64), e.g. "2026-11"');
    if (ids.has(id)) v.fail(`${at}.id`, `duplicate key id "${id}"`, 'give each key its own id; a new key needs a new id');
    ids.add(id);
    if (raw['file'] !== undefined && raw['env'] !== undefined) v.fail(at, `key ${id} has both "file" and "env"`, 'keep only one of them');
    if (raw['file'] !== undefined) {
      const file = v.string(raw['file'], `${at}.file`, '/etc/pgwarden/keys/2026-11.key');
      if (!isAbsolute(file)) v.fail(`${at}.file`, `"${file}" is a relative path`, 'give the absolute path of the key file');
      return { id, file };
    }
    if (raw['env'] !== undefined) {
      const env = v.string(raw['env'], `${at}.env`, 'PGWARDEN_BACKUP_KEY');
      if (!envNamePattern.test(env)) v.fail(`${at}.env`, `"${env}" is not an environment variable name`, 'use letters, digits and "_", e.g. "PGWARDEN_BACKUP_KEY"');
      return { id, env };
    }
    return v.fail(at, `key ${id} has neither "file" nor "env"`, `add "file": "/etc/pgwarden/keys/${id}.key" or "env": "PGWARDEN_BACKUP_KEY"`);
  });
}

/**
 * The key bytes from their text form (base64 or hex, surrounding whitespace ignored), or
 * undefined when the text is neither. Never echoes the text.
 */
export function decodeMasterKey(text: string): Buffer | undefined {
  const trimmed = text.trim();
  if (hexPattern.test(trimmed)) return Buffer.from(trimmed, 'hex');
  if (base64Pattern.test(trimmed)) {
    const bytes = Buffer.from(trimmed.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    if (bytes.length === masterKeyLength) return bytes;
  }
  return undefined;
}

const keyFormatFix = 'it must hold 32 random bytes as base64 (44 characters) or hex (64 characters); '
  + 'create one with `openssl rand -base64 32`, or generateKeyFile()';

/** Reads the key file of key `id`: a regular file, mode 0600 or 0400, holding 32 bytes as base64 or hex. */
export function readKeyFile(id: string, file: string): MasterKey {
  let mode: number;
  try {
    const stats = statSync(file);
    if (!stats.isFile()) throw new UserError(`backup key ${id}: ${file} is not a regular file`, `point the key ${id} at the key file itself`);
    mode = stats.mode & 0o777;
  } catch (error) {
    if (error instanceof UserError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UserError(`backup key ${id}: the key file ${file} does not exist`, `restore it from your key backup, or correct the path of key ${id}`);
    throw new UserError(`backup key ${id}: cannot read the key file ${file}: ${messageOf(error)}`, 'run pgwarden as the user that owns the key file');
  }
  if (mode !== 0o600 && mode !== 0o400) {
    throw new UserError(
      `backup key ${id}: the key file ${file} has mode ${mode.toString(8).padStart(4, '0')}; a key file must be readable by its owner only (0600 or 0400)`,
      `chmod 600 ${file}`,
    );
  }
  let text: string;
  try {
    text = readFileSync(file, 'latin1');
  } catch (error) {
    throw new UserError(`backup key ${id}: cannot read the key file ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`, 'run pgwarden as the user that owns the key file');
  }
  const key = decodeMasterKey(text);
  if (key === undefined) throw new UserError(`backup key ${id}: the key file ${file} does not hold a 32-byte key`, keyFormatFix);
  return { id, key };
}

/** Reads key `id` from the environment variable `name`. */
export function readKeyEnv(id: string, name: string, env: Readonly<Record<string, string | undefined>> = process.env): MasterKey {
  const text = env[name];
  if (text === undefined || text.trim() === '') {
    throw new UserError(`backup key ${id}: the environment variable ${name} is not set`, `export ${name} with the key's base64 or hex text before starting pgwarden`);
  }
  const key = decodeMasterKey(text);
  if (key === undefined) throw new UserError(`backup key ${id}: the environment variable ${name} does not hold a 32-byte key`, keyFormatFix);
  return { id, key };
}

/** A keyring from keys in order (the first is the current one): ids valid and unique, keys 32 bytes. */
export function makeKeyring(keys: readonly MasterKey[]): Keyring {
  const current = keys[0];
  if (current === undefined) throw new UserError('no backup key is configured', 'list at least one key under backup.keys');
  const ids = new Set<string>();
  for (const key of keys) {
    if (!isKeyId(key.id)) throw new UserError(`backup key "${key.id}": not a valid key id`, 'use letters, digits, ".", "-" and "_" (at most 64), e.g. "2026-11"');
    if (ids.has(key.id)) throw new UserError(`backup key ${key.id} is listed twice`, 'give each key its own id');
    if (key.key.length !== masterKeyLength) throw new UserError(`backup key ${key.id} is ${key.key.length} bytes, not ${masterKeyLength}`, keyFormatFix);
    ids.add(key.id);
  }
  return { current, all: [...keys] };
}

/** Loads every listed key (files and environment) into a keyring; the first source is the current key. */
export function loadKeyring(sources: readonly KeySource[], env: Readonly<Record<string, string | undefined>> = process.env): Keyring {
  return makeKeyring(sources.map((source) => ('file' in source ? readKeyFile(source.id, source.file) : readKeyEnv(source.id, source.env, env))));
}

/**
 * Writes a new key file: 32 random bytes as base64 and a newline, mode 0600, fsynced. Refuses to
 * overwrite an existing file (that would lose the key it holds, and every backup made with it).
 */
export async function generateKeyFile(path: string): Promise<void> {
  let handle;
  try {
    handle = await open(path, 'wx', 0o600);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') {
      throw new UserError(`${path} already exists; a key file is never overwritten`, `choose a new file name for the new key (e.g. ${dirname(path)}/<new id>.key), keep ${basename(path)}`);
    }
    if (code === 'ENOENT') throw new UserError(`cannot create ${path}: the directory ${dirname(path)} does not exist`, `mkdir -m 700 -p ${dirname(path)}`);
    throw new UserError(`cannot create ${path}: ${messageOf(error)}`, 'choose a directory that pgwarden can write to');
  }
  try {
    // open()'s mode is filtered by the umask; chmod makes it exactly 0600.
    await handle.chmod(0o600);
    await handle.writeFile(`${randomBytes(masterKeyLength).toString('base64')}\n`, 'latin1');
    await handle.sync();
  } catch (error) {
    // A half-written key file would block the next attempt and hold no usable key.
    await handle.close();
    await unlink(path).catch(() => undefined);
    throw error;
  }
  await handle.close();
  await fsyncDir(dirname(path));
}
