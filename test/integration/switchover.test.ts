// `pgwarden switchover` end to end (issue 6 item 3) on the shared fixture (test/support/failover-cluster.ts):
// a primary p1, standbys s1 and s2, a real PgBouncer in transaction pooling, the real command line.
// - the fixture itself: roles, slots, application names, PgBouncer pointing at the primary;
// - refusals, with nothing changed: --to the primary, --to an unknown node, a candidate that lags
//   beyond maxLagBytes; --dry-run prints the plan and changes nothing;
// - a step that fails in the middle (the candidate's replay paused, so the catch-up times out):
//   PgBouncer resumed (paused=0, queries go through), p1 still the primary and taking writes, s1
//   still a standby;
// - Ctrl-C while it waits for the candidate: the same state as a failure, within seconds;
// - the switchover under pgbench load through PgBouncer: zero failed transactions, every
//   acknowledged row on the new primary, writes before and after on both primaries, p1 a
//   streaming standby of s1, s2 following s1, PgBouncer pointing at s1 and not paused.
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../support/cluster.js';
import { createFailoverCluster, pgbouncerState, queryDsn, roleOf, type FailoverCluster } from '../support/failover-cluster.js';

const PGBENCH = '/usr/lib/postgresql/15/bin/pgbench';

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** The built command line, as root (pg_ctl and pg_rewind go through runuser as postgres). */
function pgwarden(args: readonly string[], timeoutMs = 180_000): Promise<Run> {
  return new Promise((done) => {
    execFile(process.execPath, ['bin/pgwarden.js', ...args], { timeout: timeoutMs, env: { ...process.env } }, (error, stdout, stderr) => {
      done({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr });
    });
  });
}

/** pgbench through PgBouncer, without the caller's PG* variables. */
function pgbench(args: readonly string[]): Promise<Run> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('PG')));
  return new Promise((done) => {
    execFile(PGBENCH, [...args], { timeout: 120_000, env }, (error, stdout, stderr) => {
      done({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr });
    });
  });
}

let fixture: FailoverCluster;
let work: string;

beforeAll(async () => {
  fixture = await createFailoverCluster({ name: 'sw' });
  work = await mkdtemp(join(tmpdir(), 'pgwarden-switchover-'));
  await fixture.node('p1').sql('create table acked (id bigserial primary key, client int not null, port int not null default inet_server_port())');
});

afterAll(async () => {
  await fixture.cleanup();
  await rm(work, { recursive: true, force: true });
});

async function pointsAt(port: number): Promise<void> {
  const state = await pgbouncerState(fixture.bouncer!);
  expect(state.paused).not.toBe(true);
  expect(state.databases['app']).toMatchObject({ port, paused: 0 });
  expect((await queryDsn(fixture.appDsn(), 'select inet_server_port() as port'))[0]).toEqual({ port });
}

describe('the failover fixture', () => {
  it('has a primary, two standbys streaming by name through their slots, and PgBouncer pointing at the primary', async () => {
    const p1 = fixture.node('p1');
    expect(await roleOf(p1)).toMatchObject({ inRecovery: false, streamingTo: ['s1', 's2'] });
    expect(await roleOf(fixture.node('s1'))).toMatchObject({ inRecovery: true, upstreamPort: p1.port });
    expect(await roleOf(fixture.node('s2'))).toMatchObject({ inRecovery: true, upstreamPort: p1.port });
    const slots = await p1.sql('select slot_name from pg_replication_slots where active order by 1');
    expect(slots.map((row) => row['slot_name'])).toEqual(['replica_s1', 'replica_s2']);
    expect((await p1.sql('show wal_log_hints'))[0]).toEqual({ wal_log_hints: 'on' });
    await pointsAt(p1.port);
    const config = JSON.parse(await readFile(fixture.configPath, 'utf8')) as { clusters: { nodes: { name: string; dataDir: string }[] }[] };
    expect(config.clusters[0]?.nodes.map((node) => [node.name, node.dataDir])).toEqual([['p1', p1.dataDir], ['s1', fixture.node('s1').dataDir], ['s2', fixture.node('s2').dataDir]]);
  });
});

