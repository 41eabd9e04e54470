/**
 * Throwaway PostgreSQL clusters on this machine: the demo's primary and standby today, the
 * clusters a restore drill starts from a backup later. They listen on 127.0.0.1 only.
 *
 * initdb and pg_ctl refuse to run as root, so when pgwarden runs as root every tool runs as the
 * `postgres` OS user (through runuser) and every directory handed to them belongs to that user.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { chown, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import { UserError, messageOf } from '../errors.js';

const execFileAsync = promisify(execFile);

/** Local clusters listen here only. */
export const localHost = '127.0.0.1';
/** The bootstrap superuser initdb creates (trust authentication, local connections only). */
export const localSuperuser = 'postgres';
const serviceAccount = 'postgres';
const startTimeoutS = 60;
const stopTimeoutS = 30;
const bindRetries = 4;
const includeLine = "include_if_exists 'pgwarden.conf'";

type Env = Readonly<Record<string, string | undefined>>;
/** A postgresql.conf value: strings are quoted, booleans become on/off. */
export type SettingValue = string | number | boolean;
/** postgresql.conf settings by name. */
export type Settings = Readonly<Record<string, SettingValue>>;

/** The OS account that owns the data directories and runs the servers. */
export interface OsAccount {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
}

/** Where the PostgreSQL binaries are, and who runs them. */
export interface PgTools {
  readonly binDir: string;
  /** The `postgres` account when pgwarden runs as root; undefined: the current user. */
  readonly runAs: OsAccount | undefined;
}

function hasServerTools(dir: string): boolean {
  return existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'pg_ctl'));
}

function versionOrder(dir: string): number {
  const parts = dir.split('.').map(Number);
  return (parts[0] ?? 0) * 1000 + (parts[1] ?? 0);
}

async function lookUpAccount(name: string): Promise<OsAccount> {
  try {
    const uid = Number((await execFileAsync('id', ['-u', name])).stdout.trim());
    const gid = Number((await execFileAsync('id', ['-g', name])).stdout.trim());
    return { name, uid, gid };
  } catch {
    throw new UserError(
      `pgwarden runs as root, and initdb and pg_ctl refuse root, but there is no "${name}" OS user to run them as`,
      `create the "${name}" user (the PostgreSQL server package does), or run pgwarden as an ordinary user`,
    );
  }
}

/**
 * Finds the server binaries: PGWARDEN_PG_BIN, else `pg_config --bindir`, else the highest
 * /usr/lib/postgresql/<version>/bin. Throws a UserError naming what to install or set.
 */
export async function findPgTools(env: Env = process.env): Promise<PgTools> {
  const runAs = process.getuid?.() === 0 ? await lookUpAccount(serviceAccount) : undefined;
  const configured = env['PGWARDEN_PG_BIN'];
  if (configured !== undefined && configured !== '') {
    if (!hasServerTools(configured)) {
      throw new UserError(
        `PGWARDEN_PG_BIN=${configured} does not contain the PostgreSQL server programs (initdb, pg_ctl)`,
        'point PGWARDEN_PG_BIN at the bin directory of a PostgreSQL installation, or unset it to search the usual places',
      );
    }
    return { binDir: configured, runAs };
  }
  try {
    const { stdout } = await execFileAsync('pg_config', ['--bindir'], { env: toolEnv(env) });
    const dir = stdout.trim();
    if (dir !== '' && hasServerTools(dir)) return { binDir: dir, runAs };
  } catch {
    // No pg_config on the PATH (or only libpq's): try the Debian/Ubuntu layout.
  }
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).filter((v) => hasServerTools(join(root, v, 'bin'))) : [];
  const newest = versions.sort((a, b) => versionOrder(b) - versionOrder(a))[0];
  if (newest !== undefined) return { binDir: join(root, newest, 'bin'), runAs };
  throw new UserError(
    'cannot find the PostgreSQL server programs (initdb, pg_ctl)',
    'install the PostgreSQL server package, or set PGWARDEN_PG_BIN to the directory that holds initdb',
  );
}

/** The environment for the tools: libpq variables from the caller's shell would override our flags. */
function toolEnv(env: Env = process.env): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(env)) {
    if (!key.startsWith('PG') && value !== undefined) out[key] = value;
  }
  return out;
}

/** The useful part of a failed execFile: the program's own stderr. */
export function toolFailure(error: unknown): string {
  const stderr = (error as { stderr?: unknown }).stderr;
  const text = typeof stderr === 'string' ? stderr.trim() : '';
  return text !== '' ? text : messageOf(error);
}

/** Runs a program as the tools' account (runuser when root) with an argument array; returns stdout. */
export async function runAs(account: OsAccount | undefined, program: string, args: readonly string[], timeoutMs = 120_000): Promise<string> {
  const [file, argv] = account === undefined ? [program, [...args]] : ['runuser', ['-u', account.name, '--', program, ...args]];
  const { stdout } = await execFileAsync(file, argv, { env: toolEnv(), maxBuffer: 16 * 1024 * 1024, timeout: timeoutMs });
  return stdout;
}

