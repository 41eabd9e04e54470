/**
 * WAL file names and the long page header at the start of every WAL segment, read without
 * connecting to the server, so that the archiver can tell which cluster (system identifier),
 * timeline and position wrote a segment before it stores it (DESIGN §7 rules 2 and 4).
 *
 * The header layout is PostgreSQL's XLogLongPageHeaderData (src/include/access/xlog_internal.h),
 * in the machine's byte order (little endian here; checked through the magic number):
 *
 *   offset  size  field
 *        0     2  xlp_magic        WAL format version (0xD110 on PostgreSQL 15)
 *        2     2  xlp_info         flag bits; XLP_LONG_HEADER (0x0002) on a segment's first page
 *        4     4  xlp_tli          timeline of the first record on the page
 *        8     8  xlp_pageaddr     WAL position of this page (segment number × segment size)
 *       16     4  xlp_rem_len      bytes of a record continued from the previous page
 *       20     4  (padding: the struct holds a uint64, so its size is aligned to 8)
 *       24     8  xlp_sysid        system identifier from pg_control
 *       32     4  xlp_seg_size     wal_segment_size, as a cross-check
 *       36     4  xlp_xlog_blcksz  WAL page size, as a cross-check
 */

/** What a file in pg_wal (or handed to archive_command) is, from its name alone. */
export type WalFileKind = 'segment' | 'partial' | 'history' | 'backup';

export interface WalFileName {
  /** The name as PostgreSQL writes it, e.g. "000000010000000000000003". */
  readonly name: string;
  readonly kind: WalFileKind;
  readonly timeline: number;
  /** The segment's "log" and "seg" parts (absent for history files). */
  readonly log?: number;
  readonly seg?: number;
}

const HEX8 = '([0-9A-F]{8})';
const SEGMENT_RE = new RegExp(`^${HEX8}${HEX8}${HEX8}$`);
const PARTIAL_RE = new RegExp(`^${HEX8}${HEX8}${HEX8}\\.partial$`);
const BACKUP_RE = new RegExp(`^${HEX8}${HEX8}${HEX8}\\.${HEX8}\\.backup$`);
const HISTORY_RE = new RegExp(`^${HEX8}\\.history$`);

function hex(part: string | undefined): number {
  return Number.parseInt(part ?? '', 16);
}

/** Parses a WAL file name (segment, .partial, .history, .backup); undefined for anything else. */
export function parseWalFileName(name: string): WalFileName | undefined {
  const history = HISTORY_RE.exec(name);
  if (history !== null) return { name, kind: 'history', timeline: hex(history[1]) };
  const match = SEGMENT_RE.exec(name) ?? PARTIAL_RE.exec(name) ?? BACKUP_RE.exec(name);
  if (match === null) return undefined;
  const kind: WalFileKind = name.endsWith('.partial') ? 'partial' : name.endsWith('.backup') ? 'backup' : 'segment';
  return { name, kind, timeline: hex(match[1]), log: hex(match[2]), seg: hex(match[3]) };
}

/** The 8 hex digits PostgreSQL uses for a timeline in file names, e.g. 1 → "00000001". */
export function timelineHex(timeline: number): string {
  return timeline.toString(16).toUpperCase().padStart(8, '0');
}

/** A segment's file name from its timeline and number, for a given segment size. */
export function segmentFileName(timeline: number, segmentNumber: bigint, segmentSize: number): string {
  const perLog = 0x1_0000_0000n / BigInt(segmentSize);
  const log = Number(segmentNumber / perLog);
  const seg = Number(segmentNumber % perLog);
  return `${timelineHex(timeline)}${timelineHex(log)}${timelineHex(seg)}`;
}

/** The segment number (position in the WAL stream / segment size) a segment name stands for. */
export function segmentNumber(file: WalFileName, segmentSize: number): bigint | undefined {
  if (file.log === undefined || file.seg === undefined) return undefined;
  return BigInt(file.log) * (0x1_0000_0000n / BigInt(segmentSize)) + BigInt(file.seg);
}

/** xlp_info flag: the page begins with the rest of a record that started on an earlier page. */
const XLP_FIRST_IS_CONTRECORD = 0x0001;
/** xlp_info flag: this page starts with the long header (the first page of a segment). */
export const XLP_LONG_HEADER = 0x0002;
// Includes XLP_FIRST_IS_OVERWRITE_CONTRECORD (0x0008): PostgreSQL 15 sets it, and its minor
// releases from 10 on, after a crash cut a record short at a page boundary.
const XLP_ALL_FLAGS = 0x000f;
/** Bytes of the long page header (MAXALIGN(sizeof(XLogLongPageHeaderData))). */
export const LONG_PAGE_HEADER_SIZE = 40;
/** Bytes of the short page header every other page starts with (MAXALIGN(sizeof(XLogPageHeaderData))). */
const SHORT_PAGE_HEADER_SIZE = 24;

