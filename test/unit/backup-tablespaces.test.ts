// The pure parts of tablespace backups (src/backup/tablespaces.ts): tablespace_map as PostgreSQL
// writes it (backslash-escaped paths), its rewrite for mapped tablespaces, and --tablespace-map.
import { describe, expect, it } from 'vitest';
import { formatTablespaceMap, parseTablespaceMap, parseTablespaceMapping, rewriteTablespaceMap } from '../../src/backup/tablespaces.js';

describe('tablespace_map', () => {
  it('reads and writes paths with spaces, backslashes and newlines as PostgreSQL escapes them', () => {
    const text = '16384 /srv/ts one\n16390 /srv/odd\\\\name\\\nline\n';
    const lines = parseTablespaceMap(text);
    expect(lines).toEqual([{ oid: 16384, path: '/srv/ts one' }, { oid: 16390, path: '/srv/odd\\name\nline' }]);
    expect(formatTablespaceMap(lines)).toBe(text);
  });

  it('rewrites the mapped tablespaces only, and refuses an oid the file lacks', () => {
    const text = '16384 /srv/a\n16390 /srv/b\n';
    expect(rewriteTablespaceMap(text, new Map([[16390, '/restore/b']]))).toBe('16384 /srv/a\n16390 /restore/b\n');
    expect(() => rewriteTablespaceMap(text, new Map([[1, '/x']]))).toThrow('no line for tablespace 1');
  });
});

describe('--tablespace-map', () => {
  it('reads OLDDIR=NEWDIR, with \\= inside a name', () => {
    expect(parseTablespaceMapping('/srv/ts1=/restore/ts1')).toEqual({ from: '/srv/ts1', to: '/restore/ts1' });
    expect(parseTablespaceMapping('/srv/a\\=b=/restore/c')).toEqual({ from: '/srv/a=b', to: '/restore/c' });
  });

  it('refuses relative paths, a missing or a second "="', () => {
    expect(() => parseTablespaceMapping('srv/ts1=/restore')).toThrow('absolute');
    expect(() => parseTablespaceMapping('/srv/ts1')).toThrow('no "="');
    expect(() => parseTablespaceMapping('/a=/b=/c')).toThrow('more than one');
  });
});
