/**
 * `pgwarden backup` and `pgwarden verify` (issue 5 items 2 and 8; docs/backups.md):
 *
 *   pgwarden backup --dsn URI --repo DIR [--key ID=FILE | --key-env ID=VAR]... [options]
 *   pgwarden backup --config FILE [--cluster C] [--node N] [--repo NAME] [options]
 *       options: [--fast] [--compression zstd|gzip|none] [--part-size MIB] [--archive-timeout SECONDS]
 *                [--compress-on server|client]
 *   pgwarden verify [BACKUP_ID | --all] (--repo DIR [--key ...]... | --config FILE [--cluster C] [--repo NAME])
 *
 * With --config, the backup goes into the cluster's first repository and is then copied, object
 * by object and manifest last, into each of its other repositories (the off-site copies), unless
 * --repo names one; the keys and the compression are the cluster's. verify checks one backup (the
 * newest by default, every one with --all) and the continuity of the whole recovery window.
 *
 * Exit codes: 0 done / sound; 1 the backup failed (nothing of it is kept) or a copy failed (the
 * first repository keeps it) / verification found problems (one stdout line each); 2 bad usage,
 * or no such backup. Progress goes to the `progress` callback (stderr). Keys are read from files
 * or the environment, never from the command line.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/load.js';
import { redact } from '../config/redact.js';
import { messageOf } from '../errors.js';
import { takeBackup, DEFAULT_ARCHIVE_TIMEOUT_MS, DEFAULT_PART_BYTES, type BackupCompression, type BackupOptions } from '../backup/basebackup.js';
import { readCatalog } from '../backup/catalog.js';
import { copyBackup } from '../backup/copy.js';
import { loadKeyring } from '../backup/keys.js';
import { openRepository, type OpenRepository } from '../backup/repository/index.js';
import { LocalRepository } from '../backup/repository/local.js';
import { listBackupIds, verifyBackup } from '../backup/verify.js';
import { zstdInstalled } from '../backup/wal/compress.js';
import { checkDuplicateWal } from '../backup/wal/copies.js';
import { recoveryWindow, windowProblems } from '../backup/window.js';
import type { Config } from '../config/types.js';
import { probeIds } from '../probes/index.js';
import { keySourcesOf, UsageError } from './key-options.js';
import { backupPlanOf, chooseRepository, repositoryOptions, repositoryUsage } from './repository-choice.js';
import { describeError as describe, failure } from './command-output.js';
import type { CommandOutput } from './show.js';

const backupUsage = 'pgwarden backup (--dsn URI --repo DIR [--key ID=FILE | --key-env ID=VAR]... | --config FILE [--cluster C] [--node N] [--repo NAME]) [--fast] [--compression zstd|gzip|none] [--part-size MIB] [--archive-timeout SECONDS] [--compress-on server|client]';
const verifyUsage = `pgwarden verify [BACKUP_ID | --all] ${repositoryUsage}`;

type Env = Readonly<Record<string, string | undefined>>;

export interface BackupCommandOptions {
  /** A progress line (no newline), shown as it happens. */
  readonly progress?: (line: string) => void;
  readonly env?: Env;
}



function parse(args: readonly string[], options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean }>): ReturnType<typeof parseArgs> {
  try {
    return parseArgs({ args: [...args], allowPositionals: true, strict: true, tokens: true, options });
  } catch (error) {
    throw new UsageError(messageOf(error));
  }
}

/** The node to back up: --dsn, or --cluster/--node of --config (the first of each by default). */
function nodeOf(config: Config, clusterName: string | undefined, nodeName: string | undefined): { cluster: string; node: string; connection: BackupOptions['connection'] } {
  const cluster = clusterName === undefined ? config.clusters[0] : config.clusters.find((c) => c.name === clusterName);
  if (cluster === undefined) throw new UsageError(`no cluster named "${clusterName ?? ''}" in ${config.source}`);
  const node = nodeName === undefined ? cluster.nodes[0] : cluster.nodes.find((n) => n.name === nodeName);
  if (node === undefined) throw new UsageError(`no node named "${nodeName ?? ''}" in cluster "${cluster.name}"`);
  return { cluster: cluster.name, node: node.name, connection: node.connection };
}

interface BackupRun {
  readonly options: BackupOptions;
  /** Where the backup is copied after it is taken (the cluster's other repositories). */
  readonly copies: readonly OpenRepository[];
  readonly close: () => void;
}

