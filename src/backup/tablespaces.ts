/**
 * Tablespaces in physical backups (docs/backups.md, docs/restore.md). pg_basebackup cannot stream
 * a cluster with tablespaces to stdout, so such a backup is written by `pg_basebackup -F tar -D
 * <private temp dir>` (base.tar and one <oid>.tar per tablespace) and each tar is stored in parts
 * of its own: the data directory's as `pgdata.tar.NNNNNN…`, a tablespace's as
 * `tablespace-<oid>.tar.NNNNNN…`. The manifest lists every part in `objects` and, per tablespace,
 * its oid, name, original location and the keys of its parts.
 *
 * In tar format, base.tar holds no pg_tblspc symlinks but a `tablespace_map` file ("<oid> <path>"
 * per line, the path backslash-escaped): PostgreSQL creates the links from it at its first start.
 * A restore extracts each tablespace's tar into its original location or where `--tablespace-map
 * OLDDIR=NEWDIR` puts it, and rewrites tablespace_map to match. This module holds the pure parts
 * (keys, the map file, the mapping) and the checks of the target directories, which write nothing.
 */
import { constants, rmSync } from 'node:fs';
import { access, chmod, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { UserError } from '../errors.js';
import type { BackupManifest, BackupTablespace } from './types.js';
import { backupPrefix, partExtension } from './verify.js';

/** The file in a tar-format base backup that tells PostgreSQL where each tablespace lives. */
export const TABLESPACE_MAP_FILE = 'tablespace_map';

type ObjectEntry = BackupManifest['objects'][number];

/** The key of part `index` (1-based) of tablespace `oid`'s tar. */
export function tablespacePartKey(id: string, oid: number, index: number, compression: BackupManifest['compression'], encrypted: boolean): string {
  return `${backupPrefix(id)}tablespace-${oid}.tar.${String(index).padStart(6, '0')}.${partExtension[compression]}${encrypted ? '.enc' : ''}`;
}

/** The parts of the data directory's tar: every object that no tablespace lists. */
export function baseObjects(manifest: BackupManifest): ObjectEntry[] {
  const elsewhere = new Set((manifest.tablespaces ?? []).flatMap((tablespace) => tablespace.objects));
  return manifest.objects.filter((object) => !elsewhere.has(object.key));
}

/** The parts of one tablespace's tar, in order; throws when the manifest lists a key it does not hold. */
export function tablespaceObjects(manifest: BackupManifest, tablespace: BackupTablespace): ObjectEntry[] {
  return tablespace.objects.map((key) => {
    const object = manifest.objects.find((candidate) => candidate.key === key);
    if (object === undefined) throw new UserError(`the manifest of backup ${manifest.id} lists ${key} for tablespace ${tablespace.name} but not among its objects`, 'the manifest is damaged: use another copy of the repository or another backup');
    return object;
  });
}

// ---------------------------------------------------------------------------------------------
// tablespace_map

export interface MapLine {
  readonly oid: number;
  readonly path: string;
}

/** Reads tablespace_map as PostgreSQL writes it: "<oid> <path>" per line, '\' escaping '\', CR and LF in the path. */
export function parseTablespaceMap(text: string): MapLine[] {
  const lines: MapLine[] = [];
  let i = 0;
  while (i < text.length) {
    const space = text.indexOf(' ', i);
    if (space === -1) throw new Error(`tablespace_map: no path after "${text.slice(i, i + 20)}"`);
    const oidText = text.slice(i, space);
    if (!/^\d+$/.test(oidText)) throw new Error(`tablespace_map: "${oidText}" is not a tablespace oid`);
    let path = '';
    i = space + 1;
    while (i < text.length && text[i] !== '\n') {
      if (text[i] === '\\' && i + 1 < text.length) i += 1;
      path += text.charAt(i);
      i += 1;
    }
    i += 1;
    lines.push({ oid: Number(oidText), path: path.replace(/\r$/, '') });
  }
  return lines;
}

/** Writes tablespace_map lines as PostgreSQL does. */
export function formatTablespaceMap(lines: readonly MapLine[]): string {
  return lines.map((line) => `${line.oid} ${line.path.replace(/[\\\r\n]/g, (char) => `\\${char}`)}\n`).join('');
}

/** `text` (a tablespace_map) with the path of each oid in `dirs` replaced; throws when one of them has no line. */
export function rewriteTablespaceMap(text: string, dirs: ReadonlyMap<number, string>): string {
  const lines = parseTablespaceMap(text);
  for (const oid of dirs.keys()) {
    if (!lines.some((line) => line.oid === oid)) throw new Error(`tablespace_map has no line for tablespace ${oid}`);
  }
  return formatTablespaceMap(lines.map((line) => ({ oid: line.oid, path: dirs.get(line.oid) ?? line.path })));
}

// ---------------------------------------------------------------------------------------------
// Where each tablespace goes

/** One `--tablespace-map OLDDIR=NEWDIR`. */
export interface TablespaceMapping {
  readonly from: string;
  readonly to: string;
}

/** Reads `OLDDIR=NEWDIR` (both absolute; '\=' is an '=' inside a directory name, as pg_basebackup -T reads it). */
export function parseTablespaceMapping(text: string): TablespaceMapping {
  const fix = 'write it as --tablespace-map /old/location=/new/location (absolute paths; \\= for an = in a name)';
  const at = /(?<!\\)=/.exec(text)?.index;
  if (at === undefined) throw new UserError(`--tablespace-map ${text}: no "=" between the old and the new directory`, fix);
  const from = text.slice(0, at).replace(/\\=/g, '=');
  const to = text.slice(at + 1).replace(/\\=/g, '=');
  if (/(?<!\\)=/.test(text.slice(at + 1))) throw new UserError(`--tablespace-map ${text}: more than one "="`, fix);
  if (!isAbsolute(from) || !isAbsolute(to)) throw new UserError(`--tablespace-map ${text}: both directories must be absolute paths`, fix);
  return { from: resolve(from), to: resolve(to) };
}

/** A tablespace of the backup and the directory a restore puts it in. */
export interface TablespaceTarget {
  readonly tablespace: BackupTablespace;
  readonly dir: string;
  /** Whether it goes somewhere else than its original location. */
  readonly mapped: boolean;
}

/** A restore refused before anything was written (restore.ts's RestoreRefusedError is made from it). */
export type Refuse = (message: string, fix: string) => Error;

/**
 * Where each tablespace of `manifest` goes: under `under` (a drill's scratch dir: `<under>/<oid>`),
 * else where a mapping sends its location, else its location. Refuses a mapping that names no
 * tablespace of the backup (a typo would otherwise restore into the live location) and two
 * tablespaces sent to one directory.
 */
export function tablespaceTargets(manifest: BackupManifest, mappings: readonly TablespaceMapping[], under: string | undefined, refuse: Refuse): TablespaceTarget[] {
  const tablespaces = manifest.tablespaces ?? [];
  const locations = tablespaces.map((tablespace) => `${tablespace.location} (${tablespace.name})`).join(', ') || 'none';
  for (const mapping of mappings) {
    if (!tablespaces.some((tablespace) => resolve(tablespace.location) === mapping.from)) {
      throw refuse(`--tablespace-map ${mapping.from}=${mapping.to}: backup ${manifest.id} has no tablespace at ${mapping.from} (its tablespaces: ${locations})`, 'map the location the backup records; nothing was written');
    }
  }
  const targets = tablespaces.map((tablespace) => {
    const mapping = mappings.find((candidate) => candidate.from === resolve(tablespace.location));
    const dir = under !== undefined ? resolve(under, String(tablespace.oid)) : mapping?.to ?? resolve(tablespace.location);
    return { tablespace, dir, mapped: dir !== resolve(tablespace.location) };
  });
  for (const [index, target] of targets.entries()) {
    const other = targets.slice(0, index).find((candidate) => candidate.dir === target.dir);
    if (other !== undefined) throw refuse(`tablespaces ${other.tablespace.name} and ${target.tablespace.name} would both be restored into ${target.dir}`, 'give each tablespace its own directory with --tablespace-map; nothing was written');
  }
  return targets;
}

function inside(parent: string, child: string): boolean {
  const path = relative(parent, child);
  return path === '' || (!path.startsWith('..') && !isAbsolute(path));
}

/** The nearest ancestor of `dir` that exists (for an absent `dir`: where it would be created). */
async function nearestExisting(dir: string): Promise<string> {
  let current = dirname(dir);
  for (;;) {
    try {
      await stat(current);
      return current;
    } catch {
      const up = dirname(current);
      if (up === current) return current;
      current = up;
    }
  }
}

/**
 * Checks each tablespace target without writing anything: not the data directory (nor inside it,
 * nor holding it); an empty directory, or absent with a writable existing ancestor to create it
 * in; a non-empty one only when `resumable` lists it (an interrupted restore of the same backup
 * wrote there). Throws `refuse(...)` with the fix.
 */
export async function checkTablespaceTargets(targets: readonly TablespaceTarget[], dataDir: string, resumable: readonly string[], refuse: Refuse): Promise<void> {
  for (const { tablespace, dir } of targets) {
    const what = `tablespace ${tablespace.name} (oid ${tablespace.oid}, ${tablespace.location} in the backup)`;
    const elsewhere = tablespace.location === dir ? `restore it elsewhere with --tablespace-map ${tablespace.location}=NEWDIR` : 'map it to another directory with --tablespace-map';
    if (inside(dataDir, dir) || inside(dir, dataDir)) {
      throw refuse(`${what} would be restored into ${dir}, which overlaps the target directory ${dataDir}`, `${elsewhere} outside the target directory; nothing was written`);
    }
    let entries: string[] | undefined;
    let problem: string | undefined;
    try {
      if ((await stat(dir)).isDirectory()) entries = await readdir(dir);
      else problem = 'which is not a directory';
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') problem = `which cannot be read (${(error as Error).message})`;
    }
    if (problem !== undefined) throw refuse(`${what} would be restored into ${dir}, ${problem}`, `${elsewhere}; nothing was written`);
    if (entries === undefined) {
      const ancestor = await nearestExisting(dir);
      const usable = await stat(ancestor).then((s) => s.isDirectory(), () => false) && await access(ancestor, constants.W_OK | constants.X_OK).then(() => true, () => false);
      if (!usable) throw refuse(`${what} would be restored into ${dir}, which does not exist and cannot be created (${ancestor} is not a writable directory)`, `create ${dir} (empty, owned by the cluster's owner) or ${elsewhere}; nothing was written`);
    } else if (entries.length > 0 && !resumable.includes(dir)) {
      throw refuse(`${what} would be restored into ${dir}, which is not empty (${entries.length} entries, e.g. ${entries.slice(0, 3).join(', ')})`, `${elsewhere} into an empty or new directory; pgwarden never overwrites one; nothing was written`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The backup's staging directory

/** pg_basebackup's private directory for the tars of a cluster with tablespaces. */
export interface Staging {
  readonly dir: string;
  /** Removes it (again: harmless) and stops watching the signals. */
  remove(): Promise<void>;
}

const STAGING_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * Creates `<parent>/pgwarden-backup-<id>-XXXXXX` (mode 0700). Until remove(), a SIGINT, SIGTERM or
 * SIGHUP runs `stop` (ends pg_basebackup) and removes the directory at once; when nothing else
 * listens to that signal, it is raised again so that the process ends as it would have.
 */
export async function openStaging(parent: string, id: string, stop: () => void): Promise<Staging> {
  const dir = await mkdtemp(join(parent, `pgwarden-backup-${id}-`));
  await chmod(dir, 0o700);
  const forget = (): void => {
    for (const name of STAGING_SIGNALS) process.off(name, onSignal);
  };
  function onSignal(signal: NodeJS.Signals): void {
    forget();
    stop();
    // pg_basebackup may still create a file while it stops: retry the directory's removal.
    rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  }
  for (const name of STAGING_SIGNALS) process.on(name, onSignal);
  return {
    dir,
    remove: async () => {
      forget();
      await rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
    },
  };
}
