/**
 * bench/watch-scale (issue 4): one watcher over N clusters. Prints, per round of evaluations, the
 * wall time for every cluster to be evaluated, the watcher's CPU per cluster and its RSS, and
 * whether N clusters fit in one evaluation interval E on one core; then the time from a fault
 * (a session idle in transaction) to the SMTP server accepting the mail, with group_wait 0 and 30 s.
 * The watcher runs in a process of its own (bench/watch-scale-child.mjs over dist/), so its CPU and
 * RSS are its own. Prints figures; asserts nothing.
 *
 *   npm run bench:watch          (builds dist/ first; about 3.5 minutes)
 *   WATCH_CLUSTERS=50 WATCH_REAL_CLUSTERS=6 WATCH_INTERVAL_S=10 WATCH_ROUNDS=3 WATCH_TICK_MS=1000 \
 *   WATCH_GROUP_WAITS=0,30 WATCH_SERVER=throwaway|local npm run bench:watch
 *
 * The N cluster entries are N - k databases bench_watch_01… on one server plus k real clusters
 * (initdb). The databases live on a throwaway server by default: the watcher keeps a pool of up to
 * 3 connections per entry, more than the shared 127.0.0.1:5432 allows at N = 50 (max_connections
 * 100, other work on it); WATCH_SERVER=local uses 5432 anyway when it has room. The faults go on
 * the real clusters: pg_stat_activity is server-wide, so a session on one database would be seen
 * (and alerted on) by every entry on that server.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { checks } from '../src/checks/catalogue.js';
import { isUserError, UserError } from '../src/errors.js';
import type { Cadence } from '../src/checks/types.js';
import { probesForChecks } from '../src/watch/watcher.js';
import { createPrimary, destroyAll, type ClusterOptions, type TestCluster } from '../test/support/cluster.js';
import {
  mb, median, roundFigures, s1, spread, table, unknownChecks,
  type ChildMessage, type EvaluationTimed, type RoundFigure, type RoundStart, type Usage,
} from './watch-scale-figures.js';
import { MailClock } from './watch-scale-smtp.js';

const env = process.env;
const total = Number(env['WATCH_CLUSTERS'] ?? 50);
const realCount = Number(env['WATCH_REAL_CLUSTERS'] ?? 6);
const intervalMs = Number(env['WATCH_INTERVAL_S'] ?? 10) * 1000;
const rounds = Number(env['WATCH_ROUNDS'] ?? 3);
const tickMs = Number(env['WATCH_TICK_MS'] ?? 1000); // the Watcher's default tick
const groupWaits = (env['WATCH_GROUP_WAITS'] ?? '0,30').split(',').map(Number);
const serverKind = env['WATCH_SERVER'] ?? 'throwaway';
const databaseCount = total - realCount;
const idleThresholdS = 1;
const failingEvaluations = 2;
const poolSize = 3; // PgNode's default pool
const repo = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Where the databases live: a throwaway cluster or the shared local server. */
interface DatabaseServer {
  readonly label: string;
  dsn(database: string): string;
  sql(text: string): Promise<Record<string, unknown>[]>;
}

function localServer(): DatabaseServer {
  const base = { host: '127.0.0.1', port: 5432, user: 'postgres' };
  return {
    label: 'the local server 127.0.0.1:5432',
    dsn: (database) => `postgresql://postgres@127.0.0.1:5432/${database}`,
    async sql(text) {
      const client = new pg.Client({ ...base, database: 'postgres', application_name: 'bench-watch-setup' });
      await client.connect();
      try {
        return (await client.query<Record<string, unknown>>(text)).rows;
      } finally {
        await client.end();
      }
    },
  };
}

/**
 * A throwaway cluster, its directory removed at the end even after a signal (the harness's own exit
 * hook stops the server but may find it still writing while it removes the directory).
 */
async function createPrimaryRemoved(options: ClusterOptions): Promise<TestCluster> {
  const created = await createPrimary(options);
  clusterDirs.push(dirname(created.dataDir));
  return created;
}

const clusterDirs: string[] = [];

/** Stops every cluster, then makes sure their directories are gone. */
async function destroyClusters(): Promise<void> {
  await destroyAll();
  await Promise.all(clusterDirs.map((dir) => rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 })));
}

