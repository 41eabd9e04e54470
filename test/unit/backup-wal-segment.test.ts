// WAL file names, the long page header of a real segment (copied from the shared server's pg_wal),
// the records of real segments with and without a WAL switch (from a throwaway cluster), the
// archive's object keys and headers, compression round trips, and the exit codes PostgreSQL reads
// from wal push / wal fetch.
import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DamagedObjectError, decodeObject, encodeObjectHeader, parseWalObjectKey, walObjectKey, type WalObjectHeader } from '../../src/backup/wal/archive.js';
import { compress, decompress, zstdInstalled } from '../../src/backup/wal/compress.js';
import {
  WalFormatError,
  crc32c,
  formatLsn,
  parseWalFileName,
  readLongPageHeader,
  sameWalUpToSwitch,
  segmentFileName,
  segmentNumber,
  segmentProblems,
  switchRecordEnd,
  systemIdentifierOfControlFile,
  timelineHex,
  type WalFileName,
} from '../../src/backup/wal/segment.js';
import { fetchExitCode, pushExitCode, walCommand, walExitCodes } from '../../src/cli/wal.js';
import { createPrimary, type TestCluster } from '../support/cluster.js';

interface Server {
  readonly dataDirectory: string;
  readonly systemIdentifier: string;
  readonly segmentName: string;
  readonly segmentSize: number;
}

let server: Server;
let work: string;
let segmentBytes: Buffer;

