// `pgwarden pooler config` / `pooler advice` end to end (issue 6 item 6; docs/pooling.md): the files
// generated for a real PostgreSQL 15 cluster whose TCP logins (except the test's postgres) need
// SCRAM; auth.sql run on it with psql; a REAL PgBouncer started from the generated ini; an
// application role with a SCRAM password connecting through it (the auth_query path), queries in
// transaction mode, and SHOW POOLS showing the pool. No password may appear in the output or the
// files, except in the auth_file where the test itself writes it over the placeholder.
import { execFile } from 'node:child_process';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresScratch, pgwardenAsPostgres, type Run } from '../support/as-postgres.js';
import { createPrimary, freePort, waitFor, type TestCluster } from '../support/cluster.js';
import { startPgBouncerFromIni, type IniPgBouncer } from '../support/pgbouncer-ini.js';

const execFileAsync = promisify(execFile);
const PG_BIN = process.env['PGWARDEN_TEST_PG_BIN'] ?? '/usr/lib/postgresql/15/bin';

// Passwords the test knows; none may leak into anything pgwarden prints or writes.
const nodePassword = 'node-pw-7f3a91';
const appPassword = 'app-pw-52c8e0';
const authPassword = 'auth-pw-a41d77';
const adminPassword = 'admin-pw-0be6c3';
const secrets = [nodePassword, appPassword, authPassword, adminPassword];

const scratch = new PostgresScratch('pooler');
let primary: TestCluster;
let dir: string;
let configFile: string;
let out: string;
let listenPort: number;
let bouncer: IniPgBouncer | undefined;

function expectNoSecret(text: string, where: string): void {
  for (const secret of secrets) expect(text.includes(secret), `${secret} in ${where}`).toBe(false);
  // Nor a SCRAM secret read from the server.
  expect(text, where).not.toMatch(/SCRAM-SHA-256\$/);
}

function expectClean(run: Run, what: string): void {
  expectNoSecret(run.stdout, `${what} stdout`);
  expectNoSecret(run.stderr, `${what} stderr`);
}

function client(user: string, password: string, database: string): pg.Client {
  const c = new pg.Client({ host: '127.0.0.1', port: listenPort, user, password, database, connectionTimeoutMillis: 10_000 });
  c.on('error', () => undefined);
  return c;
}

beforeAll(async () => {
  // statement_timeout 20s on the server: the generated query_timeout must be a little above it.
  primary = await createPrimary({ name: 'pooler', settings: { statement_timeout: '20s' } });
  // TCP logins need SCRAM, except postgres (the test's and pgwarden's own sessions).
  const hba = ['local all all trust', 'host all postgres 127.0.0.1/32 trust', 'host all all 127.0.0.1/32 scram-sha-256', ''].join('\n');
  await writeFile(join(primary.dataDir, 'pg_hba.conf'), hba);
  await primary.sql('select pg_reload_conf()');
  await primary.sql('create database appdb');
  await primary.sql(`create role app_user login password '${appPassword}'`);
  await primary.sql('create table items (id int primary key, note text); grant all on items to app_user', 'appdb');

  dir = await scratch.dir('conf');
  out = join(dir, 'pgbouncer');
  listenPort = await freePort();
  configFile = join(dir, 'config.json');
  await writeFile(configFile, JSON.stringify({
    clusters: [{
      name: 'main',
      nodes: [{ name: 'db1', dsn: `postgresql://postgres:${nodePassword}@127.0.0.1:${primary.port}/postgres` }],
      pgbouncer: { dsn: `postgresql://pgwarden_admin@127.0.0.1:${listenPort}/pgbouncer` },
    }],
  }));
});

afterAll(async () => {
  await bouncer?.stop();
  await primary?.destroy();
  await scratch.cleanUp();
});

