/**
 * `pgwarden wal push %p` (archive_command) and `pgwarden wal fetch %f %p` (restore_command).
 * PostgreSQL runs them, in the data directory, and reads only their exit status and stderr (the
 * server log), so they have their own parser and exit codes (docs/wal-archiving.md):
 *
 *   push   0 stored (or stored before with the same bytes); 1 not stored (PostgreSQL retries);
 *          2 bad usage. Never above 125, which would make the archiver process restart.
 *   fetch  0 written; 1 ONLY when the repository verifiably does not have the file; 126 for every
 *          other failure, bad usage included: PostgreSQL reads 1–125 as "not in the archive" and
 *          ends recovery, but stops on > 125 (DESIGN §7 rule 5).
 *
 * Each failure is one stderr line: the cause, then the fix. No secret is ever printed.
 */
import { parseArgs } from 'node:util';
import { redact } from '../config/redact.js';
import { isUserError, messageOf } from '../errors.js';
import { loadKeyring, type KeySource } from '../backup/keys.js';
import { LocalRepository } from '../backup/repository/local.js';
import type { Keyring, Repository } from '../backup/types.js';
import { compressions, type Compression } from '../backup/wal/compress.js';
import { fetchWal, type WalFetchResult } from '../backup/wal/fetch.js';
import { pushWal, type WalPushResult } from '../backup/wal/push.js';
import type { CommandOutput } from './show.js';

/** The exit statuses of `wal push` and `wal fetch` (see the file comment). */
export const walExitCodes = {
  ok: 0,
  pushFailed: 1,
  pushUsage: 2,
  notInArchive: 1,
  /** > 125: PostgreSQL stops recovery instead of taking the failure for "not in the archive". */
  fetchFailed: 126,
} as const;

/** The exit status of a push: its result, or what it threw. */
export function pushExitCode(result: WalPushResult | { readonly error: unknown }): number {
  return 'error' in result ? walExitCodes.pushFailed : walExitCodes.ok;
}

/** The exit status of a fetch: 1 only for a verified "not in the archive", 126 for any error. */
export function fetchExitCode(result: WalFetchResult | { readonly error: unknown }): number {
  if ('error' in result) return walExitCodes.fetchFailed;
  return result.outcome === 'restored' ? walExitCodes.ok : walExitCodes.notInArchive;
}

/** Set by the kill -9 test: the push stalls halfway through its upload. */
export const STALL_ENV = 'PGWARDEN_TEST_WAL_PUSH_STALL';

const usage = [
  'pgwarden wal push <path> --repo DIR [--key ID=FILE | --key-env ID=VAR]... [--pgdata DIR] [--compression auto|zstd|gzip]',
  'pgwarden wal fetch <name> <destination> --repo DIR [--key ID=FILE | --key-env ID=VAR]... [--pgdata DIR]',
].join(' or ');

class UsageError extends Error {}

/** One line: newlines from nested messages would split the server log entry. */
function line(text: string): string {
  return `${redact(text).replace(/\s*\n\s*/g, ' ')}\n`;
}

function describeFailure(error: unknown): string {
  if (isUserError(error)) return error.hint === undefined ? error.message : `${error.message}; fix: ${error.hint}`;
  return messageOf(error);
}

interface WalArgs {
  readonly command: 'push' | 'fetch';
  readonly positionals: readonly string[];
  readonly repository: Repository;
  readonly keyring: Keyring | undefined;
  readonly dataDirectory: string | undefined;
  readonly compression: Compression | 'auto';
}

/** `ID=VALUE` → [ID, VALUE]. */
function splitKeyOption(option: string, text: string): [string, string] {
  const equals = text.indexOf('=');
  if (equals <= 0 || equals === text.length - 1) throw new UsageError(`${option} takes ID=${option === '--key' ? 'FILE' : 'VAR'}, e.g. ${option} 2026-11=${option === '--key' ? '/etc/pgwarden/keys/2026-11.key' : 'PGWARDEN_BACKUP_KEY'}`);
  return [text.slice(0, equals), text.slice(equals + 1)];
}

