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

/** xlp_info flag: this page starts with the long header (the first page of a segment). */
export const XLP_LONG_HEADER = 0x0002;
const XLP_ALL_FLAGS = 0x0007;
/** Bytes of the long page header (MAXALIGN(sizeof(XLogLongPageHeaderData))). */
export const LONG_PAGE_HEADER_SIZE = 40;

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
