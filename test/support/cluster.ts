// Throwaway PostgreSQL 15 clusters for integration tests.
// Everything runs as the `postgres` OS user because initdb/pg_ctl/pg_basebackup refuse root.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { chown, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import pg from 'pg';
import { onProcessEnd } from './exit-cleanup.js';

const execFileAsync = promisify(execFile);

const PG_BIN = process.env['PGWARDEN_TEST_PG_BIN'] ?? '/usr/lib/postgresql/15/bin';
const HOST = '127.0.0.1';
const PG_USER = 'postgres';
const START_TIMEOUT_S = 60;
const BIND_RETRIES = 4;

export interface ClusterOptions {
  preload?: readonly string[];
  settings?: Readonly<Record<string, string | number | boolean>>;
  archiveCommand?: string;
  maxConnections?: number;
  name?: string;
}

export interface StandbyOptions extends ClusterOptions {
  slot?: string;
  applyDelayMs?: number;
}

export interface TestCluster {
  readonly name: string;
  readonly port: number;
  readonly dataDir: string;
  readonly host: string;
  dsn(database?: string, user?: string): string;
  sql(text: string, database?: string): Promise<Record<string, unknown>[]>;
  psql(text: string, database?: string): Promise<string>;
  start(): Promise<void>;
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  restart(): Promise<void>;
  promote(): Promise<void>;
  destroy(): Promise<void>;
}

type ConfValue = string | number | boolean;

const clusters = new Set<Cluster>();
const handedOutPorts = new Set<number>();

// Strip libpq variables inherited from the caller's shell so psql/pg_basebackup only see our flags.
function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('PG')) env[k] = v;
  }
  return env;
}

async function runAsPostgres(tool: string, args: readonly string[]): Promise<string> {
  const { stdout } = await execFileAsync('runuser', ['-u', 'postgres', '--', join(PG_BIN, tool), ...args], {
    env: childEnv(),
    maxBuffer: 16 * 1024 * 1024,
  });
  return stdout;
}

function errorText(err: unknown): string {
  if (err instanceof Error) {
    // execFile errors carry the tool's stderr, which is the useful part.
    const stderr = (err as Error & { stderr?: unknown }).stderr;
    const extra = typeof stderr === 'string' ? stderr.trim() : '';
    return extra !== '' && !err.message.includes(extra) ? `${err.message}\n${extra}` : err.message;
  }
  return String(err);
}

function renderConf(settings: Readonly<Record<string, ConfValue>>): string {
  return Object.entries(settings)
    .map(([key, value]) => {
      if (typeof value === 'boolean') return `${key} = ${value ? 'on' : 'off'}`;
      if (typeof value === 'number') return `${key} = ${value}`;
      return `${key} = '${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
    })
    .join('\n');
}

function settingsFromOptions(options: ClusterOptions): Record<string, ConfValue> {
  const out: Record<string, ConfValue> = {};
  if (options.preload !== undefined) out['shared_preload_libraries'] = options.preload.join(',');
  if (options.maxConnections !== undefined) out['max_connections'] = options.maxConnections;
  if (options.archiveCommand !== undefined) {
    out['archive_mode'] = 'on';
    out['archive_command'] = options.archiveCommand;
  }
  return { ...out, ...options.settings };
}

function tail(text: string, lines: number): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.unref();
      server.once('error', reject);
      server.listen(0, HOST, () => {
        const address = server.address();
        server.close(() => {
          if (address !== null && typeof address === 'object') resolve(address.port);
          else reject(new Error('could not determine a free port'));
        });
      });
    });
    // Never hand the same port to two clusters of this process, even if the first is stopped.
    if (!handedOutPorts.has(port)) {
      handedOutPorts.add(port);
      return port;
    }
  }
}

export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | null | false>,
  options: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const intervalMs = options.intervalMs ?? 100;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await fn();
      if (value) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const suffix = lastError === undefined ? '' : ` (last error: ${errorText(lastError)})`;
      throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}${suffix}`, { cause: lastError });
    }
    await delay(intervalMs);
  }
}

class Cluster implements TestCluster {
  readonly host = HOST;
  readonly dataDir: string;
  readonly logFile: string;
  readonly confFile: string;
  private destroyed = false;

  constructor(
    readonly name: string,
    readonly baseDir: string,
    public port: number,
    // Settings copied from a primary by pg_basebackup; our own settings are appended so they win.
    private readonly inheritedConf: string,
    private readonly ownConf: Record<string, ConfValue>,
  ) {
    this.dataDir = join(baseDir, 'data');
    this.logFile = join(baseDir, 'log');
    this.confFile = join(this.dataDir, 'pgwarden-test.conf');
  }

  dsn(database = 'postgres', user = PG_USER): string {
    return `postgresql://${encodeURIComponent(user)}@${this.host}:${this.port}/${encodeURIComponent(database)}`;
  }

