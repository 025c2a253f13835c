// The page of `pymri web`, driven in headless Chromium as a person would use it: set a
// breakpoint by clicking the gutter, continue to it, read locals (and expand a list), evaluate
// in the console, walk the stack, detach. Run by crates/pymri/tests/web.rs, which starts the
// target and pymri and passes:
//
//   PYMRI_WEB_URL         the page's address, token included
//   PYMRI_WEB_FILE        the target script's path as the program sees it
//   PYMRI_WEB_LINE        the line to break at (in `compute`, where total == 12)
//   PYMRI_WEB_SCREENSHOT  where to save a screenshot at the breakpoint
//   PYMRI_CHROMIUM        the browser (default: Debian's /usr/bin/chromium)
//
// Exits 0 on success; on failure prints why with the page's console and a screenshot.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

const url = env('PYMRI_WEB_URL');
const file = env('PYMRI_WEB_FILE');
const line = Number(env('PYMRI_WEB_LINE'));
const screenshot = env('PYMRI_WEB_SCREENSHOT');
const executablePath = process.env.PYMRI_CHROMIUM || '/usr/bin/chromium';
const TIMEOUT = 20000;

const profile = mkdtempSync(join(tmpdir(), 'pymri-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath,
  headless: true,
  viewport: { width: 1400, height: 900 },
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
const page = context.pages()[0] || (await context.newPage());
page.setDefaultTimeout(TIMEOUT);
const pageLog = [];
page.on('console', (m) => pageLog.push(`[console.${m.type()}] ${m.text()}`));
page.on('pageerror', (e) => pageLog.push(`[pageerror] ${e.message}`));

const step = (what) => console.log(`- ${what}`);

async function consoleRun(command, expected) {
  const before = await page.locator('#console-output').textContent();
  await page.fill('#console-input', command);
  await page.press('#console-input', 'Enter');
  await page.waitForFunction(
    ([start, want]) => {
      const text = document.getElementById('console-output').textContent;
      return text.length > start && text.slice(start).includes(want);
    },
    [before.length, expected],
  );
}

try {
  step('the first response alone shows the session (no event socket)');
  {
    const still = await context.newPage();
    // A WebSocket that never opens: what the page shows comes from the page itself.
    await still.addInitScript(() => {
      window.WebSocket = class {
        addEventListener() {}
      };
    });
    await still.goto(url);
    await still.waitForSelector('#status[data-state="stopped"]', { timeout: 5000 });
    const status = await still.locator('#status').textContent();
    if (!/^Stopped \(/.test(status)) throw new Error(`status without the socket: ${status}`);
    const program = await still.locator('#program').textContent();
    if (!/ — pid \d+, Python \d+\.\d+/.test(program)) throw new Error(`program without the socket: ${program}`);
    await still.close();
  }

  step('open the page');
  await page.goto(url);
  await page.waitForSelector('#status[data-state="stopped"]');
  await page.waitForSelector('body[data-ready="1"]');
  await page.waitForSelector(`#source-title:text-is("${file}")`);

  step(`set a breakpoint at line ${line} by clicking the gutter`);
  const row = page.locator(`#source .line[data-line="${line}"]`);
  await row.locator('.gutter').click();
  await page.waitForSelector(`#source .line.breakpoint[data-line="${line}"]`);
  await page.waitForSelector('#breakpoints li');

  step('continue to it');
  await page.click('#btn-continue');
  await page.waitForSelector(`#source .line.current[data-line="${line}"]`);
  await page.waitForFunction(
    (l) => document.getElementById('status').textContent.includes(`:${l} in compute()`),
    line,
  );

  step('read locals');
  const total = page.locator('#variables .var[data-name="total"] .value');
  await total.waitFor();
  if ((await total.textContent()) !== '12') throw new Error(`total is ${await total.textContent()}`);
  const label = await page.locator('#variables .var[data-name="label"] .value').textContent();
  if (!/^'round \d+'$/.test(label)) throw new Error(`label is ${label}`);
  await page.click('#variables .var[data-name="prices"] .toggle');
  const second = page.locator('#variables .var[data-path="Locals/prices/1"] .value');
  await second.waitFor();
  if ((await second.textContent()) !== '4') throw new Error(`prices[1] is ${await second.textContent()}`);

  step('evaluate in the console');
  await consoleRun('p total * 2', '24');
  await consoleRun('sum(prices) + 100', '112');
  await consoleRun('w', 'compute()');
  await consoleRun('!bonus = total + 1', '(Pdb) !bonus = total + 1');
  await consoleRun('p bonus', '13');

  step('screenshot');
  mkdirSync(dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot });

  step('select the caller in the stack');
  await page.click('#stack li[data-index="1"]');
  await page.waitForSelector('#stack li.selected[data-index="1"]');
  await page.waitForSelector('#variables .var[data-name="settings"]');
  await page.waitForSelector('#source .line.frame');

  step('detach');
  await page.click('#btn-detach');
  await page.waitForSelector('#status[data-state="ended"]');
  const status = await page.locator('#status').textContent();
  if (!status.includes('Detached')) throw new Error(`status after detach: ${status}`);
  console.log('browser scenario passed');
} catch (e) {
  console.log(`FAILED: ${e.stack || e}`);
  console.log(pageLog.join('\n'));
  try {
    console.log(`console pane:\n${await page.locator('#console-output').textContent()}`);
    console.log(`status: ${await page.locator('#status').textContent()}`);
    mkdirSync(dirname(screenshot), { recursive: true });
    await page.screenshot({ path: screenshot.replace(/\.png$/, '-failure.png') });
  } catch {
    // The page may be gone.
  }
  process.exitCode = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
