/**
 * Encryption at rest for backup files and WAL segments (issue 5 item 5): authenticated, streamed
 * AES-256-GCM as Node Transform streams. Each object (one backup file, one WAL segment) gets a
 * fresh random data key, wrapped by the keyring's current master key and stored in the object's
 * header, so an object is self-describing: any host holding the repository and the keyring can
 * decrypt it without pgwarden's local state. docs/encryption.md describes the format for people.
 *
 * Layout (integers big endian):
 *
 *   offset  size  field
 *        0     8  magic "PGWENC01"
 *        8     1  format version (1)
 *        9     1  n, the length of the key id
 *       10     n  key id of the master key that wrapped the data key (ASCII, see keys.ts)
 *     10+n    12  IV of the wrap
 *     22+n    32  the data key, encrypted with the master key (AES-256-GCM, AAD = the key id)
 *     54+n    16  GCM tag of the wrap
 *     70+n     8  nonce prefix, random per object
 *     78+n     4  chunk size (plaintext bytes per chunk; 1 MiB by default)
 *     82+n        chunks: ciphertext then a 16-byte GCM tag each
 *
 * Chunk i is sealed with the data key, nonce = nonce prefix ‖ i (4 bytes), AAD = SHA-256(header)
 * ‖ i (4 bytes) ‖ final flag (1 byte). Every chunk but the last holds exactly `chunk size` bytes;
 * the last holds 0 to `chunk size` bytes and carries final flag 1, so an empty object still has one
 * chunk. A changed header fails every chunk; a reordered chunk fails its index; a missing last
 * chunk leaves a non-final chunk at the end; appended bytes leave the final chunk not last. The
 * decryptor emits a chunk's plaintext only after its tag verified.
 *
 * Buffers written to these streams are held (not copied) until their chunk is sealed or opened:
 * do not modify a buffer after writing it.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { UserError } from '../errors.js';
import { isKeyId } from './keys.js';
import type { Keyring, MasterKey } from './types.js';

/** The first bytes of every encrypted object. */
export const encryptionMagic = 'PGWENC01';
/** The format version this code writes and reads. */
export const encryptionFormatVersion = 1;
/** Plaintext bytes per chunk unless told otherwise. */
export const defaultChunkSize = 1024 * 1024;
/** The chunk sizes a header may carry: bounds the memory a decryptor holds. */
export const minChunkSize = 16;
export const maxChunkSize = 16 * 1024 * 1024;

const magicBytes = Buffer.from(encryptionMagic, 'latin1');
const ivLength = 12;
const tagLength = 16;
const dataKeyLength = 32;
const noncePrefixLength = 8;
const maxKeyIdLength = 64;
/** Magic, version and key id length: enough to know the header's full length. */
const headerPrefixLength = magicBytes.length + 2;
/** IV, wrapped key, tag, nonce prefix and chunk size after the key id. */
const headerTailLength = ivLength + dataKeyLength + tagLength + noncePrefixLength + 4;
/** The longest header (a 64-character key id): reading this many bytes always gets the whole header. */
export const maxHeaderLength = headerPrefixLength + maxKeyIdLength + headerTailLength;
/** The nonce counter is 4 bytes: 2^32 chunks (4 PiB at 1 MiB) per object. */
const maxChunks = 2 ** 32;
/** Above this many pieces, a chunk is gathered into one buffer first: many tiny cipher calls cost more than one copy. */
const maxPiecesPerUpdate = 64;

/** Why an object could not be decrypted. */
export type DecryptFailure =
  | 'not-encrypted'
  | 'unsupported-version'
  | 'damaged-header'
  | 'unknown-key'
  | 'wrong-key'
  | 'damaged-chunk'
  | 'truncated'
  | 'extended';

/** An object that cannot be decrypted: the reason as data (for exit codes), the message and the fix. */
export class DecryptError extends UserError {
  constructor(readonly reason: DecryptFailure, message: string, hint: string) {
    super(message, hint);
  }
}

const damagedHint = 'the stored object is damaged or was altered: use another copy of it (another repository), and run pgwarden verify';

