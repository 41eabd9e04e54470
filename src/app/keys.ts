/** Ink's keypress report → the key names of src/keymap.ts. */
import type { Key } from 'ink';

/** The keymap name of a keypress ("q", "K", "enter", "shift+tab", "ctrl+l"…), or undefined for none. */
export function keyName(input: string, key: Key): string | undefined {
  if (key.upArrow) return 'up';
  if (key.downArrow) return 'down';
  if (key.leftArrow) return 'left';
  if (key.rightArrow) return 'right';
  if (key.pageUp) return 'pageup';
  if (key.pageDown) return 'pagedown';
  if (key.home) return 'home';
  if (key.end) return 'end';
  if (key.return) return 'enter';
  if (key.escape) return 'escape';
  if (key.tab) return key.shift ? 'shift+tab' : 'tab';
  if (key.backspace || key.delete) return 'backspace';
  if (key.ctrl && input.length === 1) return `ctrl+${input.toLowerCase()}`;
  if (input === ' ') return 'space';
  if (input.length === 1) return input;
  return undefined;
}

/** Printable text typed into a prompt (pasted text arrives as one string). */
export function typedText(input: string, key: Key): string | undefined {
  if (key.ctrl || key.meta || key.return || key.escape || key.tab || key.backspace || key.delete) return undefined;
  if (key.upArrow || key.downArrow || key.leftArrow || key.rightArrow || key.pageUp || key.pageDown || key.home || key.end) return undefined;
  // eslint-disable-next-line no-control-regex -- control characters must not reach a prompt
  const printable = input.replace(/[\u0000-\u001f\u007f]/g, '');
  return printable === '' ? undefined : printable;
}
