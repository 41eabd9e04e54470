/**
 * A node whose data directory is on this host (`dataDir` in the config): what switchover, fencing
 * and rejoin do to it with the server programs. Stop and start with pg_ctl, read pg_control, and
 * rejoin as a standby of a new primary (DESIGN §7 rule 11): stopped, rewound with pg_rewind
 * (which finishes crash recovery itself after a kill), given standby.signal and a primary_conninfo
 * without any password, started, and watched until the new primary shows it streaming.
 *
 * Every program runs as the data directory's owner, with the connection in libpq variables (never
 * on the command line). The server writes its output to pgwarden-server.log in the data directory.
 */
import { existsSync } from 'node:fs';
import { chown, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { resolveOwner, type Owner } from '../backup/restore.js';
import type { FailoverConfig } from '../config/failover.js';
import type { ConnectionSpec, NodeConfig } from '../config/types.js';
import { libpqEnv } from '../db/libpq-env.js';
import { UserError } from '../errors.js';
import { plainEnv, programPath, quoteConf, run, throwIfAborted, type RunResult } from './processes.js';
import { defaultSlotName, standbyConninfo } from './replica.js';
import { ensureSlot, waitStreaming, withSession } from './roles.js';

export const SERVER_LOG = 'pgwarden-server.log';
const startTimeoutS = 120;
const stopTimeoutS = 60;

export interface LocalNode {
  readonly name: string;
  readonly dataDir: string;
  readonly owner: Owner;
  readonly major: number;
  /** The directory of pg_ctl, pg_rewind and pg_controldata. */
  readonly binDir: string;
}

export interface ControlData {
  /** "in production", "shut down", "shut down in recovery", "in archive recovery", "in crash recovery"… */
  readonly state: string;
  readonly checkpointLsn: string;
  readonly timeline: number;
  readonly systemIdentifier: string;
  /** Whether pg_rewind can work on it: wal_log_hints on, or data checksums. */
  readonly rewindable: boolean;
}

/** The configured node as a local one; refused, with the fix, when it has no dataDir or none is there. */
export async function localNode(node: NodeConfig): Promise<LocalNode> {
  const dataDir = node.dataDir;
  if (dataDir === undefined) {
    throw new UserError(`node ${node.name} has no "dataDir" in the config, so pgwarden cannot stop, rewind or start it`, `add "dataDir": "/var/lib/postgresql/15/main" to node ${node.name} when its data directory is on this host; otherwise do this step on its host by hand`);
  }
  const version = await readFile(join(dataDir, 'PG_VERSION'), 'utf8').catch(() => undefined);
  if (version === undefined) throw new UserError(`${dataDir} (node ${node.name}) is not a PostgreSQL data directory: it has no PG_VERSION`, `fix nodes[].dataDir of ${node.name}`);
  const major = Number(version.trim());
  const pgBin = process.env['PGWARDEN_PG_BIN'] === '' ? undefined : process.env['PGWARDEN_PG_BIN'];
  const pgCtl = programPath(pgBin, major, 'pg_ctl');
  if (pgCtl === undefined) throw new UserError(`the PostgreSQL ${major} server programs are not installed on this host`, `install the PostgreSQL ${major} server package, or set PGWARDEN_PG_BIN`);
  return { name: node.name, dataDir, owner: await resolveOwner(undefined, dataDir), major, binDir: join(pgCtl, '..') };
}

function tool(node: LocalNode, name: string): string {
  return join(node.binDir, name);
}

function failed(what: string, node: LocalNode, result: RunResult): UserError {
  const text = `${result.stderr}\n${result.stdout}`.trim().split('\n').slice(-8).join('\n  ');
  return new UserError(`${what} failed on ${node.name} (${node.dataDir}):\n  ${text}`, `see ${join(node.dataDir, SERVER_LOG)} and the server log`);
}

export async function readControlData(node: LocalNode): Promise<ControlData> {
  const result = await run(node.owner, tool(node, 'pg_controldata'), ['-D', node.dataDir], { ...plainEnv(), LC_ALL: 'C' });
  if (result.code !== 0) throw failed('pg_controldata', node, result);
  const field = (label: string): string => new RegExp(`^${label}:\\s*(.*)$`, 'm').exec(result.stdout)?.[1]?.trim() ?? '';
  return {
    state: field('Database cluster state'),
    checkpointLsn: field('Latest checkpoint location'),
    timeline: Number(field("Latest checkpoint's TimeLineID")),
    systemIdentifier: field('Database system identifier'),
    rewindable: field('wal_log_hints setting') === 'on' || Number(field('Data page checksum version')) > 0,
  };
}

/** Whether a postmaster runs on the data directory (pg_ctl status). */
export async function isRunning(node: LocalNode): Promise<boolean> {
  const result = await run(node.owner, tool(node, 'pg_ctl'), ['status', '-D', node.dataDir], plainEnv());
  return result.code === 0;
}

/** pg_ctl stop: fast lets every standby receive the shutdown checkpoint; immediate is a crash. */
export async function stopLocal(node: LocalNode, mode: 'fast' | 'immediate', signal?: AbortSignal): Promise<void> {
  if (!(await isRunning(node))) return;
  const result = await run(node.owner, tool(node, 'pg_ctl'), ['stop', '-D', node.dataDir, '-m', mode, '-w', '-t', String(stopTimeoutS)], plainEnv(), signal);
  if (result.code !== 0 && (await isRunning(node))) throw failed(`pg_ctl stop -m ${mode}`, node, result);
}

export async function startLocal(node: LocalNode, signal?: AbortSignal): Promise<void> {
  // A clean environment: the caller's PGPASSWORD must not reach the server and its WAL receiver.
  const result = await run(node.owner, tool(node, 'pg_ctl'), ['start', '-D', node.dataDir, '-l', join(node.dataDir, SERVER_LOG), '-w', '-t', String(startTimeoutS)], plainEnv(), signal);
  if (result.code !== 0) throw failed('pg_ctl start', node, result);
}

/** The node's own configuration files at the top of its data directory (postgresql.conf, included files, pg_hba.conf…). */
async function ownConfigFiles(node: LocalNode): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  for (const name of await readdir(node.dataDir)) {
    if (name.endsWith('.conf')) files.set(name, await readFile(join(node.dataDir, name)));
  }
  return files;
}

