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
 * With --config FILE [--cluster NAME], the repositories and keys are that cluster's under
 * `backups` (src/config/backups.ts); --repo NAME narrows them to that one repository. A push stores the file in EVERY repository of the cluster and
 * succeeds only when all of them have it durably (rule 1 holds for each configured copy: an
 * off-site copy that silently lags is a lost copy); a fetch tries them in order and says "not in
 * the archive" only when every one of them verifiably lacks the file; any other failure of one
 * while the others lack it is fatal (126). A config that cannot be loaded is fatal to fetch too.
 *
 * Each failure is one stderr line: the cause, then the fix. No secret is ever printed.
 */
import { parseArgs } from 'node:util';
import { redact } from '../config/redact.js';
import type { BackupPlan } from '../config/backups.js';
import { isUserError, messageOf } from '../errors.js';
import { loadKeyring } from '../backup/keys.js';
import { openRepository, type OpenRepository } from '../backup/repository/index.js';
import { LocalRepository } from '../backup/repository/local.js';
import type { Keyring, Repository } from '../backup/types.js';
import { compressions, type Compression } from '../backup/wal/compress.js';
import { fetchWal, type WalFetchResult } from '../backup/wal/fetch.js';
import { pushWal, type WalPushResult } from '../backup/wal/push.js';
import { keySourcesOf, UsageError } from './key-options.js';
import { backupPlanOf } from './repository-choice.js';
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
  'pgwarden wal push <path> --config FILE [--cluster NAME] [--repo NAME] [--pgdata DIR] [--compression auto|zstd|gzip]',
  'pgwarden wal fetch <name> <destination> --config FILE [--cluster NAME] [--repo NAME] [--pgdata DIR]',
].join(' or ');


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
  /** At least one; with --config, the cluster's repositories in their configured order. */
  readonly repositories: readonly OpenRepository[];
  readonly keyring: Keyring | undefined;
  readonly dataDirectory: string | undefined;
  readonly compression: Compression | 'auto';
}

/** The WAL compression for a configured one: archived WAL is always compressed, zstd when the program is installed. */
function walCompression(plan: BackupPlan): Compression | 'auto' {
  return plan.compression === 'gzip' ? 'gzip' : 'auto';
}

async function parse(args: readonly string[], env: Readonly<Record<string, string | undefined>>): Promise<WalArgs> {
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
        cluster: { type: 'string' },
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
  const { repo, config, cluster, pgdata, compression } = parsed.values;
  if (compression !== undefined && compression !== 'auto' && !compressions.includes(compression as Compression)) throw new UsageError(`--compression must be auto, ${compressions.join(' or ')}`);
  const sources = keySourcesOf(parsed.tokens);
  if (config !== undefined) {
    if (sources.length > 0) throw new UsageError('--key and --key-env do not go with --config: the keys come from backups.keys');
    const { plan } = await backupPlanOf(config, cluster, env);
    // --repo NAME: that repository only (a restore from the off-site copy when the local one is lost).
    const chosen = repo === undefined ? plan.repositories : plan.repositories.filter((repository) => repository.name === repo);
    if (chosen.length === 0) throw new UsageError(`cluster "${plan.cluster}" has no repository named "${repo ?? ''}" (its repositories: ${plan.repositories.map((r) => r.name).join(', ')})`);
    return {
      command,
      positionals,
      repositories: chosen.map((repository) => openRepository(repository.spec, env, repository.name)),
      keyring: plan.keys.length === 0 ? undefined : loadKeyring(plan.keys, env),
      dataDirectory: pgdata,
      compression: (compression as Compression | 'auto' | undefined) ?? walCompression(plan),
    };
  }
  if (cluster !== undefined) throw new UsageError('--cluster goes with --config FILE');
  if (repo === undefined) throw new UsageError('--repo DIR or --config FILE is required (where the archive is)');
  return {
    command,
    positionals,
    repositories: [new LocalRepository(repo)],
    // A key that cannot be read is the user's to fix, reported like a usage error (never the key's text).
    keyring: sources.length === 0 ? undefined : loadKeyring(sources, env),
    dataDirectory: pgdata,
    compression: (compression ?? 'auto') as Compression | 'auto',
  };
}

