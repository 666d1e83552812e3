// What the page shows for one run result: the badge, the sentence under it,
// the limit notice and both streams. No DOM here, so it is unit-tested.
//
// Which limit ended (or cut) a run comes only from the response's `limit`
// field. stdout and stderr are what the program wrote, and a program can
// print anything — a line that looks like the sandbox's own `[runbox] …`
// note included — so they are never parsed for meaning and are shown as
// written. The one line set apart is a last stderr line that is exactly the
// note the server appends for the `limit` it reported.

export const STATUS_LABEL = {
  ok: 'ok', error: 'error', timeout: 'timeout', fuel_exhausted: 'fuel exhausted', memory_exceeded: 'memory exceeded',
};
/** The status each ending limit gives a run; `output` only cuts, so it has none. */
const KIND_STATUS = { timeout: 'timeout', fuel: 'fuel_exhausted', memory: 'memory_exceeded' };

const compactLong = new Intl.NumberFormat('en', { notation: 'compact', compactDisplay: 'long', maximumFractionDigits: 1 });
const whole = new Intl.NumberFormat('en');

/**
 * The page's view of a `POST /execute` 200 body.
 *
 * @param {object} result  the response body
 * @param {object} [known] limits in force as far as the page knows (requested,
 *   else server defaults; API units), only for numbers `limit` does not give
 * @returns {{ status: string, label: string, limit: ?{kind: string, value: ?number, unit: ?string, message: string},
 *   explain: string, stdout: StreamView, stderr: StreamView }}
 */
export function describeResult(result, known = {}) {
  const listed = Object.prototype.hasOwnProperty.call(STATUS_LABEL, result.status);
  const status = listed ? result.status : 'error';
  const limit = limitOf(result);
  const value = (kind, key) => (limit?.kind === kind && limit.value != null ? limit.value : known[key] ?? null);
  const outputLimit = value('output', 'output_bytes');
  return {
    status,
    label: listed ? STATUS_LABEL[status] : String(result.status),
    limit,
    explain: explain(result, limit, value),
    stdout: describeStream(textOf(result.stdout), result.truncated?.stdout, outputLimit),
    stderr: describeStream(textOf(result.stderr), result.truncated?.stderr, outputLimit, limit ? serverNotes(result.status, limit) : []),
  };
}

/** The response's `limit` when it is one, else null (absent, null or malformed). */
export function limitOf(result) {
  const limit = result?.limit;
  if (!limit || typeof limit !== 'object' || typeof limit.kind !== 'string' || !limit.kind) return null;
  return {
    kind: limit.kind,
    value: Number.isSafeInteger(limit.value) && limit.value > 0 ? limit.value : null,
    unit: typeof limit.unit === 'string' ? limit.unit : null,
    message: typeof limit.message === 'string' ? limit.message : '',
  };
}

/** The lines the server appends to stderr for `limit` (`[runbox] <status>: <message>`). */
function serverNotes(status, limit) {
  if (!limit.message) return [];
  return [...new Set([status, limit.kind])].map((tag) => `[runbox] ${tag}: ${limit.message}`);
}

/** One human sentence for the run; the limit it names comes from `limit`. */
function explain(result, limit, value) {
  const cut = limit?.kind === 'output'
    ? `printed more than the ${sized(value('output', 'output_bytes'), formatBytes)}output limit; the rest was cut`
    : null;
  let sentence;
  switch (result.status) {
    case 'ok':
      if (cut) return `Finished normally, but ${cut}.`;
      sentence = 'Finished normally.';
      break;
    case 'error':
      sentence = result.exit_code != null
        ? `The program failed with exit code ${result.exit_code}; any traceback is in stderr.`
        : 'The program failed; see stderr.';
      if (cut) return `${sentence} It also ${cut}.`;
      break;
    case 'timeout':
      sentence = `Timed out: the program ran past its ${sized(value('timeout', 'timeout_ms'), formatMs)}wall-clock limit and was stopped.`;
      break;
    case 'fuel_exhausted': {
      const fuel = value('fuel', 'fuel');
      sentence = `Out of fuel: the program used up its CPU budget${fuel ? ` of ${compactLong.format(fuel)} units` : ''} and was stopped.`;
      break;
    }
    case 'memory_exceeded':
      sentence = `Out of memory: the program asked for more than its ${sized(value('memory', 'memory_bytes'), formatBytes)}memory limit and was stopped.`;
      break;
    default:
      sentence = `The server reported status “${result.status}”.`;
  }
  // A limit the sentence above does not already tell: say it in the server's words.
  if (limit && limit.message && KIND_STATUS[limit.kind] !== result.status) sentence += ` The sandbox says: ${limit.message}.`;
  return sentence;
}

/**
 * A stream as the page shows it: `parts` in order (`note` marks the server's
 * own closing line), and the marker for output cut at the limit.
 *
 * @typedef {{ text: string, parts: {text: string, note: boolean}[], truncated: boolean, cut: ?string }} StreamView
 * @param {string[]} [notes] the exact lines the server may have appended last
 * @returns {StreamView}
 */
export function describeStream(text = '', truncated = false, outputLimit = null, notes = []) {
  const body = text.endsWith('\n') ? text.slice(0, -1) : text;
  const start = body.lastIndexOf('\n') + 1;
  const parts = notes.includes(body.slice(start))
    ? [{ text: text.slice(0, start), note: false }, { text: text.slice(start), note: true }]
    : [{ text, note: false }];
  return {
    text,
    parts: parts.filter((p) => p.text),
    truncated: Boolean(truncated),
    cut: truncated ? `${text.endsWith('\n') ? '' : '\n'}[output truncated: it went past the ${sized(outputLimit, formatBytes)}output limit]` : null,
  };
}

function textOf(stream) {
  return typeof stream === 'string' ? stream : '';
}

/** `format(n) + ' '`, or nothing when the number is unknown. */
function sized(n, format) {
  return n ? `${format(n)} ` : '';
}

export function formatMs(ms) {
  if (ms < 1000) return `${ms < 10 ? ms.toFixed(2) : ms.toFixed(1)} ms`;
  return `${Number((ms / 1000).toFixed(ms < 10_000 ? 2 : 1))} s`; // 3000 → "3 s", 3051 → "3.05 s"
}

export function formatBytes(n) {
  if (n >= 1 << 20 && n % (1 << 20) === 0) return `${n / (1 << 20)} MiB`;
  if (n >= 1 << 10 && n % (1 << 10) === 0) return `${n / (1 << 10)} KiB`;
  return `${whole.format(n)} bytes`;
}