/** Hands a path to the tools' account (a no-op when pgwarden does not run as root). */
export async function giveTo(account: OsAccount | undefined, path: string): Promise<void> {
  if (account !== undefined) await chown(path, account.uid, account.gid);
}

/** A new empty directory (mkdtemp) owned by the tools' account. */
export async function makeOwnedDir(tools: PgTools, prefix: string, parent: string = tmpdir()): Promise<string> {
  const dir = await mkdtemp(join(parent, prefix));
  await giveTo(tools.runAs, dir);
  return dir;
}

const handedOut = new Set<number>();

/** A TCP port on 127.0.0.1 that nothing listened on a moment ago (never the same one twice per process). */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen(0, localHost, () => {
        const address = server.address();
        server.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port assigned'))));
      });
    });
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

/** Polls `condition` until it returns true, or throws `what` after the deadline. */
export async function waitUntil(what: string, condition: () => boolean | Promise<boolean>, timeoutMs: number, intervalMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(intervalMs);
  }
}

/** True while the process exists and is not a zombie waiting for a parent that never reaps it. */
export function processAlive(pid: number): boolean {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = text.slice(text.lastIndexOf(')') + 2, text.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

function renderSettings(settings: Settings): string {
  return Object.entries(settings)
    .map(([key, value]) => {
      if (typeof value === 'boolean') return `${key} = ${value ? 'on' : 'off'}`;
      if (typeof value === 'number') return `${key} = ${value}`;
      return `${key} = '${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
    })
    .join('\n');
}

function tail(text: string, lines: number): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

/** What a local cluster is called, where it lives and how it is set up. */
export interface LocalClusterOptions {
  /** Shown in errors and as cluster_name (ps output, the standby's application_name). */
  readonly name: string;
  /** Its own directory (created if missing, given to the tools' account): data/ and server.log go inside. */
  readonly dir: string;
  /** A fixed port; without it a free one is chosen (and changed if someone takes it first). */
  readonly port?: number | undefined;
  readonly settings?: Settings | undefined;
}

/** One local cluster: its data directory, port and settings, and the pg_ctl life cycle. */
export class LocalCluster {
  readonly name: string;
  readonly dir: string;
  readonly dataDir: string;
  readonly logFile: string;
  private currentPort: number;
  private settings: Settings;

  private constructor(
    readonly tools: PgTools,
    options: LocalClusterOptions & { readonly port: number },
    private readonly portIsFixed: boolean,
  ) {
    this.name = options.name;
    this.dir = options.dir;
    this.dataDir = join(options.dir, 'data');
    this.logFile = join(options.dir, 'server.log');
    this.currentPort = options.port;
    this.settings = options.settings ?? {};
  }

  private static async create(tools: PgTools, options: LocalClusterOptions): Promise<LocalCluster> {
    await mkdir(options.dir, { recursive: true });
    await giveTo(tools.runAs, options.dir);
    const port = options.port ?? (await freePort());
    return new LocalCluster(tools, { ...options, port }, options.port !== undefined);
  }

  /** Runs initdb (trust authentication, superuser "postgres") and writes the settings; does not start it. */
  static async initdb(tools: PgTools, options: LocalClusterOptions): Promise<LocalCluster> {
    const cluster = await LocalCluster.create(tools, options);
    await cluster.tool('initdb', ['-D', cluster.dataDir, '-U', localSuperuser, '--auth=trust', '--encoding=UTF8', '--locale=C', '--no-sync']);
    await cluster.writeSettings();
    return cluster;
  }

  /** A cluster over a data directory that already exists in `dir` (a restored backup, a clone). */
  static async existing(tools: PgTools, options: LocalClusterOptions): Promise<LocalCluster> {
    const cluster = await LocalCluster.create(tools, options);
    if (!existsSync(join(cluster.dataDir, 'PG_VERSION'))) throw new UserError(`${cluster.dataDir} is not a PostgreSQL data directory`);
    await cluster.writeSettings();
    return cluster;
  }

  /** The port it listens on (it can change at start() when it was chosen automatically). */
  get port(): number {
    return this.currentPort;
  }

  /** A libpq URI for the superuser over TCP. */
  dsn(database = 'postgres'): string {
    return `postgresql://${localSuperuser}@${localHost}:${this.currentPort}/${encodeURIComponent(database)}?sslmode=disable`;
  }

  private tool(name: string, args: readonly string[]): Promise<string> {
    return runAs(this.tools.runAs, join(this.tools.binDir, name), args);
  }

  /** Merges settings into pgwarden.conf (included from postgresql.conf); they apply at the next start. */
  async configure(settings: Settings): Promise<void> {
    this.settings = { ...this.settings, ...settings };
    await this.writeSettings();
  }

  private async writeSettings(): Promise<void> {
    const conf = join(this.dataDir, 'postgresql.conf');
    const text = await readFile(conf, 'utf8');
    if (!text.includes(includeLine)) await writeFile(conf, `${text}\n${includeLine}\n`);
    const own = join(this.dataDir, 'pgwarden.conf');
    const settings: Settings = {
      listen_addresses: localHost,
      // TCP only: a socket path under a long temporary directory can exceed the 107-byte limit.
      unix_socket_directories: '',
      cluster_name: this.name,
      ...this.settings,
      port: this.currentPort,
    };
    await writeFile(own, `# written by pgwarden for the local cluster "${this.name}"\n${renderSettings(settings)}\n`);
    await giveTo(this.tools.runAs, own);
  }

  /** Starts the server and waits until it accepts connections; a taken port is replaced unless it was fixed. */
  async start(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const offset = existsSync(this.logFile) ? (await stat(this.logFile)).size : 0;
      try {
        await this.tool('pg_ctl', ['start', '-D', this.dataDir, '-l', this.logFile, '-w', '-t', String(startTimeoutS)]);
        return;
      } catch (error) {
        const log = existsSync(this.logFile) ? (await readFile(this.logFile, 'utf8')).slice(offset) : '';
        if (/could not bind|already in use/i.test(log)) {
          if (this.portIsFixed) {
            throw new UserError(`${this.name}: port ${this.currentPort} on ${localHost} is already in use`, 'choose another port, or stop the program listening there');
          }
          if (attempt < bindRetries) {
            // freePort() cannot reserve the port: someone took it between the check and the start.
            this.currentPort = await freePort();
            await this.writeSettings();
            continue;
          }
        }
        throw new UserError(`${this.name}: PostgreSQL did not start: ${toolFailure(error)}\n--- ${this.logFile} ---\n${tail(log, 20)}`);
      }
    }
  }

  /** The postmaster's pid while it runs. */
  postmasterPid(): number | undefined {
    try {
      const pid = Number.parseInt(readFileSync(join(this.dataDir, 'postmaster.pid'), 'utf8'), 10);
      return pid > 0 && processAlive(pid) ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Stops the server: 'fast' rolls back sessions and checkpoints, 'immediate' just exits (crash
   * recovery at the next start). Falls back to signals when pg_ctl fails; resolves once it is gone.
   */
  async stop(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    if (this.postmasterPid() === undefined) return;
    if (mode === 'fast') {
      try {
        await this.tool('pg_ctl', ['stop', '-D', this.dataDir, '-m', 'fast', '-w', '-t', String(stopTimeoutS)]);
      } catch {
        // Checked below: whatever pg_ctl says, what matters is whether the postmaster is gone.
      }
    }
    if (this.postmasterPid() === undefined) return;
    this.signalImmediateStop();
    try {
      await waitUntil(`${this.name} to shut down`, () => this.postmasterPid() === undefined, 10_000, 20);
    } catch {
      const pid = this.postmasterPid();
      if (pid !== undefined) process.kill(pid, 'SIGKILL');
      await waitUntil(`${this.name} to die`, () => this.postmasterPid() === undefined, 5000, 20);
    }
  }

  /** SIGQUIT to the postmaster (what pg_ctl stop -m immediate sends), without waiting: for exit paths. */
  signalImmediateStop(): void {
    const pid = this.postmasterPid();
    if (pid === undefined) return;
    try {
      process.kill(pid, 'SIGQUIT');
    } catch {
      // Gone already.
    }
  }

  /**
   * A streaming standby of this running cluster: pg_basebackup -R (primary_conninfo and
   * standby.signal written), optionally through a new physical replication slot. Not started.
   */
  async basebackup(options: LocalClusterOptions & { readonly slot?: string | undefined }): Promise<LocalCluster> {
    const standby = await LocalCluster.create(this.tools, { ...options, settings: { ...this.settings, ...options.settings } });
    const args = ['-h', localHost, '-p', String(this.currentPort), '-U', localSuperuser, '-D', standby.dataDir, '-R', '-X', 'stream', '-c', 'fast', '--no-sync'];
    if (options.slot !== undefined) args.push('-C', '-S', options.slot);
    try {
      await standby.tool('pg_basebackup', args);
    } catch (error) {
      throw new UserError(`${options.name}: pg_basebackup from ${this.name} failed: ${toolFailure(error)}`);
    }
    await standby.writeSettings();
    return standby;
  }

  /** Stops the server if it runs and deletes the directory given at creation. */
  async remove(): Promise<void> {
    await this.stop('fast');
    await rm(this.dir, { recursive: true, force: true, maxRetries: 3 });
  }
}
