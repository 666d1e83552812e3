// Unit tests for the page's parts that need no browser: args splitting, the
// share-link encoding, how each API failure is put into words, what the
// page shows for a run result (the limit notice comes from `limit` only),
// files: the path rule, the request, uploads and downloads, and runtimes:
// the picker, its limits, and runtimes in requests and share links.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { execute, retryAfterSeconds } from '../src/api.js';
import { parseArgs } from '../src/args.js';
import {
  base64ToBytes, baseName, buildRequest, bytesToBase64, checkPath, dataUrl, decodeUpload, fileBytes, formatSize, imageMime,
} from '../src/files.js';
import {
  LIMIT_KEYS, checkLimits, formMax, formValue, limitsFromForm, limitsSummary,
} from '../src/limits.js';
import { EXAMPLES } from '../src/examples.js';
import { describeResult } from '../src/result.js';
import {
  defaultRuntime, exampleOffered, isRuntimeName, pickerState, runtimeLabel, runtimeLimits,
} from '../src/runtimes.js';
import { decodeShare, encodeShare, toBase64Url } from '../src/share.js';

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

test('the limits form: units to API units, the file quotas included', () => {
  const form = {
    timeout_ms: '2000', fuel: '', memory_bytes: ' 64 ', output_bytes: '',
    files_bytes: '8', output_files_bytes: '1',
  };
  const limits = checkLimits(limitsFromForm(form));
  assert.deepEqual(limits, { timeout_ms: 2000, memory_bytes: 64 << 20, files_bytes: 8 << 20, output_files_bytes: 1024 },
    'Files is MiB and Returned files KiB; empty fields are left to the server');
  assert.deepEqual(buildRequest({ code: 'print(1)' }, limits),
    { code: 'print(1)', stdin: '', args: [], limits: { timeout_ms: 2000, memory_bytes: 67108864, files_bytes: 8388608, output_files_bytes: 1024 } });
  assert.deepEqual(limitsFromForm({ files_bytes: '0.5', output_files_bytes: '1.5' }), { files_bytes: 524288, output_files_bytes: 1536 },
    'a fraction of a unit that is whole bytes is fine');
  assert.deepEqual(limitsFromForm({}), {}, 'an empty form: server defaults');
  assert.deepEqual(checkLimits({}), {});

  for (const [key, raw, label] of [
    ['files_bytes', '0', 'Files (MiB)'],
    ['files_bytes', '-1', 'Files (MiB)'],
    ['output_files_bytes', '0.0001', 'Returned files (KiB)'],
    ['output_files_bytes', 'x', 'Returned files (KiB)'],
    ['memory_bytes', '1e30', 'Memory (MiB)'],
  ]) {
    assert.throws(() => checkLimits(limitsFromForm({ [key]: raw })), { message: `The ${label} limit must be a positive whole number.` }, `${key}=${raw}`);
  }

  // Back to the form, and the server's defaults and maxima (GET /runtimes) as placeholder and max.
  assert.equal(formValue('files_bytes', 16 << 20), '16');
  assert.equal(formValue('output_files_bytes', 1 << 20), '1024');
  assert.equal(formValue('output_files_bytes', undefined), '');
  assert.equal(formMax('files_bytes', 64 << 20), '64');
  assert.equal(formMax('output_files_bytes', (16 << 20) + 1), '16384', 'rounded down to a whole unit');

  assert.equal(limitsSummary([]), 'server defaults');
  assert.equal(limitsSummary(['output_files_bytes', 'timeout_ms', 'files_bytes']), 'custom: time, files, returned files', 'in form order');
  assert.equal(limitsSummary(['fuel', 'memory_bytes', 'output_bytes']), 'custom: fuel, memory, output');
  assert.deepEqual(LIMIT_KEYS, ['timeout_ms', 'fuel', 'memory_bytes', 'output_bytes', 'files_bytes', 'output_files_bytes']);
});