/** The facts of a header, as read from an object's first bytes. */
export interface EncryptionHeader {
  readonly version: number;
  /** Id of the master key that wrapped this object's data key. */
  readonly keyId: string;
  readonly chunkSize: number;
  /** Bytes of the header: the first chunk starts here. */
  readonly length: number;
}

interface SealedHeader extends EncryptionHeader {
  readonly bytes: Buffer;
  readonly iv: Buffer;
  readonly wrappedKey: Buffer;
  readonly tag: Buffer;
  readonly noncePrefix: Buffer;
}

/** The header's length from its first bytes, or undefined while fewer than 10 bytes are known. */
function headerLengthOf(bytes: Buffer): number | undefined {
  const seen = Math.min(bytes.length, magicBytes.length);
  if (!bytes.subarray(0, seen).equals(magicBytes.subarray(0, seen))) {
    throw new DecryptError('not-encrypted', `not an encrypted pgwarden object: it does not start with ${encryptionMagic}`, 'this object was stored without encryption, or is not a pgwarden object; read it without decrypting, or check the repository path');
  }
  if (bytes.length < headerPrefixLength) return undefined;
  const version = bytes.readUInt8(magicBytes.length);
  if (version !== encryptionFormatVersion) {
    throw new DecryptError('unsupported-version', `encrypted with format version ${version}, which this pgwarden does not read (it reads version ${encryptionFormatVersion})`, 'use the pgwarden release that wrote this repository, or a newer one');
  }
  const idLength = bytes.readUInt8(magicBytes.length + 1);
  if (idLength === 0 || idLength > maxKeyIdLength) throw new DecryptError('damaged-header', `the object's header is damaged (key id length ${idLength})`, damagedHint);
  return headerPrefixLength + idLength + headerTailLength;
}

function keyIdAt(bytes: Buffer, idLength: number): string {
  const keyId = bytes.toString('latin1', headerPrefixLength, headerPrefixLength + idLength);
  if (!isKeyId(keyId)) throw new DecryptError('damaged-header', 'the object\'s header is damaged (its key id is not valid)', damagedHint);
  return keyId;
}

/** Reads a whole header (its exact bytes). */
function parseHeader(bytes: Buffer): SealedHeader {
  const length = headerLengthOf(bytes);
  if (length === undefined || bytes.length < length) throw new DecryptError('truncated', 'the object is truncated: it ends inside its header', damagedHint);
  const idLength = length - headerPrefixLength - headerTailLength;
  const keyId = keyIdAt(bytes, idLength);
  let at = headerPrefixLength + idLength;
  const field = (size: number): Buffer => {
    const out = bytes.subarray(at, at + size);
    at += size;
    return out;
  };
  const iv = field(ivLength);
  const wrappedKey = field(dataKeyLength);
  const tag = field(tagLength);
  const noncePrefix = field(noncePrefixLength);
  const chunkSize = bytes.readUInt32BE(at);
  if (chunkSize < minChunkSize || chunkSize > maxChunkSize) throw new DecryptError('damaged-header', `the object's header is damaged (chunk size ${chunkSize})`, damagedHint);
  return { version: encryptionFormatVersion, keyId, chunkSize, length, bytes: bytes.subarray(0, length), iv, wrappedKey, tag, noncePrefix };
}

/**
 * The facts in an encrypted object's header, from its first bytes (maxHeaderLength of them always
 * suffice), without any key. Throws a DecryptError when the bytes are not such a header.
 */
export function readEncryptionHeader(bytes: Buffer): EncryptionHeader {
  const { version, keyId, chunkSize, length } = parseHeader(bytes);
  return { version, keyId, chunkSize, length };
}

/** The id of the master key an object was encrypted with, from its first bytes, without decrypting. */
export function encryptedKeyId(bytes: Buffer): string {
  const length = headerLengthOf(bytes);
  const idLength = length === undefined ? 0 : length - headerPrefixLength - headerTailLength;
  if (length === undefined || bytes.length < headerPrefixLength + idLength) {
    throw new DecryptError('truncated', `too few bytes to read the key id: ${bytes.length} given`, `pass the object's first ${maxHeaderLength} bytes (or all of it, if shorter)`);
  }
  return keyIdAt(bytes, idLength);
}

