/**
 * Backup repositories (issue 5, item 1) against real storage: the same contract suite for a local
 * directory and for S3 through a real s3rver, then what is particular to each: a full disk (a 1 MiB
 * tmpfs), a missing root, list pagination, a missing bucket, refused or missing credentials, and
 * a competing writer caught by If-None-Match.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserError } from '../../src/errors.js';
import { ObjectExistsError, ObjectNotFoundError, type Repository, type StoredObject } from '../../src/backup/types.js';
import { ChecksumMismatchError, InvalidKeyError, LocalRepository, openRepository, s3CredentialsFromEnv } from '../../src/backup/repository/index.js';
import { S3Repository } from '../../src/backup/repository/s3.js';
import { ConditionalProxy, S3Server } from '../support/s3.js';
import { onProcessEnd } from '../support/exit-cleanup.js';

const MiB = 1024 * 1024;

function sha(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** A stream of `bytes` in 64 KiB chunks that fails with `error` once `failAfter` bytes are out. */
function streamOf(bytes: Buffer, failAfter?: number, error = new Error('source failed mid-way')): Readable {
  async function* chunks(): AsyncGenerator<Buffer> {
    for (let offset = 0; offset < bytes.length; offset += 64 * 1024) {
      if (failAfter !== undefined && offset >= failAfter) throw error;
      yield bytes.subarray(offset, offset + 64 * 1024);
    }
  }
  return Readable.from(chunks());
}

async function bytesOf(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function listAll(repo: Repository, prefix: string): Promise<StoredObject[]> {
  const out: StoredObject[] = [];
  for await (const item of repo.list(prefix)) out.push(item);
  return out;
}

function flipByte(path: string, at: number): void {
  const bytes = readFileSync(path);
  bytes[at] = (bytes[at] ?? 0) ^ 0xff;
  writeFileSync(path, bytes);
}

/** Files whose names no repository object has (temporary files, staging objects). */
function localLeftovers(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((name) => /(^|\/)\.[^/]*\.tmp$/.test(name));
}

interface Harness {
  readonly repo: Repository;
  /** Flips one byte of the stored bytes of `key`. */
  readonly corrupt: (key: string) => void;
  /** Temporary or staging objects left behind (should always be empty). */
  readonly leftovers: () => Promise<string[]>;
}

let s3: S3Server;
let raw: S3Client;
const localRoots: string[] = [];

function newLocal(): Harness {
  const root = mkdtempSync(join(tmpdir(), 'pgwarden-repo-'));
  localRoots.push(root);
  return {
    repo: new LocalRepository(root),
    corrupt: (key) => flipByte(join(root, key), 3),
    leftovers: async () => localLeftovers(root),
  };
}

function newS3(options: { listPageSize?: number } = {}): Harness & { readonly prefix: string } {
  const prefix = `t-${randomUUID().slice(0, 8)}`;
  const repo = new S3Repository({ endpoint: s3.endpoint, region: 'us-east-1', bucket: s3.bucket, prefix, forcePathStyle: true, credentials: s3.credentials, ...options });
  return {
    repo,
    prefix,
    corrupt: (key) => flipByte(s3.objectPath(`${prefix}/${key}`), 3),
    leftovers: async () => {
      const page = await raw.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: `${prefix}/.pgwarden-staging/` }));
      return (page.Contents ?? []).map((item) => item.Key ?? '');
    },
  };
}

beforeAll(async () => {
  s3 = await S3Server.start();
  raw = new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
  onProcessEnd(() => {
    for (const root of localRoots) rmSync(root, { recursive: true, force: true });
  });
});

afterAll(async () => {
  raw.destroy();
  await s3.stop();
  for (const root of localRoots) rmSync(root, { recursive: true, force: true });
});

