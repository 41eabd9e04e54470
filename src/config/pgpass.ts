/**
 * The password file, read as libpq reads it: PGPASSFILE or ~/.pgpass, lines of
 * host:port:database:user:password with `*` wildcards and `\:` / `\\` escapes, the first match wins,
 * and a file readable by group or others is ignored (libpq refuses it too).
 */
import { readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { ConnectionSpec } from './types.js';

/** Splits one line into its fields, honouring backslash escapes. */
function fields(line: string): string[] {
  const out: string[] = [];
  let current = '';
  for (let i = 0; i < line.length; i++) {
    const char = line[i];
    if (char === '\\' && i + 1 < line.length) {
      current += line[i + 1] ?? '';
      i += 1;
    } else if (char === ':' && out.length < 4) {
      out.push(current);
      current = '';
    } else {
      current += char ?? '';
    }
  }
  out.push(current);
  return out;
}

/** The password for this connection from the password file, or undefined. */
export function pgpassPassword(spec: ConnectionSpec, env: Readonly<Record<string, string | undefined>> = process.env): string | undefined {
  const file = env['PGPASSFILE'] ?? join(homedir(), '.pgpass');
  let text: string;
  try {
    if ((statSync(file).mode & 0o077) !== 0) return undefined;
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  // libpq matches a Unix-socket connection against "localhost".
  const host = spec.host.startsWith('/') ? 'localhost' : spec.host;
  const wanted = [host, String(spec.port), spec.database, spec.user];
  for (const line of text.split(/\r?\n/)) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const parts = fields(line);
    if (parts.length < 5) continue;
    if (wanted.every((value, index) => parts[index] === '*' || parts[index] === value)) return parts[4];
  }
  return undefined;
}
