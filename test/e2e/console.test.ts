// The console end to end: the built command line in a real pseudo-terminal (tmux), against a real
// PostgreSQL cluster of its own (pgstattuple installed, and a server this file may stop).
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createPrimary, destroyAll, waitFor, type TestCluster } from '../support/cluster.js';
import { backendPid, closeAll, openSession } from '../support/sessions.js';
import { killAll, overwideLines, start, type Terminal, type TerminalOptions } from '../support/terminal.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const chainApp = 'e2e-chain';
const bloatedTable = 'Bloated Orders';

let cluster: TestCluster;
let dsn: string;
let admin: pg.Client;
let scratch: string;

/** The console's command line, audit log in the scratch directory (never the user's). */
function pgwarden(args: string): string {
  return `node bin/pgwarden.js --audit-log ${join(scratch, 'audit.log')} ${args}`;
}

function open(args: string, options: TerminalOptions = {}): Promise<Terminal> {
  return start(pgwarden(args), { columns: 80, rows: 24, cwd: root, ...options });
}

/** A config file with fast cadences, so the screens show changes within a second. */
async function fastConfig(): Promise<string> {
  const path = join(scratch, 'config.json');
  const config = {
    refresh_ms: 500,
    clusters: [{ name: 'e2e', nodes: [{ name: 'primary', dsn }] }],
    // The tables probe runs every 5 minutes by default: the view must follow the VACUUM here.
    probes: { tables: { cadence_ms: 1000 } },
  };
  await writeFile(path, JSON.stringify(config));
  return path;
}

/**
 * Opens the palette, types a view name once the palette shows, and goes there (its tab, e.g.
 * "[4 Locks]", is then the current one). Waiting for the palette first: keys that arrive with
 * the ':' in one read are dropped once the palette opens (App's typed-ahead queue).
 */
async function paletteTo(terminal: Terminal, view: string, tab: string): Promise<void> {
  await terminal.press(':');
  await terminal.waitForText(/^:_/m);
  await terminal.type(view);
  await terminal.waitForText(`:${view}_`);
  await terminal.press('Enter');
  await terminal.waitForText(tab);
}

interface Chain {
  readonly a: number;
  readonly b: number;
  readonly c: number;
  readonly d: number;
  /** Settles with 'done' or the error message of each waiter's statement. */
  readonly waiters: Promise<readonly string[]>;
}

function pending(client: pg.Client, sql: string): Promise<string> {
  return client.query(sql).then(
    () => 'done',
    (error: unknown) => (error instanceof Error ? error.message : String(error)),
  );
}

/**
 * A real lock chain: A holds rows 1 and 2 idle in transaction; B waits on row 1; C waits behind B
 * (for the tuple lock B holds while it waits); D waits on row 2. The tree: A, under it B (with C
 * under B) and D.
 */
async function lockChain(): Promise<Chain> {
  await admin.query('update chain set v = 0');
  const [a, b, c, d] = await Promise.all(['A', 'B', 'C', 'D'].map((name) => openSession(dsn, `${chainApp}-${name}`)));
  const [pa, pb, pc, pd] = await Promise.all([a!, b!, c!, d!].map((client) => backendPid(client)));
  await a!.query('begin; select * from chain where id in (1, 2) for update');
  const blockedBy = async (pid: number, blocker: number): Promise<boolean> => {
    const rows = await admin.query<{ blockers: number[] }>('select pg_blocking_pids($1) as blockers', [pid]);
    return rows.rows[0]?.blockers.includes(blocker) ?? false;
  };
  const waitB = pending(b!, 'update chain set v = v + 10 where id = 1');
  await waitFor('B to wait for A', () => blockedBy(pb!, pa!), { intervalMs: 20 });
  const waitC = pending(c!, 'update chain set v = v + 100 where id = 1');
  await waitFor('C to wait behind B', () => blockedBy(pc!, pb!), { intervalMs: 20 });
  const waitD = pending(d!, 'update chain set v = v + 1000 where id = 2');
  await waitFor('D to wait for A', () => blockedBy(pd!, pa!), { intervalMs: 20 });
  return { a: pa!, b: pb!, c: pc!, d: pd!, waiters: Promise.all([waitB, waitC, waitD]) };
}