describe.each([
  { kind: 'local', make: newLocal },
  { kind: 's3', make: () => newS3() },
])('the $kind repository contract', ({ kind, make }) => {
  it('stores a buffer and a stream, and gives back the same bytes with their size and SHA-256', async () => {
    const { repo, leftovers } = make();
    const small = randomBytes(10_000);
    const stored = await repo.put('wal/000000010000000000000001', small);
    expect(stored).toEqual({ key: 'wal/000000010000000000000001', size: 10_000, sha256: sha(small) });
    expect(await repo.head('wal/000000010000000000000001')).toEqual(stored);
    expect((await bytesOf(await repo.get('wal/000000010000000000000001', sha(small)))).equals(small)).toBe(true);

    const streamed = randomBytes(300_000);
    const fromStream = await repo.put('backups/b1/base.tar', streamOf(streamed));
    expect(fromStream).toEqual({ key: 'backups/b1/base.tar', size: 300_000, sha256: sha(streamed) });
    expect((await bytesOf(await repo.get('backups/b1/base.tar'))).equals(streamed)).toBe(true);
    expect(await leftovers()).toEqual([]);
  });

  it('refuses to overwrite an existing key, reporting the stored object, and replaces only when asked', async () => {
    const { repo } = make();
    const first = Buffer.from('the first bytes');
    await repo.put('catalog.json', first);
    const refusal = await repo.put('catalog.json', Buffer.from('other bytes')).catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(ObjectExistsError);
    expect((refusal as ObjectExistsError).existing).toEqual({ key: 'catalog.json', size: first.length, sha256: sha(first) });
    // A refused stream is not read to its end: it is destroyed.
    const source = streamOf(randomBytes(200_000));
    await expect(repo.put('catalog.json', source)).rejects.toBeInstanceOf(ObjectExistsError);
    expect(source.destroyed).toBe(true);
    expect(await text(await repo.get('catalog.json'))).toBe('the first bytes');

    const second = Buffer.from('replaced on purpose');
    expect(await repo.put('catalog.json', second, { ifExists: 'replace' })).toEqual({ key: 'catalog.json', size: second.length, sha256: sha(second) });
    expect(await text(await repo.get('catalog.json', sha(second)))).toBe('replaced on purpose');
    expect((await repo.head('catalog.json'))?.sha256).toBe(sha(second));
  });

  it('says a missing key is absent: head gives undefined, get throws ObjectNotFoundError', async () => {
    const { repo } = make();
    expect(await repo.head('wal/00000001000000000000000A')).toBeUndefined();
    await expect(repo.get('wal/00000001000000000000000A')).rejects.toBeInstanceOf(ObjectNotFoundError);
  });

  it('lists every object under a prefix in key order, with sizes and checksums', async () => {
    const { repo } = make();
    // No key here has a character below '/' (such as '-' or '.') where another has a '/': s3rver
    // lists directory by directory, which then differs from S3's byte order. The local test below
    // covers that case.
    const keys = ['wal/000000010000000000000002', 'b', 'a_c', 'a/b', 'wal/000000010000000000000001', 'a/a/z', 'backups/x/manifest.json', 'wal/00000002.history'];
    const bodies = new Map(keys.map((key, index) => [key, Buffer.from(`body ${index} of ${key}`)]));
    for (const key of keys) await repo.put(key, bodies.get(key)!);

    const all = await listAll(repo, '');
    expect(all.map((item) => item.key)).toEqual(['a/a/z', 'a/b', 'a_c', 'b', 'backups/x/manifest.json', 'wal/000000010000000000000001', 'wal/000000010000000000000002', 'wal/00000002.history']);
    for (const item of all) expect(item).toEqual({ key: item.key, size: bodies.get(item.key)!.length, sha256: sha(bodies.get(item.key)!) });
    expect((await listAll(repo, 'a')).map((item) => item.key)).toEqual(['a/a/z', 'a/b', 'a_c']);
    expect((await listAll(repo, 'a/')).map((item) => item.key)).toEqual(['a/a/z', 'a/b']);
    expect((await listAll(repo, 'wal/0000000100000000')).map((item) => item.key)).toEqual(['wal/000000010000000000000001', 'wal/000000010000000000000002']);
    expect((await listAll(repo, 'b')).map((item) => item.key)).toEqual(['b', 'backups/x/manifest.json']);
    expect(await listAll(repo, 'nothing/')).toEqual([]);
  });

  it('deletes objects, ignoring keys that are already gone', async () => {
    const { repo } = make();
    await repo.put('wal/000000010000000000000001', Buffer.from('one'));
    await repo.put('wal/000000010000000000000002', Buffer.from('two'));
    await repo.delete(['wal/000000010000000000000001', 'wal/000000010000000000000009']);
    expect(await repo.head('wal/000000010000000000000001')).toBeUndefined();
    expect((await listAll(repo, '')).map((item) => item.key)).toEqual(['wal/000000010000000000000002']);
    // A deleted key can be written again.
    await repo.put('wal/000000010000000000000001', Buffer.from('one again'));
    expect(await text(await repo.get('wal/000000010000000000000001'))).toBe('one again');
  });

  it('stores a 20 MiB object given as a buffer and as a stream', async () => {
    const { repo, leftovers } = make();
    const big = randomBytes(20 * MiB);
    const eventsBefore = s3.events.length;
    expect(await repo.put('big/buffer', big)).toEqual({ key: 'big/buffer', size: big.length, sha256: sha(big) });
    expect(await repo.put('big/stream', streamOf(big))).toEqual({ key: 'big/stream', size: big.length, sha256: sha(big) });
    expect((await bytesOf(await repo.get('big/buffer', sha(big)))).equals(big)).toBe(true);
    expect((await bytesOf(await repo.get('big/stream', sha(big)))).equals(big)).toBe(true);
    expect(await leftovers()).toEqual([]);
    if (kind === 's3') {
      await s3.eventsSettled(eventsBefore + 4);
      const events = s3.events.slice(eventsBefore).map((event) => `${event.name} ${event.key.replace(/^t-[^/]+\//, '')}`);
      // The buffer: a multipart upload completed on its final key. The stream: a multipart upload
      // to a staging key, copied into place with its checksum, the staging object deleted.
      expect(events.filter((event) => event.endsWith(' big/buffer'))).toEqual(['ObjectCreated:Post big/buffer']);
      expect(events.filter((event) => event.endsWith(' big/stream'))).toEqual(['ObjectCreated:Copy big/stream']);
      expect(events.filter((event) => event.includes('.pgwarden-staging/')).map((event) => event.split(' ')[0])).toEqual(['ObjectCreated:Post', 'ObjectRemoved:Delete']);
    }
  });

  it('leaves nothing visible when the source stream fails mid-way, small or large', async () => {
    const { repo, leftovers } = make();
    const failure = new Error('the compressor died');
    const small = streamOf(randomBytes(1 * MiB), 512 * 1024, failure);
    await expect(repo.put('wal/000000010000000000000003', small)).rejects.toBe(failure);
    const large = streamOf(randomBytes(24 * MiB), 20 * MiB, failure);
    await expect(repo.put('backups/b2/base.tar', large)).rejects.toBe(failure);
    expect(await repo.head('wal/000000010000000000000003')).toBeUndefined();
    expect(await repo.head('backups/b2/base.tar')).toBeUndefined();
    expect(await listAll(repo, '')).toEqual([]);
    expect(await leftovers()).toEqual([]);
    // The names are free: a retry stores them.
    await repo.put('wal/000000010000000000000003', Buffer.from('retried'));
    expect(await text(await repo.get('wal/000000010000000000000003'))).toBe('retried');
  });

  it('fails get() at the end of the stream when the stored bytes were corrupted, with or without the expected checksum', async () => {
    const { repo, corrupt } = make();
    const bytes = randomBytes(100_000);
    await repo.put('backups/b3/base.tar', bytes);
    corrupt('backups/b3/base.tar');
    await expect(bytesOf(await repo.get('backups/b3/base.tar', sha(bytes)))).rejects.toThrow(ChecksumMismatchError);
    const error = await bytesOf(await repo.get('backups/b3/base.tar')).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ChecksumMismatchError);
    expect((error as Error).message).toMatch(/backups\/b3\/base\.tar: the bytes read have SHA-256 [0-9a-f]{64}, but [0-9a-f]{64} was recorded when it was stored: the stored object is corrupt/);
  });

  it('fails get() when the caller expects other bytes', async () => {
    const { repo } = make();
    await repo.put('x', Buffer.from('these bytes'));
    const other = sha(Buffer.from('other bytes'));
    const error = await bytesOf(await repo.get('x', other)).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ChecksumMismatchError);
    expect((error as Error).message).toContain(`not the expected ${other}`);
  });

  it('refuses keys that could leave the repository or collide with its own files', async () => {
    const { repo } = make();
    for (const key of ['', '../escape', 'a/../../b', '/etc/passwd', 'a//b', 'a/', '.hidden', 'wal/.x.tmp', 'a/./b', 'with space', 'tab\there']) {
      await expect(repo.put(key, Buffer.from('x')), key).rejects.toBeInstanceOf(InvalidKeyError);
      await expect(repo.head(key), key).rejects.toBeInstanceOf(InvalidKeyError);
    }
    await expect(listAll(repo, '../')).rejects.toBeInstanceOf(InvalidKeyError);
    await expect(repo.delete(['ok', '../no'])).rejects.toBeInstanceOf(InvalidKeyError);
  });
});

