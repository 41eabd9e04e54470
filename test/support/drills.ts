// What a restore drill leaves behind, as the drill tests look at it: its records in the
// repository, and any server process still running on the drill's copy.
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { DrillRecord } from '../../src/backup/drill.js';

const execFileAsync = promisify(execFile);

/** Every drill record of the repository, oldest first. */
export async function drillRecords(repo: string): Promise<DrillRecord[]> {
  const dir = join(repo, 'drills');
  const names = (await readdir(dir).catch(() => [])).filter((name) => name.endsWith('.json')).sort();
  return Promise.all(names.map(async (name) => JSON.parse(await readFile(join(dir, name), 'utf8')) as DrillRecord));
}

/** Processes whose command line mentions `path` (a server left running on the drill's copy). */
export async function processesUsing(path: string): Promise<string[]> {
  const { stdout } = await execFileAsync('ps', ['-eo', 'args']);
  return stdout.split('\n').filter((line) => line.includes(path));
}
