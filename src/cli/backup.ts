/**
 * `pgwarden backup` and `pgwarden verify` (issue 5 items 2 and 8; docs/backups.md):
 *
 *   pgwarden backup [--dsn URI | --cluster C --node N] --repo DIR [--key ID=FILE | --key-env ID=VAR]...
 *                   [--fast] [--compression zstd|gzip|none] [--part-size MIB] [--archive-timeout SECONDS]
 *   pgwarden verify [BACKUP_ID] --repo DIR [--key ID=FILE | --key-env ID=VAR]...
 *
 * Exit codes: 0 done / sound; 1 the backup failed (nothing of it is kept) / verification found
 * problems (one stdout line each); 2 bad usage, or no such backup. Progress goes to the `progress`
 * callback (stderr). Keys are read from files or the environment, never from the command line.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/load.js';
import { redact } from '../config/redact.js';
import { isUserError, messageOf } from '../errors.js';
import { takeBackup, DEFAULT_ARCHIVE_TIMEOUT_MS, DEFAULT_PART_BYTES, type BackupCompression } from '../backup/basebackup.js';
import { loadKeyring } from '../backup/keys.js';
import { LocalRepository } from '../backup/repository/local.js';
import { listBackupIds, verifyBackup } from '../backup/verify.js';
import { zstdInstalled } from '../backup/wal/compress.js';
import type { Keyring } from '../backup/types.js';
import { probeIds } from '../probes/index.js';
import { keySourcesOf, UsageError } from './key-options.js';
import type { CommandOutput } from './show.js';

const backupUsage = 'pgwarden backup [--dsn URI | --cluster C --node N] --repo DIR [--key ID=FILE | --key-env ID=VAR]... [--fast] [--compression zstd|gzip|none] [--part-size MIB] [--archive-timeout SECONDS]';
const verifyUsage = 'pgwarden verify [BACKUP_ID] --repo DIR [--key ID=FILE | --key-env ID=VAR]...';


type Env = Readonly<Record<string, string | undefined>>;

export interface BackupCommandOptions {
  /** A progress line (no newline), shown as it happens. */
  readonly progress?: (line: string) => void;
  readonly env?: Env;
}

function failure(text: string, exitCode: number): CommandOutput {
  return { stdout: '', stderr: `${redact(text)}\n`, exitCode };
}

function describe(error: unknown): string {
  if (isUserError(error)) return error.hint === undefined ? error.message : `${error.message}\n  hint: ${error.hint}`;
  return messageOf(error);
}

/** The key sources in the order given: the first one encrypts, every one decrypts. */
function keyring(tokens: ReturnType<typeof parseArgs>['tokens'], env: Env): Keyring | undefined {
  const sources = keySourcesOf(tokens);
  return sources.length === 0 ? undefined : loadKeyring(sources, env);
}

const commonOptions = {
  repo: { type: 'string' },
  key: { type: 'string', multiple: true },
  'key-env': { type: 'string', multiple: true },
} as const;

function parse(args: readonly string[], options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean }>): ReturnType<typeof parseArgs> {
  try {
    return parseArgs({ args: [...args], allowPositionals: true, strict: true, tokens: true, options });
  } catch (error) {
    throw new UsageError(messageOf(error));
  }
}

function repositoryOf(repo: unknown): LocalRepository {
  if (typeof repo !== 'string' || repo === '') throw new UsageError('--repo DIR is required (the local repository directory)');
  return new LocalRepository(resolve(repo));
}

