/**
 * `pgwarden logical` (issue 5 item 4; docs/logical-backups.md):
 *
 *   pgwarden logical backup  <repository> [--dsn URI | --node N] [--database DB]...
 *   pgwarden logical list    <repository> [--database DB] [--json]
 *   pgwarden logical restore <repository> --database DB [--id ID|latest] --into DB [--table SCHEMA.TABLE]
 *                            [--create] [--no-owner] [--dsn URI | --node N]
 *   pgwarden logical expire  <repository> [--days N] [--min-count N] [--max-count N] [--dry-run]
 *
 * <repository> is --repo DIR with --key/--key-env, or --config FILE [--cluster NAME] [--repo NAME]
 * (src/cli/repository-choice.ts); the server is --dsn, or else the cluster's node (--node, default
 * the first) in --config.
 *
 * Exit codes: 0 done; 1 a dump or the restore failed (backup: the other databases are still
 * kept); 2 bad usage, or a restore refused before anything was written (non-empty target, table
 * already there, missing or wrong key). Progress lines go to the `progress` callback (stderr).
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/load.js';
import { defaultRetention } from '../config/backups.js';
import { redact } from '../config/redact.js';
import type { ConnectionSpec } from '../config/types.js';
import { isUserError, messageOf } from '../errors.js';
import { renderTextTable } from '../format/text-table.js';
import { formatBytes } from '../format/units.js';
import {
  applyLogicalRetention, listLogicalBackups, planLogicalRetention, readLogicalCatalog, restoreLogical, takeLogicalBackups,
  LogicalRestoreRefusedError, type LogicalRetentionPolicy,
} from '../backup/logical.js';
import { probeIds } from '../probes/index.js';
import { UsageError } from './key-options.js';
import { chooseRepository, repositoryOptions, repositoryUsage, type RepositoryChoice } from './repository-choice.js';
import { describeError as describe, failure } from './command-output.js';
import type { CommandOutput } from './show.js';

type Env = Readonly<Record<string, string | undefined>>;

export interface LogicalCommandOptions {
  readonly progress?: (line: string) => void;
  readonly env?: Env;
}

const server = '[--dsn URI | --node N]';
const usages: Readonly<Record<string, string>> = {
  backup: `pgwarden logical backup ${repositoryUsage} ${server} [--database DB]...`,
  list: `pgwarden logical list ${repositoryUsage} [--database DB] [--json]`,
  restore: `pgwarden logical restore ${repositoryUsage} --database DB [--id ID|latest] --into DB [--table SCHEMA.TABLE] [--create] [--no-owner] ${server}`,
  expire: `pgwarden logical expire ${repositoryUsage} [--days N] [--min-count N] [--max-count N] [--dry-run]`,
};
const allUsages = Object.values(usages).join('\n         ');



const serverOptions = { dsn: { type: 'string' }, node: { type: 'string' } } as const;

type Values = Readonly<Record<string, string | boolean | string[] | undefined>>;

type OptionSpec = Readonly<Record<string, { readonly type: 'string' | 'boolean'; readonly multiple?: boolean }>>;

function parse(args: readonly string[], options: OptionSpec): { values: Values; tokens: ReturnType<typeof parseArgs>['tokens'] } {
  try {
    const parsed = parseArgs({ args: [...args], allowPositionals: true, strict: true, tokens: true, options: { ...repositoryOptions, ...options } });
    if (parsed.positionals.length > 0) throw new UsageError(`unexpected argument "${parsed.positionals.join(' ')}"`);
    return { values: parsed.values, tokens: parsed.tokens };
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(messageOf(error));
  }
}

/** The server: --dsn (which wins over --config's), or the node of --config's cluster (the first of each unless named). */
function connectionOf(values: Values, env: Env): ConnectionSpec {
  const dsn = values['dsn'] as string | undefined;
  const config = loadConfig({ configFile: dsn === undefined ? values['config'] as string | undefined : undefined, dsn, knownProbes: probeIds, env });
  const clusterName = dsn === undefined ? values['cluster'] as string | undefined : undefined;
  const nodeName = values['node'] as string | undefined;
  const cluster = clusterName === undefined ? config.clusters[0] : config.clusters.find((c) => c.name === clusterName);
  if (cluster === undefined) throw new UsageError(`no cluster named "${clusterName ?? ''}" in ${config.source}`);
  const node = nodeName === undefined ? cluster.nodes[0] : cluster.nodes.find((n) => n.name === nodeName);
  if (node === undefined) throw new UsageError(`no node named "${nodeName ?? ''}" in cluster "${cluster.name}"`);
  return node.connection;
}