/** The stored size of an object of `plainBytes` bytes, encrypted with key `keyId`. */
export function encryptedSize(plainBytes: number, keyId: string, chunkSize = defaultChunkSize): number {
  const chunks = Math.max(1, Math.ceil(plainBytes / chunkSize));
  return headerPrefixLength + Buffer.byteLength(keyId, 'latin1') + headerTailLength + plainBytes + chunks * tagLength;
}

function chunkNonce(prefix: Buffer, index: number): Buffer {
  const nonce = Buffer.allocUnsafe(ivLength);
  prefix.copy(nonce, 0);
  nonce.writeUInt32BE(index, noncePrefixLength);
  return nonce;
}

function chunkAad(headerHash: Buffer, index: number, final: boolean): Buffer {
  const aad = Buffer.allocUnsafe(headerHash.length + 5);
  headerHash.copy(aad, 0);
  aad.writeUInt32BE(index, headerHash.length);
  aad.writeUInt8(final ? 1 : 0, headerHash.length + 4);
  return aad;
}

/** The bytes written but not yet sealed or opened: a queue of buffers, consumed without copying. */
class PieceQueue {
  private pieces: Buffer[] = [];
  private head = 0;
  length = 0;

  push(piece: Buffer): void {
    if (piece.length === 0) return;
    this.pieces.push(piece);
    this.length += piece.length;
  }

  /** The first `count` bytes as a list of views (count ≤ length). */
  take(count: number): Buffer[] {
    const out: Buffer[] = [];
    let wanted = count;
    while (wanted > 0) {
      const first = this.pieces[this.head];
      if (first === undefined) throw new Error(`PieceQueue.take(${count}) beyond its length`);
      if (first.length <= wanted) {
        out.push(first);
        this.head += 1;
        wanted -= first.length;
      } else {
        out.push(first.subarray(0, wanted));
        this.pieces[this.head] = first.subarray(wanted);
        wanted = 0;
      }
    }
    this.length -= count;
    if (this.head > 1024 || this.head === this.pieces.length) {
      this.pieces = this.pieces.slice(this.head);
      this.head = 0;
    }
    return out;
  }

  /** A copy of the first `count` bytes, leaving them in the queue. */
  peek(count: number): Buffer {
    const out: Buffer[] = [];
    let wanted = count;
    for (let i = this.head; i < this.pieces.length && wanted > 0; i++) {
      const piece = this.pieces[i] ?? Buffer.alloc(0);
      out.push(piece.subarray(0, wanted));
      wanted -= Math.min(piece.length, wanted);
    }
    return Buffer.concat(out);
  }
}

function gathered(pieces: readonly Buffer[]): readonly Buffer[] {
  return pieces.length > maxPiecesPerUpdate ? [Buffer.concat(pieces)] : pieces;
}

class Encryptor extends Transform {
  private readonly dataKey = randomBytes(dataKeyLength);
  private readonly noncePrefix = randomBytes(noncePrefixLength);
  private readonly header: Buffer;
  private readonly headerHash: Buffer;
  private readonly pending = new PieceQueue();
  private index = 0;
  private headerSent = false;

