import { createHash, randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import {
  DecryptError,
  decryptBuffer,
  decryptStream,
  defaultChunkSize,
  encryptBuffer,
  encryptStream,
  encryptedKeyId,
  encryptedSize,
  encryptionMagic,
  maxHeaderLength,
  readEncryptionHeader,
} from '../../src/backup/crypto.js';
import { makeKeyring } from '../../src/backup/keys.js';
import type { MasterKey } from '../../src/backup/types.js';

const keyA: MasterKey = { id: '2026-05', key: randomBytes(32) };
const keyB: MasterKey = { id: '2026-11', key: randomBytes(32) };
const ringA = makeKeyring([keyA]);
const small = 64;
/** Every message and hint the tests provoke, checked at the end for key material. */
const seen: string[] = [];

function sealed(plain: Buffer, chunkSize = small, keyring = ringA): Promise<Buffer> {
  return encryptBuffer(keyring, plain, { chunkSize });
}

/** Decrypts `bytes` written in pieces of `pieceSize`; resolves with what was emitted and the error, if any. */
async function open(bytes: Buffer, keyring = ringA, pieceSize = 7): Promise<{ out: Buffer; error: DecryptError | undefined }> {
  const out: Buffer[] = [];
  const pieces: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += pieceSize) pieces.push(bytes.subarray(at, at + pieceSize));
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      out.push(chunk);
      callback();
    },
  });
  try {
    await pipeline(Readable.from(pieces, { objectMode: false }), decryptStream(keyring), sink);
    return { out: Buffer.concat(out), error: undefined };
  } catch (error) {
    expect(error).toBeInstanceOf(DecryptError);
    const failure = error as DecryptError;
    seen.push(failure.message, failure.hint ?? '');
    return { out: Buffer.concat(out), error: failure };
  }
}

async function failure(bytes: Buffer, keyring = ringA): Promise<DecryptError> {
  const { error } = await open(bytes, keyring);
  if (error === undefined) throw new Error('decryption succeeded but should have failed');
  return error;
}

function flip(bytes: Buffer, at: number): Buffer {
  const copy = Buffer.from(bytes);
  copy[at] = (copy[at] ?? 0) ^ 0x01;
  return copy;
}

const headerLength = (bytes: Buffer): number => readEncryptionHeader(bytes).length;
const sealedChunk = small + 16;

describe('backup encryption: round trips', () => {
  it.each([
    ['empty', 0],
    ['1 byte', 1],
    ['exactly one chunk', small],
    ['one chunk and one byte', small + 1],
    ['many chunks, odd size', small * 37 + 13],
    ['many chunks, exact multiple', small * 20],
  ])('%s', async (_name, size) => {
    const plain = randomBytes(size);
    const bytes = await sealed(plain);
    expect(bytes.length).toBe(encryptedSize(size, keyA.id, small));
    // Fed in 7-byte pieces and in one piece: the chunk boundaries do not depend on the writes.
    expect((await open(bytes)).out.equals(plain)).toBe(true);
    expect((await open(bytes, ringA, bytes.length)).out.equals(plain)).toBe(true);
    expect((await decryptBuffer(ringA, bytes)).equals(plain)).toBe(true);
  });

  it('streams several MiB with the default 1 MiB chunks, written in uneven pieces', async () => {
    const plain = randomBytes(3 * defaultChunkSize + 12345);
    const pieces: Buffer[] = [];
    for (let at = 0, step = 1; at < plain.length; at += step, step = (step * 7 + 1) % 100_000 + 1) pieces.push(plain.subarray(at, at + step));
    const out: Buffer[] = [];
    await pipeline(Readable.from(pieces, { objectMode: false }), encryptStream(ringA), decryptStream(ringA), new Writable({
      write(chunk: Buffer, _encoding, callback) {
        out.push(chunk);
        callback();
      },
    }));
    expect(createHash('sha256').update(Buffer.concat(out)).digest('hex')).toBe(createHash('sha256').update(plain).digest('hex'));
  });

  it('writes a self-describing header and a fresh data key per object', async () => {
    const plain = Buffer.from('the same bytes twice');
    const one = await sealed(plain);
    const two = await sealed(plain);
    expect(one.subarray(0, 8).toString('latin1')).toBe(encryptionMagic);
    expect(readEncryptionHeader(one)).toEqual({ version: 1, keyId: keyA.id, chunkSize: small, length: 82 + keyA.id.length });
    expect(encryptedKeyId(one.subarray(0, maxHeaderLength))).toBe(keyA.id);
    // Key id readable from its first bytes alone.
    expect(encryptedKeyId(one.subarray(0, 10 + keyA.id.length))).toBe(keyA.id);
    expect(one.equals(two)).toBe(false);
    expect(one.subarray(headerLength(one)).includes(plain)).toBe(false);
  });
});

