/**
 * Backing up, verifying and drilling from the console's Backups view (issue 5 item 11). Each job is
 * the command line a DBA would type — `pgwarden backup|verify|drill …` — run as a child process, so
 * the console runs exactly what the docs describe and a job survives nothing it should not: its plan
 * IS the command line (keys appear only as the files and variables that hold them), its stderr
 * lines are the progress, its exit status and stdout the result. One job at a time per cluster.
 *
 * Pure parts (plans, the job state machine, outcomes) are exported for tests; BackupJobRunner is
 * the impure desk the console shell uses. No React here.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { resolve } from 'node:path';
import { AuditLog, type AuditEntry, type AuditOutcome } from '../actions/audit.js';
import type { Danger } from '../actions/types.js';
import type { KeySource } from '../backup/keys.js';
import type { RepositoryConfig } from '../backup/repository/config.js';
import { resolveBackupPlan, type BackupPlan } from '../config/backups.js';
import { redact } from '../config/redact.js';
import type { Config, ConnectionSpec } from '../config/types.js';
import { messageOf } from '../errors.js';
import { formatDuration } from '../format/units.js';
import type { BackupEntry, BackupsView } from './backup-monitor.js';
import { clusterJobPlan, isClusterJob, previewSteps, type ClusterJobKind } from './cluster-jobs.js';

/** backup, verify and drill from the Backups view; switchover, failover and rejoin from the Replication view (src/app/cluster-jobs.ts). */
export type BackupJobKind = 'backup' | 'verify' | 'drill' | ClusterJobKind;

/** The keymap command that starts each kind of job. */
export const backupJobCommands = {
  backup: 'backup.now', verify: 'backup.verify', drill: 'backup.drill',
  switchover: 'cluster.switchover', failover: 'cluster.failover', rejoin: 'cluster.rejoin',
} as const;
export type BackupJobCommand = (typeof backupJobCommands)[BackupJobKind];

/** How many stderr lines a job keeps (the pane shows the last few). */
export const jobLineLimit = 200;
/** How much of stdout a job keeps (results are a few lines). */
const stdoutLimit = 64 * 1024;
/** How long close() waits for stopped jobs before SIGKILL. */
const stopGraceMs = 10_000;

/** The program the console itself was started with: `node bin/pgwarden.js`. */
export interface Launcher {
  readonly execPath: string;
  readonly script: string;
}

/** bin/pgwarden.js next to this build (dist/app/ or src/app/ → ../../bin). */
export const defaultLauncher: Launcher = {
  execPath: process.execPath,
  script: fileURLToPath(new URL('../../bin/pgwarden.js', import.meta.url)),
};

/** Everything a job plan depends on: how the console was started and what it shows now. */
export interface JobSource {
  readonly kind: BackupJobKind;
  /** The config file the console loaded (backups come only from a file), or undefined. */
  readonly configFile: string | undefined;
  /** The console was started with --dsn: the child gets the same server (password-free DSN) instead of --cluster. */
  readonly dsn: ConnectionSpec | undefined;
  readonly plan: BackupPlan | undefined;
  readonly cluster: string;
  readonly node: string;
  /** From the server probe; null while unknown. */
  readonly role: 'primary' | 'standby' | null;
  readonly readOnly: boolean;
  /** The backup selected in the view, if any. */
  readonly selected: BackupEntry | undefined;
  /** What the Backups view shows (for "the newest backup"). */
  readonly view: BackupsView | undefined;
  readonly launcher: Launcher;
}

/** A job's plan as the confirmation dialog shows it (PlanView-compatible), and what it runs. */
export interface BackupJobPlan {
  readonly id: string;
  readonly kind: BackupJobKind;
  readonly title: string;
  readonly target: string;
  readonly danger: Danger;
  readonly steps: readonly { readonly description: string; readonly command?: string; readonly detail?: readonly string[] }[];
  /** What to type to confirm (the high-danger cluster jobs), or null for y/n. */
  readonly confirmToken: string | null;
  readonly refused: string | null;
  readonly cluster: string;
  /** The arguments after the executable: [script, command, …]. Empty when refused. */
  readonly args: readonly string[];
  /** Extra environment of the child (PGPASSWORD in --dsn mode: never on the command line). */
  readonly env: Readonly<Record<string, string>>;
  /** The exact command line, shell-quoted, as shown. */
  readonly commandLine: string;
  /** The arguments of its dry run, whose output is the plan shown (cluster jobs); empty: none. */
  readonly previewArgs: readonly string[];
}

