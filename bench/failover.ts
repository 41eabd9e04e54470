/**
 * bench/failover (issue 6): pgwarden's failover and switchover timed from a client's side, next to
 * Patroni on the same machine (bench/failover-patroni.ts, whose write probes this file reuses, so
 * both tools are timed by the same code). Prints figures; asserts nothing. Goals (issue 6):
 * automatic failover within 15 s at defaults; a switchover stall of at most 2 s with zero client
 * errors.
 *
 *   npm run bench:failover                   (builds dist/ first; about 4 minutes a round)
 *   npx tsx bench/failover.ts --rounds 2     (on a built dist/)
 *   --failover manual                        (time `pgwarden failover --yes` instead of --watch)
 *   --no-patroni                             (pgwarden only)
 *
 * Each round builds the shared fixture of the failover tests (test/support/failover-cluster.ts:
 * p1 primary with wal_log_hints, s1 and s2 streaming asynchronously through slots, a real
 * PgBouncer in transaction pooling whose [databases] entry `app` points at the primary, a pgwarden
 * config naming all of it, failover settings left at their defaults), then:
 * - switchover p1 → s1, then s1 → p1: one client commits a single-row INSERT every 10 ms through
 *   PgBouncer on one connection (reconnecting to PgBouncer after an error) while
 *   `pgwarden switchover --to NODE --yes --json` runs. Figures: the longest gap between two commits
 *   (the stall clients see), failed transactions and reconnects, pgwarden's own PAUSE→RESUME time,
 *   the command's wall time (rejoin of the old primary by pg_rewind included), acknowledged rows
 *   missing on the new primary.
 * - automatic failover: `pgwarden --watch --config F` with failover.automatic on and every other
 *   setting at its default (lostAfterSeconds 5, the watcher's own intervals); once it names p1 the
 *   primary, and after a random wait of up to one of its 1 s rounds, kill -9 of p1's postmaster.
 *   Timed from the kill to the first INSERT that commits, trying every 100 ms on a new connection
 *   each time: on s1 and s2 directly (the first on any node, the old primary excluded), and through
 *   PgBouncer (which pgwarden repoints).
 * - with --failover manual instead: kill -9, then `pgwarden failover --yes` as soon as a client
 *   connection to p1 fails; the same two figures, labelled "manual".
 * Then the Patroni side: runPatroniBench (switchover, one kill -9 of the postmaster with its agent
 * alive, and a lost node), Patroni's defaults.
 *
 * Runs as root (the clusters, PgBouncer and pg_rewind run as the postgres OS user). Trust
 * authentication on 127.0.0.1: no password exists on the pgwarden side.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { isUserError, messageOf, UserError } from '../src/errors.js';
import { waitFor, type TestCluster } from '../test/support/cluster.js';
import { onProcessEnd } from '../test/support/exit-cleanup.js';
import { createFailoverCluster, POOLED_DATABASE, roleOf, type FailoverCluster, type NodeName } from '../test/support/failover-cluster.js';
import { table } from './backup-tools.js';
import {
  ensureWriteTable, firstWriteAfter, missingRows, patroniDefaults, patroniReport, postmasterPid, runPatroniBench, writeLoopDuring,
  type PatroniFigures, type WriteTarget, type WritesBack,
} from './failover-patroni.js';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
const host = '127.0.0.1';

type FailoverMode = 'auto' | 'manual';

interface Options {
  readonly rounds: number;
  readonly failover: FailoverMode;
  readonly patroni: boolean;
}

/** A finished run of the pgwarden command line. */
interface CliRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly wallS: number;
}

/** One switchover as a client through PgBouncer saw it, and as pgwarden reported it. */
interface SwitchoverRound {
  readonly from: NodeName;
  readonly to: NodeName;
  readonly longestGapS: number;
  readonly committed: number;
  readonly failedTransactions: number;
  readonly failedConnects: number;
  /** pgwarden's own PAUSE→RESUME (result.stallMs). */
  readonly pausedS: number;
  /** pgwarden's result.totalMs: plan checked to the old primary streaming again. */
  readonly totalS: number;
  /** The command's wall time, Node's start included. */
  readonly wallS: number;
  readonly lost: number;
}

/** One kill -9 of the primary and when writes came back. */
interface FailoverRound {
  readonly mode: FailoverMode;
  /** First write on a node directly (s1 or s2). */
  readonly direct: WritesBack;
  /** First write through PgBouncer. */
  readonly pooled: WritesBack;
  /** Random wait between the watcher naming the primary and the kill (auto). */
  readonly waitedS: number;
  /** Seconds from the kill to the watcher lines that matter (auto), or to the command's start and end (manual). */
  readonly marks: readonly { readonly label: string; readonly atS: number }[];
}