/** The screen line showing this pid in the tree column, and the column where the pid starts (its depth). */
function treeLine(screen: string, pid: number): { line: string; column: number; index: number } {
  const lines = screen.split('\n');
  const index = lines.findIndex((line) => new RegExp(`^.[^a-z0-9]*\\b${pid}\\b`).test(line));
  const line = lines[index];
  if (line === undefined) throw new Error(`pid ${pid} is not in the tree:\n${screen}`);
  return { line, column: line.indexOf(String(pid)), index };
}

async function alive(pid: number): Promise<boolean> {
  const rows = await admin.query('select 1 from pg_stat_activity where pid = $1', [pid]);
  return rows.rows.length > 0;
}

/** SGR colour parameters (foreground or background) anywhere in a capture with escapes. */
function colourCodes(ansi: string): readonly string[] {
  const found: string[] = [];
  // eslint-disable-next-line no-control-regex -- the escape character is what is looked for
  for (const match of ansi.matchAll(/\u001b\[([0-9;:]*)m/g)) {
    const params = (match[1] ?? '').split(/[;:]/).map(Number);
    for (const p of params) {
      if ((p >= 30 && p <= 38) || (p >= 40 && p <= 48) || (p >= 90 && p <= 97) || (p >= 100 && p <= 107)) found.push(match[0]);
    }
  }
  return found;
}

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'pgwarden-e2e-'));
  cluster = await createPrimary({ name: 'e2e-console' });
  dsn = cluster.dsn();
  admin = await openSession(dsn, 'e2e-admin');
  await admin.query('create extension pgstattuple');
  await admin.query('create table chain (id int primary key, v int not null); insert into chain values (1, 0), (2, 0)');
  await admin.query(`create table "${bloatedTable}" (id int primary key, payload text not null) with (autovacuum_enabled = false)`);
  await admin.query(`insert into "${bloatedTable}" select i, repeat('x', 100) from generate_series(1, 100000) i`);
  await admin.query(`delete from "${bloatedTable}" where id % 5 <> 0`);
  await admin.query(`analyze "${bloatedTable}"`);
  // The deletes reach pg_stat_user_tables when this session flushes its statistics: now.
  await admin.query('select pg_stat_force_next_flush()');
});

// Whatever a test left behind (a console, a lock chain) must not reach the next one.
afterEach(async () => {
  await killAll();
  // After the lost-connection test the admin session is gone with the server's restart.
  await admin.query('select pg_terminate_backend(pid) from pg_stat_activity where application_name like $1', [`${chainApp}-%`]).catch(() => undefined);
});

afterAll(async () => {
  await killAll();
  await closeAll();
  await destroyAll();
  if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
});