  constructor(master: MasterKey, private readonly chunkSize: number) {
    super();
    const id = Buffer.from(master.id, 'latin1');
    const iv = randomBytes(ivLength);
    const wrap = createCipheriv('aes-256-gcm', master.key, iv, { authTagLength: tagLength });
    wrap.setAAD(id);
    const wrappedKey = Buffer.concat([wrap.update(this.dataKey), wrap.final()]);
    const size = Buffer.allocUnsafe(4);
    size.writeUInt32BE(chunkSize, 0);
    this.header = Buffer.concat([magicBytes, Buffer.from([encryptionFormatVersion, id.length]), id, iv, wrappedKey, wrap.getAuthTag(), this.noncePrefix, size]);
    this.headerHash = createHash('sha256').update(this.header).digest();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.sendHeader();
      this.pending.push(chunk);
      // A chunk is known not to be the last only once a byte beyond it has arrived.
      while (this.pending.length > this.chunkSize) this.seal(this.pending.take(this.chunkSize), false);
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    try {
      this.sendHeader();
      this.seal(this.pending.take(this.pending.length), true);
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.dataKey.fill(0);
    callback(error);
  }

  private sendHeader(): void {
    if (this.headerSent) return;
    this.headerSent = true;
    this.push(this.header);
  }

  private seal(pieces: readonly Buffer[], final: boolean): void {
    if (this.index >= maxChunks) throw new Error(`an encrypted object holds at most ${maxChunks} chunks; use a larger chunk size`);
    const cipher = createCipheriv('aes-256-gcm', this.dataKey, chunkNonce(this.noncePrefix, this.index), { authTagLength: tagLength });
    cipher.setAAD(chunkAad(this.headerHash, this.index, final));
    for (const piece of gathered(pieces)) {
      const out = cipher.update(piece);
      if (out.length > 0) this.push(out);
    }
    const rest = cipher.final();
    if (rest.length > 0) this.push(rest);
    this.push(cipher.getAuthTag());
    this.index += 1;
  }
}

class Decryptor extends Transform {
  private readonly pending = new PieceQueue();
  private header: SealedHeader | undefined;
  private headerHash: Buffer | undefined;
  private dataKey: Buffer | undefined;
  private index = 0;

  constructor(private readonly keyring: Keyring) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.pending.push(chunk);
      if (this.header === undefined && !this.readHeader()) {
        callback();
        return;
      }
      const sealed = this.chunkSize() + tagLength;
      // As in the encryptor: a chunk is opened as not-final only when more bytes follow it.
      while (this.pending.length > sealed) this.open(this.pending.take(sealed), false);
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    try {
      if (this.header === undefined) {
        if (this.pending.length === 0) throw new DecryptError('not-encrypted', 'not an encrypted pgwarden object: it is empty', damagedHint);
        headerLengthOf(this.pending.peek(this.pending.length));
        throw new DecryptError('truncated', 'the object is truncated: it ends inside its header', damagedHint);
      }
      if (this.pending.length < tagLength) {
        const where = this.index === 0 ? 'after its header' : `after chunk ${this.index - 1}`;
        throw new DecryptError('truncated', `the object is truncated: it ends ${where} without its final chunk`, damagedHint);
      }
      this.open(this.pending.take(this.pending.length), true);
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.dataKey?.fill(0);
    callback(error);
  }

  private chunkSize(): number {
    return this.header?.chunkSize ?? defaultChunkSize;
  }

  /** Parses the header and unwraps the data key once all its bytes are here; false while waiting. */
  private readHeader(): boolean {
    const length = headerLengthOf(this.pending.peek(Math.min(this.pending.length, headerPrefixLength)));
    if (length === undefined || this.pending.length < length) return false;
    const header = parseHeader(Buffer.concat(this.pending.take(length)));
    const master = this.keyring.all.find((key) => key.id === header.keyId);
    if (master === undefined) {
      const known = this.keyring.all.map((key) => key.id).join(', ');
      throw new DecryptError('unknown-key', `encrypted with key ${header.keyId}, which is not in the keyring (known: ${known})`, `add the key ${header.keyId} to backup.keys after the current key (old keys stay listed so that old backups still decrypt)`);
    }
    try {
      const unwrap = createDecipheriv('aes-256-gcm', master.key, header.iv, { authTagLength: tagLength });
      unwrap.setAAD(Buffer.from(header.keyId, 'latin1'));
      unwrap.setAuthTag(header.tag);
      this.dataKey = Buffer.concat([unwrap.update(header.wrappedKey), unwrap.final()]);
    } catch {
      throw new DecryptError('wrong-key', `the key ${header.keyId} does not open this object: wrong key material`, `load the key file that held key ${header.keyId} when this object was written; if it is the right one, the object's header is damaged (${damagedHint})`);
    }
    this.header = header;
    this.headerHash = createHash('sha256').update(header.bytes).digest();
    return true;
  }