describe('refusals and the dry run', () => {
  it('refuses --to the primary itself and --to an unknown node, and changes nothing', async () => {
    const self = await pgwarden(['switchover', '--config', fixture.configPath, '--to', 'p1', '--yes']);
    expect(self.code).toBe(1);
    expect(self.stderr).toMatch(/switchover refused, nothing was changed: p1 is already the primary/);
    expect(self.stderr).toMatch(/hint: pass --to with the standby to promote \(s1, s2\)/);
    const unknown = await pgwarden(['switchover', '--config', fixture.configPath, '--to', 'nosuch', '--yes']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/no node named "nosuch"/);
    expect(unknown.stderr).toMatch(/one of p1, s1, s2/);
    const usage = await pgwarden(['switchover', '--config', fixture.configPath]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/needs --to NODE/);
    expect((await roleOf(fixture.node('p1'))).inRecovery).toBe(false);
    await pointsAt(fixture.node('p1').port);
  });

  it('refuses a candidate that lags beyond maxLagBytes', async () => {
    const p1 = fixture.node('p1');
    const s2 = fixture.node('s2');
    const config = await fixture.writeConfig('lag', (json) => {
      json.clusters[0]!.failover = { maxLagBytes: 65_536 };
    });
    await s2.sql('select pg_wal_replay_pause()');
    try {
      await p1.sql('create table filler as select g as id, repeat(\'x\', 100) as pad from generate_series(1, 20000) g');
      // s2 received the WAL (it streams) but has not replayed it.
      const [primaryLsn] = await p1.sql('select pg_current_wal_lsn()::text as lsn');
      await waitFor('s2 to receive the filler', async () => {
        const [row] = await s2.sql(`select pg_last_wal_receive_lsn() >= '${String(primaryLsn?.['lsn'])}'::pg_lsn as done`);
        return row?.['done'] === true;
      });
      const run = await pgwarden(['switchover', '--config', config, '--to', 's2', '--yes']);
      expect(run.code).toBe(1);
      expect(run.stderr).toMatch(/switchover refused, nothing was changed: s2 has [\d.]+ [kKMG]i?B of WAL still to replay, more than failover.maxLagBytes \(64(\.0)? kB\)/);
      expect(run.stderr).toMatch(/hint: wait until s2 has caught up/);
    } finally {
      await s2.sql('select pg_wal_replay_resume()');
      await p1.sql('drop table if exists filler');
    }
    expect((await roleOf(p1)).inRecovery).toBe(false);
    expect((await roleOf(s2)).inRecovery).toBe(true);
    await pointsAt(p1.port);
  });

  it('--dry-run prints every step and changes nothing', async () => {
    const run = await pgwarden(['switchover', '--config', fixture.configPath, '--to', 's1', '--dry-run']);
    expect(run.code, run.stderr).toBe(0);
    const p1 = fixture.node('p1');
    expect(run.stdout).toContain('Switchover of cluster main: p1 (primary');
    expect(run.stdout).toContain('other standbys that follow: s2');
    expect(run.stdout).toMatch(/dbname=pgbouncer" -c PAUSE/);
    expect(run.stdout).toContain(`pg_ctl stop -D ${p1.dataDir} -m fast -w`);
    expect(run.stdout).toContain('select pg_promote(true, 60)');
    expect(run.stdout).toMatch(/dbname=pgbouncer" -c RESUME/);
    expect(run.stdout).toContain("alter system set primary_slot_name = 'replica_s2'");
    expect(run.stdout).toContain(`pg_rewind --target-pgdata ${p1.dataDir}`);
    expect(run.stdout).toContain('Dry run: every check passed; nothing was changed.');
    const json = await pgwarden(['switchover', '--config', fixture.configPath, '--to', 's1', '--dry-run', '--json']);
    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.stdout) as { plan: { primary: string; candidate: string; followers: string[]; steps: { title: string }[] } };
    expect(parsed.plan).toMatchObject({ primary: 'p1', candidate: 's1', followers: ['s2'] });
    expect(parsed.plan.steps.length).toBe(12);
    expect((await roleOf(p1)).inRecovery).toBe(false);
    await pointsAt(p1.port);
  });

  it('goes ahead only when the target\'s name is typed', async () => {
    const run = await new Promise<Run>((done) => {
      const child = execFile(process.execPath, ['bin/pgwarden.js', 'switchover', '--config', fixture.configPath, '--to', 's1'], { timeout: 60_000 }, (error, stdout, stderr) => {
        done({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr });
      });
      child.stdin?.end('s2\n');
    });
    expect(run.code).toBe(1);
    expect(run.stdout).toContain('Type s1 to go ahead');
    expect(run.stderr).toMatch(/not confirmed.*nothing was changed/);
    expect((await roleOf(fixture.node('p1'))).inRecovery).toBe(false);
  });
});

describe('a step that fails in the middle', () => {
  it('a transaction in flight keeps PAUSE from draining: given up, PgBouncer resumed, nothing changed', { timeout: 120_000 }, async () => {
    const p1 = fixture.node('p1');
    const config = await fixture.writeConfig('short-pause', (json) => {
      json.clusters[0]!.failover = { pauseTimeoutSeconds: 1 };
    });
    const holder = new pg.Client({ connectionString: fixture.appDsn() });
    holder.on('error', () => undefined);
    await holder.connect();
    try {
      await holder.query('begin');
      await holder.query('insert into acked (client) values (-4)');
      const run = await pgwarden(['switchover', '--config', config, '--to', 's1', '--yes']);
      expect(run.code).toBe(1);
      expect(run.stderr).toMatch(/switchover stopped before anything changed: PgBouncer's PAUSE did not complete within 1 s.*PgBouncer was resumed.*p1 is still the primary/);
      expect(run.stderr).not.toMatch(/stopping p1/);
      // The transaction that held the pause still commits on p1.
      await holder.query('commit');
    } finally {
      await holder.end().catch(() => undefined);
    }
    await pointsAt(p1.port);
    expect((await roleOf(p1)).inRecovery).toBe(false);
    expect(await p1.sql('select count(*)::int as n from acked where client = -4')).toEqual([{ n: 1 }]);
  });


  it('the candidate cannot catch up: PgBouncer resumed, the old primary still primary and taking writes, the candidate still a standby', { timeout: 180_000 }, async () => {
    const p1 = fixture.node('p1');
    const s1 = fixture.node('s1');
    const config = await fixture.writeConfig('slow-catch-up', (json) => {
      json.clusters[0]!.failover = { catchUpTimeoutSeconds: 2 };
    });
    await s1.sql('select pg_wal_replay_pause()');
    let run: Run;
    try {
      run = await pgwarden(['switchover', '--config', config, '--to', 's1', '--yes']);
    } finally {
      await s1.sql('select pg_wal_replay_resume()');
    }
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/s1 had not replayed the old primary's last checkpoint .* within 2 s/);
    expect(run.stderr).toMatch(/The old primary p1 is still the primary \(restarted\), s1 is still a standby, PgBouncer was resumed/);
    // PgBouncer is not paused and still sends clients to p1, which takes writes.
    await pointsAt(p1.port);
    await queryDsn(fixture.appDsn(), 'insert into acked (client) values (-1)');
    expect(await roleOf(p1)).toMatchObject({ inRecovery: false });
    expect((await roleOf(s1)).inRecovery).toBe(true);
    // Both standbys stream from p1 again.
    await waitFor('s1 and s2 to stream from p1 again', async () => (await roleOf(p1)).streamingTo.join(',') === 's1,s2');
  });
});

describe('Ctrl-C during the run', () => {
  it('before the promotion: stops the wait, restarts the old primary, resumes PgBouncer, says so', { timeout: 180_000 }, async () => {
    const p1 = fixture.node('p1');
    const s1 = fixture.node('s1');
    const config = await fixture.writeConfig('interrupt', (json) => {
      json.clusters[0]!.failover = { catchUpTimeoutSeconds: 120 };
    });
    await s1.sql('select pg_wal_replay_pause()');
    let run: Run & { afterSignalMs: number };
    try {
      run = await new Promise((done) => {
        const child = spawn(process.execPath, ['bin/pgwarden.js', 'switchover', '--config', config, '--to', 's1', '--yes'], { stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        let signalledAt = 0;
        child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
        child.stderr.on('data', (chunk: Buffer) => {
          stderr += chunk.toString();
          if (signalledAt === 0 && stderr.includes('waiting for s1 to replay it')) {
            signalledAt = Date.now();
            child.kill('SIGINT');
          }
        });
        child.once('exit', (code) => done({ code: code ?? -1, stdout, stderr, afterSignalMs: Date.now() - signalledAt }));
      });
    } finally {
      await s1.sql('select pg_wal_replay_resume()');
    }
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/SIGINT: stopping the current step/);
    expect(run.stderr).toMatch(/interrupted \(SIGINT\)/);
    expect(run.stderr).toMatch(/The old primary p1 is still the primary \(restarted\), s1 is still a standby, PgBouncer was resumed/);
    expect(run.afterSignalMs).toBeLessThan(15_000);
    await pointsAt(p1.port);
    await queryDsn(fixture.appDsn(), 'insert into acked (client) values (-3)');
    expect((await roleOf(s1)).inRecovery).toBe(true);
    await waitFor('s1 and s2 to stream from p1 again', async () => (await roleOf(p1)).streamingTo.join(',') === 's1,s2');
  });
});

describe('switchover under load through PgBouncer', () => {
  it('loses no transaction and no acknowledged row; the old primary and the other standby follow the new primary', { timeout: 240_000 }, async () => {
    const p1 = fixture.node('p1');
    const s1 = fixture.node('s1');
    const s2 = fixture.node('s2');
    await p1.sql('truncate acked');
    const script = join(work, 'insert.sql');
    await writeFile(script, 'insert into acked (client) values (:client_id);\n');
    const load = pgbench(['-n', '-c', '4', '-j', '2', '-T', '12', '-f', script, '-h', '127.0.0.1', '-p', String(fixture.pgbouncerPort), '-U', 'postgres', 'app']);
    await waitFor('pgbench to write through PgBouncer', async () => Number((await p1.sql('select count(*)::int as n from acked'))[0]?.['n']) > 200);

    const run = await pgwarden(['switchover', '--config', fixture.configPath, '--to', 's1', '--yes']);
    const bench = await load;
    expect(run.stderr).toMatch(/pausing PgBouncer/);
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
    expect(run.stdout).toMatch(/Switchover done: s1 is the primary of cluster main \(was p1\)/);
    expect(run.stdout).toMatch(/following s1: s2, p1/);
    const stall = Number(/write stall: ([\d.]+) s/.exec(run.stdout)?.[1]);
    expect(stall).toBeGreaterThan(0);
    process.stderr.write(`switchover write stall: ${stall} s\n`);

    // Zero failed client transactions.
    expect(bench.code, `${bench.stdout}\n${bench.stderr}`).toBe(0);
    expect(bench.stderr).not.toMatch(/aborted|error/i);
    expect(bench.stdout).toMatch(/number of failed transactions: 0 /);
    const processed = Number(/number of transactions actually processed: (\d+)/.exec(bench.stdout)?.[1]);
    expect(processed).toBeGreaterThan(200);

    // Every acknowledged row is on the new primary; writes went to both primaries during the run.
    const [counts] = await s1.sql(`select count(*)::int as total, count(*) filter (where port = ${p1.port})::int as before, count(*) filter (where port = ${s1.port})::int as after from acked`);
    expect(counts?.['total']).toBe(processed);
    expect(Number(counts?.['before'])).toBeGreaterThan(0);
    expect(Number(counts?.['after'])).toBeGreaterThan(0);

    // s1 is the primary; p1 (rewound) and s2 stream from it; PgBouncer points at s1, not paused.
    expect(await roleOf(s1)).toMatchObject({ inRecovery: false, streamingTo: ['p1', 's2'] });
    expect(await roleOf(p1)).toMatchObject({ inRecovery: true, upstreamPort: s1.port });
    expect(await roleOf(s2)).toMatchObject({ inRecovery: true, upstreamPort: s1.port });
    const slots = await s1.sql('select slot_name from pg_replication_slots where active order by 1');
    expect(slots.map((row) => row['slot_name'])).toEqual(['replica_p1', 'replica_s2']);
    // The slots p1 kept for s1 and s2 are gone: on a standby they would hold WAL forever.
    expect(await p1.sql('select slot_name from pg_replication_slots')).toEqual([]);
    await pointsAt(s1.port);
    expect(await readFile(fixture.iniPath!, 'utf8')).toMatch(new RegExp(`^app = host=127\\.0\\.0\\.1 port=${s1.port} dbname=postgres$`, 'm'));
    // A write through PgBouncer reaches the old primary, now a standby, by replication.
    const [row] = await queryDsn(fixture.appDsn(), 'insert into acked (client) values (-2) returning id');
    await waitFor('the new row on p1', async () => (await p1.sql(`select 1 from acked where id = ${String(row?.['id'])}`)).length === 1);
  });
});