describe('backup encryption: damage is detected', () => {
  const plain = randomBytes(small * 3 + 10);

  it('a flipped bit anywhere in the header fails, before any output', async () => {
    const bytes = await sealed(plain);
    const length = headerLength(bytes);
    const reasons = new Set<string>();
    for (let at = 0; at < length; at++) {
      const { out, error } = await open(flip(bytes, at));
      expect(error, `bit flipped at header byte ${at}`).toBeDefined();
      expect(out.length).toBe(0);
      reasons.add(error?.reason ?? '');
    }
    // Magic, version, key id, wrap (wrong-key) and the hashed rest (chunk 0 fails).
    expect([...reasons].sort()).toEqual(['damaged-chunk', 'damaged-header', 'not-encrypted', 'unknown-key', 'unsupported-version', 'wrong-key'].sort());
  });

  it('a flipped bit in the wrapped data key says the key does not open the object', async () => {
    const bytes = await sealed(plain);
    const wrappedKeyAt = 10 + keyA.id.length + 12;
    const error = await failure(flip(bytes, wrappedKeyAt + 5));
    expect(error.reason).toBe('wrong-key');
    expect(error.message).toBe(`the key ${keyA.id} does not open this object: wrong key material`);
  });

  it('a flipped bit in a chunk fails that chunk and emits only the chunks before it', async () => {
    const bytes = await sealed(plain);
    const start = headerLength(bytes);
    const { out, error } = await open(flip(bytes, start + sealedChunk + 3));
    expect(error?.reason).toBe('damaged-chunk');
    expect(error?.message).toMatch(/^chunk 1 of the object failed authentication/);
    expect(out.equals(plain.subarray(0, small))).toBe(true);
  });

  it('a flipped bit in a tag fails; a one-chunk object emits nothing', async () => {
    const one = await sealed(randomBytes(40));
    const { out, error } = await open(flip(one, one.length - 1));
    expect(error?.reason).toBe('damaged-chunk');
    expect(out.length).toBe(0);
    const many = await sealed(plain);
    const tagOfChunk0 = headerLength(many) + small + 2;
    expect((await failure(flip(many, tagOfChunk0))).reason).toBe('damaged-chunk');
  });

  it('a stream without its last chunk fails as truncated', async () => {
    const exact = await sealed(randomBytes(small * 3));
    const error = await failure(exact.subarray(0, exact.length - sealedChunk));
    expect(error.reason).toBe('truncated');
    expect(error.message).toBe('the object is truncated: it ends after chunk 1 without its final chunk');
    const odd = await sealed(plain);
    expect((await failure(odd.subarray(0, odd.length - (10 + 16)))).reason).toBe('truncated');
    expect((await failure(odd.subarray(0, headerLength(odd)))).message).toBe('the object is truncated: it ends after its header without its final chunk');
    expect((await failure(odd.subarray(0, 30))).message).toBe('the object is truncated: it ends inside its header');
    expect((await failure(odd.subarray(0, odd.length - 3))).reason).toBe('damaged-chunk');
  });

  it('bytes after the final chunk fail', async () => {
    const exact = await sealed(randomBytes(small * 2));
    const error = await failure(Buffer.concat([exact, Buffer.from('more')]));
    expect(error.reason).toBe('extended');
    expect(error.message).toBe('the object has data after its final chunk (chunk 1)');
    const odd = await sealed(plain);
    expect((await failure(Buffer.concat([odd, Buffer.from('more')]))).reason).toBe('damaged-chunk');
  });

  it('swapped chunks fail, and so does a chunk from another object', async () => {
    const bytes = await sealed(plain);
    const start = headerLength(bytes);
    const chunk = (b: Buffer, i: number): Buffer => b.subarray(start + i * sealedChunk, start + (i + 1) * sealedChunk);
    const swapped = Buffer.concat([bytes.subarray(0, start), chunk(bytes, 1), chunk(bytes, 0), bytes.subarray(start + 2 * sealedChunk)]);
    const { out, error } = await open(swapped);
    expect(error?.message).toMatch(/^chunk 0 of the object failed authentication/);
    expect(out.length).toBe(0);
    const other = await sealed(plain);
    const spliced = Buffer.concat([bytes.subarray(0, start + sealedChunk), chunk(other, 1), bytes.subarray(start + 2 * sealedChunk)]);
    expect((await failure(spliced)).message).toMatch(/^chunk 1 /);
  });

  it('plain bytes are not taken for an encrypted object', async () => {
    const error = await failure(Buffer.from('PGDMP custom-format dump, not encrypted'));
    expect(error.reason).toBe('not-encrypted');
    expect(error.message).toBe('not an encrypted pgwarden object: it does not start with PGWENC01');
    expect((await failure(Buffer.alloc(0))).reason).toBe('not-encrypted');
    expect(() => encryptedKeyId(Buffer.from('hello world, not encrypted'))).toThrow(/does not start with PGWENC01/);
  });
});