describe('pgwarden pooler', () => {
  it('advice reads the server and samples the concurrency: three busy sessions in appdb', async () => {
    const busy = [0, 1, 2].map(() => new pg.Client({ host: '127.0.0.1', port: primary.port, user: 'app_user', password: appPassword, database: 'appdb' }));
    const running: Promise<unknown>[] = [];
    try {
      for (const c of busy) {
        c.on('error', () => undefined);
        await c.connect();
        running.push(c.query('select pg_sleep(15)').catch(() => undefined));
      }
      await waitFor('three active sleeps', async () => {
        const rows = await primary.sql("select count(*)::int as n from pg_stat_activity where usename = 'app_user' and state = 'active'");
        return rows[0]?.['n'] === 3;
      });
      const run = await pgwardenAsPostgres(['pooler', 'advice', '--config', configFile, '--cpus', '2', '--samples', '2', '--json']);
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
      expectClean(run, 'advice');
      const doc = JSON.parse(run.stdout) as { node: string; inputs: Record<string, unknown>; advice: Record<string, unknown> };
      expect(doc.node).toBe('db1');
      // Two databases (postgres, appdb); the one role seen connected; 30 − 3 reserved − 3 kept free = 24.
      expect(doc.inputs).toMatchObject({ max_connections: 30, superuser_reserved_connections: 3, databases: 2, users: 1, peak_active: 3, cpus: 2 });
      // 3 × 1.5 = 5, within 4–8 for 2 CPUs; reserve ⌈5/4⌉ = 2.
      expect(doc.advice).toMatchObject({ server_budget: 24, default_pool_size: 5, reserve_pool_size: 2, max_db_connections: 7 });
    } finally {
      await primary.sql("select pg_cancel_backend(pid) from pg_stat_activity where usename = 'app_user'");
      await Promise.all(running);
      await Promise.all(busy.map((c) => c.end().catch(() => undefined)));
    }
  });

  it('config without --out prints each file under a header saying where it goes', async () => {
    const run = await pgwardenAsPostgres(['pooler', 'config', '--config', configFile, '--samples', '1']);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expectClean(run, 'config to stdout');
    expect(run.stdout).toContain('# ==> /etc/pgbouncer/pgbouncer.ini <==');
    expect(run.stdout).toContain('# ==> /etc/pgbouncer/userlist.txt (mode 0600');
    expect(run.stdout).toContain('-- ==> auth.sql (run on the primary with psql; not run by pgwarden) <==');
    expect(run.stdout).toContain('auth_file = /etc/pgbouncer/userlist.txt');
  });

  it('config --out writes files that a real PgBouncer runs with: SCRAM through auth_query, transaction pooling', async () => {
    const run = await pgwardenAsPostgres(['pooler', 'config', '--config', configFile, '--out', out, '--listen-port', String(listenPort), '--samples', '1']);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expectClean(run, 'config --out');
    const ini = await readFile(join(out, 'pgbouncer.ini'), 'utf8');
    const userlist = await readFile(join(out, 'userlist.txt'), 'utf8');
    const authSql = await readFile(join(out, 'auth.sql'), 'utf8');
    for (const [name, text] of [['pgbouncer.ini', ini], ['userlist.txt', userlist], ['auth.sql', authSql]] as const) expectNoSecret(text, name);
    expect(run.stdout).toContain(authSql.trim()); // auth.sql is shown
    expect(ini).toMatch(new RegExp(`^appdb = host=127\\.0\\.0\\.1 port=${primary.port} dbname=appdb$`, 'm'));
    expect(ini).toMatch(/^pool_mode = transaction$/m);
    expect(ini).toMatch(/^query_timeout = 25$/m);
    expect(ini).toMatch(/^admin_users = pgwarden_admin$/m);
    expect(ini).toContain(`auth_file = ${join(out, 'userlist.txt')}`);
    expect(userlist).toBe('"pgbouncer_auth" "REPLACE-WITH-PASSWORD"\n"pgwarden_admin" "REPLACE-WITH-PASSWORD"\n');
    expect((await stat(join(out, 'userlist.txt'))).mode & 0o777).toBe(0o600);
    // auth.sql was not run: pgwarden only showed it.
    expect(await primary.sql("select 1 from pg_roles where rolname = 'pgbouncer_auth'")).toEqual([]);

    // The DBA's part: run auth.sql, set the auth user's password, fill in the auth_file.
    await execFileAsync('runuser', ['-u', 'postgres', '--', join(PG_BIN, 'psql'), '-X', '-q', '-h', '127.0.0.1', '-p', String(primary.port), '-U', 'postgres', '-d', 'postgres', '-f', join(out, 'auth.sql')]);
    await primary.sql(`alter role pgbouncer_auth password '${authPassword}'`);
    for (const database of ['postgres', 'appdb']) {
      const rows = await primary.sql("select p.prosecdef from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = 'pgbouncer' and p.proname = 'get_auth'", database);
      expect(rows, database).toEqual([{ prosecdef: true }]);
    }
    await writeFile(join(out, 'userlist.txt'), `"pgbouncer_auth" "${authPassword}"\n"pgwarden_admin" "${adminPassword}"\n`);

    bouncer = await startPgBouncerFromIni(join(out, 'pgbouncer.ini'));

    // A login role with a SCRAM password, authenticated by PgBouncer from the secret auth_query fetched.
    const a = client('app_user', appPassword, 'appdb');
    const b = client('app_user', appPassword, 'appdb');
    try {
      await a.connect();
      await b.connect();
      await a.query('begin');
      await a.query("insert into items values (1, 'through pgbouncer')");
      await a.query('commit');
      await b.query("insert into items values (2, 'second client')");
      const rows = (await b.query<{ n: number }>('select count(*)::int as n from items')).rows;
      expect(rows).toEqual([{ n: 2 }]);

      // Transaction pooling: between transactions both clients hold no server connection.
      const admin = client('pgwarden_admin', adminPassword, 'pgbouncer');
      try {
        await admin.connect();
        const pool = await waitFor('the appdb pool with both clients and its servers released', async () => {
          const pools = (await admin.query<Record<string, unknown>>('SHOW POOLS')).rows;
          const row = pools.find((p) => p['database'] === 'appdb' && p['user'] === 'app_user');
          return row !== undefined && Number(row['cl_active']) === 2 && Number(row['sv_active']) === 0 ? row : undefined;
        });
        expect(pool['pool_mode']).toBe('transaction');
        expect(Number(pool['sv_idle']) + Number(pool['sv_used'])).toBeGreaterThanOrEqual(1);
      } finally {
        await admin.end().catch(() => undefined);
      }
    } finally {
      await a.end().catch(() => undefined);
      await b.end().catch(() => undefined);
    }

    // The server itself wants app_user's SCRAM password, so PgBouncer passed the client's SCRAM keys through.
    const direct = new pg.Client({ host: '127.0.0.1', port: primary.port, user: 'app_user', password: 'not-the-password', database: 'appdb' });
    direct.on('error', () => undefined);
    await expect(direct.connect()).rejects.toThrow(/password authentication failed/);
    await direct.end().catch(() => undefined);

    // The secret is checked, not merely looked up; superusers are never handed out by get_auth.
    const wrong = client('app_user', 'not-the-password', 'appdb');
    await expect(wrong.connect()).rejects.toThrow(/password authentication failed|SASL authentication failed/);
    await wrong.end().catch(() => undefined);
    await primary.sql(`alter role postgres password '${nodePassword}'`);
    const superuser = client('postgres', nodePassword, 'appdb');
    await expect(superuser.connect()).rejects.toThrow();
    await superuser.end().catch(() => undefined);
    expectNoSecret(await bouncer.log(), 'the pgbouncer log');
  });

  it('refuses to overwrite the files, and with --force never replaces the auth_file', async () => {
    const refused = await pgwardenAsPostgres(['pooler', 'config', '--config', configFile, '--out', out, '--listen-port', String(listenPort), '--samples', '0']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('pgbouncer.ini exists');
    const forced = await pgwardenAsPostgres(['pooler', 'config', '--config', configFile, '--out', out, '--listen-port', String(listenPort), '--samples', '0', '--force']);
    expect(forced.stderr).toBe('');
    expect(forced.code).toBe(0);
    expectClean(forced, 'config --force');
    expect(forced.stdout).toContain('Kept');
    expect(await readFile(join(out, 'userlist.txt'), 'utf8')).toContain(authPassword);
  });
});