interface PgwardenRound {
  readonly switchovers: readonly SwitchoverRound[];
  readonly failover: FailoverRound | undefined;
  readonly failoverError: string | undefined;
}

const seconds = (since: bigint): number => Number(process.hrtime.bigint() - since) / 1e9;
const s2 = (value: number): string => value.toFixed(2);

// libpq variables of the caller's shell must not redirect pgwarden or the clients to another server.
function childEnv(extra: Readonly<Record<string, string>> = {}): NodeJS.ProcessEnv {
  return { ...Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('PG'))), ...extra };
}

/** `node bin/pgwarden.js ARGS` to its end. */
function pgwarden(args: readonly string[], timeoutMs = 300_000): Promise<CliRun> {
  const started = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(repoRoot, 'bin/pgwarden.js'), ...args], { cwd: repoRoot, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => void (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => void (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, wallS: seconds(started) });
    });
  });
}

/** `pgwarden --watch` running in the background, its stderr lines stamped with their arrival. */
interface Watching {
  readonly lines: { readonly at: bigint; readonly line: string }[];
  stop(): Promise<void>;
}

function startWatch(configPath: string): Watching {
  const child = spawn(process.execPath, [join(repoRoot, 'bin/pgwarden.js'), '--watch', '--config', configPath], {
    cwd: repoRoot, env: childEnv(), stdio: ['ignore', 'ignore', 'pipe'],
  });
  const kill = (): void => void child.kill('SIGKILL');
  onProcessEnd(kill);
  const lines: { at: bigint; line: string }[] = [];
  let pending = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    const parts = (pending + chunk).split('\n');
    pending = parts.pop() ?? '';
    const at = process.hrtime.bigint();
    for (const line of parts) lines.push({ at, line });
  });
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  return {
    lines,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const stopped = await Promise.race([exited.then(() => true), delay(15_000).then(() => false)]);
      if (!stopped) kill();
      await exited;
    },
  };
}

function nodeTarget(cluster: TestCluster, name: string): WriteTarget {
  return { name, host: cluster.host, port: cluster.port, user: 'postgres', database: 'postgres' };
}

function pooledTarget(fixture: FailoverCluster): WriteTarget {
  const port = fixture.pgbouncerPort;
  if (port === undefined) throw new Error('the fixture has no PgBouncer');
  return { name: 'pgbouncer', host, port, user: 'postgres', database: POOLED_DATABASE };
}

/** Waits until `primary` is out of recovery and every other node streams from it. */
async function waitHealthy(fixture: FailoverCluster, primary: NodeName): Promise<void> {
  const others = (['p1', 's1', 's2'] as const).filter((name) => name !== primary);
  await waitFor(`${primary} primary with ${others.join(', ')} streaming`, async () => {
    const role = await roleOf(fixture.node(primary));
    return !role.inRecovery && others.every((name) => role.streamingTo.includes(name));
  }, { timeoutMs: 120_000, intervalMs: 250 });
}

async function measureSwitchover(fixture: FailoverCluster, from: NodeName, to: NodeName): Promise<SwitchoverRound> {
  await waitHealthy(fixture, from);
  const phase = `pgwarden-switchover-${to}-${Date.now()}`;
  const pooled = pooledTarget(fixture);
  let run: CliRun | undefined;
  const figures = await writeLoopDuring(
    async () => pooled,
    async () => {
      run = await pgwarden(['switchover', '--config', fixture.configPath, '--to', to, '--yes', '--json']);
    },
    { phase },
  );
  if (run === undefined) throw new Error('the switchover did not run');
  if (run.code !== 0) throw new Error(`pgwarden switchover --to ${to} exited ${String(run.code)}: ${run.stderr.trim()}\n${run.stdout.trim()}`);
  // docs/json.md: snake_case keys.
  const { result } = JSON.parse(run.stdout) as { result: { stall_ms: number; total_ms: number; rejoined: boolean; left_over: unknown[] } };
  if (!result.rejoined || result.left_over.length > 0) throw new Error(`the switchover to ${to} left work undone: ${JSON.stringify(result.left_over)}`);
  const lost = await missingRows(nodeTarget(fixture.node(to), to), phase, figures.acknowledged);
  return {
    from, to, longestGapS: figures.longestGapS, committed: figures.committed, failedTransactions: figures.failedTransactions,
    failedConnects: figures.failedConnects, pausedS: result.stall_ms / 1000, totalS: result.total_ms / 1000, wallS: run.wallS, lost,
  };
}