describe('the local repository', () => {
  let full: string | undefined;

  afterAll(() => {
    if (full !== undefined) {
      execFileSync('umount', [full]);
      rmSync(full, { recursive: true, force: true });
    }
  });

  it('on a full disk fails with a clear error, keeps no partial file, and works again once there is room', async () => {
    full = mkdtempSync(join(tmpdir(), 'pgwarden-full-'));
    // Root only; these tests run as root. A real file system that fills up, not a simulated error.
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', full]);
    onProcessEnd(() => {
      try {
        execFileSync('umount', [full!], { stdio: 'ignore' });
      } catch {
        // already unmounted
      }
    });
    const repo = new LocalRepository(full);
    const error = await repo.put('backups/b1/base.tar', streamOf(randomBytes(2 * MiB))).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(UserError);
    expect((error as UserError).message).toBe(`local ${full}: writing backups/b1/base.tar: no space left on the device (ENOSPC)`);
    expect((error as UserError).hint).toContain('nothing was stored under that name');
    expect(await repo.head('backups/b1/base.tar')).toBeUndefined();
    expect(readdirSync(join(full, 'backups', 'b1'))).toEqual([]);
    const fits = randomBytes(300 * 1024);
    expect(await repo.put('backups/b1/base.tar', fits)).toEqual({ key: 'backups/b1/base.tar', size: fits.length, sha256: sha(fits) });
  });

  it('treats a missing root as an error, never as an empty repository', async () => {
    const root = join(tmpdir(), `pgwarden-missing-${randomUUID()}`);
    const repo = new LocalRepository(root);
    for (const attempt of [() => repo.head('wal/000000010000000000000001'), () => repo.get('wal/000000010000000000000001'), () => repo.put('x', Buffer.from('x')), () => listAll(repo, '')]) {
      const error = await attempt().then(() => undefined, (caught: unknown) => caught);
      expect(error).toBeInstanceOf(UserError);
      expect((error as UserError).message).toBe(`local ${root}: the repository directory does not exist`);
      expect((error as UserError).hint).toContain(`mkdir -p ${root}`);
    }
  });

  it('lets exactly one of two concurrent writers of a key win (link, not rename)', async () => {
    const { repo } = newLocal();
    for (let round = 0; round < 5; round += 1) {
      const key = `wal/00000001000000000000000${round}`;
      const bodies = [randomBytes(1 * MiB), randomBytes(1 * MiB)];
      const results = await Promise.allSettled(bodies.map((body) => repo.put(key, streamOf(body))));
      const won = results.flatMap((result, index) => (result.status === 'fulfilled' ? [index] : []));
      expect(won, `round ${round}`).toHaveLength(1);
      const winner = bodies[won[0]!]!;
      const loser = results[1 - won[0]!]!;
      expect(loser.status).toBe('rejected');
      const reason = (loser as PromiseRejectedResult).reason as unknown;
      expect(reason).toBeInstanceOf(ObjectExistsError);
      expect((reason as ObjectExistsError).existing).toEqual({ key, size: winner.length, sha256: sha(winner) });
      expect((await bytesOf(await repo.get(key, sha(winner)))).equals(winner)).toBe(true);
    }
  });

  it('lists in the byte order of whole keys, as S3 does, not directory by directory', async () => {
    const { repo } = newLocal();
    for (const key of ['a/b', 'a-c', 'a.d/e', 'a+', 'a0']) await repo.put(key, Buffer.from(key));
    expect((await listAll(repo, '')).map((item) => item.key)).toEqual(['a+', 'a-c', 'a.d/e', 'a/b', 'a0']);
    expect((await listAll(repo, 'a.')).map((item) => item.key)).toEqual(['a.d/e']);
  });

  it('keeps the checksum in a hidden sidecar, never listed, and recomputes it when the sidecar is missing', async () => {
    const root = mkdtempSync(join(tmpdir(), 'pgwarden-repo-'));
    localRoots.push(root);
    const repo = new LocalRepository(root);
    const bytes = Buffer.from('segment bytes');
    await repo.put('wal/000000010000000000000001', bytes);
    expect(readdirSync(join(root, 'wal')).sort()).toEqual(['.000000010000000000000001.sha256', '000000010000000000000001']);
    expect(JSON.parse(readFileSync(join(root, 'wal', '.000000010000000000000001.sha256'), 'utf8'))).toEqual({ sha256: sha(bytes), size: bytes.length });
    // As after a crash between placing the object and writing its sidecar.
    unlinkSync(join(root, 'wal', '.000000010000000000000001.sha256'));
    expect(await repo.head('wal/000000010000000000000001')).toEqual({ key: 'wal/000000010000000000000001', size: bytes.length, sha256: sha(bytes) });
    expect(await listAll(repo, '')).toEqual([{ key: 'wal/000000010000000000000001', size: bytes.length, sha256: sha(bytes) }]);
  });
});