function wholeNumber(values: Values, name: string, min: number): number | undefined {
  const text = values[name];
  if (text === undefined) return undefined;
  const value = Number(text);
  if (typeof text !== 'string' || !Number.isInteger(value) || value < min) throw new UsageError(`--${name} takes a whole number of at least ${min}`);
  return value;
}

async function backup(args: readonly string[], env: Env, options: LogicalCommandOptions, keep: (choice: RepositoryChoice) => void): Promise<CommandOutput> {
  const { values, tokens } = parse(args, { ...serverOptions, database: { type: 'string', multiple: true } });
  const connection = connectionOf(values, env);
  const choice = await chooseRepository(values, tokens, env);
  keep(choice);
  const databases = values['database'] as string[] | undefined;
  const results = await takeLogicalBackups({
    connection, repository: choice.repository, keyring: choice.keyring,
    ...(databases === undefined ? {} : { databases }),
    ...(options.progress === undefined ? {} : { progress: options.progress }),
  });
  const stdout = results.flatMap((r) => (r.ok ? [`${r.database}\t${r.manifest.id}\t${r.manifest.bytes}`] : []));
  const failed = results.filter((r) => !r.ok);
  const stderr = failed.map((r) => `pgwarden: logical backup: ${r.ok ? '' : r.error}`);
  if (results.length === 0) stderr.push('pgwarden: logical backup: the server has no database to dump (none allows connections)');
  return { stdout: stdout.length === 0 ? '' : `${stdout.join('\n')}\n`, stderr: stderr.length === 0 ? '' : `${redact(stderr.join('\n'))}\n`, exitCode: failed.length > 0 || results.length === 0 ? 1 : 0 };
}

async function list(args: readonly string[], env: Env, keep: (choice: RepositoryChoice) => void): Promise<CommandOutput> {
  const { values, tokens } = parse(args, { database: { type: 'string' }, json: { type: 'boolean' } });
  const choice = await chooseRepository(values, tokens, env);
  keep(choice);
  const dumps = await listLogicalBackups(choice.repository, values['database'] as string | undefined);
  if (values['json'] === true) return { stdout: `${JSON.stringify(dumps, null, 2)}\n`, stderr: '', exitCode: 0 };
  if (dumps.length === 0) return { stdout: `no logical dumps in ${choice.repository.description}\n`, stderr: '', exitCode: 0 };
  const table = renderTextTable(
    [
      { title: 'DATABASE', align: 'left', maxWidth: 40 },
      { title: 'ID', align: 'left', maxWidth: 24 },
      { title: 'FINISHED', align: 'left', maxWidth: 24 },
      { title: 'SIZE', align: 'right', maxWidth: 12 },
      { title: 'KEY', align: 'left', maxWidth: 20 },
    ],
    dumps.map((m) => [m.database, m.id, m.finishedAt.replace(/\.\d+Z$/, 'Z'), formatBytes(m.bytes), m.keyId ?? '-']),
  );
  return { stdout: `${table}\n`, stderr: '', exitCode: 0 };
}

function parseTable(text: string): { schema: string; name: string } {
  const dot = text.indexOf('.');
  if (dot <= 0 || dot === text.length - 1) throw new UsageError(`--table takes SCHEMA.TABLE (e.g. public.orders), not "${text}"`);
  return { schema: text.slice(0, dot), name: text.slice(dot + 1) };
}

