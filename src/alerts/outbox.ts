/**
 * The durable outbox. Every notice is written to disk (temp file, fsync, rename) before any
 * attempt to send it, and leaves the pending set only once the channel accepted it, so an outage
 * or a restart loses nothing. Delivered ids are kept in sent/ and never sent again; the only
 * remaining duplicate is a crash between the channel accepting a notice and sent/ being written,
 * which email readers fold away because the Message-ID is derived from the notice id.
 *
 * Time is passed in (`now`), never read, so tests drive the back-off with plain dates.
 */
import { mkdir, readdir, readFile, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { fsyncDir, writeFileAtomic } from '../atomic-file.js';
import type { Notice } from './types.js';

/** Sends one notice on one channel; resolves when the channel accepted it, throws otherwise. */
export type SendNotice = (notice: Notice) => Promise<void>;

export interface OutboxOptions {
  /** First retry delay (default 30 s); each failure doubles it. */
  readonly initialBackoffMs?: number;
  /** Longest retry delay (default 15 min). */
  readonly maxBackoffMs?: number;
  /** A notice failing for longer than this is reported as stale (default 24 h); it is still kept and retried. */
  readonly staleAfterMs?: number;
  /** Delivered notices kept in sent/ for deduplication (default 1000). */
  readonly keepSent?: number;
}

/** Delivery state of one pending notice, stored next to it. */
export interface DeliveryState {
  readonly attempts: number;
  readonly firstFailureAt: number | null;
  readonly lastAttemptAt: number | null;
  /** null: due at once. */
  readonly nextAttemptAt: number | null;
  readonly lastError: string | null;
}

export interface PendingNotice {
  readonly notice: Notice;
  readonly delivery: DeliveryState;
}

export interface DeliveryFailure {
  readonly id: string;
  readonly attempts: number;
  readonly error: string;
  readonly nextAttemptAt: Date;
  /** Failing for longer than staleAfterMs: whoever runs the outbox must raise it. */
  readonly stale: boolean;
}

export interface DeliveryReport {
  readonly sent: readonly string[];
  readonly failed: readonly DeliveryFailure[];
  /** Pending notices that were not due yet. */
  readonly waiting: number;
  /** Every pending notice failing for longer than staleAfterMs, due now or not. */
  readonly stale: readonly string[];
}

export type EnqueueResult = 'queued' | 'duplicate';

interface StoredNotice {
  readonly notice: Omit<Notice, 'createdAt'> & { readonly createdAt: string };
  readonly delivery: DeliveryState;
}

const idPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;
const sentDir = 'sent';

/** The retry delay after the given number of consecutive failures (1 → initial). */
export function backoffMs(failures: number, initialMs = 30_000, maxMs = 900_000): number {
  if (failures <= 0) return 0;
  // Capping the exponent keeps 2 ** n finite for absurd attempt counts.
  return Math.min(maxMs, initialMs * 2 ** Math.min(failures - 1, 30));
}

function fileName(id: string): string {
  // Ids become file names: anything that could escape the directory is a bug upstream.
  if (!idPattern.test(id) || id.endsWith('.tmp')) throw new Error(`outbox: notice id ${JSON.stringify(id)} is not a safe file name`);
  return `${id}.json`;
}

function isNotFound(error: unknown): boolean {
  return error instanceof Error && (error as NodeJS.ErrnoException).code === 'ENOENT';
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error) {
    if (isNotFound(error)) return false;
    throw error;
  }
}

function serialize(notice: Notice, delivery: DeliveryState): string {
  const stored: StoredNotice = { notice: { ...notice, createdAt: notice.createdAt.toISOString() }, delivery };
  return `${JSON.stringify(stored, null, 2)}\n`;
}

function deserialize(content: string): PendingNotice {
  const stored = JSON.parse(content) as StoredNotice;
  return { notice: { ...stored.notice, createdAt: new Date(stored.notice.createdAt) }, delivery: stored.delivery };
}

const fresh: DeliveryState = { attempts: 0, firstFailureAt: null, lastAttemptAt: null, nextAttemptAt: null, lastError: null };