function parseBackup(args: readonly string[], env: Env, progress: BackupCommandOptions['progress']): Promise<BackupRun> {
  return (async () => {
    const parsed = parse(args, {
      repo: { type: 'string' },
      key: { type: 'string', multiple: true },
      'key-env': { type: 'string', multiple: true },
      config: { type: 'string' },
      dsn: { type: 'string' },
      cluster: { type: 'string' },
      node: { type: 'string' },
      fast: { type: 'boolean' },
      compression: { type: 'string' },
      'part-size': { type: 'string' },
      'archive-timeout': { type: 'string' },
      'compress-on': { type: 'string' },
    });
    const values = parsed.values as Record<string, string | boolean | string[] | undefined>;
    if (parsed.positionals.length > 0) throw new UsageError(`backup takes no arguments, got "${parsed.positionals.join(' ')}"`);
    const partMib = values['part-size'] === undefined ? DEFAULT_PART_BYTES / 1024 / 1024 : Number(values['part-size']);
    if (!Number.isInteger(partMib) || partMib < 1 || partMib > 4096) throw new UsageError('--part-size takes a whole number of MiB from 1 to 4096');
    const timeoutS = values['archive-timeout'] === undefined ? DEFAULT_ARCHIVE_TIMEOUT_MS / 1000 : Number(values['archive-timeout']);
    if (!Number.isFinite(timeoutS) || timeoutS <= 0) throw new UsageError('--archive-timeout takes a number of seconds above 0');
    const compressOn = values['compress-on'] ?? 'server';
    if (compressOn !== 'server' && compressOn !== 'client') throw new UsageError('--compress-on must be server (PostgreSQL 15+ compresses the zstd stream itself) or client');
    const configFile = values['config'] as string | undefined;
    const repo = values['repo'] as string | undefined;
    let compression = values['compression'] as string | undefined;
    let node: ReturnType<typeof nodeOf>;
    let repositories: OpenRepository[];
    let keyring: BackupOptions['keyring'];
    if (configFile !== undefined) {
      if (values['dsn'] !== undefined) throw new UsageError('--dsn and --config exclude each other: the config names the nodes');
      if (keySourcesOf(parsed.tokens).length > 0) throw new UsageError('--key and --key-env do not go with --config: the keys come from backups.keys');
      const { config, plan } = await backupPlanOf(configFile, values['cluster'] as string | undefined, env);
      node = nodeOf(config, plan.cluster, values['node'] as string | undefined);
      const chosen = repo === undefined ? plan.repositories : plan.repositories.filter((r) => r.name === repo);
      if (chosen.length === 0) throw new UsageError(`cluster "${plan.cluster}" has no repository named "${repo ?? ''}" (its repositories: ${plan.repositories.map((r) => r.name).join(', ')})`);
      repositories = chosen.map((r) => openRepository(r.spec, env, r.name));
      keyring = plan.keys.length === 0 ? undefined : loadKeyring(plan.keys, env);
      compression ??= plan.compression;
    } else {
      if (repo === undefined || repo === '') throw new UsageError('--repo DIR (the local repository directory) or --config FILE is required');
      const config = loadConfig({ configFile: undefined, dsn: values['dsn'] as string | undefined, knownProbes: probeIds, env });
      node = nodeOf(config, values['cluster'] as string | undefined, values['node'] as string | undefined);
      repositories = [new LocalRepository(resolve(repo))];
      const sources = keySourcesOf(parsed.tokens);
      keyring = sources.length === 0 ? undefined : loadKeyring(sources, env);
    }
    compression ??= (await zstdInstalled()) ? 'zstd' : 'gzip';
    if (!['zstd', 'gzip', 'none'].includes(compression)) throw new UsageError('--compression must be zstd, gzip or none');
    const [first, ...copies] = repositories;
    if (first === undefined) throw new UsageError('no repository to back up into');
    return {
      options: {
        ...node,
        repository: first,
        keyring,
        compression: compression as BackupCompression,
        fast: values['fast'] === true,
        partBytes: partMib * 1024 * 1024,
        archiveTimeoutMs: timeoutS * 1000,
        compressOn,
        ...(progress === undefined ? {} : { progress }),
      },
      copies,
      close: () => repositories.forEach((repository) => repository.close()),
    };
  })();
}