describe('the S3 repository', () => {
  it('follows ListObjectsV2 pages and skips staging objects', async () => {
    const { repo, prefix } = newS3({ listPageSize: 7 });
    const keys = Array.from({ length: 25 }, (_, index) => `wal/0000000100000000000000${index.toString(16).toUpperCase().padStart(2, '0')}`);
    for (const key of [...keys].reverse()) await repo.put(key, Buffer.from(key));
    // A staging object left by a crashed upload is not a repository object.
    await raw.send(new PutObjectCommand({ Bucket: s3.bucket, Key: `${prefix}/.pgwarden-staging/abandoned`, Body: 'half' }));
    const listed = await listAll(repo, '');
    expect(listed.map((item) => item.key)).toEqual(keys);
    expect(listed.every((item) => item.sha256 === sha(Buffer.from(item.key)))).toBe(true);
  });

  it('names the missing bucket and the fix', async () => {
    const repo = new S3Repository({ endpoint: s3.endpoint, region: 'us-east-1', bucket: 'pgwarden-absent', prefix: 'p', forcePathStyle: true, credentials: s3.credentials });
    for (const attempt of [() => repo.head('wal/000000010000000000000001'), () => repo.put('x', Buffer.from('x')), () => listAll(repo, ''), () => repo.get('x')]) {
      const error = await attempt().then(() => undefined, (caught: unknown) => caught);
      expect(error).toBeInstanceOf(UserError);
      expect((error as UserError).message).toMatch(/s3 s3:\/\/pgwarden-absent\/p at 127\.0\.0\.1:\d+: \w+ .*: the bucket "pgwarden-absent" does not exist/);
      expect((error as UserError).hint).toBe('create the bucket, or correct "bucket" in the repository\'s settings');
    }
    repo.close();
  });

  it('names refused credentials by their variables, never their values', async () => {
    // s3rver checks the key id only (not V4 signatures): an unknown key id is the refusal it can give.
    const secret = 'wrong-secret-0123456789abcdef';
    const env = { OFFSITE_KEY_ID: 'AKIAUNKNOWNKEY', OFFSITE_SECRET: secret };
    const repo = openRepository(
      { type: 's3', endpoint: s3.endpoint, region: 'us-east-1', bucket: s3.bucket, prefix: 'creds', forcePathStyle: true, conditionalWrites: true, credentialsEnv: { accessKeyIdEnv: 'OFFSITE_KEY_ID', secretAccessKeyEnv: 'OFFSITE_SECRET', sessionTokenEnv: undefined } },
      env,
      'offsite',
    );
    for (const attempt of [() => repo.head('x'), () => repo.put('x', Buffer.from('x'), { ifExists: 'replace' }), () => listAll(repo, ''), () => repo.get('x')]) {
      const error = await attempt().then(() => undefined, (caught: unknown) => caught);
      expect(error).toBeInstanceOf(UserError);
      const { message, hint } = error as UserError;
      expect(`${message} ${hint ?? ''}`).toContain('OFFSITE_KEY_ID and OFFSITE_SECRET');
      expect(message).toMatch(/refused the credentials \(InvalidAccessKeyId\)|access denied \(HTTP 403\)/);
      expect(`${message} ${hint ?? ''} ${JSON.stringify(error)}`).not.toContain(secret);
    }
    repo.close();
  });

  it('says which credential variables are missing', () => {
    expect(() => s3CredentialsFromEnv(undefined, {})).toThrow(/no S3 credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set in the environment/);
    expect(() => s3CredentialsFromEnv(undefined, { AWS_ACCESS_KEY_ID: 'id' })).toThrow(/AWS_SECRET_ACCESS_KEY is not set/);
    const spec = { type: 's3', endpoint: undefined, region: 'eu-west-1', bucket: 'db-backups', prefix: '', forcePathStyle: false, conditionalWrites: true, credentialsEnv: { accessKeyIdEnv: 'OFFSITE_ID', secretAccessKeyEnv: 'OFFSITE_SECRET', sessionTokenEnv: undefined } } as const;
    expect(() => openRepository(spec, { OFFSITE_ID: 'id' }, 'offsite')).toThrow('repository "offsite": no S3 credentials: OFFSITE_SECRET is not set in the environment');
    const fromEnv = s3CredentialsFromEnv(undefined, { AWS_ACCESS_KEY_ID: 'id', AWS_SECRET_ACCESS_KEY: 'secret', AWS_SESSION_TOKEN: 'token' });
    expect(fromEnv).toEqual({ accessKeyId: 'id', secretAccessKey: 'secret', sessionToken: 'token', source: 'AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (with AWS_SESSION_TOKEN)' });
  });

  it('says when the endpoint cannot be reached', async () => {
    const repo = new S3Repository({ endpoint: 'http://127.0.0.1:9', region: 'us-east-1', bucket: s3.bucket, forcePathStyle: true, credentials: s3.credentials });
    const error = await repo.head('x').catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(UserError);
    expect((error as UserError).message).toBe(`s3 s3://pgwarden-test at 127.0.0.1:9: HEAD s3://pgwarden-test/x: cannot reach 127.0.0.1:9 (ECONNREFUSED)`);
    repo.close();
  });

  it('turns a write that lost the race (412 on If-None-Match) into ObjectExistsError with the winner\'s facts', async () => {
    const proxy = new ConditionalProxy(s3);
    await proxy.start();
    try {
      const prefix = `race-${randomUUID().slice(0, 8)}`;
      const options = { region: 'us-east-1', bucket: s3.bucket, prefix, forcePathStyle: true, credentials: s3.credentials };
      const viaProxy = new S3Repository({ ...options, endpoint: proxy.endpoint });
      const competitor = new S3Repository({ ...options, endpoint: s3.endpoint });
      for (const [key, body, winner] of [
        ['wal/000000010000000000000001', Buffer.from('ours'), Buffer.from('the other writer was first')],
        ['backups/b1/base.tar', randomBytes(12 * MiB), randomBytes(1000)],
        ['backups/b1/big.tar', randomBytes(12 * MiB), randomBytes(2000)],
      ] as const) {
        // The competing writer stores the key just after our HEAD found it absent.
        proxy.onMiss = async () => {
          await competitor.put(key, winner);
        };
        // A small buffer (PutObject), a long stream (staging, then CopyObject), a large buffer (CompleteMultipartUpload).
        const error = await viaProxy.put(key, key.endsWith('base.tar') ? streamOf(body) : body).catch((caught: unknown) => caught);
        expect(error, key).toBeInstanceOf(ObjectExistsError);
        expect((error as ObjectExistsError).existing).toEqual({ key, size: winner.length, sha256: sha(winner) });
        expect((await bytesOf(await competitor.get(key, sha(winner)))).equals(winner)).toBe(true);
      }
      expect(proxy.refused).toBe(3);
      const staging = await raw.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: `${prefix}/.pgwarden-staging/` }));
      expect(staging.Contents ?? []).toEqual([]);
      viaProxy.close();
      competitor.close();
    } finally {
      await proxy.stop();
    }
  });
});
