/**
 * Helpers of bench/backup.ts: timed runs of a command as the postgres user (wall clock, and the
 * user + system CPU of the whole process tree from /usr/bin/time, which counts every child the
 * command waited for: pg_basebackup, zstd, tar), the bytes of a directory tree, and the figures'
 * formatting.
 */
import { spawn } from 'node:child_process';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';

/** A finished timed run. `lines` are the stderr lines, each with the seconds since the start. */
export interface TimedRun {
  readonly wallS: number;
  readonly userS: number;
  readonly sysS: number;
  readonly stdout: string;
  readonly lines: readonly { readonly atS: number; readonly line: string }[];
}

const timeMarker = 'BENCH-TIME';

// libpq variables of the caller's shell must not redirect the tools to another server.
function childEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('PG')));
}

/**
 * Runs `argv` as postgres (runuser) under /usr/bin/time; rejects with the stderr tail when it
 * exits non-zero, so that a failed backup never passes for a fast one.
 */
export function timedAsPostgres(argv: readonly string[], options: { readonly cwd?: string } = {}): Promise<TimedRun> {
  const started = process.hrtime.bigint();
  const since = (): number => Number(process.hrtime.bigint() - started) / 1e9;
  const child = spawn('/usr/bin/time', ['-f', `${timeMarker} %e %U %S`, 'runuser', '-u', 'postgres', '--', ...argv], {
    cwd: options.cwd ?? '/tmp',
    env: childEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let pending = '';
  const lines: { atS: number; line: string }[] = [];
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    const atS = since();
    const parts = (pending + chunk).split('\n');
    pending = parts.pop() ?? '';
    for (const line of parts) lines.push({ atS, line });
  });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const wallS = since();
      if (pending !== '') lines.push({ atS: wallS, line: pending });
      const timeLine = lines.findLast((entry) => entry.line.startsWith(timeMarker));
      const output = lines.filter((entry) => entry !== timeLine);
      if (code !== 0 || timeLine === undefined) {
        const tail = output.slice(-15).map((entry) => entry.line).join('\n');
        reject(new Error(`${argv.join(' ')} failed (${signal ?? `exit ${code ?? '?'}`}):\n${tail}`));
        return;
      }
      const [, , user, sys] = timeLine.line.split(' ');
      resolve({ wallS, userS: Number(user), sysS: Number(sys), stdout, lines: output });
    });
  });
}

/** Runs `argv` as postgres and returns its stdout; rejects with its stderr on failure. */
export async function asPostgres(argv: readonly string[], options: { readonly cwd?: string } = {}): Promise<string> {
  return (await timedAsPostgres(argv, options)).stdout;
}

/** The apparent size of every regular file under `dir` (what `du -sb` counts, without directories). */
export async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += (await lstat(join(entry.parentPath, entry.name))).size;
  }
  return total;
}

/** Seconds since the start at which the first stderr line matching `pattern` arrived. */
export function lineAt(run: TimedRun, pattern: RegExp): number | undefined {
  return run.lines.find((entry) => pattern.test(entry.line))?.atS;
}

export const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(0)} MB`;
export const s1 = (seconds: number): string => `${seconds.toFixed(1)} s`;
export const ratio = (ours: number, theirs: number): string => `${(ours / theirs).toFixed(2)}×`;

/** A plain text table, columns padded to their widest cell. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]?.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length))) ?? [];
  return rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ').trimEnd()).join('\n');
}
