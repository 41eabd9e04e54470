/**
 * A repository in a local directory (or a mounted network file system). Keys map to paths under
 * the root. A put writes `.<name>.<pid>.<random>.tmp` beside the final name while hashing, fsyncs
 * it, then link()s it to the final name, which fails when the name exists (a rename would replace
 * it), and fsyncs the directory. The SHA-256 computed while writing is kept in a hidden sidecar
 * `.<name>.sha256` (JSON: sha256 and size), written atomically after the object is in place;
 * an object without a sidecar (a crash between the two, or a file copied in by hand) has its
 * checksum recomputed by head() and list(). Hidden names (starting with '.') are never objects.
 *
 * The root must exist: pgwarden never creates it, so that an unmounted disk is not taken for an
 * empty repository (and a missing root is an error, never "not in the repository").
 */
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { link, lstat, mkdir, open, readFile, readdir, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { pipeline, type Readable } from 'node:stream';
import { fsyncDir, writeFileAtomic } from '../../atomic-file.js';
import { UserError, messageOf } from '../../errors.js';
import { ObjectExistsError, ObjectNotFoundError, type PutOptions, type Repository, type StoredObject } from '../types.js';
import { RunningDigest, VerifyingStream, isSha256 } from './checksum.js';
import { baseNameOf, checkKey, checkPrefix, directoryOf } from './keys.js';

/** What the sidecar `.<name>.sha256` holds. */
interface Sidecar {
  readonly sha256: string;
  readonly size: number;
}

function errnoOf(error: unknown): string | undefined {
  return error instanceof Error ? (error as NodeJS.ErrnoException).code : undefined;
}

function isMissing(error: unknown): boolean {
  const code = errnoOf(error);
  return code === 'ENOENT' || code === 'ENOTDIR';
}

function toBuffer(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (typeof chunk === 'string') return Buffer.from(chunk);
  throw new TypeError('a repository body stream must yield Buffers, Uint8Arrays or strings');
}

/** Writes all of `bytes` (a write may be partial). */
async function writeAll(handle: FileHandle, bytes: Buffer): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, offset, bytes.length - offset);
    offset += bytesWritten;
  }
}

/** Lowercase hex SHA-256 of a file's bytes. */
async function hashFile(path: string): Promise<string> {
  const digest = new RunningDigest();
  for await (const chunk of createReadStream(path)) digest.update(chunk as Buffer);
  return digest.digest();
}

export class LocalRepository implements Repository {
  readonly description: string;
  readonly root: string;

  constructor(root: string) {
    if (!isAbsolute(root)) throw new UserError(`the local repository path "${root}" is relative`, 'give an absolute path, e.g. "/var/lib/pgwarden/repo"');
    this.root = resolve(root);
    this.description = `local ${this.root}`;
  }

  /** Nothing to release; present so that callers can close any repository. */
  close(): void {
    // A local repository holds no connection.
  }

  private pathOf(key: string): string {
    return join(this.root, ...key.split('/'));
  }

  private sidecarOf(key: string): string {
    return join(this.root, ...directoryOf(key).split('/').filter((part) => part !== ''), `.${baseNameOf(key)}.sha256`);
  }

  /** Throws a UserError unless the root is an existing directory. */
  private async ensureRoot(): Promise<void> {
    let isDirectory: boolean;
    try {
      isDirectory = (await stat(this.root)).isDirectory();
    } catch (error) {
      if (isMissing(error)) {
        throw new UserError(
          `${this.description}: the repository directory does not exist`,
          `create it (mkdir -p ${this.root}) and make it writable by the user running pgwarden; pgwarden never creates it, so that an unmounted disk is not taken for an empty repository`,
        );
      }
      throw this.failure(error, 'opening', '(root)');
    }
    if (!isDirectory) throw new UserError(`${this.description}: the repository path is not a directory`, 'point the repository at a directory');
  }

  /** A file system error as the user should read it; anything unexpected is returned unchanged. */
  private failure(error: unknown, action: string, key: string): unknown {
    const code = errnoOf(error);
    const what = `${this.description}: ${action} ${key}`;
    if (code === 'ENOSPC' || code === 'EDQUOT') {
      return new UserError(`${what}: no space left on the device (${code})`, 'free space on that file system or move the repository; nothing was stored under that name', { cause: error });
    }
    if (code === 'EACCES' || code === 'EPERM') {
      return new UserError(`${what}: permission denied (${code})`, `give the user running pgwarden read and write access to ${this.root}`, { cause: error });
    }
    if (code === 'EROFS') return new UserError(`${what}: the file system is read-only`, 'remount it read-write, or choose another repository path', { cause: error });
    return error;
  }