/** Runs `pgwarden wal …` with the arguments after "wal"; never throws (a throw would exit 70, "not in the archive" to PostgreSQL). */
export async function walCommand(args: readonly string[], env: Readonly<Record<string, string | undefined>> = process.env): Promise<CommandOutput> {
  // Erring towards fetch is safe: a usage error of fetch must be fatal, one of push is retried anyway.
  const isFetch = args.includes('fetch');
  let parsed: WalArgs;
  try {
    parsed = await parse(args, env);
  } catch (error) {
    const code = isFetch ? walExitCodes.fetchFailed : walExitCodes.pushUsage;
    const text = error instanceof UsageError ? `${error.message}; usage: ${usage}` : describeFailure(error);
    return { stdout: '', stderr: line(`pgwarden: wal: ${text}`), exitCode: code };
  }
  try {
    return parsed.command === 'push' ? await pushToAll(parsed, env) : await fetchFromFirst(parsed);
  } finally {
    for (const repository of parsed.repositories) repository.close();
  }
}

/** Stores the file in every repository at once; exit 0 only when every one of them has it. */
async function pushToAll(parsed: WalArgs, env: Readonly<Record<string, string | undefined>>): Promise<CommandOutput> {
  const { repositories, keyring, dataDirectory } = parsed;
  const [path = ''] = parsed.positionals;
  const results = await Promise.allSettled(repositories.map((repository) =>
    pushWal(path, { repository, keyring, dataDirectory, compression: parsed.compression, stallUpload: env[STALL_ENV] === '1' })));
  const failures = results.flatMap((result, index) => (result.status === 'rejected' ? [{ error: result.reason as unknown, repository: repositories[index] }] : []));
  if (failures.length === 0) return { stdout: '', stderr: '', exitCode: walExitCodes.ok };
  if (repositories.length === 1) {
    return { stdout: '', stderr: line(`pgwarden: wal push ${path} failed: ${describeFailure(failures[0]?.error)}`), exitCode: pushExitCode({ error: failures[0]?.error }) };
  }
  const stored = repositories.filter((_repository, index) => results[index]?.status === 'fulfilled').map((repository) => repository.description);
  const stderr = failures.map(({ error, repository }) => line(
    `pgwarden: wal push ${path} failed in ${repository?.description ?? '?'}: ${describeFailure(error)}`
    + ` (stored in ${stored.length === 0 ? 'none' : stored.join(', ')}; PostgreSQL retries until every repository has it)`,
  )).join('');
  return { stdout: '', stderr, exitCode: walExitCodes.pushFailed };
}

/** Tries each repository in order; 1 only when every one verifiably lacks the file, 126 when any failed otherwise. */
async function fetchFromFirst(parsed: WalArgs): Promise<CommandOutput> {
  const { repositories, keyring, dataDirectory } = parsed;
  const [name = '', destination = ''] = parsed.positionals;
  const failures: { readonly repository: Repository; readonly error: unknown }[] = [];
  const lacking: Repository[] = [];
  for (const repository of repositories) {
    let result: WalFetchResult;
    try {
      result = await fetchWal(name, destination, { repository, keyring, dataDirectory });
    } catch (error) {
      failures.push({ repository, error });
      continue;
    }
    if (result.outcome === 'restored') {
      // Restored from a later repository: the server log still learns what was wrong with the earlier ones.
      const stderr = failures.map((failure) => line(`pgwarden: wal fetch ${name}: ${failure.repository.description} failed (${describeFailure(failure.error)}); restored from ${repository.description}`)).join('');
      return { stdout: '', stderr, exitCode: fetchExitCode(result) };
    }
    lacking.push(repository);
  }
  if (failures.length === 0) {
    const stderr = line(`pgwarden: wal fetch: ${name} is not in the archive (${lacking.map((repository) => repository.description).join(', ')})`);
    return { stdout: '', stderr, exitCode: walExitCodes.notInArchive };
  }
  if (repositories.length === 1) {
    return { stdout: '', stderr: line(`pgwarden: wal fetch ${name} failed, so recovery stops: ${describeFailure(failures[0]?.error)}`), exitCode: walExitCodes.fetchFailed };
  }
  const causes = [
    ...failures.map((failure) => `${failure.repository.description}: ${describeFailure(failure.error)}`),
    ...lacking.map((repository) => `${repository.description}: not in the archive`),
  ];
  return { stdout: '', stderr: line(`pgwarden: wal fetch ${name} failed, so recovery stops (a failed repository may hold it): ${causes.join('; ')}`), exitCode: walExitCodes.fetchFailed };
}