/** Runs `pgwarden backup …` (the arguments after "backup"). */
export async function backupCommand(args: readonly string[], options: BackupCommandOptions = {}): Promise<CommandOutput> {
  const env = options.env ?? process.env;
  let run: BackupRun;
  try {
    run = await parseBackup(args, env, options.progress);
  } catch (error) {
    if (error instanceof UsageError) return failure(`pgwarden: backup: ${error.message}\n  usage: ${backupUsage}`, 2);
    return failure(`pgwarden: backup: ${describe(error)}`, 2);
  }
  try {
    let manifest;
    try {
      manifest = await takeBackup(run.options);
    } catch (error) {
      return failure(`pgwarden: backup failed, nothing of it is kept: ${describe(error)}`, 1);
    }
    const failed: string[] = [];
    for (const copy of run.copies) {
      try {
        const outcome = await copyBackup({ from: run.options.repository, to: copy, manifest, ...(options.progress === undefined ? {} : { progress: options.progress }) });
        options.progress?.(`backup ${manifest.id}: ${outcome === 'copied' ? 'copied to' : 'already in'} ${copy.description}`);
      } catch (error) {
        failed.push(`pgwarden: backup ${manifest.id} is in ${run.options.repository.description} but its copy to ${copy.description} failed: ${describe(error)}`);
      }
    }
    if (failed.length > 0) return { stdout: `${manifest.id}\n`, stderr: `${redact(failed.join('\n'))}\n`, exitCode: 1 };
    return { stdout: `${manifest.id}\n`, stderr: '', exitCode: 0 };
  } finally {
    run.close();
  }
}

/** Runs `pgwarden verify …` (the arguments after "verify"). */
export async function verifyCommand(args: readonly string[], options: BackupCommandOptions = {}): Promise<CommandOutput> {
  const env = options.env ?? process.env;
  let ids: string[] | 'all' | undefined;
  let choice: Awaited<ReturnType<typeof chooseRepository>>;
  try {
    const parsed = parse(args, { ...repositoryOptions, all: { type: 'boolean' } });
    if (parsed.positionals.length > 1) throw new UsageError(`verify takes at most one backup id, got ${parsed.positionals.length}`);
    if (parsed.values['all'] === true && parsed.positionals.length > 0) throw new UsageError('a backup id and --all exclude each other');
    ids = parsed.values['all'] === true ? 'all' : parsed.positionals.length === 1 ? [parsed.positionals[0] ?? ''] : undefined;
    choice = await chooseRepository(parsed.values, parsed.tokens, env);
  } catch (error) {
    if (error instanceof UsageError) return failure(`pgwarden: verify: ${error.message}\n  usage: ${verifyUsage}`, 2);
    return failure(`pgwarden: verify: ${describe(error)}`, 2);
  }
  const { repository, keyring } = choice;
  try {
    const complete = await listBackupIds(repository);
    const chosen = ids === 'all' ? complete : ids ?? complete.slice(-1);
    if (chosen.length === 0) return failure(`pgwarden: verify: ${repository.description} holds no complete backup (none with a manifest)`, 2);
    const lines: string[] = [];
    const problems: string[] = [];
    for (const id of chosen) {
      const result = await verifyBackup(id, { repository, keyring, ...(options.progress === undefined ? {} : { progress: options.progress }) });
      if (result.ok) lines.push(`backup ${id}: ok (${result.objectsChecked} objects, ${result.walChecked} WAL files)`);
      else problems.push(...result.problems);
    }
    const catalog = await readCatalog(repository, keyring === undefined ? {} : { keyring });
    const window = recoveryWindow(catalog);
    const windowTrouble = [...catalog.problems.map((problem) => `window: ${problem}`), ...windowProblems(window)];
    if (windowTrouble.length === 0 && window.from !== null && window.reachableTo !== null) {
      lines.push(`recovery window: ok, from ${window.from.time} (backup ${window.from.backupId}) to ${window.reachableTo.wal} (timeline ${window.reachableTo.timeline}), no gap`);
    }
    problems.push(...windowTrouble);
    // A WAL name stored under two keys counts once in the window; the same WAL twice is only a warning.
    const duplicates = await checkDuplicateWal(repository, keyring, [...catalog.wal.map((wal) => wal.key), ...catalog.histories.map((history) => history.key)]);
    lines.push(...duplicates.warnings.map((warning) => `warning: ${warning}`));
    problems.push(...duplicates.problems);
    if (problems.length === 0) return { stdout: `${lines.join('\n')}\n`, stderr: '', exitCode: 0 };
    return { stdout: `${[...lines, ...problems].map((line) => redact(line)).join('\n')}\n`, stderr: `pgwarden: verify: ${problems.length} problem(s) in ${repository.description}\n`, exitCode: 1 };
  } catch (error) {
    return failure(`pgwarden: verify: ${describe(error)}`, 2);
  } finally {
    choice.close();
  }
}
