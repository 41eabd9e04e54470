/**
 * `pgwarden drill` (issue 5 item 10; docs/drills.md): a restore drill of the newest backup.
 *
 *   pgwarden drill (--repo DIR [--key ID=FILE | --key-env ID=VAR]... | --config FILE [--cluster NAME] [--repo NAME])
 *                  [--dsn DSN] [--table SCHEMA.TABLE]... [--target-dir DIR] [--keep] [--heapallindexed] [--json]
 *
 * With --config, the tables and the directory come from the cluster's backups drill settings, the
 * source from its first node, and the custom SQL checks from health.sql (the cluster's); --dsn,
 * --table and --target-dir override them. Without a source (--repo and no --dsn) the drill
 * restores to latest and only counts the tables on the copy.
 *
 * Exit codes: 0 the drill passed; 1 it failed (one stdout line per failed check; recorded in the
 * repository all the same); 2 bad usage, or nothing to drill (no restorable backup). Progress
 * lines go to the `progress` callback (stderr).
 *
 * SIGTERM, SIGINT and SIGHUP interrupt a running drill (docs/drills.md, "Interrupting a drill"):
 * it stops what it waits on, stops the restored server, removes its directory and records itself
 * as failed, then the command exits 1 like any failed drill: the clean-up did happen, unlike a
 * death by signal (128 + n). Further signals during the clean-up are caught too and only say that
 * it is running: exiting then would leave the server running.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { NothingToDrillError, runDrill, checkTableName, type DrillOptions, type DrillRecord, type DrillSqlCheck } from '../backup/drill.js';
import { defaultDrill } from '../config/backups.js';
import { resolveConnection } from '../config/conninfo.js';
import { redact } from '../config/redact.js';
import type { Config, ConnectionSpec } from '../config/types.js';
import { messageOf } from '../errors.js';
import { sqlTargetOf } from '../health/custom-sql.js';
import { UsageError } from './key-options.js';
import { chooseRepository, repositoryOptions, repositoryUsage } from './repository-choice.js';
import { describeError as describe, failure } from './command-output.js';
import type { CommandOutput } from './show.js';

const usage = `pgwarden drill ${repositoryUsage} [--dsn DSN] [--table SCHEMA.TABLE]... [--target-dir DIR] [--keep] [--heapallindexed] [--json]`;

type Env = Readonly<Record<string, string | undefined>>;

/** The signals that interrupt a running drill (a service stopping, Ctrl-C, a closed terminal). */
const interruptSignals = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;

export interface DrillCommandOptions {
  readonly progress?: (line: string) => void;
  readonly env?: Env;
}



/** The custom SQL checks of `cluster` (health.sql entries for it, or for the first cluster when they name none). */
function sqlChecksOf(config: Config, cluster: string): DrillSqlCheck[] {
  const first = config.clusters[0]?.name;
  return config.health.sql
    .filter((check) => (check.cluster ?? first) === cluster)
    .map((check) => {
      const target = sqlTargetOf(config, cluster, check);
      const database = 'error' in target ? (check.database ?? 'postgres') : target.connection.database;
      return { name: check.name, database, query: check.query, warning: check.warning, critical: check.critical, direction: check.direction, timeoutMs: check.timeoutMs };
    });
}

/** A detail on one line (a refused restore's reason lists the recovery window on several). */
function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, '; ');
}

function seconds(value: number | null): string {
  return value === null ? '?' : `${value.toFixed(1)} s`;
}

/** The human output: a summary and every check when it passed; one line per failed check when it failed. */
function report(record: DrillRecord): CommandOutput {
  const where = `recorded as drills/${record.id}.json`;
  if (!record.ok) {
    const lines = record.checks.filter((check) => !check.ok).map((check) => `FAILED ${check.name}: ${oneLine(check.detail)}`);
    return { stdout: `${redact(lines.join('\n'))}\n`, stderr: `pgwarden: drill ${record.id} of cluster ${record.cluster} FAILED (${where})\n`, exitCode: 1 };
  }
  const lines = [
    `drill ${record.id} passed: backup ${record.backupId ?? '?'} restored in ${seconds(record.restoreSeconds)} to ${record.target}; last commit ${record.recoveredTo ?? 'none'}, data-loss window ${seconds(record.dataLossWindowSeconds)} (${where})`,
    ...record.checks.map((check) => `  ok ${check.name}: ${oneLine(check.detail)}`),
  ];
  return { stdout: `${redact(lines.join('\n'))}\n`, stderr: '', exitCode: 0 };
}

