/**
 * What the backup commands (wal, backup, verify, backups) share on their command lines: the usage
 * error they exit 2 with, and the repeatable `--key ID=FILE` / `--key-env ID=VAR` options.
 */
import type { parseArgs } from 'node:util';
import type { KeySource } from '../backup/keys.js';

/** Bad usage: the command prints it with its usage line and exits 2. */
export class UsageError extends Error {}

/** "ID=WHERE" of a --key or --key-env option. */
function splitKeyOption(option: string, text: string): [string, string] {
  const equals = text.indexOf('=');
  if (equals <= 0 || equals === text.length - 1) {
    const example = option === '--key' ? '/etc/pgwarden/keys/2026-11.key' : 'PGWARDEN_BACKUP_KEY';
    throw new UsageError(`${option} takes ID=${option === '--key' ? 'FILE' : 'VAR'}, e.g. ${option} 2026-11=${example}`);
  }
  return [text.slice(0, equals), text.slice(equals + 1)];
}

/** The key sources in the order given on the line: the first one encrypts, every one decrypts. */
export function keySourcesOf(tokens: ReturnType<typeof parseArgs>['tokens']): KeySource[] {
  const sources: KeySource[] = [];
  for (const token of tokens ?? []) {
    if (token.kind !== 'option' || (token.name !== 'key' && token.name !== 'key-env')) continue;
    const [id, where] = splitKeyOption(`--${token.name}`, token.value ?? '');
    sources.push(token.name === 'key' ? { id, file: where } : { id, env: where });
  }
  return sources;
}
