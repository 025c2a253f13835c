// pymri web: the page. Requests go to POST /api, live updates come through the /events
// WebSocket; every update makes the page ask for the state again, so what it shows is always
// what the server holds (the same in every open page).
'use strict';

const TOKEN = document.querySelector('meta[name="pymri-token"]').content;
const QUERY = 'token=' + encodeURIComponent(TOKEN);

const $ = (id) => document.getElementById(id);

// Everything the page shows comes from the target (names, values, source, output): it goes
// into text nodes only, never into HTML, and the characters that are invisible or reorder text
// (controls, bidi overrides and isolates, zero-width and tag characters) appear as escapes,
// `\x1b`, `\u202e`, as pymri shows them on a terminal. Multi-line text keeps its newlines
// and tabs; a name (`oneLine`) gets them escaped too.
const HIDDEN = '\\u{0}-\\u{8}\\u{b}-\\u{1f}\\u{7f}-\\u{9f}\\u{61c}\\u{200b}\\u{200e}\\u{200f}\\u{2028}-\\u{202e}' +
  '\\u{2060}-\\u{2064}\\u{2066}-\\u{206f}\\u{feff}\\u{fff9}-\\u{fffb}\\u{e0000}-\\u{e007f}';
const IN_TEXT = new RegExp(`[${HIDDEN}]`, 'gu');
const IN_NAME = new RegExp(`[${HIDDEN}\\t\\n]`, 'gu');
const escapeChar = (c) => {
  const code = c.codePointAt(0);
  const hex = (width) => code.toString(16).padStart(width, '0');
  if (c === '\n') return '\\n';
  if (c === '\t') return '\\t';
  if (c === '\r') return '\\r';
  if (code < 0x100) return '\\x' + hex(2);
  return code < 0x10000 ? '\\u' + hex(4) : '\\U' + hex(8);
};
const shown = (text) => String(text).replace(IN_TEXT, escapeChar);
const oneLine = (text) => String(text).replace(IN_NAME, escapeChar);

const el = (tag, className, text) => {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = shown(text);
  return node;
};

const view = {
  state: null,
  ended: false,
  file: null,            // the file shown in the source pane
  sources: new Map(),    // file -> lines
  frames: [],
  stopKey: null,         // what the variables pane shows (thread, frame, stop)
  expanded: new Set(),   // paths of expanded variables, kept across refreshes of one stop
  history: [],
  historyAt: 0,
};

async function api(op, args = {}) {
  const response = await fetch('/api?' + QUERY, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(Object.assign({ op }, args)),
  });
  if (!response.ok) throw new Error(`${response.status} ${(await response.text()).trim()}`);
  const answer = await response.json();
  if (!answer.ok) throw new Error(answer.error);
  return answer.body;
}

// ----------------------------------------------------------------------------------------
// Console

function print(text, kind) {
  if (!text) return;
  const out = $('console-output');
  const atBottom = out.scrollHeight - out.scrollTop - out.clientHeight < 24;
  const span = el('span', kind || '', text.endsWith('\n') ? text : text + '\n');
  out.append(span);
  if (atBottom || kind === 'input') out.scrollTop = out.scrollHeight;
}

async function runConsole(line) {
  print('(Pdb) ' + line, 'input');
  try {
    const body = await api('console', { line });
    print(body.output);
  } catch (e) {
    print('*** ' + e.message, 'error');
  }
  refresh();
}

$('console-input').addEventListener('keydown', (event) => {
  const input = event.target;
  if (event.key === 'Enter') {
    event.preventDefault();
    const line = input.value;
    input.value = '';
    if (line.trim()) view.history.push(line);
    view.historyAt = view.history.length;
    runConsole(line);
  } else if (event.key === 'ArrowUp' && view.historyAt > 0) {
    event.preventDefault();
    input.value = view.history[--view.historyAt];
  } else if (event.key === 'ArrowDown' && view.historyAt < view.history.length) {
    event.preventDefault();
    view.historyAt++;
    input.value = view.history[view.historyAt] || '';
  }
});

