// Drives Debian's headless Chromium (puppeteer-core) through a web login and checks the pages
// with axe-core, for tests/it/weblogin_browser.rs.
//
//   node browser-login.mjs BASE_URL OUT_DIR ROUTE
//
// Opens BASE_URL/, clicks "Sign in with …" for ROUTE, clicks "Authorize" on the provider's
// page, reads the user name and password from the result page, saves a screenshot of it as
// OUT_DIR/result.png, opens an error page, and runs axe-core on our pages. Prints one JSON
// object: {username, password, pages: {NAME: {url, status, violations: [{id, impact, help,
// nodes}]}}}.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import path from 'node:path';

import puppeteer from 'puppeteer-core';

const [, , base, outDir, route] = process.argv;
const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  // The flags are given explicitly (Debian's chromium, as root, in a container).
  headless: false,
  userDataDir: path.join(outDir, 'chromium-profile'),
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
    '--disable-dev-shm-usage',
  ],
});

const result = { pages: {} };
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1000, height: 900 });
  const check = async (name, response) => {
    // axe-core is evaluated through the DevTools protocol: our CSP (no scripts at all) stays
    // in force for the page itself.
    await page.evaluate(axeSource);
    const axe = await page.evaluate(async () => {
      const r = await globalThis.axe.run(document, { resultTypes: ['violations'] });
      return r.violations.map((v) => ({
        id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.html),
      }));
    });
    // The inline style sheet is allowed by its hash in the CSP: check it applied.
    const styled = await page.evaluate(() => getComputedStyle(document.body).maxWidth !== 'none');
    result.pages[name] = {
      url: page.url(), status: response?.status() ?? 0, styled, violations: axe,
    };
  };

  const index = await page.goto(`${base}/`, { waitUntil: 'load' });
  await check('index', index);

  await Promise.all([
    page.waitForNavigation({ waitUntil: 'load' }),
    page.click(`a[href$="/${route}"]`),
  ]);
  // The provider's approval page (not ours: not checked).
  const [final] = await Promise.all([
    page.waitForNavigation({ waitUntil: 'load' }),
    page.click('#authorize'),
  ]);
  await check('result', final);
  result.username = await page.$eval('#username', (e) => e.textContent);
  result.password = await page.$eval('#password', (e) => e.textContent);
  await page.screenshot({ path: path.join(outDir, 'result.png'), fullPage: true });

  const error = await page.goto(`${base}/${route}?code=forged&state=forged`, { waitUntil: 'load' });
  await check('error', error);
} finally {
  await browser.close();
}
process.stdout.write(`${JSON.stringify(result)}\n`);
