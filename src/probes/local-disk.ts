/**
 * Host I/O for the storage probe: free disk is invisible to plain SQL, so it is read with statfs,
 * and only after proving that the data directory the server reports is that server's, on this
 * host (its postmaster.pid and pg_control match what the server says about itself). Anything that
 * cannot be proven is reported with the reason, never guessed.
 */
import { readFile, stat, statfs } from 'node:fs/promises';
import { endianness, userInfo } from 'node:os';
import { join } from 'node:path';

/** What the server says about itself over SQL. */
export interface DataDirectoryClaim {
  readonly dataDirectory: string;
  readonly port: number;
  /** pg_postmaster_start_time() in seconds since the epoch (with its fraction). */
  readonly startedAtEpoch: number;
  /** pg_control_system().system_identifier, as text (64 bits). */
  readonly systemIdentifier: string;
}

export type Verification = { readonly local: true } | { readonly local: false; readonly reason: string };

/**
 * The postmaster writes postmaster.pid (its start time, whole seconds) a moment before it sets
 * pg_postmaster_start_time(): allocating shared memory comes in between. This is how far apart the
 * two may be for the same start.
 */
export const startTimeToleranceSeconds = 60;

function osUser(): string {
  try {
    return userInfo().username;
  } catch {
    return `uid ${process.getuid?.() ?? '?'}`;
  }
}

function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** The system identifier in the first 8 bytes of global/pg_control (native byte order). */
async function controlSystemIdentifier(dataDirectory: string): Promise<string> {
  const bytes = await readFile(join(dataDirectory, 'global', 'pg_control'));
  if (bytes.length < 8) throw new Error('global/pg_control is shorter than 8 bytes');
  return (endianness() === 'LE' ? bytes.readBigUInt64LE(0) : bytes.readBigUInt64BE(0)).toString();
}

/** Whether `claim.dataDirectory`, read on this host, is the data directory of the server that made the claim. */
export async function verifyDataDirectory(claim: DataDirectoryClaim): Promise<Verification> {
  const dir = claim.dataDirectory;
  const pidFile = join(dir, 'postmaster.pid');
  let text: string;
  try {
    text = await readFile(pidFile, 'utf8');
  } catch (error) {
    const code = codeOf(error);
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      return {
        local: false,
        reason: (await exists(dir))
          ? `${dir} exists on this host but holds no postmaster.pid, so it is not the running server's data directory (the server runs on another host)`
          : `the data directory ${dir} is not on this host (the server runs on another host)`,
      };
    }
    if (code === 'EACCES' || code === 'EPERM') {
      return {
        local: false,
        reason: `OS user ${osUser()} may not read ${pidFile}, so the data directory cannot be proven to be this server's: run pgwarden as the server's OS user, or in its group on a cluster initialised with --allow-group-access`,
      };
    }
    return { local: false, reason: `cannot read ${pidFile}: ${messageOf(error)}` };
  }
  // Lines 1–4: postmaster pid, data directory, start time (epoch seconds), port.
  const lines = text.split('\n');
  const fileDir = lines[1] ?? '';
  const fileStart = Number(lines[2]);
  const filePort = Number(lines[3]);
  const differences: string[] = [];
  if (fileDir !== dir) differences.push(`data directory ${JSON.stringify(fileDir)}`);
  if (filePort !== claim.port) differences.push(`port ${lines[3] ?? '?'} instead of ${claim.port}`);
  const lead = claim.startedAtEpoch - fileStart;
  if (!Number.isFinite(fileStart) || lead < -1 || lead > startTimeToleranceSeconds) {
    differences.push(`started at ${Number.isFinite(fileStart) ? new Date(fileStart * 1000).toISOString() : JSON.stringify(lines[2] ?? '')} instead of ${new Date(claim.startedAtEpoch * 1000).toISOString()}`);
  }
  if (differences.length === 0) {
    try {
      const identifier = await controlSystemIdentifier(dir);
      if (identifier !== claim.systemIdentifier) differences.push(`system identifier ${identifier} instead of ${claim.systemIdentifier}`);
    } catch (error) {
      return { local: false, reason: `cannot read ${join(dir, 'global', 'pg_control')} to confirm the system identifier: ${messageOf(error)}` };
    }
  }
  if (differences.length > 0) {
    return { local: false, reason: `${pidFile} on this host belongs to another server (${differences.join(', ')}): this server's data directory is on another host` };
  }
  return { local: true };
}

/** A place the server writes to: the data directory, pg_wal, a tablespace. */
export interface Location {
  /** "data directory", "pg_wal", "tablespace ts1". */
  readonly label: string;
  readonly path: string;
}

/** One filesystem and the locations on it, as df shows it. */
export interface MeasuredFilesystem {
  /** The device number (st_dev) that groups locations on the same filesystem. */
  readonly device: string;
  readonly locations: readonly string[];
  readonly paths: readonly string[];
  readonly totalBytes: number;
  readonly usedBytes: number;
  /** Free to an unprivileged user such as postgres (root's reserved blocks excluded). */
  readonly availableBytes: number;
  /** used / (used + available), as df computes Use%. */
  readonly usedFraction: number;
}

/** statfs of every location, grouped by filesystem; locations that fail are listed with the reason. */
export async function measureFilesystems(locations: readonly Location[]): Promise<{ readonly filesystems: MeasuredFilesystem[]; readonly failures: string[] }> {
  const byDevice = new Map<string, MeasuredFilesystem>();
  const failures: string[] = [];
  for (const location of locations) {
    try {
      // stat and statfs follow symbolic links: a pg_wal linked to another disk is measured there.
      const device = String((await stat(location.path)).dev);
      const known = byDevice.get(device);
      if (known !== undefined) {
        byDevice.set(device, { ...known, locations: [...known.locations, location.label], paths: [...known.paths, location.path] });
        continue;
      }
      const fs = await statfs(location.path);
      const usedBytes = (fs.blocks - fs.bfree) * fs.bsize;
      const availableBytes = fs.bavail * fs.bsize;
      const usable = usedBytes + availableBytes;
      byDevice.set(device, {
        device,
        locations: [location.label],
        paths: [location.path],
        totalBytes: fs.blocks * fs.bsize,
        usedBytes,
        availableBytes,
        usedFraction: usable === 0 ? 0 : usedBytes / usable,
      });
    } catch (error) {
      failures.push(`${location.label} (${location.path}): ${messageOf(error)}`);
    }
  }
  return { filesystems: [...byDevice.values()], failures };
}
