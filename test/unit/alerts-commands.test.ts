import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { applyCommand, parseCommand, type AlertCommand } from '../../src/alerts/commands.js';
import { defaultEngineConfig } from '../../src/alerts/engine.js';
import { alertKey } from '../../src/alerts/state.js';
import type { Silence } from '../../src/alerts/types.js';
import { alertId, alertLabel, commandAuthor, findAlert, listState, parseDuration, renderList } from '../../src/cli/alerts-manage.js';
import { commandPath, queueCommand, takeCommands } from '../../src/watch/commands.js';
import { Clock, evaluation, finding, hour, minute, team } from '../support/alerts-clock.js';

const start = Date.parse('2026-03-02T10:00:00Z');
const key = alertKey('prod', 'db1', 'idle_in_transaction', 'pid 42');
const dirs: string[] = [];

afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

function firing(): Clock {
  const clock = new Clock(defaultEngineConfig([team({ escalation: { toTeam: 'oncall', afterMs: 10 * minute } }), team({ id: 'oncall', members: ['oncall@example.com'], checks: ['none'] })]), start);
  clock.step(0, [evaluation([finding('critical')])]);
  clock.step(minute, [evaluation([finding('critical')])]);
  return clock;
}

const silenceAll: Silence = { id: 's-1', checkId: 'idle_*', startsAt: start, endsAt: start + hour, author: 'alice', comment: 'maintenance' };

describe('applyCommand', () => {
  it('silences, unsilences, acknowledges and unacknowledges', () => {
    const clock = firing();
    const now = new Date(start + 2 * minute);
    const silenced = applyCommand(clock.state, { kind: 'silence', silence: silenceAll }, now);
    expect(silenced.silences).toEqual([silenceAll]);
    expect(applyCommand(silenced, { kind: 'unsilence', id: 's-1' }, now).silences).toEqual([]);
    const acked = applyCommand(clock.state, { kind: 'acknowledge', key, by: 'bob', comment: 'looking' }, now);
    expect(acked.alerts[key]?.acknowledged).toEqual({ by: 'bob', comment: 'looking', at: now.getTime() });
    expect(applyCommand(acked, { kind: 'unacknowledge', key }, now).alerts[key]?.acknowledged).toBeNull();
  });

  it('is idempotent: applied again after a crash, the state is the same (the first ack time is kept)', () => {
    const clock = firing();
    const commands: AlertCommand[] = [
      { kind: 'silence', silence: silenceAll },
      { kind: 'acknowledge', key, by: 'bob', comment: 'looking' },
    ];
    const once = commands.reduce((state, command) => applyCommand(state, command, new Date(start + 2 * minute)), clock.state);
    const twice = commands.reduce((state, command) => applyCommand(state, command, new Date(start + 3 * minute)), once);
    expect(twice).toEqual(once);
    // Another author's acknowledgement replaces it.
    expect(applyCommand(once, { kind: 'acknowledge', key, by: 'carol', comment: '' }, new Date(start + 4 * minute)).alerts[key]?.acknowledged?.by).toBe('carol');
  });

  it('an acknowledged critical is not escalated; an unacknowledged one is', () => {
    const acked = firing();
    acked.state = applyCommand(acked.state, { kind: 'acknowledge', key, by: 'bob', comment: '' }, new Date(start + 2 * minute));
    const plain = firing();
    const to = (clock: Clock): string[] => clock.ticks(2 * minute, 30 * minute, minute).map((notice) => notice.team);
    expect(to(plain)).toContain('oncall');
    expect(to(acked)).not.toContain('oncall');
  });

  it('a silence of an unknown alert or an expired silence changes nothing', () => {
    const clock = firing();
    const now = new Date(start + 2 * minute);
    expect(applyCommand(clock.state, { kind: 'acknowledge', key: 'nope', by: 'bob', comment: '' }, now)).toEqual(clock.state);
    expect(applyCommand(clock.state, { kind: 'silence', silence: { ...silenceAll, endsAt: start } }, now)).toEqual(clock.state);
  });
});

describe('parseCommand', () => {
  it('reads back every kind and refuses malformed ones with the reason', () => {
    const all: AlertCommand[] = [
      { kind: 'silence', silence: silenceAll },
      { kind: 'unsilence', id: 's-1' },
      { kind: 'acknowledge', key, by: 'bob', comment: '' },
      { kind: 'unacknowledge', key },
    ];
    for (const command of all) expect(parseCommand(JSON.parse(JSON.stringify(command)))).toEqual(command);
    expect(() => parseCommand({ kind: 'mute' })).toThrow('unknown command kind "mute": expected one of silence, unsilence, acknowledge, unacknowledge');
    expect(() => parseCommand({ kind: 'acknowledge', key })).toThrow('"by" must be a string');
    expect(() => parseCommand({ kind: 'silence', silence: { id: 'x', startsAt: 1, endsAt: 2, author: 'a', comment: '' } })).toThrow('at least one matcher');
    expect(() => parseCommand([])).toThrow('a command must be a JSON object');
  });
});

