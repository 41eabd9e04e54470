/**
 * Driving PgBouncer through a switchover or a failover: PAUSE (clients wait instead of failing),
 * point the [databases] entries at the new primary and RELOAD, RESUME. DESIGN §7 rule 13: every
 * PAUSE is followed by RESUME on every path, success, error and interrupt; `withPause` is the only
 * way the rest of pgwarden pauses.
 *
 * PAUSE blocks until every server connection is released, that is until the transactions in
 * flight end; it runs on its own admin connection with a deadline, and a PAUSE that does not drain
 * in time is given up: that connection is dropped and RESUME sent on another.
 */
import { chmod, chown, readFile, stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { PgBouncerConfig } from '../config/types.js';
import { PgBouncerAdmin } from '../db/pgbouncer.js';
import { UserError, messageOf } from '../errors.js';
import { number, string, stringOrNull } from '../probes/values.js';
import { writeFileAtomic } from '../atomic-file.js';

export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

const resumeAttempts = 5;

/** Loopback spellings are one host, as in the topology. */
function sameHost(a: string, b: string): boolean {
  const key = (host: string): string => {
    const lower = host.trim().toLowerCase();
    return lower === 'localhost' || lower === '::1' || lower === '127.0.0.1' ? 'loopback' : lower;
  };
  return key(a) === key(b);
}

/** The manual command that resumes PgBouncer, for the messages of a RESUME that failed. */
export function manualResume(config: PgBouncerConfig): string {
  const spec = config.connection;
  return `psql "host=${spec.host} port=${spec.port} user=${spec.user} dbname=pgbouncer" -c RESUME`;
}

export class PgBouncerControl {
  private readonly admin: PgBouncerAdmin;

  constructor(readonly config: PgBouncerConfig) {
    this.admin = new PgBouncerAdmin(config.connection);
  }

  /** PAUSE: waits until the transactions in flight end, for at most `timeoutMs`; then RESUME and a UserError. */
  async pause(timeoutMs: number): Promise<void> {
    const pausing = new PgBouncerAdmin(this.config.connection);
    try {
      await pausing.query({ text: 'PAUSE' }, timeoutMs);
    } catch (error) {
      await pausing.close().catch(() => undefined);
      await this.resume();
      throw new UserError(
        `PgBouncer's PAUSE did not complete within ${Math.round(timeoutMs / 1000)} s (${messageOf(error)}); PgBouncer was resumed`,
        'a long transaction holds a server connection: find it in the Sessions view, or raise failover.pauseTimeoutSeconds',
      );
    }
    await pausing.close().catch(() => undefined);
  }

  /** RESUME, retried; "not paused" counts as done. Throws with the manual command when every attempt failed. */
  async resume(): Promise<void> {
    let last: unknown;
    for (let attempt = 0; attempt < resumeAttempts; attempt += 1) {
      try {
        await this.admin.query({ text: 'RESUME' }, 5000);
        return;
      } catch (error) {
        if (/not paused/i.test(messageOf(error))) return;
        last = error;
      }
    }
    throw new UserError(`PgBouncer could not be resumed: ${messageOf(last)}; its clients are waiting`, `resume it by hand now: ${manualResume(this.config)}`);
  }

  async reload(): Promise<void> {
    await this.admin.query({ text: 'RELOAD' }, 10_000);
  }

  /** A setting as PgBouncer runs with it now (SHOW CONFIG), or undefined when it has none of that name. */
  async setting(key: string): Promise<string | undefined> {
    const rows = await this.admin.query({ text: 'SHOW CONFIG' }, 5000);
    const row = rows.find((candidate) => string(candidate, 'key') === key);
    return row === undefined ? undefined : string(row, 'value');
  }

  /** SET on the admin console: takes effect at once, until the next RELOAD (key and value are checked, never quoted in). */
  async set(key: string, value: string): Promise<void> {
    if (!/^[a-z_]+$/.test(key) || !/^[0-9.]+$/.test(value)) throw new Error(`refusing SET ${key} = ${value}`);
    await this.admin.query({ text: `SET ${key} = ${value}` }, 5000);
  }

  /** Whether every pool of these [databases] entries holds a server connection, or has no client waiting. */
  async serving(entries: readonly string[]): Promise<boolean> {
    const rows = await this.admin.query({ text: 'SHOW POOLS' }, 5000);
    return rows
      .filter((row) => entries.includes(string(row, 'database')))
      .every((row) => number(row, 'cl_waiting') === 0 || number(row, 'sv_active') + number(row, 'sv_idle') + number(row, 'sv_used') > 0);
  }

  /** The host and port of every [databases] entry as PgBouncer runs them now (SHOW DATABASES). */
  async databases(): Promise<readonly { name: string; host: string; port: number }[]> {
    const rows = await this.admin.query({ text: 'SHOW DATABASES' }, 5000);
    return rows
      .filter((row) => row['name'] !== 'pgbouncer')
      .map((row) => ({ name: string(row, 'name'), host: stringOrNull(row, 'host') ?? '', port: number(row, 'port') }));
  }

  async close(): Promise<void> {
    await this.admin.close().catch(() => undefined);
  }
}

/**
 * Runs `work` with PgBouncer paused and resumes it on every path (rule 13). An error of `work` is
 * rethrown after the RESUME; a RESUME that fails is reported after it (with the manual command).
 */
export async function withPause<T>(control: PgBouncerControl, timeoutMs: number, work: () => Promise<T>): Promise<T> {
  await control.pause(timeoutMs);
  let result: T;
  try {
    result = await work();
  } catch (error) {
    try {
      await control.resume();
    } catch (resumeError) {
      throw new UserError(`${messageOf(error)}; and then ${messageOf(resumeError)}`, `resume it by hand now: ${manualResume(control.config)}`);
    }
    throw error;
  }
  await control.resume();
  return result;
}

/**
 * After a failover: PgBouncer opens no new server connection for server_login_retry (15 s by
 * default) after a failed login, and the logins to the dead primary failed; a RELOAD with the new
 * address does not clear that. So the retry delay is set to 0 (call this while paused, after the
 * repoint); the function returned waits, after the RESUME, until the repointed pools hold a server
 * connection again (at most `timeoutMs`), then puts the setting back as it was. It must be called
 * on every path (a finally), like RESUME.
 */
export async function allowQuickLogins(control: PgBouncerControl): Promise<(entries: readonly string[], timeoutMs: number) => Promise<void>> {
  const before = await control.setting('server_login_retry');
  if (before === undefined) return () => Promise.resolve();
  await control.set('server_login_retry', '0');
  return async (entries, timeoutMs) => {
    try {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline && !(await control.serving(entries))) await delay(50);
    } finally {
      await control.set('server_login_retry', before);
    }
  };
}

