import { existsSync } from 'node:fs';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { createPrimary, createStandby, destroyAll, waitFor, type TestCluster } from '../support/cluster.js';
import { backendPid, closeAll, openSession } from '../support/sessions.js';

const CLUSTER_TIMEOUT = 60_000;

afterAll(async () => {
  await closeAll();
  await destroyAll();
});

async function refusesConnections(port: number): Promise<boolean> {
  const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 2_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.end();
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ECONNREFUSED';
  }
}

describe('test cluster harness', () => {
  let primary: TestCluster;
  let standby: TestCluster;

  it('starts a primary with pg_stat_statements preloaded', { timeout: CLUSTER_TIMEOUT }, async () => {
    primary = await createPrimary({ name: 'harness', preload: ['pg_stat_statements'] });
    expect(await primary.psql('show shared_preload_libraries')).toContain('pg_stat_statements');
    expect(primary.dsn()).toBe(`postgresql://postgres@127.0.0.1:${primary.port}/postgres`);

    const session = await openSession(primary.dsn(), 'harness-session');
    const pid = await backendPid(session);
    const rows = await primary.sql(`select application_name from pg_stat_activity where pid = ${pid}`);
    expect(rows).toEqual([{ application_name: 'harness-session' }]);
  });

  it('replicates to a standby through a slot', { timeout: CLUSTER_TIMEOUT }, async () => {
    standby = await createStandby(primary, { slot: 'harness_slot' });
    expect(standby.port).not.toBe(primary.port);

    const slots = await primary.sql("select active from pg_replication_slots where slot_name = 'harness_slot'");
    expect(slots).toEqual([{ active: true }]);

    await primary.sql('create table t (id int primary key); insert into t values (42)');
    await waitFor('row 42 on the standby', async () => {
      const rows = await standby.sql('select id from t where id = 42');
      return rows.length === 1;
    });
    expect(await standby.psql('select pg_is_in_recovery()')).toBe('t');
  });

  it('promotes the standby', { timeout: CLUSTER_TIMEOUT }, async () => {
    await standby.promote();
    expect(await standby.sql('select pg_is_in_recovery() as r')).toEqual([{ r: false }]);
    await standby.sql('insert into t values (43)');
  });

  it('destroys clusters completely', { timeout: CLUSTER_TIMEOUT }, async () => {
    await closeAll();
    for (const cluster of [standby, primary]) {
      await cluster.destroy();
      await cluster.destroy(); // idempotent
      expect(existsSync(cluster.dataDir)).toBe(false);
      expect(await refusesConnections(cluster.port)).toBe(true);
    }
  });
});