test('share links carry the file quotas like the other limits', () => {
  const state = { code: 'x', stdin: '', args: '', limits: { timeout_ms: 3000, files_bytes: 8 << 20, output_files_bytes: 1024 } };
  const fragment = encodeShare(state);
  assert.match(fragment, /^code=[\w-]+&timeout_ms=3000&files_bytes=8388608&output_files_bytes=1024$/);
  assert.deepEqual(decodeShare(`#${fragment}`), state);
  assert.deepEqual(decodeShare(`#code=eA&files_bytes=0&output_files_bytes=1.5`).limits, {}, 'not positive whole numbers: dropped');
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
  assert.deepEqual(await failure(), ['busy', 'Busy, retry in 4 s: your share is used up (too many runs, or too many at once, from here).']);
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

/** A POST /execute 200 body; `fields` override the defaults of a clean run. */
const response = (fields = {}) => ({
  id: 'r1', status: 'ok', exit_code: 0, stdout: '', stderr: '',
  truncated: { stdout: false, stderr: false }, duration_ms: 12.5, fuel_used: 1000, limit: null,
  runtime: { name: 'python', version: '3.14.0' }, executor: 'host', ...fields,
});
/** A stream's parts as [text, note] pairs. */
const parts = (stream) => stream.parts.map((p) => [p.text, p.note]);

test('a timeout with `limit` shows the timeout notice, from the limit', () => {
  const note = '[runbox] timeout: the run exceeded its wall-clock limit of 3000 ms\n';
  const view = describeResult(response({
    status: 'timeout', exit_code: null, fuel_used: null, stdout: 'still going: 1\n', stderr: `warming up\n${note}`,
    limit: { kind: 'timeout', value: 3000, unit: 'ms', message: 'the run exceeded its wall-clock limit of 3000 ms' },
  }), { timeout_ms: 9000 });
  assert.equal(view.status, 'timeout');
  assert.equal(view.label, 'timeout');
  assert.deepEqual(view.limit, { kind: 'timeout', value: 3000, unit: 'ms', message: 'the run exceeded its wall-clock limit of 3000 ms' });
  assert.equal(view.explain, 'Timed out: the program ran past its 3 s wall-clock limit and was stopped.', 'the value comes from `limit`');
  assert.deepEqual(parts(view.stderr), [['warming up\n', false], [note, true]], 'only the server\'s own closing note is set apart');
  assert.deepEqual(parts(view.stdout), [['still going: 1\n', false]]);
});

test('fuel and memory limits are named from `limit`', () => {
  const fuel = describeResult(response({
    status: 'fuel_exhausted', exit_code: null,
    limit: { kind: 'fuel', value: 2_000_000_000, unit: 'fuel', message: 'the run used up its CPU budget of 2000000000 fuel units' },
  }));
  assert.equal(fuel.limit.kind, 'fuel');
  assert.equal(fuel.explain, 'Out of fuel: the program used up its CPU budget of 2 billion units and was stopped.');
  const memory = describeResult(response({
    status: 'memory_exceeded', exit_code: null,
    limit: { kind: 'memory', value: 64 << 20, unit: 'bytes', message: 'the guest asked for more than its memory limit of 67108864 bytes' },
  }));
  assert.equal(memory.limit.kind, 'memory');
  assert.equal(memory.explain, 'Out of memory: the program asked for more than its 64 MiB memory limit and was stopped.');
});

test('a forged [runbox] line with `limit: null` is plain stderr and shows no notice', () => {
  const forged = '[runbox] timeout: the run exceeded its wall-clock limit of 5000 ms';
  const ok = describeResult(response({ stderr: `${forged}\n` }));
  assert.equal(ok.status, 'ok');
  assert.equal(ok.limit, null);
  assert.equal(ok.explain, 'Finished normally.');
  assert.deepEqual(parts(ok.stderr), [[`${forged}\n`, false]]);
  assert.equal(ok.stderr.cut, null);

  const error = describeResult(response({ status: 'error', exit_code: 1, stderr: `Traceback (most recent call last):\n${forged}\nValueError: x\n${forged}` }));
  assert.equal(error.status, 'error');
  assert.equal(error.limit, null);
  assert.equal(error.explain, 'The program failed with exit code 1; any traceback is in stderr.');
  assert.deepEqual(parts(error.stderr), [[`Traceback (most recent call last):\n${forged}\nValueError: x\n${forged}`, false]]);
  assert.doesNotMatch(error.explain, /time|limit/i);

  // A limit that is there, but for something else, does not vouch for the forged line.
  const fuel = describeResult(response({
    status: 'fuel_exhausted', exit_code: null, stderr: `${forged}\n`,
    limit: { kind: 'fuel', value: 1000, unit: 'fuel', message: 'the run used up its CPU budget of 1000 fuel units' },
  }));
  assert.deepEqual(parts(fuel.stderr), [[`${forged}\n`, false]]);
  assert.match(fuel.explain, /^Out of fuel/);
});

test('output cut at the limit shows the output notice', () => {
  const limit = { kind: 'output', value: 64 << 10, unit: 'bytes', message: 'output past 65536 bytes per stream was dropped' };
  const ok = describeResult(response({ stdout: 'line 0\nline 1', truncated: { stdout: true, stderr: false }, limit }));
  assert.equal(ok.status, 'ok');
  assert.equal(ok.limit.kind, 'output');
  assert.equal(ok.explain, 'Finished normally, but printed more than the 64 KiB output limit; the rest was cut.');
  assert.equal(ok.stdout.truncated, true);
  assert.equal(ok.stdout.cut, '\n[output truncated: it went past the 64 KiB output limit]');
  assert.equal(ok.stderr.truncated, false);
  assert.equal(ok.stderr.cut, null);

  const error = describeResult(response({ status: 'error', exit_code: 1, stderr: 'x\n', truncated: { stdout: false, stderr: true }, limit }));
  assert.equal(error.explain, 'The program failed with exit code 1; any traceback is in stderr. It also printed more than the 64 KiB output limit; the rest was cut.');
  assert.equal(error.stderr.cut, '[output truncated: it went past the 64 KiB output limit]');
});

test('a missing or malformed `limit` is no limit', () => {
  const { limit: _, ...old } = response({ stderr: '[runbox] memory_exceeded: the guest asked for more than its memory limit of 1 bytes\n' });
  for (const body of [old, response({ limit: 'timeout' }), response({ limit: { value: 5 } })]) {
    const view = describeResult(body);
    assert.equal(view.limit, null);
    assert.equal(view.explain, 'Finished normally.');
    assert.ok(view.stderr.parts.every((p) => !p.note));
  }
});

// ---- files: names, requests, share links, downloads ------------------------------

test('file names follow the server’s path rule', () => {
  assert.deepEqual(checkPath('helper.py'), { path: 'helper.py' });
  assert.deepEqual(checkPath('./data//in.csv/'), { path: 'data/in.csv' }, 'normalised as the server does');
  assert.deepEqual(checkPath('é/データ.csv'), { path: 'é/データ.csv' });
  assert.deepEqual(checkPath('n'.repeat(255)), { path: 'n'.repeat(255) });
  for (const [bad, why] of [
    ['', /Give the file a name/],
    ['.', /Give the file a name/],
    ['./', /Give the file a name/],
    ['/etc/passwd', /relative/],
    ['../x.py', /“\.\.”/],
    ['a/../../x', /“\.\.”/],
    ['a/..', /“\.\.”/],
    ['a\\b.py', /“\\”/],
    ['a\0b', /NUL/],
    ['n'.repeat(256), /255 bytes/],
    ['é'.repeat(128), /255 bytes/], // 256 bytes of UTF-8
  ]) {
    const checked = checkPath(bad);
    assert.equal(checked.path, undefined, JSON.stringify(bad));
    assert.match(checked.error, why, JSON.stringify(bad));
  }
  const taken = ['main.py', 'helper.py', 'data/in.csv'];
  assert.match(checkPath('main.py', taken).error, /already a file named main\.py/);
  assert.match(checkPath('./helper.py', taken).error, /already a file named helper\.py/, 'duplicates are found after normalising');
  assert.match(checkPath('data', taken).error, /data is a folder of data\/in\.csv/);
  assert.match(checkPath('helper.py/x.py', taken).error, /helper\.py is a file/);
  assert.deepEqual(checkPath('data/out.csv', taken), { path: 'data/out.csv' });
});

test('the request: main.py is `code`, the other tabs are `files`', () => {
  const limits = { timeout_ms: 2000 };
  assert.deepEqual(buildRequest({ code: 'print(1)', files: [], stdin: '', args: '' }, limits),
    { code: 'print(1)', stdin: '', args: [], limits }, 'one file: the request it always was');
  assert.deepEqual(buildRequest({
    code: 'import helper',
    files: [
      { path: 'helper.py', content: 'X = 1', encoding: 'utf8' },
      { path: './data//b.bin', content: 'AP8=', encoding: 'base64' },
    ],
    stdin: 'in',
    args: 'a "b c"',
  }, {}), {
    code: 'import helper',
    stdin: 'in',
    args: ['a', 'b c'],
    limits: {},
    files: [
      { path: 'helper.py', content: 'X = 1' },
      { path: 'data/b.bin', content: 'AP8=', encoding: 'base64' },
    ],
  });
  assert.throws(() => buildRequest({ code: '', files: [{ path: 'main.py', content: '' }] }), /File “main\.py”: There is already a file named main\.py/,
    'the server refuses `files` holding the entry when `code` is given');
  assert.throws(() => buildRequest({ code: '', files: [{ path: 'a', content: '' }, { path: 'a/b', content: '' }] }), /a is a file/);
  assert.throws(() => buildRequest({ code: '', files: [{ path: '../up', content: '' }] }), /“\.\.”/);
});

test('share links carry the files; links without files still open', () => {
  const state = {
    code: 'from helper import greet\nprint(greet("✓"))',
    files: [
      { path: 'helper.py', content: 'def greet(who):\n    return f"hi {who}"\n', encoding: 'utf8' },
      { path: 'data/blob.bin', content: bytesToBase64(new Uint8Array([0, 159, 146, 150, 255])), encoding: 'base64' },
    ],
    stdin: 'x',
    args: '',
    limits: {},
  };
  const fragment = encodeShare(state);
  assert.match(fragment, /^code=[\w-]+&files=[\w-]+&stdin=[\w-]+$/);
  assert.deepEqual(decodeShare(`#${fragment}`), state);
  const old = decodeShare(`#code=${toBase64Url('print(1)')}`);
  assert.deepEqual(old, { code: 'print(1)', stdin: '', args: '', limits: {} }, 'an old link: main.py only');
  assert.equal(encodeShare({ code: 'x', files: [] }), `code=${toBase64Url('x')}`, 'no files, no `files` parameter');

  const link = (files) => `#code=${toBase64Url('')}&files=${toBase64Url(JSON.stringify(files))}`;
  assert.deepEqual(decodeShare(link([{ path: './a.py', content: '1' }])).files, [{ path: 'a.py', content: '1', encoding: 'utf8' }]);
  for (const damaged of [
    link({ path: 'a', content: '' }),
    link([{ path: '../a', content: '' }]),
    link([{ path: 'main.py', content: '' }]),
    link([{ path: 'a', content: '' }, { path: 'a', content: '' }]),
    link([{ path: 'a', content: 1 }]),
    link([{ path: 'a', content: '!!', encoding: 'base64' }]),
    link([{ path: 'a', content: '', encoding: 'hex' }]),
    `#code=${toBase64Url('')}&files=${toBase64Url('[')}`,
  ]) {
    assert.equal(decodeShare(damaged), null, damaged);
  }
});

test('base64 decodes to the exact bytes for downloads', () => {
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  assert.deepEqual(base64ToBytes(bytesToBase64(all)), all);
  assert.equal(bytesToBase64(new Uint8Array([0, 255])), 'AP8=');
  assert.deepEqual(base64ToBytes('AP8='), new Uint8Array([0, 255]));
  assert.deepEqual(base64ToBytes(''), new Uint8Array([]));
  const big = Uint8Array.from({ length: 200_000 }, (_, i) => (i * 7) & 255);
  assert.deepEqual(base64ToBytes(bytesToBase64(big)), big, 'past one chunk of String.fromCharCode');
  for (const bad of ['A', 'AP8', '@@@@', 'AP8=\n', 'AP==8']) assert.throws(() => base64ToBytes(bad), /not base64/, bad);

  // A response's files: base64 decoded, UTF-8 encoded, or none when not returned.
  assert.deepEqual(fileBytes({ path: 'b', size: 2, encoding: 'base64', content: 'AP8=' }), new Uint8Array([0, 255]));
  assert.deepEqual(fileBytes({ path: 't', size: 4, encoding: 'utf8', content: 'hé\n' }), new Uint8Array([104, 195, 169, 10]));
  assert.equal(fileBytes({ path: 'big', size: 5000, encoding: null, content: null }), null);
  assert.equal(fileBytes({ path: 'x', size: 1, encoding: 'base64', content: '%%' }), null);
});

test('uploads: UTF-8 text is editable, anything else goes as base64', () => {
  const bytes = (s) => new TextEncoder().encode(s);
  assert.deepEqual(decodeUpload(bytes('a,b\n1,2\n')), { encoding: 'utf8', content: 'a,b\n1,2\n', size: 8 });
  assert.deepEqual(decodeUpload(bytes('x\r\ny\r\n')), { encoding: 'utf8', content: 'x\r\ny\r\n', size: 6 }, 'CRLF is kept');
  const bom = decodeUpload(new Uint8Array([0xef, 0xbb, 0xbf, 0x61]));
  assert.deepEqual(bom, { encoding: 'utf8', content: '\ufeffa', size: 4 }, 'a byte-order mark is kept');
  for (const binary of [new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0xff]), bytes('a\0b'), bytes('mixed\r\nends\n'), bytes('old\rmac')]) {
    const up = decodeUpload(binary);
    assert.equal(up.encoding, 'base64');
    assert.equal(up.size, binary.length);
    assert.deepEqual(base64ToBytes(up.content), binary, 'the bytes survive');
  }
});

