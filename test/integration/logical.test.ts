// Logical backups end to end (issue 5 item 4; docs/logical-backups.md): `pgwarden logical` against a
// private PostgreSQL 15 cluster with real pg_dump, pg_restore and psql, into a local repository:
// dumps of every database, list, one dropped table restored into its database (with its index,
// primary key and sequence), a whole database into a new one, refusals (non-empty target, table
// still there, wrong key: nothing written), a failed pg_dump (nothing kept), a corrupted archive
// (nothing committed, even when pg_restore never reads the damaged tail) and retention.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pgwarden } from '../support/cli.js';
import { createPrimary, type TestCluster } from '../support/cluster.js';

interface Manifest {
  readonly id: string;
  readonly database: string;
  readonly key: string;
  readonly bytes: number;
  readonly sha256: string;
  readonly dumpBytes: number;
  readonly pgVersion: number;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly keyId: string | null;
}

let primary: TestCluster;
let scratch: string;
let repo: string;
let dsn: string;
let rightKey: string;
let wrongKey: string;

async function keyFile(name: string): Promise<string> {
  const path = join(scratch, name);
  await writeFile(path, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
  return path;
}

async function count(sql: string, database: string): Promise<number> {
  const [row] = await primary.sql(sql, database);
  return Number(Object.values(row ?? {})[0]);
}

async function databaseExists(name: string): Promise<boolean> {
  return (await count(`select count(*) from pg_database where datname = '${name}'`, 'postgres')) === 1;
}

async function list(database?: string): Promise<Manifest[]> {
  const run = await pgwarden(['logical', 'list', '--repo', repo, '--json', ...(database === undefined ? [] : ['--database', database])]);
  expect(run.code, run.stderr).toBe(0);
  return JSON.parse(run.stdout) as Manifest[];
}

/** Files (not the repository's hidden sidecars) under logical/<database>/, recursively. */
async function filesOf(database: string): Promise<string[]> {
  try {
    const entries = await readdir(join(repo, 'logical', database), { recursive: true, withFileTypes: true });
    return entries.filter((entry) => entry.isFile() && !entry.name.startsWith('.')).map((entry) => join(entry.parentPath, entry.name));
  } catch {
    return [];
  }
}

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'pgwarden-logical-'));
  repo = join(scratch, 'repo');
  await mkdir(repo);
  rightKey = await keyFile('k1.key');
  wrongKey = await keyFile('k1-other.key');
  primary = await createPrimary({ name: 'logical' });
  dsn = `host=${primary.host} port=${primary.port} user=postgres dbname=postgres`;
  await primary.sql('create database shop');
  await primary.sql('create database crm');
  await primary.sql(`
    create table customers (id int primary key, name text not null);
    insert into customers select g, 'customer ' || g from generate_series(1, 50) g;
    create table orders (id serial primary key, customer_id int not null references customers (id), total numeric not null, placed_at timestamptz not null default now());
    create index orders_customer on orders (customer_id);
    insert into orders (customer_id, total) select 1 + g % 50, g * 1.5 from generate_series(1, 2000) g;`, 'shop');
  await primary.sql("create table notes (id int generated always as identity primary key, body text); insert into notes (body) select 'note ' || g from generate_series(1, 300) g", 'crm');
}, 120_000);

afterAll(async () => {
  await primary?.destroy();
  if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
});

