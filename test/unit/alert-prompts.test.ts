import { describe, expect, it } from 'vitest';
import { cadenceFromEnv, checkCadenceEnv, consoleAuthor } from '../../src/app/alert-monitor.js';
import { acknowledgeCommand, durationError, nextPreset, parseDuration, silenceCommand, type AlertTarget } from '../../src/app/alert-prompts.js';
import { reduce } from '../../src/app/reducer.js';
import { initialState, type UiState } from '../../src/app/state.js';
import { commandFor, effectiveCommands, scopesFor } from '../../src/keymap.js';
import { isUserError } from '../../src/errors.js';

const target: AlertTarget = { key: '["prod","db1","idle-in-transaction","pid 42"]', cluster: 'prod', node: 'db1', checkId: 'idle-in-transaction', subject: 'pid 42' };

function silencing(input = '1h'): UiState {
  return { ...initialState('alerts'), modal: { kind: 'silence', target, step: 'duration', input, duration: '', durationMs: null, error: null } };
}

describe('silence durations', () => {
  it('parses durations with units, combined or with decimals', () => {
    expect(parseDuration('15m')).toBe(15 * 60_000);
    expect(parseDuration(' 2h30m ')).toBe(150 * 60_000);
    expect(parseDuration('1.5h')).toBe(90 * 60_000);
    expect(parseDuration('1d')).toBe(86_400_000);
    expect(parseDuration('1w')).toBe(7 * 86_400_000);
    expect(parseDuration('90S')).toBe(90_000);
    for (const text of ['', '15', 'soon', 'h', '1h-5m', '0m']) expect(parseDuration(text), text).toBeNull();
  });

  it('refuses what is not a duration, too short or too long, saying what to type', () => {
    expect(durationError('4h')).toBeNull();
    expect(durationError('soon')).toBe('"soon" is not a duration: type e.g. 15m, 1h, 4h, 1d or 2h30m');
    expect(durationError('30s')).toMatch(/less than a minute.*at least 1m/);
    expect(durationError('31d')).toMatch(/longer than 30 days.*at most 30d/);
  });

  it('cycles through the offered durations', () => {
    expect(nextPreset('1h', 1)).toBe('4h');
    expect(nextPreset('1d', 1)).toBe('15m');
    expect(nextPreset('15m', -1)).toBe('1d');
    expect(nextPreset('45m', 1)).toBe('15m');
    expect(nextPreset('45m', -1)).toBe('1d');
  });

  it('makes the commands: a silence of the alert on its node, an acknowledgement by key', () => {
    const now = new Date('2024-05-01T12:00:00Z');
    expect(silenceCommand(target, { id: 's1', durationMs: 3_600_000, comment: '  ', author: 'ann (console)', now })).toEqual({
      kind: 'silence',
      silence: {
        id: 's1', cluster: 'prod', node: 'db1', checkId: 'idle-in-transaction', subject: 'pid 42',
        startsAt: now.getTime(), endsAt: now.getTime() + 3_600_000, author: 'ann (console)', comment: 'silenced from the console',
      },
    });
    expect(acknowledgeCommand(target, 'ann (console)', ' on it ')).toEqual({ kind: 'acknowledge', key: target.key, by: 'ann (console)', comment: 'on it' });
  });
});

