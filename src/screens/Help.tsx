/** Help: every key binding, generated from the keymap (the same overlay `?` opens). */
import type { ReactElement } from 'react';
import { HelpOverlay } from '../components/HelpOverlay.js';
import { commands } from '../keymap.js';
import { ScreenFrame } from './common.js';
import type { ScreenModule, ScreenProps } from './types.js';

function HelpScreen({ width, height, theme, viewState }: ScreenProps): ReactElement {
  // The view has no list: its selected index serves as the scroll position.
  return (
    <ScreenFrame width={width} height={height}>
      <HelpOverlay commands={commands} width={width} height={height} scroll={viewState.selectedIndex} theme={theme} />
    </ScreenFrame>
  );
}

/** The Help view. */
export const helpScreen: ScreenModule = {
  id: 'help',
  title: 'Help',
  Screen: HelpScreen,
};
