/**
 * Verification of physical backups (issue 5 item 8, DESIGN §7 rule 7): every stored object of a
 * backup against its manifest (size and SHA-256 of the stored bytes; with the keyring, also
 * decrypted and decompressed against the SHA-256 of the original tar bytes), and the WAL from the
 * backup's start to its stop present and readable in the archive. Also the layout of a backup in a
 * repository, shared with basebackup.ts (docs/backups.md):
 *
 *   backups/<id>/pgdata.tar.<NNNNNN>.<zst|gz|raw>[.enc]   the tar stream of the data directory, in parts
 *   backups/<id>/tablespace-<oid>.tar.<NNNNNN>.<…>[.enc]  the tar of each tablespace, in parts (src/backup/tablespaces.ts)
 *   backups/<id>/manifest.json                             written last: a backup without it is incomplete
 *   backups/<id>/verify-<time>.json                        one VerificationRecord per verification
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import { Duplex, PassThrough, Transform, Writable, type TransformCallback } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { UserError, messageOf } from '../errors.js';
import { decryptBuffer, decryptStream } from './crypto.js';
import { decodeObject, findArchived, readArchiveInfo } from './wal/archive.js';
import { decompress } from './wal/compress.js';
import { parseWalFileName, segmentFileName, segmentNumber } from './wal/segment.js';
import { ObjectNotFoundError, type BackupManifest, type Keyring, type Repository, type VerificationRecord } from './types.js';

/** Where the backups live in a repository. */
export const BACKUPS_PREFIX = 'backups/';
/** The default WAL segment size, used only when the archive does not record one. */
const DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024;

/** The prefix of one backup's objects: `backups/<id>/`. */
export function backupPrefix(id: string): string {
  return `${BACKUPS_PREFIX}${id}/`;
}

/** The key of a backup's manifest. */
export function manifestKey(id: string): string {
  return `${backupPrefix(id)}manifest.json`;
}

/** The file name extension of each compression of backup parts ('raw' for none). */
export const partExtension: Readonly<Record<BackupManifest['compression'], string>> = { zstd: 'zst', gzip: 'gz', none: 'raw' };

/** The key of part `index` (1-based) of a backup's data directory tar. */
export function partKey(id: string, index: number, compression: BackupManifest['compression'], encrypted: boolean): string {
  return `${backupPrefix(id)}pgdata.tar.${String(index).padStart(6, '0')}.${partExtension[compression]}${encrypted ? '.enc' : ''}`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Reads and checks a backup's manifest; undefined when the backup has none (incomplete or absent). */
export async function readManifest(repository: Repository, id: string): Promise<BackupManifest | undefined> {
  const key = manifestKey(id);
  let text: string;
  try {
    const head = await repository.head(key);
    if (head === undefined) return undefined;
    text = (await buffer(await repository.get(key, head.sha256))).toString('utf8');
  } catch (error) {
    if (error instanceof ObjectNotFoundError) return undefined;
    throw error;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new UserError(`${key} in ${repository.description} is not valid JSON`, 'the manifest is damaged: use another copy of the repository');
  }
  if (!isRecord(parsed) || parsed['format'] !== 1 || parsed['id'] !== id || !Array.isArray(parsed['objects']) || typeof parsed['startWal'] !== 'string' || typeof parsed['stopWal'] !== 'string') {
    throw new UserError(`${key} in ${repository.description} is not a pgwarden backup manifest (format 1)`, 'the manifest is damaged or foreign: use another copy of the repository');
  }
  return parsed as unknown as BackupManifest;
}

/** The ids of the backups that have a manifest, oldest first (ids sort by time). */
export async function listBackupIds(repository: Repository): Promise<string[]> {
  const ids: string[] = [];
  for await (const object of repository.list(BACKUPS_PREFIX)) {
    const match = /^backups\/([^/]+)\/manifest\.json$/.exec(object.key);
    if (match?.[1] !== undefined) ids.push(match[1]);
  }
  return ids.sort();
}

/** The WAL segment names from `startWal` to `stopWal` inclusive, on their timeline. */
export function walFilesBetween(startWal: string, stopWal: string, segmentSize: number): string[] {
  const start = parseWalFileName(startWal);
  const stop = parseWalFileName(stopWal);
  if (start?.kind !== 'segment' || stop?.kind !== 'segment') throw new Error(`${startWal}..${stopWal} are not WAL segment names`);
  const first = segmentNumber(start, segmentSize);
  const last = segmentNumber(stop, segmentSize);
  if (first === undefined || last === undefined || last < first) throw new Error(`${stopWal} comes before ${startWal}`);
  const names: string[] = [];
  for (let n = first; n <= last; n++) names.push(segmentFileName(stop.timeline, n, segmentSize));
  return names;
}

/** The archive's segment size (archive.json), or 16 MiB when it does not record one. */
export async function archiveSegmentSize(repository: Repository): Promise<number> {
  return (await readArchiveInfo(repository))?.walSegmentSize ?? DEFAULT_SEGMENT_SIZE;
}

/** The names of `wanted` that are not archived yet (one listing per timeline directory). */
export async function missingWal(repository: Repository, wanted: readonly string[]): Promise<string[]> {
  const missing: string[] = [];
  for (const name of wanted) {
    const file = parseWalFileName(name);
    if (file === undefined || (await findArchived(repository, file)).length === 0) missing.push(name);
  }
  return missing;
}

/** Counts and hashes what flows through it, passing it on unchanged. */
export class Meter extends Transform {
  bytes = 0;
  private readonly hash = createHash('sha256');
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    this.hash.update(chunk);
    callback(null, chunk);
  }
  /** The SHA-256 of everything that went through, lowercase hex (once). */
  digest(): string {
    return this.hash.digest('hex');
  }
}

