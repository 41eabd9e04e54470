/**
 * bin/pgwarden.js picks the entry point by the first word: `wal` → wal-main, the backup commands →
 * batch-main, the rest → cli. Its list of backup commands must be the one src/cli/batch.ts runs,
 * or a command would reach cli.js, which no longer dispatches it.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { batchCommand, batchCommandNames } from '../../src/cli/batch.js';

describe('entry points', () => {
  it('bin/pgwarden.js sends exactly the batch commands to batch-main', () => {
    const bin = readFileSync(new URL('../../bin/pgwarden.js', import.meta.url), 'utf8');
    const listed = /const batch = \[([^\]]*)\]/.exec(bin)?.[1]?.split(',').map((word) => word.trim().replace(/'/g, ''));
    expect(listed).toEqual([...batchCommandNames]);
  });

  it('batchCommand runs none of the console commands', async () => {
    expect(await batchCommand('show', [])).toBeUndefined();
    expect(await batchCommand(undefined, [])).toBeUndefined();
  });
});
