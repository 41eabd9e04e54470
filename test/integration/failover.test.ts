// `pgwarden failover` and `pgwarden rejoin` end to end (issue 6 item 4), on the shared fixture in
// SYNCHRONOUS mode (a primary p1, standbys s1 and s2, 'ANY 1 (p1, s1, s2)', a real PgBouncer in
// transaction pooling), with the real command line:
// - refused while the primary is up (it is a switchover), nothing changed;
// - a client loop inserts ids through PgBouncer and remembers those acknowledged; s2 stops
//   receiving WAL and falls behind by more than failover.maxLagBytes; kill -9 of p1's postmaster
//   and all its processes;
// - `failover --to s2` is refused (s2 lags), nothing changed;
// - `failover --dry-run` prints the plan and changes nothing;
// - `failover --yes` promotes s1: it accepts writes, every acknowledged row is on it, PgBouncer
//   points at it and is not paused, writes through PgBouncer land on it, s2 streams from it, and
//   p1 is recorded as deposed;
// - p1 restarted comes up writable on its old timeline (split brain); `rejoin p1 --yes` fences it
//   (stopped), rewinds it and starts it as a standby: it streams from s1, a write on s1 reaches
//   it, the row written on p1 during the split brain is gone, and the deposed record is cleared;
// - `rejoin s1` (the only primary) is refused.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pgwarden } from '../support/cli.js';
import { waitFor } from '../support/cluster.js';
import { createFailoverCluster, killDashNine, pgbouncerState, queryDsn, roleOf, type FailoverCluster } from '../support/failover-cluster.js';

const MB = 1024 * 1024;

let fixture: FailoverCluster;
let stateHome: string;
let env: Record<string, string>;

/** Inserts ids through PgBouncer, one connection each, remembering those whose commit was acknowledged. */
class InsertLoop {
  readonly acknowledged: number[] = [];
  failures = 0;
  private next = 1;
  private stopped = false;
  private readonly done: Promise<void>;

