// End-to-end: a real Chromium drives the playground served by RUNBOX_URL.
// Each state worth seeing is saved as a screenshot in OUT_DIR.
//
//   RUNBOX_URL=http://127.0.0.1:8080 RUNBOX_BUSY_URL=http://127.0.0.1:8082 npm test

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import {
  OUT_DIR, RUNBOX_BUSY_URL, RUNBOX_URL, editorText, launch, openPlayground, runWith, screenshot, typeCode, waitReady,
} from './browser.mjs';

/** Visible text without the trailing newline a program's last print leaves. */
const text = async (page, selector) => (await page.locator(selector).innerText()).replace(/\n$/, '');
/** The limit notice on the status line (from the response's `limit`), or null. */
const limitNotice = (page) => page.getAttribute('#status', 'data-limit');
/** The file tabs in order, the selected one marked with `*`. */
const fileTabs = (page) => page.$$eval('#tabs [role="tab"]', (tabs) => tabs.map((t) => `${t.dataset.path}${t.getAttribute('aria-selected') === 'true' ? '*' : ''}`));
/** Replaces the shown file's text in one insertion (no auto-indent or bracket closing on the way). */
async function setCode(page, code) {
  await page.click('.cm-content');
  await page.keyboard.press('ControlOrMeta+A');
  await page.keyboard.press('Delete');
  await page.keyboard.insertText(code);
}
/** GET /runtimes of the server under test, from node. */
const serverRuntimes = async () => (await fetch(`${RUNBOX_URL}/runtimes`)).json();
/** The name of the runtime the server marks default. */
const defaultRuntime = async () => (await serverRuntimes()).runtimes.find((r) => r.default).name;
/** The picker's options: value, text, selected, marked unavailable. */
const pickerOptions = (page) => page.$$eval('#runtime option', (options) => options.map((o) => ({
  value: o.value, label: o.textContent, selected: o.selected, unavailable: o.dataset.unavailable === 'true',
})));
/** The limit fields as the form shows them: [key, placeholder, max]. */
const limitFields = (page) => page.$$eval('.limits-grid input', (inputs) => inputs.map((i) => [i.id.replace('limit-', ''), i.placeholder, i.max]));
/** The same, from a runtime's `limits` (API units → the fields' units). */
const UNIT = { timeout_ms: 1, fuel: 1, memory_bytes: 1 << 20, output_bytes: 1 << 10, files_bytes: 1 << 20, output_files_bytes: 1 << 10 };
const expectedFields = (limits) => Object.entries(UNIT).map(([key, unit]) => [key, String(limits.default[key] / unit), String(Math.floor(limits.max[key] / unit))]);
/** Runs with the button; resolves to the JSON body the page sent. */
async function runCapturing(page) {
  const sent = page.waitForRequest((r) => r.method() === 'POST' && new URL(r.url()).pathname.endsWith('/execute'));
  await runWith(page, () => page.click('#run'));
  return (await sent).postDataJSON();
}

