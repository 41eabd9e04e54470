/**
 * The backup side of `pgwarden --watch` (issue 5 item 7; docs/watch.md "Backups"): for every
 * cluster with backup settings, the scheduled jobs and the backups check.
 *
 * Jobs: a full backup, logical dumps and a restore drill on their cron schedules (defaults: full
 * daily, logical hourly, drill daily), and retention (`backups expire` and `logical expire` on
 * every repository) after each good full backup or dump. Each job is the CLI run as a child process with the watcher's own config
 * file (`pgwarden backup --config FILE --cluster NAME`…): the watcher stays responsive, a job that
 * crashes takes nothing else down, and what a job does is exactly what a DBA runs by hand. One job
 * at a time per cluster; a job whose time came while another ran (or while the watcher was down)
 * runs next. A cluster whose repository holds no restorable backup gets a full backup at once.
 * Each job's progress lines and its end are NDJSON events (`backup_job`); its last result is kept
 * in `<stateDir>/backup-jobs.json` so that a restart neither repeats nor forgets a job.
 *
 * The check: every `catalogIntervalMs` and after each job, the catalog of the cluster's first
 * repository is read and backupFindings() evaluated as a cluster-wide evaluation (node "*").
 *
 * Streaming: the clusters whose plan enables it get a WalReceiver, reconciled with the config at
 * every step, so that a reload (SIGHUP) starts, stops and restarts receivers as the file now says
 * (one `wal_streaming` event and log line per change).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import type { Evaluation } from '../alerts/types.js';
import { writeFileAtomic } from '../atomic-file.js';
import { readCatalog } from '../backup/catalog.js';
import { previousRun } from '../backup/cron.js';
import { loadKeyring } from '../backup/keys.js';
import { openRepository } from '../backup/repository/index.js';
import { defaultSlotName, WalReceiver, type WalReceiverState } from '../backup/wal/receive.js';
import { parseWalFileName } from '../backup/wal/segment.js';
import { recoveryWindow, windowProblems } from '../backup/window.js';
import { backupFindings, type BackupStatus } from '../checks/backups.js';
import { clusterWideNode } from '../checks/primary.js';
import { resolveBackupPlan, type BackupPlan } from '../config/backups.js';
import { redact } from '../config/redact.js';
import type { Config, NodeConfig } from '../config/types.js';
import { messageOf } from '../errors.js';

export type JobKind = 'full' | 'logical' | 'drill' | 'expire';

/** The last run of one job of one cluster. */
export interface JobRecord {
  readonly startedAt: string;
  readonly finishedAt: string | null;
  /** null while it runs, and when the watcher's own stop interrupted it (finishedAt set). */
  readonly ok: boolean | null;
  readonly exitCode: number | null;
  /** The last line the job printed (stdout on success, stderr on failure), redacted. */
  readonly summary: string;
}

type JobState = Record<string, Partial<Record<JobKind, JobRecord>>>;

export interface BackupJobsOptions {
  /** How to run pgwarden: [node, bin/pgwarden.js]. */
  readonly pgwarden: readonly string[];
  readonly stateDir: string;
  /** How often each cluster's catalog is read for the backups check (default 5 min). */
  readonly catalogIntervalMs?: number;
  readonly log: (line: string) => void;
  /** One NDJSON event. */
  readonly emit: (event: object) => void;
  readonly onEvaluation: (evaluation: Evaluation) => void;
  readonly now?: () => Date;
  readonly env?: Readonly<Record<string, string | undefined>>;
}

interface Running {
  readonly kind: JobKind;
  /** The process of the step in flight (retention runs one per repository). */
  child: ChildProcess | undefined;
  done: Promise<void>;
}

interface ClusterJobs {
  running: Running | undefined;
  /** Jobs to run after the one in flight (retention after a full backup). */
  readonly queue: JobKind[];
  lastCatalogAt: number | undefined;
  reading: Promise<void> | undefined;
  /** Whether the catalog held a restorable backup at the last read (undefined: not read yet). */
  restorable: boolean | undefined;
}

/** What a receiver is built from; a change to any of them restarts it. */
type StreamingPart = 'connection' | 'slot' | 'spool dir' | 'repositories' | 'keys' | 'compression';

