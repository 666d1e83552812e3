// Test helpers: the servers under test (from the environment), a headless
// Debian Chromium driven by playwright-core, and screenshots in one folder.

import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const frontend = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** The server under test: a gateway (or tests/serve.mjs in development). */
export const RUNBOX_URL = process.env.RUNBOX_URL?.replace(/\/$/, '') ?? null;
/** A second server with tiny capacity, for the 429 test. */
export const RUNBOX_BUSY_URL = process.env.RUNBOX_BUSY_URL?.replace(/\/$/, '') ?? null;
export const OUT_DIR = resolve(process.env.RUNBOX_TEST_OUT ?? join(frontend, 'test-output'));
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

// This machine has no internet: without these, Chromium keeps dialling out.
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

/** Launches Chromium with a fresh profile; `close()` removes it again. */
export async function launch() {
  if (!RUNBOX_URL) {
    throw new Error('set RUNBOX_URL to the server under test, e.g. RUNBOX_URL=http://127.0.0.1:8080 (see README.md)');
  }
  await mkdir(OUT_DIR, { recursive: true });
  const profile = await mkdtemp(join(tmpdir(), 'runbox-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 860 },
    colorScheme: 'light',
    reducedMotion: 'reduce',
  });
  return {
    context,
    async close() {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}

/** Waits until `url` answers GET /runtimes with 200 (the executor may still be compiling). */
export async function waitReady(url, timeoutMs = 180_000) {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`${url}/runtimes`);
      if (res.ok) return;
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = err.cause?.code ?? err.message;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`${url} was not ready after ${timeoutMs / 1000} s (last: ${last})`);
}

export async function screenshot(page, name, options = {}) {
  await page.screenshot({ path: join(OUT_DIR, `${name}.png`), ...options });
}

/** Opens the playground (storage is shared per browser) and waits for the runtime picker to be filled from GET /runtimes. */
export async function openPlayground(context, url = RUNBOX_URL, hash = '') {
  const page = await context.newPage();
  await page.goto(`${url}/${hash}`);
  await page.waitForSelector('#runtime:not([data-state="pending"])', { state: 'attached' });
  return page;
}

/** Replaces the editor's text by typing it, as a user would. */
export async function typeCode(page, code) {
  await page.click('.cm-content');
  await page.keyboard.press('ControlOrMeta+A');
  await page.keyboard.press('Delete');
  await page.keyboard.type(code);
}

/** The editor's text, line by line (innerText would double empty lines). */
export async function editorText(page) {
  return page.$$eval('.cm-content .cm-line', (lines) => lines.map((l) => l.textContent).join('\n'));
}

/** Triggers a run and waits for the answer to be rendered. */
export async function runWith(page, trigger) {
  const answered = page.waitForResponse((r) => new URL(r.url()).pathname.endsWith('/execute'));
  await trigger();
  await answered;
  await page.waitForSelector('#run:not(.running)');
}
