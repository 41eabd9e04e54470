// The pure parts of restore drills (src/backup/drill.ts): psql --csv parsing (NULL vs ""), the
// grading of custom SQL checks, table names, drill ids; and readDrills on a real local repository.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { checkTableName, drillId, parseCsv, quoteTable, readDrills, sqlLevel, type DrillRecord } from '../../src/backup/drill.js';
import { LocalRepository } from '../../src/backup/repository/local.js';

describe('parseCsv', () => {
  it('reads psql --csv: header and rows, NULL as an unquoted empty field, "" as an empty string', () => {
    expect(parseCsv('count\n600\n')).toEqual([['count'], ['600']]);
    expect(parseCsv('a,b\n,""\n')).toEqual([['a', 'b'], [null, '']]);
  });

  it('keeps commas, doubled quotes and newlines inside quoted fields', () => {
    expect(parseCsv('v,w\n"x, ""y""\nz",1\n')).toEqual([['v', 'w'], ['x, "y"\nz', '1']]);
  });

  it('gives only the header for a query without rows, nothing for no output', () => {
    expect(parseCsv('n\n')).toEqual([['n']]);
    expect(parseCsv('')).toEqual([]);
  });
});

describe('sqlLevel', () => {
  it('grades "above" (higher is worse) and "below" (lower is worse) at or beyond the levels', () => {
    expect(sqlLevel({ direction: 'above', warning: 300, critical: 500 }, 299)).toBe('ok');
    expect(sqlLevel({ direction: 'above', warning: 300, critical: 500 }, 300)).toBe('warning');
    expect(sqlLevel({ direction: 'above', warning: 300, critical: 500 }, 600)).toBe('critical');
    expect(sqlLevel({ direction: 'below', warning: 100, critical: 1 }, 600)).toBe('ok');
    expect(sqlLevel({ direction: 'below', warning: 100, critical: 1 }, 50)).toBe('warning');
    expect(sqlLevel({ direction: 'below', warning: 100, critical: 1 }, 0)).toBe('critical');
  });
});

describe('table names and ids', () => {
  it('quotes schema.table exactly as written and refuses anything else', () => {
    expect(quoteTable('public.Orders')).toBe('"public"."Orders"');
    expect(() => checkTableName('orders')).toThrow(/not a schema-qualified table name/);
    expect(() => checkTableName('public.orders; drop table x')).toThrow(/not a schema-qualified/);
    expect(() => checkTableName('public.orders')).not.toThrow();
  });

  it('makes sortable ids from the UTC time, unique within a second, short enough for a restore point name', () => {
    const at = new Date('2026-11-27T21:03:04.567Z');
    const id = drillId(at);
    expect(id).toMatch(/^20261127T210304Z-drill-[0-9a-f]{4}$/);
    expect(`pgwarden-drill-${id}`.length).toBeLessThan(64);
    expect(drillId(new Date('2026-11-28T00:00:00Z')) > id).toBe(true);
  });
});

describe('readDrills', () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  const record = (id: string, startedAt: string, ok: boolean): DrillRecord => ({
    format: 1, id, cluster: 'prod', backupId: 'b', startedAt, finishedAt: startedAt, target: 'latest', restoreSeconds: 1,
    recoveredTo: null, dataLossWindowSeconds: null, checks: [{ name: 'restore', ok, detail: '' }], ok, reason: ok ? null : 'restore: ',
  });

  it('returns the records oldest first and reports the unreadable ones', async () => {
    dir = await mkdtemp(join(tmpdir(), 'pgwarden-unit-drills-'));
    const repository = new LocalRepository(dir);
    try {
      const newer = record('20261127T220000Z-drill-aaaa', '2026-11-27T22:00:00.000Z', false);
      const older = record('20261127T210000Z-drill-bbbb', '2026-11-27T21:00:00.000Z', true);
      await repository.put(`drills/${newer.id}.json`, Buffer.from(JSON.stringify(newer)));
      await repository.put(`drills/${older.id}.json`, Buffer.from(JSON.stringify(older)));
      await repository.put('drills/broken.json', Buffer.from('{"format": 1'));
      const problems: string[] = [];
      expect(await readDrills(repository, problems)).toEqual([older, newer]);
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatch(/^drills\/broken\.json: /);
    } finally {
      repository.close();
    }
  });

  it('is empty for a repository without drills', async () => {
    dir = await mkdtemp(join(tmpdir(), 'pgwarden-unit-drills-'));
    const repository = new LocalRepository(dir);
    try {
      expect(await readDrills(repository)).toEqual([]);
    } finally {
      repository.close();
    }
  });
});