/** A directory of pending notices plus sent/; a new Outbox over the same directory resumes. */
export class Outbox {
  private readonly initialBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly staleAfterMs: number;
  private readonly keepSent: number;
  /** Serializes enqueue and delivery so that two overlapping passes never send one notice twice. */
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly dir: string,
    options: OutboxOptions,
  ) {
    this.initialBackoffMs = options.initialBackoffMs ?? 30_000;
    this.maxBackoffMs = options.maxBackoffMs ?? 900_000;
    this.staleAfterMs = options.staleAfterMs ?? 24 * 3_600_000;
    this.keepSent = options.keepSent ?? 1000;
  }

  /** Opens (creating if needed) the outbox in `dir`, removing temp files a crash left behind. */
  static async open(dir: string, options: OutboxOptions = {}): Promise<Outbox> {
    await mkdir(join(dir, sentDir), { recursive: true });
    for (const where of [dir, join(dir, sentDir)]) {
      for (const name of await readdir(where)) {
        if (name.startsWith('.') && name.endsWith('.tmp')) await unlink(join(where, name)).catch(() => undefined);
      }
    }
    return new Outbox(dir, options);
  }

  private exclusive<T>(task: () => Promise<T>): Promise<T> {
    const run = this.queue.then(task, task);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Stores a notice durably; an id already pending or already sent is not stored again. */
  enqueue(notice: Notice): Promise<EnqueueResult> {
    return this.exclusive(async () => {
      const name = fileName(notice.id);
      if ((await exists(join(this.dir, name))) || (await exists(join(this.dir, sentDir, name)))) return 'duplicate';
      await writeFileAtomic(this.dir, name, serialize(notice, fresh));
      return 'queued';
    });
  }

  /** The pending notices with their delivery state, oldest first. */
  async pending(): Promise<PendingNotice[]> {
    const names = (await readdir(this.dir)).filter((name) => name.endsWith('.json') && !name.startsWith('.'));
    const items: PendingNotice[] = [];
    for (const name of names) {
      try {
        items.push(deserialize(await readFile(join(this.dir, name), 'utf8')));
      } catch (error) {
        // Delivered and removed by a concurrent pass in another process: nothing left to do.
        if (!isNotFound(error)) throw error;
      }
    }
    // Creation order keeps a thread's firing notice ahead of its resolved notice.
    return items.sort((a, b) => a.notice.createdAt.getTime() - b.notice.createdAt.getTime() || (a.notice.id < b.notice.id ? -1 : 1));
  }

  /** Ids currently kept in sent/. */
  async sentIds(): Promise<string[]> {
    return (await readdir(join(this.dir, sentDir))).filter((name) => name.endsWith('.json') && !name.startsWith('.')).map((name) => name.slice(0, -5));
  }

  /** Tries every pending notice that is due at `now`; failures are rescheduled with back-off, never dropped. */
  deliverDue(send: SendNotice, now: Date): Promise<DeliveryReport> {
    return this.exclusive(async () => {
      const at = now.getTime();
      const sent: string[] = [];
      const failed: DeliveryFailure[] = [];
      const stale: string[] = [];
      let waiting = 0;
      // A thread whose earlier notice is waiting for a retry holds its later ones, so that after an
      // outage a resolved notice never arrives before the firing notice it answers.
      const heldThreads = new Set<string>();
      for (const item of await this.pending()) {
        const { notice, delivery } = item;
        const name = fileName(notice.id);
        if (await exists(join(this.dir, sentDir, name))) {
          // A crash after recording the delivery and before removing the pending copy.
          await unlink(join(this.dir, name)).catch(() => undefined);
          continue;
        }
        if (heldThreads.has(notice.threadId) || (delivery.nextAttemptAt !== null && delivery.nextAttemptAt > at)) {
          heldThreads.add(notice.threadId);
          waiting += 1;
          if (this.isStale(delivery, at)) stale.push(notice.id);
          continue;
        }
        try {
          await send(notice);
        } catch (error) {
          const attempts = delivery.attempts + 1;
          const firstFailureAt = delivery.firstFailureAt ?? at;
          const next: DeliveryState = {
            attempts,
            firstFailureAt,
            lastAttemptAt: at,
            nextAttemptAt: at + backoffMs(attempts, this.initialBackoffMs, this.maxBackoffMs),
            lastError: error instanceof Error ? error.message : String(error),
          };
          await writeFileAtomic(this.dir, name, serialize(notice, next));
          const isStale = this.isStale(next, at);
          if (isStale) stale.push(notice.id);
          heldThreads.add(notice.threadId);
          failed.push({ id: notice.id, attempts, error: next.lastError ?? '', nextAttemptAt: new Date(next.nextAttemptAt ?? at), stale: isStale });
          continue;
        }
        const done: DeliveryState = { ...delivery, attempts: delivery.attempts + 1, lastAttemptAt: at, nextAttemptAt: null, lastError: null };
        await writeFileAtomic(join(this.dir, sentDir), name, serialize(notice, done));
        await unlink(join(this.dir, name));
        await fsyncDir(this.dir);
        sent.push(notice.id);
      }
      if (sent.length > 0) await this.pruneSent();
      return { sent, failed, waiting, stale };
    });
  }

  private isStale(delivery: DeliveryState, at: number): boolean {
    return delivery.firstFailureAt !== null && at - delivery.firstFailureAt > this.staleAfterMs;
  }

  private async pruneSent(): Promise<void> {
    const dir = join(this.dir, sentDir);
    const names = (await readdir(dir)).filter((name) => name.endsWith('.json') && !name.startsWith('.'));
    if (names.length <= this.keepSent) return;
    const dated = await Promise.all(names.map(async (name) => ({ name, mtime: (await stat(join(dir, name))).mtimeMs })));
    dated.sort((a, b) => a.mtime - b.mtime || (a.name < b.name ? -1 : 1));
    for (const { name } of dated.slice(0, dated.length - this.keepSent)) await unlink(join(dir, name)).catch(() => undefined);
  }
}