/** The receiver one cluster should have according to the config. */
export interface StreamingTarget {
  /** The config it was read from: the watcher passes a new object only when a reload took one. */
  readonly config: Config;
  readonly node: NodeConfig;
  readonly plan: BackupPlan;
  readonly slot: string;
  readonly spoolDir: string;
  /** As `pgwarden wal push --config` compresses (src/cli/wal.ts): the same objects whichever path stored them. */
  readonly compression: 'gzip' | 'auto';
  /**
   * Per part, what it depends on: a hash where the value may hold a secret (the connection's
   * password, the repositories' settings, the key sources); names where it cannot (slot, spool dir,
   * compression), so that the reason of a restart can show the old and new values.
   */
  readonly parts: Readonly<Record<StreamingPart, string>>;
}

/** A cluster's receiver as started. */
interface Streaming {
  readonly target: StreamingTarget;
  /** undefined: it could not even be built (a key that cannot be read, a repository that cannot be opened). */
  readonly receiver: WalReceiver | undefined;
  /** Closes the repositories it pushes to. */
  readonly close: () => void;
  /** Why it did not start; such a receiver is retried at the next reload, not at every step. */
  failure: string | undefined;
}

/** The `change` of a `wal_streaming` event. */
export type StreamingChange = 'started' | 'stopped' | 'restarted';

const stateFile = 'backup-jobs.json';
const scheduledKinds: readonly Exclude<JobKind, 'expire'>[] = ['full', 'logical', 'drill'];
/** At most one progress event per job and interval (a backup prints a line every 2 s). */
const progressEveryMs = 1000;

/** The command lines (after pgwarden) a job runs, in order; retention runs per repository, for backups and dumps. */
export function jobCommands(kind: JobKind, configFile: string, cluster: string, repositories: readonly string[]): string[][] {
  const common = ['--config', configFile, '--cluster', cluster];
  switch (kind) {
    case 'full':
      return [['backup', ...common]];
    case 'logical':
      return [['logical', 'backup', ...common]];
    case 'drill':
      return [['drill', ...common]];
    case 'expire':
      return repositories.flatMap((repository) => [
        ['backups', 'expire', ...common, '--repo', repository],
        ['logical', 'expire', ...common, '--repo', repository],
      ]);
  }
}

/** Whether a scheduled job is due: its last cron time is after its last start (or after `since` when it never ran). */
export function jobDue(expression: string | null, timeZone: string, lastStart: Date | undefined, since: Date, now: Date): boolean {
  if (expression === null) return false;
  const previous = previousRun(expression, now, timeZone);
  if (previous === undefined) return false;
  return previous.getTime() > (lastStart ?? since).getTime();
}

function hash(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 16);
}

/** The receiver the config asks for, or why there is none. */
export function streamingTarget(config: Config, cluster: string, stateDir: string): StreamingTarget | { readonly off: string } {
  const entry = config.clusters.find((candidate) => candidate.name === cluster);
  if (entry === undefined) return { off: 'the cluster is no longer in the config' };
  const plan = resolveBackupPlan(config, cluster);
  if (plan === undefined) return { off: 'no backups settings cover the cluster any more' };
  if (!plan.streaming.enabled) return { off: 'streaming.enabled is off' };
  if (plan.repositories.length === 0) return { off: 'the cluster has no repository' };
  const node = entry.nodes[0];
  if (node === undefined) return { off: 'the cluster has no node' };
  const slot = plan.streaming.slot ?? defaultSlotName(cluster);
  const spoolDir = plan.streaming.spoolDir ?? join(stateDir, 'wal-spool', cluster);
  const compression = plan.compression === 'gzip' ? 'gzip' : 'auto';
  return {
    config, node, plan, slot, spoolDir, compression,
    parts: {
      connection: hash(node.connection),
      slot,
      'spool dir': spoolDir,
      repositories: hash(plan.repositories),
      keys: hash(plan.keys),
      compression,
    },
  };
}

/** Why a receiver must restart: each part that changed, old → new where that is no secret; empty when none did. */
export function streamingDifferences(before: StreamingTarget, after: StreamingTarget): string[] {
  const shown: ReadonlySet<StreamingPart> = new Set(['slot', 'spool dir', 'compression']);
  return (Object.keys(after.parts) as StreamingPart[])
    .filter((part) => before.parts[part] !== after.parts[part])
    .map((part) => (shown.has(part) ? `${part} ${before.parts[part]} → ${after.parts[part]}` : `${part} changed`));
}