/** A stream through a child process (stdin → stdout), and the promise of its successful exit. */
export function childStream(command: string, args: readonly string[]): { stream: Duplex; exited: Promise<void> } {
  const child = spawn(command, [...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  const errors: Buffer[] = [];
  child.stderr.on('data', (chunk: Buffer) => errors.push(chunk));
  const exited = new Promise<void>((resolve, reject) => {
    child.on('error', (error: NodeJS.ErrnoException) => reject(error.code === 'ENOENT' ? new UserError(`the ${command} program is not installed`, `apt-get install ${command}`) : error));
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`${command} ${args.join(' ')} failed (${signal ?? `exit ${code ?? '?'}`}): ${Buffer.concat(errors).toString('utf8').trim()}`));
    });
  });
  // EPIPE when the child exits early: its exit status says why.
  child.stdin.on('error', () => undefined);
  exited.catch(() => undefined);
  return { stream: Duplex.from({ writable: child.stdin, readable: child.stdout }), exited };
}

/** A stream that decompresses `method` (zstd through the zstd program). */
function decompressor(method: BackupManifest['compression']): { stream: Duplex; exited: Promise<void> } {
  if (method === 'none') return { stream: new PassThrough(), exited: Promise.resolve() };
  if (method === 'gzip') return { stream: createGunzip(), exited: Promise.resolve() };
  return childStream('zstd', ['-d', '-q', '-c', '--no-progress']);
}

/**
 * Reads one stored object back: its stored bytes against `sha256` and `size`; with `deep` (the
 * keyring when encrypted), decrypted and decompressed against the original size and SHA-256.
 * Returns the problem, or undefined when the object is sound.
 */
export async function checkObject(
  repository: Repository,
  object: BackupManifest['objects'][number],
  compression: BackupManifest['compression'],
  deep: { readonly keyring: Keyring | undefined; readonly encrypted: boolean } | undefined,
): Promise<string | undefined> {
  try {
    const stored = await repository.get(object.key, object.sha256);
    const storedMeter = new Meter();
    if (deep === undefined || (deep.encrypted && deep.keyring === undefined)) {
      await pipeline(stored, storedMeter, new Writable({ write: (_chunk, _encoding, callback) => callback() }));
    } else {
      const original = new Meter();
      const { stream: inflate, exited } = decompressor(compression);
      const sink = new Writable({ write: (_chunk, _encoding, callback) => callback() });
      const flow = deep.encrypted && deep.keyring !== undefined
        ? pipeline(stored, storedMeter, decryptStream(deep.keyring), inflate, original, sink)
        : pipeline(stored, storedMeter, inflate, original, sink);
      await Promise.all([flow, exited]);
      if (original.bytes !== object.originalSize || original.digest() !== object.originalSha256) {
        return `${object.key}: decrypted and decompressed, it gives ${original.bytes} bytes that differ from the original the manifest records (${object.originalSize} bytes)`;
      }
    }
    if (storedMeter.bytes !== object.size) return `${object.key}: ${storedMeter.bytes} bytes stored, the manifest records ${object.size}`;
    return undefined;
  } catch (error) {
    if (error instanceof ObjectNotFoundError) return `${object.key}: missing from ${repository.description}`;
    return `${object.key}: ${messageOf(error)}`;
  }
}

