/**
 * `pgwarden backups list` and `pgwarden backups expire` (docs/retention.md): the catalog of a
 * repository with its recovery window, and retention.
 *
 *   list    backups (id, time, size, duration, verified, timeline, what each restores to), the
 *           incomplete ones with their age, the recovery window, gaps and timeline forks.
 *           Exit 0; 2 bad usage.
 *   expire  prints the retention plan, then applies it (--dry-run: prints only).
 *           Exit 0 done; 1 a deletion failed (rerun: the plan is recomputed); 2 bad usage.
 *
 * --json prints the same as the stable JSON form (snake_case keys).
 */
import { parseArgs } from 'node:util';
import { readCatalog, type Catalog } from '../backup/catalog.js';
import { applyRetention, checkPolicy, defaultRetention, planRetention, type RetentionPlan, type RetentionPolicy } from '../backup/retention.js';
import { recoveryWindow, type RecoveryWindow } from '../backup/window.js';
import { redact } from '../config/redact.js';
import { isUserError, messageOf } from '../errors.js';
import { toJsonValue } from '../format/json.js';
import { renderTextTable } from '../format/text-table.js';
import { formatBytes, formatDuration } from '../format/units.js';
import type { BackupPlan } from '../config/backups.js';
import { UsageError } from './key-options.js';
import { chooseRepository, repositoryOptions, repositoryUsage, type RepositoryChoice } from './repository-choice.js';
import type { CommandOutput } from './show.js';

const usage = [
  `pgwarden backups list ${repositoryUsage} [--json]`,
  `pgwarden backups expire ${repositoryUsage} [--days N] [--min-count N] [--max-count N] [--dry-run] [--json]`,
].join(' or ');


interface BackupsArgs {
  readonly command: 'list' | 'expire';
  readonly json: boolean;
  readonly dryRun: boolean;
  /** The policy as given on the line; with --config, the cluster's retention fills what is not given. */
  readonly policy: (plan: BackupPlan | undefined) => RetentionPolicy;
  readonly values: Readonly<Record<string, unknown>>;
  readonly tokens: ReturnType<typeof parseArgs>['tokens'];
}

function wholeNumber(option: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  if (!/^\d+$/.test(text)) throw new UsageError(`${option} takes a whole number, not "${text}"`);
  return Number(text);
}

function parse(args: readonly string[]): BackupsArgs {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...args],
      allowPositionals: true,
      strict: true,
      tokens: true,
      options: {
        ...repositoryOptions,
        json: { type: 'boolean', default: false },
        'dry-run': { type: 'boolean', default: false },
        days: { type: 'string' },
        'min-count': { type: 'string' },
        'max-count': { type: 'string' },
      },
    });
  } catch (error) {
    throw new UsageError(messageOf(error));
  }
  const [command, ...extra] = parsed.positionals;
  if (command !== 'list' && command !== 'expire') throw new UsageError(`unknown backups command "${command ?? ''}" (known: list, expire)`);
  if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0] ?? ''}"`);
  const values = parsed.values as unknown as Readonly<Record<string, string | boolean | undefined>>;
  const json = values['json'] === true;
  const policy = (plan: BackupPlan | undefined): RetentionPolicy => {
    const base = plan === undefined ? defaultRetention : { ...defaultRetention, ...plan.retention };
    const maxCount = values['max-count'];
    try {
      return checkPolicy({
        ...base,
        days: wholeNumber('--days', values['days'] as string | undefined, base.days),
        minCount: wholeNumber('--min-count', values['min-count'] as string | undefined, base.minCount),
        maxCount: maxCount === undefined ? base.maxCount : wholeNumber('--max-count', maxCount as string, 0),
      });
    } catch (error) {
      if (error instanceof RangeError) throw new UsageError(error.message);
      throw error;
    }
  };
  policy(undefined);
  return { command, json, dryRun: values['dry-run'] === true, policy, values, tokens: parsed.tokens };
}

