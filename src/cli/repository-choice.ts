/**
 * Which repository a backup command works on, from its command line (docs/repositories.md):
 *
 *   --repo DIR [--key ID=FILE | --key-env ID=VAR]...   a local repository directory and its keys
 *   --config FILE [--cluster NAME] [--repo NAME]       the cluster's repositories and keys under
 *                                                      `backups` (the first one unless --repo names
 *                                                      another); local or S3
 *
 * The choice also says how `pgwarden wal fetch` reaches the same archive (for restore_command):
 * the same --repo and keys, or the same --config and --cluster (every configured repository, in
 * order, or only the one --repo NAME chose). Keys never appear on a command line, only the files and variables that hold them.
 */
import { resolve } from 'node:path';
import type { parseArgs } from 'node:util';
import { loadKeyring, type KeySource } from '../backup/keys.js';
import { openRepository, type OpenRepository } from '../backup/repository/index.js';
import { LocalRepository } from '../backup/repository/local.js';
import type { Keyring } from '../backup/types.js';
import { resolveBackupPlan, type BackupPlan } from '../config/backups.js';
import type { Config } from '../config/types.js';
import { UserError } from '../errors.js';
import { keySourcesOf, UsageError } from './key-options.js';

type Env = Readonly<Record<string, string | undefined>>;

/** The parseArgs options every repository-using command accepts. */
export const repositoryOptions = {
  repo: { type: 'string' },
  config: { type: 'string' },
  cluster: { type: 'string' },
  key: { type: 'string', multiple: true },
  'key-env': { type: 'string', multiple: true },
} as const;

/** The usage fragment of those options. */
export const repositoryUsage = '(--repo DIR [--key ID=FILE | --key-env ID=VAR]... | --config FILE [--cluster NAME] [--repo NAME])';

export interface RepositoryChoice {
  readonly repository: OpenRepository;
  /** The repository's name in the config ("local", "offsite"), or its directory. */
  readonly name: string;
  readonly keyring: Keyring | undefined;
  readonly keySources: readonly KeySource[];
  /** The arguments after `wal fetch %f %p` that reach the same archive. */
  readonly walFetchArgs: readonly string[];
  /** With --config: the loaded config and the cluster's backup plan. */
  readonly config?: Config;
  readonly plan?: BackupPlan;
  close(): void;
}

/**
 * The loaded config and the backup plan of --cluster, or of the only configured cluster. The
 * config loader (it checks every section, so it loads the probes and checks) is imported only
 * here: `--repo DIR` commands start without it, restore_command's `wal fetch` among them.
 */
export async function backupPlanOf(file: string, clusterName: string | undefined, env: Env): Promise<{ config: Config; plan: BackupPlan }> {
  const [{ loadConfig }, { probeIds }] = await Promise.all([import('../config/load.js'), import('../probes/index.js')]);
  const config = loadConfig({ configFile: file, dsn: undefined, knownProbes: probeIds, env });
  const names = config.clusters.map((cluster) => cluster.name);
  let name = clusterName;
  if (name === undefined) {
    if (names.length !== 1) throw new UsageError(`${file} has ${names.length} clusters: pass --cluster NAME (one of ${names.join(', ')})`);
    name = names[0] ?? '';
  } else if (!names.includes(name)) {
    throw new UserError(`${file}: no cluster named "${name}"`, `pass --cluster with one of ${names.join(', ')}`);
  }
  const plan = resolveBackupPlan(config, name);
  if (plan === undefined) {
    throw new UserError(
      `${file}: backups: no backup settings cover cluster "${name}"`,
      config.backups === undefined ? 'add a backups section with its repositories (docs/configuration.md)' : `add backups.clusters.${name} or backups.clusters["*"]`,
    );
  }
  return { config, plan };
}

/**
 * The repository named by the parsed options (see the file comment). Throws UsageError for a
 * wrong combination and UserError for a config or key that cannot be read.
 */
export async function chooseRepository(values: Readonly<Record<string, unknown>>, tokens: ReturnType<typeof parseArgs>['tokens'], env: Env): Promise<RepositoryChoice> {
  const repo = values['repo'] as string | undefined;
  const configFile = values['config'] as string | undefined;
  const clusterName = values['cluster'] as string | undefined;
  const sources = keySourcesOf(tokens);
  if (configFile !== undefined) {
    if (sources.length > 0) throw new UsageError('--key and --key-env do not go with --config: the keys come from backups.keys');
    const { config, plan } = await backupPlanOf(configFile, clusterName, env);
    const chosen = repo === undefined ? plan.repositories[0] : plan.repositories.find((repository) => repository.name === repo);
    if (chosen === undefined) {
      throw new UsageError(`cluster "${plan.cluster}" has no repository named "${repo ?? ''}" (its repositories: ${plan.repositories.map((r) => r.name).join(', ')})`);
    }
    const repository = openRepository(chosen.spec, env, chosen.name);
    return {
      repository,
      name: chosen.name,
      keyring: plan.keys.length === 0 ? undefined : loadKeyring(plan.keys, env),
      keySources: plan.keys,
      // Named: WAL from that repository only (the others may be the ones lost); else from every one, in order.
      walFetchArgs: ['--config', resolve(configFile), '--cluster', plan.cluster, ...(repo === undefined ? [] : ['--repo', chosen.name])],
      config,
      plan,
      close: () => repository.close(),
    };
  }
  if (clusterName !== undefined) throw new UsageError('--cluster goes with --config FILE');
  if (repo === undefined || repo === '') throw new UsageError('--repo DIR or --config FILE is required (where the backups are)');
  const dir = resolve(repo);
  const walFetchArgs = ['--repo', dir];
  for (const key of sources) walFetchArgs.push(...('file' in key ? ['--key', `${key.id}=${resolve(key.file)}`] : ['--key-env', `${key.id}=${key.env}`]));
  const repository = new LocalRepository(dir);
  return {
    repository,
    name: dir,
    keyring: sources.length === 0 ? undefined : loadKeyring(sources, env),
    keySources: sources,
    walFetchArgs,
    close: () => repository.close(),
  };
}
