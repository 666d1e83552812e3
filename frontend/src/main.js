// The playground page: wires the editor, inputs, examples, share link and
// history to the API and renders each run (or each failure to run).
//
// Flow: Run (button or Ctrl/Cmd+Enter) → collect the files (main.py and the
// other tabs), stdin, args, runtime, limits → api.execute → renderResult
// (streams and the files the run wrote) / renderFailure → history.
//
// The runtime picker is filled from GET /runtimes (runtimes.js decides the
// options); the limit fields' placeholders and maxima are the selected
// runtime's. Until the list is in (or while /runtimes fails) the picker
// holds the program's own choice.

import { ApiFailure, execute, runtimes } from './api.js';
import { createEditor } from './editor.js';
import { EXAMPLES } from './examples.js';
import { buildRequest } from './files.js';
import { renderOutputFiles } from './outputs.js';
import { STATUS_LABEL, describeResult, describeStream, formatMs } from './result.js';
import { LIMIT_KEYS, checkLimits, formMax, formValue, limitsFromForm, limitsSummary } from './limits.js';
import {
  exampleOffered, isRuntimeName, listedRuntimes, pickerState, runtimeLabel, runtimeLimits,
} from './runtimes.js';
import { decodeShare, encodeShare } from './share.js';
import { createFileTabs } from './tabs.js';

const $ = (id) => document.getElementById(id);
const el = {
  run: $('run'), runLabel: $('run-label'), runKbd: $('run-kbd'), hintKbd: $('hint-kbd'),
  examples: $('examples'), share: $('share'), sharePanel: $('share-panel'), shareUrl: $('share-url'), shareNote: $('share-note'),
  args: $('args'), stdin: $('stdin'), limits: $('limits'), limitsSummary: $('limits-summary'),
  history: $('history'), historyList: $('history-list'), historyClear: $('history-clear'),
  runtime: $('runtime'), apiStatus: $('api-status'), status: $('status'), badge: $('badge'), explain: $('explain'), meta: $('meta'),
  output: document.querySelector('.output'), stdout: $('stdout'), stderr: $('stderr'), stdoutBox: $('stdout-box'), stderrBox: $('stderr-box'),
};
const filesOut = { box: $('files-box'), list: $('out-files'), images: $('out-images'), cut: $('files-cut'), count: $('files-count') };
/** The limits form (units and labels in limits.js: MiB and KiB on the page, bytes in the API). */
const limitInput = Object.fromEntries(LIMIT_KEYS.map((k) => [k, $(`limit-${k}`)]));

const STORE = { draft: 'runbox.draft', history: 'runbox.history' };
const HISTORY_MAX = 15;

let running = false;
let runtimeInfo = null; // the GET /runtimes body, once it answered
let wantedRuntime = ''; // the runtime the program asks for ('' = the server default)
let applying = false; // true while the page itself fills the inputs
let editedSinceLoad = false;

const isMac = /Mac|iPhone|iPad/.test(navigator.platform || navigator.userAgent);
el.runKbd.textContent = el.hintKbd.textContent = isMac ? '⌘ ↵' : 'Ctrl ↵';

const editor = createEditor($('editor'), { doc: '', onRun: run, onChange: edited });
const fileTabs = createFileTabs({
  editor,
  onChange: edited,
  el: {
    tabs: $('tabs'), panel: $('file-panel'), editor: $('editor'), binary: $('binary-view'),
    add: $('file-add'), rename: $('file-rename'), remove: $('file-delete'),
    uploadButton: $('file-upload'), uploadInput: $('upload'),
    form: $('file-form'), formLabel: $('file-form-label'), formSubmit: $('file-form-submit'), name: $('file-name'), cancel: $('file-cancel'),
    error: $('file-error'), note: $('file-note'), noteText: $('file-note-text'), undo: $('file-undo'),
  },
});

// ---- state in and out of the form ------------------------------------------

function currentState() {
  const limits = limitsFromForm(Object.fromEntries(LIMIT_KEYS.map((k) => [k, limitInput[k].value])));
  return { ...fileTabs.snapshot(), stdin: el.stdin.value, args: el.args.value, runtime: el.runtime.value, limits };
}

