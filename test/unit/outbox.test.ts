import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { backoffMs, Outbox } from '../../src/alerts/outbox.js';
import type { Notice } from '../../src/alerts/types.js';
import { notice } from '../support/notices.js';

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pgwarden-outbox-'));
  dirs.push(dir);
  return dir;
}
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

const t0 = Date.parse('2025-03-01T12:00:00Z');
const at = (ms: number): Date => new Date(t0 + ms);

/** A send function that fails while `down` is true and records what it delivered. */
function channel(): { down: boolean; delivered: string[]; send: (n: Notice) => Promise<void> } {
  const state = {
    down: false,
    delivered: [] as string[],
    send: (n: Notice): Promise<void> => {
      if (state.down) return Promise.reject(new Error('connection refused'));
      state.delivered.push(n.id);
      return Promise.resolve();
    },
  };
  return state;
}

describe('backoffMs', () => {
  it('starts at 30 s, doubles, and stops at 15 min', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 50].map((n) => backoffMs(n))).toEqual([30_000, 60_000, 120_000, 240_000, 480_000, 900_000, 900_000, 900_000]);
    expect(backoffMs(0)).toBe(0);
  });
});

describe('Outbox', () => {
  it('stores a notice once per id, pending or already sent', async () => {
    const dir = await tempDir();
    const outbox = await Outbox.open(dir);
    expect(await outbox.enqueue(notice('firing', 1))).toBe('queued');
    expect(await outbox.enqueue(notice('firing', 1))).toBe('duplicate');
    expect((await readdir(dir)).filter((name) => name.endsWith('.json'))).toEqual(['a1b2c3-m7x0.1.json']);
    const [stored] = await outbox.pending();
    expect(stored?.notice.createdAt).toEqual(notice('firing', 1).createdAt);
    expect(stored?.notice.alerts[0]?.context).toEqual(notice('firing', 1).alerts[0]?.context);

    const ch = channel();
    expect((await outbox.deliverDue(ch.send, at(0))).sent).toEqual(['a1b2c3-m7x0.1']);
    expect(await outbox.enqueue(notice('firing', 1))).toBe('duplicate');
    expect(await outbox.pending()).toEqual([]);
    expect(await outbox.sentIds()).toEqual(['a1b2c3-m7x0.1']);
  });

  it('retries with exponential back-off, keeps the error, and sends exactly once when the channel is back', async () => {
    const dir = await tempDir();
    const outbox = await Outbox.open(dir);
    const ch = channel();
    ch.down = true;
    await outbox.enqueue(notice('firing', 1));

    const first = await outbox.deliverDue(ch.send, at(0));
    expect(first.failed).toEqual([{ id: 'a1b2c3-m7x0.1', attempts: 1, error: 'connection refused', nextAttemptAt: at(30_000), stale: false }]);
    // Not due yet: untouched.
    const early = await outbox.deliverDue(ch.send, at(29_999));
    expect(early).toEqual({ sent: [], failed: [], waiting: 1, stale: [] });
    const second = await outbox.deliverDue(ch.send, at(30_000));
    expect(second.failed[0]?.nextAttemptAt).toEqual(at(30_000 + 60_000));
    const third = await outbox.deliverDue(ch.send, at(90_000));
    expect(third.failed[0]?.nextAttemptAt).toEqual(at(90_000 + 120_000));
    const [pending] = await outbox.pending();
    expect(pending?.delivery).toMatchObject({ attempts: 3, firstFailureAt: t0, lastError: 'connection refused' });

    ch.down = false;
    // A restarted watcher resumes the schedule from disk.
    const resumed = await Outbox.open(dir);
    expect((await resumed.deliverDue(ch.send, at(200_000))).sent).toEqual([]);
    expect((await resumed.deliverDue(ch.send, at(210_000))).sent).toEqual(['a1b2c3-m7x0.1']);
    expect((await resumed.deliverDue(ch.send, at(900_000))).sent).toEqual([]);
    expect((await outbox.deliverDue(ch.send, at(900_000))).sent).toEqual([]);
    expect(ch.delivered).toEqual(['a1b2c3-m7x0.1']);
  });

  it('caps the delay at 15 min and reports, without dropping, a notice failing for more than 24 h', async () => {
    const dir = await tempDir();
    const outbox = await Outbox.open(dir);
    const ch = channel();
    ch.down = true;
    await outbox.enqueue(notice('firing', 1));
    let now = 0;
    let last = await outbox.deliverDue(ch.send, at(now));
    while (now < 24 * 3_600_000) {
      const next = last.failed[0]?.nextAttemptAt.getTime();
      expect(next).toBeDefined();
      expect((next ?? 0) - t0 - now).toBeLessThanOrEqual(900_000);
      now = (next ?? 0) - t0;
      last = await outbox.deliverDue(ch.send, at(now));
    }
    expect(last.failed[0]?.stale).toBe(true);
    expect(last.stale).toEqual(['a1b2c3-m7x0.1']);
    expect((await outbox.deliverDue(ch.send, at(now + 1))).stale).toEqual(['a1b2c3-m7x0.1']);
    ch.down = false;
    expect((await outbox.deliverDue(ch.send, at(now + 900_000))).sent).toEqual(['a1b2c3-m7x0.1']);
  });

  it('delivers a thread in creation order and never resends an id found in sent/', async () => {
    const dir = await tempDir();
    const outbox = await Outbox.open(dir);
    const ch = channel();
    await outbox.enqueue(notice('resolved', 2));
    await outbox.enqueue(notice('firing', 1));
    expect((await outbox.deliverDue(ch.send, at(0))).sent).toEqual(['a1b2c3-m7x0.1', 'a1b2c3-m7x0.2']);

    // A crash between recording the delivery and removing the pending copy leaves both files.
    await writeFile(join(dir, 'a1b2c3-m7x0.2.json'), JSON.stringify({ notice: { ...notice('resolved', 2), createdAt: at(0).toISOString() }, delivery: { attempts: 0, firstFailureAt: null, lastAttemptAt: null, nextAttemptAt: null, lastError: null } }));
    await writeFile(join(dir, '.a1b2c3-m7x0.3.json.1.abcd.tmp'), '{"trunc');
    const reopened = await Outbox.open(dir);
    expect(await readdir(dir)).not.toContain('.a1b2c3-m7x0.3.json.1.abcd.tmp');
    expect((await reopened.deliverDue(ch.send, at(1))).sent).toEqual([]);
    expect(await reopened.pending()).toEqual([]);
    expect(ch.delivered).toEqual(['a1b2c3-m7x0.1', 'a1b2c3-m7x0.2']);
  });

  it('never sends one notice twice from overlapping passes', async () => {
    const dir = await tempDir();
    const outbox = await Outbox.open(dir);
    let calls = 0;
    const slow = async (): Promise<void> => {
      calls += 1;
      await new Promise((resolve) => setImmediate(resolve));
    };
    await outbox.enqueue(notice('firing', 1));
    const [a, b] = await Promise.all([outbox.deliverDue(slow, at(0)), outbox.deliverDue(slow, at(0))]);
    expect([...a.sent, ...b.sent]).toEqual(['a1b2c3-m7x0.1']);
    expect(calls).toBe(1);
  });

  it('keeps only the last N delivered ids', async () => {
    const dir = await tempDir();
    const outbox = await Outbox.open(dir, { keepSent: 2 });
    const ch = channel();
    for (const seq of [1, 2, 3]) {
      await outbox.enqueue(notice('update', seq));
      await outbox.deliverDue(ch.send, at(seq));
    }
    expect((await outbox.sentIds()).sort()).toEqual(['a1b2c3-m7x0.2', 'a1b2c3-m7x0.3']);
  });

  it('refuses an id that is not a safe file name', async () => {
    const outbox = await Outbox.open(await tempDir());
    await expect(outbox.enqueue(notice('firing', 1, '../evil'))).rejects.toThrow(/not a safe file name/);
  });
});
