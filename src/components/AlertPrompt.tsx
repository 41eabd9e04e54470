/**
 * The prompts of the Alerts view, in place of the footer: acknowledging an alert (an optional
 * comment) and silencing one (how long: an offered duration or a typed one, then a comment).
 */
import { Box, Text } from 'ink';
import type { ReactElement } from 'react';
import { truncate } from '../format/text-table.js';
import { promptLine } from './Prompts.js';
import { colours } from './Styled.js';
import type { Theme } from './theme.js';

export interface AlertPromptProps {
  readonly kind: 'acknowledge' | 'silence';
  /** The alert in words: "warning idle-in-transaction pid 42 on prod/db1". */
  readonly about: string;
  /** For a silence: asking how long, or for the comment. */
  readonly step: 'duration' | 'comment';
  readonly input: string;
  /** The accepted duration, once past the first step. */
  readonly duration: string | null;
  /** Why the typed duration was refused. */
  readonly error: string | null;
  /** The durations offered. */
  readonly presets: readonly string[];
  readonly width: number;
  readonly theme: Theme;
}

/** The prompt's lines as text: what is being done, the input with its cursor, and the keys. */
export function alertPromptLines(props: Omit<AlertPromptProps, 'theme'> & { readonly ellipsis: string }): { title: string; prompt: string; help: string } {
  const { kind, about, step, input, duration, presets, width, ellipsis } = props;
  if (kind === 'acknowledge') {
    return {
      title: truncate(`acknowledge ${about}`, width, ellipsis),
      prompt: promptLine('comment (optional): ', input, width, ellipsis),
      help: truncate('enter acknowledges · esc cancels · a running watcher applies it too', width, ellipsis),
    };
  }
  if (step === 'duration') {
    return {
      title: truncate(`silence ${about}`, width, ellipsis),
      prompt: promptLine('for how long: ', input, width, ellipsis),
      help: truncate(`up/down: ${presets.join(' ')}, or type one (e.g. 2h30m) · enter: on to the comment · esc cancels`, width, ellipsis),
    };
  }
  return {
    title: truncate(`silence ${about} for ${duration ?? '?'}`, width, ellipsis),
    prompt: promptLine('comment (optional): ', input, width, ellipsis),
    help: truncate('enter silences · esc cancels · a running watcher applies it too', width, ellipsis),
  };
}

/** Three lines (four with an error): title, input, keys. */
export function AlertPrompt(props: AlertPromptProps): ReactElement {
  const { theme, width, error } = props;
  const lines = alertPromptLines({ ...props, ellipsis: theme.symbols.ellipsis });
  return (
    <Box flexDirection="column" width={Math.max(width, 0)} flexShrink={0}>
      <Text {...colours(theme.color.header)} bold wrap="truncate">
        {lines.title}
      </Text>
      <Text {...colours(theme.color.accent)} bold wrap="truncate">
        {lines.prompt}
      </Text>
      {error === null ? null : (
        <Text {...colours(theme.color.critical)} wrap="truncate">
          {truncate(error, width, theme.symbols.ellipsis)}
        </Text>
      )}
      <Text {...colours(theme.color.muted)} wrap="truncate">
        {lines.help}
      </Text>
    </Box>
  );
}