export class BackupJobs {
  private readonly clusters = new Map<string, ClusterJobs>();
  /** pg_receivewal streaming of the clusters that enable it, and the repositories it pushes to. */
  private readonly streams = new Map<string, Streaming>();
  /** A start, stop or restart in flight, by cluster: the next change of that cluster waits for its end. */
  private readonly streamChanges = new Map<string, Promise<void>>();
  /** Whether a step reconciled the receivers yet: the first start is the configured one, later ones come from a reload. */
  private streamingReconciled = false;
  private state: JobState = {};
  private readonly since: Date;
  private readonly now: () => Date;
  private stopped = false;

  constructor(private readonly options: BackupJobsOptions) {
    this.now = options.now ?? (() => new Date());
    this.since = this.now();
  }

  /** Reads the job records of an earlier run. */
  async load(): Promise<void> {
    try {
      this.state = JSON.parse(await readFile(join(this.options.stateDir, stateFile), 'utf8')) as JobState;
    } catch {
      this.state = {};
    }
  }

  /** The last runs, by cluster and job (for tests and the console). */
  records(): JobState {
    return this.state;
  }

  /** Starts the catalog reads and the jobs that are due, and brings the WAL receivers in line with the config. */
  startDue(config: Config, now: Date): void {
    if (this.stopped) return;
    this.reconcileStreaming(config);
    for (const cluster of config.clusters) {
      const plan = resolveBackupPlan(config, cluster.name);
      if (plan === undefined || plan.repositories.length === 0) continue;
      const jobs = this.clusters.get(cluster.name) ?? { running: undefined, queue: [], lastCatalogAt: undefined, reading: undefined, restorable: undefined };
      this.clusters.set(cluster.name, jobs);
      if (jobs.reading === undefined && (jobs.lastCatalogAt === undefined || now.getTime() - jobs.lastCatalogAt >= (this.options.catalogIntervalMs ?? 300_000))) {
        jobs.lastCatalogAt = now.getTime();
        jobs.reading = this.evaluate(plan, now).finally(() => {
          jobs.reading = undefined;
        });
      }
      if (jobs.running !== undefined) continue;
      const next = jobs.queue.shift() ?? this.dueKind(plan, jobs, now);
      // Backup settings come only from a config file: config.source is its path.
      if (next !== undefined) this.run(resolve(config.source), plan, jobs, next);
    }
  }

  private dueKind(plan: BackupPlan, jobs: ClusterJobs, now: Date): JobKind | undefined {
    const records = this.state[plan.cluster] ?? {};
    // No restorable backup at all: the first full backup does not wait for its schedule.
    if (jobs.restorable === false && records.full === undefined && plan.schedule.full !== null) return 'full';
    for (const kind of scheduledKinds) {
      const started = records[kind]?.startedAt;
      if (jobDue(plan.schedule[kind], plan.schedule.timeZone, started === undefined ? undefined : new Date(started), this.since, now)) return kind;
    }
    return undefined;
  }

