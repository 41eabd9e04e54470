import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Outbox } from '../../src/alerts/outbox.js';
import type { Notice } from '../../src/alerts/types.js';
import { notice } from '../support/notices.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

const t0 = Date.parse('2025-03-01T12:00:00Z');
const at = (ms: number): Date => new Date(t0 + ms);

describe('outbox order after an outage', () => {
  it('a resolved notice waits for the firing notice of its thread that is backing off; other threads go on', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pgwarden-outbox-order-'));
    dirs.push(dir);
    const outbox = await Outbox.open(dir, { initialBackoffMs: 10_000 });
    let down = true;
    const delivered: string[] = [];
    const send = (item: Notice): Promise<void> => {
      if (down) return Promise.reject(new Error('connection refused'));
      delivered.push(item.id);
      return Promise.resolve();
    };
    await outbox.enqueue(notice('firing', 1, 'thread-a', { createdAt: at(0) }));
    expect((await outbox.deliverDue(send, at(0))).failed.map((failure) => failure.id)).toEqual(['thread-a.1']);
    down = false;
    await outbox.enqueue(notice('resolved', 2, 'thread-a', { createdAt: at(1000) }));
    await outbox.enqueue(notice('firing', 1, 'thread-b', { createdAt: at(1000) }));
    // thread-a.1 is not due before 10 s: its resolved notice waits with it, thread-b does not.
    const early = await outbox.deliverDue(send, at(2000));
    expect(delivered).toEqual(['thread-b.1']);
    expect(early.waiting).toBe(2);
    await outbox.deliverDue(send, at(10_000));
    expect(delivered).toEqual(['thread-b.1', 'thread-a.1', 'thread-a.2']);
  });
});
