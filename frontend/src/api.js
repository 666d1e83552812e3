// The public API, same origin: POST execute and GET runtimes. Every way a
// call can fail becomes an ApiFailure with a sentence a person can act on.

/** Longest the page waits for an answer; the server's own cap is 30 s. */
const CLIENT_TIMEOUT_MS = 60_000;

export class ApiFailure extends Error {
  /**
   * @param {string} kind   short badge text: offline, busy, unavailable, rejected, failed
   * @param {string} message one human sentence
   * @param {object} [info] status, code, id, retryAfter (seconds)
   */
  constructor(kind, message, info = {}) {
    super(message);
    this.kind = kind;
    this.status = info.status ?? null;
    this.code = info.code ?? null;
    this.id = info.id ?? null;
    this.retryAfter = info.retryAfter ?? null;
  }
}

/** Runs code; resolves to { result, executor } or throws an ApiFailure. */
export async function execute(request) {
  const response = await call('execute', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(request),
  });
  const result = await readJson(response);
  if (!response.ok) throw failureFor(response, result);
  if (!result || typeof result.status !== 'string') {
    throw new ApiFailure('failed', `The server answered ${response.status} but not with a run result.`, { status: response.status });
  }
  return { result, executor: response.headers.get('x-runbox-executor') || result.executor || null };
}

/** The runtime list and limits; throws an ApiFailure. */
export async function runtimes() {
  const response = await call('runtimes', { headers: { accept: 'application/json' } });
  const body = await readJson(response);
  if (!response.ok) throw failureFor(response, body);
  return body;
}

async function call(path, init) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), CLIENT_TIMEOUT_MS);
  try {
    // Relative, so the page also works when mounted under a path prefix.
    return await fetch(path, { ...init, signal: controller.signal, cache: 'no-store' });
  } catch (err) {
    if (controller.signal.aborted) {
      throw new ApiFailure('no answer', `No answer from the server after ${CLIENT_TIMEOUT_MS / 1000} s. It may be overloaded; try again.`);
    }
    const online = typeof navigator === 'undefined' || navigator.onLine !== false;
    throw new ApiFailure(
      'offline',
      online
        ? 'Could not reach the runbox server: the network request failed. Check that the server is running and try again.'
        : 'You appear to be offline. Reconnect and try again.',
    );
  } finally {
    clearTimeout(timer);
  }
}

async function readJson(response) {
  try {
    return JSON.parse(await response.text());
  } catch {
    return null;
  }
}

/** Seconds from a Retry-After header (delta-seconds or an HTTP date). */
export function retryAfterSeconds(header) {
  if (!header) return null;
  const trimmed = header.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? null : Math.max(0, Math.ceil((date - Date.now()) / 1000));
}

function failureFor(response, body) {
  const status = response.status;
  const error = body && typeof body.error === 'object' && body.error ? body.error : {};
  const code = typeof error.code === 'string' ? error.code : null;
  const detail = typeof error.message === 'string' && error.message ? error.message : null;
  const retryAfter = retryAfterSeconds(response.headers.get('retry-after'));
  const info = { status, code, id: body?.id ?? null, retryAfter };
  const retry = retryAfter != null ? `retry in ${retryAfter} s` : 'retry in a moment';
  const withDetail = (sentence) => (detail ? `${sentence} (${detail})` : sentence);

  if (status === 429 && code === 'rate_limited') {
    return new ApiFailure('busy', `Busy, ${retry}: your share is used up (too many runs, or too many at once, from here).`, info);
  }
  if (status === 429 || (status === 503 && code === 'overloaded')) {
    return new ApiFailure('busy', `Busy, ${retry}: every sandbox is running someone's code right now.`, info);
  }
  if (status === 503) {
    const why = {
      not_ready: 'The Python runtime is still starting up',
      shutting_down: 'This server is shutting down',
      no_executors: 'No executors are available right now',
    }[code] ?? 'The service is unavailable';
    return new ApiFailure('unavailable', `${why}; ${retry}.`, info);
  }
  if (status === 502) return new ApiFailure('unavailable', withDetail('The gateway could not reach an executor (502). Try again.'), info);
  if (status === 504) return new ApiFailure('no answer', withDetail('The executor did not answer in time (504). Try again.'), info);
  if (status === 413) return new ApiFailure('rejected', `Too large: ${detail ?? 'the request is bigger than the server accepts'}.`, info);
  if (status >= 400 && status < 500) {
    return new ApiFailure('rejected', `The server rejected the request: ${detail ?? `HTTP ${status}`}.`, info);
  }
  return new ApiFailure('failed', withDetail(`The server failed (HTTP ${status}). This is not your code's fault; try again.`), info);
}