test('images by extension, sizes and names for the files list', () => {
  assert.equal(imageMime('out.png'), 'image/png');
  assert.equal(imageMime('plots/a.JPG'), 'image/jpeg');
  assert.equal(imageMime('a.jpeg'), 'image/jpeg');
  assert.equal(imageMime('pic.svg'), 'image/svg+xml');
  for (const other of ['a.txt', 'png', 'a.png/b', 'a.gif', 'svg.html']) assert.equal(imageMime(other), null, other);
  assert.equal(dataUrl('image/png', new Uint8Array([0, 255])), 'data:image/png;base64,AP8=');
  assert.deepEqual([0, 1, 812, 1536, 3 << 20, 1_100_000].map(formatSize), ['0 bytes', '1 byte', '812 bytes', '1.5 KiB', '3 MiB', '1.05 MiB']);
  assert.equal(baseName('plots/2024/out.png'), 'out.png');
  assert.equal(baseName('out.png'), 'out.png');
});

// ---- runtimes: the picker, its limits, requests and links ---------------------

/** Limits in API units, as GET /runtimes gives them (the page reads only its own six). */
const limitSet = (memory, timeout) => ({
  default: { timeout_ms: timeout, fuel: 10_000_000_000, memory_bytes: memory, output_bytes: 65536, files_bytes: 16 << 20, output_files_bytes: 1 << 20 },
  max: { timeout_ms: 30_000, fuel: 100_000_000_000, memory_bytes: 512 << 20, output_bytes: 1 << 20, files_bytes: 64 << 20, output_files_bytes: 16 << 20 },
});
/** A GET /runtimes body with the two runtimes of this server. */
const RUNTIMES = {
  runtimes: [
    { name: 'python', version: '3.14.0', full_version: '3.14.0 (main)', default: true, missing_modules: [], packages: {}, limits: limitSet(128 << 20, 5000) },
    {
      name: 'python-scientific', version: '3.15.0', full_version: '3.15.0 (main)', default: false, missing_modules: [],
      packages: { attrs: '26.1.0', matplotlib: '3.11.2', numpy: '2.5.2', pandas: '3.0.6', 'scikit-learn': '1.9.1', scipy: '1.18.1' },
      limits: limitSet(256 << 20, 10_000),
    },
  ],
  limits: limitSet(128 << 20, 5000),
  executor: 'host',
};
/** The picker's options as [value, label, unavailable] triples. */
const options = (view) => view.options.map((o) => [o.value, o.label, o.unavailable]);

