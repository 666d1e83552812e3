// The file tabs over the editor. `main.py` is always the first tab (it is
// what runs, so it cannot be renamed or deleted); "+" adds a file, Upload
// adds local ones, Rename and Delete act on the selected tab. Text files are
// edited in the one CodeMirror view, each tab keeping its own state (text,
// selection, undo history); a binary upload is kept as base64 and shown as
// "binary file, N bytes". Names follow the server's path rule (files.js).
//
// Keyboard: the tabs are one stop (the selected tab); ← → Home End move
// between them, F2 renames, Delete deletes.

import { stateText } from './editor.js';
import { ENTRY, MAX_UPLOAD_BYTES, base64ToBytes, checkPath, decodeUpload, formatSize } from './files.js';

/**
 * @param {{ editor: ReturnType<import('./editor.js').createEditor>, el: Record<string, HTMLElement>, onChange: () => void }} options
 */
export function createFileTabs({ editor, el, onChange }) {
  /** @type {{ id: string, path: string, encoding: 'utf8' | 'base64', state?: object, content?: string, size?: number }[]} */
  let tabs = [];
  let current = 0;
  let nextId = 0;
  let formMode = null; // 'add' | 'rename' while the name form is open
  let deleted = null; // { tab, index } for Undo

  const selected = () => tabs[current];
  const isText = (tab) => tab.encoding !== 'base64';
  const stateOf = (tab) => (tab === selected() ? editor.getState() : tab.state);
  const textOf = (tab) => (isText(tab) ? stateText(stateOf(tab)) : tab.content);
  const pathsBut = (except) => tabs.filter((t) => t !== except).map((t) => t.path);

  function makeTab(path, encoding, content, size) {
    const tab = { id: `file-tab-${nextId++}`, path, encoding: encoding === 'base64' ? 'base64' : 'utf8' };
    if (tab.encoding === 'base64') {
      tab.content = content;
      tab.size = size ?? base64ToBytes(content).length;
    } else {
      tab.state = editor.createState(content, path);
    }
    return tab;
  }

  // ---- showing ----------------------------------------------------------------

  /** A tab's button, made once and kept (so focus and double clicks survive a render). */
  const buttons = new WeakMap();
  function buttonFor(tab) {
    let button = buttons.get(tab);
    if (!button) {
      button = document.createElement('button');
      button.type = 'button';
      button.id = tab.id;
      button.className = 'tab';
      button.setAttribute('role', 'tab');
      button.setAttribute('aria-controls', el.panel.id);
      const name = document.createElement('span');
      name.className = 'tab-name';
      button.append(name);
      if (!isText(tab)) {
        const tag = document.createElement('span');
        tag.className = 'tag';
        tag.textContent = 'bin';
        tag.setAttribute('aria-hidden', 'true');
        button.append(tag);
      }
      buttons.set(tab, button);
    }
    return button;
  }

  function render({ focusTab = false } = {}) {
    const list = tabs.map((tab, i) => {
      const button = buttonFor(tab);
      button.setAttribute('aria-selected', String(i === current));
      button.tabIndex = i === current ? 0 : -1;
      button.dataset.index = String(i);
      button.dataset.path = tab.path;
      button.title = isText(tab) ? tab.path : `${tab.path} · binary, ${formatSize(tab.size)}`;
      button.firstChild.textContent = tab.path;
      return button;
    });
    const same = list.length === el.tabs.children.length && list.every((b, i) => el.tabs.children[i] === b);
    if (!same) el.tabs.replaceChildren(...list);
    const tab = selected();
    const fixed = current === 0;
    el.rename.hidden = el.remove.hidden = fixed;
    el.rename.setAttribute('aria-label', `Rename ${tab.path}`);
    el.remove.setAttribute('aria-label', `Delete ${tab.path}`);
    el.panel.setAttribute('aria-labelledby', tab.id);
    const shown = el.tabs.children[current];
    revealInStrip(shown);
    if (focusTab) shown?.focus({ preventScroll: true });
  }

  /** Scrolls the tab strip (only the strip, never the page) to show `button`. */
  function revealInStrip(button) {
    if (!button) return;
    const strip = el.tabs; // position: relative, so offsetLeft is within it
    if (button.offsetLeft < strip.scrollLeft) strip.scrollLeft = button.offsetLeft;
    else if (button.offsetLeft + button.offsetWidth > strip.scrollLeft + strip.clientWidth) {
      strip.scrollLeft = button.offsetLeft + button.offsetWidth - strip.clientWidth;
    }
  }

  /** Puts the selected tab in the panel: its editor state, or the binary notice. */
  function show() {
    const tab = selected();
    if (isText(tab)) {
      el.binary.hidden = true;
      el.editor.hidden = false;
      editor.setState(tab.state);
    } else {
      el.editor.hidden = true;
      el.binary.hidden = false;
      const name = document.createElement('strong');
      name.textContent = tab.path;
      const what = document.createElement('span');
      what.className = 'binary-size';
      what.textContent = `binary file, ${formatSize(tab.size)}`;
      const why = document.createElement('small');
      why.textContent = 'Not UTF-8 text, so it is not edited here; the run gets its bytes exactly.';
      el.binary.replaceChildren(name, what, why);
    }
  }

  function select(index, { focusTab = false } = {}) {
    if (index < 0 || index >= tabs.length) return;
    if (index !== current) {
      closeForm();
      const leaving = selected();
      if (leaving && isText(leaving)) leaving.state = editor.getState();
      current = index;
      show();
    }
    render({ focusTab });
  }

  // ---- messages ----------------------------------------------------------------

  function showError(message) {
    el.error.textContent = message;
    el.error.hidden = !message;
  }

  function showNote(message, undo = false) {
    el.noteText.textContent = message;
    el.undo.hidden = !undo;
    el.note.hidden = !message;
  }

  function clearMessages() {
    showError('');
    showNote('');
    deleted = null;
  }

  // ---- add and rename (one small form) ----------------------------------------------

  function openForm(mode) {
    if (mode === 'rename' && current === 0) return;
    clearMessages();
    formMode = mode;
    el.form.hidden = false;
    el.formLabel.textContent = mode === 'add' ? 'New file' : `Rename ${selected().path} to`;
    el.formSubmit.textContent = mode === 'add' ? 'Add' : 'Rename';
    el.name.value = mode === 'add' ? '' : selected().path;
    el.name.removeAttribute('aria-invalid');
    el.name.focus();
    if (mode === 'rename') {
      const dot = el.name.value.lastIndexOf('.');
      el.name.setSelectionRange(0, dot > el.name.value.lastIndexOf('/') + 1 ? dot : el.name.value.length);
    }
  }

  function closeForm() {
    if (!formMode) return;
    formMode = null;
    el.form.hidden = true;
    showError('');
  }

  function submitForm() {
    const renaming = formMode === 'rename' ? selected() : null;
    const raw = el.name.value.trim();
    if (renaming && checkPath(raw).path === renaming.path) {
      closeForm();
      editor.focus();
      return;
    }
    const checked = checkPath(raw, pathsBut(renaming));
    if (checked.error) {
      showError(checked.error);
      el.name.setAttribute('aria-invalid', 'true');
      el.name.focus();
      return;
    }
    if (renaming) {
      const from = renaming.path;
      renaming.path = checked.path;
      if (isText(renaming)) renaming.state = editor.renamed(stateOf(renaming), checked.path);
      closeForm();
      render();
      showNote(`Renamed ${from} to ${checked.path}.`);
    } else {
      tabs.push(makeTab(checked.path, 'utf8', ''));
      closeForm();
      select(tabs.length - 1);
    }
    onChange();
    if (isText(selected())) editor.focus();
    else el.tabs.children[current]?.focus();
  }

  el.form.addEventListener('submit', (e) => {
    e.preventDefault();
    submitForm();
  });
  el.name.addEventListener('input', () => {
    el.name.removeAttribute('aria-invalid');
    showError('');
  });
  el.name.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      e.preventDefault();
      const back = formMode === 'add' ? el.add : el.rename;
      closeForm();
      back.focus();
    }
  });
  el.cancel.addEventListener('click', () => {
    const back = formMode === 'add' ? el.add : el.rename;
    closeForm();
    back.focus();
  });
  el.add.addEventListener('click', () => openForm('add'));
  el.rename.addEventListener('click', () => openForm('rename'));

  // ---- delete (with Undo) ------------------------------------------------------------

  function remove() {
    if (current === 0) return;
    closeForm();
    const index = current;
    const tab = selected();
    if (isText(tab)) tab.state = editor.getState();
    tabs.splice(index, 1);
    current = index - 1;
    show();
    render();
    clearMessages();
    deleted = { tab, index };
    showNote(`Deleted ${tab.path}.`, true);
    onChange();
    el.tabs.children[current]?.focus();
  }

  el.remove.addEventListener('click', remove);
  el.undo.addEventListener('click', () => {
    if (!deleted) return;
    const { tab, index } = deleted;
    const checked = checkPath(tab.path, pathsBut(null));
    if (checked.error) {
      showError(`${tab.path} cannot come back: ${checked.error}`);
      return;
    }
    clearMessages();
    const leaving = selected();
    if (isText(leaving)) leaving.state = editor.getState();
    tabs.splice(Math.min(index, tabs.length), 0, tab);
    current = tabs.indexOf(tab);
    show();
    render({ focusTab: true });
    onChange();
  });

  // ---- the tab strip ------------------------------------------------------------------

  el.tabs.addEventListener('click', (e) => {
    const button = e.target.closest('[role="tab"]');
    if (button) select(Number(button.dataset.index), { focusTab: true });
  });
  el.tabs.addEventListener('dblclick', (e) => {
    const button = e.target.closest('[role="tab"]');
    if (button && Number(button.dataset.index) !== 0) {
      select(Number(button.dataset.index));
      openForm('rename');
    }
  });
  el.tabs.addEventListener('keydown', (e) => {
    const moves = { ArrowRight: current + 1, ArrowLeft: current - 1, Home: 0, End: tabs.length - 1 };
    if (e.key in moves) {
      e.preventDefault();
      select((moves[e.key] + tabs.length) % tabs.length, { focusTab: true });
    } else if (e.key === 'F2') {
      e.preventDefault();
      openForm('rename');
    } else if (e.key === 'Delete') {
      e.preventDefault();
      remove();
    }
  });

  // ---- upload ------------------------------------------------------------------------------

  async function upload(list) {
    closeForm();
    clearMessages();
    const problems = [];
    let added = 0;
    for (const file of list) {
      if (file.size > MAX_UPLOAD_BYTES) {
        problems.push(`${file.name} is ${formatSize(file.size)}; the page takes files up to ${formatSize(MAX_UPLOAD_BYTES)}.`);
        continue;
      }
      const checked = checkPath(file.name, pathsBut(null));
      if (checked.error) {
        problems.push(`${file.name}: ${checked.error}`);
        continue;
      }
      const { encoding, content, size } = decodeUpload(new Uint8Array(await file.arrayBuffer()));
      tabs.push(makeTab(checked.path, encoding, content, size));
      added++;
    }
    if (added) {
      select(tabs.length - 1, { focusTab: true });
      onChange();
    }
    showError(problems.join(' '));
  }

  el.uploadButton.addEventListener('click', () => el.uploadInput.click());
  el.uploadInput.addEventListener('change', async () => {
    const list = [...el.uploadInput.files];
    el.uploadInput.value = '';
    await upload(list);
  });

  // ---- in and out ----------------------------------------------------------------------------

  return {
    /** The program as the tabs hold it: main.py's text, and the other files. */
    snapshot() {
      return {
        code: textOf(tabs[0]),
        files: tabs.slice(1).map((tab) => ({ path: tab.path, content: textOf(tab), encoding: tab.encoding })),
      };
    },
    /** Replaces every tab (an example, a share link, a draft, a recent run); main.py is selected. */
    load({ code = '', files = [] }) {
      closeForm();
      clearMessages();
      const taken = [ENTRY];
      const others = [];
      for (const file of Array.isArray(files) ? files : []) {
        const checked = checkPath(file?.path, taken);
        if (checked.error || typeof file.content !== 'string') continue; // a damaged draft: skip what cannot run
        try {
          others.push(makeTab(checked.path, file.encoding, file.content));
          taken.push(checked.path);
        } catch {
          // base64 that does not decode
        }
      }
      tabs = [makeTab(ENTRY, 'utf8', typeof code === 'string' ? code : ''), ...others];
      current = 0;
      show();
      render();
    },
    /** Focuses what the selected tab shows. */
    focus() {
      if (isText(selected())) editor.focus();
      else el.tabs.children[current]?.focus();
    },
  };
}