function applyState({ code = '', files = [], stdin = '', args = '', runtime = '', limits = {} }) {
  applying = true;
  try {
    fileTabs.load({ code, files });
    el.stdin.value = stdin;
    el.args.value = args;
    wantedRuntime = isRuntimeName(runtime) ? runtime : '';
    renderPicker();
    for (const key of LIMIT_KEYS) {
      limitInput[key].value = formValue(key, limits[key]);
    }
    if (Object.keys(limits).length) el.limits.open = true;
    updateLimitsSummary();
  } finally {
    applying = false;
  }
}

function edited() {
  if (applying) return;
  editedSinceLoad = true;
  // The fragment described the snippet as loaded; once edited it is stale.
  if (location.hash) history.replaceState(null, '', location.pathname + location.search);
  saveDraftSoon();
}

let draftTimer = 0;
function saveDraftSoon() {
  clearTimeout(draftTimer);
  draftTimer = setTimeout(() => store(STORE.draft, currentState()), 300);
}

function updateLimitsSummary() {
  el.limitsSummary.textContent = limitsSummary(LIMIT_KEYS.filter((k) => limitInput[k].value.trim()));
}

// ---- running ----------------------------------------------------------------

async function run() {
  if (running) return;
  const state = currentState();
  if (el.runtime.dataset.state === 'unavailable') {
    renderFailure(new ApiFailure('not sent', state.runtime
      ? `This server does not offer the ${state.runtime} runtime this program asks for; pick one of its runtimes.`
      : 'This server lists no runtime to run the program in.'));
    return;
  }
  let request;
  try {
    request = buildRequest(state, checkLimits(state.limits));
  } catch (err) {
    renderFailure(new ApiFailure('not sent', err.message));
    return;
  }
  setRunning(true);
  try {
    const { result, executor } = await execute(request);
    renderResult(result, executor, request);
    remember(state, result.status);
    editedSinceLoad = false;
  } catch (err) {
    renderFailure(err instanceof ApiFailure ? err : new ApiFailure('failed', `Something went wrong in the page: ${err.message}`));
  } finally {
    setRunning(false);
  }
}

let tickTimer = 0;
function setRunning(on) {
  running = on;
  el.run.classList.toggle('running', on);
  el.run.setAttribute('aria-disabled', String(on));
  el.run.setAttribute('aria-busy', String(on));
  el.output.classList.toggle('busy', on);
  clearInterval(tickTimer);
  if (on) {
    const started = performance.now();
    const tick = () => { el.runLabel.textContent = `Running ${((performance.now() - started) / 1000).toFixed(1)} s`; };
    tick();
    tickTimer = setInterval(tick, 100);
    setBadge('running', 'running');
    setLimit(null);
    el.explain.textContent = 'Running in a fresh sandbox…';
  } else {
    el.runLabel.textContent = 'Run';
  }
}

// ---- rendering --------------------------------------------------------------

const compact = new Intl.NumberFormat('en', { notation: 'compact', maximumFractionDigits: 1 });
const whole = new Intl.NumberFormat('en');
const EMPTY_STREAM = describeStream('');

function setBadge(kind, text) {
  el.badge.className = `badge ${kind}`;
  el.badge.textContent = text;
}

/** The limit notice: `data-limit` on the status line, the server's own words as its tooltip. */
function setLimit(limit) {
  if (limit) {
    el.status.dataset.limit = limit.kind;
    el.explain.title = limit.message;
  } else {
    delete el.status.dataset.limit;
    el.explain.removeAttribute('title');
  }
}