/** A throwaway cluster with room for every database's pool. */
async function throwawayServer(): Promise<DatabaseServer> {
  const cluster = await createPrimaryRemoved({ name: 'watch-dbs', maxConnections: poolSize * databaseCount + 30, settings: { shared_buffers: '64MB' } });
  return { label: 'a throwaway PostgreSQL server', dsn: (database) => cluster.dsn(database), sql: (text) => cluster.sql(text) };
}

/** The watcher process: what it reported, and how to wait on it and stop it. */
class WatcherProcess {
  readonly starts: RoundStart[] = [];
  readonly evaluations: EvaluationTimed[] = [];
  readonly logs: string[] = [];
  readonly events: Record<string, unknown>[] = [];
  started: { before: Usage; after: Usage } | undefined;
  stopped: (Usage & { maxRss: number }) | undefined;
  private exit: string | undefined;
  private stderr = '';

  constructor(private readonly child: ChildProcess) {
    child.on('message', (message: ChildMessage) => {
      if (message.type === 'round') this.starts.push(message);
      else if (message.type === 'eval') this.evaluations.push(message);
      else if (message.type === 'log') this.logs.push(message.line);
      else if (message.type === 'started') this.started = { before: message.before, after: message.after };
      else this.stopped = message;
    });
    let buffered = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) if (line.trim() !== '') this.events.push(JSON.parse(line) as Record<string, unknown>);
    });
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr = (this.stderr + chunk).slice(-4000);
    });
    child.on('exit', (code, signal) => {
      this.exit = `exited with ${signal ?? code}`;
    });
  }

  static async launch(configFile: string, cadenceMs: Record<Cadence, number>): Promise<WatcherProcess> {
    const child = spawn(process.execPath, [join(repo, 'bench/watch-scale-child.mjs'), configFile, JSON.stringify({ cadenceMs, tickMs })], {
      cwd: repo,
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    const watcher = new WatcherProcess(child);
    await watcher.until('the watcher to start', () => watcher.started !== undefined, 30_000);
    return watcher;
  }

  /** Polls `condition`; fails at once if the watcher process died. */
  async until(what: string, condition: () => boolean, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!condition()) {
      if (this.exit !== undefined) throw new Error(`the watcher process ${this.exit} while waiting for ${what}:\n${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await delay(50);
    }
  }

  /** Waits until `count` rounds have started and the evaluations of all but the last have finished. */
  async rounds(count: number): Promise<void> {
    const timeoutMs = (count + 2) * intervalMs + 60_000;
    await this.until(`${count} rounds of evaluations`, () => {
      const last = this.starts[count - 1];
      return last !== undefined && this.evaluations.filter((evaluation) => evaluation.start < last.at).length >= last.startedBefore;
    }, timeoutMs);
  }

  async stop(): Promise<void> {
    if (this.exit !== undefined) return;
    this.child.send({ type: 'stop' });
    await this.until('the watcher to stop', () => this.exit !== undefined, 30_000);
  }

  kill(): void {
    if (this.exit === undefined) this.child.kill('SIGKILL');
  }
}

interface Trial {
  readonly cluster: string;
  readonly faultAt: number;
  readonly mailAt: number;
  /** From the fault to the start of the first evaluation that saw it idle for the threshold. */
  readonly firstSeenMs: number | undefined;
  /** From the fault to the start of the next evaluation of that cluster (the second failing one). */
  readonly secondSeenMs: number | undefined;
  /** From the fault to the engine step that sent the notice (the watcher's notice-sent event). */
  readonly steppedMs: number | undefined;
}

const cleanups: (() => Promise<unknown>)[] = [];
let cleaning: Promise<void> | undefined;

/** Undoes everything, newest first; safe to call twice (the signal handler and main's finally). */
function cleanUp(): Promise<void> {
  cleaning ??= (async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch((error: unknown) => process.stderr.write(`cleanup: ${String(error)}\n`));
  })();
  return cleaning;
}

function progress(line: string): void {
  process.stderr.write(`watch-scale: ${line}\n`);
}

async function connect(dsn: string, application: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: dsn, application_name: application });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

function configFor(server: DatabaseServer, reals: readonly TestCluster[], databases: readonly string[], mailPort: number, stateDir: string, groupWaitS: number): object {
  return {
    clusters: [
      ...databases.map((name) => ({ name, nodes: [{ name: 'db', dsn: server.dsn(name) }] })),
      ...reals.map((real, index) => ({ name: realName(index), nodes: [{ name: 'db', dsn: real.dsn() }] })),
    ],
    alerting: {
      state_dir: stateDir,
      email: { host: '127.0.0.1', port: mailPort, security: 'none', from: 'pgwarden-bench@example.com' },
      // Only the fault under test mails (fresh clusters also raise "restarted recently").
      teams: [{ name: 'dba', email: ['dba@example.com'], checks: ['idle-in-transaction'] }],
      timing: { group_wait_s: groupWaitS, failing_evaluations: failingEvaluations },
      thresholds: { '*': { 'idle-in-transaction': { warning_seconds: idleThresholdS, critical_seconds: 3600 } } },
    },
  };
}

function realName(index: number): string {
  return `bench_real_${index + 1}`;
}

interface Counter {
  readonly client: pg.Client;
  /** Only these databases (a shared server has other pgwarden sessions); undefined: all. */
  readonly databases: readonly string[] | undefined;
}

/** Samples the watcher's connections (application_name pgwarden) on every server until stopped; keeps the peak. */
function connectionSampler(counters: readonly Counter[]): { peak: () => number; stop: () => void } {
  let peak = 0;
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    void Promise.all(counters.map(({ client, databases }) => client.query<{ n: number }>(
      "select count(*)::int as n from pg_stat_activity where application_name = 'pgwarden' and ($1::text[] is null or datname = any($1::text[]))",
      [databases === undefined ? null : [...databases]],
    )))
      .then((results) => {
        peak = Math.max(peak, results.reduce((sum, result) => sum + (result.rows[0]?.n ?? 0), 0));
      })
      .catch(() => undefined)
      .finally(() => {
        busy = false;
      });
  }, 1000);
  return { peak: () => peak, stop: () => clearInterval(timer) };
}

function roundRows(figures: readonly RoundFigure[], warmUp: number): string[][] {
  return figures.map((round) => [
    round.index < warmUp ? `${round.index + 1} (warm-up)` : String(round.index + 1),
    round.cadences,
    s1(round.intervalMs),
    String(round.evaluations),
    s1(round.wallMs),
    (round.wallMs / intervalMs).toFixed(2),
    `${round.evaluationMedianMs} / ${round.evaluationMaxMs}`,
    round.cpuMs.toFixed(0),
    (round.cpuMs / total).toFixed(1),
    (round.cpuMs / round.intervalMs).toFixed(3),
    mb(round.rss),
    String(round.down),
    String(round.unknownFindings),
  ]);
}

const roundHeader = ['round', 'cadences', 'interval s', 'evaluated', 'wall s', 'wall/E', 'eval median / max ms', 'CPU ms', 'CPU ms/cluster', 'CPU/E', 'RSS MB', 'down', 'unknown'];

/** The rounds of one watcher run, as lines, with the verdict against the goal. */
function roundReport(title: string, watcher: WatcherProcess, figures: readonly RoundFigure[], peakConnections: number): string[] {
  const measured = figures.slice(1);
  const worstWall = Math.max(...measured.map((round) => round.wallMs));
  const cpuShare = measured.reduce((sum, round) => sum + round.cpuMs, 0) / measured.reduce((sum, round) => sum + round.intervalMs, 0);
  const before = watcher.started?.before.rss ?? 0;
  // RSS moves with the garbage collector: the median over the measured rounds.
  const rss = median(measured.map((round) => round.rss));
  const heap = median(measured.map((round) => round.heapUsed));
  return [
    title,
    ...table(roundHeader, roundRows(figures, 1)).map((line) => `  ${line}`),
    `  measured rounds: CPU ${median(measured.map((round) => round.cpuMs / total)).toFixed(1)} ms per cluster per round (median), ${(100 * cpuShare).toFixed(1)} % of one core; `
      + `wall time for all ${total} at most ${s1(worstWall)} s = ${(worstWall / intervalMs).toFixed(2)} E`,
    `  RSS ${mb(before)} MB before the watcher opened anything (Node and the modules), ${mb(rss)} MB over the measured rounds (median; ${mb((rss - before) / total)} MB per cluster), `
      + `peak ${mb(watcher.stopped?.maxRss ?? 0)} MB; JS heap in use ${mb(heap)} MB (median)`,
    `  peak connections held by the watcher: ${peakConnections} (${(peakConnections / total).toFixed(1)} per cluster; pool size ${poolSize})`,
    `  ${total} clusters in one interval on one core: ${cpuShare < 1 && worstWall < intervalMs ? 'yes' : 'NO'} (CPU/E ${cpuShare.toFixed(3)} < 1, wall/E ${(worstWall / intervalMs).toFixed(2)} < 1)`,
    ...[...unknownChecks(watcher.evaluations)].map(([check, message]) => `  unknown: ${check}: ${message.length > 110 ? `${message.slice(0, 109)}…` : message}`),
  ];
}

/** Opens an idle-in-transaction session on each real cluster at a random moment within one interval and times its mail. */
async function faultTrials(watcher: WatcherProcess, reals: readonly TestCluster[], mail: MailClock, groupWaitS: number): Promise<Trial[]> {
  const clients = await Promise.all(reals.map((real) => connect(real.dsn(), 'bench-fault')));
  const closeClients = async (): Promise<void> => {
    await Promise.all(clients.map((client) => client.end().catch(() => undefined)));
  };
  cleanups.push(closeClients);
  try {
    const timeoutMs = (failingEvaluations + 1) * intervalMs + 2 * tickMs + groupWaitS * 1000 + 30_000;
    return await Promise.all(clients.map(async (client, index) => {
      const cluster = realName(index);
      await delay(Math.random() * intervalMs);
      const faultAt = Date.now();
      await client.query('begin');
      const subject = `[WARNING] ${cluster}: idle-in-transaction`;
      await watcher.until(`the mail "${subject}"`, () => mail.find(subject, faultAt) !== undefined, timeoutMs);
      const accepted = mail.find(subject, faultAt)!;
      const firstAfter = (since: number): EvaluationTimed | undefined => watcher.evaluations
        .filter((evaluation) => evaluation.cluster === cluster && evaluation.start >= since)
        .reduce<EvaluationTimed | undefined>((first, evaluation) => (first === undefined || evaluation.start < first.start ? evaluation : first), undefined);
      const firstSeen = firstAfter(faultAt + idleThresholdS * 1000);
      const secondSeen = firstSeen === undefined ? undefined : firstAfter(firstSeen.start + 1);
      // The watcher reports the notice once the whole delivery is done, a moment after the 250.
      const findSent = (): Record<string, unknown> | undefined => watcher.events.find((event) => event['type'] === 'notice-sent' && event['subject'] === subject && Date.parse(String(event['at'])) >= faultAt);
      await watcher.until('the notice-sent event', () => findSent() !== undefined, 10_000).catch(() => undefined);
      const sent = findSent();
      await client.query('rollback');
      return {
        cluster,
        faultAt,
        mailAt: accepted.at,
        firstSeenMs: firstSeen === undefined ? undefined : firstSeen.start - faultAt,
        secondSeenMs: secondSeen === undefined ? undefined : secondSeen.start - faultAt,
        steppedMs: sent === undefined ? undefined : Date.parse(String(sent['at'])) - faultAt,
      };
    }));
  } finally {
    await closeClients();
  }
}

function trialReport(groupWaitS: number, trials: readonly Trial[], watcher: WatcherProcess): string[] {
  const latencies = trials.map((trial) => trial.mailAt - trial.faultAt);
  const { min, median: middle, max } = spread(latencies);
  const goalMs = intervalMs + 5000;
  // The evaluation interval as it ran: a tick is scheduled tickMs after the previous one finished.
  const interval = median(watcher.starts.slice(1).map((start, index) => start.at - watcher.starts[index]!.at));
  const gwTicks = Math.ceil((groupWaitS * 1000) / tickMs) * tickMs;
  // The watcher confirms a new problem with one more evaluation 3 s later (started at the next tick after that).
  const confirmMs = (failingEvaluations - 1) * (3000 + tickMs);
  const low = idleThresholdS * 1000 + confirmMs + tickMs + gwTicks;
  const at = (ms: number | undefined): string => (ms === undefined ? '?' : s1(ms));
  const step = (from: number | undefined, to: number | undefined): string => (from === undefined || to === undefined ? '?' : s1(to - from));
  return [
    `group_wait ${groupWaitS} s: fault to mail min ${s1(min)} / median ${s1(middle)} / max ${s1(max)} s over ${trials.length} trials; goal E + 5 s = ${s1(goalMs)} s: `
      + `${latencies.filter((latency) => latency <= goalMs).length} of ${trials.length} within`,
    `  expected ${s1(low)} – ${s1(low + interval)} s = first failing evaluation ${idleThresholdS} – ${s1(interval + idleThresholdS * 1000)} s after the fault`
      + ` + the confirming evaluation (${s1(confirmMs)} s) + the next tick steps the engine (${s1(tickMs)} s) + group wait in whole ticks (${s1(gwTicks)} s)`,
    ...table(['  trial', 'fault → 1st failing eval', '→ 2nd failing eval', '→ engine step', '→ SMTP 250', 'fault → mail s'], trials.map((trial) => [
      `  ${trial.cluster}`,
      at(trial.firstSeenMs),
      step(trial.firstSeenMs, trial.secondSeenMs),
      step(trial.secondSeenMs, trial.steppedMs),
      step(trial.steppedMs, trial.mailAt - trial.faultAt),
      s1(trial.mailAt - trial.faultAt),
    ])),
  ];
}

async function main(): Promise<void> {
  if (!(total >= 1) || !(realCount >= 0) || databaseCount < 0) {
    throw new UserError(`WATCH_CLUSTERS=${total} is less than WATCH_REAL_CLUSTERS=${realCount}`, 'the real clusters count among the clusters: raise WATCH_CLUSTERS or lower WATCH_REAL_CLUSTERS');
  }
  const startedAt = Date.now();
  const work = await mkdtemp(join(tmpdir(), 'pgwarden-watch-scale-'));
  cleanups.push(() => rm(work, { recursive: true, force: true }));
  const mail = new MailClock();
  await mail.start();
  cleanups.push(() => mail.stop());
  cleanups.push(destroyClusters);

  progress(`${databaseCount} databases and ${realCount} real clusters…`);
  const width = String(databaseCount).length < 2 ? 2 : String(databaseCount).length;
  const databases = Array.from({ length: databaseCount }, (_, index) => `bench_watch_${String(index + 1).padStart(width, '0')}`);
  const realsCreated = Promise.all(Array.from({ length: realCount }, (_, index) => createPrimaryRemoved({ name: `watch-real-${index + 1}` })));
  // The clean-up waits for clusters still being made (it would miss them), after a failure too.
  const realsSettled = Promise.allSettled([realsCreated]);
  cleanups.push(() => realsSettled);
  const server = serverKind === 'local' ? localServer() : await throwawayServer();
  if (serverKind === 'local') {
    const [room] = await server.sql(`select current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int - (select count(*) from pg_stat_activity)::int as free`);
    const free = Number(room?.['free'] ?? 0);
    if (free < poolSize * databaseCount + 10) {
      throw new UserError(`the local server has ${free} free connections; ${databaseCount} databases need up to ${poolSize * databaseCount}`, 'lower WATCH_CLUSTERS, or leave WATCH_SERVER unset for a throwaway server');
    }
    const drop = async (): Promise<void> => {
      for (const name of databases) await server.sql(`drop database if exists ${name} with (force)`);
    };
    await drop(); // leftovers of an interrupted run
    cleanups.push(drop);
  }
  for (const name of databases) await server.sql(`create database ${name}`);
  const reals = await realsCreated;
  const [version] = await (reals[0] ?? server).sql("select current_setting('server_version') as v");

  const counters: Counter[] = await Promise.all([
    ...(databaseCount > 0 ? [connect(server.dsn('postgres'), 'bench-watch-counter').then((client) => ({ client, databases }))] : []),
    ...reals.map((real) => connect(real.dsn(), 'bench-watch-counter').then((client) => ({ client, databases: undefined }))),
  ]);
  cleanups.push(() => Promise.all(counters.map(({ client }) => client.end())));

  let runs = 0;
  const launch = async (groupWaitS: number, cadenceMs: Record<Cadence, number>): Promise<WatcherProcess> => {
    runs += 1;
    const file = join(work, `config-${runs}.json`);
    await writeFile(file, JSON.stringify(configFor(server, reals, databases, mail.port, join(work, `state-${runs}`), groupWaitS)));
    const watcher = await WatcherProcess.launch(file, cadenceMs);
    cleanups.push(async () => watcher.kill());
    return watcher;
  };
  const fast = { fast: intervalMs, normal: 300_000, slow: 3_600_000 };
  const whole = { fast: intervalMs, normal: intervalMs, slow: intervalMs };
  const count = (cadences: readonly Cadence[]): string => {
    const selected = checks.filter((check) => cadences.includes(check.cadence));
    return `${selected.length} checks, ${probesForChecks(selected).length} probes`;
  };
  const out: string[] = [
    `watch-scale: ${total} clusters = ${databaseCount} databases on ${server.label} + ${realCount} real clusters (initdb), PostgreSQL ${String(version?.['v'])}; `
      + `one watcher process (Node ${process.version}); E = ${s1(intervalMs)} s, engine tick ${s1(tickMs)} s; ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), load ${loadavg()[0]?.toFixed(2)} at start`,
    'peer: none. pg_activity and the other consoles have no headless watcher; the goals are the comparison: '
      + `${total} clusters within one interval on one core, fault to mail within E + 5 s.`,
    '',
  ];
  const trialLines: string[] = [];

  // 1. Fast checks every E, the others at their defaults; then the group-wait-0 fault trials.
  for (const [index, groupWaitS] of groupWaits.entries()) {
    const label = index === 0 ? 'fast checks' : `fast checks, group wait ${groupWaitS} s`;
    progress(`${label}: one watcher over ${total} clusters…`);
    const watcher = await launch(groupWaitS, fast);
    const sampler = connectionSampler(counters);
    await watcher.rounds(index === 0 ? rounds + 2 : 2);
    const figures = roundFigures(watcher.starts, watcher.evaluations, tickMs / 2).slice(0, rounds + 1);
    const peak = sampler.peak();
    sampler.stop();
    if (realCount > 0) {
      progress(`${label}: ${realCount} faults at random moments…`);
      trialLines.push(...trialReport(groupWaitS, await faultTrials(watcher, reals, mail, groupWaitS), watcher));
    }
    await watcher.stop();
    if (index === 0) {
      out.push(...roundReport(`fast checks every E (${count(['fast'])} per evaluation; normal and slow at 5 min and 1 h, so in the warm-up round only)`, watcher, figures, peak), '');
    }
    const failures = watcher.logs.filter((line) => /failed|cannot/.test(line));
    if (failures.length > 0) out.push(`  watcher log: ${failures.length} failure lines, e.g. ${failures.slice(0, 3).join(' | ')}`, '');

    // 2. The whole catalogue every E, after the first run.
    if (index === 0) {
      progress('whole catalogue every E…');
      const all = await launch(groupWaitS, whole);
      const allSampler = connectionSampler(counters);
      await all.rounds(rounds + 2);
      const figures = roundFigures(all.starts, all.evaluations, tickMs / 2).slice(0, rounds + 1);
      allSampler.stop();
      await all.stop();
      out.push(...roundReport(`whole catalogue every E (${count(['fast', 'normal', 'slow'])} per evaluation)`, all, figures, allSampler.peak()), '');
    }
  }
  if (realCount === 0) trialLines.push('fault to mail: skipped (WATCH_REAL_CLUSTERS=0; faults need a cluster of their own, see the top of bench/watch-scale.ts)');
  out.push(
    ...(realCount === 0 ? [] : [`fault to mail: a session idle in transaction (warning at ${idleThresholdS} s, ${failingEvaluations} failing evaluations to fire) on each real cluster at a random moment within one interval, timed to the SMTP server's 250`]),
    ...trialLines,
    '',
    `total run time ${s1(Date.now() - startedAt)} s`,
    '',
  );
  process.stdout.write(out.join('\n'));
}

// Ctrl-C reaches this process twice (from the terminal and relayed by tsx): clean up once, to the end.
let signalled = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (signalled) return;
    signalled = true;
    progress(`${signal}: cleaning up (databases, clusters, temporary files)…`);
    void cleanUp().finally(() => process.exit(130));
  });
}

try {
  await main();
} catch (error) {
  if (!isUserError(error)) throw error;
  process.stderr.write(`watch-scale: ${error.message}${error.hint === undefined ? '' : `: ${error.hint}`}\n`);
  process.exitCode = 1;
} finally {
  await cleanUp();
}