describe('the console in a real terminal', () => {
  it('shows a real lock chain under :locks and terminates the root blocker: the waiters proceed', async () => {
    const chain = await lockChain();
    const terminal = await open(`--dsn ${dsn}`);
    await terminal.waitForText(/^pgwarden/);
    await paletteTo(terminal, 'locks', '[4 Locks]');

    const screen = await terminal.waitForScreen('the whole chain', (text) => [chain.a, chain.b, chain.c, chain.d].every((pid) => text.includes(String(pid))));
    expect(screen).toContain('3 sessions wait on locks behind 1 root blocker');
    const a = treeLine(screen, chain.a);
    const b = treeLine(screen, chain.b);
    const c = treeLine(screen, chain.c);
    const d = treeLine(screen, chain.d);
    // A is the root and selected first; B and D one level under it, C under B.
    expect(a.line.startsWith(`>${chain.a} `)).toBe(true);
    expect(b.line).toMatch(new RegExp(`^ [├└]─ ${chain.b} `));
    expect(d.line).toMatch(new RegExp(`^ [├└]─ ${chain.d} `));
    expect(c.column).toBe(b.column + 3);
    expect(c.index).toBeGreaterThan(b.index);
    expect(b.index).toBeGreaterThan(a.index);
    // C sits in B's subtree: no line at B's depth or above comes between them.
    const between = screen.split('\n').slice(b.index + 1, c.index);
    expect(between.every((line) => !/^ [├└]─ \d/.test(line))).toBe(true);
    expect(a.line).toContain('blocks 3');

    // Cancel first: its plan is the exact SQL; declining does nothing.
    await terminal.press('x');
    await terminal.waitForText(`SELECT pg_cancel_backend(${chain.a})`);
    await terminal.press('n');
    await terminal.waitForText('nothing was done');
    expect(await alive(chain.a)).toBe(true);

    // A is idle in transaction: only terminating it releases its locks.
    await terminal.press('K');
    const plan = await terminal.waitForText('press y to run');
    expect(plan).toMatch(new RegExp(`^│ 1\\. SELECT pg_terminate_backend\\(${chain.a}\\) +│$`, 'm'));
    await terminal.press('y');
    const progress = await terminal.waitForText(/finished; esc to close|failed; esc to close/);
    expect(progress).toContain('finished; esc to close');
    expect(progress).toMatch(/^│ done {4}1\. Terminate pid/m);
    expect(progress).toMatch(/^│ done {4}2\. Wait until pid/m);

    // What happened in the database, not on the screen.
    expect(await chain.waiters).toEqual(['done', 'done', 'done']);
    const rows = await admin.query<{ id: number; v: number }>('select id, v from chain order by id');
    expect(rows.rows).toEqual([{ id: 1, v: 110 }, { id: 2, v: 1000 }]);
    expect(await alive(chain.a)).toBe(false);
    const audit = await readFile(join(scratch, 'audit.log'), 'utf8');
    expect(audit).toContain(`SELECT pg_terminate_backend(${chain.a})`);

    await terminal.press('Escape');
    await terminal.waitForText('no session waits on a lock');
  });

  it('vacuums a bloated table from Tables: the plan names it quoted, and its dead tuples go', async () => {
    const before = await admin.query<{ dead: string }>(`select n_dead_tup as dead from pg_stat_user_tables where relname = $1`, [bloatedTable]);
    expect(Number(before.rows[0]?.dead)).toBeGreaterThan(70_000);

    const terminal = await open(`--config ${await fastConfig()}`);
    await terminal.waitForText(/^pgwarden/);
    await terminal.press('5');
    await terminal.waitForText(`public.${bloatedTable}`);
    await terminal.press('/');
    await terminal.waitForText(/^\/_/m);
    await terminal.type(bloatedTable);
    await terminal.waitForText(`/${bloatedTable}_`);
    await terminal.press('Enter');
    // The other table (chain) goes: the filter is applied, and the table it kept is selected.
    const listed = await terminal.waitForScreen('the filtered list', (text) => !text.includes('public.chain') && text.includes(`>public.${bloatedTable}`));
    const row = listed.split('\n').find((line) => line.startsWith(`>public.${bloatedTable}`));
    // Selected, with its dead rows, and bloat confirmed by pgstattuple (size and percent).
    expect(row).toBeDefined();
    expect(row).toMatch(/80,000/);
    expect(row).toMatch(/\d+(\.\d+)? MB \d+%/);

    await terminal.press('v');
    const plan = await terminal.waitForText('press y to run');
    expect(plan).toContain(`VACUUM (ANALYZE) "public"."${bloatedTable}"`);
    await terminal.press('y');
    const progress = await terminal.waitForText(/finished; esc to close|failed; esc to close/, 30_000);
    expect(progress).toContain('finished; esc to close');

    const dead = await waitFor('n_dead_tup to drop', async () => {
      const rows = await admin.query<{ dead: string }>(`select n_dead_tup as dead from pg_stat_user_tables where relname = $1`, [bloatedTable]);
      const value = Number(rows.rows[0]?.dead);
      return value < 100 ? { value } : undefined;
    });
    expect(dead.value).toBeLessThan(100);
    // The view follows: the table's row shows no dead rows at the next tables refresh.
    await terminal.press('Escape');
    await terminal.waitForText(new RegExp(`^>public\\.${bloatedTable}.* 0 +0\\.0%`, 'm'));
  });

  it('redraws a clean frame after every resize: 80×24, 120×40, 60×20', async () => {
    const terminal = await open(`--dsn ${dsn}`);
    // The overview: every line of it is different, so a left-over line shows as a duplicate.
    await terminal.waitForText('role         primary');
    for (const [columns, rows] of [[80, 24], [120, 40], [60, 20]] as const) {
      if (columns !== 80) await terminal.resize(columns, rows);
      let problems: string[] = [];
      const check = async (): Promise<boolean> => {
        const lines = await terminal.joinedLines();
        problems = [];
        if (lines.length !== rows) problems.push(`${lines.length} rows captured`);
        const wide = overwideLines(lines, columns);
        if (wide.length > 0) problems.push(`lines wider than ${columns}: ${wide.join(' / ')}`);
        const headers = lines.filter((line) => line.startsWith('pgwarden'));
        if (headers.length !== 1 || !lines[0]?.startsWith('pgwarden')) problems.push(`${headers.length} header lines, first line "${lines[0] ?? ''}"`);
        // The header reaches the right edge (the clock): laid out for this width, not the old one.
        if (lines[0]?.trimEnd().length !== columns) problems.push(`header is ${lines[0]?.trimEnd().length ?? 0} wide`);
        const footers = lines.map((line, index) => ({ line, index })).filter(({ line }) => line.includes('q quit'));
        if (footers.length !== 1) problems.push(`${footers.length} footer lines`);
        const nonBlank = lines.map((line, index) => ({ line: line.trimEnd(), index })).filter(({ line }) => line !== '');
        const last = nonBlank[nonBlank.length - 1];
        if (last === undefined || last.index !== footers[0]?.index) problems.push('the footer is not the last line');
        if (last !== undefined && last.index > rows - 2) problems.push(`the frame reaches row ${last.index + 1} of ${rows}`);
        const seen = new Set<string>();
        for (const { line } of nonBlank) {
          if (seen.has(line)) problems.push(`duplicated line "${line}"`);
          seen.add(line);
        }
        return problems.length === 0;
      };
      try {
        await waitFor(`a clean frame at ${columns}×${rows}`, check, { timeoutMs: 5000, intervalMs: 25 });
      } catch (error) {
        throw new Error(`${String(error)}\n${problems.join('\n')}\n${(await terminal.joinedLines()).join('\n')}`, { cause: error });
      }
      expect(problems).toEqual([]);
    }
  });

  it('gives the terminal back on q and on SIGTERM: normal screen, scrollback, cursor, exit 0', async () => {
    const pidFile = join(scratch, 'console.pid');
    const terminal = await start('bash --norc --noprofile -i', { columns: 80, rows: 24, cwd: root, env: { PS1: '$ ' } });
    await terminal.waitForText(/^\$ ?$/m);
    // Forty lines of scrollback that the console must leave as they were.
    await terminal.type(`seq 1 40; echo BEFORE; ${pgwarden(`--dsn ${dsn}`)}; echo AFTER $?`);
    await terminal.press('Enter');
    await terminal.waitForText(/^pgwarden/);
    expect(await terminal.display('#{alternate_on}')).toBe('1');
    // A redraw (Ctrl-L, which also runs on every resize) must not touch the scrollback.
    await terminal.press('C-l');
    await terminal.waitForText(/^pgwarden/);
    await terminal.press('q');
    let screen = await terminal.waitForText(/^AFTER \d+$/m);
    expect(screen).toMatch(/^BEFORE$/m);
    expect(screen).toMatch(/^AFTER 0$/m);
    expect(screen).not.toMatch(/pgwarden │|q quit/);
    expect(await terminal.display('#{alternate_on}')).toBe('0');
    expect(await terminal.display('#{cursor_flag}')).toBe('1');
    const history = (await terminal.history()).split('\n');
    const numbers = history.filter((line) => /^\d+$/.test(line)).map(Number);
    expect(numbers).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));

    await terminal.type(`clear; sh -c 'echo $$ > ${pidFile}; exec ${pgwarden(`--dsn ${dsn}`)}'; echo AFTER $?`);
    await terminal.press('Enter');
    await terminal.waitForText(/^pgwarden/);
    const pid = Number((await readFile(pidFile, 'utf8')).trim());
    process.kill(pid, 'SIGTERM');
    screen = await terminal.waitForText(/^AFTER \d+$/m);
    expect(screen).toMatch(/^AFTER 0$/m);
    expect(screen).not.toMatch(/pgwarden │|q quit/);
    expect(await terminal.display('#{alternate_on}')).toBe('0');
    expect(await terminal.display('#{cursor_flag}')).toBe('1');
  });

  it('--read-only: K opens nothing and no dangerous hint is shown', async () => {
    const chain = await lockChain();
    const terminal = await open(`--read-only --dsn ${dsn}`);
    await terminal.waitForText(/^pgwarden/);
    await terminal.press('4');
    let screen = await terminal.waitForText(new RegExp(`^>${chain.a} `, 'm'));
    const footer = screen.split('\n').filter((line) => line.includes('? help'));
    expect(footer).toHaveLength(1);
    expect(footer[0]).not.toMatch(/terminate|cancel|vacuum|analyze/);
    expect(footer[0]).toContain('s sort');

    await terminal.press('K');
    await terminal.press('x');
    // Keys are taken in order: once j has moved the selection, K and x have been handled.
    await terminal.press('j');
    screen = await terminal.waitForText(new RegExp(`^>[├└]─ \\d+`, 'm'));
    expect(screen).not.toMatch(/pg_terminate_backend|pg_cancel_backend|press y|refused/);
    expect(await alive(chain.a)).toBe(true);

    await terminal.press('5');
    screen = await terminal.waitForText(`public.${bloatedTable}`);
    expect(screen.split('\n').find((line) => line.includes('? help'))).not.toMatch(/vacuum|analyze/);
  });

  it('--cluster and --node open the console on that node: header, data and connection agree', async () => {
    const path = join(scratch, 'two-clusters.json');
    await writeFile(path, JSON.stringify({
      clusters: [
        { name: 'first', nodes: [{ name: 'one', dsn: 'postgresql://postgres@127.0.0.1:5432/postgres' }] },
        { name: 'second', nodes: [{ name: 'other', dsn: 'postgresql://postgres@127.0.0.1:5432/postgres' }, { name: 'mine', dsn }] },
      ],
    }));
    const terminal = await open(`--config ${path} --cluster second --node mine`);
    const screen = await terminal.waitForText(/^pgwarden .*second \/ mine/m);
    expect(screen).not.toMatch(/first \/ one/);
  });

  it('NO_COLOR=1 and --ascii: ASCII tree branches, no colour, the selection still marked', async () => {
    const chain = await lockChain();
    const terminal = await open(`--ascii --dsn ${dsn}`, { env: { NO_COLOR: '1' } });
    await terminal.waitForText(/^pgwarden/);
    await terminal.press('4');
    const screen = await terminal.waitForScreen('the ASCII tree', (text) => text.includes(String(chain.c)) && text.includes(String(chain.d)));
    expect(treeLine(screen, chain.a).line.startsWith(`>${chain.a} `)).toBe(true);
    // B and D hang from A: one of them with "|-", the last with "`-"; C under B.
    expect(screen).toMatch(new RegExp(`^ \\|- (${chain.b}|${chain.d}) `, 'm'));
    expect(screen).toMatch(new RegExp(`^ \`- (${chain.b}|${chain.d}) `, 'm'));
    expect(screen).toMatch(new RegExp(`^ (\\| | ) \`- ${chain.c} `, 'm'));
    expect(screen).not.toMatch(/[─│├└…▼▲]/);
    expect(colourCodes(await terminal.ansiScreen())).toEqual([]);
  });

  // Last: it stops the cluster.
  it('shows a lost connection and recovers by itself when the server is back', async () => {
    const terminal = await open(`--config ${await fastConfig()}`);
    await terminal.waitForText(/^pgwarden/);
    await terminal.press('2');
    await terminal.waitForText(/^\d+ sessions \(/m);
    await cluster.stop('fast');
    const lost = await terminal.waitForScreen('the error state', (text) => /^activity failed: /m.test(text) && /^showing data from \d\d:\d\d:\d\d \(stale/m.test(text), 15_000);
    // The last good data stays on screen under the error.
    expect(lost).toMatch(/^\d+ sessions \(/m);

    await cluster.start();
    const back = await terminal.waitForScreen('recovery', (text) => !/failed|stale/.test(text) && /^\d+ sessions \(/m.test(text), 30_000);
    expect(back).toMatch(/refreshed \d+s ago/);
  });
});