/** Shows a run; what it says comes from describeResult (stderr is never parsed). */
function renderResult(result, executor, request) {
  const ran = result.runtime && typeof result.runtime.name === 'string' ? result.runtime : null;
  const limits = runtimeLimits(runtimeInfo, ran?.name ?? request.runtime ?? '');
  const view = describeResult(result, { ...limits?.default, ...request.limits });
  setBadge(view.status, view.label);
  setLimit(view.limit);
  el.explain.textContent = view.explain;

  const items = [['time', formatMs(result.duration_ms)]];
  if (result.fuel_used != null) items.push(['fuel', compact.format(result.fuel_used), `${whole.format(result.fuel_used)} fuel units`]);
  if (result.exit_code != null) items.push(['exit', String(result.exit_code)]);
  if (ran) {
    // The runtime that ran it, as the response says (not as the picker does).
    const listed = listedRuntimes(runtimeInfo).find((r) => r.name === ran.name);
    items.push(['runtime', `${ran.name}${ran.version ? ` ${ran.version}` : ''}`, listed ? runtimeLabel(listed) : undefined]);
  }
  if (executor) items.push(['executor', executor]);
  renderMeta(items);

  renderStream(el.stdout, el.stdoutBox, view.stdout);
  renderStream(el.stderr, el.stderrBox, view.stderr);
  renderOutputFiles(filesOut, result.files, Boolean(result.truncated?.files));
}

function renderFailure(failure) {
  setBadge('failure', failure.kind);
  setLimit(null);
  el.explain.textContent = failure.message;
  const items = [];
  if (failure.status) items.push(['HTTP', String(failure.status)]);
  if (failure.code) items.push(['code', failure.code]);
  if (failure.id) items.push(['request', failure.id]);
  renderMeta(items);
  renderStream(el.stdout, el.stdoutBox, EMPTY_STREAM);
  renderStream(el.stderr, el.stderrBox, EMPTY_STREAM);
  renderOutputFiles(filesOut, [], false);
}

function renderMeta(items) {
  el.meta.replaceChildren(...items.map(([key, value, title]) => {
    const li = document.createElement('li');
    const k = document.createElement('span');
    k.className = 'k';
    k.textContent = key;
    li.append(k, ' ', value);
    if (title) li.title = title;
    return li;
  }));
}

/** Fills a stream with its text as written; only the server's closing note is set apart. */
function renderStream(pre, box, view) {
  const nodes = view.parts.map((part) => {
    if (!part.note) return document.createTextNode(part.text);
    const span = document.createElement('span');
    span.className = 'note';
    span.textContent = part.text;
    return span;
  });
  if (view.cut) {
    const span = document.createElement('span');
    span.className = 'note cut-note';
    span.textContent = view.cut;
    nodes.push(span);
  }
  pre.replaceChildren(...nodes);
  pre.scrollTop = 0;
  box.classList.toggle('empty', !view.text);
  box.querySelector('.cut').hidden = !view.truncated;
}

// ---- examples ---------------------------------------------------------------

const EXAMPLE_GROUPS = [
  ['everyday', 'Examples'],
  ['scientific', 'numpy, pandas, matplotlib (python-scientific)'],
  ['limits', 'See the sandbox hold'],
];

/** The examples menu; one whose runtime the server does not list is disabled, with a note. */
function renderExamples() {
  const groups = EXAMPLE_GROUPS.map(([id, label]) => {
    const group = document.createElement('optgroup');
    group.label = label;
    group.dataset.group = id;
    for (const ex of EXAMPLES.filter((e) => (e.group ?? 'everyday') === id)) {
      const option = new Option(ex.title, ex.id);
      if (!exampleOffered(ex, runtimeInfo)) {
        option.disabled = true;
        option.text += ` (needs ${ex.runtime})`;
        option.title = `This server does not list the ${ex.runtime} runtime`;
      }
      group.append(option);
    }
    return group;
  });
  el.examples.replaceChildren(new Option('Examples…', ''), ...groups);
}

el.examples.addEventListener('change', () => {
  const ex = EXAMPLES.find((e) => e.id === el.examples.value);
  el.examples.value = '';
  if (!ex) return;
  if (editedSinceLoad) remember(currentState(), 'draft'); // don't lose unsaved work
  // An example without a runtime runs on the server default.
  applyState({ code: ex.code, files: ex.files, stdin: ex.stdin, args: ex.args, runtime: ex.runtime, limits: ex.limits });
  if (location.hash) history.replaceState(null, '', location.pathname + location.search);
  editedSinceLoad = false;
  store(STORE.draft, currentState());
  fileTabs.focus();
});

// ---- share link -------------------------------------------------------------

