/**
 * Files that are either absent or complete, even across a crash or a power cut: written to a
 * temporary name in the same directory (a dot file ending in .tmp, which readers skip), fsynced,
 * renamed into place, and the directory fsynced so that the rename itself is durable.
 */
import { randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';

/** fsync of a directory: makes the names created or renamed in it durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Writes `dir/name` atomically; a failed write leaves the old file (or none) and no temporary file. */
export async function writeFileAtomic(dir: string, name: string, content: string): Promise<void> {
  const temp = join(dir, `.${name}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const handle = await open(temp, 'wx');
  try {
    await handle.writeFile(content, 'utf8');
    await handle.sync();
  } catch (error) {
    await handle.close();
    await unlink(temp).catch(() => undefined);
    throw error;
  }
  await handle.close();
  await rename(temp, join(dir, name));
  await fsyncDir(dir);
}
