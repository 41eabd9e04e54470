/**
 * bench/refresh-cost: what one refresh costs the server and the client, pgwarden against
 * pg_activity, on the same load in the same run: 400 client connections (mostly idle) and a light
 * TPC-B load from pgbench. Server time comes from pg_stat_statements (each tool connects as its
 * own role), client CPU and RSS from /proc. Prints figures; asserts nothing.
 *
 *   npm run bench            (builds dist/ first; needs pgbench, pg_activity and tmux)
 *   BENCH_SECONDS=60 npm run bench
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import pg from 'pg';
import { createPrimary, destroyAll, waitFor, type TestCluster } from '../test/support/cluster.js';

const run = promisify(execFile);
const seconds = Number(process.env['BENCH_SECONDS'] ?? 30);
const idleConnections = Number(process.env['BENCH_IDLE'] ?? 400);
const refreshMs = 2000;
const pgBin = process.env['PGWARDEN_TEST_PG_BIN'] ?? '/usr/lib/postgresql/15/bin';
const clockTicks = 100; // USER_HZ on Linux

interface Usage { cpuSeconds: number; rssBytes: number }

/** CPU seconds (user + system) and resident memory of a process and its children's live threads. */
function usage(pid: number): Usage {
  if (!existsSync(`/proc/${pid}`)) throw new Error(`process ${pid} is gone`);
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const cpuSeconds = (Number(fields[11]) + Number(fields[12])) / clockTicks;
  const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return { cpuSeconds, rssBytes: Number(rss?.[1] ?? 0) * 1024 };
}

async function statementTime(cluster: TestCluster, role: string): Promise<{ ms: number; calls: number }> {
  const rows = await cluster.sql(`select coalesce(sum(total_exec_time + total_plan_time), 0)::float8 as ms, coalesce(sum(calls), 0)::int8 as calls
                                    from pg_stat_statements s join pg_roles r on r.oid = s.userid where r.rolname = '${role}'`);
  return { ms: Number(rows[0]?.['ms'] ?? 0), calls: Number(rows[0]?.['calls'] ?? 0) };
}

async function topStatements(cluster: TestCluster, role: string): Promise<string[]> {
  const rows = await cluster.sql(`select round((total_exec_time + total_plan_time)::numeric, 1)::text as ms, calls::text as calls, left(regexp_replace(query, '\\s+', ' ', 'g'), 70) as query
                                    from pg_stat_statements s join pg_roles r on r.oid = s.userid where r.rolname = '${role}'
                                   order by total_exec_time + total_plan_time desc limit 6`);
  return rows.map((row) => `    ${String(row['ms']).padStart(9)} ms  ${String(row['calls']).padStart(5)} calls  ${String(row['query'])}`);
}

interface Measured { tool: string; refreshes: number; serverMs: number; calls: number; cpuSeconds: number; rssStart: number; rssEnd: number }

/** Samples the process over the window (after a warm-up) and the server time its role used. */
async function measure(tool: string, cluster: TestCluster, role: string, pid: number, onStart: () => void, refreshes: () => Promise<number>): Promise<Measured> {
  await new Promise((resolve) => setTimeout(resolve, 4000)); // warm-up: connections, first snapshots
  onStart();
  const before = usage(pid);
  const serverBefore = await statementTime(cluster, role);
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  const after = usage(pid);
  const serverAfter = await statementTime(cluster, role);
  return {
    tool,
    refreshes: await refreshes(),
    serverMs: serverAfter.ms - serverBefore.ms,
    calls: serverAfter.calls - serverBefore.calls,
    cpuSeconds: after.cpuSeconds - before.cpuSeconds,
    rssStart: before.rssBytes,
    rssEnd: after.rssBytes,
  };
}

