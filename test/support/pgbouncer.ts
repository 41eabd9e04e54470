// Throwaway PgBouncer instances for integration tests, in front of a real PostgreSQL.
// PgBouncer refuses to run as root, so it runs as the `postgres` OS user through runuser.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { chown, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort } from './cluster.js';
import { onProcessEnd } from './exit-cleanup.js';

const execFileAsync = promisify(execFile);

const HOST = '127.0.0.1';
const OS_USER = 'postgres';
const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 5000;
const BIND_RETRIES = 4;
const candidates = ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer', '/usr/local/bin/pgbouncer', '/usr/local/sbin/pgbouncer'];

export interface PgBouncerOptions {
  readonly backendHost: string;
  readonly backendPort: number;
  /**
   * [databases] entries, name → connection string. host/port of the backend are prepended unless
   * the string sets host= itself. Default: a wildcard entry that forwards every database name.
   */
  readonly databases?: Readonly<Record<string, string>>;
  readonly poolMode?: 'session' | 'transaction';
  readonly defaultPoolSize?: number;
  readonly maxClientConn?: number;
  /** Extra user names for the auth file (trust auth still needs each user listed); postgres is always there. */
  readonly users?: readonly string[];
}

export interface TestPgBouncer {
  readonly port: number;
  readonly dir: string;
  /** The pgbouncer process id (not the runuser wrapper's). */
  readonly pid: number;
  /** A DSN for a client connection through the pooler. */
  dsn(database: string, user?: string): string;
  /** The admin console: database "pgbouncer", user postgres (in admin_users and stats_users). */
  readonly adminDsn: string;
  /** What pgbouncer logged so far (its stderr). */
  log(): Promise<string>;
  /** Kills pgbouncer and removes its directory; safe to call twice. */
  stop(): Promise<void>;
}

/** The pgbouncer executable (PGWARDEN_TEST_PGBOUNCER or a usual install path), or undefined when none is installed. */
export function pgbouncerBinary(): string | undefined {
  const configured = process.env['PGWARDEN_TEST_PGBOUNCER'];
  if (configured !== undefined && configured !== '') return existsSync(configured) ? configured : undefined;
  return candidates.find((path) => existsSync(path));
}

const instances = new Set<Instance>();

// Strip libpq variables inherited from the caller's shell; pgbouncer does not need them.
function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('PG')) env[k] = v;
  }
  return env;
}

let postgresIdsCache: Promise<[number, number]> | undefined;
function postgresIds(): Promise<[number, number]> {
  postgresIdsCache ??= (async () => {
    const uid = Number((await execFileAsync('id', ['-u', OS_USER])).stdout.trim());
    const gid = Number((await execFileAsync('id', ['-g', OS_USER])).stdout.trim());
    return [uid, gid];
  })();
  return postgresIdsCache;
}

function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

function signal(pid: number | undefined, sig: NodeJS.Signals): void {
  if (pid === undefined || pid <= 0) return;
  try {
    process.kill(pid, sig);
  } catch {
    // Already gone.
  }
}

function renderIni(options: PgBouncerOptions, dir: string, port: number): string {
  const backend = `host=${options.backendHost} port=${options.backendPort}`;
  const databases = options.databases ?? { '*': '' };
  const dbLines = Object.entries(databases).map(([name, conn]) => {
    const full = /\bhost=/.test(conn) ? conn : `${backend} ${conn}`.trim();
    return `${name} = ${full}`;
  });
  const settings: Record<string, string | number> = {
    listen_addr: HOST,
    listen_port: port,
    unix_socket_dir: dir,
    auth_type: 'trust',
    auth_file: join(dir, 'userlist.txt'),
    admin_users: OS_USER,
    stats_users: OS_USER,
    pidfile: join(dir, 'pgbouncer.pid'),
    pool_mode: options.poolMode ?? 'session',
    default_pool_size: options.defaultPoolSize ?? 20,
    max_client_conn: options.maxClientConn ?? 100,
    ignore_startup_parameters: 'extra_float_digits,options,statement_timeout,lock_timeout,idle_in_transaction_session_timeout',
  };
  const lines = Object.entries(settings).map(([key, value]) => `${key} = ${value}`);
  return `[databases]\n${dbLines.join('\n')}\n\n[pgbouncer]\n${lines.join('\n')}\n`;
}

function renderUserlist(users: readonly string[]): string {
  return [...new Set([OS_USER, ...users])].map((user) => `"${user.replace(/"/g, '""')}" ""`).join('\n') + '\n';
}

class Instance implements TestPgBouncer {
  pid = 0;
  private stopping: Promise<void> | undefined;
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private readonly exited: Promise<void>;

