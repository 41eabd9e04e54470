// The pure parts of the WAL receiver: its slot name, its back-off, and which spool files are final.
import { describe, expect, it } from 'vitest';
import { defaultSlotName, finalSpoolFiles, nextBackoff } from '../../src/backup/wal/receive.js';

describe('defaultSlotName', () => {
  it('makes a valid physical slot name from any cluster name', () => {
    expect(defaultSlotName('main')).toBe('pgwarden_main');
    expect(defaultSlotName('Prod-EU.1')).toBe('pgwarden_prod_eu_1');
    expect(defaultSlotName('x'.repeat(100))).toHaveLength(63);
  });
});

describe('nextBackoff', () => {
  it('doubles from 1 s and stops at 60 s', () => {
    const steps: number[] = [];
    let current: number | undefined;
    for (let i = 0; i < 9; i++) steps.push((current = nextBackoff(current)));
    expect(steps).toEqual([1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000]);
  });
});

describe('finalSpoolFiles', () => {
  it('pushes completed segments and history files in order, never the current .partial or other files', () => {
    const names = ['000000010000000000000005.partial', '000000010000000000000004', '000000010000000000000003', '.pgwarden-identity', 'notes.txt'];
    expect(finalSpoolFiles(names).map((file) => file.name)).toEqual(['000000010000000000000003', '000000010000000000000004']);
  });

  it('pushes the .partial a timeline switch left behind, before the new timeline\'s history and segments', () => {
    const names = ['000000020000000000000005.partial', '00000002.history', '000000010000000000000005.partial', '000000010000000000000004'];
    expect(finalSpoolFiles(names).map((file) => file.name)).toEqual([
      '000000010000000000000004',
      '000000010000000000000005.partial',
      '00000002.history',
    ]);
  });
});
