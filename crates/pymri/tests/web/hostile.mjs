// The page of `pymri web` attached to fixtures/hostile_names.py, whose function, file and
// thread names carry terminal escapes and a bidi override: the page must show them as text,
// with the invisible characters written as escapes, and hold none of them raw. Run by
// crates/pymri/tests/web.rs, which passes:
//
//   PYMRI_WEB_URL    the page's address, token included
//   PYMRI_WEB_SHOWN  the escaped form of the hostile string, as the page must show it
//   PYMRI_CHROMIUM   the browser (default: Debian's /usr/bin/chromium)
//
// Exits 0 on success; on failure prints why.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const url = process.env.PYMRI_WEB_URL;
const shown = process.env.PYMRI_WEB_SHOWN;
const executablePath = process.env.PYMRI_CHROMIUM || '/usr/bin/chromium';
const RAW = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/u;

const profile = mkdtempSync(join(tmpdir(), 'pymri-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
});
const page = context.pages()[0] || (await context.newPage());
page.setDefaultTimeout(20000);
try {
  await page.goto(url);
  await page.waitForSelector('body[data-ready="1"]');
  await page.waitForSelector('#threads option:nth-child(2)', { state: 'attached' });
  const texts = {
    function: await page.locator('#stack li .function').first().textContent(),
    threads: await page.locator('#threads').textContent(),
    status: await page.locator('#status').textContent(),
    source: await page.locator('#source-title').textContent(),
    body: await page.evaluate(() => document.body.textContent + document.title),
  };
  const failures = [];
  if (texts.function !== `hostile${shown} `) failures.push(`function: ${JSON.stringify(texts.function)}`);
  if (!texts.threads.includes(`${shown} — `)) failures.push(`threads: ${JSON.stringify(texts.threads)}`);
  if (!texts.status.includes(`code${shown}.py:`)) failures.push(`status: ${JSON.stringify(texts.status)}`);
  if (!texts.source.endsWith(`code${shown}.py`)) failures.push(`source: ${JSON.stringify(texts.source)}`);
  if (RAW.test(texts.body)) failures.push(`raw characters in the page: ${JSON.stringify(texts.body)}`);
  if (failures.length) throw new Error(failures.join('\n'));
  console.log('hostile names shown as text');
} catch (e) {
  console.log(`FAILED: ${e.stack || e}`);
  process.exitCode = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
