/** Every change to the UI state, as a pure reducer. */
import { durationError, nextPreset, parseDuration } from './alert-prompts.js';
import { cycledViews, initialState, parseFilter, viewAliases, type DetailTarget, type Modal, type Toast, type UiState, type ViewId, type ViewState } from './state.js';

export type UiAction =
  | { readonly type: 'view'; readonly view: ViewId }
  | { readonly type: 'view.cycle'; readonly step: 1 | -1 }
  | { readonly type: 'modal'; readonly modal: Modal }
  | { readonly type: 'modal.close' }
  /** Text typed into the palette, filter or confirmation prompt: a character, or backspace. */
  | { readonly type: 'prompt.input'; readonly text: string }
  | { readonly type: 'prompt.backspace' }
  /** Enter in the palette: go to the named view, or show why not. */
  | { readonly type: 'palette.submit' }
  /** Enter in the filter prompt: apply it to the current view. */
  | { readonly type: 'filter.submit' }
  /** Move the selection; `keys` are the row keys of the current list as shown. */
  | { readonly type: 'cursor'; readonly to: number | 'top' | 'bottom'; readonly relative: boolean; readonly keys: readonly string[] }
  | { readonly type: 'sort.next'; readonly columns: readonly string[]; readonly current: { readonly column: string; readonly descending: boolean } }
  | { readonly type: 'sort.reverse'; readonly current: { readonly column: string; readonly descending: boolean } }
  | { readonly type: 'scroll'; readonly step: number; readonly max: number }
  | { readonly type: 'pause.toggle' }
  | { readonly type: 'tag.toggle'; readonly pid: number }
  | { readonly type: 'tag.clear' }
  | { readonly type: 'detail.open'; readonly target: DetailTarget }
  | { readonly type: 'detail.scroll'; readonly step: number }
  | { readonly type: 'switcher.move'; readonly step: number; readonly count: number }
  | { readonly type: 'target'; readonly cluster: number; readonly node: number }
  | { readonly type: 'toast'; readonly toast: Omit<Toast, 'id'> }
  | { readonly type: 'toasts.expire'; readonly now: number }
  | { readonly type: 'redraw' }
  /** Up or down in the silence prompt's duration step: the next offered duration. */
  | { readonly type: 'silence.preset'; readonly step: 1 | -1 }
  /** Enter on the silence prompt's duration: on to the comment, or why the duration is refused. */
  | { readonly type: 'silence.duration' };

function updateView(state: UiState, change: (view: ViewState) => ViewState): UiState {
  return { ...state, views: { ...state.views, [state.view]: change(state.views[state.view]) } };
}

let toastIds = 0;