// ----------------------------------------------------------------------------------------
// Source

const KEYWORDS = new Set(('False None True and as assert async await break class continue def del elif else ' +
  'except finally for from global if import in is lambda nonlocal not or pass raise return try while with ' +
  'yield match case').split(' '));

// A small tokenizer for colour only: strings, comments, numbers and keywords of one line.
function highlight(code, target) {
  const pattern = /(#.*$)|([rRbBuUfF]{0,2}("""|'''|"(?:\\.|[^"\\])*"?|'(?:\\.|[^'\\])*'?))|(\b\d[\d_]*(?:\.\d+)?(?:[eE][+-]?\d+)?j?\b)|([A-Za-z_]\w*)/g;
  let last = 0;
  for (const m of code.matchAll(pattern)) {
    const [text] = m;
    let kind = null;
    if (m[1]) kind = 'tok-com';
    else if (m[2]) kind = 'tok-str';
    else if (m[4]) kind = 'tok-num';
    else if (m[5] && KEYWORDS.has(text)) kind = 'tok-kw';
    if (!kind) continue;
    if (m.index > last) target.append(shown(code.slice(last, m.index)));
    target.append(el('span', kind, text));
    last = m.index + text.length;
  }
  if (last < code.length) target.append(shown(code.slice(last)));
  if (!code.length) target.append(' ');
}

async function loadSource(file) {
  if (!view.sources.has(file)) {
    const body = await api('source', { file });
    view.sources.set(file, body.lines);
  }
  return view.sources.get(file);
}

async function showSource(file, line, kind) {
  const source = $('source');
  if (view.file !== file) {
    let lines;
    try {
      lines = await loadSource(file);
    } catch (e) {
      lines = null;
      $('source-title').textContent = shown(`${oneLine(file)} (${e.message})`);
    }
    source.replaceChildren();
    view.file = file;
    if (lines) {
      $('source-title').textContent = oneLine(file);
      const rows = document.createDocumentFragment();
      lines.forEach((text, i) => {
        const row = el('div', 'line');
        row.dataset.line = String(i + 1);
        const gutter = el('span', 'gutter', String(i + 1));
        gutter.title = 'Toggle a breakpoint';
        const code = el('span', 'code');
        highlight(text, code);
        row.append(gutter, code);
        rows.append(row);
      });
      source.append(rows);
    }
  }
  markBreakpoints();
  for (const row of source.querySelectorAll('.line.current, .line.frame')) row.classList.remove('current', 'frame');
  if (line) {
    const row = source.querySelector(`.line[data-line="${line}"]`);
    if (row) {
      row.classList.add(kind);
      const box = source.getBoundingClientRect();
      const at = row.getBoundingClientRect();
      if (at.top < box.top + 20 || at.bottom > box.bottom - 20) row.scrollIntoView({ block: 'center' });
    }
  }
}

function markBreakpoints() {
  const source = $('source');
  for (const row of source.querySelectorAll('.line.breakpoint')) row.classList.remove('breakpoint', 'disabled');
  for (const bp of (view.state && view.state.breakpoints) || []) {
    if (bp.file !== view.file || !bp.line) continue;
    const row = source.querySelector(`.line[data-line="${bp.line}"]`);
    if (!row) continue;
    row.classList.add('breakpoint');
    if (!bp.enabled) row.classList.add('disabled');
  }
}

$('source').addEventListener('click', async (event) => {
  const gutter = event.target.closest('.gutter');
  if (!gutter || !view.file) return;
  const line = Number(gutter.parentElement.dataset.line);
  try {
    const body = await api('toggle_breakpoint', { file: view.file, line });
    if (body.set) {
      const bp = body.breakpoint;
      print(`Breakpoint ${bp.id} at ${oneLine(bp.file)}:${bp.line}`, 'note');
    } else {
      print(`Cleared the breakpoint at ${oneLine(view.file)}:${line}`, 'note');
    }
  } catch (e) {
    print('*** ' + e.message, 'error');
  }
  refresh();
});

// ----------------------------------------------------------------------------------------
// Stack, threads, variables, breakpoints

function renderStack(selection) {
  const list = $('stack');
  list.replaceChildren();
  for (const frame of view.frames) {
    const item = el('li');
    item.dataset.index = String(frame.index);
    if (frame.index === selection.frame) item.classList.add('selected');
    item.append(el('span', 'function', oneLine(frame.function) + ' '));
    item.append(el('span', 'where', `${oneLine(basename(frame.file))}:${frame.line}`));
    item.title = `${oneLine(frame.file)}:${frame.line}`;
    item.addEventListener('click', () => select(selection.thread, frame.index));
    list.append(item);
  }
}

async function select(thread, frame) {
  try {
    await api('select', { thread, frame });
  } catch (e) {
    print('*** ' + e.message, 'error');
  }
  refresh();
}

async function renderThreads(state) {
  let threads = [];
  try {
    threads = (await api('threads')).threads;
  } catch (e) {
    threads = state.stopped.map((s) => ({ id: s.thread, name: s.thread_name, stopped: true, reason: s.reason }));
  }
  const picker = $('threads');
  picker.replaceChildren();
  const selected = state.selection && state.selection.thread;
  for (const t of threads) {
    const what = t.stopped ? `stopped (${oneLine(t.reason || '?')})` : 'running';
    const option = el('option', '', `${oneLine(t.name)} — ${what}`);
    option.value = String(t.id);
    option.disabled = !t.stopped;
    if (t.id === selected) option.selected = true;
    picker.append(option);
  }
  if (selected === null || selected === undefined) picker.selectedIndex = -1;
}

$('threads').addEventListener('change', (event) => select(Number(event.target.value), 0));

function renderBreakpoints(state) {
  const list = $('breakpoints');
  list.replaceChildren();
  for (const bp of state.breakpoints) {
    const item = el('li');
    const where = bp.kind === 'function' ? oneLine(bp.function) : `${oneLine(basename(bp.file || ''))}:${bp.line}`;
    const label = el('span', 'where', `${bp.id} ${where}${bp.condition ? ', ' + oneLine(bp.condition) : ''}`);
    label.title = `${oneLine(bp.file || '')}:${bp.line || ''} (hits: ${bp.hits})`;
    label.addEventListener('click', () => bp.file && showSource(bp.file, null, 'frame'));
    const remove = el('button', 'remove', '✕');
    remove.title = 'Remove';
    remove.addEventListener('click', () => runConsole(`cl ${bp.id}`));
    item.append(label, remove);
    list.append(item);
  }
  markBreakpoints();
}

// A variable (or scope) and, when it was expanded before, its children: built completely
// before it is shown, so that a refresh never shows a half-loaded tree.
async function variableNode(variable, path) {
  const wrap = el('div', 'node');
  wrap.dataset.path = path;
  const row = el('div', 'var');
  row.dataset.name = variable.name;
  row.dataset.path = path;
  const toggle = el('span', 'toggle', variable.ref ? '▸' : '');
  row.append(toggle, el('span', 'name', oneLine(variable.name)));
  if (variable.value !== undefined) {
    row.append(document.createTextNode(' = '), el('span', 'value', variable.value));
    if (variable.type) row.append(el('span', 'type', oneLine(variable.type)));
  }
  row.title = oneLine(variable.value === undefined ? variable.name : `${variable.name}: ${variable.type || ''}`);
  wrap.append(row);
  if (!variable.ref) return wrap;
  const children = el('div', 'children');
  children.hidden = true;
  wrap.append(children);
  let loaded = false;
  const load = async () => {
    loaded = true;
    try {
      const body = await api('variables', { ref: variable.ref, count: 500 });
      const nodes = await Promise.all(body.variables.map((c) => variableNode(c, path + '/' + c.name)));
      children.append(...nodes);
      if (body.total > body.variables.length) {
        children.append(el('div', 'var note', `… ${body.total - body.variables.length} more`));
      }
    } catch (e) {
      children.append(el('div', 'var error', e.message));
    }
  };
  const flip = async () => {
    if (children.hidden) {
      view.expanded.add(path);
      toggle.textContent = '▾';
      children.hidden = false;
      if (!loaded) await load();
    } else {
      view.expanded.delete(path);
      toggle.textContent = '▸';
      children.hidden = true;
    }
  };
  // A click that landed on a tree being replaced is honoured on the new one.
  wrap.ensureOpen = () => (children.hidden ? flip() : undefined);
  toggle.addEventListener('click', flip);
  row.querySelector('.name').addEventListener('click', flip);
  if (view.expanded.has(path)) {
    toggle.textContent = '▾';
    children.hidden = false;
    await load();
  }
  return wrap;
}

async function renderVariables(selection, key) {
  const pane = $('variables');
  if (view.stopKey !== key) {
    view.expanded = new Set(['Locals']);
    view.stopKey = key;
  }
  let scopes = [];
  try {
    scopes = (await api('scopes', { thread: selection.thread, frame: selection.frame })).scopes;
  } catch (e) {
    pane.replaceChildren(el('div', 'error', e.message));
    return;
  }
  const nodes = await Promise.all(scopes.map((s) => variableNode({ name: s.name, ref: s.ref }, s.name)));
  for (const node of nodes) node.classList.add('scope');
  pane.replaceChildren(...nodes);
  for (const node of pane.querySelectorAll('.node')) {
    if (view.expanded.has(node.dataset.path) && node.ensureOpen) node.ensureOpen();
  }
}

// ----------------------------------------------------------------------------------------
// State

function basename(path) {
  return path.slice(path.lastIndexOf('/') + 1);
}

function setStatus(state, text) {
  const status = $('status');
  status.dataset.state = state;
  status.textContent = shown(text);
}

function renderHeader(state) {
  $('program').textContent = `${oneLine(state.program)} — pid ${state.pid}, Python ${oneLine(state.python)}`;
  document.title = `pymri — ${oneLine(basename(state.program))}`;
  const selection = state.selection;
  const stop = selection && state.stopped.find((s) => s.thread === selection.thread);
  if (view.ended) {
    // Set by the "ended" message.
  } else if (state.exited) {
    setStatus('exited', `The program exited with status ${state.exited.code}`);
  } else if (stop && stop.frame) {
    setStatus('stopped', `Stopped (${oneLine(stop.reason)}) at ${oneLine(basename(stop.frame.file))}:` +
      `${stop.frame.line} in ${oneLine(stop.frame.function)}() — ${oneLine(stop.thread_name)}`);
  } else if (state.stopped.length) {
    setStatus('stopped', `${state.stopped.length} thread(s) stopped`);
  } else {
    setStatus('running', 'Running');
  }
  const live = !view.ended && !state.ending;
  for (const id of ['btn-continue', 'btn-next', 'btn-step', 'btn-return']) $(id).disabled = !live || !stop;
  $('btn-pause').disabled = !live || !!state.exited;
  $('btn-detach').disabled = !live;
  $('btn-restart').hidden = state.mode !== 'launch' || !state.exited;
  $('btn-restart').disabled = !live;
}

let refreshing = false;
let again = false;

async function refresh() {
  if (view.ended) return;
  if (refreshing) {
    again = true;
    return;
  }
  refreshing = true;
  try {
    do {
      again = false;
      try {
        await refreshOnce();
      } catch (e) {
        // An event that came meanwhile (the thread resumed under this view) makes the error
        // moot: the view is drawn again from the new state.
        if (!again && !view.ended) print('*** ' + e.message, 'error');
      }
    } while (again && !view.ended);
  } finally {
    refreshing = false;
  }
}

async function refreshOnce() {
  const state = await api('state');
  view.state = state;
  renderHeader(state);
  renderBreakpoints(state);
  await renderThreads(state);
  const selection = state.selection;
  const stop = selection && state.stopped.find((s) => s.thread === selection.thread);
  if (!selection || !stop) {
    view.frames = [];
    $('stack').replaceChildren();
    $('variables').replaceChildren();
    view.stopKey = null;
    if (view.file) await showSource(view.file, null, 'current');
    return;
  }
  const stack = await api('stack', { thread: selection.thread });
  view.frames = stack.frames;
  renderStack(selection);
  const frame = view.frames.find((f) => f.index === selection.frame) || view.frames[0];
  if (frame) await showSource(frame.file, frame.line, frame.index === 0 ? 'current' : 'frame');
  const key = JSON.stringify([selection.thread, selection.frame, stop.reason, stop.frame]);
  await renderVariables(selection, key);
  document.body.dataset.ready = '1';
}

function onMessage(message) {
  const body = message.body || {};
  switch (message.type) {
    case 'stopped': {
      const f = body.frame;
      const where = f ? `${oneLine(f.file)}(${f.line})${oneLine(f.function)}()` : '';
      print(`> ${where}  [${oneLine(body.thread_name)}: ${oneLine(body.reason)}]`, 'note');
      if (body.exception) print(body.exception.text, 'error');
      if (body.condition_error) print(`Error in breakpoint condition: ${body.condition_error}`, 'error');
      break;
    }
    case 'output':
      print(body.text, body.category === 'log' ? 'log' : 'error');
      return;
    case 'exited':
      if (body.reason !== 'quit') print(`The program exited with status ${body.code}.`, 'note');
      view.sources.clear();
      view.file = null;
      break;
    case 'ended':
      view.ended = true;
      print(body.reason, 'note');
      setStatus('ended', body.reason);
      for (const button of document.querySelectorAll('.buttons button')) button.disabled = true;
      $('console-input').disabled = true;
      return;
    default:
      break;
  }
  refresh();
}

function connect() {
  const socket = new WebSocket(`ws://${location.host}/events?${QUERY}`);
  socket.addEventListener('message', (event) => {
    try {
      onMessage(JSON.parse(event.data));
    } catch (e) {
      print('*** ' + e.message, 'error');
    }
  });
  socket.addEventListener('close', () => {
    if (!view.ended) {
      view.ended = true;
      setStatus('lost', 'The connection to pymri was lost.');
      for (const button of document.querySelectorAll('.buttons button')) button.disabled = true;
    }
  });
}

// ----------------------------------------------------------------------------------------
// Buttons and keys

async function action(op) {
  try {
    const args = {};
    if (view.state && view.state.selection) args.thread = view.state.selection.thread;
    await api(op, args);
  } catch (e) {
    print('*** ' + e.message, 'error');
  }
  refresh();
}

$('btn-continue').addEventListener('click', () => action('continue'));
$('btn-next').addEventListener('click', () => action('next'));
$('btn-step').addEventListener('click', () => action('step'));
$('btn-return').addEventListener('click', () => action('return'));
$('btn-pause').addEventListener('click', () => action('pause'));
$('btn-restart').addEventListener('click', () => action('restart'));
$('btn-detach').addEventListener('click', () => action('detach'));

document.addEventListener('keydown', (event) => {
  const keys = { F8: 'btn-continue', F10: 'btn-next', F11: event.shiftKey ? 'btn-return' : 'btn-step' };
  const id = keys[event.key];
  if (id && !$(id).disabled) {
    event.preventDefault();
    $(id).click();
  }
});

// The state as it was when the page was served: shown at once, before the event socket is up
// (its first message refreshes everything).
function showInitialState() {
  const element = $('initial-state');
  const state = element && JSON.parse(element.textContent || 'null');
  if (!state || typeof state !== 'object' || !Array.isArray(state.stopped)) return;
  view.state = state;
  renderHeader(state);
  renderBreakpoints(state);
}

try {
  showInitialState();
} catch (e) {
  print('*** ' + e.message, 'error');
}
connect();
