import { describe, expect, it } from 'vitest';
import { reduce } from '../../src/app/reducer.js';
import { initialState, matchesFilter, parseFilter } from '../../src/app/state.js';

describe('UI reducer', () => {
  it('cycles views with Tab and wraps, skipping help', () => {
    let state = initialState('backups');
    state = reduce(state, { type: 'view.cycle', step: 1 });
    expect(state.view).toBe('overview');
    state = reduce(state, { type: 'view.cycle', step: -1 });
    expect(state.view).toBe('backups');
  });

  it('opens views through the palette by name and alias, and says why not otherwise', () => {
    let state = reduce(initialState(), { type: 'modal', modal: { kind: 'palette', input: '', error: null } });
    for (const char of 'bloat') state = reduce(state, { type: 'prompt.input', text: char });
    state = reduce(state, { type: 'palette.submit' });
    expect(state.view).toBe('tables');
    expect(state.modal.kind).toBe('none');
    state = reduce(state, { type: 'modal', modal: { kind: 'palette', input: ':lcks', error: null } });
    state = reduce(state, { type: 'palette.submit' });
    expect(state.modal).toEqual({ kind: 'palette', input: ':lcks', error: 'no view named "lcks"' });
    expect(state.view).toBe('tables');
    state = reduce(state, { type: 'modal', modal: { kind: 'palette', input: 'slow', error: null } });
    expect(reduce(state, { type: 'palette.submit' }).view).toBe('queries');
  });

  it('applies a filter to the current view only and resets its selection', () => {
    let state = initialState('activity');
    state = reduce(state, { type: 'cursor', to: 2, relative: false, keys: ['a', 'b', 'c'] });
    expect(state.views.activity.selectedKey).toBe('c');
    state = reduce(state, { type: 'modal', modal: { kind: 'filter', input: '!idle' } });
    state = reduce(state, { type: 'filter.submit' });
    expect(state.views.activity.filter).toMatchObject({ text: '!idle', negate: true });
    expect(state.views.activity.selectedKey).toBeNull();
    expect(state.views.locks.filter).toBeNull();
  });

  it('keeps the selection on the same row when rows move, and clamps at the ends', () => {
    let state = reduce(initialState('activity'), { type: 'cursor', to: 1, relative: false, keys: ['10', '20', '30'] });
    expect(state.views.activity.selectedKey).toBe('20');
    // A refresh reorders the rows: moving down goes from where "20" is now.
    state = reduce(state, { type: 'cursor', to: 1, relative: true, keys: ['20', '30', '10'] });
    expect(state.views.activity.selectedKey).toBe('30');
    state = reduce(state, { type: 'cursor', to: 99, relative: true, keys: ['20', '30', '10'] });
    expect(state.views.activity.selectedKey).toBe('10');
    state = reduce(state, { type: 'cursor', to: 'top', relative: false, keys: ['20', '30', '10'] });
    expect(state.views.activity.selectedKey).toBe('20');
  });

  it('cycles sort columns and reverses', () => {
    let state = initialState('activity');
    state = reduce(state, { type: 'sort.next', columns: ['pid', 'user', 'query'], current: { column: 'user', descending: true } });
    expect(state.views.activity.sort).toEqual({ column: 'query', descending: true });
    state = reduce(state, { type: 'sort.reverse', current: { column: 'query', descending: true } });
    expect(state.views.activity.sort).toEqual({ column: 'query', descending: false });
  });

  it('types and erases the confirmation token', () => {
    let state = reduce(initialState(), { type: 'modal', modal: { kind: 'confirm', planId: 'p1', typed: '' } });
    for (const char of '12') state = reduce(state, { type: 'prompt.input', text: char });
    state = reduce(state, { type: 'prompt.backspace' });
    expect(state.modal).toEqual({ kind: 'confirm', planId: 'p1', typed: '1' });
  });

  it('tags and untags sessions; switching node forgets selections, tags and filters', () => {
    let state = reduce(initialState('activity'), { type: 'tag.toggle', pid: 7 });
    state = reduce(state, { type: 'tag.toggle', pid: 8 });
    state = reduce(state, { type: 'tag.toggle', pid: 7 });
    expect(state.tagged).toEqual([8]);
    state = reduce(state, { type: 'modal', modal: { kind: 'filter', input: 'app' } });
    state = reduce(state, { type: 'filter.submit' });
    state = reduce(state, { type: 'target', cluster: 0, node: 1 });
    expect(state.tagged).toEqual([]);
    expect(state.views.activity.filter).toBeNull();
    expect(state.view).toBe('activity');
    expect(state.target).toEqual({ cluster: 0, node: 1 });
  });

  it('expires toasts', () => {
    let state = reduce(initialState(), { type: 'toast', toast: { level: 'info', text: 'a', until: 100 } });
    state = reduce(state, { type: 'toast', toast: { level: 'info', text: 'b', until: 300 } });
    state = reduce(state, { type: 'toasts.expire', now: 200 });
    expect(state.toasts.map((t) => t.text)).toEqual(['b']);
  });
});

describe('filters', () => {
  it('matches case-insensitively, negates, and ignores an invalid pattern', () => {
    expect(matchesFilter(parseFilter('IDLE'), ['idle in transaction'])).toBe(true);
    expect(matchesFilter(parseFilter('!idle'), ['idle'])).toBe(false);
    expect(matchesFilter(parseFilter('!idle'), ['active', null])).toBe(true);
    const invalid = parseFilter('(unclosed');
    expect(invalid?.pattern).toBeNull();
    expect(matchesFilter(invalid, ['anything'])).toBe(true);
    expect(parseFilter('  ')).toBeNull();
  });
});