async function restore(args: readonly string[], env: Env, options: LogicalCommandOptions, keep: (choice: RepositoryChoice) => void): Promise<CommandOutput> {
  const { values, tokens } = parse(args, {
    ...serverOptions, database: { type: 'string' }, id: { type: 'string' }, into: { type: 'string' }, table: { type: 'string' },
    create: { type: 'boolean' }, 'no-owner': { type: 'boolean' },
  });
  const database = values['database'];
  const into = values['into'];
  if (typeof database !== 'string' || database === '') throw new UsageError('--database DB is required (whose dump to restore)');
  if (typeof into !== 'string' || into === '') throw new UsageError('--into DB is required (the database restored into)');
  const table = typeof values['table'] === 'string' ? parseTable(values['table']) : undefined;
  if (table !== undefined && values['create'] === true) throw new UsageError('--create goes with a whole-database restore, not with --table');
  const connection = connectionOf(values, env);
  const choice = await chooseRepository(values, tokens, env);
  keep(choice);
  const result = await restoreLogical({
    repository: choice.repository, keyring: choice.keyring, connection, database, into,
    id: typeof values['id'] === 'string' ? values['id'] : 'latest',
    create: values['create'] === true,
    noOwner: values['no-owner'] === true,
    ...(table === undefined ? {} : { table }),
    ...(options.progress === undefined ? {} : { progress: options.progress }),
  });
  const what = table === undefined ? `database "${result.manifest.database}"` : `table ${table.schema}.${table.name}`;
  const lines = [`restored ${what} from dump ${result.manifest.id} into "${result.into}" (${result.restored.length} entries)`];
  if (table !== undefined) lines.push(...result.restored.map((entry) => `  ${entry}`));
  lines.push(...result.notes.map((note) => `note: ${note}`));
  return { stdout: `${lines.join('\n')}\n`, stderr: '', exitCode: 0 };
}

async function expire(args: readonly string[], env: Env, keep: (choice: RepositoryChoice) => void): Promise<CommandOutput> {
  const { values, tokens } = parse(args, { days: { type: 'string' }, 'min-count': { type: 'string' }, 'max-count': { type: 'string' }, 'dry-run': { type: 'boolean' } });
  const days = values['days'] === undefined ? undefined : Number(values['days']);
  if (days !== undefined && !(days >= 0)) throw new UsageError('--days takes a number of days, 0 or more');
  const choice = await chooseRepository(values, tokens, env);
  keep(choice);
  const base = choice.plan?.retention ?? defaultRetention;
  const policy: LogicalRetentionPolicy = {
    days: days ?? base.days,
    minCount: wholeNumber(values, 'min-count', 1) ?? base.minCount,
    maxCount: wholeNumber(values, 'max-count', 1) ?? base.maxCount,
    incompleteGraceHours: 24,
  };
  let plan;
  try {
    plan = planLogicalRetention(await readLogicalCatalog(choice.repository), policy, new Date());
  } catch (error) {
    if (error instanceof RangeError) throw new UsageError(error.message);
    throw error;
  }
  const dry = values['dry-run'] === true;
  const lines = [
    ...plan.keep.map((k) => `keep   ${k.database} ${k.id}: ${k.reason}`),
    ...plan.steps.map((s) => `${dry ? 'would delete' : 'delete'} ${s.database} ${s.id}: ${s.reason} (${formatBytes(s.bytes)})`),
    ...plan.notes.map((n) => `note: ${n}`),
  ];
  if (!dry) await applyLogicalRetention(choice.repository, plan);
  return { stdout: lines.length === 0 ? '' : `${lines.join('\n')}\n`, stderr: '', exitCode: 0 };
}

/** Runs `pgwarden logical …` (the arguments after "logical"). */
export async function logicalCommand(args: readonly string[], options: LogicalCommandOptions = {}): Promise<CommandOutput> {
  const env = options.env ?? process.env;
  const [sub, ...rest] = args;
  let choice: RepositoryChoice | undefined;
  const keep = (chosen: RepositoryChoice): void => { choice = chosen; };
  try {
    switch (sub) {
      case 'backup': return await backup(rest, env, options, keep);
      case 'list': return await list(rest, env, keep);
      case 'restore': return await restore(rest, env, options, keep);
      case 'expire': return await expire(rest, env, keep);
      default:
        return failure(`pgwarden: logical: ${sub === undefined ? 'a subcommand is required' : `unknown subcommand "${sub}"`}\n  usage: ${allUsages}`, 2);
    }
  } catch (error) {
    const usage = usages[sub ?? ''] ?? allUsages;
    if (error instanceof UsageError) return failure(`pgwarden: logical ${sub ?? ''}: ${error.message}\n  usage: ${usage}`, 2);
    if (error instanceof LogicalRestoreRefusedError) return failure(`pgwarden: logical ${sub ?? ''}: ${describe(error)}`, 2);
    return failure(`pgwarden: logical ${sub ?? ''} failed: ${describe(error)}`, isUserError(error) && sub !== 'restore' && sub !== 'backup' ? 2 : 1);
  } finally {
    choice?.close();
  }
}
