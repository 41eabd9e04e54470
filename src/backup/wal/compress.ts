/**
 * Compression of archived WAL: zstd through the `zstd` program when it is installed (Debian
 * package zstd; Node 20's zlib has no zstd), else gzip level 1 from node:zlib. Both are fast
 * levels: the archiver must keep up with the server. Whole buffers in and out: a segment is 16 MB.
 */
import { spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { gunzip, gzip } from 'node:zlib';

export type Compression = 'zstd' | 'gzip';

export const compressions: readonly Compression[] = ['zstd', 'gzip'];

/** The file name extension each method adds to an archived object's key. */
export const compressionExtension: Readonly<Record<Compression, string>> = { zstd: 'zst', gzip: 'gz' };

/** The `zstd` program is needed and missing (or failed to run). */
export class CompressionUnavailableError extends Error {
  override readonly name = 'CompressionUnavailableError';
}

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);

/** Runs `zstd` with these arguments, `input` on stdin; resolves with stdout. */
function runZstd(args: readonly string[], input: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn('zstd', [...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('error', (error: NodeJS.ErrnoException) => {
      reject(error.code === 'ENOENT'
        ? new CompressionUnavailableError('the zstd program is not installed (apt-get install zstd), and this object or setting needs it')
        : error);
    });
    // EPIPE when zstd exits early: its exit status and stderr say why.
    child.stdin.on('error', () => undefined);
    child.on('close', (code, signal) => {
      if (code === 0) resolve(Buffer.concat(out));
      else {
        const why = Buffer.concat(err).toString('utf8').trim().split('\n').pop() ?? '';
        reject(new Error(`zstd ${args.join(' ')} failed (${signal ?? `exit ${code ?? '?'}`})${why === '' ? '' : `: ${why}`}`));
      }
    });
    child.stdin.end(input);
  });
}

let zstdProbe: Promise<boolean> | undefined;

/** True when the `zstd` program runs here (checked once per process). */
export function zstdInstalled(): Promise<boolean> {
  zstdProbe ??= runZstd(['-q', '-c'], Buffer.alloc(0)).then(() => true, () => false);
  return zstdProbe;
}

/** 'zstd' when the program is installed, else 'gzip': the method `auto` stands for. */
export async function defaultCompression(): Promise<Compression> {
  return (await zstdInstalled()) ? 'zstd' : 'gzip';
}

/** Compresses a whole buffer with the method, at its fast level. */
export async function compress(data: Buffer, method: Compression): Promise<Buffer> {
  if (method === 'gzip') return gzipAsync(data, { level: 1 });
  return runZstd(['-1', '-q', '-c', '--no-progress'], data);
}

/** Decompresses a whole buffer; throws when the bytes are not a complete stream of that method. */
export async function decompress(data: Buffer, method: Compression): Promise<Buffer> {
  if (method === 'gzip') return gunzipAsync(data);
  return runZstd(['-d', '-q', '-c', '--no-progress'], data);
}
