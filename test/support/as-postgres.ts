/**
 * For tests where PostgreSQL itself runs pgwarden (archive_command, restore_command) or pgwarden
 * must act as the cluster's owner: the built command line run as the `postgres` user, and scratch
 * directories that user owns, removed (in reverse order, with any extra clean-up registered) by
 * cleanUp().
 */
import { execFile } from 'node:child_process';
import { chown, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

/** The launcher of the build under test (dist/, built by the integration project's global setup). */
export const pgwardenBin = join(resolve(import.meta.dirname, '../..'), 'bin', 'pgwarden.js');

export interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `pgwarden <args>` as the postgres user; resolves with the exit code and the output, never rejects. */
export function pgwardenAsPostgres(
  args: readonly string[],
  options: { readonly cwd?: string; readonly timeoutMs?: number; readonly env?: Readonly<Record<string, string>> } = {},
): Promise<Run> {
  return new Promise((done) => {
    const env = { ...process.env, ...options.env };
    execFile('runuser', ['-u', 'postgres', '--', process.execPath, pgwardenBin, ...args], { cwd: options.cwd ?? tmpdir(), timeout: options.timeoutMs ?? 60_000, env }, (error, stdout, stderr) => {
      done({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr });
    });
  });
}

/** Temporary directories owned by postgres, and whatever else a test file must undo at the end. */
export class PostgresScratch {
  private ids: [number, number] | undefined;
  private readonly cleanups: (() => Promise<void>)[] = [];

  constructor(private readonly prefix: string) {}

  /** The postgres user's uid and gid. */
  async owner(): Promise<[number, number]> {
    if (this.ids === undefined) {
      const run = promisify(execFile);
      const [uid, gid] = await Promise.all([run('id', ['-u', 'postgres']), run('id', ['-g', 'postgres'])]);
      this.ids = [Number(uid.stdout.trim()), Number(gid.stdout.trim())];
    }
    return this.ids;
  }

  /** A new empty directory owned by postgres. */
  async dir(name: string): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), `pgwarden-${this.prefix}-${name}-`));
    await chown(dir, ...(await this.owner()));
    this.cleanups.push(() => rm(dir, { recursive: true, force: true }));
    return dir;
  }

  /** Writes a file (mode 0644) that postgres owns: a config or key the CLI reads as postgres. */
  async writeFile(path: string, text: string): Promise<void> {
    await writeFile(path, text, { mode: 0o644 });
    await chown(path, ...(await this.owner()));
  }

  /** Something to undo at the end, before the directories registered earlier are removed. */
  onCleanUp(cleanup: () => Promise<void>): void {
    this.cleanups.push(cleanup);
  }

  async cleanUp(): Promise<void> {
    for (const cleanup of this.cleanups.reverse()) await cleanup();
    this.cleanups.length = 0;
  }
}