  /** The plaintext of one sealed chunk (ciphertext then tag), or undefined when it does not authenticate. */
  private tryOpen(ciphertext: readonly Buffer[], tag: Buffer, final: boolean): Buffer[] | undefined {
    const header = this.header;
    const headerHash = this.headerHash;
    const dataKey = this.dataKey;
    if (header === undefined || headerHash === undefined || dataKey === undefined) throw new Error('Decryptor: a chunk before the header');
    const decipher = createDecipheriv('aes-256-gcm', dataKey, chunkNonce(header.noncePrefix, this.index), { authTagLength: tagLength });
    decipher.setAAD(chunkAad(headerHash, this.index, final));
    decipher.setAuthTag(tag);
    const plain: Buffer[] = [];
    for (const piece of gathered(ciphertext)) {
      const out = decipher.update(piece);
      if (out.length > 0) plain.push(out);
    }
    try {
      const rest = decipher.final();
      if (rest.length > 0) plain.push(rest);
    } catch {
      return undefined;
    }
    return plain;
  }

  private open(pieces: readonly Buffer[], final: boolean): void {
    if (this.index >= maxChunks) throw new DecryptError('extended', `the object has more than ${maxChunks} chunks`, damagedHint);
    const total = pieces.reduce((sum, piece) => sum + piece.length, 0);
    const queue = new PieceQueue();
    for (const piece of pieces) queue.push(piece);
    const ciphertext = queue.take(total - tagLength);
    const tag = Buffer.concat(queue.take(tagLength));
    const plain = this.tryOpen(ciphertext, tag, final);
    if (plain === undefined) {
      // Tell a cut or an extended object from a damaged one: the same chunk with the other flag.
      if (final && total - tagLength === this.chunkSize() && this.tryOpen(ciphertext, tag, false) !== undefined) {
        throw new DecryptError('truncated', `the object is truncated: it ends after chunk ${this.index} without its final chunk`, damagedHint);
      }
      if (!final && this.tryOpen(ciphertext, tag, true) !== undefined) {
        throw new DecryptError('extended', `the object has data after its final chunk (chunk ${this.index})`, damagedHint);
      }
      throw new DecryptError('damaged-chunk', `chunk ${this.index} of the object failed authentication: it is damaged, out of order or was altered`, damagedHint);
    }
    for (const out of plain) this.push(out);
    this.index += 1;
  }
}

export interface EncryptOptions {
  /** Plaintext bytes per chunk (defaultChunkSize, 1 MiB). */
  readonly chunkSize?: number;
}

/** A stream that encrypts what is written to it with a fresh data key, wrapped by the keyring's current key. */
export function encryptStream(keyring: Keyring, options: EncryptOptions = {}): Transform {
  const chunkSize = options.chunkSize ?? defaultChunkSize;
  if (!Number.isInteger(chunkSize) || chunkSize < minChunkSize || chunkSize > maxChunkSize) {
    throw new RangeError(`chunkSize must be a whole number from ${minChunkSize} to ${maxChunkSize}, not ${chunkSize}`);
  }
  const { current } = keyring;
  if (!isKeyId(current.id) || current.key.length !== 32) {
    throw new UserError(`backup key "${current.id}" cannot encrypt: it needs a valid id and 32 bytes of key`, 'build the keyring with loadKeyring() or makeKeyring()');
  }
  return new Encryptor(current, chunkSize);
}

/**
 * A stream that decrypts an encrypted object with the keyring key its header names. Errors with a
 * DecryptError on an unknown or wrong key (before any output) and on any damage, reordering,
 * truncation or extension; it emits only chunks whose tag verified, so output that precedes an
 * error is authentic but incomplete: write it to a temporary name and rename only after the end.
 */
export function decryptStream(keyring: Keyring): Transform {
  return new Decryptor(keyring);
}

/** Encrypts a whole buffer (a WAL segment): encryptStream without the plumbing. */
export async function encryptBuffer(keyring: Keyring, plain: Buffer, options: EncryptOptions = {}): Promise<Buffer> {
  const stream = encryptStream(keyring, options);
  const out = buffer(stream);
  stream.end(plain);
  return out;
}

/** Decrypts a whole encrypted object; rejects with a DecryptError as decryptStream errors. */
export async function decryptBuffer(keyring: Keyring, sealed: Buffer): Promise<Buffer> {
  const stream = decryptStream(keyring);
  const out = buffer(stream);
  stream.end(sealed);
  return out;
}
