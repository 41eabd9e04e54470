/**
 * Theme colours are `string | undefined` (undefined under NO_COLOR), while Ink's Text props reject
 * an explicit undefined under exactOptionalPropertyTypes: these helpers pass a colour only when set.
 */
import { Text } from 'ink';
import type { TextProps } from 'ink';
import type { ReactElement, ReactNode } from 'react';

/** Text colour props from theme tokens, leaving out the unset ones. */
export function colours(color: string | undefined, backgroundColor?: string): Pick<TextProps, 'color' | 'backgroundColor'> {
  const props: { color?: string; backgroundColor?: string } = {};
  if (color !== undefined) props.color = color;
  if (backgroundColor !== undefined) props.backgroundColor = backgroundColor;
  return props;
}

export interface StyledProps {
  readonly color?: string | undefined;
  readonly backgroundColor?: string | undefined;
  readonly bold?: boolean | undefined;
  readonly children?: ReactNode;
}

/** One line of text in theme colours; never wraps (a line too long is cut, a safety net only). */
export function Line({ color, backgroundColor, bold = false, children }: StyledProps): ReactElement {
  return (
    <Text {...colours(color, backgroundColor)} bold={bold} wrap="truncate">
      {children}
    </Text>
  );
}

/** A run of text in a theme colour, inside a Line. */
export function Span({ color, backgroundColor, bold = false, children }: StyledProps): ReactElement {
  return (
    <Text {...colours(color, backgroundColor)} bold={bold}>
      {children}
    </Text>
  );
}
