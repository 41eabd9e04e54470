// `pgwarden replica create` and `pgwarden replica list` end to end (issue 6 item 2): a real primary
// whose replication user needs a password (scram-sha-256 in pg_hba.conf), the real command line run
// as root (so pg_basebackup and pg_ctl go through runuser as postgres), and:
// - a replica that streams: a row inserted on the primary appears on it, its slot is active, the
//   password is nowhere in its settings nor in the output, and `replica list` shows it with its lag,
//   its node, its connection string and fit for reporting queries;
// - --dry-run: the checks and the plan, nothing created;
// - refusals with nothing created: a target directory that is not empty; a standby that could not
//   authenticate on its own (no passfile);
// - a failure midway: the port taken after the checks, so the start fails: the slot is dropped and
//   the directory it created removed;
// - Ctrl-C while pg_basebackup copies: every program it ran is gone (pg_basebackup -X stream forks
//   a WAL receiver), the slot is dropped and the directory removed.
import { execFile, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { chmod, chown, readdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresScratch } from '../support/as-postgres.js';
import { pgwarden } from '../support/cli.js';
import { createPrimary, destroyAll, freePort, waitFor, type TestCluster } from '../support/cluster.js';

const execFileAsync = promisify(execFile);
const PG_BIN = '/usr/lib/postgresql/15/bin';
const SECRET = 'Repl1ca-S3cret';

const scratch = new PostgresScratch('replica');
let primary: TestCluster;
let work: string;
/** The config: one node, the primary, reached as the password-protected replication user. */
let configFile: string;
/** A passfile the standby reads (owned by postgres, mode 0600). */
let passfile: string;

async function slots(): Promise<Record<string, unknown>[]> {
  return primary.sql('select slot_name, active from pg_replication_slots order by slot_name');
}

async function queryOn(port: number, text: string): Promise<Record<string, unknown>[]> {
  const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return (await client.query(text)).rows as Record<string, unknown>[];
  } finally {
    await client.end();
  }
}

/** Stops a server pgwarden started in `dir` (at the end, whatever happened). */
function stopAtEnd(dir: string): void {
  scratch.onCleanUp(async () => {
    if (existsSync(join(dir, 'postmaster.pid'))) {
      await execFileAsync('runuser', ['-u', 'postgres', '--', join(PG_BIN, 'pg_ctl'), 'stop', '-D', dir, '-m', 'immediate', '-w']).catch(() => undefined);
    }
  });
}

beforeAll(async () => {
  primary = await createPrimary({ name: 'replica-primary' });
  await primary.sql(`create role replicator login replication password '${SECRET}'; grant pg_monitor to replicator; create table t (id int primary key)`);
  // The replication user must authenticate with its password over TCP; postgres keeps trust.
  const hba = join(primary.dataDir, 'pg_hba.conf');
  const rules = 'host replication replicator 127.0.0.1/32 scram-sha-256\nhost all replicator 127.0.0.1/32 scram-sha-256\n';
  await writeFile(hba, rules + (await readFile(hba, 'utf8')));
  await primary.sql('select pg_reload_conf()');
  work = await scratch.dir('work');
  configFile = join(work, 'pgwarden.json');
  await writeFile(configFile, JSON.stringify({ clusters: [{ name: 'main', nodes: [{ name: 'db1', dsn: `postgresql://replicator:${SECRET}@127.0.0.1:${primary.port}/postgres` }] }] }));
  passfile = join(work, 'standby.pgpass');
  await writeFile(passfile, `127.0.0.1:${primary.port}:*:replicator:${SECRET}\n`, { mode: 0o600 });
  await chown(passfile, ...(await scratch.owner()));
  await chmod(passfile, 0o600);
});

afterAll(async () => {
  await scratch.cleanUp();
  await destroyAll();
});