test('runtime labels: language and version, then the headline packages', () => {
  assert.equal(runtimeLabel(RUNTIMES.runtimes[0]), 'Python 3.14.0');
  assert.equal(runtimeLabel(RUNTIMES.runtimes[1]), 'Python 3.15.0 + numpy, pandas, matplotlib');
  assert.equal(runtimeLabel({ name: 'python-data', version: '3.15.0', packages: { tqdm: '1', attrs: '2' } }), 'Python 3.15.0 + attrs, tqdm', 'no headline package: the first names');
  assert.equal(runtimeLabel({ name: 'ruby', version: '3.3.0', packages: {} }), 'Ruby 3.3.0');
  assert.equal(runtimeLabel({ name: 'python' }), 'Python', 'no version: none shown');
});

test('the picker: the default is selected unless the program names another', () => {
  const fresh = pickerState(RUNTIMES, '');
  assert.deepEqual(options(fresh), [
    ['python', 'Python 3.14.0', false],
    ['python-scientific', 'Python 3.15.0 + numpy, pandas, matplotlib', false],
  ], 'what the server lists, in its order');
  assert.equal(fresh.selected, 'python');
  assert.equal(fresh.known, true);
  assert.equal(fresh.unavailable, false);
  assert.match(fresh.options[1].title, /^python-scientific: attrs 26\.1\.0, matplotlib 3\.11\.2, .*scipy 1\.18\.1$/, 'the tooltip lists every package');
  assert.match(fresh.options[0].title, /the server default/);

  assert.equal(pickerState(RUNTIMES, 'python-scientific').selected, 'python-scientific', 'a draft, link or history entry naming it');
  const flipped = { ...RUNTIMES, runtimes: RUNTIMES.runtimes.map((r) => ({ ...r, default: r.name === 'python-scientific' })) };
  assert.equal(pickerState(flipped, '').selected, 'python-scientific', 'the one marked default, wherever it is');
  assert.equal(defaultRuntime({ runtimes: [{ name: 'a' }, { name: 'b' }] }).name, 'a', 'none marked: the first');

  // Two runtimes that would read the same are told apart by name.
  const twins = { runtimes: [{ name: 'python', version: '3.14.0', default: true }, { name: 'python-debug', version: '3.14.0' }] };
  assert.deepEqual(options(pickerState(twins)).map(([, label]) => label), ['Python 3.14.0 (python)', 'Python 3.14.0 (python-debug)']);
});

