// A profile written by `pymri record -f speedscope`, opened in the real speedscope app (its npm
// package's static build) in headless Chromium, as a person would: the app fetches the file
// from `#profileURL=`, and the sandwich view (a table of every function) lists the frames.
// Run by crates/pymri/tests/record.rs, which records a target and passes:
//
//   PYMRI_PROFILE         the speedscope file
//   PYMRI_EXPECT          a JSON array of frame names the app must show
//   PYMRI_THREAD          the start of the profile (thread) name to pick in the app
//   PYMRI_TOTAL           that thread's total weight as the app must show it (`980.00ms`)
//   PYMRI_SCREENSHOT      where to save a screenshot of the sandwich view
//   PYMRI_CHROMIUM        the browser (default: Debian's /usr/bin/chromium)
//
// The app and the profile are served from a loopback server on an ephemeral port. Exits 0 on
// success; on failure prints why with the page's console and a screenshot.
import { chromium } from 'playwright-core';
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join, normalize } from 'node:path';
import { createRequire } from 'node:module';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

const profilePath = env('PYMRI_PROFILE');
const expected = JSON.parse(env('PYMRI_EXPECT'));
const threadName = env('PYMRI_THREAD');
const total = env('PYMRI_TOTAL');
const screenshot = env('PYMRI_SCREENSHOT');
const executablePath = process.env.PYMRI_CHROMIUM || '/usr/bin/chromium';
const TIMEOUT = 30000;

const require = createRequire(import.meta.url);
const release = join(require.resolve('speedscope/package.json'), '..', 'dist', 'release');
const types = {
  '.html': 'text/html',
  '.js': 'text/javascript',
  '.css': 'text/css',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.png': 'image/png',
  '.woff2': 'font/woff2',
};

const server = createServer((req, res) => {
  const path = decodeURIComponent(new URL(req.url, 'http://localhost').pathname);
  let file;
  if (path === '/profile.json') {
    file = profilePath;
  } else {
    const relative = normalize(path === '/' ? '/index.html' : path);
    if (relative.includes('..')) {
      res.writeHead(403).end();
      return;
    }
    file = join(release, relative);
  }
  try {
    const body = readFileSync(file);
    res.writeHead(200, { 'Content-Type': types[extname(file)] || 'application/octet-stream' });
    res.end(body);
  } catch {
    res.writeHead(404).end();
  }
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const base = `http://127.0.0.1:${server.address().port}`;

const profileDir = mkdtempSync(join(tmpdir(), 'pymri-chromium-'));
const context = await chromium.launchPersistentContext(profileDir, {
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

try {
  step('open the app on the profile');
  await page.goto(`${base}/index.html#profileURL=${encodeURIComponent(`${base}/profile.json`)}`);
  await page.waitForFunction(() => /\(1\/\d+\)/.test(document.body.innerText));

  step(`pick the thread ${threadName}`);
  await page.getByText(/\(1\/\d+\)/).click();
  const row = page.locator(`tr[title^="${threadName}"]`);
  const weight = (await row.locator('td').last().textContent()).trim();
  if (weight !== total) throw new Error(`the thread weighs ${weight} in the app, ${total} recorded`);
  await row.click();
  await page.waitForFunction(
    (name) => [...document.querySelectorAll('span')].some((s) => s.textContent.startsWith(name) && /\(\d+\/\d+\)/.test(s.textContent)),
    threadName,
  );

  step('switch to the sandwich view');
  await page.getByText('Sandwich').click();
  for (const name of expected) {
    step(`find ${name}`);
    await page.waitForFunction((want) => document.body.innerText.includes(want), name);
  }
  await page.screenshot({ path: screenshot });
  step('done');
} catch (e) {
  console.log(`FAILED: ${e.message}`);
  console.log(`page text:\n${await page.evaluate(() => document.body.innerText).catch(() => '?')}`);
  console.log(pageLog.join('\n'));
  await page.screenshot({ path: screenshot }).catch(() => {});
  process.exitCode = 1;
} finally {
  await context.close();
  server.close();
  rmSync(profileDir, { recursive: true, force: true });
}