/** Resolves once a new connection to `target` fails (the kill is visible to clients). */
async function firstRefusal(target: WriteTarget, timeoutMs: number): Promise<void> {
  await waitFor(`a connection to ${target.name} to fail`, async () => {
    const client = new pg.Client({ host: target.host, port: target.port, user: target.user, database: target.database, connectionTimeoutMillis: 500 });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.query('SELECT 1');
      return undefined;
    } catch {
      return true;
    } finally {
      await client.end().catch(() => undefined);
    }
  }, { timeoutMs, intervalMs: 20 });
}

/** The watcher lines worth a timestamp, by what they say. */
const watcherMarks: readonly { readonly label: string; readonly pattern: RegExp }[] = [
  { label: 'watcher: p1 does not answer', pattern: /automatic failover: p1 does not answer/ },
  { label: 'watcher: p1 declared lost', pattern: /automatic failover: p1 declared lost/ },
  { label: 'watcher: failover done', pattern: /automatic failover: automatic failover done/ },
];

async function measureFailover(fixture: FailoverCluster, mode: FailoverMode, stateDir: string): Promise<FailoverRound> {
  await waitHealthy(fixture, 'p1');
  const p1 = fixture.node('p1');
  const standbys = (['s1', 's2'] as const).map((name) => nodeTarget(fixture.node(name), name));
  const pooled = pooledTarget(fixture);
  const phase = `pgwarden-failover-${Date.now()}`;
  let watch: Watching | undefined;
  let waitedS = 0;
  try {
    if (mode === 'auto') {
      // failover.automatic on, every other failover setting and the watcher's intervals at their defaults.
      const config = await fixture.writeConfig('watch', (c) => {
        const cluster = c.clusters[0];
        if (cluster !== undefined) cluster.failover = { automatic: true };
        (c as typeof c & { alerting: unknown }).alerting = { state_dir: stateDir };
      });
      watch = startWatch(config);
      const watching = watch;
      await waitFor('the watcher to name p1 the primary', async () => watching.lines.some(({ line }) => /automatic failover: p1 is the primary/.test(line)), { timeoutMs: 60_000, intervalMs: 100 })
        .catch((error: unknown) => {
          throw new Error(`${messageOf(error)}; the watcher said:\n${watching.lines.slice(-15).map(({ line }) => line).join('\n')}`);
        });
      // Anywhere in the watcher's 1 s round, as bench/failover-patroni waits within loop_wait.
      waitedS = Math.random();
      await delay(waitedS * 1000);
    }
    const pid = postmasterPid(p1.dataDir);
    if (pid === undefined) throw new Error('no postmaster found for p1');
    const killedAt = process.hrtime.bigint();
    process.kill(pid, 'SIGKILL');
    const marks: { label: string; atS: number }[] = [];
    const manual = mode === 'manual'
      ? (async () => {
          await firstRefusal(nodeTarget(p1, 'p1'), 30_000);
          marks.push({ label: 'a client connection to p1 failed', atS: seconds(killedAt) });
          const run = await pgwarden(['failover', '--config', fixture.configPath, '--yes']);
          marks.push({ label: `pgwarden failover ended (exit ${String(run.code)}, ${s2(run.wallS)} s)`, atS: seconds(killedAt) });
          if (run.code !== 0) throw new Error(`pgwarden failover exited ${String(run.code)}: ${run.stderr.trim()}`);
        })()
      : Promise.resolve();
    const [direct, viaPgBouncer] = await Promise.all([
      firstWriteAfter(standbys, killedAt, { phase: `${phase}-direct`, timeoutMs: 120_000 }),
      firstWriteAfter([pooled], killedAt, { phase: `${phase}-pooled`, timeoutMs: 120_000 }),
      manual,
    ]);
    if (watch !== undefined) {
      const lines = watch.lines;
      await waitFor('the watcher to log the end of the failover', async () => lines.some(({ line }) => /automatic failover done/.test(line)), { timeoutMs: 60_000 })
        .catch(() => undefined);
      for (const { label, pattern } of watcherMarks) {
        const found = lines.find(({ line, at }) => at >= killedAt && pattern.test(line));
        if (found !== undefined) marks.push({ label, atS: Number(found.at - killedAt) / 1e9 });
      }
    }
    return { mode, direct, pooled: viaPgBouncer, waitedS, marks };
  } finally {
    await watch?.stop();
  }
}