  constructor(private readonly dsn: string) {
    this.done = this.run();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const id = this.next;
      this.next += 1;
      const client = new pg.Client({ connectionString: this.dsn, connectionTimeoutMillis: 5000, query_timeout: 20_000 });
      client.on('error', () => undefined);
      try {
        await client.connect();
        await client.query('insert into acked (id) values ($1)', [id]);
        this.acknowledged.push(id);
      } catch {
        this.failures += 1;
        // Pacing only: a dead backend fails at once, and the loop must not spin.
        await delay(25);
      } finally {
        await client.end().catch(() => undefined);
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
}

beforeAll(async () => {
  fixture = await createFailoverCluster({ name: 'fo-manual', synchronous: true, failover: { maxLagBytes: MB } });
  stateHome = await mkdtemp(join(tmpdir(), 'pgwarden-failover-state-'));
  env = { XDG_STATE_HOME: stateHome };
  await fixture.node('p1').sql('create table acked (id int primary key); create table filler (id int, pad text); create table after_failover (note text)');
});

afterAll(async () => {
  await fixture?.cleanup();
  if (stateHome !== undefined) await rm(stateHome, { recursive: true, force: true });
});

describe('pgwarden failover and rejoin (synchronous)', () => {
  it('refuses a failover while the primary is up, and changes nothing', async () => {
    const run = await pgwarden(['failover', '--config', fixture.configPath, '--yes'], env);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/p1 answers as a writable primary \(timeline 1\): the primary is not down/);
    expect(run.stderr).toMatch(/pgwarden switchover/);
    expect((await roleOf(fixture.node('s1'))).inRecovery).toBe(true);
    expect((await roleOf(fixture.node('s2'))).inRecovery).toBe(true);
    expect((await roleOf(fixture.node('p1'))).streamingTo).toEqual(['s1', 's2']);
  });

  it('promotes the most advanced standby after kill -9 of the primary, losing no acknowledged row; then fences and rejoins the old primary', async () => {
    const p1 = fixture.node('p1');
    const s1 = fixture.node('s1');
    const s2 = fixture.node('s2');
    const bouncer = fixture.bouncer;
    if (bouncer === undefined) throw new Error('the fixture has no PgBouncer');

    // s2 stops receiving WAL and falls more than maxLagBytes (1 MB) behind; s1 keeps acknowledging (ANY 1).
    await s2.sql("alter system set primary_conninfo = ''");
    await s2.sql('select pg_reload_conf()');
    await waitFor('s2 to stop streaming', async () => !(await roleOf(p1)).streamingTo.includes('s2'));
    await p1.sql("insert into filler select g, repeat('x', 1000) from generate_series(1, 5000) g");

    const loop = new InsertLoop(fixture.appDsn());
    await waitFor('100 acknowledged inserts through PgBouncer', async () => loop.acknowledged.length >= 100);
    await killDashNine(p1);
    const acknowledgedBeforeKill = loop.acknowledged.length;

    // A forced candidate that lags is refused; nothing changes.
    const forced = await pgwarden(['failover', '--config', fixture.configPath, '--to', 's2', '--yes'], env);
    expect(forced.code).toBe(1);
    expect(forced.stderr).toMatch(/s2: [\d.]+ MB behind the most advanced standby, s1, beyond the limit of 1\.00 MB/);
    expect(forced.stderr).toMatch(/nothing was changed/);
    expect((await roleOf(s1)).inRecovery).toBe(true);
    expect((await roleOf(s2)).inRecovery).toBe(true);

    // --dry-run: the plan, nothing changed.
    const dry = await pgwarden(['failover', '--config', fixture.configPath, '--dry-run'], env);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/p1 is down; promote s1/);
    expect(dry.stdout).toMatch(/select pg_promote\(true, 60\)/);
    expect(dry.stdout).toMatch(/Dry run: every check passed; nothing was changed/);
    expect((await roleOf(s1)).inRecovery).toBe(true);

    const run = await pgwarden(['failover', '--config', fixture.configPath, '--yes'], env);
    expect(run.stderr).not.toMatch(/internal error/);
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
    expect(run.stdout).toMatch(/promote s1/);
    expect(run.stdout).toMatch(/x s2 .*beyond the limit/);
    expect(run.stdout).toMatch(/Failover done: s1 is the primary of cluster main \(timeline 2\); it accepted writes [\d.]+ s after the start/);
    expect(run.stdout).toMatch(/p1 was not touched/);

    // s1 accepts writes.
    expect((await roleOf(s1)).inRecovery).toBe(false);
    await s1.sql("insert into after_failover values ('direct')");
    // PgBouncer points at s1 and is not paused; writes through it land on s1.
    const state = await pgbouncerState(bouncer);
    expect(state.databases['app']).toMatchObject({ port: s1.port, paused: 0 });
    if (state.paused !== null) expect(state.paused).toBe(false);
    await waitFor('writes through PgBouncer to reach s1', async () => loop.acknowledged.length > acknowledgedBeforeKill + 20, { timeoutMs: 60_000 });
    await loop.stop();
    // Every acknowledged row is on the new primary, those acknowledged by p1 included.
    const present = new Set((await s1.sql('select id from acked')).map((row) => Number(row['id'])));
    const lost = loop.acknowledged.filter((id) => !present.has(id));
    expect(acknowledgedBeforeKill).toBeGreaterThanOrEqual(100);
    expect(lost).toEqual([]);
    // s2 follows s1.
    await waitFor('s2 to stream from s1', async () => (await roleOf(s2)).upstreamPort === s1.port);
    await waitFor('the row written on s1 to reach s2', async () => (await s2.sql("select 1 from after_failover where note = 'direct'")).length === 1);
    // p1 is recorded as deposed.
    const record = JSON.parse(await readFile(join(stateHome, 'pgwarden', 'failover', 'main.json'), 'utf8')) as { deposed: { node: string; newPrimary: string; timeline: number }[] };
    expect(record.deposed).toEqual([expect.objectContaining({ node: 'p1', newPrimary: 's1', timeline: 2 })]);

    // The old primary comes back writable on its old timeline: split brain.
    await p1.start();
    expect((await roleOf(p1)).inRecovery).toBe(false);
    await p1.sql("set synchronous_commit = local; create table split_brain (note text); insert into split_brain values ('lost')");

    const rejoin = await pgwarden(['rejoin', 'p1', '--config', fixture.configPath, '--yes'], env);
    expect(rejoin.stderr).not.toMatch(/internal error/);
    expect(rejoin.code, `${rejoin.stdout}\n${rejoin.stderr}`).toBe(0);
    expect(rejoin.stdout).toMatch(/p1 \(timeline 1\), s1 \(timeline 2\); p1 is on an older timeline than s1, and recorded as deposed/);
    expect(rejoin.stdout).toMatch(/Fenced: p1 was stopped \(immediate\)/);
    expect(rejoin.stdout).toMatch(/p1 was rewound with pg_rewind and streams from s1 as a standby/);
    expect(rejoin.stderr).toMatch(/pg_rewind of p1 from s1/);

    expect((await roleOf(p1)).inRecovery).toBe(true);
    await waitFor('p1 to stream from s1', async () => (await roleOf(p1)).upstreamPort === s1.port);
    await waitFor('s1 to show p1 and s2 streaming', async () => (await roleOf(s1)).streamingTo.join(',') === 'p1,s2');
    await s1.sql("insert into after_failover values ('after rejoin')");
    await waitFor('the write on s1 to reach p1', async () => (await p1.sql("select 1 from after_failover where note = 'after rejoin'")).length === 1);
    expect(await p1.sql("select 1 from pg_class where relname = 'split_brain'")).toEqual([]);
    const cleared = JSON.parse(await readFile(join(stateHome, 'pgwarden', 'failover', 'main.json'), 'utf8')) as { deposed: unknown[] };
    expect(cleared.deposed).toEqual([]);
    // The only primary is never fenced.
    const refused = await pgwarden(['rejoin', 's1', '--config', fixture.configPath, '--yes'], env);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/s1 cannot rejoin: s1 is the only writable primary: it is never fenced; nothing was changed/);
    expect((await roleOf(s1)).inRecovery).toBe(false);
    // Through PgBouncer, still s1.
    expect(await queryDsn(fixture.appDsn(), 'select pg_is_in_recovery() as r')).toEqual([{ r: false }]);
  }, 300_000);
});