describe('reducer: the alert prompts', () => {
  it('types into and erases from the acknowledge and silence prompts', () => {
    let state: UiState = { ...initialState('alerts'), modal: { kind: 'acknowledge', target, input: '' } };
    state = reduce(reduce(reduce(state, { type: 'prompt.input', text: 'o' }), { type: 'prompt.input', text: 'n!' }), { type: 'prompt.backspace' });
    expect(state.modal).toEqual({ kind: 'acknowledge', target, input: 'on' });
    state = reduce(silencing('1h'), { type: 'prompt.backspace' });
    expect(state.modal).toMatchObject({ input: '1' });
  });

  it('offers the next duration on up and down, only while asking how long', () => {
    expect(reduce(silencing('1h'), { type: 'silence.preset', step: 1 }).modal).toMatchObject({ input: '4h', error: null });
    expect(reduce(silencing('1h'), { type: 'silence.preset', step: -1 }).modal).toMatchObject({ input: '15m' });
    const commenting = reduce(silencing('1h'), { type: 'silence.duration' });
    expect(reduce(commenting, { type: 'silence.preset', step: 1 })).toBe(commenting);
    const other = initialState('alerts');
    expect(reduce(other, { type: 'silence.preset', step: 1 })).toBe(other);
  });

  it('goes on to the comment with an accepted duration, or stays with the reason', () => {
    expect(reduce(silencing(' 2h30m '), { type: 'silence.duration' }).modal).toEqual({
      kind: 'silence', target, step: 'comment', input: '', duration: '2h30m', durationMs: 150 * 60_000, error: null,
    });
    const refused = reduce(silencing('later'), { type: 'silence.duration' });
    expect(refused.modal).toMatchObject({ step: 'duration', input: 'later', error: '"later" is not a duration: type e.g. 15m, 1h, 4h, 1d or 2h30m' });
    // Typing clears the reason.
    expect(reduce(refused, { type: 'prompt.input', text: 'x' }).modal).toMatchObject({ error: null, input: 'laterx' });
  });

  it('opens the detail pane of an Alerts row', () => {
    expect(reduce(initialState('alerts'), { type: 'detail.open', target: { kind: 'alert', rowKey: 'silence:s1' } }).modal).toEqual({ kind: 'detail', target: { kind: 'alert', rowKey: 'silence:s1' }, scroll: 0 });
  });
});

describe('keymap: the Alerts view commands', () => {
  it('binds a, A, m and u on the Alerts view only, above the list and global keys', () => {
    const scopes = scopesFor('alerts', false);
    expect(scopes).toEqual(['alerts', 'list', 'global']);
    expect(commandFor('a', scopes, effectiveCommands({ readOnly: false }))?.id).toBe('alert.acknowledge');
    expect(commandFor('A', scopes, effectiveCommands({ readOnly: false }))?.id).toBe('alert.unacknowledge');
    expect(commandFor('m', scopes, effectiveCommands({ readOnly: false }))?.id).toBe('alert.silence');
    expect(commandFor('u', scopes, effectiveCommands({ readOnly: false }))?.id).toBe('alert.unsilence');
    expect(commandFor('enter', scopes, effectiveCommands({ readOnly: false }))?.id).toBe('detail');
    // Elsewhere the same keys mean something else, or nothing.
    expect(commandFor('a', scopesFor('tables', false), effectiveCommands({ readOnly: false }))?.id).toBe('table.analyze');
    expect(commandFor('m', scopesFor('activity', false), effectiveCommands({ readOnly: false }))).toBeUndefined();
  });

  it('keeps them in read-only mode: they change the alert state, not the database', () => {
    const readOnly = effectiveCommands({ readOnly: true });
    for (const key of ['a', 'A', 'm', 'u']) expect(commandFor(key, scopesFor('alerts', false), readOnly)?.id, key).toMatch(/^alert\./);
    expect(commandFor('a', scopesFor('tables', false), readOnly)).toBeUndefined();
  });
});

describe('the console alert engine settings', () => {
  it(`reads ${checkCadenceEnv} as every cadence, refusing nonsense`, () => {
    expect(cadenceFromEnv({})).toBeUndefined();
    expect(cadenceFromEnv({ [checkCadenceEnv]: '500' })).toEqual({ fast: 500, normal: 500, slow: 500 });
    for (const bad of ['fast', '50', '1.5']) {
      let error: unknown;
      try {
        cadenceFromEnv({ [checkCadenceEnv]: bad });
      } catch (caught) {
        error = caught;
      }
      expect(isUserError(error), bad).toBe(true);
    }
  });

  it('signs commands with the OS user, marked as the console', () => {
    expect(consoleAuthor({ USER: 'ann' })).toBe('ann (console)');
    expect(consoleAuthor({ LOGNAME: 'bob' })).toBe('bob (console)');
  });
});