describe('playground', { timeout: 180_000 }, () => {
  let browser;
  before(async () => {
    browser = await launch();
    await waitReady(RUNBOX_URL);
    console.log(`server under test: ${RUNBOX_URL}; screenshots in ${OUT_DIR}`);
  });
  after(() => browser?.close());

  test('typed code runs with the button and with Ctrl/Cmd+Enter, once per press', async () => {
    const page = await openPlayground(browser.context);
    const layout = () => page.evaluate(() => ['#editor', '.output', '#stdout-box'].map((s) => {
      const r = document.querySelector(s).getBoundingClientRect();
      return [s, Math.round(r.top), Math.round(r.left), Math.round(r.width)];
    }));
    const before = await layout();

    await typeCode(page, "print('hello from the test')");
    assert.equal(await editorText(page), "print('hello from the test')", 'closing brackets and quotes are typed over, not doubled');
    await runWith(page, () => page.click('#run'));
    assert.equal(await text(page, '#badge'), 'OK');
    assert.equal(await text(page, '#stdout'), 'hello from the test');
    const meta = await text(page, '#meta');
    assert.match(meta, /time\s+[\d.]+ m?s/);
    assert.match(meta, /runtime\s+[\w.-]+ 3\.\d+\.\d+/, 'the runtime that ran it, from the response');
    assert.match(meta, /executor\s+\S+/);
    assert.deepEqual(await layout(), before, 'running must not move the editor or the output panel');
    await screenshot(page, '01-run-button');

    await typeCode(page, 'import sys\nprint(6 * 7)\nprint("to stderr", file=sys.stderr)');
    await runWith(page, () => page.keyboard.press('ControlOrMeta+Enter'));
    assert.equal(await text(page, '#stdout'), '42');
    assert.equal(await text(page, '#stderr'), 'to stderr');
    assert.match(await editorText(page), /print\(6 \* 7\)/, 'the shortcut runs; it does not insert a line');
    await screenshot(page, '02-shortcut-stdout-stderr');

    // The shortcut also works from the stdin box, and a running run can't be doubled.
    await typeCode(page, 'import time\ntime.sleep(2)\nprint(input())');
    await page.fill('#stdin', 'from stdin');
    let posts = 0;
    page.on('request', (r) => { if (r.method() === 'POST' && r.url().endsWith('/execute')) posts++; });
    await runWith(page, async () => {
      await page.focus('#stdin');
      await page.keyboard.press('ControlOrMeta+Enter');
      await page.waitForSelector('#run.running');
      assert.match(await text(page, '#run'), /Running \d+\.\d s/);
      assert.deepEqual(await layout(), before, 'nothing moves while running');
      assert.equal(await page.getAttribute('#run', 'aria-disabled'), 'true');
      await page.click('#run', { force: true }); // force: click it anyway, like an impatient user
      await page.keyboard.press('ControlOrMeta+Enter');
      assert.equal(await page.locator('#run.running').count(), 1, 'still the first run');
    });
    assert.equal(posts, 1, 'one run, however often Run is pressed meanwhile');
    assert.equal(await text(page, '#stdout'), 'from stdin');
    await page.close();
  });

  test('keyboard only: Tab reaches Run, then the file bar, Tab indents in the editor, Esc then Tab leaves it', async () => {
    const page = await openPlayground(browser.context);
    const focused = () => page.evaluate(() => {
      const active = document.activeElement;
      return active.getAttribute('role') === 'tab' ? `tab ${active.textContent}` : active.id || active.className;
    });
    await page.selectOption('#examples', 'hello');
    await page.focus('#examples');
    await page.keyboard.press('Tab');
    await page.keyboard.press('Tab');
    assert.equal(await focused(), 'run');
    await runWith(page, () => page.keyboard.press('Enter'));
    assert.match(await text(page, '#stdout'), /^Hello from runbox!/);

    // Between Run and the editor: the file bar (the selected tab is one stop, then New file and Upload).
    const stops = [];
    for (let i = 0; i < 3; i++) {
      await page.keyboard.press('Tab');
      stops.push(await focused());
    }
    assert.deepEqual(stops, ['tab main.py', 'file-add', 'file-upload']);
    await page.keyboard.press('Tab');
    assert.match(await focused(), /cm-content/);
    await page.keyboard.press('ControlOrMeta+End');
    await page.keyboard.type('for i in range(2):\nprint(i)');
    assert.match(await editorText(page), /\nfor i in range\(2\):\n {4}print\(i\)$/, 'auto-indent after the colon');
    await page.keyboard.press('Tab');
    assert.match(await editorText(page), /\n {8}print\(i\)$/, 'Tab indents the line');
    assert.match(await focused(), /cm-content/, 'and keeps the focus');
    await page.keyboard.press('Escape');
    await page.keyboard.press('Tab');
    assert.equal(await focused(), 'args');
    await page.close();
  });

  test('the infinite-loop example is stopped with the timeout badge', async () => {
    const page = await openPlayground(browser.context);
    await page.selectOption('#examples', 'timeout');
    assert.match(await editorText(page), /while True:/);
    await runWith(page, () => page.click('#run'));
    assert.equal(await text(page, '#badge'), 'TIMEOUT');
    assert.equal(await limitNotice(page), 'timeout');
    assert.match(await text(page, '#explain'), /^Timed out: the program ran past its 3 s wall-clock limit/);
    assert.match(await page.getAttribute('#explain', 'title'), /wall-clock limit of 3000 ms/, "the server's own words");
    assert.match(await text(page, '#stderr .note'), /^\[runbox\] timeout: the run exceeded its wall-clock limit of 3000 ms$/, "the server's note, set apart");
    assert.match(await text(page, '#stdout'), /still going: 1\n/);
    await screenshot(page, '03-timeout');
    await page.close();
  });

  test('the other limit examples show fuel, memory and truncation', async () => {
    const page = await openPlayground(browser.context);
    const cases = [
      ['fuel', 'FUEL EXHAUSTED', 'fuel', /^Out of fuel: the program used up its CPU budget of [\d.]+ (thousand|million|billion|trillion) units and was stopped\.$/],
      ['memory', 'MEMORY EXCEEDED', 'memory', /^Out of memory: the program asked for more than its \d+ MiB memory limit and was stopped\.$/],
      ['flood', 'OK', 'output', /^Finished normally, but printed more than the \d+ KiB output limit; the rest was cut\.$/],
    ];
    for (const [example, badge, limit, explanation] of cases) {
      await page.selectOption('#examples', example);
      await runWith(page, () => page.click('#run'));
      assert.equal(await text(page, '#badge'), badge, example);
      assert.equal(await limitNotice(page), limit, example);
      assert.match(await text(page, '#explain'), explanation, example);
      await screenshot(page, `04-limit-${example}`);
    }
    assert.ok(await page.isVisible('#stdout-box .cut'), 'the flood is marked truncated');
    assert.match(await text(page, '#stdout'), /\[output truncated: it went past the \d+ KiB output limit\]$/);
    await page.close();
  });

  test('a [runbox] line the program prints itself is plain stderr, not a limit', async () => {
    const page = await openPlayground(browser.context);
    const forged = '[runbox] timeout: the run exceeded its wall-clock limit of 5 ms';
    await typeCode(page, `import sys; print('${forged}', file=sys.stderr)`);
    await runWith(page, () => page.click('#run'));
    assert.equal(await text(page, '#badge'), 'OK');
    assert.equal(await limitNotice(page), null, 'no limit notice');
    assert.equal(await text(page, '#explain'), 'Finished normally.');
    assert.equal(await page.getAttribute('#explain', 'title'), null);
    assert.equal(await text(page, '#stderr'), forged, 'shown as written');
    assert.equal(await page.locator('#stderr .note').count(), 0, 'and not set apart');
    assert.equal(await page.locator('#stderr-box .cut').isVisible(), false);
    await screenshot(page, '12-forged-note');
    await page.close();
  });

  test('a share link restores the code, stdin and args', async () => {
    const page = await openPlayground(browser.context);
    await page.selectOption('#examples', 'stdin');
    await page.click('.cm-content');
    await page.keyboard.press('ControlOrMeta+End');
    await page.keyboard.insertText('print("shared snippet ✓ ünïcode")\n');
    await page.fill('#stdin', '10\n20\n');
    await page.fill('#args', "one 'two three'");
    const code = await editorText(page);

    await page.click('#share');
    await page.waitForSelector('#share-panel:not([hidden])');
    const link = await page.inputValue('#share-url');
    assert.match(link, /#code=[\w-]+&stdin=[\w-]+&args=[\w-]+&runtime=[\w.-]+$/);
    await screenshot(page, '05-share-link');
    // Change this tab's draft so the new tab can only get the snippet from the link.
    await page.keyboard.press('Escape');
    await page.selectOption('#examples', 'hello');
    // The example's draft is stored (replacing the typed one) before the tab closes.
    await page.waitForFunction(() => {
      const draft = localStorage.getItem('runbox.draft');
      return draft !== null && !draft.includes('shared snippet');
    });
    await page.close();

    const shared = await browser.context.newPage();
    await shared.goto(link);
    await shared.waitForFunction(() => document.querySelector('.cm-content').textContent.includes('shared snippet'));
    assert.equal(await editorText(shared), code);
    assert.equal(await shared.inputValue('#stdin'), '10\n20\n');
    assert.equal(await shared.inputValue('#args'), "one 'two three'");
    await runWith(shared, () => shared.click('#run'));
    assert.equal(await text(shared, '#stdout'), "args: ['one', 'two three']\nread 2 numbers from stdin; sum = 30\nshared snippet ✓ ünïcode");
    await screenshot(shared, '06-share-restored');
    await shared.close();
  });

  test('API failures are spelled out: network down and 503 (simulated in the browser)', async () => {
    const page = await openPlayground(browser.context);
    await page.route('**/execute', (route) => route.abort('internetdisconnected'));
    await page.click('#run'); // no response ever arrives
    await page.waitForSelector('#badge.failure');
    assert.equal(await text(page, '#badge'), 'OFFLINE');
    assert.match(await text(page, '#explain'), /Could not reach the runbox server|offline/);
    await screenshot(page, '07-network-down');

    await page.unroute('**/execute');
    await page.route('**/execute', (route) => route.fulfill({
      status: 503,
      headers: { 'retry-after': '7', 'content-type': 'application/json' },
      body: JSON.stringify({ error: { code: 'no_executors', message: 'no executor is ready' }, id: 'req-1' }),
    }));
    await runWith(page, () => page.click('#run'));
    assert.equal(await text(page, '#badge'), 'UNAVAILABLE');
    assert.equal(await text(page, '#explain'), 'No executors are available right now; retry in 7 s.');
    assert.match(await text(page, '#meta'), /HTTP\s+503.*code\s+no_executors.*request\s+req-1/s);
    await page.close();

    const down = await browser.context.newPage();
    await down.route('**/runtimes', (route) => route.abort('connectionrefused'));
    // A link naming a runtime: with no list to check it against, the picker keeps it.
    await down.goto(`${RUNBOX_URL}/#code=${Buffer.from('print(1)').toString('base64url')}&runtime=python-scientific`);
    await down.waitForSelector('#api-status.warn:not([hidden])');
    assert.equal(await text(down, '#api-status'), 'API unreachable');
    assert.equal(await text(down, '#badge'), 'OFFLINE', 'a dead API shows before anyone presses Run');
    assert.equal(await down.inputValue('#runtime'), 'python-scientific', 'the picker keeps the program\'s choice');
    assert.equal(await down.getAttribute('#runtime', 'data-state'), 'pending');
    assert.equal(await down.locator('#runtime option[data-unavailable]').count(), 0, 'not marked unavailable: the server was not asked');
    await down.close();
  });

  test('a busy server answers 429 and the page says when to retry', { skip: !RUNBOX_BUSY_URL && 'set RUNBOX_BUSY_URL to a server with capacity 1 and no queue' }, async () => {
    await waitReady(RUNBOX_BUSY_URL);
    const page = await openPlayground(browser.context, RUNBOX_BUSY_URL);
    await typeCode(page, "print('squeezed in')");
    // Take the only slot with a slow run straight through the API…
    const slow = fetch(`${RUNBOX_BUSY_URL}/execute`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ code: 'import time; time.sleep(3)' }),
    });
    await new Promise((r) => setTimeout(r, 600));
    // …then run from the page.
    await runWith(page, () => page.click('#run'));
    assert.equal(await text(page, '#badge'), 'BUSY');
    assert.match(await text(page, '#explain'), /^Busy, retry in \d+ s/);
    assert.match(await text(page, '#meta'), /HTTP\s+429/);
    await screenshot(page, '08-busy-429');
    const slowResult = await (await slow).json();
    assert.equal(slowResult.status, 'ok', 'the slow run itself finished');
    await runWith(page, () => page.click('#run'));
    assert.equal(await text(page, '#stdout'), 'squeezed in', 'once free, the same page runs');
    await page.close();
  });

  test('dark theme follows the system, narrow screens get one column', async () => {
    const page = await openPlayground(browser.context);
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.selectOption('#examples', 'exception');
    await runWith(page, () => page.click('#run'));
    assert.equal(await text(page, '#badge'), 'ERROR');
    assert.match(await text(page, '#stderr'), /ValueError: invalid literal for int\(\) with base 10: 'forty'/);
    const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    const [r, g, b] = background.match(/\d+/g).map(Number);
    assert.ok(r + g + b < 120, `dark background, got ${background}`);
    await screenshot(page, '09-dark');

    await page.setViewportSize({ width: 390, height: 844 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.equal(overflow, 0, 'no sideways scrolling on a phone');
    const [editor, output] = await Promise.all(['#editor', '.output'].map((s) => page.locator(s).boundingBox()));
    assert.ok(output.y > editor.y + editor.height, 'output stacks under the editor');
    await screenshot(page, '10-narrow-dark', { fullPage: true });
    await page.emulateMedia({ colorScheme: 'light' });
    await screenshot(page, '11-narrow-light', { fullPage: true });
    await page.close();
  });

  // ---- files ------------------------------------------------------------------------------

  test('several files: tabs are added (names checked as the server does), renamed, deleted; main.py imports the others', async () => {
    const page = await openPlayground(browser.context);
    await page.selectOption('#examples', 'hello'); // a program of one file to start from
    assert.deepEqual(await fileTabs(page), ['main.py*']);
    assert.equal(await page.isVisible('#file-rename'), false, 'main.py cannot be renamed');
    assert.equal(await page.isVisible('#file-delete'), false, 'nor deleted');

    await page.click('#file-add');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'file-name');
    for (const [bad, why] of [
      ['../up.py', /“\.\.”/], ['/abs.py', /relative/], ['a\\b.py', /“\\”/], ['main.py', /already a file named main\.py/], ['  ', /Give the file a name/],
    ]) {
      await page.fill('#file-name', bad);
      await page.keyboard.press('Enter');
      assert.equal(await page.isVisible('#file-error'), true, bad);
      assert.match(await text(page, '#file-error'), why, bad);
      assert.equal(await page.getAttribute('#file-name', 'aria-invalid'), 'true', bad);
      assert.deepEqual(await fileTabs(page), ['main.py*'], `${bad} adds no tab`);
    }
    await screenshot(page, '13-file-name-refused');
    await page.fill('#file-name', 'helper.py');
    assert.equal(await page.isVisible('#file-error'), false, 'typing clears the error');
    await page.keyboard.press('Enter');
    assert.deepEqual(await fileTabs(page), ['main.py', 'helper.py*']);
    assert.equal(await page.isVisible('#file-form'), false);
    assert.match(await page.evaluate(() => document.activeElement.className), /cm-content/, 'the new file is ready to type in');
    assert.equal(await editorText(page), '');
    const helper = 'def greet(name):\n    return f"hello, {name}, from helper.py"\n';
    await page.keyboard.insertText(helper);

    // The tabs are one keyboard stop; the arrows move between them.
    await page.focus('#tabs [aria-selected="true"]');
    await page.keyboard.press('ArrowLeft');
    assert.deepEqual(await fileTabs(page), ['main.py*', 'helper.py']);
    assert.match(await editorText(page), /^import sys\n/, 'each tab keeps its own text');
    const main = 'from helper import greet\nprint(greet("main.py"))';
    await setCode(page, main);

    let body = await runCapturing(page);
    assert.deepEqual(body.code, main, 'main.py is `code`');
    assert.deepEqual(body.files, [{ path: 'helper.py', content: helper }], 'the other tabs are `files`');
    assert.equal(body.entry, undefined, 'the entry is main.py');
    assert.equal(await text(page, '#badge'), 'OK');
    assert.equal(await text(page, '#stdout'), 'hello, main.py, from helper.py');
    assert.equal(await page.isVisible('#files-box'), false, 'the run wrote no files');
    await screenshot(page, '14-multi-file');

    // Rename into a folder: it imports as a package path.
    await page.dblclick('#tabs [data-path="helper.py"]');
    assert.equal(await text(page, '#file-form-label'), 'Rename helper.py to', 'a double click renames');
    await page.keyboard.press('Escape');
    assert.equal(await page.isVisible('#file-form'), false);
    assert.equal(await page.evaluate(() => document.activeElement.id), 'file-rename');
    assert.deepEqual(await fileTabs(page), ['main.py', 'helper.py*']);
    await page.click('#file-rename');
    assert.equal(await page.inputValue('#file-name'), 'helper.py');
    await page.fill('#file-name', 'main.py');
    await page.keyboard.press('Enter');
    assert.match(await text(page, '#file-error'), /already a file named main\.py/);
    await page.fill('#file-name', 'util/greeting.py');
    await page.keyboard.press('Enter');
    assert.deepEqual(await fileTabs(page), ['main.py', 'util/greeting.py*']);
    assert.equal(await editorText(page), helper, 'renaming keeps the text');
    await page.click('#tabs [data-path="main.py"]');
    await setCode(page, 'from util.greeting import greet\nprint(greet("a package"))');
    body = await runCapturing(page);
    assert.deepEqual(body.files.map((f) => f.path), ['util/greeting.py']);
    assert.equal(await text(page, '#stdout'), 'hello, a package, from helper.py');

    // Delete, Undo, delete again: the file is no longer sent.
    await page.click('#tabs [data-path="util/greeting.py"]');
    await page.click('#file-delete');
    assert.deepEqual(await fileTabs(page), ['main.py*']);
    assert.match(await text(page, '#file-note'), /^Deleted util\/greeting\.py\./);
    await page.click('#file-undo');
    assert.deepEqual(await fileTabs(page), ['main.py', 'util/greeting.py*']);
    assert.equal(await editorText(page), helper, 'undo brings the text back');
    await page.keyboard.press('Delete'); // the focus is on the restored tab
    assert.deepEqual(await fileTabs(page), ['main.py*']);
    body = await runCapturing(page);
    assert.equal(body.files, undefined, 'one file again: no `files`');
    assert.equal(await text(page, '#badge'), 'ERROR');
    assert.match(await text(page, '#stderr'), /ModuleNotFoundError: No module named 'util'/);
    await page.close();
  });

  test('files the run writes are listed with downloads; a PNG and an SVG show inline', async () => {
    const page = await openPlayground(browser.context);
    const title = await page.title();
    await setCode(page, String.raw`import hashlib
import struct
import zlib


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


rows = [[(255, 0, 0), (0, 255, 0), (0, 0, 255)], [(255, 255, 0), (0, 255, 255), (255, 0, 255)]]
raw = b"".join(b"\x00" + bytes(c for px in row for c in px) for row in rows)
png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 3, 2, 8, 2, 0, 0, 0))
       + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
with open("out.png", "wb") as f:
    f.write(png)
svg = ('<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20">'
       '<script>parent.document.title = "svg script ran"; document.title = "svg script ran"</script>'
       '<rect width="40" height="20" fill="teal"/></svg>')
with open("pic.svg", "w") as f:
    f.write(svg)
with open("big.bin", "wb") as f:
    f.write(bytes(1_100_000))  # past the 1 MiB of file contents a response returns
print(hashlib.sha256(png).hexdigest(), len(png))
print(hashlib.sha256(svg.encode()).hexdigest(), len(svg))`);
    await runWith(page, () => page.click('#run'));
    assert.equal(await text(page, '#badge'), 'OK');
    const [[pngSha, pngSize], [svgSha, svgSize]] = (await text(page, '#stdout')).split('\n').map((l) => l.split(' '));

    assert.equal(await page.isVisible('#files-box'), true);
    assert.equal(await page.isVisible('#files-cut'), true, 'truncated.files is shown');
    const rows = await page.$$eval('#out-files li', (lis) => lis.map((li) => [
      li.querySelector('.path').textContent, li.querySelector('.size').textContent,
      li.querySelector('a')?.textContent ?? li.querySelector('.missing').textContent,
    ]));
    assert.deepEqual(rows, [
      ['big.bin', '1.05 MiB', 'not returned (over the output cap)'],
      ['out.png', `${pngSize} bytes`, 'download'],
      ['pic.svg', `${svgSize} bytes`, 'download'],
    ]);

    // Inline: <img> elements from data: URLs with the right MIME type, drawn at their real size.
    await page.waitForFunction(() => {
      const imgs = [...document.querySelectorAll('#out-images img')];
      return imgs.length === 2 && imgs.every((img) => img.complete && img.naturalWidth > 0);
    });
    const images = await page.$$eval('#out-images img', (imgs) => imgs.map((img) => ({
      path: img.dataset.path, width: img.naturalWidth, height: img.naturalHeight, src: img.src.slice(0, img.src.indexOf(',') + 1),
    })));
    assert.deepEqual(images, [
      { path: 'out.png', width: 3, height: 2, src: 'data:image/png;base64,' },
      { path: 'pic.svg', width: 40, height: 20, src: 'data:image/svg+xml;base64,' },
    ]);
    assert.ok((await page.locator('#out-images img[data-path="out.png"]').boundingBox()).width >= 48, 'a tiny image is scaled up to be seen');
    assert.equal(await page.title(), title, 'the SVG\'s script did not run');
    assert.equal(await page.locator('#out-images svg, #out-files svg').count(), 0, 'no SVG markup in the page');

    // Downloads: blob: links whose bytes are the file's, base64 decoded.
    const sha = (selector) => page.$eval(selector, async (a) => {
      const bytes = await (await fetch(a.href)).arrayBuffer();
      return [...new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))].map((b) => b.toString(16).padStart(2, '0')).join('');
    });
    assert.match(await page.getAttribute('a[download="out.png"]', 'href'), /^blob:/);
    assert.equal(await sha('a[download="out.png"]'), pngSha);
    assert.equal(await sha('a[download="pic.svg"]'), svgSha);
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('a[download="out.png"]')]);
    assert.equal(download.suggestedFilename(), 'out.png');
    const saved = await readFile(await download.path());
    assert.equal(createHash('sha256').update(saved).digest('hex'), pngSha, 'the saved file has the bytes the run wrote');
    await screenshot(page, '15-output-files');

    // A failure to run clears the list.
    await page.route('**/execute', (route) => route.abort('internetdisconnected'));
    await page.click('#run');
    await page.waitForSelector('#badge.failure');
    assert.equal(await page.isVisible('#files-box'), false);
    await page.close();
  });

  test('"Returned files (KiB)" sets output_files_bytes: a file past it is listed as not returned', async () => {
    const { limits } = await (await fetch(`${RUNBOX_URL}/runtimes`)).json();
    const page = await openPlayground(browser.context);
    await page.selectOption('#examples', 'hello'); // no limits set
    await page.click('#limits summary');
    assert.equal(await page.getAttribute('#limit-output_files_bytes', 'placeholder'), String(limits.default.output_files_bytes / 1024), 'the server default, in KiB');
    assert.equal(await page.getAttribute('#limit-output_files_bytes', 'max'), String(Math.floor(limits.max.output_files_bytes / 1024)));
    assert.equal(await page.getAttribute('#limit-files_bytes', 'placeholder'), String(limits.default.files_bytes / (1 << 20)), 'the server default, in MiB');
    assert.equal(await text(page, '#limits-summary'), 'server defaults');
    await page.fill('#limit-output_files_bytes', '1');
    assert.equal(await text(page, '#limits-summary'), 'custom: returned files');
    await setCode(page, 'with open("big.txt", "w") as f:\n    f.write("x" * 1999 + "\\n")\nprint("wrote big.txt")');

    const request = await runCapturing(page);
    assert.deepEqual(request.limits, { output_files_bytes: 1024 }, 'KiB sent as bytes; nothing else set');
    assert.equal(await text(page, '#badge'), 'OK');
    assert.equal(await text(page, '#stdout'), 'wrote big.txt');
    assert.equal(await page.isVisible('#files-box'), true);
    assert.equal(await page.isVisible('#files-cut'), true, 'truncated.files is shown');
    const rows = await page.$$eval('#out-files li', (lis) => lis.map((li) => [
      li.querySelector('.path').textContent, li.querySelector('.size').title,
      li.querySelector('a')?.textContent ?? li.querySelector('.missing').textContent,
    ]));
    assert.deepEqual(rows, [['big.txt', '2000 bytes', 'not returned (over the output cap)']]);
    assert.equal(await page.locator('#out-files a').count(), 0, 'no download for a file not returned');
    await screenshot(page, '18-returned-files-cap');

    // Leave the draft without limits for the tests after this one (stored at once on an example).
    await page.selectOption('#examples', 'hello');
    assert.equal(await text(page, '#limits-summary'), 'server defaults');
    await page.close();
  });

  test('uploads become tabs (binary ones as base64), and a share link carries every file', async () => {
    const page = await openPlayground(browser.context);
    await page.selectOption('#examples', 'hello');
    await page.click('#file-add');
    await page.fill('#file-name', 'lib/words.py');
    await page.keyboard.press('Enter');
    await page.keyboard.insertText('WORDS = ["ünïcode", "✓"]\n');
    await page.setInputFiles('#upload', [
      { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('line 1\nline 2\n') },
      { name: 'blob.bin', mimeType: 'application/octet-stream', buffer: Buffer.from([0, 1, 2, 254, 255]) },
    ]);
    await page.waitForFunction(() => document.querySelectorAll('#tabs [role="tab"]').length === 4);
    assert.deepEqual(await fileTabs(page), ['main.py', 'lib/words.py', 'notes.txt', 'blob.bin*']);
    assert.equal(await page.isVisible('#editor'), false, 'a binary file is not edited');
    assert.match(await text(page, '#binary-view'), /blob\.bin\s+binary file, 5 bytes/);
    await screenshot(page, '16-binary-tab');
    await page.click('#tabs [data-path="notes.txt"]');
    assert.equal(await editorText(page), 'line 1\nline 2\n');

    await page.setInputFiles('#upload', [{ name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('again') }]);
    await page.waitForSelector('#file-error:not([hidden])');
    assert.match(await text(page, '#file-error'), /notes\.txt: There is already a file named notes\.txt\./);
    assert.equal((await fileTabs(page)).length, 4, 'a duplicate upload adds no tab');

    await page.click('#tabs [data-path="main.py"]');
    await setCode(page, 'from lib.words import WORDS\nprint(*WORDS)\nprint(open("notes.txt").read().splitlines())\nprint(list(open("blob.bin", "rb").read()))');
    const expected = "ünïcode ✓\n['line 1', 'line 2']\n[0, 1, 2, 254, 255]";
    const body = await runCapturing(page);
    assert.deepEqual(body.files.at(-1), { path: 'blob.bin', content: 'AAEC/v8=', encoding: 'base64' });
    assert.equal(await text(page, '#stdout'), expected);

    await page.click('#share');
    await page.waitForSelector('#share-panel:not([hidden])');
    const link = await page.inputValue('#share-url');
    assert.match(link, /#code=[\w-]+&files=[\w-]+&runtime=[\w.-]+$/);
    await page.keyboard.press('Escape');
    await page.close();

    const shared = await browser.context.newPage();
    await shared.goto(link);
    await shared.waitForFunction(() => document.querySelectorAll('#tabs [role="tab"]').length === 4);
    assert.deepEqual(await fileTabs(shared), ['main.py*', 'lib/words.py', 'notes.txt', 'blob.bin']);
    await shared.click('#tabs [data-path="lib/words.py"]');
    assert.equal(await editorText(shared), 'WORDS = ["ünïcode", "✓"]\n');
    await shared.click('#tabs [data-path="blob.bin"]');
    assert.match(await text(shared, '#binary-view'), /binary file, 5 bytes/);
    await runWith(shared, () => shared.click('#run'));
    assert.equal(await text(shared, '#stdout'), expected);
    await screenshot(shared, '17-share-files-restored');
    await shared.close();

    // A link from before files existed is still a program of one file (the draft's tabs do not leak in).
    const old = await openPlayground(browser.context, RUNBOX_URL, `#code=${Buffer.from('print("old link")').toString('base64url')}`);
    assert.deepEqual(await fileTabs(old), ['main.py*']);
    assert.equal(await old.inputValue('#runtime'), await defaultRuntime(), 'and runs on the default runtime');
    await runWith(old, () => old.click('#run'));
    assert.equal(await text(old, '#stdout'), 'old link');
    await old.close();
  });
  // ---- runtimes ---------------------------------------------------------------------------

  test('the runtime picker lists what GET /runtimes lists; each run carries the chosen runtime and the limits are its own', async () => {
    const info = await serverRuntimes();
    const page = await openPlayground(browser.context);
    await page.selectOption('#examples', 'hello'); // a plain example: the default runtime
    const listed = await pickerOptions(page);
    assert.deepEqual(listed.map((o) => o.value), info.runtimes.map((r) => r.name), 'every runtime the server lists, in its order, and nothing else');
    assert.deepEqual(listed.filter((o) => o.selected).map((o) => o.value), [info.runtimes.find((r) => r.default).name], 'the default is selected');
    for (const [i, runtime] of info.runtimes.entries()) {
      assert.ok(listed[i].label.startsWith(`Python ${runtime.version}`), `${listed[i].label}: named with its version`);
      assert.equal(listed[i].unavailable, false);
    }
    assert.equal(await page.getAttribute('#runtime', 'data-state'), 'listed');
    assert.equal(await page.isVisible('#api-status'), false, 'nothing to warn about');
    // An example needing a runtime is offered exactly when the server lists that runtime.
    const examples = await page.$$eval('#examples optgroup[data-group="scientific"] option', (os) => os.map((o) => o.disabled));
    const scientific = info.runtimes.some((r) => r.name === 'python-scientific');
    assert.deepEqual(examples, [!scientific, !scientific, !scientific]);

    await page.click('#limits summary');
    for (const runtime of info.runtimes) {
      await page.selectOption('#runtime', runtime.name);
      assert.deepEqual(await limitFields(page), expectedFields(runtime.limits), `${runtime.name}: placeholders and max are its own`);
      await setCode(page, 'import sys\nprint(sys.version.split()[0])');
      const request = await runCapturing(page);
      assert.equal(request.runtime, runtime.name, 'the request names the chosen runtime');
      assert.equal(await text(page, '#badge'), 'OK', runtime.name);
      assert.equal(await text(page, '#stdout'), runtime.version, `${runtime.name} ran it`);
      assert.match(await text(page, '#meta'), new RegExp(`runtime\\s+${runtime.name} ${runtime.version.replace(/\./g, '\\.')}`), 'the meta line names the runtime that ran it');
    }

    // The choice is kept in the draft and in a share link.
    const chosen = info.runtimes.at(-1).name;
    await page.waitForFunction((name) => JSON.parse(localStorage.getItem('runbox.draft') ?? '{}').runtime === name, chosen);
    await page.reload();
    await page.waitForSelector('#runtime[data-state="listed"]', { state: 'attached' });
    assert.equal(await page.inputValue('#runtime'), chosen, 'the draft brings the runtime back');
    await page.click('#share');
    await page.waitForSelector('#share-panel:not([hidden])');
    const link = await page.inputValue('#share-url');
    assert.ok(link.endsWith(`&runtime=${chosen}`), link);
    await page.keyboard.press('Escape');
    await page.selectOption('#examples', 'hello'); // the draft back on the default for the tests after this one
    assert.equal(await page.inputValue('#runtime'), info.runtimes.find((r) => r.default).name, 'a plain example selects the default');
    await page.waitForFunction(() => JSON.parse(localStorage.getItem('runbox.draft') ?? '{}').code?.includes('Hello from runbox'));
    await page.close();

    const shared = await openPlayground(browser.context, RUNBOX_URL, link.slice(link.indexOf('#')));
    assert.equal(await shared.inputValue('#runtime'), chosen, 'the link selects its runtime');
    const request = await runCapturing(shared);
    assert.equal(request.runtime, chosen);
    assert.equal(await text(shared, '#badge'), 'OK');
    await screenshot(shared, '19-runtime-picker');
    await shared.close();
  });

  test('a runtime the server does not list is shown unavailable and not sent; the limits follow the picker (GET /runtimes simulated in the browser)', async () => {
    const info = await serverRuntimes();
    const main = info.runtimes.find((r) => r.default);
    assert.notEqual(main.name, 'python-scientific', 'the test drops python-scientific from the list: it must not be the default');
    // This server lists its default runtime and a made-up small one, but no python-scientific.
    const small = { ...main, name: 'python-small', default: false, limits: { default: { ...main.limits.default, memory_bytes: 32 << 20, timeout_ms: 1000 }, max: { ...main.limits.max, memory_bytes: 64 << 20 } } };
    const page = await browser.context.newPage();
    await page.route('**/runtimes', (route) => route.fulfill({ json: { ...info, runtimes: [main, small] } }));
    let posts = 0;
    page.on('request', (r) => { if (r.method() === 'POST' && new URL(r.url()).pathname.endsWith('/execute')) posts++; });
    await page.goto(`${RUNBOX_URL}/#code=${Buffer.from('import numpy').toString('base64url')}&runtime=python-scientific`);
    await page.waitForSelector('#runtime[data-state="unavailable"]', { state: 'attached' });
    assert.deepEqual((await pickerOptions(page)).map((o) => [o.value, o.label, o.selected, o.unavailable]), [
      [main.name, `Python ${main.version} (${main.name})`, false, false], // two that read the same: told apart by name
      ['python-small', `Python ${main.version} (python-small)`, false, false],
      ['python-scientific', 'python-scientific (not on this server)', true, true],
    ], 'the link\'s runtime stays selected, marked unavailable, rather than swapped for another');
    assert.ok(await page.locator('#runtime.warn').isVisible(), 'marked for the eye too');
    await page.click('#limits summary');
    assert.deepEqual(await limitFields(page), Object.keys(UNIT).map((key) => [key, '', '']), 'no defaults or maxima to show for a runtime the server lacks');
    await screenshot(page, '20-runtime-unavailable');

    await page.click('#run');
    await page.waitForSelector('#badge.failure');
    assert.equal(await text(page, '#badge'), 'NOT SENT');
    assert.match(await text(page, '#explain'), /does not offer the python-scientific runtime/);
    assert.equal(posts, 0, 'nothing was sent');
    const examples = await page.$$eval('#examples optgroup[data-group="scientific"] option', (os) => os.map((o) => [o.value, o.disabled, o.textContent]));
    assert.deepEqual(examples.map(([id, disabled]) => [id, disabled]), [['numpy', true], ['pandas', true], ['plot', true]], 'its examples are disabled');
    assert.ok(examples.every(([, , label]) => label.endsWith('(needs python-scientific)')));

    // Picking a listed runtime: the unavailable one is gone, the limits are the picked one's.
    await page.selectOption('#runtime', 'python-small');
    assert.equal(await page.getAttribute('#runtime', 'data-state'), 'listed');
    assert.equal(await page.locator('#runtime option[data-unavailable]').count(), 0);
    assert.deepEqual(await limitFields(page), expectedFields(small.limits));
    assert.equal(await page.getAttribute('#limit-memory_bytes', 'placeholder'), '32');
    await page.selectOption('#runtime', main.name);
    assert.deepEqual(await limitFields(page), expectedFields(main.limits), 'and back');
    await setCode(page, 'print("on the default")');
    const request = await runCapturing(page);
    assert.equal(request.runtime, main.name);
    assert.equal(await text(page, '#stdout'), 'on the default');
    assert.equal(posts, 1);
    await page.selectOption('#examples', 'hello');
    await page.close();
  });

  test('the scientific examples run on python-scientific: numpy, a pandas table, and a plot shown inline as a PNG', async () => {
    const info = await serverRuntimes();
    const scientific = info.runtimes.find((r) => r.name === 'python-scientific');
    assert.ok(scientific, `the server must list python-scientific (it lists ${info.runtimes.map((r) => r.name).join(', ')})`);
    const page = await openPlayground(browser.context);
    await page.selectOption('#examples', 'hello');
    await page.click('#limits summary');

    await page.selectOption('#examples', 'plot');
    assert.equal(await page.inputValue('#runtime'), 'python-scientific', 'the example selects its runtime');
    assert.deepEqual(await limitFields(page), expectedFields(scientific.limits), 'and its limits show');
    const request = await runCapturing(page);
    assert.equal(request.runtime, 'python-scientific');
    assert.match(request.code, /plt\.show\(\)/);
    assert.equal(await text(page, '#badge'), 'OK');
    assert.equal(await text(page, '#stdout'), 'drew one figure');
    assert.match(await text(page, '#meta'), new RegExp(`runtime\\s+python-scientific ${scientific.version.replace(/\./g, '\\.')}`));
    const rows = await page.$$eval('#out-files li', (lis) => lis.map((li) => [li.querySelector('.path').textContent, li.querySelector('a')?.textContent ?? null]));
    assert.deepEqual(rows, [['figure-1.png', 'download']]);
    await page.waitForFunction(() => {
      const img = document.querySelector('#out-images img[data-path="figure-1.png"]');
      return img && img.complete && img.naturalWidth > 0;
    });
    const image = await page.$eval('#out-images img[data-path="figure-1.png"]', async (img) => ({
      width: img.naturalWidth,
      height: img.naturalHeight,
      src: img.src.slice(0, img.src.indexOf(',') + 1),
      head: [...new Uint8Array(await (await fetch(img.src)).arrayBuffer()).slice(0, 8)],
    }));
    assert.deepEqual(image, {
      width: 600, height: 350, // figsize (6, 3.5) at dpi 100
      src: 'data:image/png;base64,',
      head: [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], // a PNG's signature
    });
    await screenshot(page, '21-plot');

    await page.selectOption('#examples', 'numpy');
    assert.equal(await page.inputValue('#runtime'), 'python-scientific');
    await runWith(page, () => page.click('#run'));
    assert.equal(await text(page, '#badge'), 'OK');
    assert.match(await text(page, '#stdout'), /^x, y, z = \[ 2\. +3\. -1\.\]\nA @ x == b: True\n1000 samples: mean \d+\.\d, std \d+\.\d\n/);

    await page.selectOption('#examples', 'pandas');
    await runWith(page, () => page.click('#run'));
    assert.equal(await text(page, '#badge'), 'OK');
    assert.match(await text(page, '#stdout'), /^ +orders +units +revenue\nregion +\n+north +3 +25 +90\.0\nsouth +2 +18 +68\.5\neast +2 +13 +50\.0\n/);
    assert.equal(await page.isVisible('#files-box'), false, 'no figure, no files');

    await page.selectOption('#examples', 'hello');
    assert.equal(await page.inputValue('#runtime'), info.runtimes.find((r) => r.default).name, 'a plain example: back on the default');
    await page.close();
  });
});