describe('backup encryption: keys', () => {
  it('a wrong key fails with the key id and no output', async () => {
    const bytes = await sealed(randomBytes(500));
    const impostor = makeKeyring([{ id: keyA.id, key: randomBytes(32) }]);
    const { out, error } = await open(bytes, impostor);
    expect(error?.reason).toBe('wrong-key');
    expect(error?.message).toBe('the key 2026-05 does not open this object: wrong key material');
    expect(out.length).toBe(0);
  });

  it('a key id missing from the keyring is named, with the known ones', async () => {
    const bytes = await sealed(randomBytes(10));
    const error = await failure(bytes, makeKeyring([keyB, { id: 'old', key: randomBytes(32) }]));
    expect(error.reason).toBe('unknown-key');
    expect(error.message).toBe('encrypted with key 2026-05, which is not in the keyring (known: 2026-11, old)');
  });

  it('rotation: old objects still decrypt with the old key listed second; new objects use the new key', async () => {
    const plain = randomBytes(small * 5 + 3);
    const old = await sealed(plain, small, ringA);
    const rotated = makeKeyring([keyB, keyA]);
    expect((await open(old, rotated)).out.equals(plain)).toBe(true);
    const fresh = await sealed(plain, small, rotated);
    expect(encryptedKeyId(fresh)).toBe(keyB.id);
    expect((await open(fresh, rotated)).out.equals(plain)).toBe(true);
    // The old keyring cannot read the new object: the error names the new key.
    expect((await failure(fresh, ringA)).message).toMatch(/^encrypted with key 2026-11, which is not in the keyring/);
  });

  it('refuses a chunk size out of range', () => {
    expect(() => encryptStream(ringA, { chunkSize: 8 })).toThrow(/chunkSize must be/);
    expect(() => encryptStream(ringA, { chunkSize: 100.5 })).toThrow(/chunkSize must be/);
  });

  it('no error message or hint holds key material', () => {
    expect(seen.length).toBeGreaterThan(20);
    const secrets = [keyA, keyB].flatMap(({ key }) => [key.toString('base64'), key.toString('hex'), key.toString('base64url'), key.toString('latin1')]);
    for (const text of seen) for (const secret of secrets) expect(text.includes(secret)).toBe(false);
  });
});
