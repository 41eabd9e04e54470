/**
 * bench/backup-crypto: throughput of the backup encryption streams (src/backup/crypto.ts) on this
 * machine, in MB/s (10^6 bytes per second) of plaintext, for 1 MiB chunks: encryption and
 * decryption through a pipeline fed with 64 KiB buffers (as a file or pg_basebackup stream
 * delivers them), and whole-buffer encryption of 16 MB WAL segments. Prints figures; asserts nothing.
 *
 *   npx tsx bench/backup-crypto.ts            (256 MB by default)
 *   BENCH_MB=750 npx tsx bench/backup-crypto.ts
 */
import { randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { decryptBuffer, decryptStream, encryptBuffer, encryptStream } from '../src/backup/crypto.js';
import { makeKeyring } from '../src/backup/keys.js';

const totalBytes = Number(process.env['BENCH_MB'] ?? 256) * 1_000_000;
const pieceSize = 64 * 1024;
const keyring = makeKeyring([{ id: 'bench', key: randomBytes(32) }]);
// Distinct pieces, so that nothing is faster for being the same buffer again.
const pieces = Array.from({ length: 64 }, () => randomBytes(pieceSize));

function* source(): Generator<Buffer> {
  for (let sent = 0, i = 0; sent < totalBytes; sent += pieceSize, i++) yield pieces[i % pieces.length]!;
}

function sink(keep: Buffer[] | undefined): Writable & { bytes: number } {
  const out = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      out.bytes += chunk.length;
      keep?.push(chunk);
      callback();
    },
  }) as Writable & { bytes: number };
  out.bytes = 0;
  return out;
}

function rate(bytes: number, startNs: bigint): string {
  const seconds = Number(process.hrtime.bigint() - startNs) / 1e9;
  return `${(bytes / 1e6 / seconds).toFixed(0)} MB/s (${(bytes / 1e6).toFixed(0)} MB in ${seconds.toFixed(2)} s)`;
}

// Ciphertext for the decryption pass, made first and kept in memory (untimed: keeping 750 MB of
// buffers costs the allocator more than the cipher); the timed passes discard their output.
const sealed: Buffer[] = [];
await pipeline(Readable.from(source(), { objectMode: false }), encryptStream(keyring), sink(sealed));
const encryptedBytes = sealed.reduce((sum, chunk) => sum + chunk.length, 0);

let start = process.hrtime.bigint();
await pipeline(Readable.from(source(), { objectMode: false }), encryptStream(keyring), sink(undefined));
console.log(`encryptStream  ${rate(totalBytes, start)}; stored size +${encryptedBytes - totalBytes} bytes`);

const whole = Buffer.concat(sealed);
sealed.length = 0;
function* sealedPieces(): Generator<Buffer> {
  for (let at = 0; at < whole.length; at += pieceSize) yield whole.subarray(at, at + pieceSize);
}
start = process.hrtime.bigint();
const plain = sink(undefined);
await pipeline(Readable.from(sealedPieces(), { objectMode: false }), decryptStream(keyring), plain);
console.log(`decryptStream  ${rate(plain.bytes, start)}`);

const segment = randomBytes(16 * 1024 * 1024);
const segments = Math.max(1, Math.floor(totalBytes / segment.length / 4));
start = process.hrtime.bigint();
let last: Buffer = Buffer.alloc(0);
for (let i = 0; i < segments; i++) last = await encryptBuffer(keyring, segment);
console.log(`encryptBuffer  ${rate(segments * segment.length, start)} (16 MB WAL segments)`);
start = process.hrtime.bigint();
for (let i = 0; i < segments; i++) await decryptBuffer(keyring, last);
console.log(`decryptBuffer  ${rate(segments * segment.length, start)} (16 MB WAL segments)`);
