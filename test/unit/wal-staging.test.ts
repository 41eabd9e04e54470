import { execFile } from 'node:child_process';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { segmentsToStage, STAGED_WAL_CLEANUP, stagedWalShell } from '../../src/backup/wal-staging.js';

const MB16 = 16 * 1024 * 1024;
const execFileAsync = promisify(execFile);
const dirs: string[] = [];

afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

describe('segmentsToStage', () => {
  it('starts after the stop segment the backup brought and ends at the newest archived one', () => {
    expect(segmentsToStage({
      backupTimeline: 1, stopWal: '000000010000000000000005', segmentSize: MB16,
      ranges: [{ timeline: 1, fromWal: '000000010000000000000003', toWal: '000000010000000000000008' }],
    })).toEqual(['000000010000000000000006', '000000010000000000000007', '000000010000000000000008']);
  });

  it('follows a timeline switch in the order recovery reads: the newer timeline\'s copy of the switch segment', () => {
    expect(segmentsToStage({
      backupTimeline: 1, stopWal: '000000010000000000000005', segmentSize: MB16,
      ranges: [
        { timeline: 1, fromWal: '000000010000000000000003', toWal: '000000010000000000000007' },
        { timeline: 2, fromWal: '000000020000000000000007', toWal: '000000020000000000000009' },
      ],
    })).toEqual(['000000010000000000000006', '000000010000000000000007', '000000020000000000000007', '000000020000000000000008', '000000020000000000000009']);
  });

  it('crosses a log boundary, and stops at the limit and at a target LSN\'s segment', () => {
    const scope = { backupTimeline: 1, stopWal: '0000000100000000000000FE', segmentSize: MB16, ranges: [{ timeline: 1, fromWal: '0000000100000000000000FE', toWal: '000000010000000100000010' }] };
    expect(segmentsToStage({ ...scope, limit: 3 })).toEqual(['0000000100000000000000FF', '000000010000000100000000', '000000010000000100000001']);
    expect(segmentsToStage({ ...scope, lastSegment: 0x100n })).toEqual(['0000000100000000000000FF', '000000010000000100000000']);
    expect(segmentsToStage(scope)).toHaveLength(0x11 + 1);
  });

  it('is empty when the archive holds nothing after the backup', () => {
    expect(segmentsToStage({
      backupTimeline: 1, stopWal: '000000010000000000000005', segmentSize: MB16,
      ranges: [{ timeline: 1, fromWal: '000000010000000000000003', toWal: '000000010000000000000005' }],
    })).toEqual([]);
  });
});

describe('the restore_command shell in front of the fetcher', () => {
  const run = async (dataDir: string, name: string, into: string): Promise<number> => {
    const command = `${stagedWalShell()}; exit 1`.replace(/%f/g, name).replace(/%p/g, into);
    return execFileAsync('sh', ['-c', command], { cwd: dataDir }).then(() => 0, (error: unknown) => (error as { code: number }).code);
  };

  it('moves a staged segment into place, answers a file it lacks to what follows, and stops recovery (126) when the move fails', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'pgwarden-staged-'));
    dirs.push(dataDir);
    await mkdir(join(dataDir, 'pgwarden-wal-staged'));
    await mkdir(join(dataDir, 'pg_wal'));
    await writeFile(join(dataDir, 'pgwarden-wal-staged', '000000010000000000000006'), 'segment 6');
    await writeFile(join(dataDir, 'pgwarden-wal-staged', '000000010000000000000007'), 'segment 7');

    expect(await run(dataDir, '000000010000000000000006', 'pg_wal/RECOVERYXLOG')).toBe(0);
    expect(await readFile(join(dataDir, 'pg_wal', 'RECOVERYXLOG'), 'utf8')).toBe('segment 6');
    // Not staged: the command goes on (here to "exit 1", in real life to the fetcher).
    expect(await run(dataDir, '000000010000000000000009', 'pg_wal/RECOVERYXLOG')).toBe(1);
    // A move that fails (no such directory) must not read as "not in the archive".
    expect(await run(dataDir, '000000010000000000000007', 'missing-dir/RECOVERYXLOG')).toBe(126);

    await execFileAsync('sh', ['-c', STAGED_WAL_CLEANUP], { cwd: dataDir });
    await expect(readFile(join(dataDir, 'pgwarden-wal-staged', '000000010000000000000007'))).rejects.toThrow(/ENOENT/);
  });
});
