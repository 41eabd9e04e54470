/**
 * What VACUUM, ANALYZE and REINDEX need to know before they run: that the relation exists and is
 * of a kind they handle, that the node is a primary, and that the action's role may maintain it
 * (VACUUM and ANALYZE on a table the role may not touch only warn and skip it, which would look
 * like success).
 */
import type { Row } from '../db/types.js';
import { boolean, numberOrNull, string, stringOrNull } from '../probes/values.js';
import { displayName } from './sql.js';
import type { ActionContext } from './types.js';

/** A table as pg_class shows it, with what the checks found. */
export interface TableFacts {
  readonly oid: number;
  readonly schema: string;
  readonly name: string;
  /** pg_class.relkind. */
  readonly kind: string;
  /** pg_class.relpersistence: p, u or t. */
  readonly persistence: string;
  readonly inRecovery: boolean;
  /** The action's role may VACUUM / ANALYZE it. */
  readonly allowed: boolean;
  readonly owner: string;
  readonly deadTuples: number | null;
}

/** An index as pg_index shows it, with any build in progress on its table. */
export interface IndexFacts {
  readonly oid: number;
  readonly schema: string;
  readonly name: string;
  readonly table: string;
  readonly kind: string;
  readonly persistence: string;
  readonly valid: boolean;
  readonly live: boolean;
  readonly unique: boolean;
  readonly definition: string;
  readonly inRecovery: boolean;
  readonly allowed: boolean;
  readonly owner: string;
  /** A CREATE INDEX / REINDEX running on it or, concurrently, on its table. */
  readonly build: { readonly pid: number; readonly command: string; readonly phase: string } | null;
}

const superuser = `coalesce((select rolsuper from pg_roles where rolname = $3), false)`;

// vacuum_is_permitted_for_relation(): a superuser, the database owner (not for shared catalogs),
// and the table's owner, or from 17 whoever holds MAINTAIN on it.
function maintainSql(version: number): string {
  const databaseOwner = `(not c.relisshared and pg_has_role($3, (select datdba from pg_database where datname = current_database()), 'USAGE'))`;
  const table = version >= 170000 ? `has_table_privilege($3, c.oid, 'MAINTAIN')` : `pg_has_role($3, c.relowner, 'USAGE')`;
  return `(${superuser} or ${databaseOwner} or ${table})`;
}

function tableSql(version: number): string {
  return `
select c.oid, n.nspname as schema, c.relname as name, c.relkind::text as kind, c.relpersistence::text as persistence,
       pg_get_userbyid(c.relowner) as owner, pg_is_in_recovery() as in_recovery, ${maintainSql(version)} as allowed,
       s.n_dead_tup as dead_tuples
  from pg_class c
  join pg_namespace n on n.oid = c.relnamespace
  left join pg_stat_all_tables s on s.relid = c.oid
 where n.nspname = $1 and c.relname = $2`;
}

// REINDEX INDEX: a superuser or the index's owner; from 17, MAINTAIN on its table.
function indexSql(version: number): string {
  const allowed = version >= 170000 ? `(${superuser} or has_table_privilege($3, t.oid, 'MAINTAIN'))` : `(${superuser} or pg_has_role($3, i.relowner, 'USAGE'))`;
  // The same test as the tables probe: a build of this index, or any concurrent build on its table.
  const build =
    version >= 120000
      ? `left join lateral (select p.pid, p.command, p.phase from pg_stat_progress_create_index p
                        where p.datid = (select oid from pg_database where datname = current_database())
                          and (p.index_relid = i.oid or (p.relid = x.indrelid and p.command like '%CONCURRENTLY'))
                        order by p.pid limit 1) b on true`
      : `left join lateral (select null::int as pid, null::text as command, null::text as phase) b on true`;
  return `
select i.oid, n.nspname as schema, i.relname as name, t.relname as table_name, i.relkind::text as kind,
       t.relpersistence::text as persistence, x.indisvalid as valid, x.indislive as live, x.indisunique as is_unique,
       pg_get_indexdef(i.oid) as definition, pg_get_userbyid(i.relowner) as owner,
       pg_is_in_recovery() as in_recovery, ${allowed} as allowed,
       b.pid as build_pid, b.command as build_command, b.phase as build_phase
  from pg_class i
  join pg_namespace n on n.oid = i.relnamespace
  join pg_index x on x.indexrelid = i.oid
  join pg_class t on t.oid = x.indrelid
  ${build}
 where n.nspname = $1 and i.relname = $2`;
}

async function versionOf(context: ActionContext): Promise<number> {
  return (await context.node.serverInfo()).versionNum;
}

/** The table, or undefined when there is none by that name. */
export async function lookupTable(context: ActionContext, schema: string, table: string): Promise<TableFacts | undefined> {
  const [row] = await context.node.query({ text: tableSql(await versionOf(context)), values: [schema, table, context.connection.user] });
  if (row === undefined) return undefined;
  return {
    oid: Number(row['oid']),
    schema: string(row, 'schema'),
    name: string(row, 'name'),
    kind: string(row, 'kind'),
    persistence: string(row, 'persistence'),
    inRecovery: boolean(row, 'in_recovery'),
    allowed: boolean(row, 'allowed'),
    owner: string(row, 'owner'),
    deadTuples: numberOrNull(row, 'dead_tuples'),
  };
}