/** The next UI state. Unknown or inapplicable actions return the state unchanged. */
export function reduce(state: UiState, action: UiAction): UiState {
  switch (action.type) {
    case 'view':
      return { ...state, view: action.view, modal: { kind: 'none' } };
    case 'view.cycle': {
      const index = cycledViews.indexOf(state.view);
      const next = cycledViews[(Math.max(0, index) + action.step + cycledViews.length) % cycledViews.length] ?? 'overview';
      return { ...state, view: next };
    }
    case 'modal':
      return { ...state, modal: action.modal };
    case 'modal.close':
      return { ...state, modal: { kind: 'none' } };
    case 'prompt.input': {
      const modal = state.modal;
      if (modal.kind === 'palette') return { ...state, modal: { ...modal, input: modal.input + action.text, error: null } };
      if (modal.kind === 'filter') return { ...state, modal: { ...modal, input: modal.input + action.text } };
      if (modal.kind === 'confirm') return { ...state, modal: { ...modal, typed: modal.typed + action.text } };
      if (modal.kind === 'acknowledge') return { ...state, modal: { ...modal, input: modal.input + action.text } };
      if (modal.kind === 'silence') return { ...state, modal: { ...modal, input: modal.input + action.text, error: null } };
      return state;
    }
    case 'prompt.backspace': {
      const modal = state.modal;
      if (modal.kind === 'palette') return { ...state, modal: { ...modal, input: modal.input.slice(0, -1), error: null } };
      if (modal.kind === 'filter') return { ...state, modal: { ...modal, input: modal.input.slice(0, -1) } };
      if (modal.kind === 'confirm') return { ...state, modal: { ...modal, typed: modal.typed.slice(0, -1) } };
      if (modal.kind === 'acknowledge') return { ...state, modal: { ...modal, input: modal.input.slice(0, -1) } };
      if (modal.kind === 'silence') return { ...state, modal: { ...modal, input: modal.input.slice(0, -1), error: null } };
      return state;
    }
    case 'palette.submit': {
      if (state.modal.kind !== 'palette') return state;
      const name = state.modal.input.trim().replace(/^:/, '').toLowerCase();
      const view = viewAliases[name];
      if (view === undefined) return { ...state, modal: { ...state.modal, error: `no view named "${name}"` } };
      return view === 'help' ? { ...state, modal: { kind: 'help' } } : { ...state, view, modal: { kind: 'none' } };
    }
    case 'filter.submit': {
      if (state.modal.kind !== 'filter') return state;
      const filter = parseFilter(state.modal.input);
      return { ...updateView(state, (view) => ({ ...view, filter, selectedIndex: 0, selectedKey: null })), modal: { kind: 'none' } };
    }
    case 'cursor': {
      const count = action.keys.length;
      if (count === 0) return updateView(state, (view) => ({ ...view, selectedKey: null, selectedIndex: 0 }));
      return updateView(state, (view) => {
        const current = view.selectedKey === null ? -1 : action.keys.indexOf(view.selectedKey);
        const from = current >= 0 ? current : Math.min(view.selectedIndex, count - 1);
        let index: number;
        if (action.to === 'top') index = 0;
        else if (action.to === 'bottom') index = count - 1;
        else index = action.relative ? from + action.to : action.to;
        index = Math.max(0, Math.min(count - 1, index));
        return { ...view, selectedIndex: index, selectedKey: action.keys[index] ?? null };
      });
    }
    case 'sort.next': {
      if (action.columns.length === 0) return state;
      const index = action.columns.indexOf(action.current.column);
      const column = action.columns[(index + 1) % action.columns.length] ?? action.current.column;
      return updateView(state, (view) => ({ ...view, sort: { column, descending: true } }));
    }
    case 'sort.reverse':
      return updateView(state, (view) => ({ ...view, sort: { column: action.current.column, descending: !action.current.descending } }));
    case 'scroll':
      return updateView(state, (view) => ({ ...view, scrollX: Math.max(0, Math.min(action.max, view.scrollX + action.step)) }));
    case 'pause.toggle':
      return { ...state, paused: !state.paused };
    case 'tag.toggle':
      return { ...state, tagged: state.tagged.includes(action.pid) ? state.tagged.filter((pid) => pid !== action.pid) : [...state.tagged, action.pid] };
    case 'tag.clear':
      return { ...state, tagged: [] };
    case 'detail.open':
      return { ...state, modal: { kind: 'detail', target: action.target, scroll: 0 } };
    case 'detail.scroll':
      return state.modal.kind === 'detail' ? { ...state, modal: { ...state.modal, scroll: Math.max(0, state.modal.scroll + action.step) } } : state;
    case 'switcher.move':
      return state.modal.kind === 'switcher' && action.count > 0
        ? { ...state, modal: { ...state.modal, index: (state.modal.index + action.step + action.count) % action.count } }
        : state;
    case 'target':
      // A new node is a new set of sessions: selections, tags and filters no longer mean anything.
      return { ...initialState(state.view), target: { cluster: action.cluster, node: action.node }, toasts: state.toasts, redraws: state.redraws };
    case 'toast':
      toastIds += 1;
      return { ...state, toasts: [...state.toasts.slice(-4), { ...action.toast, id: toastIds }] };
    case 'toasts.expire': {
      const toasts = state.toasts.filter((toast) => toast.until > action.now);
      return toasts.length === state.toasts.length ? state : { ...state, toasts };
    }
    case 'redraw':
      return { ...state, redraws: state.redraws + 1 };
    case 'silence.preset': {
      const modal = state.modal;
      if (modal.kind !== 'silence' || modal.step !== 'duration') return state;
      return { ...state, modal: { ...modal, input: nextPreset(modal.input, action.step), error: null } };
    }
    case 'silence.duration': {
      const modal = state.modal;
      if (modal.kind !== 'silence' || modal.step !== 'duration') return state;
      const error = durationError(modal.input);
      if (error !== null) return { ...state, modal: { ...modal, error } };
      return { ...state, modal: { ...modal, step: 'comment', duration: modal.input.trim(), durationMs: parseDuration(modal.input), input: '', error: null } };
    }
  }
}
