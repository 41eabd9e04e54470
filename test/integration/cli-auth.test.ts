import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPrimary, destroyAll, type TestCluster } from '../support/cluster.js';
import { pgwarden } from '../support/cli.js';

let cluster: TestCluster;
const dir = mkdtempSync(join(tmpdir(), 'pgwarden-auth-'));
const password = 'Sq7-very-secret';

beforeAll(async () => {
  cluster = await createPrimary({ name: 'auth' });
  await cluster.sql(`set password_encryption = 'scram-sha-256'; create role watcher login password '${password}' in role pg_monitor`);
  // Password authentication for this role over TCP; everything else stays trust.
  const hba = join(cluster.dataDir, 'pg_hba.conf');
  writeFileSync(hba, `host all watcher 127.0.0.1/32 scram-sha-256\n${readFileSync(hba, 'utf8')}`);
  await cluster.sql('select pg_reload_conf()');
});

afterAll(async () => {
  await destroyAll();
  rmSync(dir, { recursive: true, force: true });
});

describe('authentication as libpq does it', () => {
  it('reads the password from the pgpass file', async () => {
    const pgpass = join(dir, 'pgpass');
    writeFileSync(pgpass, `127.0.0.1:${cluster.port}:*:watcher:${password}\n`);
    chmodSync(pgpass, 0o600);
    const run = await pgwarden(['show', 'server', '--json', '--dsn', `postgresql://watcher@127.0.0.1:${cluster.port}/postgres`], { PGPASSFILE: pgpass });
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ status: 'ok', target: `watcher@127.0.0.1:${cluster.port}/postgres` });
  });

  it('takes PGPASSWORD and never shows it', async () => {
    const run = await pgwarden(['show', 'server', '--dsn', `postgresql://watcher@127.0.0.1:${cluster.port}/postgres`], { PGPASSWORD: password, PGPASSFILE: '/nonexistent' });
    expect(run.code).toBe(0);
    expect(run.stdout + run.stderr).not.toContain(password);
  });

  it('explains a wrong password with SQLSTATE, cause and fix, without echoing it', async () => {
    const run = await pgwarden(['show', 'server', '--dsn', `postgresql://watcher:wrong-${password}@127.0.0.1:${cluster.port}/postgres`]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('password authentication failed');
    expect(run.stderr).toContain('SQLSTATE 28P01');
    expect(run.stderr).toContain('hint: check the password in ~/.pgpass, PGPASSWORD or the DSN');
    expect(run.stderr).not.toContain(password);
  });

  it('says where to put a password when the server asks for one and none is set', async () => {
    const run = await pgwarden(['show', 'server', '--dsn', `postgresql://watcher@127.0.0.1:${cluster.port}/postgres`], { PGPASSFILE: '/nonexistent' });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`watcher@127.0.0.1:${cluster.port}/postgres: the server asks for a password and none is set`);
    expect(run.stderr).toContain('hint: add it to ~/.pgpass (mode 0600), PGPASSWORD or the DSN');
  });

  it('works as a role that is only a member of pg_monitor', async () => {
    const run = await pgwarden(['show', 'all', '--json', '--dsn', `postgresql://watcher@127.0.0.1:${cluster.port}/postgres`], { PGPASSWORD: password });
    const docs = JSON.parse(run.stdout) as { probe: string; status: string }[];
    expect(docs.filter((doc) => doc.status === 'error')).toEqual([]);
    expect(docs.find((doc) => doc.probe === 'activity')?.status).toBe('ok');
    expect(run.stderr).not.toContain('not a member of pg_monitor');
  });
});