/** Runs `pgwarden drill …` (the arguments after "drill"). */
export async function drillCommand(args: readonly string[], options: DrillCommandOptions = {}): Promise<CommandOutput> {
  const env = options.env ?? process.env;
  let drill: DrillOptions;
  let json = false;
  let close = (): void => undefined;
  try {
    let parsed;
    try {
      parsed = parseArgs({
        args: [...args], allowPositionals: false, strict: true, tokens: true,
        options: {
          ...repositoryOptions,
          dsn: { type: 'string' }, table: { type: 'string', multiple: true }, 'target-dir': { type: 'string' },
          keep: { type: 'boolean' }, heapallindexed: { type: 'boolean' }, json: { type: 'boolean' },
        },
      });
    } catch (error) {
      throw new UsageError(messageOf(error));
    }
    const values = parsed.values;
    json = values.json === true;
    for (const table of values.table ?? []) {
      try {
        checkTableName(table);
      } catch (error) {
        throw new UsageError(`--table ${messageOf(error)}: write it as schema.table, e.g. public.orders`);
      }
    }
    if (values['target-dir'] === '') throw new UsageError('--target-dir needs a directory');
    const choice = await chooseRepository(values, parsed.tokens, env);
    close = () => choice.close();
    let source: ConnectionSpec | undefined = values.dsn === undefined ? undefined : resolveConnection(values.dsn, '--dsn', env);
    let tables: readonly string[] = values.table ?? [];
    let targetDir = values['target-dir'] ?? defaultDrill().targetDir;
    let sqlChecks: DrillSqlCheck[] = [];
    let cluster: string | undefined;
    if (choice.config !== undefined && choice.plan !== undefined) {
      const { config, plan } = choice;
      cluster = plan.cluster;
      source ??= config.clusters.find((candidate) => candidate.name === plan.cluster)?.nodes[0]?.connection;
      if (values.table === undefined) tables = plan.drill.tables;
      targetDir = values['target-dir'] ?? plan.drill.targetDir;
      sqlChecks = sqlChecksOf(config, plan.cluster);
    }
    drill = {
      repository: choice.repository,
      keyring: choice.keyring,
      walFetchArgs: choice.walFetchArgs,
      pgwarden: [process.execPath, resolve(process.argv[1] ?? 'pgwarden')],
      ...(cluster === undefined ? {} : { cluster }),
      ...(source === undefined ? {} : { source }),
      tables,
      sqlChecks,
      targetDir: resolve(targetDir),
      ...(values.keep === true ? { keep: true } : {}),
      ...(values.heapallindexed === true ? { heapAllIndexed: true } : {}),
      ...(options.progress === undefined ? {} : { progress: options.progress }),
    };
  } catch (error) {
    close();
    if (error instanceof UsageError) return failure(`pgwarden: drill: ${error.message}\n  usage: ${usage}`, 2);
    return failure(`pgwarden: drill: ${describe(error)}`, 2);
  }
  const interrupt = new AbortController();
  const onSignal = (signal: NodeJS.Signals): void => {
    if (!interrupt.signal.aborted) {
      options.progress?.(`drill: ${signal}: interrupting the drill; it cleans up and records itself as failed (a few seconds)`);
      interrupt.abort(signal);
    } else {
      options.progress?.(`drill: ${signal} ignored: the clean-up is still running (stopping the restored server, removing its directory, recording the drill); pgwarden exits when it is done. SIGKILL would leave the server and its directory behind`);
    }
  };
  for (const signal of interruptSignals) process.on(signal, onSignal);
  try {
    const record = await runDrill({ ...drill, signal: interrupt.signal });
    if (json) return { stdout: `${JSON.stringify(record, null, 2)}\n`, stderr: '', exitCode: record.ok ? 0 : 1 };
    return report(record);
  } catch (error) {
    if (error instanceof NothingToDrillError) return failure(`pgwarden: drill: ${describe(error)}`, 2);
    return failure(`pgwarden: drill failed: ${describe(error)}`, 1);
  } finally {
    for (const signal of interruptSignals) process.off(signal, onSignal);
    close();
  }
}