/**
 * pg_rewind from `source` (the new primary); the connection comes from libpq variables. pg_rewind
 * copies the source's configuration files too (its port, its settings): the node's own are put
 * back afterwards, as they were, and a file only the source has is removed.
 */
export async function rewind(node: LocalNode, source: ConnectionSpec, signal?: AbortSignal): Promise<string> {
  const own = await ownConfigFiles(node);
  const result = await run(node.owner, tool(node, 'pg_rewind'), ['--target-pgdata', node.dataDir, '--source-server', `dbname=${source.database}`, '--progress'], libpqEnv(source, 'pgwarden-rewind'), signal);
  for (const name of (await ownConfigFiles(node)).keys()) if (!own.has(name)) await rm(join(node.dataDir, name));
  for (const [name, content] of own) {
    await writeFile(join(node.dataDir, name), content, { mode: 0o600 });
    if ((process.getuid?.() ?? -1) === 0) await chown(join(node.dataDir, name), node.owner.uid, node.owner.gid);
  }
  if (result.code !== 0) throw failed('pg_rewind', node, result);
  return `${result.stderr}${result.stdout}`;
}

/** Sets (or replaces) settings in postgresql.auto.conf, as ALTER SYSTEM would. */
export async function setAutoConf(node: LocalNode, settings: Readonly<Record<string, string>>): Promise<void> {
  const path = join(node.dataDir, 'postgresql.auto.conf');
  const text = await readFile(path, 'utf8').catch(() => '# Do not edit this file manually!\n# It will be overwritten by the ALTER SYSTEM command.\n');
  const names = new Set(Object.keys(settings));
  const kept = text.split('\n').filter((line) => !names.has(/^\s*([A-Za-z_.]+)\s*=/.exec(line)?.[1] ?? ''));
  while (kept.length > 0 && kept[kept.length - 1] === '') kept.pop();
  const lines = [...kept, ...Object.entries(settings).map(([name, value]) => `${name} = ${quoteConf(value)}`), ''];
  await writeFile(path, lines.join('\n'), { mode: 0o600 });
  if ((process.getuid?.() ?? -1) === 0) await chown(path, node.owner.uid, node.owner.gid);
}

async function markStandby(node: LocalNode): Promise<void> {
  const signalFile = join(node.dataDir, 'standby.signal');
  if (!existsSync(signalFile)) await writeFile(signalFile, '', { mode: 0o600 });
  if ((process.getuid?.() ?? -1) === 0) await chown(signalFile, node.owner.uid, node.owner.gid);
}

/** The connection a standby makes to `primary`: the replication user, the node's name as application_name, never a password. */
export function upstreamConninfo(primary: NodeConfig, standbyName: string, failover: FailoverConfig): string {
  const spec = failover.replicationUser === undefined ? primary.connection : { ...primary.connection, user: failover.replicationUser };
  return standbyConninfo(spec, standbyName, failover.passfile);
}

/**
 * Rejoins a local node as a standby of `primary` (rule 11): stop (fast; a node that will not stop
 * is stopped immediately), refuse unless pg_rewind can work, rewind, standby settings, a slot on
 * the new primary, start, wait until it streams. The data directory is left stopped and marked
 * standby when a later step fails: it never starts as a primary again by pgwarden's hand.
 */
export async function rejoinAsStandby(node: LocalNode, primary: NodeConfig, failover: FailoverConfig, progress: (line: string) => void, signal?: AbortSignal): Promise<void> {
  progress(`stopping ${node.name}`);
  await stopLocal(node, 'fast', signal).catch(async () => stopLocal(node, 'immediate', signal));
  throwIfAborted(signal);
  const control = await readControlData(node);
  if (!control.rewindable) {
    throw new UserError(
      `${node.name} cannot be rewound: wal_log_hints is off and it has no data checksums; it stays stopped`,
      `re-create it as a standby: move ${node.dataDir} aside and run pgwarden replica create, then set wal_log_hints = on on every node`,
    );
  }
  // A primary promoted moments ago has the new timeline in pg_control only once its end-of-recovery
  // checkpoint completes; pg_rewind reads that file, and with the old timeline it rewinds wrongly
  // (or not at all) and the node then refuses to start (the pg_rewind documentation's advice).
  await withSession(primary.connection, (session) => session.query({ text: 'CHECKPOINT' }));
  progress(`pg_rewind of ${node.name} from ${primary.name}`);
  await rewind(node, primary.connection, signal);
  const slot = defaultSlotName(node.name);
  await setAutoConf(node, { primary_conninfo: upstreamConninfo(primary, node.name, failover), primary_slot_name: slot });
  await markStandby(node);
  await ensureSlot(primary.connection, slot);
  progress(`starting ${node.name} as a standby of ${primary.name}`);
  await startLocal(node, signal);
  await waitStreaming(primary.connection, node.name, slot, 60_000, signal);
}