function parseIndex(row: Row): IndexFacts {
  const buildPid = numberOrNull(row, 'build_pid');
  return {
    oid: Number(row['oid']),
    schema: string(row, 'schema'),
    name: string(row, 'name'),
    table: string(row, 'table_name'),
    kind: string(row, 'kind'),
    persistence: string(row, 'persistence'),
    valid: boolean(row, 'valid'),
    live: boolean(row, 'live'),
    unique: boolean(row, 'is_unique'),
    definition: string(row, 'definition'),
    inRecovery: boolean(row, 'in_recovery'),
    allowed: boolean(row, 'allowed'),
    owner: string(row, 'owner'),
    build: buildPid === null ? null : { pid: buildPid, command: string(row, 'build_command'), phase: stringOrNull(row, 'build_phase') ?? '' },
  };
}

/** The index, or undefined when there is none by that name. */
export async function lookupIndex(context: ActionContext, schema: string, index: string): Promise<IndexFacts | undefined> {
  const [row] = await context.node.query({ text: indexSql(await versionOf(context)), values: [schema, index, context.connection.user] });
  return row === undefined ? undefined : parseIndex(row);
}

const kindNames: Readonly<Record<string, string>> = {
  r: 'table',
  p: 'partitioned table',
  m: 'materialized view',
  f: 'foreign table',
  v: 'view',
  i: 'index',
  I: 'partitioned index',
  S: 'sequence',
  t: 'TOAST table',
  c: 'composite type',
};

/** Why VACUUM or ANALYZE may not run on this table, or null. */
export function tableRefusal(verb: 'VACUUM' | 'ANALYZE', schema: string, table: string, facts: TableFacts | undefined, role: string): string | null {
  const name = displayName(schema, table);
  if (facts === undefined) return `${name} does not exist (it may have been dropped or renamed)`;
  if (facts.inRecovery) return `the node is a standby (in recovery): ${verb} runs on the primary only`;
  // VACUUM skips foreign tables with a warning; ANALYZE samples them through their wrapper.
  const kinds = verb === 'VACUUM' ? ['r', 'p', 'm', 't'] : ['r', 'p', 'm', 'f'];
  if (!kinds.includes(facts.kind)) return `${name} is a ${kindNames[facts.kind] ?? `relation of kind ${facts.kind}`}: ${verb} works on tables and materialized views`;
  if (facts.persistence === 't') return `${name} is a temporary table of another session: only that session can ${verb} it`;
  if (!facts.allowed) return `${role} may not ${verb} ${name} (owned by ${facts.owner}): only its owner, the database owner or a superuser may; the server would skip it with a warning`;
  return null;
}

/** Why REINDEX CONCURRENTLY may not run on this index, or null. */
export function indexRefusal(schema: string, index: string, facts: IndexFacts | undefined, role: string, version: number): string | null {
  const name = displayName(schema, index);
  if (version > 0 && version < 120000) return 'REINDEX CONCURRENTLY needs PostgreSQL 12 or later';
  if (facts === undefined) return `there is no index ${name} (it may have been dropped or renamed)`;
  if (facts.inRecovery) return 'the node is a standby (in recovery): REINDEX runs on the primary only';
  if (facts.valid) return `${name} is not an invalid index: it is valid, nothing to repair`;
  if (facts.build !== null) return `a build is still in progress on ${displayName(schema, facts.table)} (${facts.build.command} by pid ${facts.build.pid}${facts.build.phase === '' ? '' : `, phase "${facts.build.phase}"`}): wait for it to finish or fail`;
  if (!facts.live) return `${name} is being dropped (DROP INDEX CONCURRENTLY in progress)`;
  if (facts.schema === 'pg_catalog' || facts.schema === 'pg_toast') return `${name} is a system index: REINDEX CONCURRENTLY cannot rebuild it`;
  if (facts.kind === 'I') return `${name} is a partitioned index: it becomes valid once every partition has a valid index attached`;
  if (facts.persistence === 't') return `${name} is on a temporary table of another session`;
  // What the PostgreSQL documentation says to do with the leftovers of a failed REINDEX CONCURRENTLY.
  if (/_ccnew\d*$/.test(facts.name)) return `${name} is the half-built copy left by a failed REINDEX CONCURRENTLY: drop it (DROP INDEX CONCURRENTLY), then reindex the original`;
  if (/_ccold\d*$/.test(facts.name)) return `${name} is the old index left by a REINDEX CONCURRENTLY that could not drop it: drop it (DROP INDEX CONCURRENTLY)`;
  if (!facts.allowed) return `${role} may not REINDEX ${name} (owned by ${facts.owner}): only its owner or a superuser may`;
  return null;
}