/**
 * xlp_magic of each PostgreSQL major version (XLOG_PAGE_MAGIC in xlog_internal.h). The WAL format
 * changes only between major versions, so the magic tells which major version wrote a segment.
 */
export const WAL_PAGE_MAGIC: Readonly<Record<number, number>> = {
  12: 0xd101,
  13: 0xd106,
  14: 0xd10d,
  15: 0xd110,
  16: 0xd113,
  17: 0xd116,
  18: 0xd118,
};

/** The major version whose WAL carries this magic, or undefined for one this build does not know. */
export function versionOfMagic(magic: number): number | undefined {
  for (const [version, value] of Object.entries(WAL_PAGE_MAGIC)) if (value === magic) return Number(version);
  return undefined;
}

/** The identity fields of a segment's first page. */
export interface LongPageHeader {
  readonly magic: number;
  /** The major version that wrote the segment (from the magic), when known. */
  readonly pgVersion: number | undefined;
  readonly info: number;
  readonly timeline: number;
  /** WAL position of the first page: the segment number × the segment size. */
  readonly pageAddress: bigint;
  /** pg_control's system identifier, as a decimal string (it does not fit a JS number). */
  readonly systemIdentifier: string;
  readonly segmentSize: number;
  readonly blockSize: number;
}

/** A file that is not a WAL segment of a known format, or not the one its name says. */
export class WalFormatError extends Error {
  override readonly name = 'WalFormatError';
}