test('the picker: a runtime the server does not list stays selected, marked unavailable', () => {
  const view = pickerState(RUNTIMES, 'python-quantum');
  assert.deepEqual(options(view), [
    ['python', 'Python 3.14.0', false],
    ['python-scientific', 'Python 3.15.0 + numpy, pandas, matplotlib', false],
    ['python-quantum', 'python-quantum (not on this server)', true],
  ]);
  assert.equal(view.selected, 'python-quantum', 'not silently switched to the default');
  assert.equal(view.unavailable, true);

  const none = pickerState({ runtimes: [] }, '');
  assert.deepEqual(options(none), [['', 'no runtime listed', true]]);
  assert.equal(none.unavailable, true);
});

test('the picker before (or without) the server’s list keeps the program’s choice', () => {
  const waiting = pickerState(null, 'python-scientific');
  assert.deepEqual(options(waiting), [['python-scientific', 'python-scientific', false]], 'the name alone, not marked unavailable');
  assert.equal(waiting.selected, 'python-scientific');
  assert.equal(waiting.known, false);
  assert.equal(waiting.unavailable, false);
  const unnamed = pickerState(null, '');
  assert.deepEqual(options(unnamed), [['', 'server default', false]], "'' is whatever the server defaults to");
  assert.equal(unnamed.selected, '');
});