/** Runs `pgwarden backup …` (the arguments after "backup"). */
export async function backupCommand(args: readonly string[], options: BackupCommandOptions = {}): Promise<CommandOutput> {
  const env = options.env ?? process.env;
  let run: Parameters<typeof takeBackup>[0];
  try {
    const parsed = parse(args, {
      ...commonOptions,
      config: { type: 'string' },
      dsn: { type: 'string' },
      cluster: { type: 'string' },
      node: { type: 'string' },
      fast: { type: 'boolean' },
      compression: { type: 'string' },
      'part-size': { type: 'string' },
      'archive-timeout': { type: 'string' },
    });
    const values = parsed.values as Record<string, string | boolean | string[] | undefined>;
    if (parsed.positionals.length > 0) throw new UsageError(`backup takes no arguments, got "${parsed.positionals.join(' ')}"`);
    const compression = (values['compression'] ?? ((await zstdInstalled()) ? 'zstd' : 'gzip')) as string;
    if (!['zstd', 'gzip', 'none'].includes(compression)) throw new UsageError('--compression must be zstd, gzip or none');
    const partMib = values['part-size'] === undefined ? DEFAULT_PART_BYTES / 1024 / 1024 : Number(values['part-size']);
    if (!Number.isInteger(partMib) || partMib < 1 || partMib > 4096) throw new UsageError('--part-size takes a whole number of MiB from 1 to 4096');
    const timeoutS = values['archive-timeout'] === undefined ? DEFAULT_ARCHIVE_TIMEOUT_MS / 1000 : Number(values['archive-timeout']);
    if (!Number.isFinite(timeoutS) || timeoutS <= 0) throw new UsageError('--archive-timeout takes a number of seconds above 0');
    const repository = repositoryOf(values['repo']);
    const config = loadConfig({ configFile: values['config'] as string | undefined, dsn: values['dsn'] as string | undefined, knownProbes: probeIds, env });
    const clusterName = values['cluster'] as string | undefined;
    const nodeName = values['node'] as string | undefined;
    const cluster = clusterName === undefined ? config.clusters[0] : config.clusters.find((c) => c.name === clusterName);
    if (cluster === undefined) throw new UsageError(`no cluster named "${clusterName ?? ''}" in ${config.source}`);
    const node = nodeName === undefined ? cluster.nodes[0] : cluster.nodes.find((n) => n.name === nodeName);
    if (node === undefined) throw new UsageError(`no node named "${nodeName ?? ''}" in cluster "${cluster.name}"`);
    run = {
      connection: node.connection,
      cluster: cluster.name,
      node: node.name,
      repository,
      keyring: keyring(parsed.tokens, env),
      compression: compression as BackupCompression,
      fast: values['fast'] === true,
      partBytes: partMib * 1024 * 1024,
      archiveTimeoutMs: timeoutS * 1000,
      ...(options.progress === undefined ? {} : { progress: options.progress }),
    };
  } catch (error) {
    if (error instanceof UsageError) return failure(`pgwarden: backup: ${error.message}\n  usage: ${backupUsage}`, 2);
    return failure(`pgwarden: backup: ${describe(error)}`, 2);
  }
  try {
    const manifest = await takeBackup(run);
    return { stdout: `${manifest.id}\n`, stderr: '', exitCode: 0 };
  } catch (error) {
    return failure(`pgwarden: backup failed, nothing of it is kept: ${describe(error)}`, 1);
  }
}

/** Runs `pgwarden verify …` (the arguments after "verify"). */
export async function verifyCommand(args: readonly string[], options: BackupCommandOptions = {}): Promise<CommandOutput> {
  const env = options.env ?? process.env;
  let id: string | undefined;
  let repository: LocalRepository;
  let keys: Keyring | undefined;
  try {
    const parsed = parse(args, { ...commonOptions });
    if (parsed.positionals.length > 1) throw new UsageError(`verify takes at most one backup id, got ${parsed.positionals.length}`);
    id = parsed.positionals[0];
    repository = repositoryOf((parsed.values as Record<string, unknown>)['repo']);
    keys = keyring(parsed.tokens, env);
  } catch (error) {
    if (error instanceof UsageError) return failure(`pgwarden: verify: ${error.message}\n  usage: ${verifyUsage}`, 2);
    return failure(`pgwarden: verify: ${describe(error)}`, 2);
  }
  try {
    id ??= (await listBackupIds(repository)).pop();
    if (id === undefined) return failure(`pgwarden: verify: ${repository.description} holds no complete backup (none with a manifest)`, 2);
    const result = await verifyBackup(id, { repository, keyring: keys, ...(options.progress === undefined ? {} : { progress: options.progress }) });
    if (result.ok) return { stdout: `backup ${id}: ok (${result.objectsChecked} objects, ${result.walChecked} WAL files)\n`, stderr: '', exitCode: 0 };
    return { stdout: `${result.problems.map((problem) => redact(problem)).join('\n')}\n`, stderr: `pgwarden: verify: backup ${id} has ${result.problems.length} problem(s)\n`, exitCode: 1 };
  } catch (error) {
    return failure(`pgwarden: verify: ${describe(error)}`, 2);
  }
}