async function pgwardenRound(options: Options, round: number): Promise<PgwardenRound> {
  const work = await mkdtemp(join(tmpdir(), 'pgwarden-bench-failover-'));
  let fixture: FailoverCluster | undefined;
  const dispose = async (): Promise<void> => {
    await fixture?.cleanup();
    await rm(work, { recursive: true, force: true });
  };
  try {
    console.error(`… pgwarden round ${round}: cluster`);
    fixture = await createFailoverCluster({ name: 'bench' });
    await ensureWriteTable(pooledTarget(fixture));
    const switchovers: SwitchoverRound[] = [];
    for (const [from, to] of [['p1', 's1'], ['s1', 'p1']] as const) {
      console.error(`… pgwarden round ${round}: switchover ${from} → ${to}`);
      switchovers.push(await measureSwitchover(fixture, from, to));
    }
    console.error(`… pgwarden round ${round}: ${options.failover === 'auto' ? 'automatic failover (--watch)' : 'manual failover'}`);
    try {
      return { switchovers, failover: await measureFailover(fixture, options.failover, join(work, 'state')), failoverError: undefined };
    } catch (error) {
      console.error(`pgwarden round ${round}: the failover was not measured: ${messageOf(error)}`);
      return { switchovers, failover: undefined, failoverError: messageOf(error) };
    }
  } finally {
    await dispose();
  }
}

function parseOptions(argv: readonly string[]): Options {
  let values;
  try {
    values = parseArgs({
      args: [...argv], strict: true, allowPositionals: false,
      options: { rounds: { type: 'string', default: '1' }, failover: { type: 'string', default: 'auto' }, 'no-patroni': { type: 'boolean', default: false } },
    }).values;
  } catch (error) {
    throw new UserError(messageOf(error), 'usage: npx tsx bench/failover.ts [--rounds N] [--failover auto|manual] [--no-patroni]');
  }
  const rounds = Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1) throw new UserError(`--rounds ${values.rounds} is not a positive whole number`, 'give how many rounds to run, such as --rounds 2');
  if (values.failover !== 'auto' && values.failover !== 'manual') throw new UserError(`--failover ${values.failover} is neither auto nor manual`, 'pass --failover auto (pgwarden --watch) or --failover manual (pgwarden failover --yes)');
  return { rounds, failover: values.failover, patroni: !values['no-patroni'] };
}

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : ((sorted[middle - 1]! + sorted[middle]!) / 2);
};