  async sql(text: string, database = 'postgres'): Promise<Record<string, unknown>[]> {
    const client = new pg.Client({ host: this.host, port: this.port, user: PG_USER, database });
    // A server killed mid-test must not surface as an unhandled 'error' event.
    client.on('error', () => undefined);
    await client.connect();
    try {
      // Multi-statement text yields one result per statement at runtime; return the last one.
      const result: unknown = await client.query(text);
      const last: unknown = Array.isArray(result) ? result[result.length - 1] : result;
      return (last as pg.QueryResult<Record<string, unknown>> | undefined)?.rows ?? [];
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  async psql(text: string, database = 'postgres'): Promise<string> {
    const args = ['-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', this.host, '-p', String(this.port), '-U', PG_USER];
    const { stdout } = await execFileAsync(join(PG_BIN, 'psql'), [...args, '-d', database, '-c', text], {
      env: childEnv(),
      maxBuffer: 16 * 1024 * 1024,
    });
    return stdout.replace(/\n$/, '');
  }

  async writeConf(): Promise<void> {
    const own = { ...this.ownConf, port: this.port };
    await writeFile(this.confFile, `${this.inheritedConf}\n# pgwarden test harness: ${this.name}\n${renderConf(own)}\n`);
    await chown(this.confFile, ...(await postgresIds()));
  }

  async start(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const logOffset = existsSync(this.logFile) ? (await stat(this.logFile)).size : 0;
      try {
        await runAsPostgres('pg_ctl', ['start', '-D', this.dataDir, '-l', this.logFile, '-w', '-t', String(START_TIMEOUT_S)]);
        return;
      } catch (err) {
        const log = existsSync(this.logFile) ? (await readFile(this.logFile, 'utf8')).slice(logOffset) : '';
        // freePort() can't reserve the port, so another process may have grabbed it meanwhile.
        if (log.includes('could not bind') && attempt < BIND_RETRIES) {
          this.port = await freePort();
          await this.writeConf();
          continue;
        }
        throw new Error(`cluster ${this.name} failed to start on port ${this.port}: ${errorText(err)}\n--- log tail ---\n${tail(log, 30)}`, {
          cause: err,
        });
      }
    }
  }

  async stop(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    await runAsPostgres('pg_ctl', ['stop', '-D', this.dataDir, '-m', mode, '-w', '-t', String(START_TIMEOUT_S)]);
  }

  async restart(): Promise<void> {
    await this.stop('fast');
    await this.start();
  }

  async promote(): Promise<void> {
    await runAsPostgres('pg_ctl', ['promote', '-D', this.dataDir, '-w', '-t', String(START_TIMEOUT_S)]);
    await waitFor(`${this.name} to leave recovery`, async () => {
      const rows = await this.sql('select pg_is_in_recovery() as r');
      return rows[0]?.['r'] === false;
    });
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    await this.shutDownNow();
    await rm(this.baseDir, { recursive: true, force: true });
    this.destroyed = true;
    clusters.delete(this);
  }

  // A crashed postmaster can linger as a zombie until init reaps it, and pg_ctl waits for that;
  // so treat zombies as dead.
  livePostmasterPid(): number | undefined {
    try {
      const pid = Number.parseInt(readFileSync(join(this.dataDir, 'postmaster.pid'), 'utf8'), 10);
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      return pid > 0 && state !== 'Z' && state !== 'X' ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  // What pg_ctl stop -m immediate does, minus its wait for a crashed postmaster's zombie to be reaped.
  private async shutDownNow(): Promise<void> {
    const pid = this.livePostmasterPid();
    if (pid === undefined) return;
    try {
      process.kill(pid, 'SIGQUIT');
      await waitFor(`${this.name} to shut down`, async () => this.livePostmasterPid() === undefined, {
        timeoutMs: 10_000,
        intervalMs: 20,
      });
    } catch {
      this.killPostmaster();
    }
  }

  // Last resort when SIGQUIT didn't work: backends exit on their own once the postmaster is gone.
  killPostmaster(): void {
    const pid = this.livePostmasterPid();
    if (pid !== undefined) process.kill(pid, 'SIGKILL');
  }

  // Fire-and-forget immediate shutdown for exit paths, where we cannot await anything.
  signalShutdown(): void {
    const pid = this.livePostmasterPid();
    if (pid === undefined) return;
    try {
      process.kill(pid, 'SIGQUIT');
    } catch {
      // Already gone.
    }
  }
}

let postgresIdsCache: Promise<[number, number]> | undefined;
function postgresIds(): Promise<[number, number]> {
  postgresIdsCache ??= (async () => {
    const uid = Number((await execFileAsync('id', ['-u', 'postgres'])).stdout.trim());
    const gid = Number((await execFileAsync('id', ['-g', 'postgres'])).stdout.trim());
    return [uid, gid];
  })();
  return postgresIdsCache;
}

// Vitest ends fork workers with SIGTERM (then SIGKILL 500ms later), which skips 'exit' handlers,
// so signals get the same cleanup. It only signals postmasters (what pg_ctl stop -m immediate does)
// rather than waiting on pg_ctl, to finish inside that window.
function cleanupSync(): void {
  for (const cluster of clusters) cluster.signalShutdown();
  for (const cluster of clusters) {
    try {
      rmSync(cluster.baseDir, { recursive: true, force: true, maxRetries: 3 });
    } catch {
      // Best effort while exiting.
    }
  }
  clusters.clear();
}

function installExitHook(): void {
  onProcessEnd(cleanupSync);
}

const INCLUDE_LINE = "include 'pgwarden-test.conf'";

// Our settings live in a separate file so a standby can inherit and override them.
async function ensureInclude(dataDir: string): Promise<void> {
  const path = join(dataDir, 'postgresql.conf');
  if (!(await readFile(path, 'utf8')).includes(INCLUDE_LINE)) {
    await writeFile(path, `\n${INCLUDE_LINE}\n`, { flag: 'a' });
  }
}

async function makeBaseDir(name: string): Promise<string> {
  const safe = name.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 24);
  const dir = await mkdtemp(join(tmpdir(), `pgwarden-test-${safe}-`));
  await chown(dir, ...(await postgresIds()));
  return dir;
}

export async function createPrimary(options: ClusterOptions = {}): Promise<TestCluster> {
  installExitHook();
  const name = options.name ?? 'primary';
  const baseDir = await makeBaseDir(name);
  const conf: Record<string, ConfValue> = {
    listen_addresses: HOST,
    unix_socket_directories: baseDir,
    max_connections: 30,
    shared_buffers: '32MB',
    fsync: false,
    wal_level: 'replica',
    max_wal_senders: 10,
    max_replication_slots: 10,
    hot_standby: true,
    ...settingsFromOptions(options),
  };
  const cluster = new Cluster(name, baseDir, await freePort(), '', conf);
  clusters.add(cluster);
  try {
    await runAsPostgres('initdb', [
      '-D', cluster.dataDir, '--auth=trust', '--no-sync', '--encoding=UTF8', '--locale=C', '-U', PG_USER,
    ]);
    await ensureInclude(cluster.dataDir);
    await cluster.writeConf();
    await cluster.start();
  } catch (err) {
    await cluster.destroy().catch(() => undefined);
    throw new Error(`createPrimary(${name}) failed: ${errorText(err)}`, { cause: err });
  }
  return cluster;
}

export async function createStandby(primary: TestCluster, options: StandbyOptions = {}): Promise<TestCluster> {
  installExitHook();
  const name = options.name ?? `${primary.name}-standby`;
  const baseDir = await makeBaseDir(name);
  const dataDir = join(baseDir, 'data');
  const backupArgs = ['-h', primary.host, '-p', String(primary.port), '-U', PG_USER, '-D', dataDir, '-R', '-X', 'stream', '-c', 'fast', '--no-sync'];
  if (options.slot !== undefined) backupArgs.push('-C', '-S', options.slot);

  let cluster: Cluster | undefined;
  try {
    await runAsPostgres('pg_basebackup', backupArgs);
    // The copied conf carries the primary's port and socket dir; keep it anyway (a standby's
    // max_connections etc. must be >= the primary's) and append overrides, which win.
    const confPath = join(dataDir, 'pgwarden-test.conf');
    const inherited = existsSync(confPath) ? await readFile(confPath, 'utf8') : '';
    await ensureInclude(dataDir);
    const conf: Record<string, ConfValue> = {
      unix_socket_directories: baseDir,
      ...(options.applyDelayMs !== undefined ? { recovery_min_apply_delay: `${options.applyDelayMs}ms` } : {}),
      ...settingsFromOptions(options),
    };
    cluster = new Cluster(name, baseDir, await freePort(), inherited, conf);
    clusters.add(cluster);
    await cluster.writeConf();
    await cluster.start();
    const standby = cluster;
    await waitFor(`${name} to stream from ${primary.name}`, async () => {
      const rows = await standby.sql('select status from pg_stat_wal_receiver');
      return rows[0]?.['status'] === 'streaming';
    });
  } catch (err) {
    if (cluster !== undefined) await cluster.destroy().catch(() => undefined);
    else await rm(baseDir, { recursive: true, force: true });
    throw new Error(`createStandby(${name}) failed: ${errorText(err)}`, { cause: err });
  }
  return cluster;
}

export async function destroyAll(): Promise<void> {
  await Promise.allSettled([...clusters].map((c) => c.destroy()));
}