el.share.addEventListener('click', async () => {
  if (!el.sharePanel.hidden) return closeShare();
  const url = `${location.origin}${location.pathname}${location.search}#${encodeShare(currentState())}`;
  history.replaceState(null, '', url);
  el.shareUrl.value = url;
  el.sharePanel.hidden = false;
  el.share.setAttribute('aria-expanded', 'true');
  el.shareUrl.focus();
  el.shareUrl.select();
  let copied = false;
  try {
    await navigator.clipboard.writeText(url);
    copied = true;
  } catch {
    try { copied = document.execCommand('copy'); } catch { /* shown below */ }
  }
  el.shareNote.textContent = copied ? 'Link copied to the clipboard' : `Copy this link (${isMac ? '⌘' : 'Ctrl'}+C)`;
  if (url.length > 8000) el.shareNote.textContent += ' · long link: some apps may cut it';
  el.sharePanel.dataset.copied = String(copied);
});

function closeShare() {
  el.sharePanel.hidden = true;
  el.share.setAttribute('aria-expanded', 'false');
}
el.sharePanel.addEventListener('keydown', (e) => {
  if (e.key === 'Escape') { closeShare(); el.share.focus(); }
});
document.addEventListener('click', (e) => {
  if (!el.sharePanel.hidden && !e.target.closest('.share-wrap')) closeShare();
});
window.addEventListener('hashchange', () => {
  const shared = decodeShare(location.hash);
  if (shared) { applyState(shared); editedSinceLoad = false; }
});

// ---- history (localStorage) -------------------------------------------------

function load(key) {
  try { return JSON.parse(localStorage.getItem(key)); } catch { return null; }
}
function store(key, value) {
  try { localStorage.setItem(key, JSON.stringify(value)); } catch { /* private mode or full: history is optional */ }
}

/** The same program, inputs and runtime (limits aside): one history entry, not two. */
const sameRun = (a, b) => a.code === b.code && a.stdin === b.stdin && a.args === b.args && (a.runtime ?? '') === (b.runtime ?? '')
  && JSON.stringify(a.files ?? []) === JSON.stringify(b.files ?? []);

function remember(state, status) {
  const size = state.code.length + state.files.reduce((n, f) => n + f.path.length + f.content.length, 0);
  if (size > 50_000) return;
  const entries = (load(STORE.history) ?? []).filter((e) => !sameRun(e, state));
  entries.unshift({ ...state, status, at: Date.now() });
  store(STORE.history, entries.slice(0, HISTORY_MAX));
  renderHistory();
}

function renderHistory() {
  const entries = load(STORE.history) ?? [];
  el.history.hidden = entries.length === 0;
  const time = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
  el.historyList.replaceChildren(...entries.map((entry) => {
    const li = document.createElement('li');
    const button = document.createElement('button');
    button.type = 'button';
    const dot = document.createElement('span');
    dot.className = `dot ${entry.status}`;
    dot.title = STATUS_LABEL[entry.status] ?? entry.status;
    const text = document.createElement('span');
    text.className = 'first-line';
    text.textContent = summaryLine(entry.code);
    const others = Array.isArray(entry.files) ? entry.files.length : 0;
    const count = document.createElement('span');
    count.className = 'st';
    count.textContent = others ? `+${others} ${others === 1 ? 'file' : 'files'}` : '';
    // The runtime, when it is not the one a program gets anyway.
    const runtime = document.createElement('span');
    runtime.className = 'st';
    const defaultName = pickerState(runtimeInfo).selected;
    runtime.textContent = isRuntimeName(entry.runtime) && entry.runtime !== defaultName ? entry.runtime : '';
    const status = document.createElement('span');
    status.className = 'st';
    status.textContent = dot.title;
    const when = document.createElement('time');
    when.textContent = time.format(entry.at);
    button.append(dot, text, count, runtime, status, when);
    button.setAttribute('aria-label', `Restore: ${text.textContent}${others ? ` and ${count.textContent.slice(1)}` : ''}${runtime.textContent ? ` on ${runtime.textContent}` : ''}, ${dot.title}, ${when.textContent}`);
    button.addEventListener('click', () => {
      applyState(entry);
      editedSinceLoad = false;
      saveDraftSoon();
      fileTabs.focus();
    });
    li.append(button);
    return li;
  }));
}