function report(options: Options, pgwardenRounds: readonly PgwardenRound[], patroniRounds: readonly PatroniFigures[], load: { before: number[]; after: number[] }): string {
  const out: string[] = [];
  const failoverLabel = options.failover === 'auto' ? 'automatic (--watch)' : 'manual (pgwarden failover --yes after the first client error)';
  out.push(
    `pgwarden: ${pgwardenRounds.length} round(s); p1 + s1 + s2 (PostgreSQL 15, asynchronous streaming), PgBouncer transaction pooling; failover ${failoverLabel}`,
    '  settings: failover defaults (lostAfterSeconds 5, maxLagBytes 16 MiB, pauseTimeoutSeconds 10, catchUpTimeoutSeconds 30), the watcher\'s default intervals',
    '  switchover client: one INSERT every 10 ms on one connection through PgBouncer; failover probes: an INSERT every 100 ms on a new connection, on s1/s2 directly and through PgBouncer',
  );
  if (patroniRounds.length > 0) {
    out.push(`Patroni: ${patroniRounds.length} round(s); defaults: ${Object.entries(patroniDefaults).map(([name, value]) => `${name} ${String(value)}`).join(', ')}; same client probes`);
  }
  out.push(`load average (1 min) before ${load.before.map((v) => v.toFixed(1)).join(' / ')}, after ${load.after.map((v) => v.toFixed(1)).join(' / ')} (2 cores, shared)`, '');

  const rows: string[][] = [['tool', 'round', 'failover: kill → writable (s)', 'switchover stall (s)', 'failed client transactions', 'acknowledged rows lost']];
  for (const [index, round] of pgwardenRounds.entries()) {
    const failover = round.failover === undefined
      ? `not measured (${round.failoverError ?? '?'})`
      : `${s2(round.failover.direct.seconds)} on ${round.failover.direct.node}; ${s2(round.failover.pooled.seconds)} via PgBouncer${round.failover.mode === 'manual' ? ' (manual)' : ''}`;
    rows.push([
      'pgwarden', String(index + 1), failover,
      round.switchovers.map((one) => `${s2(one.longestGapS)} (→${one.to})`).join(', '),
      round.switchovers.map((one) => String(one.failedTransactions)).join(', '),
      round.switchovers.map((one) => String(one.lost)).join(', '),
    ]);
  }
  for (const [index, figures] of patroniRounds.entries()) {
    const { failover, switchover } = figures;
    rows.push([
      'Patroni', String(index + 1),
      failover === undefined ? 'not measured' : `${s2(failover.writesBack.seconds)} on ${failover.writesBack.node} (node lost)`,
      switchover === undefined ? '-' : `${s2(switchover.longestGapS)} (→${switchover.to})`,
      switchover === undefined ? '-' : String(switchover.failedTransactions),
      switchover === undefined ? '-' : String(switchover.lost),
    ]);
  }
  out.push(table(rows), '');

  const detail: string[][] = [['pgwarden round', 'measure', 'figure', 'detail']];
  for (const [index, round] of pgwardenRounds.entries()) {
    for (const one of round.switchovers) {
      detail.push([
        String(index + 1), `switchover ${one.from} → ${one.to}`, `${s2(one.longestGapS)} s stall`,
        `PAUSE→RESUME ${s2(one.pausedS)} s; pgwarden total ${s2(one.totalS)} s (rejoin included), wall ${s2(one.wallS)} s; ${one.committed} committed, ${one.failedTransactions} failed, ${one.failedConnects} failed reconnects, ${one.lost} lost`,
      ]);
    }
    const failover = round.failover;
    if (failover !== undefined) {
      const marks = failover.marks.map((mark) => `${mark.label} +${s2(mark.atS)} s`).join('; ');
      detail.push([
        String(index + 1), `kill -9 p1 postmaster (${failover.mode})`, `${s2(failover.direct.seconds)} s`,
        `first write on ${failover.direct.node} directly; via PgBouncer ${s2(failover.pooled.seconds)} s${failover.mode === 'auto' ? `; killed after a random ${s2(failover.waitedS)} s wait once the watcher had named p1 the primary` : ''}${marks === '' ? '' : `; ${marks}`}`,
      ]);
    }
  }
  out.push(table(detail));

  const failovers = pgwardenRounds.flatMap((round) => (round.failover === undefined ? [] : [round.failover.direct.seconds]));
  const pooledFailovers = pgwardenRounds.flatMap((round) => (round.failover === undefined ? [] : [round.failover.pooled.seconds]));
  const stalls = pgwardenRounds.flatMap((round) => round.switchovers.map((one) => one.longestGapS));
  const failed = pgwardenRounds.flatMap((round) => round.switchovers.map((one) => one.failedTransactions));
  out.push('', 'pgwarden against the goals:');
  if (failovers.length > 0) {
    out.push(`  failover kill → writable: median ${s2(median(failovers))} s, worst ${s2(Math.max(...failovers))} s directly; through PgBouncer median ${s2(median(pooledFailovers))} s, worst ${s2(Math.max(...pooledFailovers))} s (goal ≤ 15 s${options.failover === 'manual' ? '; manual path, not the automatic one' : ''})`);
  }
  out.push(`  switchover stall: median ${s2(median(stalls))} s, worst ${s2(Math.max(...stalls))} s (goal ≤ 2 s); failed client transactions: ${failed.reduce((a, b) => a + b, 0)} in ${stalls.length} switchovers (goal 0)`);
  for (const [index, figures] of patroniRounds.entries()) out.push('', `Patroni round ${index + 1}:`, patroniReport(figures));
  return out.join('\n');
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new UserError('bench/failover needs root', 'run it as root: the clusters, PgBouncer and pg_rewind run as the postgres OS user');
  const options = parseOptions(process.argv.slice(2));
  const load = { before: [loadavg()[0] ?? 0], after: [] as number[] };
  const pgwardenRounds: PgwardenRound[] = [];
  const patroniRounds: PatroniFigures[] = [];
  for (let round = 1; round <= options.rounds; round += 1) {
    if (round > 1) load.before.push(loadavg()[0] ?? 0);
    pgwardenRounds.push(await pgwardenRound(options, round));
    if (options.patroni) {
      console.error(`… Patroni round ${round}`);
      try {
        patroniRounds.push(await runPatroniBench(['switchover', 'restart', 'failover'], 1));
      } catch (error) {
        console.error(`Patroni round ${round} failed: ${messageOf(error)}`);
      }
    }
    load.after.push(loadavg()[0] ?? 0);
  }
  console.log(report(options, pgwardenRounds, patroniRounds, load));
}

main().catch((error: unknown) => {
  process.exitCode = 1;
  if (!isUserError(error)) throw error;
  console.error(`bench/failover: ${error.message}${error.hint === undefined ? '' : `: ${error.hint}`}`);
});
