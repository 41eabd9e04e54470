/** The NDJSON channel: one JSON line per notice on a writable stream (stdout for `--watch`). */
import type { Writable } from 'node:stream';
import type { Notice } from '../types.js';

export interface NdjsonNotifier {
  readonly send: (notice: Notice) => Promise<void>;
}

/** One line per notice; resolves once the stream took the line (backpressure and errors included). */
export function createNdjsonNotifier(stream: Writable): NdjsonNotifier {
  return {
    send: (notice) =>
      new Promise<void>((resolve, reject) => {
        const line = `${JSON.stringify({ ...notice, createdAt: notice.createdAt.toISOString() })}\n`;
        stream.write(line, (error) => {
          if (error) reject(error);
          else resolve();
        });
      }),
  };
}