beforeAll(async () => {
  const client = new pg.Client({ host: '127.0.0.1', port: 5432, user: 'postgres', database: 'postgres' });
  await client.connect();
  try {
    // The segment being written now: its first page is complete (recycled future segments are not).
    const { rows } = await client.query<{ dir: string; sysid: string; name: string; size: string }>(
      `select current_setting('data_directory') as dir, (select system_identifier::text from pg_control_system()) as sysid,
              pg_walfile_name(pg_current_wal_insert_lsn()) as name, (select setting from pg_settings where name = 'wal_segment_size') as size`,
    );
    const row = rows[0]!;
    server = { dataDirectory: row.dir, systemIdentifier: row.sysid, segmentName: row.name, segmentSize: Number(row.size) };
  } finally {
    await client.end();
  }
  work = await mkdtemp(join(tmpdir(), 'pgwarden-wal-unit-'));
  await copyFile(join(server.dataDirectory, 'pg_wal', server.segmentName), join(work, server.segmentName));
  segmentBytes = await readFile(join(work, server.segmentName));
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('WAL file names', () => {
  it('reads segments, .partial, .history and .backup names', () => {
    expect(parseWalFileName('000000010000000A000000FF')).toEqual({ name: '000000010000000A000000FF', kind: 'segment', timeline: 1, log: 10, seg: 255 });
    expect(parseWalFileName('0000000200000000000000C3.partial')).toMatchObject({ kind: 'partial', timeline: 2, log: 0, seg: 0xc3 });
    expect(parseWalFileName('0000001A.history')).toEqual({ name: '0000001A.history', kind: 'history', timeline: 26 });
    expect(parseWalFileName('000000010000000000000002.00000028.backup')).toMatchObject({ kind: 'backup', timeline: 1, log: 0, seg: 2 });
  });

  it('rejects anything else', () => {
    for (const name of ['00000001000000000000000a', '00000001000000000000000', 'RECOVERYXLOG', '00000001.history.tmp', '000000010000000000000002.backup', 'x/000000010000000000000001', '']) {
      expect(parseWalFileName(name), name).toBeUndefined();
    }
  });

  it('turns timelines and segment numbers into names and back', () => {
    const size = 16 * 1024 * 1024;
    expect(timelineHex(26)).toBe('0000001A');
    // 256 segments of 16 MB per "log" file: segment 261 is log 1, seg 5.
    expect(segmentFileName(3, 261n, size)).toBe('000000030000000100000005');
    expect(segmentNumber(parseWalFileName('000000030000000100000005')!, size)).toBe(261n);
    expect(segmentNumber(parseWalFileName('00000003.history')!, size)).toBeUndefined();
    expect(formatLsn(0x1_0500_0000n)).toBe('1/5000000');
  });
});

describe('the long page header of a real segment', () => {
  it('names the cluster, the version, the timeline and the position that wrote it', () => {
    const header = readLongPageHeader(segmentBytes);
    const file = parseWalFileName(server.segmentName)!;
    expect(header.magic).toBe(0xd110);
    expect(header.pgVersion).toBe(15);
    expect(header.info & 0x0002).toBe(0x0002);
    expect(header.systemIdentifier).toBe(server.systemIdentifier);
    expect(header.segmentSize).toBe(server.segmentSize);
    expect(header.blockSize).toBe(8192);
    expect(header.timeline).toBeLessThanOrEqual(file.timeline);
    expect(header.pageAddress).toBe(segmentNumber(file, header.segmentSize)! * BigInt(header.segmentSize));
    expect(segmentProblems(file, header, segmentBytes.length)).toEqual([]);
  });

  it('finds a segment under the wrong name, a truncated one and one from a later timeline', () => {
    const header = readLongPageHeader(segmentBytes);
    const real = parseWalFileName(server.segmentName)!;
    const next = segmentFileName(real.timeline, segmentNumber(real, header.segmentSize)! + 1n, header.segmentSize);
    expect(segmentProblems(parseWalFileName(next)!, header, segmentBytes.length).join()).toContain(`which is segment ${server.segmentName.slice(8)}, not ${next.slice(8)}`);
    expect(segmentProblems(real, header, 8192).join()).toContain(`it is 8192 bytes long, but its header says segments are ${server.segmentSize} bytes`);
    const older = { ...real, timeline: 0, name: `00000000${real.name.slice(8)}` } satisfies WalFileName;
    expect(segmentProblems(older, header, segmentBytes.length).join()).toContain('newer than the name');
  });

  it('refuses bytes that are not a segment start', () => {
    expect(() => readLongPageHeader(Buffer.alloc(8192))).toThrow(WalFormatError);
    expect(() => readLongPageHeader(segmentBytes.subarray(0, 20))).toThrow(/too short/);
    const swapped = Buffer.from(segmentBytes.subarray(0, 8192));
    swapped.writeUInt16BE(0xd110, 0);
    expect(() => readLongPageHeader(swapped)).toThrow(/big endian/);
    // The second page of a segment has a short header.
    expect(() => readLongPageHeader(segmentBytes.subarray(8192, 16384))).toThrow(/no long header|known PostgreSQL version/);
  });

  it('reads the system identifier of the data directory from pg_control', async () => {
    const control = await readFile(join(server.dataDirectory, 'global', 'pg_control'));
    expect(systemIdentifierOfControlFile(control)).toBe(server.systemIdentifier);
  });
});

describe('the records of a segment: where a WAL switch ends it', () => {
  let cluster: TestCluster;
  /** A segment closed by pg_switch_wal(), and the offset the server says its switch record ends at. */
  let switched: { bytes: Buffer; end: number };
  /** A segment filled to its end by WAL (no switch), and a copy of the one being written. */
  let full: Buffer;
  let current: Buffer;

  async function walFile(name: string): Promise<Buffer> {
    return readFile(join(cluster.dataDir, 'pg_wal', name));
  }

  async function insertName(): Promise<string> {
    const [row] = await cluster.sql('select pg_walfile_name(pg_current_wal_insert_lsn()) as name');
    return String(row?.['name']);
  }

  beforeAll(async () => {
    cluster = await createPrimary({ name: 'wal-segment-walk' });
    await cluster.sql('create table t (id int, note text)');
    await cluster.sql('select pg_switch_wal()');
    // Fill a whole segment: the WAL written after the switch runs on into the next one.
    const filled = await insertName();
    for (let batch = 0; (await insertName()) === filled; batch++) {
      await cluster.sql(`insert into t select g, md5(g::text) from generate_series(${batch * 50_000}, ${batch * 50_000 + 49_999}) g`);
    }
    // Read it before the checkpoint below recycles it.
    full = await walFile(filled);
    // Full-page images after a checkpoint are records of nearly a page: they run across page headers.
    await cluster.sql('checkpoint');
    await cluster.sql("update t set note = note || 'x' where id % 7 = 0");
    const open = await insertName();
    current = await walFile(open);
    const [row] = await cluster.sql('select file_name, file_offset from pg_walfile_name_offset(pg_switch_wal())');
    expect(row?.['file_name']).toBe(open);
    switched = { bytes: await walFile(open), end: Number(row?.['file_offset']) };
  }, 120_000);

  afterAll(async () => {
    await cluster?.destroy();
  });

  it('computes CRC-32C as PostgreSQL does', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(crc32c(Buffer.from('1234'), Buffer.from('56789'))).toBe(0xe3069283);
    expect(crc32c()).toBe(0);
  });

  it('finds the end of the switch record where pg_switch_wal() says it is', () => {
    const pageSize = readLongPageHeader(switched.bytes).blockSize;
    // The walk crossed pages that continue a record (the full-page images).
    let continued = 0;
    for (let page = pageSize; page < switched.end; page += pageSize) continued += switched.bytes.readUInt16LE(page + 2) & 0x0001;
    expect(continued).toBeGreaterThan(0);
    expect(switched.end).toBeGreaterThan(pageSize);
    expect(switched.end).toBeLessThan(switched.bytes.length);
    expect(switchRecordEnd(switched.bytes)).toBe(switched.end);
  });

  it('finds none in a full segment, the segment being written, or a part of one', () => {
    expect(full.length).toBe(switched.bytes.length);
    expect(switchRecordEnd(full)).toBeUndefined();
    expect(switchRecordEnd(current)).toBeUndefined();
    expect(switchRecordEnd(switched.bytes.subarray(0, switched.end))).toBeUndefined();
    expect(switchRecordEnd(Buffer.alloc(switched.bytes.length))).toBeUndefined();
  });

  it('takes no corrupted record for a switch', () => {
    // The switch record has no data: its last byte is the last byte of its CRC.
    const badCrc = Buffer.from(switched.bytes);
    badCrc[switched.end - 1] = badCrc[switched.end - 1]! ^ 0x01;
    expect(switchRecordEnd(badCrc)).toBeUndefined();
    // A byte of an earlier record: its CRC no longer matches, so the walk never reaches the switch.
    const badEarlier = Buffer.from(switched.bytes);
    badEarlier[Math.floor(switched.end / 2)] = badEarlier[Math.floor(switched.end / 2)]! ^ 0x01;
    expect(switchRecordEnd(badEarlier)).toBeUndefined();
  });

  it('two copies are the same WAL when they differ only after the switch', () => {
    const otherTail = Buffer.from(switched.bytes);
    otherTail.fill(0xa5, switched.end + 100, switched.end + 5000);
    otherTail[otherTail.length - 1] = 0x5a;
    expect(otherTail.equals(switched.bytes)).toBe(false);
    expect(switchRecordEnd(otherTail)).toBe(switched.end);
    expect(sameWalUpToSwitch(switched.bytes, otherTail)).toBe(switched.end);
    expect(sameWalUpToSwitch(otherTail, switched.bytes)).toBe(switched.end);

    // The long header's padding is read by no check: only comparing the bytes before the switch catches it.
    const otherPadding = Buffer.from(switched.bytes);
    otherPadding[21] = otherPadding[21]! ^ 0xff;
    expect(switchRecordEnd(otherPadding)).toBe(switched.end);
    expect(sameWalUpToSwitch(switched.bytes, otherPadding)).toBeUndefined();
    const otherRecord = Buffer.from(switched.bytes);
    otherRecord[switched.end - 30] = otherRecord[switched.end - 30]! ^ 0x01;
    expect(sameWalUpToSwitch(switched.bytes, otherRecord)).toBeUndefined();
    expect(sameWalUpToSwitch(full, Buffer.from(full))).toBeUndefined();
    expect(sameWalUpToSwitch(switched.bytes, switched.bytes.subarray(0, switched.bytes.length - 8192))).toBeUndefined();
  });
});

describe('archived objects', () => {
  it('keys say the timeline, the name, the compression and the encryption', () => {
    const segment = parseWalFileName('0000000200000000000000C3')!;
    expect(walObjectKey(segment, 'zstd', true)).toBe('wal/00000002/0000000200000000000000C3.zst.enc');
    expect(walObjectKey(parseWalFileName('00000002.history')!, 'gzip', false)).toBe('wal/00000002/00000002.history.gz');
    expect(parseWalObjectKey('wal/00000002/0000000200000000000000C3.zst.enc')).toEqual({ file: segment, compression: 'zstd', encrypted: true });
    expect(parseWalObjectKey('wal/00000002/000000020000000000000002.00000028.backup.gz')?.file.kind).toBe('backup');
    // A backup file's key starts like its segment's: it must not pass for the segment.
    expect(parseWalObjectKey('wal/00000002/000000020000000000000002.00000028.backup.gz')?.file.name).toBe('000000020000000000000002.00000028.backup');
    for (const key of ['wal/00000001/0000000200000000000000C3.zst', 'wal/00000002/0000000200000000000000C3.lz4', 'wal/00000002/0000000200000000000000C3', 'archive.json']) {
      expect(parseWalObjectKey(key), key).toBeUndefined();
    }
  });

  it('a header line describes the payload; anything else is damaged', () => {
    const header: WalObjectHeader = { name: '00000002.history', kind: 'history', size: 42, sha256: 'ab'.repeat(32), compression: 'gzip', encrypted: false, systemIdentifier: '7312345678901234567', timeline: 2 };
    const object = Buffer.concat([encodeObjectHeader(header), Buffer.from('payload')]);
    expect(decodeObject('k', object)).toEqual({ header, payload: Buffer.from('payload') });
    expect(() => decodeObject('k', Buffer.from('payload'))).toThrow(DamagedObjectError);
    expect(() => decodeObject('k', Buffer.from('pgwarden-wal 1 {"name":\n'))).toThrow(/unreadable header/);
    expect(() => decodeObject('k', Buffer.from('pgwarden-wal 1 {"name":"x"}\n'))).toThrow(/without the fields/);
  });

  it('compresses a real segment with gzip and zstd and gives back the same bytes', async () => {
    expect(await zstdInstalled()).toBe(true);
    for (const method of ['gzip', 'zstd'] as const) {
      const packed = await compress(segmentBytes, method);
      expect(packed.length).toBeLessThan(segmentBytes.length);
      expect((await decompress(packed, method)).equals(segmentBytes)).toBe(true);
      await expect(decompress(packed.subarray(0, packed.length - 10), method)).rejects.toThrow();
    }
  });
});

describe('exit codes PostgreSQL reads', () => {
  it('fetch: 0 written, 1 only for "not in the archive", 126 for every failure', () => {
    expect(fetchExitCode({ outcome: 'restored', name: 'n', key: 'k', size: 1 })).toBe(0);
    expect(fetchExitCode({ outcome: 'not in archive', name: 'n' })).toBe(1);
    expect(fetchExitCode({ error: new Error('ECONNRESET') })).toBe(126);
    expect(walExitCodes.fetchFailed).toBeGreaterThan(125);
  });

  it('push: 0 stored or stored before, 1 otherwise (never > 125, which restarts the archiver)', () => {
    expect(pushExitCode({ name: 'n', key: 'k', outcome: 'stored', storedSize: 1 })).toBe(0);
    expect(pushExitCode({ name: 'n', key: 'k', outcome: 'already archived', storedSize: 1 })).toBe(0);
    expect(pushExitCode({ error: new Error('x') })).toBe(1);
    expect(Math.max(...Object.values(walExitCodes).filter((code) => code !== walExitCodes.fetchFailed))).toBeLessThanOrEqual(125);
  });

  it('bad usage of fetch is fatal (126), of push a plain failure (2), each on one stderr line', async () => {
    const fetch = await walCommand(['fetch', '000000010000000000000001', '--repo', work]);
    expect(fetch.exitCode).toBe(126);
    expect(fetch.stderr).toMatch(/^pgwarden: wal: wal fetch takes a name and a destination/);
    expect(fetch.stderr.trimEnd().split('\n')).toHaveLength(1);
    const push = await walCommand(['push', 'pg_wal/000000010000000000000001', '--bogus']);
    expect(push.exitCode).toBe(2);
    expect(push.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect((await walCommand(['fetch', '--repo', work, '--config', 'x.toml', 'a', 'b'])).exitCode).toBe(126);
  });
});
