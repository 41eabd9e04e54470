/**
 * A throwaway PgBouncer for the demo, in front of the local primary. It daemonizes (-d) like
 * pg_ctl's postmaster, so it survives as its own process and is stopped through its pid file.
 * PgBouncer refuses root too: it runs as the clusters' account.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { resolveConnection } from '../config/conninfo.js';
import { PgBouncerAdmin } from '../db/pgbouncer.js';
import { UserError } from '../errors.js';
import { freePort, giveTo, localHost, localSuperuser, processAlive, runAs, toolFailure, waitUntil, type PgTools } from '../cluster/local.js';

type Env = Readonly<Record<string, string | undefined>>;

const startTimeoutMs = 20_000;
const stopTimeoutMs = 5000;
const bindRetries = 4;
const usualDirs = ['/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin'];

/** The pgbouncer program: PGWARDEN_PGBOUNCER, else the PATH and the usual sbin directories; undefined when absent. */
export function findPgBouncer(env: Env = process.env): string | undefined {
  const configured = env['PGWARDEN_PGBOUNCER'];
  if (configured !== undefined && configured !== '') {
    if (!existsSync(configured)) throw new UserError(`PGWARDEN_PGBOUNCER=${configured} does not exist`, 'point it at the pgbouncer program, or unset it');
    return configured;
  }
  const dirs = [...(env['PATH'] ?? '').split(delimiter).filter((dir) => dir !== ''), ...usualDirs];
  return dirs.map((dir) => join(dir, 'pgbouncer')).find((path) => existsSync(path));
}

/** Where PgBouncer keeps its files and which primary it pools for. */
export interface LocalPgBouncerOptions {
  /** A directory for the ini, auth file, log and pid file (created and given to the tools' account). */
  readonly dir: string;
  readonly backendPort: number;
  /** A fixed listening port; without it a free one is chosen. */
  readonly port?: number | undefined;
}

/** A running PgBouncer: trust authentication, transaction pooling, admin and stats user "postgres". */
export class LocalPgBouncer {
  private constructor(
    private readonly account: PgTools['runAs'],
    readonly dir: string,
    readonly port: number,
  ) {}

  /** Writes the config, starts pgbouncer -d and waits until its admin console answers. */
  static async start(program: string, tools: PgTools, options: LocalPgBouncerOptions): Promise<LocalPgBouncer> {
    await mkdir(options.dir, { recursive: true });
    await giveTo(tools.runAs, options.dir);
    for (let attempt = 1; ; attempt++) {
      const bouncer = new LocalPgBouncer(tools.runAs, options.dir, options.port ?? (await freePort()));
      try {
        await bouncer.launch(program, options.backendPort);
        return bouncer;
      } catch (error) {
        await bouncer.stop();
        const log = await bouncer.log();
        if (/in use|could not bind|bind\(/i.test(log)) {
          if (options.port !== undefined) {
            throw new UserError(`pgbouncer: port ${options.port} on ${localHost} is already in use`, 'choose another port, or stop the program listening there');
          }
          // freePort() cannot reserve the port: someone took it between the check and the start.
          if (attempt < bindRetries) {
            await rm(bouncer.logFile, { force: true });
            continue;
          }
        }
        throw error;
      }
    }
  }

  /** pgbouncer.log in its directory. */
  get logFile(): string {
    return join(this.dir, 'pgbouncer.log');
  }

  private get pidFile(): string {
    return join(this.dir, 'pgbouncer.pid');
  }

  /** A client DSN through the pooler. */
  dsn(database: string): string {
    return `postgresql://${localSuperuser}@${localHost}:${this.port}/${encodeURIComponent(database)}?sslmode=disable`;
  }

  /** The admin console (SHOW POOLS, SHOW STATS…). */
  get adminDsn(): string {
    return this.dsn('pgbouncer');
  }

  private async launch(program: string, backendPort: number): Promise<void> {
    const ini = join(this.dir, 'pgbouncer.ini');
    const users = join(this.dir, 'userlist.txt');
    const backend = `host=${localHost} port=${backendPort}`;
    const settings: Record<string, string | number> = {
      listen_addr: localHost,
      listen_port: this.port,
      unix_socket_dir: '',
      auth_type: 'trust',
      auth_file: users,
      admin_users: localSuperuser,
      stats_users: localSuperuser,
      pool_mode: 'transaction',
      default_pool_size: 5,
      max_client_conn: 100,
      logfile: this.logFile,
      pidfile: this.pidFile,
      // Averages in SHOW STATS refresh every stats_period: short, so the demo shows them soon.
      stats_period: 10,
      ignore_startup_parameters: 'extra_float_digits,options,statement_timeout,lock_timeout,idle_in_transaction_session_timeout',
    };
    const text = [
      '[databases]',
      `demo = ${backend} dbname=demo`,
      `* = ${backend}`,
      '',
      '[pgbouncer]',
      ...Object.entries(settings).map(([key, value]) => `${key} = ${value}`),
      '',
    ].join('\n');
    await writeFile(ini, text);
    // Trust authentication still needs each user listed in the auth file.
    await writeFile(users, `"${localSuperuser}" ""\n`);
    await giveTo(this.account, ini);
    await giveTo(this.account, users);
    try {
      await runAs(this.account, program, ['-d', ini], startTimeoutMs);
    } catch (error) {
      throw new UserError(`pgbouncer did not start: ${toolFailure(error)}\n${await this.log()}`);
    }
    try {
      await waitUntil(`pgbouncer to answer on port ${this.port}`, async () => {
        // It binds after daemonizing, so a taken port shows only in its log, as FATAL.
        if (/\bFATAL\b/.test(await this.log())) throw new Error('pgbouncer exited');
        return this.answers();
      }, startTimeoutMs, 50);
    } catch (error) {
      throw new UserError(`pgbouncer did not start on port ${this.port}: ${toolFailure(error)}\n--- ${this.logFile} ---\n${await this.log()}`);
    }
  }

  private async answers(): Promise<boolean> {
    const admin = new PgBouncerAdmin(resolveConnection(this.adminDsn, 'the demo pgbouncer', {}));
    try {
      await admin.query({ text: 'SHOW VERSION' }, 1000);
      return true;
    } catch {
      return false;
    } finally {
      await admin.close().catch(() => undefined);
    }
  }

  /** What pgbouncer logged (the last lines). */
  async log(): Promise<string> {
    try {
      if ((await stat(this.logFile)).size === 0) return '';
      return (await readFile(this.logFile, 'utf8')).trimEnd().split('\n').slice(-15).join('\n');
    } catch {
      return '';
    }
  }

  /** The daemon's pid while it runs. */
  pid(): number | undefined {
    try {
      const pid = Number.parseInt(readFileSync(this.pidFile, 'utf8'), 10);
      return pid > 0 && processAlive(pid) ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  /** SIGTERM (immediate shutdown before 1.23, a wait for clients after), then SIGKILL after a few seconds. */
  async stop(immediate = false): Promise<void> {
    const pid = this.pid();
    if (pid === undefined) return;
    signal(pid, immediate ? 'SIGKILL' : 'SIGTERM');
    try {
      await waitUntil('pgbouncer to exit', () => !processAlive(pid), stopTimeoutMs, 20);
    } catch {
      signal(pid, 'SIGKILL');
      await waitUntil('pgbouncer to die', () => !processAlive(pid), stopTimeoutMs, 20);
    }
  }

  /** SIGKILL without waiting: for the second Ctrl-C. */
  kill(): void {
    const pid = this.pid();
    if (pid !== undefined) signal(pid, 'SIGKILL');
  }
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // Gone already.
  }
}