/**
 * Reads a 'stream' backup's parts back in order, each against its stored SHA-256 and size and,
 * decrypted, against its originalSize/originalSha256, and decodes them as one stream in
 * `zstd -d | wc -c` (bash, pipefail): resolves with the size of the tar they give, or rejects
 * naming the part or the decoding that failed. The decoded bytes never cross Node.
 */
export async function decodedStreamSize(repository: Repository, objects: BackupManifest['objects'], keyring: Keyring | undefined, encrypted: boolean): Promise<number> {
  const child = spawn('bash', ['-c', 'set -o pipefail; zstd -d -q -c --no-progress | wc -c'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
  child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
  child.stdin.on('error', () => undefined);
  const exited = new Promise<void>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => (code === 0 ? resolve() : reject(new Error(`the parts do not decode as one zstd stream (${signal ?? `exit ${code ?? '?'}`}): ${Buffer.concat(err).toString('utf8').trim()}`))));
  });
  exited.catch(() => undefined);
  try {
    for (const object of objects) {
      const stored = await repository.get(object.key, object.sha256);
      const storedMeter = new Meter();
      const slice = new Meter();
      const plain = encrypted && keyring !== undefined ? decryptStream(keyring) : new PassThrough();
      const feeding = pipeline(stored, storedMeter, plain, slice);
      feeding.catch(() => undefined);
      try {
        for await (const chunk of slice as AsyncIterable<Buffer>) {
          if (!child.stdin.write(chunk)) await Promise.race([once(child.stdin, 'drain'), exited.then(() => { throw new Error('zstd -d ended before the last part'); })]);
        }
        await feeding;
      } catch (error) {
        throw new Error(`${object.key}: ${messageOf(error)}`);
      }
      if (storedMeter.bytes !== object.size) throw new Error(`${object.key}: ${storedMeter.bytes} bytes stored, the manifest records ${object.size}`);
      if (slice.bytes !== object.originalSize || slice.digest() !== object.originalSha256) throw new Error(`${object.key}: it decrypts to ${slice.bytes} bytes that differ from what the manifest records (${object.originalSize} bytes)`);
    }
    child.stdin.end();
    await exited;
  } catch (error) {
    child.kill('SIGTERM');
    throw error;
  }
  const size = Number(Buffer.concat(out).toString('utf8').trim());
  if (!Number.isSafeInteger(size)) throw new Error('wc -c printed no byte count for the decoded stream');
  return size;
}

/** A 'stream' backup's parts of one tar (`what`, '' for a backup of one tar), decrypted and decompressed as one stream, to its end. */
async function checkStream(repository: Repository, manifest: BackupManifest, objects: BackupManifest['objects'], what: string, keyring: Keyring | undefined): Promise<string | undefined> {
  try {
    await decodedStreamSize(repository, objects, keyring, manifest.keyId !== null);
    return undefined;
  } catch (error) {
    return `the parts of ${what === '' ? '' : `${what} of `}backup ${manifest.id} do not decode as one stream: ${messageOf(error)}`;
  }
}

/**
 * The tars of a backup and their parts: the data directory's, then each tablespace's (as the
 * manifest lists them). `problems` gets a tablespace part the objects lack, or an empty tar.
 */
export function tarsOf(manifest: BackupManifest, problems: string[]): { what: string; objects: BackupManifest['objects'] }[] {
  const byKey = new Map(manifest.objects.map((object) => [object.key, object]));
  const tablespaces = manifest.tablespaces ?? [];
  const elsewhere = new Set(tablespaces.flatMap((tablespace) => tablespace.objects));
  const tars = [{ what: 'the data directory', objects: manifest.objects.filter((object) => !elsewhere.has(object.key)) }];
  for (const tablespace of tablespaces) {
    const objects: BackupManifest['objects'][number][] = [];
    for (const key of tablespace.objects) {
      const object = byKey.get(key);
      if (object === undefined) problems.push(`${key}: listed for tablespace ${tablespace.name} but not among the manifest's objects`);
      else objects.push(object);
    }
    tars.push({ what: `tablespace ${tablespace.name} (oid ${tablespace.oid})`, objects });
  }
  for (const tar of tars) if (tar.objects.length === 0) problems.push(`the manifest lists no part for ${tar.what}`);
  return tars;
}

