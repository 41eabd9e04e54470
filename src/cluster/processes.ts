/**
 * Running the PostgreSQL programs of a node on this host (pg_ctl, pg_rewind, pg_basebackup, psql)
 * and quoting the values they read: shared by replica creation, switchover, failover and rejoin.
 * A program runs as the data directory's owner (through runuser when pgwarden is root), in its own
 * process group so that an interrupt stops everything it forked.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pgpassPassword } from '../config/pgpass.js';
import type { ConnectionSpec } from '../config/types.js';
import { UserError } from '../errors.js';
import type { Owner } from '../backup/restore.js';

/** A postgresql.conf string value. */
export function quoteConf(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

/** A libpq conninfo value: bare when it can be, else single-quoted with \ and ' escaped. */
export function quoteConninfo(value: string): string {
  return /^[^\s'\\]+$/.test(value) ? value : `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

export function quoteShell(word: string): string {
  return /^[A-Za-z0-9_./=:@%+,-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

export function quoteSql(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

/** A connection string without any password: a libpq URI a DBA can paste into psql. */
export function publicUri(spec: ConnectionSpec, hosts: readonly { host: string; port: number }[] = [spec], params: Readonly<Record<string, string>> = {}): string {
  const hostPart = hosts.map(({ host, port }) => `${host.includes(':') && !host.startsWith('/') ? `[${host}]` : encodeURIComponent(host)}:${port}`).join(',');
  const query = new URLSearchParams();
  if (spec.sslmode !== 'prefer') query.set('sslmode', spec.sslmode);
  for (const [key, value] of Object.entries(params)) query.set(key, value);
  const text = query.toString();
  return `postgresql://${encodeURIComponent(spec.user)}@${hostPart}/${encodeURIComponent(spec.database)}${text === '' ? '' : `?${text}`}`;
}

/** The password pgwarden itself would use: the DSN's (or PGPASSWORD), else the password file's. */
export function passwordOf(spec: ConnectionSpec): string | undefined {
  return spec.password ?? pgpassPassword(spec);
}

/** A PostgreSQL program of `major`: in pgBin (PGWARDEN_PG_BIN) or /usr/lib/postgresql/<major>/bin; undefined when missing. */
export function programPath(pgBin: string | undefined, major: number, name: string): string | undefined {
  const path = join(pgBin ?? `/usr/lib/postgresql/${major}/bin`, name);
  return existsSync(path) ? path : undefined;
}

/** The environment without the caller's libpq variables (they must not redirect a program or reach the server). */
export function plainEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('PG')) env[name] = value;
  return env;
}

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** [program, args] that run as `owner`: through runuser when we are root and they are not us. */
export function asOwner(owner: Owner, program: string, args: readonly string[]): [string, string[]] {
  if ((process.getuid?.() ?? -1) === owner.uid) return [program, [...args]];
  return ['runuser', ['-u', owner.name, '--', program, ...args]];
}

/** Sends `sig` to the child's whole process group: runuser, the program, and what it forked. */
export function signalGroup(pid: number | undefined, sig: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, sig);
  } catch {
    // Gone already.
  }
}

/**
 * Runs a program to its end; never rejects for a non-zero exit. The program gets its own process
 * group (a Ctrl-C reaches pgwarden alone, which undoes its work in order), and when `signal` fires
 * the whole group is stopped: pg_basebackup -X stream forks a WAL receiver that would otherwise
 * outlive it, keep our pipes open and stream on.
 */
export function run(owner: Owner | undefined, program: string, args: readonly string[], env: NodeJS.ProcessEnv, signal?: AbortSignal): Promise<RunResult> {
  const [file, argv] = owner === undefined ? [program, [...args]] : asOwner(owner, program, args);
  return new Promise((done, fail) => {
    // cwd /: the owner may not be allowed into ours, and pg_ctl and pg_basebackup fail when they cannot resolve it.
    const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'], env, cwd: '/', detached: true });
    let killer: NodeJS.Timeout | undefined;
    const stop = (): void => {
      signalGroup(child.pid, 'SIGTERM');
      killer = setTimeout(() => signalGroup(child.pid, 'SIGKILL'), 5000);
    };
    const forget = (): void => {
      signal?.removeEventListener('abort', stop);
      if (killer !== undefined) clearTimeout(killer);
    };
    if (signal?.aborted === true) stop();
    else signal?.addEventListener('abort', stop, { once: true });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('error', (error) => {
      forget();
      fail(error);
    });
    child.on('close', (code) => {
      forget();
      done({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
  });
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw new UserError(`interrupted (${String(signal.reason)})`);
}