/** The most telling line of a snippet: skips blanks, comments and imports. */
function summaryLine(code) {
  const lines = code.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  return lines.find((l) => !/^(import|from)\s/.test(l)) ?? lines[0] ?? '(empty)';
}

el.historyClear.addEventListener('click', () => {
  store(STORE.history, []);
  renderHistory();
});

// ---- runtimes: the picker and the limits it brings --------------------------

/** Fills the picker from the server's list (or the program's choice alone while there is none). */
function renderPicker() {
  const view = pickerState(runtimeInfo, wantedRuntime);
  el.runtime.replaceChildren(...view.options.map((o) => {
    const option = new Option(o.label, o.value);
    option.title = o.title;
    if (o.unavailable) option.dataset.unavailable = 'true';
    return option;
  }));
  el.runtime.value = view.selected;
  el.runtime.dataset.state = !view.known ? 'pending' : view.unavailable ? 'unavailable' : 'listed';
  el.runtime.classList.toggle('warn', view.unavailable);
  el.runtime.setAttribute('aria-invalid', String(view.unavailable));
  el.runtime.title = view.options.find((o) => o.value === view.selected)?.title ?? '';
  showRuntimeLimits();
}

/** The limit fields' placeholders (defaults) and maxima: the selected runtime's, none when unknown. */
function showRuntimeLimits() {
  const limits = runtimeLimits(runtimeInfo, el.runtime.value);
  for (const key of LIMIT_KEYS) {
    const value = limits?.default?.[key];
    const max = limits?.max?.[key];
    limitInput[key].placeholder = value ? formValue(key, value) : '';
    if (max) limitInput[key].max = formMax(key, max);
    else limitInput[key].removeAttribute('max');
  }
}

el.runtime.addEventListener('change', () => {
  wantedRuntime = el.runtime.value;
  renderPicker(); // a runtime the server lacks is gone from the list once another is picked
  edited();
});

async function loadRuntimes(attempt = 0) {
  try {
    const info = await runtimes();
    runtimeInfo = info && typeof info === 'object' ? info : { runtimes: [] };
    el.apiStatus.hidden = true;
    el.apiStatus.textContent = '';
    el.apiStatus.removeAttribute('title');
    renderPicker();
    renderExamples();
    renderHistory();
    if (el.badge.classList.contains('failure') && attempt > 0) resetStatus();
  } catch (err) {
    // The picker keeps the program's choice; the status says what is wrong.
    el.apiStatus.hidden = false;
    el.apiStatus.textContent = err.kind === 'offline' ? 'API unreachable' : 'API not ready';
    el.apiStatus.title = err.message;
    if (!running && (el.badge.classList.contains('idle') || el.badge.classList.contains('failure'))) renderFailure(err);
    if (attempt < 30) setTimeout(() => loadRuntimes(attempt + 1), 1000 * Math.min(10, Math.max(1, err.retryAfter ?? 2 + attempt)));
  }
}

function resetStatus() {
  setBadge('idle', 'ready');
  setLimit(null);
  el.explain.textContent = 'Press Run to execute the code in a fresh sandbox.';
  renderMeta([]);
}

// ---- start --------------------------------------------------------------------

el.run.addEventListener('click', run);
document.addEventListener('keydown', (e) => {
  // The editor handles its own Ctrl/Cmd+Enter (and prevents the default).
  if (e.key === 'Enter' && (e.ctrlKey || e.metaKey) && !e.defaultPrevented) {
    e.preventDefault();
    run();
  }
});
for (const input of [el.args, el.stdin]) input.addEventListener('input', () => { if (!applying) edited(); });
for (const input of Object.values(limitInput)) input.addEventListener('input', () => { updateLimitsSummary(); if (!applying) edited(); });

renderExamples();
const draft = load(STORE.draft);
applyState(decodeShare(location.hash) ?? (typeof draft?.code === 'string' ? draft : EXAMPLES[0]));
renderStream(el.stdout, el.stdoutBox, EMPTY_STREAM);
renderStream(el.stderr, el.stderrBox, EMPTY_STREAM);
renderHistory();
loadRuntimes();