  private async readSidecar(key: string): Promise<Sidecar | undefined> {
    let text: string;
    try {
      text = await readFile(this.sidecarOf(key), 'utf8');
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw this.failure(error, 'reading the checksum of', key);
    }
    try {
      const parsed = JSON.parse(text) as Partial<Sidecar>;
      if (typeof parsed.sha256 === 'string' && isSha256(parsed.sha256) && typeof parsed.size === 'number') return { sha256: parsed.sha256, size: parsed.size };
    } catch {
      // A torn or foreign sidecar is treated as absent: the checksum is recomputed.
    }
    return undefined;
  }

  /** Creates the directories of a key, fsyncing each parent so that the new names survive a crash. */
  private async makeDirectories(dir: string): Promise<void> {
    const first = await mkdir(dir, { recursive: true });
    if (first === undefined) return;
    const created: string[] = [];
    for (let current = dir; current.length >= first.length; current = dirname(current)) created.push(current);
    for (const path of [dirname(first), ...created.reverse()]) await fsyncDir(path);
  }

  async put(key: string, body: Readable | Buffer, options: PutOptions = {}): Promise<StoredObject> {
    const replace = options.ifExists === 'replace';
    let temp: string | undefined;
    let placed = false;
    let sourceError: unknown;
    let finalPath = '';
    try {
      checkKey(key);
      await this.ensureRoot();
      finalPath = this.pathOf(key);
      if (!replace) {
        const existing = await this.head(key);
        if (existing !== undefined) throw new ObjectExistsError(key, existing);
      }
      const dir = dirname(finalPath);
      const name = baseNameOf(key);
      await this.makeDirectories(dir);
      temp = join(dir, `.${name}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
      const digest = new RunningDigest();
      const handle = await open(temp, 'wx', 0o640);
      try {
        if (Buffer.isBuffer(body)) {
          digest.update(body);
          await writeAll(handle, body);
        } else {
          const chunks = body[Symbol.asyncIterator]();
          for (;;) {
            let next: IteratorResult<unknown>;
            try {
              next = await chunks.next();
            } catch (error) {
              sourceError = error;
              throw error;
            }
            if (next.done === true) break;
            const chunk = toBuffer(next.value);
            digest.update(chunk);
            await writeAll(handle, chunk);
          }
        }
        await handle.sync();
      } finally {
        await handle.close();
      }
      const stored: StoredObject = { key, size: digest.size, sha256: digest.digest() };
      if (replace) {
        // The old sidecar goes first: a crash then leaves an object without one (recomputed), never a stale one.
        await unlink(this.sidecarOf(key)).catch((error: unknown) => {
          if (!isMissing(error)) throw error;
        });
        await rename(temp, finalPath);
        temp = undefined;
        placed = true;
      } else {
        try {
          await link(temp, finalPath);
        } catch (error) {
          if (errnoOf(error) !== 'EEXIST') throw error;
          const existing = await this.head(key);
          if (existing === undefined) {
            throw new UserError(`${this.description}: cannot store ${key}: a directory of that name exists`, 'choose another key, or remove the directory');
          }
          throw new ObjectExistsError(key, existing);
        }
        placed = true;
        await unlink(temp);
        temp = undefined;
      }
      const sidecar: Sidecar = { sha256: stored.sha256, size: stored.size };
      // Also fsyncs the directory, which makes the link, the unlink of the temporary name and the sidecar durable together.
      await writeFileAtomic(dir, `.${name}.sha256`, `${JSON.stringify(sidecar)}\n`);
      return stored;
    } catch (error) {
      if (temp !== undefined) await unlink(temp).catch(() => undefined);
      if (placed) {
        // The object is ours (link() created it, or replace put it there): without its sidecar the put has failed, so take it back.
        await unlink(finalPath).catch(() => undefined);
        await fsyncDir(dirname(finalPath)).catch(() => undefined);
      }
      if (!Buffer.isBuffer(body)) body.destroy();
      if (error === sourceError || error instanceof ObjectExistsError) throw error;
      throw this.failure(error, 'writing', key);
    }
  }

  async get(key: string, expectedSha256?: string): Promise<Readable> {
    checkKey(key);
    const path = this.pathOf(key);
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (error) {
      if (isMissing(error)) {
        await this.ensureRoot();
        throw new ObjectNotFoundError(key);
      }
      throw this.failure(error, 'reading', key);
    }
    let recorded: Sidecar | undefined;
    try {
      if (!(await handle.stat()).isFile()) throw new ObjectNotFoundError(key);
      recorded = await this.readSidecar(key);
    } catch (error) {
      await handle.close();
      throw error;
    }
    const verifier = new VerifyingStream({
      repository: this.description,
      key,
      expectedSha256,
      recordedSha256: recorded?.sha256,
      recordedSize: recorded?.size,
    });
    pipeline(handle.createReadStream(), verifier, () => undefined);
    return verifier;
  }

  async head(key: string): Promise<StoredObject | undefined> {
    checkKey(key);
    const path = this.pathOf(key);
    let size: number;
    try {
      const stats = await lstat(path);
      if (!stats.isFile()) return undefined;
      size = stats.size;
    } catch (error) {
      if (isMissing(error)) {
        await this.ensureRoot();
        return undefined;
      }
      throw this.failure(error, 'reading', key);
    }
    const recorded = await this.readSidecar(key);
    // The sidecar's size is not compared: a size that differs means a truncated object, which
    // get() then reports; head() gives the size found and the checksum recorded.
    if (recorded !== undefined) return { key, size, sha256: recorded.sha256 };
    try {
      return { key, size, sha256: await hashFile(path) };
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw this.failure(error, 'reading', key);
    }
  }

  /** Keys under `dirKey` that start with `prefix`, with their sizes; hidden names skipped. */
  private async collect(dirKey: string, prefix: string, out: { key: string; size: number }[]): Promise<void> {
    let entries;
    try {
      entries = await readdir(dirKey === '' ? this.root : this.pathOf(dirKey), { withFileTypes: true });
    } catch (error) {
      if (isMissing(error)) return;
      throw this.failure(error, 'listing', dirKey === '' ? '(root)' : dirKey);
    }
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue;
      const key = dirKey === '' ? entry.name : `${dirKey}/${entry.name}`;
      try {
        checkKey(key);
      } catch {
        continue; // a name no key can have: not a repository object
      }
      if (entry.isDirectory()) {
        if (prefix.startsWith(`${key}/`) || `${key}/`.startsWith(prefix)) await this.collect(key, prefix, out);
      } else if (entry.isFile() && key.startsWith(prefix)) {
        try {
          out.push({ key, size: (await lstat(this.pathOf(key))).size });
        } catch (error) {
          if (!isMissing(error)) throw this.failure(error, 'listing', key);
        }
      }
    }
  }

  async *list(prefix: string): AsyncGenerator<StoredObject> {
    checkPrefix(prefix);
    await this.ensureRoot();
    const found: { key: string; size: number }[] = [];
    await this.collect(directoryOf(prefix), prefix, found);
    // The whole key, not each directory level: "a-b" sorts before "a/b" (as on S3), which a walk would not give.
    found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    for (const { key, size } of found) {
      const recorded = await this.readSidecar(key);
      if (recorded !== undefined) {
        yield { key, size, sha256: recorded.sha256 };
        continue;
      }
      let sha256: string;
      try {
        sha256 = await hashFile(this.pathOf(key));
      } catch (error) {
        if (isMissing(error)) continue; // deleted meanwhile
        throw this.failure(error, 'reading', key);
      }
      yield { key, size, sha256 };
    }
  }

  async delete(keys: readonly string[]): Promise<void> {
    for (const key of keys) checkKey(key);
    await this.ensureRoot();
    const dirs = new Set<string>();
    for (const key of keys) {
      // The sidecar first: a crash in between leaves an object without one (recomputed), never a stale sidecar.
      for (const path of [this.sidecarOf(key), this.pathOf(key)]) {
        try {
          await unlink(path);
        } catch (error) {
          if (isMissing(error)) continue;
          if (errnoOf(error) === 'EISDIR' || errnoOf(error) === 'EPERM') {
            if ((await lstat(path).catch(() => undefined))?.isDirectory() === true) continue; // a directory is no object
          }
          throw this.failure(error, 'deleting', key);
        }
      }
      dirs.add(dirname(this.pathOf(key)));
    }
    for (const dir of dirs) {
      try {
        await fsyncDir(dir);
      } catch (error) {
        if (!isMissing(error)) throw new Error(`${this.description}: fsync of ${dir} failed after deleting: ${messageOf(error)}`, { cause: error });
      }
    }
  }
}