const titles: Readonly<Record<BackupJobKind, string>> = { backup: 'Back up now', verify: 'Verify a backup', drill: 'Restore drill', switchover: 'Switchover', failover: 'Failover', rejoin: 'Rejoin as a standby' };
const dangers: Readonly<Record<BackupJobKind, Danger>> = { backup: 'medium', verify: 'low', drill: 'medium', switchover: 'high', failover: 'high', rejoin: 'high' };

/** A new plan id (plans of every job kind share one sequence). */
export function nextJobPlanId(): string {
  planCounter += 1;
  return `job-${planCounter}`;
}

/** The title and danger of a kind of job. */
export function jobKindOf(kind: BackupJobKind): { readonly title: string; readonly danger: Danger } {
  return { title: titles[kind], danger: dangers[kind] };
}

/** A word quoted for a POSIX shell when it needs it, so the line shown can be pasted as is. */
export function shellQuote(word: string): string {
  if (word !== '' && /^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** The command line of an executable and its arguments. */
export function commandLineOf(execPath: string, args: readonly string[]): string {
  return [execPath, ...args].map(shellQuote).join(' ');
}

/** libpq key=value without the password (it goes to the child as PGPASSWORD). */
export function passwordFreeDsn(connection: ConnectionSpec): string {
  const value = (text: string): string => (text !== '' && /^[^\s'\\]+$/.test(text) ? text : `'${text.replace(/(['\\])/g, '\\$1')}'`);
  const pairs: [string, string][] = [
    ['host', connection.host], ['port', String(connection.port)], ['user', connection.user], ['dbname', connection.database], ['sslmode', connection.sslmode],
  ];
  if (connection.sslrootcert !== undefined) pairs.push(['sslrootcert', connection.sslrootcert]);
  return pairs.map(([key, text]) => `${key}=${value(text)}`).join(' ');
}

/** --key ID=FILE / --key-env ID=VAR: where the keys are, never what they are. */
export function keyArgs(keys: readonly KeySource[]): string[] {
  return keys.flatMap((key) => ('file' in key ? ['--key', `${key.id}=${key.file}`] : ['--key-env', `${key.id}=${key.env}`]));
}

function describeRepository(repository: RepositoryConfig): string {
  const spec = repository.spec;
  return spec.type === 'local' ? `${repository.name} (${spec.path})` : `${repository.name} (s3://${spec.bucket}${spec.prefix === '' ? '' : `/${spec.prefix}`})`;
}

/** The newest complete backup the view lists, over every repository. */
export function newestBackup(view: BackupsView | undefined): BackupEntry | undefined {
  if (view?.kind !== 'configured') return undefined;
  const entries = view.repositories.flatMap((state) => (state.status === 'ok' ? state.backups : state.status === 'error' ? (state.last?.backups ?? []) : []));
  return entries.reduce<BackupEntry | undefined>((best, entry) => (best === undefined || entry.finishedAt > best.finishedAt ? entry : best), undefined);
}

let planCounter = 0;

function refusedPlan(source: JobSource, target: string, reason: string): BackupJobPlan {
  return {
    id: nextJobPlanId(), kind: source.kind, title: titles[source.kind], target, danger: dangers[source.kind], steps: [], confirmToken: null,
    refused: reason, cluster: source.cluster, args: [], env: {}, commandLine: '', previewArgs: [],
  };
}

/** Why no job can run for this console and cluster, or null. */
function unavailable(source: JobSource): string | null {
  if (source.plan === undefined || source.configFile === undefined) {
    return `no backup plan for cluster ${source.cluster}: add a "backups" section to the config (docs/configuration.md#backups) and restart the console with --config FILE`;
  }
  if (source.readOnly && source.kind !== 'verify') {
    return source.kind === 'backup'
      ? '--read-only: a backup runs a checkpoint and pg_backup_start on the server (verify is allowed)'
      : '--read-only: a drill switches WAL and writes a restore point on the server (verify is allowed)';
  }
  return null;
}

/**
 * The repository options of `pgwarden verify|drill` (src/cli/repository-choice.ts): the config's
 * cluster and repository by name; with --dsn the console's cluster is not in the file, so a local
 * repository's directory and the keys' files or variables instead (undefined for S3).
 */
function repositoryArgs(source: JobSource, configFile: string, plan: BackupPlan, repository: RepositoryConfig): string[] | undefined {
  if (source.dsn === undefined) return ['--config', configFile, '--cluster', source.cluster, '--repo', repository.name];
  return repository.spec.type === 'local' ? ['--repo', repository.spec.path, ...keyArgs(plan.keys)] : undefined;
}

const dsnS3 = (repository: RepositoryConfig): string =>
  `repository ${repository.name} is on S3, which the command reaches only through --config: start the console with --config FILE (not --dsn)`;

function finish(source: JobSource, target: string, args: string[], description: string): BackupJobPlan {
  const full = [source.launcher.script, ...args];
  const commandLine = commandLineOf(source.launcher.execPath, full);
  const password = source.dsn?.password;
  return {
    id: nextJobPlanId(), kind: source.kind, title: titles[source.kind], target, danger: dangers[source.kind], confirmToken: null, refused: null,
    cluster: source.cluster, args: full, env: password === undefined ? {} : { PGPASSWORD: password }, commandLine, previewArgs: [],
    steps: [
      { command: commandLine, description },
      { description: 'Progress: its stderr lines in a pane under the list, with the elapsed time; the result as a toast, and the list is read again. Esc (or q) asks before stopping it.' },
    ],
  };
}

/**
 * The plan of a job: the exact command line and what it does, or why it cannot run. With the
 * console's --config, the commands take the same file and cluster (the keys come from its
 * backups.keys); with --dsn, the same server (password-free DSN) and a local repository's
 * directory with the keys' files or variables. Pure.
 */
export function backupJobPlan(source: JobSource): BackupJobPlan {
  const why = unavailable(source);
  const plan = source.plan;
  const configFile = source.configFile;
  if (why !== null || plan === undefined || configFile === undefined) return refusedPlan(source, `cluster ${source.cluster}`, why ?? 'no backup plan');
  const where = source.role === null ? source.node : `${source.role} ${source.node}`;

  if (source.kind === 'backup') {
    const [first, ...others] = plan.repositories;
    if (first === undefined) return refusedPlan(source, `cluster ${source.cluster}`, `cluster ${source.cluster} has no repository`);
    const target = `${source.cluster}/${where} → ${describeRepository(first)}${source.dsn === undefined && others.length > 0 ? `, copied to ${others.map((r) => r.name).join(', ')}` : ''}`;
    let args: string[];
    if (source.dsn === undefined) {
      args = ['backup', '--config', configFile, '--cluster', source.cluster, '--node', source.node, '--fast'];
    } else {
      if (first.spec.type !== 'local') return refusedPlan(source, target, dsnS3(first));
      args = ['backup', '--dsn', passwordFreeDsn(source.dsn), '--repo', first.spec.path, ...keyArgs(plan.keys), '--compression', plan.compression, '--fast'];
    }
    const checkpoint = source.role === 'standby'
      ? 'a fast restartpoint on the standby (a burst of I/O there; the primary is not touched)'
      : 'a fast checkpoint on the primary: a burst of I/O';
    const copies = source.dsn === undefined && others.length > 0 ? `, then copied to ${others.map(describeRepository).join(', ')}` : '';
    const description = `Full physical backup of ${source.cluster}/${where} with pg_basebackup into ${describeRepository(first)}${copies}: ${checkpoint}, then it reads the whole data directory (more I/O, one WAL sender) and stores it ${plan.compression}-compressed${plan.encrypted ? ', encrypted' : ''}. It counts only once its WAL is archived and its manifest stored.`;
    return finish(source, target, args, description);
  }

  if (source.kind === 'verify') {
    const entry = source.selected ?? newestBackup(source.view);
    if (entry === undefined) return refusedPlan(source, `cluster ${source.cluster}`, 'no complete backup listed yet: take one first (back up now)');
    const repository = plan.repositories.find((candidate) => candidate.name === entry.repository);
    const target = `backup ${entry.id} in ${repository === undefined ? entry.repository : describeRepository(repository)}${source.selected === undefined ? ' (the newest)' : ''}`;
    if (repository === undefined) return refusedPlan(source, target, `repository ${entry.repository} is no longer in the backup plan of ${source.cluster}`);
    const choice = repositoryArgs(source, configFile, plan, repository);
    if (choice === undefined) return refusedPlan(source, target, dsnS3(repository));
    const description = `Reads every object of backup ${entry.id} and the WAL from its start to its stop, checks their sizes and SHA-256 checksums${plan.encrypted ? ' (decrypting with the configured keys)' : ''}, records the result in the repository, and checks the recovery window for gaps. Reads the repository only: the server is not touched.`;
    return finish(source, target, ['verify', entry.id, ...choice], description);
  }

  const entry = source.selected;
  const repository = (entry === undefined ? undefined : plan.repositories.find((candidate) => candidate.name === entry.repository)) ?? plan.repositories[0];
  const target = `${source.cluster}: the newest backup of ${repository === undefined ? '?' : describeRepository(repository)}`;
  if (repository === undefined) return refusedPlan(source, target, `cluster ${source.cluster} has no repository`);
  const choice = repositoryArgs(source, configFile, plan, repository);
  if (choice === undefined) return refusedPlan(source, target, dsnS3(repository));
  const args = source.dsn === undefined ? ['drill', ...choice] : ['drill', ...choice, '--dsn', passwordFreeDsn(source.dsn)];
  const tables = plan.drill.tables.length === 0 ? 'no configured table' : plan.drill.tables.join(', ');
  const description = `Restores the newest backup of ${repository.name} into a scratch directory under ${plan.drill.targetDir} and starts it on a free port (disk for a full copy, CPU and I/O on this host); checks it (pg_amcheck, the row counts of ${tables}, the SQL checks), records the result in the repository and removes the copy. On the source: a WAL switch and a restore point.`;
  return finish(source, target, args, description);
}

// ---------------------------------------------------------------------------------------------
// The job state machine (pure).

export type JobStatus = 'running' | 'stopping' | 'finished';

export interface BackupJob {
  readonly planId: string;
  readonly kind: BackupJobKind;
  readonly title: string;
  readonly target: string;
  readonly cluster: string;
  readonly commandLine: string;
  readonly status: JobStatus;
  readonly pid: number | null;
  readonly startedAt: Date;
  readonly finishedAt: Date | null;
  /** Complete stderr lines, the last jobLineLimit. */
  readonly lines: readonly string[];
  /** A stderr line still being written. */
  readonly partial: string;
  readonly stdout: string;
  readonly exitCode: number | null;
  readonly signal: string | null;
  /** Why it could not even start. */
  readonly error: string | null;
  /** The user asked to stop it. */
  readonly stopRequested: boolean;
  /** How it ended (null while running) and in a few words. */
  readonly ok: boolean | null;
  readonly summary: string | null;
}

export type JobEvent =
  | { readonly type: 'spawned'; readonly pid: number }
  | { readonly type: 'stderr'; readonly text: string }
  | { readonly type: 'stdout'; readonly text: string }
  | { readonly type: 'stop' }
  | { readonly type: 'exit'; readonly code: number | null; readonly signal: string | null; readonly at: Date }
  | { readonly type: 'error'; readonly message: string; readonly at: Date };

/** A job that has just been started from a plan. */
export function newJob(plan: BackupJobPlan, at: Date): BackupJob {
  return {
    planId: plan.id, kind: plan.kind, title: plan.title, target: plan.target, cluster: plan.cluster, commandLine: plan.commandLine,
    status: 'running', pid: null, startedAt: at, finishedAt: null, lines: [], partial: '', stdout: '',
    exitCode: null, signal: null, error: null, stopRequested: false, ok: null, summary: null,
  };
}

function appendLines(lines: readonly string[], partial: string, text: string): { lines: readonly string[]; partial: string } {
  const pieces = (partial + text).split(/\r?\n/);
  const rest = pieces.pop() ?? '';
  // A progress line repeated as is (a wait) says nothing new: kept once.
  const added = pieces.filter((line, index) => line.trim() !== '' && line !== (index === 0 ? lines[lines.length - 1] : pieces[index - 1]));
  return { lines: added.length === 0 ? lines : [...lines, ...added].slice(-jobLineLimit), partial: rest };
}

/** The next state of a job. A finished job ignores everything. */
export function jobStep(job: BackupJob, event: JobEvent): BackupJob {
  if (job.status === 'finished') return job;
  switch (event.type) {
    case 'spawned':
      return { ...job, pid: event.pid };
    case 'stderr':
      return { ...job, ...appendLines(job.lines, job.partial, event.text) };
    case 'stdout':
      return job.stdout.length >= stdoutLimit ? job : { ...job, stdout: (job.stdout + event.text).slice(0, stdoutLimit) };
    case 'stop':
      return { ...job, status: 'stopping', stopRequested: true };
    case 'exit':
    case 'error': {
      const flushed = job.partial.trim() === '' ? job.lines : [...job.lines, job.partial].slice(-jobLineLimit);
      const ended: BackupJob = {
        ...job, status: 'finished', finishedAt: event.at, lines: flushed, partial: '',
        exitCode: event.type === 'exit' ? event.code : null,
        signal: event.type === 'exit' ? event.signal : null,
        error: event.type === 'error' ? event.message : null,
      };
      const outcome = jobOutcome(ended);
      return { ...ended, ok: outcome.ok, summary: outcome.summary };
    }
  }
}

/** The last "pgwarden: …" line of stderr (the failure), with its hint when one follows. */
export function failureLine(lines: readonly string[]): string | null {
  for (let index = lines.length - 1; index >= 0; index -= 1) {
    const line = lines[index] ?? '';
    if (!line.startsWith('pgwarden:')) continue;
    const hint = lines[index + 1]?.trim();
    const text = line.replace(/^pgwarden:\s*/, '');
    return hint?.startsWith('hint:') === true ? `${text} (${hint})` : text;
  }
  return null;
}

function stdoutLines(job: BackupJob): string[] {
  return job.stdout.split('\n').map((line) => line.trim()).filter((line) => line !== '');
}

/** How a finished job went, in a few words for a toast. */
export function jobOutcome(job: BackupJob): { readonly ok: boolean; readonly summary: string } {
  if (job.error !== null) return { ok: false, summary: `could not start it: ${job.error}` };
  const out = stdoutLines(job);
  const lastErr = failureLine(job.lines) ?? job.lines[job.lines.length - 1] ?? 'no message';
  if (job.signal !== null) {
    const why = job.stopRequested ? `stopped on request (${job.signal})` : `killed by ${job.signal}`;
    return { ok: false, summary: job.kind === 'backup' ? `${why}; a backup stopped before its manifest is stored never counts` : why };
  }
  if (job.exitCode === 0) {
    if (isClusterJob(job.kind)) return { ok: true, summary: out[out.length - 1] ?? 'done' };
    if (job.kind === 'backup') return { ok: true, summary: `backup ${out[0] ?? '?'} stored` };
    // verify: "backup X: ok (…)" first, then the recovery window; drill: its verdict last.
    return { ok: true, summary: (job.kind === 'verify' ? out[0] : out[out.length - 1]) ?? 'done' };
  }
  if (job.exitCode === 1 && job.kind === 'verify') {
    const problems = out.filter((line) => !/^backup \S+: ok \(/.test(line) && !line.startsWith('recovery window: ok'));
    return { ok: false, summary: `${problems.length} problem(s): ${problems[0] ?? lastErr}` };
  }
  if (job.exitCode === 1 && job.kind === 'drill') return { ok: false, summary: `drill failed: ${out[0] ?? lastErr}` };
  return { ok: false, summary: `exit ${job.exitCode ?? '?'}: ${lastErr}` };
}

/** "0:42" style elapsed time of a job, up to now or its end. */
export function jobElapsed(job: BackupJob, now: Date): string {
  const end = job.finishedAt ?? now;
  return formatDuration(Math.max(0, Math.round((end.getTime() - job.startedAt.getTime()) / 1000)));
}

/** The confirmation shown before stopping a running job (PlanView-compatible). */
export function stopPlanView(job: BackupJob, quit: boolean, now: Date): BackupJobPlan {
  const consequences: Readonly<Record<BackupJobKind, string>> = {
    backup: 'The backup stops; the parts it stored stay without a manifest (listed as incomplete, never counted as a backup).',
    drill: 'The drill stops its scratch server, removes its directory and records itself as failed (interrupted).',
    verify: 'The verification stops; nothing is recorded.',
    switchover: 'pgwarden stops the current step, resumes PgBouncer and says which node is the primary now (docs/failover.md).',
    failover: 'pgwarden stops the current step, resumes PgBouncer and says which node is the primary now (docs/failover.md).',
    rejoin: 'pgwarden stops the current step; the node stays stopped (docs/failover.md, "Fencing and rejoining").',
  };
  const consequence = consequences[job.kind];
  return {
    id: `stop-${job.planId}`, kind: job.kind, title: quit ? `Quit: a ${job.kind} job is running` : `Stop the running ${job.kind} job?`,
    target: `${job.target}, running for ${jobElapsed(job, now)}${job.pid === null ? '' : ` (pid ${job.pid})`}`,
    danger: 'medium', confirmToken: null, refused: null, cluster: job.cluster, args: [], env: {}, commandLine: job.commandLine, previewArgs: [],
    steps: [
      { description: `SIGTERM to the job's process group (pgwarden and what it runs). ${consequence}${quit ? ' Then the console quits.' : ''}` },
      { description: quit ? 'n or esc: keep the console (and the job) running.' : 'n or esc: let it run.' },
    ],
  };
}

// ---------------------------------------------------------------------------------------------
// The desk: plans, runs and stops jobs for the console shell.

/** What the console shows now, for planning. */
export interface JobContext {
  readonly kind: BackupJobKind;
  readonly cluster: string;
  readonly node: string;
  /** The node's password-free label (for the audit log). */
  readonly label: string;
  readonly role: 'primary' | 'standby' | null;
  readonly selected: BackupEntry | undefined;
  readonly view: BackupsView | undefined;
  /** The standby selected in the Replication view (a switchover's target). */
  readonly standby?: string | undefined;
}

/** Called whenever a job changes; `finished` is the job that has just ended, if one has. */
export type JobListener = (jobs: ReadonlyMap<string, BackupJob>, finished: BackupJob | null) => void;

export interface BackupJobDesk {
  /** The latest job of each cluster (running or finished), by cluster name. */
  jobs(): ReadonlyMap<string, BackupJob>;
  /** The jobs still running. */
  running(): readonly BackupJob[];
  plan(context: JobContext): BackupJobPlan;
  /** A cluster job's plan with what its dry run prints as the steps (refused when the dry run refuses). */
  preview(planId: string): Promise<BackupJobPlan>;
  /** Starts a confirmed plan; returns why it did not (a job of that cluster is running), or null. */
  start(planId: string): string | null;
  /** The user said no: audited, and forgotten. */
  decline(planId: string): void;
  /** Asks the job of a cluster to stop (SIGTERM to its process group). */
  stop(cluster: string): void;
  subscribe(listener: JobListener): () => void;
  /** Stops every running job and waits for it; returns what was stopped, for the terminal. */
  close(): Promise<readonly string[]>;
}

export interface BackupJobsOptions {
  readonly config: Pick<Config, 'source' | 'backups' | 'clusters'>;
  readonly readOnly: boolean;
  /** The console was started with --dsn (the child then gets the same server, not a config cluster). */
  readonly dsn?: boolean | undefined;
  readonly auditPath?: string | undefined;
  readonly launcher?: Launcher;
  readonly now?: () => Date;
}

interface Running {
  readonly child: ChildProcess;
  readonly done: Promise<void>;
  readonly label: string;
  readonly plan: BackupJobPlan;
}

/** A job already running on this cluster, said for a toast, or null. */
export function busyMessage(job: BackupJob | undefined, now: Date): string | null {
  if (job === undefined || job.status === 'finished') return null;
  return `a ${job.kind} job is running on ${job.cluster} (${jobElapsed(job, now)}): one at a time; wait for it, or Esc to stop it`;
}

export class BackupJobRunner implements BackupJobDesk {
  private readonly listeners = new Set<JobListener>();
  private readonly latest = new Map<string, BackupJob>();
  private readonly children = new Map<string, Running>();
  private readonly plans = new Map<string, { plan: BackupJobPlan; label: string }>();
  private readonly audit: AuditLog;
  /** Audit entries being appended. */
  private readonly writes = new Set<Promise<void>>();
  private readonly launcher: Launcher;
  private readonly now: () => Date;
  private readonly secrets: readonly string[];
  private exitHook: (() => void) | undefined;

  constructor(private readonly options: BackupJobsOptions) {
    this.audit = new AuditLog(options.auditPath === undefined ? {} : { path: options.auditPath });
    this.launcher = options.launcher ?? defaultLauncher;
    this.now = options.now ?? (() => new Date());
    this.secrets = options.config.clusters.flatMap((cluster) => cluster.nodes.flatMap((node) => (node.connection.password === undefined ? [] : [node.connection.password])));
  }

  jobs(): ReadonlyMap<string, BackupJob> {
    return this.latest;
  }

  running(): readonly BackupJob[] {
    return [...this.latest.values()].filter((job) => job.status !== 'finished');
  }

  plan(context: JobContext): BackupJobPlan {
    const config = this.options.config;
    if (isClusterJob(context.kind)) {
      const made = clusterJobPlan({
        kind: context.kind, configFile: this.options.dsn === true ? undefined : resolve(config.source),
        cluster: config.clusters.find((candidate) => candidate.name === context.cluster), clusterName: context.cluster,
        node: context.node, standby: context.standby, readOnly: this.options.readOnly, launcher: this.launcher,
      });
      this.plans.set(made.id, { plan: made, label: context.label });
      return made;
    }
    const cluster = config.clusters.find((candidate) => candidate.name === context.cluster);
    const node = cluster?.nodes.find((candidate) => candidate.name === context.node);
    const plan = resolveBackupPlan(config, context.cluster);
    const made = backupJobPlan({
      kind: context.kind,
      // A plan exists only when the backups came from a config file: config.source is its path.
      configFile: plan === undefined ? undefined : resolve(config.source),
      dsn: this.options.dsn === true ? node?.connection : undefined,
      plan,
      cluster: context.cluster,
      node: context.node,
      role: context.role,
      readOnly: this.options.readOnly,
      selected: context.selected,
      view: context.view,
      launcher: this.launcher,
    });
    this.plans.set(made.id, { plan: made, label: context.label });
    return made;
  }

  async preview(planId: string): Promise<BackupJobPlan> {
    const known = this.plans.get(planId);
    if (known === undefined) throw new Error('this plan is no longer known');
    const { plan, label } = known;
    if (plan.refused !== null || plan.previewArgs.length === 0) return plan;
    const result = await runPreview(this.launcher.execPath, plan.previewArgs, plan.env);
    const previewed = previewSteps(plan, { code: result.code, stdout: redact(result.stdout, this.secrets), stderr: redact(result.stderr, this.secrets) });
    this.plans.set(planId, { plan: previewed, label });
    return previewed;
  }

  start(planId: string): string | null {
    const known = this.plans.get(planId);
    if (known === undefined) return 'this plan is no longer known';
    const { plan, label } = known;
    if (plan.refused !== null) return plan.refused;
    const busy = busyMessage(this.latest.get(plan.cluster), this.now());
    if (busy !== null) return busy;
    this.plans.delete(planId);
    const [script, ...rest] = plan.args;
    if (script === undefined) return 'nothing to run';
    this.latest.set(plan.cluster, newJob(plan, this.now()));
    // Its own process group, so that stopping it also stops what it runs (pg_basebackup).
    const child = spawn(this.launcher.execPath, [script, ...rest], { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...plan.env } });
    const done = new Promise<void>((resolveDone) => {
      child.once('close', (code, signal) => {
        this.step(plan.cluster, { type: 'exit', code, signal, at: this.now() });
        resolveDone();
      });
      child.once('error', (error) => {
        // A child that never started emits no close of its own on every Node version.
        if (child.pid === undefined) {
          this.step(plan.cluster, { type: 'error', message: messageOf(error), at: this.now() });
          resolveDone();
        }
      });
    });
    this.children.set(plan.cluster, { child, done, label, plan });
    this.installExitHook();
    if (child.pid !== undefined) this.step(plan.cluster, { type: 'spawned', pid: child.pid });
    child.stderr?.setEncoding('utf8');
    child.stdout?.setEncoding('utf8');
    child.stderr?.on('data', (text: string) => this.step(plan.cluster, { type: 'stderr', text: redact(text, this.secrets) }));
    child.stdout?.on('data', (text: string) => this.step(plan.cluster, { type: 'stdout', text: redact(text, this.secrets) }));
    return null;
  }

  decline(planId: string): void {
    const known = this.plans.get(planId);
    if (known === undefined) return;
    this.plans.delete(planId);
    void this.record(known.plan, known.label, 'cancelled', 'cancelled at the confirmation; nothing was run');
  }

  stop(cluster: string): void {
    const running = this.children.get(cluster);
    const job = this.latest.get(cluster);
    if (running === undefined || job === undefined || job.status === 'finished') return;
    this.step(cluster, { type: 'stop' });
    killGroup(running.child, 'SIGTERM');
  }

  subscribe(listener: JobListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  async close(): Promise<readonly string[]> {
    const stopped: string[] = [];
    for (const [cluster, running] of this.children) {
      const job = this.latest.get(cluster);
      if (job === undefined || job.status === 'finished') continue;
      stopped.push(`stopped the running ${job.kind} job on ${cluster} (pid ${job.pid ?? '?'}, ${jobElapsed(job, this.now())}): ${job.commandLine}`);
      this.stop(cluster);
      const timer = setTimeout(() => killGroup(running.child, 'SIGKILL'), stopGraceMs);
      await running.done;
      clearTimeout(timer);
    }
    this.listeners.clear();
    await Promise.all([...this.writes]);
    return stopped;
  }

  private step(cluster: string, event: JobEvent): void {
    const before = this.latest.get(cluster);
    if (before === undefined) return;
    const after = jobStep(before, event);
    if (after === before) return;
    this.latest.set(cluster, after);
    const finished = before.status !== 'finished' && after.status === 'finished' ? after : null;
    if (finished !== null) {
      const running = this.children.get(cluster);
      this.children.delete(cluster);
      if (this.children.size === 0) this.removeExitHook();
      if (running !== undefined) {
        const outcome: AuditOutcome = finished.ok === true ? 'ok' : 'failed';
        void this.record(running.plan, running.label, outcome, `${finished.summary ?? ''} (exit ${finished.exitCode ?? finished.signal ?? 'none'}, ${jobElapsed(finished, this.now())})`);
      }
    }
    for (const listener of this.listeners) {
      try {
        listener(this.latest, finished);
      } catch {
        // A listener's failure must not stop the job's bookkeeping.
      }
    }
  }

  private record(plan: BackupJobPlan, label: string, outcome: AuditOutcome, message: string): Promise<void> {
    const entry: BackupAuditEntry = {
      time: this.now().toISOString(),
      ...this.audit.who(),
      target: label,
      action: backupJobCommands[plan.kind],
      plan_id: plan.id,
      plan_target: plan.target,
      // The command line stands where an action's SQL would: exactly what ran.
      sql: plan.commandLine === '' ? [] : [plan.commandLine],
      outcome,
      message,
    };
    const write = appendBackupEntry(this.audit, entry, this.secrets).catch(() => undefined);
    // close() waits for these: a quit right after a decision must not lose its audit entry.
    this.writes.add(write);
    void write.finally(() => this.writes.delete(write));
    return write;
  }

  // A console that dies (crash, kill) must not leave a backup running with nobody reading it.
  private installExitHook(): void {
    if (this.exitHook !== undefined) return;
    this.exitHook = () => {
      for (const running of this.children.values()) killGroup(running.child, 'SIGTERM');
    };
    process.on('exit', this.exitHook);
  }

  private removeExitHook(): void {
    if (this.exitHook === undefined) return;
    process.off('exit', this.exitHook);
    this.exitHook = undefined;
  }
}

/** An audit entry of a backup job: the action is the keymap command that started it. */
type BackupAuditEntry = Omit<AuditEntry, 'action'> & { readonly action: BackupJobCommand };

/**
 * AuditEntry.action names the database actions only (src/actions/types.ts ActionId); backup jobs
 * are audited in the same log under their own command ids. The entry is otherwise an AuditEntry.
 */
function appendBackupEntry(audit: AuditLog, entry: BackupAuditEntry, secrets: readonly string[]): Promise<void> {
  return audit.append(entry as unknown as AuditEntry, secrets);
}

/** A dry run: its output, within a minute (its own process group, killed after that). */
function runPreview(execPath: string, args: readonly string[], env: Readonly<Record<string, string>>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const child = spawn(execPath, [...args], { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (text: string) => (stdout = (stdout + text).slice(0, stdoutLimit)));
    child.stderr?.setEncoding('utf8').on('data', (text: string) => (stderr = (stderr + text).slice(-stdoutLimit)));
    const timer = setTimeout(() => killGroup(child, 'SIGKILL'), 60_000);
    child.once('close', (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
    child.once('error', (error) => {
      clearTimeout(timer);
      done({ code: null, stdout, stderr: `${stderr}pgwarden: ${messageOf(error)}\n` });
    });
  });
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // Already gone.
  }
}

/** The desk over real child processes. */
export function createBackupJobs(options: BackupJobsOptions): BackupJobDesk {
  return new BackupJobRunner(options);
}
