// The pure parts of logical backups (src/backup/logical.ts): the key layout of database names and
// ids, the retention planner, and which archive entries rebuild one table.
import { describe, expect, it } from 'vitest';
import {
  decodeDatabase, encodeDatabase, logicalId, planLogicalRetention, tableEntries, timeOfLogicalId,
  type LogicalEntry, type LogicalManifest,
} from '../../src/backup/logical.js';
import { checkKey } from '../../src/backup/repository/index.js';
import { logicalCommand } from '../../src/cli/logical.js';

describe('database names in keys', () => {
  it.each(['shop', 'My Shop', 'über/daten', '.hidden', 'a~b', 'x'.repeat(63), '日本語'])('%s round-trips and makes a valid key segment', (name) => {
    const segment = encodeDatabase(name);
    expect(() => checkKey(`logical/${segment}/20261127T183000.000Z/manifest.json`)).not.toThrow();
    expect(decodeDatabase(segment)).toBe(name);
  });

  it('keeps plain names readable', () => {
    expect(encodeDatabase('app_prod-1')).toBe('app_prod-1');
    expect(encodeDatabase('a b')).toBe('a~20b');
  });
});

describe('logical ids', () => {
  it('sort by time and give it back', () => {
    const at = new Date('2026-11-27T18:30:00.123Z');
    expect(logicalId(at)).toBe('20261127T183000.123Z');
    expect(timeOfLogicalId(logicalId(at))).toBe(at.toISOString());
    expect(timeOfLogicalId('not-an-id')).toBeNull();
    expect(logicalId(new Date('2026-11-27T18:30:00.124Z')) > logicalId(at)).toBe(true);
  });
});

function entry(database: string, finishedAt: string, complete = true): LogicalEntry {
  const id = logicalId(new Date(finishedAt));
  const prefix = `logical/${encodeDatabase(database)}/${id}/`;
  const manifest: LogicalManifest = {
    format: 1, kind: 'logical', id, database, key: `${prefix}dump.pgdump`, bytes: 100, sha256: 'ab', dumpBytes: 100,
    pgVersion: 150020, serverVersion: '15.20', pgDumpVersion: 'pg_dump (PostgreSQL) 15.20', startedAt: finishedAt, finishedAt, keyId: null,
  };
  return {
    database, id, storedBytes: complete ? 200 : 100, manifest: complete ? manifest : undefined,
    keys: complete ? [`${prefix}dump.pgdump`, `${prefix}manifest.json`] : [`${prefix}dump.pgdump`],
  };
}

const now = new Date('2026-11-27T12:00:00Z');
const policy = { days: 7, minCount: 1, maxCount: null, incompleteGraceHours: 24 };

describe('planLogicalRetention', () => {
  it('never deletes the newest dump of a database, however old', () => {
    const plan = planLogicalRetention([entry('a', '2025-01-01T00:00:00Z'), entry('a', '2025-01-02T00:00:00Z')], { ...policy, days: 0 }, now);
    expect(plan.keep).toEqual([{ database: 'a', id: logicalId(new Date('2025-01-02T00:00:00Z')), reason: 'the newest dump of the database (never deleted)' }]);
    expect(plan.steps.map((s) => s.id)).toEqual([logicalId(new Date('2025-01-01T00:00:00Z'))]);
  });

  it('keeps young dumps and min_count per database, deletes the manifest first', () => {
    const entries = [
      entry('a', '2026-11-01T00:00:00Z'), entry('a', '2026-11-10T00:00:00Z'), entry('a', '2026-11-25T00:00:00Z'), entry('a', '2026-11-26T00:00:00Z'),
      entry('b', '2026-10-01T00:00:00Z'), entry('b', '2026-10-02T00:00:00Z'), entry('b', '2026-10-03T00:00:00Z'),
    ];
    const plan = planLogicalRetention(entries, { ...policy, minCount: 2 }, now);
    expect(plan.keep.map((k) => `${k.database} ${k.id.slice(0, 8)}`)).toEqual(['a 20261126', 'a 20261125', 'b 20261003', 'b 20261002']);
    expect(plan.steps.map((s) => `${s.database} ${s.id.slice(0, 8)}`)).toEqual(['a 20261110', 'a 20261101', 'b 20261001']);
    for (const step of plan.steps) expect(step.keys[0]).toMatch(/manifest\.json$/);
  });

  it('applies max_count to young dumps', () => {
    const entries = ['2026-11-24', '2026-11-25', '2026-11-26', '2026-11-27'].map((day) => entry('a', `${day}T00:00:00Z`));
    const plan = planLogicalRetention(entries, { ...policy, maxCount: 2 }, now);
    expect(plan.keep.length).toBe(2);
    expect(plan.steps.map((s) => s.reason)).toEqual(['beyond max_count 2 (2 newer dumps kept)', 'beyond max_count 2 (2 newer dumps kept)']);
  });

  it('deletes incomplete dumps only after the grace period', () => {
    const plan = planLogicalRetention([entry('a', '2026-11-27T00:00:00Z'), entry('a', '2026-11-27T11:00:00Z', false), entry('a', '2026-11-25T00:00:00Z', false)], policy, now);
    expect(plan.steps.map((s) => [s.kind, s.id.slice(0, 8)])).toEqual([['incomplete', '20261125']]);
  });

  it('refuses a policy that could delete everything', () => {
    expect(() => planLogicalRetention([], { ...policy, minCount: 0 }, now)).toThrow(RangeError);
  });
});