/** The key sources in the order given on the line: the first one encrypts, every one decrypts. */
function keySources(tokens: ReturnType<typeof parseArgs>['tokens']): KeySource[] {
  const sources: KeySource[] = [];
  for (const token of tokens ?? []) {
    if (token.kind !== 'option' || (token.name !== 'key' && token.name !== 'key-env')) continue;
    const [id, where] = splitKeyOption(`--${token.name}`, token.value ?? '');
    sources.push(token.name === 'key' ? { id, file: where } : { id, env: where });
  }
  return sources;
}

function parse(args: readonly string[], env: Readonly<Record<string, string | undefined>>): WalArgs {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...args],
      allowPositionals: true,
      strict: true,
      tokens: true,
      options: {
        repo: { type: 'string' },
        config: { type: 'string' },
        pgdata: { type: 'string' },
        compression: { type: 'string' },
        key: { type: 'string', multiple: true },
        'key-env': { type: 'string', multiple: true },
      },
    });
  } catch (error) {
    throw new UsageError(messageOf(error));
  }
  const [command, ...positionals] = parsed.positionals;
  if (command !== 'push' && command !== 'fetch') throw new UsageError(`unknown wal command "${command ?? ''}"`);
  const wanted = command === 'push' ? 1 : 2;
  if (positionals.length !== wanted) throw new UsageError(`wal ${command} takes ${wanted === 1 ? 'one path (%p)' : 'a name and a destination (%f %p)'}, got ${positionals.length}`);
  const { repo, config, pgdata, compression = 'auto' } = parsed.values;
  if (config !== undefined) throw new UsageError('repositories in the config file are not supported yet: pass --repo DIR');
  if (repo === undefined) throw new UsageError('--repo DIR is required (the local repository directory)');
  if (compression !== 'auto' && !compressions.includes(compression as Compression)) throw new UsageError(`--compression must be auto, ${compressions.join(' or ')}`);
  const sources = keySources(parsed.tokens);
  return {
    command,
    positionals,
    repository: new LocalRepository(repo),
    // A key that cannot be read is the user's to fix, reported like a usage error (never the key's text).
    keyring: sources.length === 0 ? undefined : loadKeyring(sources, env),
    dataDirectory: pgdata,
    compression: compression as Compression | 'auto',
  };
}

/** Runs `pgwarden wal …` with the arguments after "wal"; never throws (a throw would exit 70, "not in the archive" to PostgreSQL). */
export async function walCommand(args: readonly string[], env: Readonly<Record<string, string | undefined>> = process.env): Promise<CommandOutput> {
  // Erring towards fetch is safe: a usage error of fetch must be fatal, one of push is retried anyway.
  const isFetch = args.includes('fetch');
  let parsed: WalArgs;
  try {
    parsed = parse(args, env);
  } catch (error) {
    const code = isFetch ? walExitCodes.fetchFailed : walExitCodes.pushUsage;
    const text = error instanceof UsageError ? `${error.message}; usage: ${usage}` : describeFailure(error);
    return { stdout: '', stderr: line(`pgwarden: wal: ${text}`), exitCode: code };
  }
  const { repository, keyring, dataDirectory } = parsed;
  if (parsed.command === 'push') {
    const [path = ''] = parsed.positionals;
    try {
      const result = await pushWal(path, { repository, keyring, dataDirectory, compression: parsed.compression, stallUpload: env[STALL_ENV] === '1' });
      return { stdout: '', stderr: '', exitCode: pushExitCode(result) };
    } catch (error) {
      return { stdout: '', stderr: line(`pgwarden: wal push ${path} failed: ${describeFailure(error)}`), exitCode: pushExitCode({ error }) };
    }
  }
  const [name = '', destination = ''] = parsed.positionals;
  try {
    const result = await fetchWal(name, destination, { repository, keyring, dataDirectory });
    const stderr = result.outcome === 'restored' ? '' : line(`pgwarden: wal fetch: ${name} is not in the archive (${repository.description})`);
    return { stdout: '', stderr, exitCode: fetchExitCode(result) };
  } catch (error) {
    return { stdout: '', stderr: line(`pgwarden: wal fetch ${name} failed, so recovery stops: ${describeFailure(error)}`), exitCode: fetchExitCode({ error }) };
  }
}