describe('pgwarden logical', () => {
  it('dumps every connectable database, each with a manifest that matches its stored archive, and lists them', async () => {
    const run = await pgwarden(['logical', 'backup', '--repo', repo, '--dsn', dsn]);
    expect(run.code, run.stderr).toBe(0);
    const databases = run.stdout.trim().split('\n').map((line) => line.split('\t')[0]).sort();
    expect(databases).toEqual(['crm', 'postgres', 'shop']);

    const dumps = await list();
    expect(dumps.map((m) => m.database).sort()).toEqual(['crm', 'postgres', 'shop']);
    for (const manifest of dumps) {
      const stored = await readFile(join(repo, manifest.key));
      expect(manifest.key).toBe(`logical/${manifest.database}/${manifest.id}/dump.pgdump`);
      expect(stored.length).toBe(manifest.bytes);
      expect(createHash('sha256').update(stored).digest('hex')).toBe(manifest.sha256);
      // A custom-format archive, unencrypted: the bytes are pg_dump's own.
      expect(stored.subarray(0, 5).toString('latin1')).toBe('PGDMP');
      expect(manifest.dumpBytes).toBe(manifest.bytes);
      expect(manifest.keyId).toBeNull();
      expect(Math.floor(manifest.pgVersion / 10000)).toBe(15);
      expect(Date.parse(manifest.finishedAt)).toBeGreaterThanOrEqual(Date.parse(manifest.startedAt));
    }
    expect((await list('shop')).map((m) => m.database)).toEqual(['shop']);
    const text = await pgwarden(['logical', 'list', '--repo', repo]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^DATABASE\s+ID\s+FINISHED\s+SIZE\s+KEY/);
    expect(text.stdout).toMatch(/\nshop\s+\d{8}T\d{6}\.\d{3}Z\s/);
  });

  it('restores one dropped table into its database: rows, primary key, index and sequence back', async () => {
    await primary.sql('drop table orders', 'shop');
    const run = await pgwarden(['logical', 'restore', '--repo', repo, '--dsn', dsn, '--database', 'shop', '--into', 'shop', '--table', 'public.orders']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('restored table public.orders');
    expect(await count('select count(*) from orders', 'shop')).toBe(2000);
    expect(await count('select sum(total) from orders', 'shop')).toBe(1.5 * (2000 * 2001) / 2);
    const indexes = await primary.sql("select indexname from pg_indexes where tablename = 'orders' order by 1", 'shop');
    expect(indexes.map((row) => row['indexname'])).toEqual(['orders_customer', 'orders_pkey']);
    // The serial's sequence came back at its dumped position: the next id follows the last one.
    const [inserted] = await primary.sql('insert into orders (customer_id, total) values (1, 1) returning id', 'shop');
    expect(Number(inserted?.['id'])).toBe(2001);
    // The foreign key to customers is the table's own: restored and enforced.
    await expect(primary.sql('insert into orders (customer_id, total) values (999, 1)', 'shop')).rejects.toThrow(/foreign key/);
    // Another table was untouched.
    expect(await count('select count(*) from customers', 'shop')).toBe(50);
  });

  it('refuses to restore a table that exists, and says how to rename or drop it', async () => {
    const run = await pgwarden(['logical', 'restore', '--repo', repo, '--dsn', dsn, '--database', 'shop', '--into', 'shop', '--table', 'public.orders']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('"public"."orders" already exists in database "shop"');
    expect(run.stderr).toMatch(/RENAME TO .*DROP TABLE "public"\."orders"/s);
    expect(await count('select count(*) from orders', 'shop')).toBe(2001);
  });

  it('restores a whole database into a new one with --create', async () => {
    const run = await pgwarden(['logical', 'restore', '--repo', repo, '--dsn', dsn, '--database', 'crm', '--id', 'latest', '--into', 'crm_copy', '--create']);
    expect(run.code, run.stderr).toBe(0);
    expect(await count('select count(*) from notes', 'crm_copy')).toBe(300);
    expect(await count("select count(*) from notes where body = 'note 300'", 'crm_copy')).toBe(1);
    // --create refuses a database that exists.
    const again = await pgwarden(['logical', 'restore', '--repo', repo, '--dsn', dsn, '--database', 'crm', '--into', 'crm_copy', '--create']);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('database "crm_copy" already exists');
  });

  it('refuses a whole-database restore into a non-empty database and writes nothing', async () => {
    await primary.sql('create database not_empty');
    await primary.sql('create table mine (x int); insert into mine values (7)', 'not_empty');
    const run = await pgwarden(['logical', 'restore', '--repo', repo, '--dsn', dsn, '--database', 'crm', '--into', 'not_empty']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('database "not_empty" is not empty');
    expect(await count("select count(*) from pg_tables where schemaname = 'public'", 'not_empty')).toBe(1);
  });

  it('encrypts with --key; a wrong key is refused before anything is created, the right one restores', async () => {
    const backup = await pgwarden(['logical', 'backup', '--repo', repo, '--key', `k1=${rightKey}`, '--dsn', dsn, '--database', 'crm']);
    expect(backup.code, backup.stderr).toBe(0);
    const [latest] = (await list('crm')).slice(-1);
    expect(latest?.keyId).toBe('k1');
    expect(latest?.key).toMatch(/dump\.pgdump\.enc$/);
    const stored = await readFile(join(repo, latest?.key ?? ''));
    expect(stored.includes(Buffer.from('note 300'))).toBe(false);

    const wrong = await pgwarden(['logical', 'restore', '--repo', repo, '--key', `k1=${wrongKey}`, '--dsn', dsn, '--database', 'crm', '--into', 'crm_secret', '--create']);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain('does not open this object: wrong key material');
    expect(await databaseExists('crm_secret')).toBe(false);

    const none = await pgwarden(['logical', 'restore', '--repo', repo, '--dsn', dsn, '--database', 'crm', '--into', 'crm_secret', '--create']);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('is encrypted with key k1 and no key was given');
    expect(await databaseExists('crm_secret')).toBe(false);

    const right = await pgwarden(['logical', 'restore', '--repo', repo, '--key', `k1=${rightKey}`, '--dsn', dsn, '--database', 'crm', '--into', 'crm_secret', '--create']);
    expect(right.code, right.stderr).toBe(0);
    expect(await count('select count(*) from notes', 'crm_secret')).toBe(300);
  });

  it('a pg_dump that fails leaves no manifest and no object, and the other databases are still kept', async () => {
    const before = (await list('shop')).length;
    const run = await pgwarden(['logical', 'backup', '--repo', repo, '--dsn', dsn, '--database', 'shop', '--database', 'gone']);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/the dump of database "gone" failed, nothing of it is kept: pg_dump failed .*database "gone" does not exist/);
    expect(run.stdout).toMatch(/^shop\t/);
    expect((await list('shop')).length).toBe(before + 1);
    expect(await list('gone')).toEqual([]);
    expect(await filesOf('gone')).toEqual([]);
  });

  it('a corrupted archive commits nothing, even when pg_restore never reads the damaged tail', async () => {
    await primary.sql('create database bulk');
    // Enough rows that the archive outgrows the read-ahead of the table-of-contents pass.
    await primary.sql("create table small (id int primary key); insert into small values (1); create table big as select g, md5(g::text) || md5((g * 7)::text) as t from generate_series(1, 80000) g", 'bulk');
    const backup = await pgwarden(['logical', 'backup', '--repo', repo, '--dsn', dsn, '--database', 'bulk']);
    expect(backup.code, backup.stderr).toBe(0);
    const [manifest] = await list('bulk');
    const path = join(repo, manifest?.key ?? '');
    const bytes = await readFile(path);
    expect(bytes.length).toBeGreaterThan(2 * 1024 * 1024);
    bytes[bytes.length - 3] = (bytes[bytes.length - 3] ?? 0) ^ 0xff;
    await writeFile(path, bytes);
    // `small` comes before `big` in the archive: pg_restore has all it needs long before the end.
    await primary.sql('drop table small', 'bulk');
    const run = await pgwarden(['logical', 'restore', '--repo', repo, '--dsn', dsn, '--database', 'bulk', '--into', 'bulk', '--table', 'public.small']);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/rolled back: .*the stored object is corrupt/s);
    expect(await count("select count(*) from pg_tables where tablename = 'small'", 'bulk')).toBe(0);
  });

  it('expire keeps the newest dump of every database, whatever the retention says', async () => {
    const before = await list();
    expect(before.filter((m) => m.database === 'crm').length).toBe(2);
    expect(before.filter((m) => m.database === 'shop').length).toBe(2);
    const dry = await pgwarden(['logical', 'expire', '--repo', repo, '--days', '0', '--dry-run']);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/would delete crm /);
    expect((await list()).length).toBe(before.length);

    const run = await pgwarden(['logical', 'expire', '--repo', repo, '--days', '0']);
    expect(run.code, run.stderr).toBe(0);
    const after = await list();
    const newest = (database: string): string | undefined => before.filter((m) => m.database === database).map((m) => m.id).sort().pop();
    expect(after.map((m) => `${m.database}/${m.id}`).sort()).toEqual(['bulk', 'crm', 'postgres', 'shop'].map((d) => `${d}/${newest(d) ?? ''}`));
    expect(run.stdout).toContain('the newest dump of the database (never deleted)');
    // The expired dumps are gone entirely, archive and manifest.
    expect((await filesOf('crm')).filter((name) => name.endsWith('dump.pgdump') || name.endsWith('manifest.json') || name.endsWith('.enc')).length).toBe(2);
  });
});