test('limits follow the selected runtime', () => {
  assert.equal(runtimeLimits(RUNTIMES, 'python').default.memory_bytes, 128 << 20);
  assert.equal(runtimeLimits(RUNTIMES, 'python-scientific').default.memory_bytes, 256 << 20);
  assert.equal(runtimeLimits(RUNTIMES, 'python-scientific').default.timeout_ms, 10_000);
  assert.equal(runtimeLimits(RUNTIMES, '').default.memory_bytes, 128 << 20, "'' is the default runtime");
  assert.equal(runtimeLimits(RUNTIMES, 'python-quantum'), null, 'not listed: no defaults to show');
  assert.equal(runtimeLimits(null, 'python'), null, 'the list is not in');
  // A server that gives only the top-level limits: they are its default runtime's.
  const old = { runtimes: [{ name: 'python', version: '3.14.0', default: true }, { name: 'other', version: '1' }], limits: limitSet(64 << 20, 3000) };
  assert.equal(runtimeLimits(old, 'python').default.memory_bytes, 64 << 20);
  assert.equal(runtimeLimits(old, '').default.timeout_ms, 3000);
  assert.equal(runtimeLimits(old, 'other'), null);
  assert.equal(runtimeLimits({ limits: limitSet(1, 2) }, '').default.timeout_ms, 2, 'no list at all: the top-level limits');

  // As the form shows them: placeholders and maxima in the fields' units.
  assert.equal(formValue('memory_bytes', runtimeLimits(RUNTIMES, 'python').default.memory_bytes), '128');
  assert.equal(formValue('memory_bytes', runtimeLimits(RUNTIMES, 'python-scientific').default.memory_bytes), '256');
  assert.equal(formMax('memory_bytes', runtimeLimits(RUNTIMES, 'python-scientific').max.memory_bytes), '512');
});