export interface Repointed {
  readonly text: string;
  /** The [databases] entries that now point at the new primary. */
  readonly entries: readonly string[];
}

function pairValue(conninfo: string, key: string): string | undefined {
  return new RegExp(`(?:^|\\s)${key}\\s*=\\s*(\\S+)`).exec(conninfo)?.[1];
}

function setPair(conninfo: string, key: string, value: string): string {
  const pattern = new RegExp(`((?:^|\\s)${key}\\s*=\\s*)\\S+`);
  return pattern.test(conninfo) ? conninfo.replace(pattern, `$1${value}`) : `${conninfo.trimEnd()} ${key}=${value}`;
}

/**
 * pgbouncer.ini with every [databases] entry that points at `from` pointed at `to` (host and
 * port); an entry without a port means 5432, without a host the local socket (never repointed).
 * Everything else, comments included, is kept as it was.
 */
export function repointIni(text: string, from: Endpoint, to: Endpoint): Repointed {
  let section = '';
  const entries: string[] = [];
  const lines = text.split('\n').map((line) => {
    const header = /^\s*\[([^\]]+)\]/.exec(line);
    if (header !== null) {
      section = (header[1] ?? '').trim().toLowerCase();
      return line;
    }
    if (section !== 'databases' || /^\s*[;#]/.test(line)) return line;
    const entry = /^(\s*([^=\s]+)\s*=\s*)(.*)$/.exec(line);
    if (entry === null) return line;
    const [, head = '', name = '', conninfo = ''] = entry;
    const host = pairValue(conninfo, 'host');
    const port = Number(pairValue(conninfo, 'port') ?? '5432');
    if (host === undefined || !sameHost(host, from.host) || port !== from.port) return line;
    entries.push(name);
    return head + setPair(setPair(conninfo, 'host', to.host), 'port', String(to.port));
  });
  return { text: lines.join('\n'), entries };
}

/**
 * Points PgBouncer at `to`: rewrites its pgbouncer.ini (atomically, same owner and mode) and
 * RELOADs. Refused, with the fix, when the config names no ini file or no entry points at `from`.
 */
export async function repointPgBouncer(control: PgBouncerControl, from: Endpoint, to: Endpoint): Promise<readonly string[]> {
  const ini = control.config.ini;
  if (ini === undefined) {
    throw new UserError('pgwarden cannot repoint PgBouncer: the cluster\'s pgbouncer has no "ini" path in the config', 'add "ini": "/etc/pgbouncer/pgbouncer.ini" to the cluster\'s pgbouncer entry, or edit [databases] by hand and RELOAD');
  }
  const text = await readFile(ini, 'utf8');
  const repointed = repointIni(text, from, to);
  if (repointed.entries.length === 0) {
    const already = repointIni(text, to, to).entries.length > 0;
    if (already) return [];
    throw new UserError(`${ini}: no [databases] entry points at ${from.host}:${from.port}`, `point the entries at ${to.host}:${to.port} by hand and RELOAD PgBouncer`);
  }
  const before = await stat(ini);
  await writeFileAtomic(dirname(ini), basename(ini), repointed.text);
  await chmod(ini, before.mode & 0o7777);
  if ((process.getuid?.() ?? -1) === 0) await chown(ini, before.uid, before.gid);
  await control.reload();
  return repointed.entries;
}