describe('command spool', () => {
  it('queues atomically, takes in queue order, moves a malformed file aside, and removes only what was taken', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pgwarden-spool-'));
    dirs.push(dir);
    expect((await takeCommands(dir)).commands).toEqual([]);
    const first = await queueCommand(dir, { kind: 'unsilence', id: 'a' });
    const second = await queueCommand(dir, { kind: 'unsilence', id: 'b' });
    await writeFile(join(dir, 'commands', '0-broken.json'), '{"kind":');
    const rejected: string[] = [];
    const taken = await takeCommands(dir, (file, reason) => rejected.push(`${file}: ${reason}`));
    expect(taken.commands.map((item) => item.id)).toEqual([first, second]);
    expect(taken.commands.map((item) => item.command)).toEqual([{ kind: 'unsilence', id: 'a' }, { kind: 'unsilence', id: 'b' }]);
    expect(rejected).toHaveLength(1);
    expect(rejected[0]).toContain('0-broken.json');
    expect(await readdir(join(dir, 'commands', 'rejected'))).toEqual(['0-broken.json']);
    // A command queued after the take stays for the next one.
    const third = await queueCommand(dir, { kind: 'unsilence', id: 'c' });
    await taken.remove();
    expect((await takeCommands(dir)).commands.map((item) => item.id)).toEqual([third]);
    expect(JSON.parse(await readFile(commandPath(dir, third), 'utf8'))).toEqual({ kind: 'unsilence', id: 'c' });
    expect((await readdir(join(dir, 'commands'))).filter((name) => name.endsWith('.tmp'))).toEqual([]);
  });
});

describe('alerts CLI helpers', () => {
  it('parses durations', () => {
    expect(parseDuration('30m')).toBe(30 * minute);
    expect(parseDuration('2h')).toBe(2 * hour);
    expect(parseDuration('1d')).toBe(24 * hour);
    expect(parseDuration('1h30m')).toBe(90 * minute);
    for (const bad of ['', '2', 'h', '2 hours', '0m', '-1h']) expect(parseDuration(bad), bad).toBeUndefined();
  });

  it('finds an alert by id, name or prefix; a shared prefix is ambiguous', () => {
    const clock = firing();
    clock.step(2 * minute, [evaluation([finding('critical'), finding('warning', 'pid 43')])]);
    clock.step(3 * minute, [evaluation([finding('critical'), finding('warning', 'pid 43')])]);
    const alerts = Object.values(clock.state.alerts);
    const first = clock.state.alerts[key]!;
    expect(findAlert(alerts, alertId(key))).toEqual({ kind: 'found', alert: first });
    expect(findAlert(alerts, alertId(key).slice(0, 6))).toEqual({ kind: 'found', alert: first });
    expect(findAlert(alerts, 'prod/db1/idle_in_transaction/pid 42')).toEqual({ kind: 'found', alert: first });
    expect(alertLabel(first)).toBe('prod/db1/idle_in_transaction/pid 42');
    const ambiguous = findAlert(alerts, 'prod/db1/idle');
    expect(ambiguous.kind).toBe('ambiguous');
    expect(ambiguous.kind === 'ambiguous' ? ambiguous.candidates.length : 0).toBe(2);
    expect(findAlert(alerts, 'staging').kind).toBe('none');
  });

  it('takes the author from PGWARDEN_USER, then SUDO_USER, then the OS user', () => {
    expect(commandAuthor({ PGWARDEN_USER: 'alice', SUDO_USER: 'bob' })).toBe('alice');
    expect(commandAuthor({ SUDO_USER: 'bob' })).toBe('bob');
    expect(commandAuthor({})).not.toBe('');
  });

  it('lists firing, acknowledged and silenced alerts with the silence that covers them', () => {
    const clock = firing();
    const now = new Date(start + 2 * minute);
    let state = applyCommand(clock.state, { kind: 'silence', silence: silenceAll }, now);
    state = applyCommand(state, { kind: 'acknowledge', key, by: 'bob', comment: 'on it' }, now);
    const listed = listState(state, now);
    expect(listed.alerts).toEqual([expect.objectContaining({ id: alertId(key), status: 'firing', severity: 'critical', silencedBy: 's-1', acknowledged: expect.objectContaining({ by: 'bob' }) })]);
    const text = renderList(listed, now, 'header');
    expect(text).toContain('acknowledged by bob: on it; silenced by s-1');
    expect(text).toMatch(/s-1\s+check=idle_\*\s+2026-03-02T11:00:00.000Z \(in 58m/);
  });
});
