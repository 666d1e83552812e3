// Unit tests for the page's parts that need no browser: args splitting, the
// share-link encoding, and how each API failure is put into words.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { execute, retryAfterSeconds } from '../src/api.js';
import { parseArgs } from '../src/args.js';
import { decodeShare, encodeShare } from '../src/share.js';

test('args split like a shell', () => {
  assert.deepEqual(parseArgs(''), []);
  assert.deepEqual(parseArgs('  a   b '), ['a', 'b']);
  assert.deepEqual(parseArgs(`--name "Ada Lovelace" 'it''s' x\\ y ""`), ['--name', 'Ada Lovelace', 'its', 'x y', '']);
  assert.deepEqual(parseArgs(`"a \\"q\\" \\n"`), ['a "q" \\n']);
  assert.throws(() => parseArgs(`'open`), /unterminated single quote/);
});

test('share links round-trip code, stdin, args and limits', () => {
  const state = { code: 'print("héllo ✓")\n\tx = 1 + 2', stdin: 'a\nb', args: "one 'two three'", limits: { timeout_ms: 3000 } };
  const fragment = encodeShare(state);
  assert.match(fragment, /^code=[\w-]+&stdin=[\w-]+&args=[\w-]+&timeout_ms=3000$/);
  assert.deepEqual(decodeShare(`#${fragment}`), state);
  assert.deepEqual(decodeShare(`#${encodeShare({ code: '' })}`), { code: '', stdin: '', args: '', limits: {} });
});

test('damaged or foreign fragments are ignored', () => {
  assert.equal(decodeShare(''), null);
  assert.equal(decodeShare('#section-2'), null);
  assert.equal(decodeShare('#code=%%%'), null);
  assert.equal(decodeShare('#code=_w'), null, 'not UTF-8');
});

test('Retry-After is read as seconds or as a date', () => {
  assert.equal(retryAfterSeconds('3'), 3);
  assert.equal(retryAfterSeconds(null), null);
  assert.equal(retryAfterSeconds('soon'), null);
  const inFive = new Date(Date.now() + 5_000).toUTCString();
  assert.ok([4, 5].includes(retryAfterSeconds(inFive)));
});

test('every API failure becomes a sentence', async (t) => {
  const realFetch = globalThis.fetch;
  t.after(() => { globalThis.fetch = realFetch; });
  const answer = (status, body, headers = {}) => {
    globalThis.fetch = async () => new Response(typeof body === 'string' ? body : JSON.stringify(body), { status, headers });
  };
  const failure = async () => {
    try {
      await execute({ code: '' });
    } catch (err) {
      return [err.kind, err.message];
    }
    assert.fail('expected a failure');
  };
  const error = (code, message = 'detail') => ({ error: { code, message }, id: 'r1' });

  answer(429, error('overloaded'), { 'retry-after': '2' });
  assert.deepEqual(await failure(), ['busy', "Busy, retry in 2 s: every sandbox is running someone's code right now."]);
  answer(429, error('rate_limited'), { 'retry-after': '4' });
  assert.deepEqual(await failure(), ['busy', 'Busy, retry in 4 s: too many runs in a short time from here (rate limit).']);
  answer(503, error('not_ready'), { 'retry-after': '1' });
  assert.deepEqual(await failure(), ['unavailable', 'The Python runtime is still starting up; retry in 1 s.']);
  answer(503, error('shutting_down'));
  assert.deepEqual(await failure(), ['unavailable', 'This server is shutting down; retry in a moment.']);
  answer(502, error('upstream_unreachable', 'connection refused'));
  assert.deepEqual(await failure(), ['unavailable', 'The gateway could not reach an executor (502). Try again. (connection refused)']);
  answer(504, error('upstream_timeout', 'no answer in 35 s'));
  assert.equal((await failure())[0], 'no answer');
  answer(413, error('payload_too_large', '`code` is larger than the limit of 262144 bytes'));
  assert.deepEqual(await failure(), ['rejected', 'Too large: `code` is larger than the limit of 262144 bytes.']);
  answer(422, error('invalid_limits', 'limit `fuel` must be a positive integer, got 0'));
  assert.match((await failure())[1], /^The server rejected the request: limit `fuel`/);
  answer(500, '<html>oops</html>');
  assert.deepEqual(await failure(), ['failed', "The server failed (HTTP 500). This is not your code's fault; try again."]);
  answer(200, '{"not": "a result"}');
  assert.equal((await failure())[0], 'failed');
  globalThis.fetch = async () => { throw new TypeError('fetch failed'); };
  assert.equal((await failure())[0], 'offline');
});
