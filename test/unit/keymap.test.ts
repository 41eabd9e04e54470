import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { commandFor, commands, effectiveCommands, scopesFor } from '../../src/keymap.js';
import { keybindingsMarkdown } from '../../src/keymap-doc.js';

describe('keymap', () => {
  it('gives every command a description, at least one key and exactly one scope', () => {
    for (const command of commands) {
      expect(command.description.length, command.id).toBeGreaterThan(5);
      expect(command.keys.length, command.id).toBeGreaterThan(0);
      expect(typeof command.scope, command.id).toBe('string');
    }
    expect(new Set(commands.map((c) => c.id)).size).toBe(commands.length);
  });

  it('binds no key twice in one scope', () => {
    const seen = new Map<string, string>();
    for (const command of commands) {
      for (const key of command.keys) {
        const slot = `${command.scope}:${key}`;
        expect(seen.get(slot), `${slot} is bound to ${seen.get(slot) ?? ''} and ${command.id}`).toBeUndefined();
        seen.set(slot, command.id);
      }
    }
  });

  it('lets dialogs shadow the views', () => {
    expect(commandFor('q', scopesFor('activity', true), commands)).toBeUndefined();
    expect(commandFor('escape', scopesFor('activity', true), commands)?.id).toBe('dialog.cancel');
    expect(commandFor('enter', scopesFor('activity', false), commands)?.id).toBe('detail');
    expect(commandFor('x', scopesFor('locks', false), commands)?.id).toBe('session.cancel');
    expect(commandFor('x', scopesFor('overview', false), commands)).toBeUndefined();
  });

  it('removes every dangerous command in read-only mode and applies remapped keys', () => {
    const readOnly = effectiveCommands({ readOnly: true });
    expect(readOnly.some((c) => c.dangerous)).toBe(false);
    expect(commandFor('K', scopesFor('activity', false), readOnly)).toBeUndefined();
    const remapped = effectiveCommands({ readOnly: false, remap: { quit: ['Q'] } });
    expect(commandFor('Q', ['global'], remapped)?.id).toBe('quit');
    expect(commandFor('q', ['global'], remapped)).toBeUndefined();
  });

  it('docs/keybindings.md is generated from the keymap (run npm run docs when this fails)', () => {
    expect(readFileSync('docs/keybindings.md', 'utf8')).toBe(keybindingsMarkdown());
  });
});