  private run(configFile: string, plan: BackupPlan, jobs: ClusterJobs, kind: JobKind): void {
    const started = this.now();
    const commands = jobCommands(kind, configFile, plan.cluster, plan.repositories.map((repository) => repository.name));
    const label = `${plan.cluster}: ${kind === 'full' ? 'full backup' : kind === 'logical' ? 'logical backups' : kind === 'drill' ? 'restore drill' : 'retention'}`;
    this.setRecord(plan.cluster, kind, { startedAt: started.toISOString(), finishedAt: null, ok: null, exitCode: null, summary: '' });
    this.options.emit({ type: 'backup_job', cluster: plan.cluster, job: kind, state: 'started', at: started.toISOString() });
    this.options.log(`${label} started`);
    const running: Running = { kind, child: undefined, done: Promise.resolve() };
    jobs.running = running;
    running.done = (async () => {
      let exitCode = 0;
      let summary = '';
      for (const command of commands) {
        const args = [...this.options.pgwarden.slice(1), ...command];
        const outcome = await this.child(this.options.pgwarden[0] ?? process.execPath, args, plan.cluster, kind, (spawned) => {
          running.child = spawned;
        });
        summary = outcome.summary;
        if (outcome.exitCode !== 0) {
          exitCode = outcome.exitCode;
          break;
        }
      }
      const finished = this.now();
      const ok = exitCode === 0;
      // Stopped by the watcher's own stop (SIGTERM to the job): not a failure of the job; ok stays null.
      const interrupted = !ok && this.stopped;
      this.setRecord(plan.cluster, kind, { startedAt: started.toISOString(), finishedAt: finished.toISOString(), ok: interrupted ? null : ok, exitCode, summary });
      // The state file first: whoever sees the event finds the job's record there.
      await this.save();
      this.options.emit({ type: 'backup_job', cluster: plan.cluster, job: kind, state: ok ? 'succeeded' : interrupted ? 'interrupted' : 'failed', exit_code: exitCode, duration_ms: finished.getTime() - started.getTime(), summary });
      this.options.log(`${label} ${ok ? 'succeeded' : interrupted ? `interrupted by the watcher's stop (exit ${exitCode})` : `FAILED (exit ${exitCode})`} in ${((finished.getTime() - started.getTime()) / 1000).toFixed(1)} s${summary === '' ? '' : `: ${summary}`}`);
      if (ok && (kind === 'full' || kind === 'logical') && !jobs.queue.includes('expire')) jobs.queue.push('expire');
      // The check sees the job's result and the new catalog at the next tick.
      jobs.lastCatalogAt = undefined;
    })().catch((error: unknown) => this.options.log(`${label}: ${redact(messageOf(error))}`)).finally(() => {
      jobs.running = undefined;
    });
  }

  /** Runs one job process; its stderr lines become progress events. */
  private child(program: string, args: readonly string[], cluster: string, kind: JobKind, started: (child: ChildProcess) => void): Promise<{ exitCode: number; summary: string }> {
    return new Promise((resolve) => {
      const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...this.options.env } });
      started(child);
      let lastOut = '';
      let lastErr = '';
      let lastEventAt = 0;
      let held: string | undefined;
      const flush = (): void => {
        if (held === undefined) return;
        this.options.emit({ type: 'backup_job', cluster, job: kind, state: 'progress', line: held });
        held = undefined;
        lastEventAt = Date.now();
      };
      createInterface({ input: child.stdout }).on('line', (line) => {
        if (line.trim() !== '') lastOut = redact(line);
      });
      createInterface({ input: child.stderr }).on('line', (line) => {
        if (line.trim() === '') return;
        // The failure is the last "pgwarden: …" line with its hint, not the hint alone.
        if (line.startsWith('pgwarden:')) lastErr = redact(line);
        else if (/^\s+hint:/.test(line) && lastErr !== '') lastErr = `${lastErr} (${redact(line.trim())})`;
        else if (lastErr === '' || !lastErr.startsWith('pgwarden:')) lastErr = redact(line);
        held = redact(line);
        if (Date.now() - lastEventAt >= progressEveryMs) flush();
      });
      child.once('error', (error) => resolve({ exitCode: 127, summary: messageOf(error) }));
      child.once('close', (code, signal) => {
        flush();
        const exitCode = code ?? (signal === null ? 1 : 128);
        resolve({ exitCode, summary: exitCode === 0 ? lastOut : lastErr || `killed by ${signal ?? 'a signal'}` });
      });
    });
  }

  private setRecord(cluster: string, kind: JobKind, record: JobRecord): void {
    this.state = { ...this.state, [cluster]: { ...this.state[cluster], [kind]: record } };
  }

  private async save(): Promise<void> {
    try {
      await writeFileAtomic(this.options.stateDir, stateFile, `${JSON.stringify(this.state, null, 2)}\n`);
    } catch (error) {
      this.options.log(`cannot save ${join(this.options.stateDir, stateFile)}: ${messageOf(error)}`);
    }
  }

  /** Reads the catalog of the cluster's first repository and evaluates the backups check. */
  private async evaluate(plan: BackupPlan, now: Date): Promise<void> {
    const jobs = this.clusters.get(plan.cluster);
    const first = plan.repositories[0];
    if (first === undefined || jobs === undefined) return;
    const records = this.state[plan.cluster] ?? {};
    const failedJobs = (Object.entries(records) as [JobKind, JobRecord][])
      .filter(([, record]) => record.ok === false)
      .map(([job, record]) => ({ job, at: record.finishedAt ?? record.startedAt, message: record.summary }));
    let status: BackupStatus;
    const repository = openRepository(first.spec, this.options.env ?? process.env, first.name);
    try {
      const keyring = plan.keys.length === 0 ? undefined : loadKeyring(plan.keys, this.options.env ?? process.env);
      const catalog = await readCatalog(repository, keyring === undefined ? {} : { keyring });
      const window = recoveryWindow(catalog);
      const restorable = window.backups.filter((backup) => backup.restorable);
      const newest = restorable[restorable.length - 1];
      const newestBackup = newest === undefined ? undefined : catalog.backups.find((backup) => backup.manifest.id === newest.id);
      const verification = newestBackup?.verifications[newestBackup.verifications.length - 1];
      jobs.restorable = newest !== undefined;
      status = {
        repository: repository.description,
        readError: null,
        lastGood: newestBackup === undefined ? null : { id: newestBackup.manifest.id, at: newestBackup.manifest.stoppedAt },
        lastVerification: verification === undefined || newestBackup === undefined ? null : { id: newestBackup.manifest.id, at: verification.at, ok: verification.ok, problems: verification.problems },
        windowProblems: catalog.backups.length === 0 ? [] : windowProblems(window),
        // A failed drill job is reported as such (failedJobs); the drill records in the repository are shown by the console.
        lastDrill: null,
        failedJobs,
      };
    } catch (error) {
      status = { repository: repository.description, readError: redact(messageOf(error)), lastGood: null, lastVerification: null, windowProblems: [], lastDrill: null, failedJobs };
    } finally {
      repository.close();
    }
    this.options.onEvaluation({ cluster: plan.cluster, node: clusterWideNode, checks: ['backups'], findings: backupFindings(plan, status, now) });
  }

  /**
   * Starts the receivers the config asks for and has none, stops those it no longer asks for, and
   * restarts those whose connection, slot, spool dir, repositories, keys or compression changed.
   * A receiver that did not start is retried when the config is reloaded (a new Config object),
   * not at every step: it says once why, and the DBA fixes the cause and reloads.
   */
  private reconcileStreaming(config: Config): void {
    const startUp = !this.streamingReconciled;
    this.streamingReconciled = true;
    const names = new Set([...config.clusters.map((cluster) => cluster.name), ...this.streams.keys()]);
    for (const cluster of names) {
      // One change at a time per cluster: the spool dir and the slot belong to one receiver at a time.
      if (this.streamChanges.has(cluster)) continue;
      const current = this.streams.get(cluster);
      const wanted = streamingTarget(config, cluster, this.options.stateDir);
      let change: Promise<void> | undefined;
      if ('off' in wanted) {
        if (current !== undefined) change = this.stopStreaming(cluster, current, wanted.off);
      } else if (current === undefined) {
        change = this.startStreaming(cluster, wanted, 'started', startUp ? 'streaming.enabled is set' : 'enabled by the reloaded config');
      } else {
        const differences = streamingDifferences(current.target, wanted);
        const failure = current.failure ?? (current.receiver?.status().state === 'failed' ? current.receiver.status().lastError ?? 'failed' : undefined);
        if (differences.length > 0) change = this.restartStreaming(cluster, current, wanted, differences.join(', '));
        else if (failure !== undefined && current.target.config !== config) change = this.restartStreaming(cluster, current, wanted, `retried after the config reload; it had failed: ${failure}`);
      }
      if (change === undefined) continue;
      this.streamChanges.set(cluster, change.catch((error: unknown) => this.options.log(`${cluster}: wal streaming: ${redact(messageOf(error))}`)).finally(() => {
        this.streamChanges.delete(cluster);
      }));
    }
  }

  /** Builds and starts the cluster's receiver; streaming from its first node with pg_receivewal into every repository (docs/wal-streaming.md). */
  private async startStreaming(cluster: string, target: StreamingTarget, change: Exclude<StreamingChange, 'stopped'>, reason: string, after = ''): Promise<void> {
    const env = this.options.env ?? process.env;
    const opened: { close(): void }[] = [];
    const close = (): void => opened.forEach((repository) => repository.close());
    let streaming: Streaming;
    try {
      const repositories = target.plan.repositories.map((repository) => {
        const opening = openRepository(repository.spec, env, repository.name);
        opened.push(opening);
        return opening;
      });
      const receiver = new WalReceiver({
        connection: target.node.connection,
        cluster,
        slot: target.slot,
        spoolDir: target.spoolDir,
        repositories,
        keyring: target.plan.keys.length === 0 ? undefined : loadKeyring(target.plan.keys, env),
        compression: target.compression,
        log: (line) => this.options.log(`${cluster}: wal streaming: ${redact(line)}`),
        onEvent: (event) => this.options.emit({ ...event, type: 'wal_receiver', event: event.type, cluster }),
      });
      streaming = { target, receiver, close, failure: undefined };
    } catch (error) {
      close();
      streaming = { target, receiver: undefined, close: () => undefined, failure: redact(messageOf(error)) };
    }
    this.streams.set(cluster, streaming);
    if (streaming.receiver !== undefined) {
      try {
        await streaming.receiver.start();
      } catch (error) {
        streaming.failure = redact(messageOf(error));
      }
    }
    const status = streaming.receiver?.status();
    if (streaming.failure === undefined && status?.state === 'failed') streaming.failure = status.lastError ?? 'failed';
    const state: WalReceiverState = streaming.failure === undefined ? (status?.state ?? 'failed') : 'failed';
    const where = `slot ${target.slot}, spool ${target.spoolDir}`;
    if (streaming.failure !== undefined) {
      this.options.log(`${cluster}: wal streaming ${change === 'started' ? 'did not start' : 'did not restart'} (${reason}; ${where}): ${streaming.failure}; fix the cause, then reload the config (SIGHUP) to retry${after}`);
    } else {
      // 'restarting': pg_receivewal could not connect yet; the receiver retries by itself with back-off.
      const waiting = state === 'restarting' ? `; not streaming yet, retrying: ${redact(status?.lastError ?? 'unknown')}` : '';
      this.options.log(`${cluster}: wal streaming ${change}: ${reason} (${where})${waiting}${after}`);
    }
    this.options.emit({ type: 'wal_streaming', cluster, change, reason, slot: target.slot, spoolDir: target.spoolDir, state, error: streaming.failure ?? null });
  }

  /**
   * Stops the receiver fully (pg_receivewal ended, completed files pushed) and closes its
   * repositories. Returns what it leaves behind, which nothing removes silently (DESIGN §7 rule 3):
   * files not yet pushed, and its slot, which keeps WAL on the server until dropped.
   */
  private async stopReceiver(cluster: string, streaming: Streaming): Promise<{ readonly files: string; readonly slot: string }> {
    await streaming.receiver?.stop().catch((error: unknown) => this.options.log(`${cluster}: wal streaming: stopping: ${redact(messageOf(error))}`));
    streaming.close();
    this.streams.delete(cluster);
    const { slot, spoolDir } = streaming.target;
    // Completed files a push failed for, and the segment pg_receivewal was writing: only a receiver on this spool pushes them.
    const waiting = streaming.receiver?.status().waiting ?? 0;
    const partial = (await readdir(spoolDir).catch(() => [])).filter((name) => parseWalFileName(name)?.kind === 'partial').length;
    return {
      files: waiting + partial > 0 ? `; ${waiting + partial} WAL file(s) not in every repository stay in ${spoolDir}${partial > 0 ? ' (with the unfinished .partial segment)' : ''}` : '',
      // A receiver that never started never created its slot.
      slot: streaming.failure !== undefined ? '' : `; the slot ${slot} stays on the server and keeps WAL until dropped: select pg_drop_replication_slot('${slot}') unless streaming resumes on it`,
    };
  }

  private async stopStreaming(cluster: string, streaming: Streaming, reason: string): Promise<void> {
    const left = await this.stopReceiver(cluster, streaming);
    this.options.log(`${cluster}: wal streaming stopped: ${reason}${left.files}${left.slot}`);
    this.options.emit({ type: 'wal_streaming', cluster, change: 'stopped', reason, slot: streaming.target.slot, spoolDir: streaming.target.spoolDir, state: 'stopped', error: null });
  }

  /** The old receiver stops completely before the new one starts: the spool dir and the slot are exclusive. */
  private async restartStreaming(cluster: string, streaming: Streaming, target: StreamingTarget, reason: string): Promise<void> {
    const left = await this.stopReceiver(cluster, streaming);
    // What the new receiver takes over (the same spool, the same slot) is not left behind.
    const behind = `${target.spoolDir === streaming.target.spoolDir ? '' : left.files}${target.slot === streaming.target.slot ? '' : left.slot.replace('; the slot', '; the old slot')}`;
    await this.startStreaming(cluster, target, 'restarted', reason, behind);
  }

  /** Stops: running jobs get SIGTERM (each CLI leaves its repository consistent) and are awaited. */
  async stop(): Promise<void> {
    this.stopped = true;
    const running = [...this.clusters.values()].flatMap((jobs) => (jobs.running === undefined ? [] : [jobs.running]));
    for (const job of running) job.child?.kill('SIGTERM');
    // A start in flight ends first, so that its receiver is stopped too.
    await Promise.all(this.streamChanges.values());
    await Promise.all([...this.streams.values()].map(async ({ receiver, close }) => {
      await receiver?.stop().catch(() => undefined);
      close();
    }));
    this.streams.clear();
    await Promise.all(running.map((job) => job.done));
    await Promise.all([...this.clusters.values()].flatMap((jobs) => (jobs.reading === undefined ? [] : [jobs.reading])));
  }
}
