// What the restore tests share: a target directory whose server is stopped at the end, and the
// port `pgwarden restore --start` reports.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { PostgresScratch, Run } from './as-postgres.js';

const execFileAsync = promisify(execFile);
const PG_BIN = '/usr/lib/postgresql/15/bin';

/** A new target directory (absent, in a postgres-owned parent of `scratch`); its server is stopped at the end. */
export async function restoreTarget(scratch: PostgresScratch, name: string): Promise<string> {
  const dir = join(await scratch.dir(name), 'data');
  scratch.onCleanUp(async () => {
    if (existsSync(join(dir, 'postmaster.pid'))) {
      await execFileAsync('runuser', ['-u', 'postgres', '--', join(PG_BIN, 'pg_ctl'), 'stop', '-D', dir, '-m', 'immediate', '-w']).catch(() => undefined);
    }
  });
  return dir;
}

/** The port the restore reported ("the server runs on port N"). */
export function restoredPort(run: Run): number {
  const match = /runs on port (\d+)/.exec(run.stdout);
  if (match === null) throw new Error(`no port in: ${run.stdout}\n${run.stderr}`);
  return Number(match[1]);
}
