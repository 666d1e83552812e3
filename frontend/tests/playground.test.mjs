// End-to-end: a real Chromium drives the playground served by RUNBOX_URL.
// Each state worth seeing is saved as a screenshot in OUT_DIR.
//
//   RUNBOX_URL=http://127.0.0.1:8080 RUNBOX_BUSY_URL=http://127.0.0.1:8082 npm test

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  OUT_DIR, RUNBOX_BUSY_URL, RUNBOX_URL, editorText, launch, openPlayground, runWith, screenshot, typeCode, waitReady,
} from './browser.mjs';

/** Visible text without the trailing newline a program's last print leaves. */
const text = async (page, selector) => (await page.locator(selector).innerText()).replace(/\n$/, '');
/** The limit notice on the status line (from the response's `limit`), or null. */
const limitNotice = (page) => page.getAttribute('#status', 'data-limit');

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
    assert.match(meta, /Python\s+3\.\d+\.\d+/);
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

  test('keyboard only: Tab reaches Run, Tab indents in the editor, Esc then Tab leaves it', async () => {
    const page = await openPlayground(browser.context);
    const focused = () => page.evaluate(() => document.activeElement.id || document.activeElement.className);
    await page.selectOption('#examples', 'hello');
    await page.focus('#examples');
    await page.keyboard.press('Tab');
    await page.keyboard.press('Tab');
    assert.equal(await focused(), 'run');
    await runWith(page, () => page.keyboard.press('Enter'));
    assert.match(await text(page, '#stdout'), /^Hello from runbox!/);

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
    assert.match(link, /#code=[\w-]+&stdin=[\w-]+&args=[\w-]+$/);
    await screenshot(page, '05-share-link');
    // Change this tab's draft so the new tab can only get the snippet from the link.
    await page.keyboard.press('Escape');
    await page.selectOption('#examples', 'hello');
    await page.waitForTimeout(400);
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
    await down.goto(`${RUNBOX_URL}/`);
    await down.waitForSelector('#runtime.warn');
    assert.equal(await text(down, '#runtime'), 'API unreachable');
    assert.equal(await text(down, '#badge'), 'OFFLINE', 'a dead API shows before anyone presses Run');
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
});
