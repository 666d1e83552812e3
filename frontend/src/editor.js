// The code editor: CodeMirror 6 with Python, line numbers, auto-indent,
// bracket matching and Tab to indent. Colours are CSS variables, so the
// editor follows the page's light/dark theme without reconfiguring.
//
// One view shows one file at a time; each file tab keeps an EditorState of
// its own (its text, selection and undo history), swapped in when selected.

import { closeBrackets, closeBracketsKeymap } from '@codemirror/autocomplete';
import { defaultKeymap, history, historyKeymap, indentWithTab } from '@codemirror/commands';
import { python } from '@codemirror/lang-python';
import { HighlightStyle, bracketMatching, indentOnInput, indentUnit, syntaxHighlighting } from '@codemirror/language';
import { Compartment, EditorState, Prec } from '@codemirror/state';
import {
  EditorView,
  drawSelection,
  highlightActiveLine,
  highlightActiveLineGutter,
  highlightSpecialChars,
  keymap,
  lineNumbers,
} from '@codemirror/view';
import { tags as t } from '@lezer/highlight';

const highlight = HighlightStyle.define([
  { tag: t.keyword, color: 'var(--syn-keyword)' },
  { tag: [t.string, t.special(t.string)], color: 'var(--syn-string)' },
  { tag: t.escape, color: 'var(--syn-number)' },
  { tag: [t.number, t.bool, t.null], color: 'var(--syn-number)' },
  { tag: t.comment, color: 'var(--syn-comment)', fontStyle: 'italic' },
  { tag: [t.function(t.variableName), t.function(t.propertyName)], color: 'var(--syn-function)' },
  { tag: [t.function(t.definition(t.variableName)), t.definition(t.className)], color: 'var(--syn-definition)', fontWeight: '600' },
  { tag: [t.operator, t.modifier], color: 'var(--syn-operator)' },
  { tag: t.meta, color: 'var(--syn-keyword)' },
  { tag: t.invalid, color: 'var(--bad)' },
]);

const theme = EditorView.theme({
  '&': { color: 'var(--text)', backgroundColor: 'var(--editor-bg)', height: '100%' },
  '.cm-scroller': { fontFamily: 'var(--mono)', lineHeight: '1.55' },
  '.cm-content': { caretColor: 'var(--text)', padding: '10px 0' },
  '.cm-cursor, .cm-dropCursor': { borderLeftColor: 'var(--text)', borderLeftWidth: '2px' },
  '&.cm-focused > .cm-scroller > .cm-selectionLayer .cm-selectionBackground, .cm-selectionBackground, .cm-content ::selection':
    { backgroundColor: 'var(--selection)' },
  '.cm-gutters': { backgroundColor: 'var(--editor-gutter)', color: 'var(--muted)', borderRight: '1px solid var(--border)' },
  '.cm-lineNumbers .cm-gutterElement': { padding: '0 10px 0 14px', minWidth: '2.5em' },
  '.cm-activeLine': { backgroundColor: 'var(--active-line)' },
  '.cm-activeLineGutter': { backgroundColor: 'var(--active-line)', color: 'var(--text)' },
  '&.cm-focused .cm-matchingBracket': { backgroundColor: 'var(--bracket)', outline: '1px solid var(--accent)' },
  '&.cm-focused .cm-nonmatchingBracket': { backgroundColor: 'var(--bad-soft)', color: 'var(--bad)' },
  '&.cm-focused': { outline: 'none' },
});

/** Python highlighting and indentation for `.py` files; plain text for the rest. */
const pythonSupport = python();
function fileExtensions(path) {
  const isPython = /\.pyw?$/i.test(path);
  return [
    isPython ? pythonSupport : [],
    EditorView.contentAttributes.of({ 'aria-label': isPython && path === 'main.py' ? 'Python code' : `Contents of ${path}` }),
  ];
}

/**
 * Mounts the editor in `parent`.
 * @param {{ doc: string, onRun: () => void, onChange: () => void }} options
 */
export function createEditor(parent, { doc, onRun, onChange }) {
  const perFile = new Compartment();
  const common = [
    // Ctrl/Cmd+Enter runs; it must beat the default keymap's insertBlankLine.
    Prec.highest(keymap.of([{ key: 'Mod-Enter', preventDefault: true, run: () => (onRun(), true) }])),
    lineNumbers(),
    highlightActiveLineGutter(),
    highlightSpecialChars(),
    history(),
    drawSelection(),
    indentOnInput(),
    indentUnit.of('    '),
    EditorState.tabSize.of(4),
    bracketMatching(),
    closeBrackets(),
    highlightActiveLine(),
    syntaxHighlighting(highlight),
    theme,
    EditorView.lineWrapping,
    keymap.of([...closeBracketsKeymap, ...defaultKeymap, ...historyKeymap, indentWithTab]),
    EditorView.contentAttributes.of({ spellcheck: 'false', autocapitalize: 'off', autocorrect: 'off' }),
    EditorView.updateListener.of((update) => {
      if (update.docChanged) onChange();
    }),
  ];
  /** A fresh state for a file; text with CRLF line breaks keeps them. */
  const createState = (text, path = 'main.py') => EditorState.create({
    doc: text,
    extensions: [common, perFile.of(fileExtensions(path)), text.includes('\r\n') ? EditorState.lineSeparator.of('\r\n') : []],
  });
  const view = new EditorView({ parent, state: createState(doc) });
  return {
    focus: () => view.focus(),
    createState,
    /** The shown file's state (to keep when another file is shown). */
    getState: () => view.state,
    /** Shows another file's state. */
    setState(state) {
      view.setState(state);
      view.scrollDOM.scrollTop = 0;
    },
    /** `state` for a file renamed to `path` (language and label follow the name); shown or not. */
    renamed(state, path) {
      const effects = perFile.reconfigure(fileExtensions(path));
      if (state === view.state) {
        view.dispatch({ effects });
        return view.state;
      }
      return state.update({ effects }).state;
    },
  };
}

/** The text of a file's state, with its own line breaks. */
export const stateText = (state) => state.sliceDoc();