async function main(): Promise<void> {
  process.stderr.write(`creating a cluster with ${idleConnections} idle connections and a light pgbench load…\n`);
  const cluster = await createPrimary({ name: 'bench', preload: ['pg_stat_statements'], maxConnections: idleConnections + 60, settings: { shared_buffers: '128MB' } });
  const clients: pg.Client[] = [];
  let pgbench: ChildProcess | undefined;
  let tmuxSession: string | undefined;
  try {
    await cluster.sql('create extension pg_stat_statements');
    await cluster.sql('create role bench_pgwarden login superuser; create role bench_pgactivity login superuser');
    await run(`${pgBin}/pgbench`, ['-i', '-s', '10', '-q', '-h', '127.0.0.1', '-p', String(cluster.port), '-U', 'postgres', 'postgres']);
    for (let i = 0; i < idleConnections; i++) {
      const client = new pg.Client({ connectionString: cluster.dsn(), application_name: 'bench-idle' });
      client.on('error', () => undefined);
      await client.connect();
      clients.push(client);
    }
    const total = 2 * (seconds + 15) + 30;
    pgbench = spawn(`${pgBin}/pgbench`, ['-n', '-c', '4', '-j', '2', '-R', '100', '-T', String(total), '-h', '127.0.0.1', '-p', String(cluster.port), '-U', 'postgres', 'postgres'], { stdio: 'ignore' });

    // pgwarden: the runner as the console drives it, every probe at its default cadence.
    const refresher = spawn(process.execPath, ['bench/refresher.mjs', cluster.dsn('postgres', 'bench_pgwarden'), String(refreshMs)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    refresher.stdout?.on('data', (chunk: Buffer) => { output += chunk.toString(); });
    const refreshLines = (): string[] => output.split('\n').filter((line) => line.startsWith('refresh'));
    await waitFor('the first pgwarden refresh', async () => refreshLines().length > 0);
    let countAtStart = 0;
    const pgwarden = await measure('pgwarden', cluster, 'bench_pgwarden', refresher.pid ?? 0, () => {
      countAtStart = refreshLines().length;
    }, async () => refreshLines().length - countAtStart);
    const failures = refreshLines().filter((line) => line.startsWith('refresh failed'));
    if (failures.length > 0) process.stderr.write(`pgwarden probe failures: ${failures.slice(0, 3).join(' | ')}\n`);
    refresher.kill('SIGTERM');

    // pg_activity in a real terminal (it needs one), at the same refresh interval.
    tmuxSession = `pgwarden-bench-${process.pid}`;
    await run('tmux', ['new-session', '-d', '-s', tmuxSession, '-x', '200', '-y', '50',
      `pg_activity --refresh ${refreshMs / 1000} -h 127.0.0.1 -p ${cluster.port} -U bench_pgactivity -d postgres`]);
    const { stdout: panePid } = await run('tmux', ['list-panes', '-t', tmuxSession, '-F', '#{pane_pid}']);
    const pgActivity = await measure('pg_activity', cluster, 'bench_pgactivity', Number(panePid.trim()), () => undefined, async () => Math.round(seconds * 1000 / refreshMs));

    const { stdout: version } = await run('pg_activity', ['--version']);
    const rows = [pgwarden, pgActivity].map((m) => {
      const perRefresh = (x: number): string => (x / Math.max(1, m.refreshes)).toFixed(2);
      return `${m.tool.padEnd(12)} ${String(m.refreshes).padStart(9)} ${perRefresh(m.serverMs).padStart(17)} ${(m.calls / Math.max(1, m.refreshes)).toFixed(1).padStart(15)} ${perRefresh(m.cpuSeconds * 1000).padStart(15)} ${(100 * m.cpuSeconds / seconds).toFixed(1).padStart(6)} ${(m.rssEnd / 2 ** 20).toFixed(1).padStart(8)}`;
    });
    process.stdout.write([
      `refresh-cost: ${idleConnections} idle connections, pgbench TPC-B at 100 tps, ${seconds} s measured per tool, refresh every ${refreshMs} ms`,
      `peer: ${version.trim()}; pg_activity refreshes are estimated as window / interval`,
      '',
      'tool         refreshes  server ms/refresh  queries/refresh  client CPU ms/r   CPU %   RSS MB',
      ...rows,
      '',
      `server time ratio pgwarden / pg_activity: ${((pgwarden.serverMs / Math.max(1, pgwarden.refreshes)) / Math.max(0.001, pgActivity.serverMs / Math.max(1, pgActivity.refreshes))).toFixed(2)} (goal <= 0.33)`,
      `client CPU ratio pgwarden / pg_activity: ${(pgwarden.cpuSeconds / Math.max(0.001, pgActivity.cpuSeconds)).toFixed(2)} (goal <= 1)`,
      '',
      'pgwarden, heaviest statements over the whole run:',
      ...(await topStatements(cluster, 'bench_pgwarden')),
      'pg_activity, heaviest statements over the whole run:',
      ...(await topStatements(cluster, 'bench_pgactivity')),
      '',
    ].join('\n'));
  } finally {
    if (tmuxSession !== undefined) await run('tmux', ['kill-session', '-t', tmuxSession]).catch(() => undefined);
    pgbench?.kill();
    await Promise.all(clients.map((client) => client.end().catch(() => undefined)));
    await destroyAll();
  }
}

await main();
