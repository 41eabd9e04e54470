/**
 * Making a restored directory durable. tar writes into the page cache and never fsyncs; a restore
 * recorded as unpacked must survive a power cut, so every file it wrote, and every directory, is
 * fsynced before that is recorded. Only the restore's own files: syncfs(2) would also write back
 * whatever else on that file system is dirty, a production server's pages included.
 *
 * Syncing only at the end would leave hundreds of MB to write back then: a flusher fsyncs the
 * files that grew since its last pass, pass after pass, while tar writes, so the write-back
 * overlaps the unpacking and the last pass finds little left.
 */
import { open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

/** fsync calls in flight at once: the kernel merges them, and a big file does not hold up the small ones. */
const CONCURRENCY = 8;

/** The shortest time from the start of one background pass to the start of the next. */
const PASS_INTERVAL_MS = 200;

/** What each file looked like when it was last fsynced: size and change time. */
type Synced = Map<string, string>;

async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Every file and directory under `root` (symbolic links are not followed), directories after their contents. */
async function walk(root: string): Promise<{ files: string[]; dirs: string[] }> {
  const files: string[] = [];
  const dirs: string[] = [];
  const visit = async (dir: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true });
    for (const entry of entries) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await visit(path);
      else if (entry.isFile()) files.push(path);
    }
    dirs.push(dir);
  };
  await visit(root);
  return { files, dirs };
}

async function inParallel(paths: readonly string[], each: (path: string) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < paths.length) {
      const path = paths[next++];
      if (path !== undefined) await each(path);
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, paths.length) }, worker));
}

/**
 * One pass: fsyncs the files under `roots` that changed since `synced` recorded them (all of them
 * when `synced` is empty), then, when `withDirs`, every directory. A file that vanished meanwhile
 * is skipped.
 */
async function syncPass(roots: readonly string[], synced: Synced, withDirs: boolean): Promise<void> {
  for (const root of roots) {
    const { files, dirs } = await walk(root);
    await inParallel(files, async (path) => {
      let handle;
      try {
        handle = await open(path, 'r');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw error;
      }
      try {
        const info = await handle.stat();
        const seen = `${info.size}:${info.ctimeMs}`;
        if (synced.get(path) === seen) return;
        await handle.sync();
        synced.set(path, seen);
      } finally {
        await handle.close();
      }
    });
    if (withDirs) await inParallel(dirs, fsyncPath);
  }
}

/** fsyncs every file and directory under `roots`. */
export async function syncTrees(roots: readonly string[]): Promise<void> {
  await syncPass(roots, new Map(), true);
}

/**
 * Runs `work` while a flusher fsyncs, pass after pass, the files under `roots` that changed (roots
 * that do not exist yet are skipped), then makes one last pass over files and directories: what
 * `work` wrote is on disk when this resolves. A failing background pass is ignored; the last
 * pass's failure is the error.
 */
export async function durably<T>(roots: readonly string[], work: () => Promise<T>): Promise<T> {
  const synced: Synced = new Map();
  let finished = false;
  // Ends the pause between passes at once when the work is done.
  const done = new AbortController();
  const flusher = (async () => {
    while (!finished) {
      const started = Date.now();
      await syncPass(roots, synced, false).catch(() => undefined);
      // A pass lists and stats every file: at most one per PASS_INTERVAL_MS, so a tree of many
      // files does not keep a core busy listing it.
      const left = PASS_INTERVAL_MS - (Date.now() - started);
      if (!finished && left > 0) await delay(left, undefined, { signal: done.signal }).catch(() => undefined);
    }
  })();
  let result: T;
  try {
    result = await work();
  } finally {
    finished = true;
    done.abort();
    await flusher;
  }
  await syncPass(roots, synced, true);
  return result;
}
