/** The demo's data set: pgbench-like tables, a two-row table for the lock chain and a bloated table. */
import type { DbSession } from '../db/session.js';

/** Rows in demo_accounts (five branches of 100,000, as pgbench -s 5). */
export const demoAccounts = 500_000;
/** Rows in demo_bloated before 80% of them are deleted. */
export const bloatedRows = 300_000;

const schema = `
create extension if not exists pg_stat_statements;
create extension if not exists pgstattuple;
create table demo_branches (bid int primary key, bbalance bigint not null default 0, name text not null);
create table demo_tellers (tid int primary key, bid int not null references demo_branches, tbalance bigint not null default 0);
create table demo_accounts (aid int not null, bid int not null, abalance bigint not null default 0, filler char(84));
create table demo_history (id bigint generated always as identity primary key, aid int not null, bid int not null,
                           delta int not null, at timestamptz not null default now());
create table demo_lock (id int primary key, n bigint not null default 0);
-- Autovacuum stays on for the server but off here, so the dead rows stay visible.
create table demo_bloated (id int not null, payload text not null) with (autovacuum_enabled = false, toast.autovacuum_enabled = false);

insert into demo_branches select b, 0, 'branch ' || b from generate_series(1, 5) b;
insert into demo_tellers select t, (t - 1) / 10 + 1 from generate_series(1, 50) t;
insert into demo_accounts select a, (a - 1) / 100000 + 1, 0, '' from generate_series(1, ${demoAccounts}) a;
-- Indexes after the rows: building them once is faster than maintaining them row by row.
alter table demo_accounts add primary key (aid), add foreign key (bid) references demo_branches;
insert into demo_lock values (1, 0), (2, 0);
insert into demo_bloated select g, md5(g::text) from generate_series(1, ${bloatedRows}) g;
alter table demo_bloated add primary key (id);
analyze;
`;

/** Creates the extensions and tables in the connected database and fills them (one transaction). */
export async function loadDemoData(session: DbSession): Promise<void> {
  await session.script(schema);
}

/**
 * Deletes four rows of five from demo_bloated. Run it while an older transaction is open (the
 * workload's idle one): the dead rows then cannot be pruned away by the next scan, so they
 * show as dead tuples and bloat until that transaction ends.
 */
export async function bloat(session: DbSession): Promise<void> {
  // One transaction: ANALYZE then discounts the delete it sees, whose counts reach the statistics
  // at commit. Run separately, the delete's counts could land after ANALYZE's and zero n_live_tup.
  await session.script('delete from demo_bloated where id % 5 <> 0; analyze demo_bloated');
}
