/** Short-lived notices ("cancelled pid 4242"), newest last, one line each. */
import { Box, Text } from 'ink';
import type { ReactElement } from 'react';
import { truncate } from '../format/text-table.js';
import { colours } from './Styled.js';
import type { Theme } from './theme.js';

/** The shape of a toast this component needs (src/app/state's Toast is accepted structurally). */
export interface ToastView {
  readonly id: number;
  readonly level: 'info' | 'success' | 'warning' | 'error';
  readonly text: string;
  /** Epoch ms after which it is hidden (when `now` is given). */
  readonly until?: number | undefined;
}

export interface ToastsProps {
  readonly toasts: readonly ToastView[];
  readonly width: number;
  readonly theme: Theme;
  /** Epoch ms: toasts whose `until` has passed are not shown. */
  readonly now?: number | undefined;
  /** At most this many, the newest (default 3). */
  readonly max?: number | undefined;
}

const levelTone = { info: 'accent', success: 'ok', warning: 'warning', error: 'critical' } as const;

// A word for the level, so that a warning reads as one without colour; info needs none.
const levelPrefix: Readonly<Record<ToastView['level'], string>> = { info: '', success: 'done: ', warning: 'warning: ', error: 'error: ' };

/** The lines shown: the newest `max` toasts still due, oldest first, each cut to `width`. */
export function toastLines(toasts: readonly ToastView[], width: number, ellipsis: string, now?: number, max = 3): readonly { id: number; level: ToastView['level']; text: string }[] {
  const due = toasts.filter((toast) => now === undefined || toast.until === undefined || toast.until > now);
  return due.slice(-max).map((toast) => ({ id: toast.id, level: toast.level, text: truncate(levelPrefix[toast.level] + toast.text, width, ellipsis) }));
}

/** Up to three toasts, newest last, coloured by level; nothing when there are none. */
export function Toasts({ toasts, width, theme, now, max }: ToastsProps): ReactElement | null {
  const lines = toastLines(toasts, width, theme.symbols.ellipsis, now, max);
  if (lines.length === 0) return null;
  return (
    <Box flexDirection="column" width={Math.max(width, 0)} flexShrink={0}>
      {lines.map((line) => (
        <Text key={line.id} {...colours(theme.color[levelTone[line.level]])} wrap="truncate">
          {line.text}
        </Text>
      ))}
    </Box>
  );
}
