// A real PgBouncer started from a given pgbouncer.ini (one pgwarden generated), for tests of that
// file itself. Unlike startPgBouncer() (./pgbouncer.ts), the ini is not rendered here: only the
// paths that must stay inside a throwaway directory (pid file, Unix socket) are overridden.
// PgBouncer refuses to run as root, so it runs as the `postgres` OS user through runuser.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { chown, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onProcessEnd } from './exit-cleanup.js';
import { waitFor } from './cluster.js';
import { pgbouncerBinary } from './pgbouncer.js';
import { PostgresScratch } from './as-postgres.js';

const HOST = '127.0.0.1';
const STOP_TIMEOUT_MS = 5000;

export interface IniPgBouncer {
  readonly port: number;
  readonly pid: number;
  log(): Promise<string>;
  /** SIGTERM, then SIGKILL if it lingers; removes its directory. Safe to call twice. */
  stop(): Promise<void>;
}

/** Sets each key in the [pgbouncer] section: replaces its line, or appends it (the section is the file's last). */
export function withSettings(ini: string, settings: Readonly<Record<string, string | number>>): string {
  let text = ini.endsWith('\n') ? ini : `${ini}\n`;
  for (const [key, value] of Object.entries(settings)) {
    const line = new RegExp(`^${key}\\s*=.*$`, 'm');
    text = line.test(text) ? text.replace(line, `${key} = ${value}`) : `${text}${key} = ${value}\n`;
  }
  return text;
}

const running = new Set<{ pid: () => number | undefined; dir: string }>();

function kill(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: HOST, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * Starts pgbouncer with the ini at `iniPath` (its auth_file must be readable by postgres) and waits
 * until it accepts TCP connections on its listen_port.
 */
export async function startPgBouncerFromIni(iniPath: string): Promise<IniPgBouncer> {
  const binary = pgbouncerBinary();
  if (binary === undefined) throw new Error('pgbouncer is not installed (set PGWARDEN_TEST_PGBOUNCER)');
  const ids = await new PostgresScratch('unused').owner();
  const dir = await mkdtemp(join(tmpdir(), 'pgwarden-pgbouncer-ini-'));
  await chown(dir, ...ids);
  const source = await readFile(iniPath, 'utf8');
  const port = Number(/^listen_port\s*=\s*(\d+)\s*$/m.exec(source)?.[1]);
  if (!Number.isInteger(port) || port <= 0) throw new Error(`no listen_port in ${iniPath}`);
  const ini = join(dir, 'pgbouncer.ini');
  const pidPath = join(dir, 'pgbouncer.pid');
  await writeFile(ini, withSettings(source, { unix_socket_dir: dir, pidfile: pidPath }));
  await chown(ini, ...ids);

  const logPath = join(dir, 'pgbouncer.log');
  const logFile = await open(logPath, 'a');
  let child: ChildProcess;
  try {
    // Without PG* variables from the caller's shell; stderr to a file so nothing keeps Node alive.
    const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('PG')));
    child = spawn('runuser', ['-u', 'postgres', '--', binary, ini], { stdio: ['ignore', logFile.fd, logFile.fd], env, cwd: dir });
  } finally {
    await logFile.close();
  }
  child.unref();
  let exited = false;
  const exit = new Promise<void>((resolve) => {
    child.once('exit', () => {
      exited = true;
      resolve();
    });
    child.once('error', () => {
      exited = true;
      resolve();
    });
  });
  const pidOf = (): number | undefined => {
    try {
      const pid = Number.parseInt(readFileSync(pidPath, 'utf8'), 10);
      return Number.isInteger(pid) && pid > 0 ? pid : undefined;
    } catch {
      return undefined;
    }
  };
  const entry = { pid: pidOf, dir };
  running.add(entry);
  onProcessEnd(() => {
    for (const instance of running) {
      kill(instance.pid(), 'SIGKILL');
      rmSync(instance.dir, { recursive: true, force: true });
    }
    running.clear();
  });
  const log = (): Promise<string> => readFile(logPath, 'utf8').catch(() => '');

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (!exited) {
        // runuser forwards SIGTERM; SIGKILL must go to pgbouncer itself.
        kill(pidOf() ?? child.pid, 'SIGTERM');
        const timer = new Promise<boolean>((resolve) => setTimeout(() => resolve(true), STOP_TIMEOUT_MS).unref());
        if (await Promise.race([exit.then(() => false), timer])) kill(pidOf(), 'SIGKILL');
      }
      running.delete(entry);
      await rm(dir, { recursive: true, force: true });
    })();
    return stopping;
  };

  try {
    await waitFor(`pgbouncer to listen on ${port}`, async () => {
      if (exited) throw new Error(`pgbouncer exited during startup\n--- log ---\n${await log()}`);
      return (await portOpen(port)) && pidOf() !== undefined;
    });
  } catch (error) {
    await stop();
    throw error;
  }
  return { port, pid: pidOf() ?? 0, log, stop };
}