function isPowerOfTwo(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

/**
 * Reads the long page header from the first bytes of a segment. Throws WalFormatError when the
 * bytes are not a WAL segment's first page (wrong magic, no long-header flag, sizes out of range).
 */
export function readLongPageHeader(bytes: Buffer): LongPageHeader {
  if (bytes.length < LONG_PAGE_HEADER_SIZE) {
    throw new WalFormatError(`${bytes.length} bytes are too short for a WAL page header (${LONG_PAGE_HEADER_SIZE})`);
  }
  const magic = bytes.readUInt16LE(0);
  const info = bytes.readUInt16LE(2);
  const pgVersion = versionOfMagic(magic);
  if (pgVersion === undefined) {
    const swapped = bytes.readUInt16BE(0);
    const hint = versionOfMagic(swapped) !== undefined ? ' (it is big endian: written on another kind of machine)' : '';
    throw new WalFormatError(`not a WAL segment of a known PostgreSQL version: page magic 0x${magic.toString(16).toUpperCase()}${hint}`);
  }
  if ((info & XLP_LONG_HEADER) === 0 || (info & ~XLP_ALL_FLAGS) !== 0) {
    throw new WalFormatError(`the first page has no long header (xlp_info 0x${info.toString(16)}): not the start of a WAL segment`);
  }
  const segmentSize = bytes.readUInt32LE(32);
  const blockSize = bytes.readUInt32LE(36);
  if (!isPowerOfTwo(segmentSize) || segmentSize < 1024 * 1024 || segmentSize > 1024 * 1024 * 1024) {
    throw new WalFormatError(`implausible WAL segment size ${segmentSize} in the page header`);
  }
  if (!isPowerOfTwo(blockSize) || blockSize < 1024 || blockSize > 65536) {
    throw new WalFormatError(`implausible WAL block size ${blockSize} in the page header`);
  }
  return {
    magic,
    pgVersion,
    info,
    timeline: bytes.readUInt32LE(4),
    pageAddress: bytes.readBigUInt64LE(8),
    systemIdentifier: bytes.readBigUInt64LE(24).toString(),
    segmentSize,
    blockSize,
  };
}

/**
 * Checks that a segment's header agrees with its name and its size: the first page's address is
 * the position the name stands for, its timeline is not newer than the name's, and the file is
 * exactly one segment long. Returns the problems, empty when it is consistent.
 */
export function segmentProblems(file: WalFileName, header: LongPageHeader, fileSize: number): string[] {
  const problems: string[] = [];
  if (fileSize !== header.segmentSize) {
    problems.push(`it is ${fileSize} bytes long, but its header says segments are ${header.segmentSize} bytes`);
  }
  const number = segmentNumber(file, header.segmentSize);
  if (number === undefined) {
    problems.push(`${file.name} is not a segment name`);
    return problems;
  }
  const expected = number * BigInt(header.segmentSize);
  if (header.pageAddress !== expected) {
    const actual = segmentFileName(file.timeline, header.pageAddress / BigInt(header.segmentSize), header.segmentSize);
    problems.push(`its first page is at WAL position ${formatLsn(header.pageAddress)}, which is segment ${actual.slice(8)}, not ${file.name.slice(8, 24)}`);
  }
  // A new timeline's first segment is a copy of the old timeline's up to the switch point, so its
  // first page may carry the older timeline; a newer one than the name's never occurs.
  if (header.timeline > file.timeline) {
    problems.push(`its first page belongs to timeline ${header.timeline}, newer than the name's timeline ${file.timeline}`);
  }
  return problems;
}

/** An LSN the way PostgreSQL prints it, e.g. 0/3000000. */
export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffff_ffffn).toString(16).toUpperCase()}`;
}

/**
 * The system identifier from pg_control (global/pg_control), whose first field it is. Used for
 * files without a page header (.history, .backup): the archiver runs in the data directory.
 */
export function systemIdentifierOfControlFile(bytes: Buffer): string {
  if (bytes.length < 8) throw new WalFormatError('pg_control is too short to hold a system identifier');
  return bytes.readBigUInt64LE(0).toString();
}

/*
 * Records, read the way PostgreSQL's xlogreader reads them (src/include/access/xlogrecord.h), to
 * find where the WAL of a segment that ends with a switch stops. After an XLOG_SWITCH record the
 * rest of the segment is unused: recovery goes on at the next segment, and a copy streamed by
 * pg_receivewal need not hold the same bytes there as the server's own file. The record header:
 *
 *   offset  size  field
 *        0     4  xl_tot_len  the whole record's length, header included
 *        4     4  xl_xid
 *        8     8  xl_prev     WAL position of the previous record
 *       16     1  xl_info     the high 4 bits say what the record is, within its resource manager
 *       17     1  xl_rmid     resource manager (0: XLOG)
 *       18     2  (padding)
 *       20     4  xl_crc      CRC-32C of the data after the header, then of the header up to xl_crc
 *
 * Records start MAXALIGNed (8); a record, its header too, runs on across pages, each of which
 * starts with a short page header saying how much of the record is left (xlp_rem_len).
 */

const RECORD_HEADER_SIZE = 24;
const RECORD_CRC_OFFSET = 20;
const MAXIMUM_ALIGNOF = 8;
const RM_XLOG_ID = 0;
const XLOG_SWITCH = 0x40;
/** XLogRecordMaxSize (1020 MB): anything longer is not a record. */
const MAX_RECORD_SIZE = 1020 * 1024 * 1024;

const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let bit = 0; bit < 8; bit++) c = (c & 1) === 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32cUpdate(crc: number, bytes: Uint8Array): number {
  let c = crc;
  const table = CRC32C_TABLE;
  // Indexed, not for…of: a whole segment is 16 MB, and the iterator is several times slower.
  for (let i = 0; i < bytes.length; i++) c = (table[(c ^ (bytes[i] ?? 0)) & 0xff] ?? 0) ^ (c >>> 8);
  return c;
}

/** CRC-32C (Castagnoli, PostgreSQL's pg_crc32c) of the parts in order. */
export function crc32c(...parts: readonly Uint8Array[]): number {
  let crc = 0xffff_ffff;
  for (const part of parts) crc = crc32cUpdate(crc, part);
  return (crc ^ 0xffff_ffff) >>> 0;
}

function maxAlign(offset: number): number {
  return Math.ceil(offset / MAXIMUM_ALIGNOF) * MAXIMUM_ALIGNOF;
}

/** A page's xlp_info and xlp_rem_len, once its header has been checked. */
interface PageFacts {
  readonly info: number;
  readonly remainingLength: number;
}

/**
 * Walks a segment's records from its first page. Any inconsistency (a page header of another
 * position, as in a recycled segment's old pages; a record whose CRC or back link is wrong) ends
 * the walk without a result: an unreadable segment is never taken for one that ends with a switch.
 */
class SegmentWalk {
  private readonly pageSize: number;

  constructor(private readonly bytes: Buffer, private readonly first: LongPageHeader) {
    this.pageSize = first.blockSize;
  }

  /** The page header at `pageStart`, checked as PostgreSQL checks it; undefined when it is not this segment's page. */
  private page(pageStart: number): PageFacts | undefined {
    const { bytes, first } = this;
    if (pageStart === 0) return { info: first.info, remainingLength: bytes.readUInt32LE(16) };
    if (pageStart + SHORT_PAGE_HEADER_SIZE > bytes.length) return undefined;
    const info = bytes.readUInt16LE(pageStart + 2);
    if (bytes.readUInt16LE(pageStart) !== first.magic || (info & XLP_LONG_HEADER) !== 0 || (info & ~XLP_ALL_FLAGS) !== 0) return undefined;
    if (bytes.readBigUInt64LE(pageStart + 8) !== first.pageAddress + BigInt(pageStart)) return undefined;
    // Timelines only grow along the WAL.
    if (bytes.readUInt32LE(pageStart + 4) < first.timeline) return undefined;
    return { info, remainingLength: bytes.readUInt32LE(pageStart + 16) };
  }

  /**
   * The `length` bytes of one record (or of the rest of one) from `offset` on, across pages; every
   * page crossed must say it continues a record with exactly the bytes still missing. Undefined
   * when the record runs past the segment's end or a page disagrees.
   */
  private read(offset: number, length: number): { data: Buffer; end: number } | undefined {
    const parts: Buffer[] = [];
    let at = offset;
    let missing = length;
    for (;;) {
      const pageEnd = (Math.floor(at / this.pageSize) + 1) * this.pageSize;
      const here = Math.min(missing, pageEnd - at);
      if (at + here > this.bytes.length) return undefined;
      parts.push(this.bytes.subarray(at, at + here));
      at += here;
      missing -= here;
      if (missing === 0) return { data: Buffer.concat(parts), end: at };
      const next = this.page(pageEnd);
      if (next === undefined || (next.info & XLP_FIRST_IS_CONTRECORD) === 0 || next.remainingLength !== missing) return undefined;
      at = pageEnd + SHORT_PAGE_HEADER_SIZE;
    }
  }

  /** The end offset of the segment's XLOG_SWITCH record, or undefined. */
  switchEnd(): number | undefined {
    const firstPage = this.page(0);
    if (firstPage === undefined) return undefined;
    let offset = LONG_PAGE_HEADER_SIZE;
    // The segment may begin with the rest of a record from the previous one: skip it.
    if ((firstPage.info & XLP_FIRST_IS_CONTRECORD) !== 0 && firstPage.remainingLength > 0) {
      const rest = this.read(offset, firstPage.remainingLength);
      if (rest === undefined) return undefined;
      offset = rest.end;
    }
    let previous: bigint | undefined;
    for (;;) {
      offset = maxAlign(offset);
      if (offset % this.pageSize === 0) {
        // A record that ended with its page: the next one starts after the next page's header.
        const page = this.page(offset);
        if (page === undefined || (page.info & XLP_FIRST_IS_CONTRECORD) !== 0) return undefined;
        offset += SHORT_PAGE_HEADER_SIZE;
      }
      // Aligned to 8 on a page with room left, so xl_tot_len lies on this page.
      if (offset + 4 > this.bytes.length) return undefined;
      const totalLength = this.bytes.readUInt32LE(offset);
      // Zeros: the end of the WAL written so far.
      if (totalLength < RECORD_HEADER_SIZE || totalLength > MAX_RECORD_SIZE) return undefined;
      const record = this.read(offset, totalLength);
      if (record === undefined) return undefined;
      const { data } = record;
      const crc = crc32c(data.subarray(RECORD_HEADER_SIZE), data.subarray(0, RECORD_CRC_OFFSET));
      if (crc !== data.readUInt32LE(RECORD_CRC_OFFSET)) return undefined;
      // Each record names the one before it; the first one's predecessor lies in an earlier segment.
      if (previous !== undefined && data.readBigUInt64LE(8) !== previous) return undefined;
      if (data.readUInt8(17) === RM_XLOG_ID && (data.readUInt8(16) & 0xf0) === XLOG_SWITCH) return record.end;
      previous = this.first.pageAddress + BigInt(offset);
      offset = record.end;
    }
  }
}

/**
 * The offset where the XLOG_SWITCH record of a whole segment ends, when the segment has one (it
 * was switched by pg_switch_wal(), archive_timeout or the end of a backup): everything from there
 * to the end of the segment is unused. Undefined for a segment without one (a full segment, the
 * one being written) and for anything that cannot be read as valid WAL up to such a record.
 */
export function switchRecordEnd(bytes: Buffer): number | undefined {
  let header: LongPageHeader;
  try {
    header = readLongPageHeader(bytes);
  } catch (error) {
    if (error instanceof WalFormatError) return undefined;
    throw error;
  }
  if (bytes.length !== header.segmentSize) return undefined;
  return new SegmentWalk(bytes, header).switchEnd();
}

/**
 * Whether two copies of one segment hold the same WAL and differ only after its switch record:
 * the offset where the switch record ends when both have one there and every byte before it is
 * the same, else undefined.
 */
export function sameWalUpToSwitch(a: Buffer, b: Buffer): number | undefined {
  if (a.length !== b.length) return undefined;
  const end = switchRecordEnd(a);
  if (end === undefined || switchRecordEnd(b) !== end) return undefined;
  return a.subarray(0, end).equals(b.subarray(0, end)) ? end : undefined;
}