/** Checks one archived WAL file: present, its stored checksum, and with the keyring its original bytes. */
async function checkWalFile(repository: Repository, name: string, keyring: Keyring | undefined): Promise<string | undefined> {
  const file = parseWalFileName(name);
  if (file === undefined) return `${name}: not a WAL file name`;
  const [object] = await findArchived(repository, file);
  if (object === undefined) return `WAL ${name} is not in the archive`;
  try {
    const bytes = await buffer(await repository.get(object.key, object.sha256));
    const { header, payload } = decodeObject(object.key, bytes);
    if (header.encrypted && keyring === undefined) return undefined; // The stored checksum is all that can be checked.
    const compressed = header.encrypted && keyring !== undefined ? await decryptBuffer(keyring, payload) : payload;
    const original = await decompress(compressed, header.compression);
    if (original.length !== header.size || createHash('sha256').update(original).digest('hex') !== header.sha256) {
      return `WAL ${object.key} does not give back the bytes its header names`;
    }
    return undefined;
  } catch (error) {
    return `WAL ${object.key}: ${messageOf(error)}`;
  }
}

export interface VerifyOptions {
  readonly repository: Repository;
  readonly keyring: Keyring | undefined;
  /** Appends the VerificationRecord to the repository (default true). */
  readonly record?: boolean;
  readonly now?: () => Date;
  /** One line per object or WAL file checked. */
  readonly progress?: (line: string) => void;
}

export interface VerifyResult extends VerificationRecord {
  readonly id: string;
  readonly objectsChecked: number;
  readonly walChecked: number;
}

/**
 * Verifies backup `id`: every object against the manifest and the WAL from start to stop. Never
 * throws for a damaged backup (the problems are the result); throws only when it has no manifest
 * or the repository cannot be read at all.
 */
export async function verifyBackup(id: string, options: VerifyOptions): Promise<VerifyResult> {
  const { repository, keyring } = options;
  const manifest = await readManifest(repository, id);
  if (manifest === undefined) {
    throw new UserError(`backup ${id} has no manifest in ${repository.description}: it is incomplete or does not exist`, 'list the backups under backups/ in the repository; an incomplete backup is never restored from');
  }
  const problems: string[] = [];
  const encrypted = manifest.keyId !== null;
  if (encrypted && keyring === undefined) problems.push(`backup ${id} is encrypted with key ${manifest.keyId ?? ''} and no key was given: only stored checksums were checked`);
  if (encrypted && keyring !== undefined && !keyring.all.some((key) => key.id === manifest.keyId)) {
    problems.push(`backup ${id} is encrypted with key ${manifest.keyId ?? ''}, which is not among the keys given (${keyring.all.map((key) => key.id).join(', ')})`);
  }
  const listed = new Set<string>();
  for await (const object of repository.list(backupPrefix(id))) listed.add(object.key);
  for (const object of manifest.objects) {
    if (!listed.has(object.key)) {
      problems.push(`${object.key}: missing from ${repository.description}`);
      continue;
    }
    // A slice of the server's compressed stream decodes only with the others: it is checked as it was stored here.
    const problem = await checkObject(repository, object, manifest.layout === 'stream' ? 'none' : manifest.compression, { keyring, encrypted });
    options.progress?.(`verify: ${object.key} ${problem === undefined ? 'ok' : 'FAILED'}`);
    if (problem !== undefined) problems.push(problem);
  }
  const tars = tarsOf(manifest, problems);
  if (manifest.layout === 'stream' && problems.length === 0 && !(encrypted && keyring === undefined)) {
    for (const tar of tars) {
      const problem = await checkStream(repository, manifest, tar.objects, tars.length > 1 ? tar.what : '', keyring);
      options.progress?.(`verify: the tar of ${tar.objects.length} part(s)${tars.length > 1 ? ` of ${tar.what}` : ''} ${problem === undefined ? 'ok' : 'FAILED'}`);
      if (problem !== undefined) problems.push(problem);
    }
  }
  const wal = walFilesBetween(manifest.startWal, manifest.stopWal, await archiveSegmentSize(repository));
  for (const name of wal) {
    const problem = await checkWalFile(repository, name, keyring);
    if (problem !== undefined) problems.push(problem);
  }
  options.progress?.(`verify: WAL ${manifest.startWal}..${manifest.stopWal} (${wal.length} files) ${problems.some((p) => p.startsWith('WAL')) ? 'FAILED' : 'ok'}`);
  const at = (options.now ?? (() => new Date()))().toISOString();
  const record: VerificationRecord = { at, ok: problems.length === 0, problems };
  if (options.record !== false) {
    const key = `${backupPrefix(id)}verify-${at.replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}.json`;
    try {
      await repository.put(key, Buffer.from(`${JSON.stringify(record, null, 2)}\n`, 'utf8'), { ifExists: 'replace' });
    } catch (error) {
      problems.push(`the verification record ${key} could not be written: ${messageOf(error)}`);
    }
  }
  return { ...record, ok: problems.length === 0, problems, id, objectsChecked: manifest.objects.length, walChecked: wal.length };
}
