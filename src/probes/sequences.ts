/**
 * Sequences of the connected database and how much of their range is used: against the maximum of
 * the sequence's own type and of the narrowest column it feeds (a bigint sequence feeding an
 * integer column fails at 2^31 − 1). Columns are found through pg_depend: identity and serial
 * (owned) columns, and columns whose default calls nextval() on the sequence.
 */
import type { Row } from '../db/types.js';
import type { Probe } from './types.js';
import { boolean, number, numberOrNull, rowsOf, string } from './values.js';

export interface SequenceUsage {
  readonly schema: string;
  readonly name: string;
  /** smallint, integer or bigint. */
  readonly dataType: string;
  readonly increment: number;
  readonly minValue: number;
  readonly maxValue: number;
  readonly cycle: boolean;
  /** This role may read its value (SELECT or USAGE on it). */
  readonly readable: boolean;
  /** The last value handed out (the start value when never used); null when not readable. */
  readonly lastValue: number | null;
  /** The columns it feeds: "schema.table.column (type)". */
  readonly columns: readonly string[];
  /** The value where nextval() or the insert fails: the sequence's own bound or the narrowest column's. */
  readonly limit: number;
  /** What sets the limit: "sequence maxvalue" (minvalue when descending) or "column public.orders.id (integer)". */
  readonly limitedBy: string;
  /** Share of the range from the start bound to the limit already used; null when not readable. */
  readonly usedFraction: number | null;
}

export interface SequencesSnapshot {
  readonly database: string;
  readonly totalSequences: number;
  /** Sequences whose value this role may not read. */
  readonly unreadable: number;
  /** Up to `sequenceListLimit`: non-cycling ones first, the most used first. */
  readonly sequences: readonly SequenceUsage[];
}

/** How many sequences the snapshot lists. */
export const sequenceListLimit = 100;

// Values and the fraction are computed in numeric: bigint bounds do not fit a double exactly.
// pg_sequence_last_value() fails without privilege, and on a standby for an unlogged sequence
// (before 17): both are kept behind the CASE.
const sequencesSql = `
with seqs as (
  select c.oid, n.nspname as schema, c.relname as name, format_type(s.seqtypid, null) as data_type,
         s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcycle,
         has_sequence_privilege(c.oid, 'SELECT,USAGE') as readable,
         c.relpersistence
    from pg_sequence s
    join pg_class c on c.oid = s.seqrelid
    join pg_namespace n on n.oid = c.relnamespace
   where not pg_is_other_temp_schema(n.oid)
),
feeds as (
  select d.objid as seq, d.refobjid as rel, d.refobjsubid as attnum
    from pg_depend d
   where d.classid = 'pg_class'::regclass and d.refclassid = 'pg_class'::regclass and d.deptype in ('a', 'i') and d.refobjsubid > 0
  union
  select d.refobjid, ad.adrelid, ad.adnum
    from pg_depend d
    join pg_attrdef ad on ad.oid = d.objid
   where d.classid = 'pg_attrdef'::regclass and d.refclassid = 'pg_class'::regclass
),
cols as (
  select f.seq,
         format('%s.%s.%s (%s)', quote_ident(cn.nspname), quote_ident(cr.relname), quote_ident(a.attname), format_type(a.atttypid, a.atttypmod)) as label,
         case coalesce(nullif(t.typbasetype, 0), a.atttypid)
              when 'int2'::regtype then 32767::numeric when 'int4'::regtype then 2147483647::numeric
              when 'int8'::regtype then 9223372036854775807::numeric end as type_max,
         case coalesce(nullif(t.typbasetype, 0), a.atttypid)
              when 'int2'::regtype then -32768::numeric when 'int4'::regtype then -2147483648::numeric
              when 'int8'::regtype then -9223372036854775808::numeric end as type_min
    from feeds f
    join seqs s on s.oid = f.seq
    join pg_attribute a on a.attrelid = f.rel and a.attnum = f.attnum and not a.attisdropped
    join pg_class cr on cr.oid = a.attrelid
    join pg_namespace cn on cn.oid = cr.relnamespace
    join pg_type t on t.oid = a.atttypid
),
measured as (
  select s.*,
         case when s.readable and not (pg_is_in_recovery() and s.relpersistence = 'u')
              then coalesce(pg_sequence_last_value(s.oid), s.seqstart) end as last_value,
         coalesce((select array_agg(c.label order by c.label) from cols c where c.seq = s.oid), '{}') as columns,
         case when s.seqincrement > 0
              then (select c.label from cols c where c.seq = s.oid and c.type_max < s.seqmax order by c.type_max, c.label limit 1)
              else (select c.label from cols c where c.seq = s.oid and c.type_min > s.seqmin order by c.type_min desc, c.label limit 1) end as limiting_column,
         case when s.seqincrement > 0
              then least(s.seqmax::numeric, (select min(c.type_max) from cols c where c.seq = s.oid))
              else greatest(s.seqmin::numeric, (select max(c.type_min) from cols c where c.seq = s.oid)) end as lim
    from seqs s
)
select schema, name, data_type, seqincrement as increment, seqmin as min_value, seqmax as max_value, seqcycle as cycle,
       readable, last_value, columns, lim as "limit",
       coalesce('column ' || limiting_column, case when seqincrement > 0 then 'sequence maxvalue' else 'sequence minvalue' end) as limited_by,
       (case when last_value is null then null
             when seqincrement > 0 then (last_value - seqmin) / nullif(lim - seqmin, 0)
             else (seqmax - last_value) / nullif(seqmax - lim, 0) end)::float8 as used_fraction,
       count(*) over () as total_sequences,
       count(*) filter (where not readable) over () as unreadable
  from measured
 order by seqcycle, used_fraction desc nulls last, schema, name
 limit ${sequenceListLimit}`;

function parseSequence(row: Row): SequenceUsage {
  const columns = row['columns'];
  return {
    schema: string(row, 'schema'),
    name: string(row, 'name'),
    dataType: string(row, 'data_type'),
    increment: number(row, 'increment'),
    minValue: number(row, 'min_value'),
    maxValue: number(row, 'max_value'),
    cycle: boolean(row, 'cycle'),
    readable: boolean(row, 'readable'),
    lastValue: numberOrNull(row, 'last_value'),
    columns: Array.isArray(columns) ? columns.map(String) : [],
    limit: number(row, 'limit'),
    limitedBy: string(row, 'limited_by'),
    usedFraction: numberOrNull(row, 'used_fraction'),
  };
}

/** The connected database's sequences, the most used first. */
export const sequencesProbe: Probe<SequencesSnapshot> = {
  id: 'sequences',
  title: 'Sequences',
  target: 'server',
  cadenceMs: 600_000,
  minServerVersion: 100000,
  queries: () => ({ sequences: { text: sequencesSql }, database: { text: 'select current_database() as database' } }),
  parse(rows) {
    const list = rowsOf(rows, 'sequences');
    const first = list[0];
    const database = rowsOf(rows, 'database')[0];
    return {
      database: database === undefined ? '' : string(database, 'database'),
      totalSequences: first === undefined ? 0 : number(first, 'total_sequences'),
      unreadable: first === undefined ? 0 : number(first, 'unreadable'),
      sequences: list.map(parseSequence),
    };
  },
};