test('examples name the runtime they need; one the server lacks is not offered', () => {
  const scientific = EXAMPLES.filter((e) => e.group === 'scientific');
  assert.deepEqual(scientific.map((e) => e.id), ['numpy', 'pandas', 'plot']);
  assert.ok(scientific.every((e) => e.runtime === 'python-scientific'));
  assert.match(scientific.find((e) => e.id === 'plot').code, /import matplotlib\.pyplot as plt[\s\S]*plt\.show\(\)/);
  assert.ok(EXAMPLES.filter((e) => e.group !== 'scientific').every((e) => e.runtime === undefined), 'the others run on the default');
  assert.equal(new Set(EXAMPLES.map((e) => e.id)).size, EXAMPLES.length, 'ids are unique');

  const plot = scientific.find((e) => e.id === 'plot');
  assert.equal(exampleOffered(plot, RUNTIMES), true);
  assert.equal(exampleOffered(plot, { runtimes: [RUNTIMES.runtimes[0]] }), false);
  assert.equal(exampleOffered(plot, null), true, 'while the list is unknown');
  assert.equal(exampleOffered(EXAMPLES[0], { runtimes: [] }), true, 'no runtime named: always');
});

test('the request names the runtime only when the program does', () => {
  assert.deepEqual(buildRequest({ code: 'x', runtime: 'python-scientific' }, {}),
    { code: 'x', stdin: '', args: [], limits: {}, runtime: 'python-scientific' });
  assert.equal('runtime' in buildRequest({ code: 'x', runtime: '' }, {}), false, "'' leaves it to the server");
  assert.equal('runtime' in buildRequest({ code: 'x' }, {}), false);
});

test('share links round-trip the runtime; links without one open on the default', () => {
  const state = { code: 'import numpy', stdin: '', args: '', runtime: 'python-scientific', limits: { memory_bytes: 256 << 20 } };
  const fragment = encodeShare(state);
  assert.match(fragment, /^code=[\w-]+&runtime=python-scientific&memory_bytes=268435456$/);
  assert.deepEqual(decodeShare(`#${fragment}`), state);
  const files = { ...state, files: [{ path: 'a.py', content: '1', encoding: 'utf8' }], stdin: 'in', args: 'x' };
  assert.deepEqual(decodeShare(`#${encodeShare(files)}`), files, 'with files, stdin and args too');
  assert.equal(encodeShare({ code: 'x', runtime: '' }), `code=${toBase64Url('x')}`, 'the default: no parameter');
  assert.equal('runtime' in decodeShare(`#code=${toBase64Url('x')}`), false, 'an older link: the server default');
  assert.equal(decodeShare(`#code=eA&runtime=python-quantum`).runtime, 'python-quantum', 'a name the server may lack is kept (the picker shows it unavailable)');
  for (const bad of ['', '%20', '<b>x</b>', 'a b', '-python', 'p'.repeat(65)]) {
    assert.equal(decodeShare(`#code=eA&runtime=${encodeURIComponent(bad)}`), null, `runtime=${bad}: a damaged link is ignored`);
  }
  assert.ok(isRuntimeName('python-scientific'));
  assert.ok(isRuntimeName('py3.15+np'));
  assert.ok(!isRuntimeName(undefined));
});