// What pg_restore 15 prints for a database with orders (serial, index, FK to customers) and a
// table payments whose foreign key points at orders.
const list = `;
; Archive created at 2026-11-27 21:00:59 UTC
;
215; 1259 16389 TABLE public customers postgres
217; 1259 16399 TABLE public orders postgres
216; 1259 16398 SEQUENCE public orders_id_seq postgres
3364; 0 0 SEQUENCE OWNED BY public orders_id_seq postgres
218; 1259 16407 TABLE public payments postgres
219; 1259 16410 TABLE public orders_archive postgres
3206; 2604 16392 DEFAULT public orders id postgres
3354; 0 16389 TABLE DATA public customers postgres
3356; 0 16399 TABLE DATA public orders postgres
3357; 0 16407 TABLE DATA public payments postgres
3358; 0 16410 TABLE DATA public orders_archive postgres
3365; 0 0 SEQUENCE SET public orders_id_seq postgres
3208; 2606 16396 CONSTRAINT public orders orders_pkey postgres
3209; 1259 16397 INDEX public orders_customer postgres
3211; 1259 16398 INDEX public orders_archive_idx postgres
3210; 2606 16402 FK CONSTRAINT public orders orders_customer_id_fkey postgres
3212; 2606 16403 FK CONSTRAINT public payments payments_order_id_fkey postgres
3400; 0 0 COMMENT public TABLE orders postgres
`;
const script = `
--
-- Name: orders_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: postgres
--

ALTER SEQUENCE public.orders_id_seq OWNED BY public.orders.id;

--
-- Name: orders_customer; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX orders_customer ON public.orders USING btree (customer_id);

--
-- Name: orders_archive_idx; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX orders_archive_idx ON public.orders_archive USING btree (id);

--
-- Name: payments payments_order_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.payments
    ADD CONSTRAINT payments_order_id_fkey FOREIGN KEY (order_id) REFERENCES public.orders(id);
`;

describe('tableEntries', () => {
  it('picks the table, its data, sequence, default, constraints, indexes and comment, and nothing of its neighbours', () => {
    const chosen = tableEntries(list, script, 'public', 'orders');
    expect(chosen.lines.map((line) => line.replace(/^\d+; \d+ \d+ /, ''))).toEqual([
      'TABLE public orders postgres',
      'SEQUENCE public orders_id_seq postgres',
      'SEQUENCE OWNED BY public orders_id_seq postgres',
      'DEFAULT public orders id postgres',
      'TABLE DATA public orders postgres',
      'SEQUENCE SET public orders_id_seq postgres',
      'CONSTRAINT public orders orders_pkey postgres',
      'INDEX public orders_customer postgres',
      'FK CONSTRAINT public orders orders_customer_id_fkey postgres',
      'COMMENT public TABLE orders postgres',
    ]);
    expect(chosen.foreignKeys).toEqual(['public.payments: payments_order_id_fkey']);
  });

  it('finds nothing for a table the archive does not have', () => {
    expect(tableEntries(list, script, 'public', 'order').lines).toEqual([]);
    expect(tableEntries(list, script, 'sales', 'orders').lines).toEqual([]);
  });
});

describe('logicalCommand usage', () => {
  it.each([
    [[], 'a subcommand is required'],
    [['dump'], 'unknown subcommand "dump"'],
    [['restore', '--repo', '/nonexistent', '--into', 'x'], '--database DB is required'],
    [['restore', '--repo', '/nonexistent', '--database', 'app'], '--into DB is required'],
    [['restore', '--repo', '/nonexistent', '--database', 'app', '--into', 'x', '--table', 'orders'], '--table takes SCHEMA.TABLE'],
    [['restore', '--repo', '/nonexistent', '--database', 'app', '--into', 'x', '--table', 'public.orders', '--create'], '--create goes with a whole-database restore'],
    [['expire', '--repo', '/nonexistent', '--days=-1'], '--days takes a number of days'],
    [['expire', '--repo', '/nonexistent', '--min-count', '0'], '--min-count takes a whole number of at least 1'],
    [['list', '--repo', '/nonexistent', '--bogus'], "Unknown option '--bogus'"],
  ])('%j exits 2 with its usage', async (args, message) => {
    const out = await logicalCommand(args, { env: {} });
    expect(out.exitCode).toBe(2);
    expect(out.stderr).toContain(message);
    expect(out.stderr).toContain('usage: pgwarden logical');
  });
});