describe('replica create', () => {
  it('builds a streaming replica through a slot, without its password anywhere, and replica list shows it fit for reporting', async () => {
    const dataDir = join(await scratch.dir('r1'), 'data');
    stopAtEnd(dataDir);
    const port = await freePort();
    const run = await pgwarden(['replica', 'create', '--config', configFile, '--data-dir', dataDir, '--port', String(port), '--name', 'r1', '--passfile', passfile]);
    expect(run.stderr + run.stdout).not.toContain(SECRET);
    expect(run.code, run.stderr).toBe(0);
    // The plan came first, with the exact SQL and command line.
    expect(run.stdout).toContain("select pg_create_physical_replication_slot('replica_r1', true);");
    expect(run.stdout).toMatch(/runuser -u postgres -- \S+pg_basebackup -D \S+ -X stream -S replica_r1 -R -c fast/);
    expect(run.stdout.indexOf('Plan:')).toBeLessThan(run.stdout.indexOf('streams from db1'));
    expect(run.stdout).toContain(`postgresql://replicator@127.0.0.1:${port}/postgres`);
    expect(run.stdout).toContain('{"name":"r1","dsn":');

    // Streaming through its slot; the settings carry the passfile, never the password.
    const auto = await readFile(join(dataDir, 'postgresql.auto.conf'), 'utf8');
    expect(auto).not.toContain(SECRET);
    expect(auto).not.toMatch(/password\s*=/);
    expect(auto).toContain(`passfile=${passfile}`);
    expect(auto).toMatch(/hot_standby_feedback = 'on'/);
    expect(existsSync(join(dataDir, 'standby.signal'))).toBe(true);
    expect(await slots()).toContainEqual({ slot_name: 'replica_r1', active: true });
    const [receiver] = await queryOn(port, 'select status, slot_name from pg_stat_wal_receiver');
    expect(receiver).toEqual({ status: 'streaming', slot_name: 'replica_r1' });

    // A row written on the primary reaches it.
    await primary.sql('insert into t values (42)');
    await waitFor('row 42 on the replica', async () => (await queryOn(port, 'select id from t where id = 42')).length === 1);
    expect(await queryOn(port, 'select pg_is_in_recovery() as standby')).toEqual([{ standby: true }]);

    // replica list: as the primary sees it, with the configured node's connection string.
    const withNode = join(work, 'with-r1.json');
    await writeFile(withNode, JSON.stringify({ clusters: [{ name: 'main', nodes: [
      { name: 'db1', dsn: `postgresql://replicator:${SECRET}@127.0.0.1:${primary.port}/postgres` },
      { name: 'r1', dsn: `postgresql://postgres@127.0.0.1:${port}/postgres` },
    ] }] }));
    const listed = await pgwarden(['replica', 'list', '--config', withNode, '--json']);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).not.toContain(SECRET);
    const doc = JSON.parse(listed.stdout);
    expect(doc.primary).toEqual({ node: 'db1', connection: `postgresql://replicator@127.0.0.1:${primary.port}/postgres` });
    const standby = doc.standbys.find((s: { application: string }) => s.application === 'r1');
    expect(standby).toMatchObject({ client: '127.0.0.1', state: 'streaming', sync_state: 'async', slot: 'replica_r1', node: 'r1' });
    expect(typeof standby.replay_lag_bytes).toBe('number');
    expect(standby.replay_lag_bytes).toBeGreaterThanOrEqual(0);
    expect(doc.read_replicas).toEqual([{ node: 'r1', connection: `postgresql://postgres@127.0.0.1:${port}/postgres`, fit_for_reporting: true, reason: expect.stringMatching(/^streaming, /) }]);
    expect(doc.reporting_connection).toBe(`postgresql://replicator@127.0.0.1:${port},127.0.0.1:${primary.port}/postgres?target_session_attrs=prefer-standby`);
    expect(doc.idle_slots).toEqual([]);
    expect(doc.thresholds).toEqual({ warning_bytes: 100 * 1024 * 1024, warning_seconds: 60 });

    const text = await pgwarden(['replica', 'list', '--config', withNode]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/^r1\s+127\.0\.0\.1\s+streaming\s+async\s+replica_r1\s+.+\s+r1$/m);
    expect(text.stdout).toContain('fit for reporting queries: streaming');

    // Stopped, the replica's slot shows as unused and the node as not fit.
    await execFileAsync('runuser', ['-u', 'postgres', '--', join(PG_BIN, 'pg_ctl'), 'stop', '-D', dataDir, '-m', 'fast', '-w']);
    await waitFor('the slot to be released', async () => (await slots()).some((s) => s['slot_name'] === 'replica_r1' && s['active'] === false));
    const down = JSON.parse((await pgwarden(['replica', 'list', '--config', withNode, '--json'])).stdout);
    expect(down.idle_slots.map((s: { name: string }) => s.name)).toEqual(['replica_r1']);
    expect(down.read_replicas).toEqual([]);
    expect(down.unreachable.map((u: { node: string }) => u.node)).toEqual(['r1']);
    await primary.sql("select pg_drop_replication_slot('replica_r1')");
  }, 120_000);

  it('refuses a target directory that is not empty and creates nothing', async () => {
    const dataDir = await scratch.dir('busy');
    await writeFile(join(dataDir, 'keep.txt'), 'the DBA\'s file');
    const run = await pgwarden(['replica', 'create', '--config', configFile, '--data-dir', dataDir, '--name', 'r2', '--passfile', passfile]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('refused, nothing was changed');
    expect(run.stderr).toContain(`${dataDir} is not empty`);
    expect(run.stdout).not.toContain('Plan:');
    expect(await readdir(dataDir)).toEqual(['keep.txt']);
    expect((await slots()).map((s) => s['slot_name'])).not.toContain('replica_r2');
  });

  it('--dry-run runs the checks and prints the plan, and changes nothing', async () => {
    const dataDir = join(await scratch.dir('dry'), 'data');
    const run = await pgwarden(['replica', 'create', '--config', configFile, '--data-dir', dataDir, '--name', 'r5', '--passfile', passfile, '--dry-run']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain("select pg_create_physical_replication_slot('replica_r5', true);");
    expect(run.stdout).toContain(`primary_conninfo = 'host=127.0.0.1 port=${primary.port} user=replicator application_name=r5 sslmode=prefer passfile=${passfile}'`);
    expect(run.stdout).toContain('every check passed; nothing was changed');
    expect(run.stdout).not.toContain(SECRET);
    expect(existsSync(dataDir)).toBe(false);
    expect((await slots()).map((s) => s['slot_name'])).not.toContain('replica_r5');
  });

  it('refuses when the standby could not authenticate on its own (no passfile), naming the fix', async () => {
    const dataDir = join(await scratch.dir('nopass'), 'data');
    const run = await pgwarden(['replica', 'create', '--config', configFile, '--data-dir', dataDir, '--name', 'r4']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('the standby could not authenticate');
    expect(run.stderr).toContain('--passfile FILE');
    expect(run.stderr).not.toContain(SECRET);
    expect(existsSync(dataDir)).toBe(false);
    expect((await slots()).map((s) => s['slot_name'])).not.toContain('replica_r4');
  });

  it('undoes a run that fails midway: the port taken before the start, so the slot is dropped and the directory removed', async () => {
    const dataDir = join(await scratch.dir('r3'), 'data');
    stopAtEnd(dataDir);
    const port = await freePort();
    const running = pgwarden(['replica', 'create', '--config', configFile, '--data-dir', dataDir, '--port', String(port), '--name', 'r3', '--passfile', passfile]);
    // The checks ran before the directory was created; take the port while pg_basebackup copies.
    await waitFor('the replica directory to appear', async () => existsSync(dataDir), { intervalMs: 5, timeoutMs: 30_000 });
    const blocker: Server = createServer();
    await new Promise<void>((done) => blocker.listen(port, '127.0.0.1', done));
    try {
      const run = await running;
      expect(run.code, run.stdout + run.stderr).toBe(1);
      expect(run.stdout).toContain('Plan:');
      expect(run.stderr).toContain('failed at step 4');
      expect(run.stderr).toContain(`port ${port} on this host is already in use`);
      expect(run.stderr).toContain('dropped slot replica_r3');
      expect(run.stderr).toContain(`removed ${dataDir}`);
      expect(run.stderr).toContain('Nothing is left behind.');
    } finally {
      await new Promise((done) => blocker.close(done));
    }
    expect(existsSync(dataDir)).toBe(false);
    expect((await slots()).map((s) => s['slot_name'])).not.toContain('replica_r3');
  }, 120_000);

  it('undoes a run interrupted by SIGINT while pg_basebackup copies, leaving no program of it running', async () => {
    // Enough data that the copy lasts while the test catches it in the act.
    await primary.sql("create table padding as select g, repeat('x', 500) as pad from generate_series(1, 200000) g");
    const dataDir = join(await scratch.dir('r6'), 'data');
    stopAtEnd(dataDir);
    const child = spawn(process.execPath, ['bin/pgwarden.js', 'replica', 'create', '--config', configFile, '--data-dir', dataDir, '--name', 'r6', '--passfile', passfile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    const exited = new Promise<number | null>((done) => child.on('close', done));
    try {
      await waitFor('pg_basebackup copying', async () => (await primary.sql("select 1 from pg_stat_replication where state = 'backup'")).length > 0, { intervalMs: 20 });
      child.kill('SIGINT');
      expect(await exited, stderr).toBe(1);
    } finally {
      child.kill('SIGKILL');
      await primary.sql('drop table if exists padding');
    }
    expect(stderr).toContain('failed at step 2');
    expect(stderr).toContain('interrupted (SIGINT)');
    expect(stderr).toContain('dropped slot replica_r6');
    expect(stderr).toContain(`removed ${dataDir}`);
    expect(existsSync(dataDir)).toBe(false);
    expect((await slots()).map((s) => s['slot_name'])).not.toContain('replica_r6');
    const programs = readdirSync('/proc').filter((pid) => /^\d+$/.test(pid)).filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dataDir);
      } catch {
        return false;
      }
    });
    expect(programs).toEqual([]);
  }, 120_000);
});