function shortTime(iso: string): string {
  return iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

function verifiedText(records: Catalog['backups'][number]['verifications']): string {
  const last = records[records.length - 1];
  if (last === undefined) return 'never';
  return last.ok ? `ok ${shortTime(last.at)}` : `FAILED ${shortTime(last.at)}`;
}

/** The human-readable catalog and window. */
export function renderList(catalog: Catalog, window: RecoveryWindow, now: Date): string {
  const lines: string[] = [`Repository ${catalog.repository}`, ''];
  const reach = new Map(window.backups.map((b) => [b.id, b]));
  if (catalog.backups.length === 0) {
    lines.push('No complete backups.');
  } else {
    lines.push(`Backups (${catalog.backups.length} complete)`);
    const rows = catalog.backups.map(({ manifest, storedBytes, verifications }) => {
      const r = reach.get(manifest.id);
      const to = r?.to == null ? `NOT RESTORABLE: ${r?.problem ?? ''}` : `${r.to.lsn} on timeline ${r.to.timeline}`;
      return [manifest.id, shortTime(manifest.consistentAt), formatBytes(storedBytes), formatDuration(manifest.durationMs / 1000), verifiedText(verifications), String(manifest.timeline), to];
    });
    lines.push(renderTextTable([
      { title: 'ID', align: 'left', maxWidth: 40 },
      { title: 'CONSISTENT AT', align: 'left', maxWidth: 20 },
      { title: 'SIZE', align: 'right', maxWidth: 10 },
      { title: 'DURATION', align: 'right', maxWidth: 8 },
      { title: 'VERIFIED', align: 'left', maxWidth: 28 },
      { title: 'TL', align: 'right', maxWidth: 4 },
      { title: 'RESTORES UP TO', align: 'left', maxWidth: 160 },
    ], rows));
  }
  for (const incomplete of catalog.incomplete) {
    const age = incomplete.startedAt === null ? 'age unknown' : `started ${formatDuration((now.getTime() - new Date(incomplete.startedAt).getTime()) / 1000)} ago`;
    lines.push(`Incomplete (no manifest): ${incomplete.id}, ${age}, ${formatBytes(incomplete.storedBytes)}`);
  }
  lines.push('');
  const newest = window.newestWal === null ? 'no archived WAL' : `${window.newestWal.wal} (up to ${window.newestWal.lsn}, timeline ${window.newestWal.timeline})`;
  if (window.from === null) {
    lines.push(`Recovery window: none (no restorable backup); newest archived WAL: ${newest}`);
  } else {
    lines.push(`Recovery window: from ${shortTime(window.from.time)} (${window.from.lsn}, backup ${window.from.backupId}) to ${newest}`);
    const reachable = window.reachableTo;
    if (reachable !== null && window.newestWal !== null && reachable.wal !== window.newestWal.wal) {
      lines.push(`  but restores reach only ${reachable.wal} (up to ${reachable.lsn}, timeline ${reachable.timeline}): a gap is in the way`);
    }
  }
  if (window.gaps.length === 0) lines.push('Gaps: none');
  for (const gap of window.gaps) {
    const range = gap.missing === 1 ? gap.firstMissing : `${gap.firstMissing} … ${gap.lastMissing}`;
    lines.push(`GAP on timeline ${gap.timeline}: ${gap.missing} segment${gap.missing === 1 ? '' : 's'} missing (${range}) after ${gap.after}; WAL after it is unreachable from older backups`);
  }
  for (const timeline of window.timelines) {
    if (timeline.parent === null) continue;
    const at = timeline.switchLsn === null ? `segment ${timeline.forkWal ?? '?'}` : `${timeline.switchLsn} (${timeline.forkWal ?? '?'})`;
    lines.push(`Timeline ${timeline.timeline} branches from timeline ${timeline.parent} at ${at}${timeline.inferred ? ', inferred: its history file could not be read' : ''}`);
  }
  for (const problem of catalog.problems) lines.push(`Problem: ${problem}`);
  return `${lines.join('\n')}\n`;
}

/** The human-readable retention plan. */
export function renderPlan(plan: RetentionPlan, dryRun: boolean): string {
  const { policy } = plan;
  const lines: string[] = [
    `Retention for ${plan.repository} at ${shortTime(plan.now)}: keep ${policy.days} days, min_count ${policy.minCount}` +
      `${policy.maxCount === null ? '' : `, max_count ${policy.maxCount}`}, incomplete backups after ${policy.incompleteGraceHours} h`,
  ];
  for (const kept of plan.keep) lines.push(`  keep    ${kept.id}: ${kept.reason}`);
  for (const step of plan.steps) lines.push(`  delete  ${step.kind === 'wal' ? 'WAL ' : step.kind === 'incomplete' ? 'incomplete ' : ''}${step.subject}: ${step.reason} (${step.keys.length} objects, ${formatBytes(step.bytes)})`);
  for (const note of plan.notes) lines.push(`  note    ${note}`);
  const total = plan.steps.reduce((sum, step) => sum + step.bytes, 0);
  if (plan.steps.length === 0) lines.push('Nothing to delete.');
  else lines.push(dryRun ? `Dry run: would delete ${formatBytes(total)}; nothing deleted.` : `Deleting ${formatBytes(total)} (each backup's manifest first).`);
  return `${lines.join('\n')}\n`;
}

/** The `backups list --json` document: each backup with its manifest's facts (objects counted, not listed) and its reach. */
export function listDocument(catalog: Catalog, window: RecoveryWindow): Record<string, unknown> {
  const { backups: reaches, ...summary } = window;
  return {
    repository: catalog.repository,
    backups: catalog.backups.map((b) => ({
      ...b.manifest,
      objects: b.manifest.objects.length,
      storedBytes: b.storedBytes,
      verifications: b.verifications,
      reach: reaches.find((r) => r.id === b.manifest.id) ?? null,
    })),
    incomplete: catalog.incomplete.map(({ id, startedAt, storedBytes, keys }) => ({ id, startedAt, storedBytes, objects: keys.length })),
    window: summary,
    problems: catalog.problems,
  };
}

function json(value: unknown): string {
  return `${JSON.stringify(toJsonValue(value), null, 2)}\n`;
}

/** Runs `pgwarden backups …` with the arguments after "backups"; `now` is for tests of ages. */
export async function backupsCommand(args: readonly string[], env: Readonly<Record<string, string | undefined>> = process.env, now: Date = new Date()): Promise<CommandOutput> {
  let parsed: BackupsArgs;
  let choice: RepositoryChoice;
  let policy: RetentionPolicy;
  try {
    parsed = parse(args);
    choice = await chooseRepository(parsed.values, parsed.tokens, env);
    policy = parsed.policy(choice.plan);
  } catch (error) {
    if (error instanceof UsageError) return { stdout: '', stderr: `pgwarden: backups: ${error.message}\n  usage: ${usage}\n`, exitCode: 2 };
    if (isUserError(error)) return { stdout: '', stderr: `pgwarden: backups: ${redact(error.message)}\n${error.hint === undefined ? '' : `  hint: ${error.hint}\n`}`, exitCode: 2 };
    throw error;
  }
  try {
    return await listOrExpire(parsed, choice, policy, now);
  } finally {
    choice.close();
  }
}

async function listOrExpire(parsed: BackupsArgs, choice: RepositoryChoice, policy: RetentionPolicy, now: Date): Promise<CommandOutput> {
  const { repository, keyring } = choice;
  const catalog = await readCatalog(repository, keyring === undefined ? {} : { keyring });
  const window = recoveryWindow(catalog);
  if (parsed.command === 'list') {
    if (parsed.json) return { stdout: json(listDocument(catalog, window)), stderr: '', exitCode: 0 };
    return { stdout: renderList(catalog, window, now), stderr: '', exitCode: 0 };
  }
  const plan = planRetention(catalog, policy, now, window);
  const printed = parsed.json ? json({ ...plan, dryRun: parsed.dryRun }) : renderPlan(plan, parsed.dryRun);
  if (parsed.dryRun) return { stdout: printed, stderr: '', exitCode: 0 };
  try {
    await applyRetention(repository, plan);
  } catch (error) {
    return { stdout: printed, stderr: `pgwarden: backups expire stopped partway: ${redact(messageOf(error))}\n  hint: fix the cause and run it again; the plan is recomputed from what is left\n`, exitCode: 1 };
  }
  return { stdout: parsed.json ? printed : `${printed}Done.\n`, stderr: '', exitCode: 0 };
}