  constructor(
    readonly dir: string,
    readonly port: number,
    readonly child: ChildProcess,
    private readonly logPath: string,
  ) {
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, sig) => {
        this.exit = { code, signal: sig };
        resolve();
      });
      // runuser itself could not be started: no 'exit' follows.
      child.once('error', () => {
        this.exit ??= { code: null, signal: null };
        resolve();
      });
    });
  }

  dsn(database: string, user = OS_USER): string {
    return `postgresql://${encodeURIComponent(user)}@${HOST}:${this.port}/${encodeURIComponent(database)}`;
  }

  get adminDsn(): string {
    return this.dsn('pgbouncer');
  }

  async log(): Promise<string> {
    return readFile(this.logPath, 'utf8').catch(() => '');
  }

  stop(): Promise<void> {
    this.stopping ??= this.shutDown();
    return this.stopping;
  }

  private async shutDown(): Promise<void> {
    if (this.exit === undefined) {
      // SIGTERM is an immediate shutdown before 1.23 but waits for clients from 1.23 on, hence the SIGKILL fallback.
      this.signalAll('SIGTERM');
      const timedOut = await Promise.race([this.exited.then(() => false), delay(STOP_TIMEOUT_MS, true)]);
      if (timedOut) {
        this.signalAll('SIGKILL');
        const stuck = await Promise.race([this.exited.then(() => false), delay(STOP_TIMEOUT_MS, true)]);
        if (stuck) signal(this.child.pid, 'SIGKILL');
      }
    }
    await rm(this.dir, { recursive: true, force: true });
    instances.delete(this);
  }

  // runuser forwards SIGTERM to pgbouncer but not SIGKILL, so pgbouncer itself is signalled once its pid is known.
  signalAll(sig: NodeJS.Signals): void {
    const pid = this.pid > 0 ? this.pid : this.pidFromFile();
    if (pid !== undefined && isAlive(pid)) signal(pid, sig);
    else signal(this.child.pid, 'SIGTERM');
  }

  private pidFromFile(): number | undefined {
    try {
      const pid = Number.parseInt(readFileSync(join(this.dir, 'pgbouncer.pid'), 'utf8'), 10);
      return Number.isInteger(pid) && pid > 0 ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  async readPid(): Promise<number> {
    const text = await readFile(join(this.dir, 'pgbouncer.pid'), 'utf8');
    const pid = Number.parseInt(text, 10);
    if (!Number.isInteger(pid) || pid <= 0) throw new Error(`bad pidfile content: ${text}`);
    return pid;
  }
}

// Vitest ends fork workers with SIGTERM, which skips 'exit' handlers, so signals get the same cleanup.
function cleanupSync(): void {
  for (const instance of instances) {
    instance.signalAll('SIGKILL');
    try {
      rmSync(instance.dir, { recursive: true, force: true, maxRetries: 3 });
    } catch {
      // Best effort while exiting.
    }
  }
  instances.clear();
}

function installExitHook(): void {
  onProcessEnd(cleanupSync);
}

class ExitedEarly extends Error {
  constructor(
    readonly log: string,
    exit: { code: number | null; signal: NodeJS.Signals | null },
  ) {
    super(`pgbouncer exited during startup (code ${exit.code ?? 'none'}, signal ${exit.signal ?? 'none'})\n--- log ---\n${log}`);
  }
}

async function adminAnswers(port: number): Promise<boolean> {
  const client = new pg.Client({ host: HOST, port, user: OS_USER, database: 'pgbouncer', connectionTimeoutMillis: 1000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SHOW VERSION');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function launch(binary: string, options: PgBouncerOptions, dir: string, port: number): Promise<Instance> {
  const ids = await postgresIds();
  const iniPath = join(dir, 'pgbouncer.ini');
  const logPath = join(dir, 'pgbouncer.log');
  await writeFile(iniPath, renderIni(options, dir, port));
  await writeFile(join(dir, 'userlist.txt'), renderUserlist(options.users ?? []));
  await chown(iniPath, ...ids);
  await chown(join(dir, 'userlist.txt'), ...ids);
  // stderr goes to a file rather than a pipe, so a forgotten instance never keeps Node alive.
  const logFile = await open(logPath, 'a');
  let child: ChildProcess;
  try {
    child = spawn('runuser', ['-u', OS_USER, '--', binary, iniPath], { stdio: ['ignore', logFile.fd, logFile.fd], env: childEnv(), cwd: dir });
  } finally {
    await logFile.close();
  }
  child.unref();
  const instance = new Instance(dir, port, child, logPath);
  instances.add(instance);

  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (instance.exit !== undefined) {
      instances.delete(instance);
      throw new ExitedEarly(await instance.log(), instance.exit);
    }
    if (await adminAnswers(port)) break;
    if (Date.now() >= deadline) {
      const log = await instance.log();
      await instance.stop();
      throw new Error(`pgbouncer did not accept connections on port ${port} within ${START_TIMEOUT_MS} ms\n--- log ---\n${log}`);
    }
    await delay(50);
  }
  instance.pid = await instance.readPid();
  return instance;
}

/** Starts a PgBouncer (trust auth, admin/stats user postgres) in front of the backend and waits until its admin console answers. */
export async function startPgBouncer(options: PgBouncerOptions): Promise<TestPgBouncer> {
  const binary = pgbouncerBinary();
  if (binary === undefined) throw new Error(`pgbouncer is not installed (looked in ${candidates.join(', ')}; set PGWARDEN_TEST_PGBOUNCER)`);
  installExitHook();
  const dir = await mkdtemp(join(tmpdir(), 'pgwarden-pgbouncer-'));
  await chown(dir, ...(await postgresIds()));
  try {
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      try {
        return await launch(binary, options, dir, port);
      } catch (error) {
        // freePort() cannot reserve the port, so another process may have taken it meanwhile.
        if (error instanceof ExitedEarly && /in use|could not bind|bind\(/i.test(error.log) && attempt < BIND_RETRIES) {
          await rm(join(dir, 'pgbouncer.log'), { force: true });
          continue;
        }
        throw error;
      }
    }
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}
