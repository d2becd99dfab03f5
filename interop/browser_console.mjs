// Checks the console ssehub serves at / in headless Chromium, as a person
// would use it: the page goes live, subscribing to a topic and publishing
// from the page shows the event in the list, an event and a batch published
// elsewhere show too, the counters and the topic table move, nothing is
// cut off or wider than the screen, and the browser logs no error. Takes
// screenshots at 1280x800 and 390x844 (a phone) into OUT_DIR.
//
//   node browser_console.mjs HUB_BASE OUT_DIR [CHROMIUM]
//
// HUB_BASE is ssehub on a loopback address (so --ui auto serves the console).
// Prints `ok NAME` / `FAIL NAME: why`; exits 1 on any failure.

import { fail, finish, launch, ok, run, show, sleep } from './common.mjs';
import { mkdirSync } from 'node:fs';

const [hub, outDir, exe = '/usr/bin/chromium'] = process.argv.slice(2);
if (!hub || !outDir) {
  console.error('usage: node browser_console.mjs HUB_BASE OUT_DIR [CHROMIUM]');
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });

async function publish(topic, data, event) {
  const q = `topic=${encodeURIComponent(topic)}${event ? `&event=${encodeURIComponent(event)}` : ''}`;
  const res = await fetch(`${hub}/publish?${q}`, { method: 'POST', body: data });
  if (res.status !== 200) throw new Error(`publish -> ${res.status} ${await res.text()}`);
  return (await res.text()).trim();
}

const browser = await launch(exe);

// Elements whose content does not fit (cut off), and whether the page is
// wider than the screen.
const layout = () => ({
  wider: document.documentElement.scrollWidth > window.innerWidth,
  cut: [...document.querySelectorAll('.card .v, .card .k, .card .s, h1, h2, th, button, label')]
    .filter((e) => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1)
    .map((e) => `${e.tagName}#${e.id || ''}.${e.className}: ${e.textContent.trim().slice(0, 40)}`),
});

async function session(name, viewport) {
  const topic = `console-${name}-${run}`;
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1 });
  const page = await context.newPage();
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));
  const step = async (what, fn) => {
    try {
      return await fn();
    } catch (e) {
      throw new Error(`${what}: ${e.message.split('\n')[0]}`);
    }
  };
  try {
    await page.goto(`${hub}/`);
    await step('goes live', () => page.waitForFunction(() => document.getElementById('live').textContent === 'live', null, { timeout: 10000 }));
    const publishedBefore = await page.textContent('#published');
    await page.fill('#sub-topics', topic);
    await page.click('#sub-go');
    await step('subscription opens', () => page.waitForFunction(() => document.getElementById('sub-state').textContent === 'open', null, { timeout: 10000 }));
    // Publish from the page.
    await page.fill('#pub-topic', topic);
    await page.fill('#pub-data', `hello from the console ${run}`);
    await page.click('#pub-go');
    await step('publish answered', () => page.waitForFunction(() => document.getElementById('pub-status').textContent.startsWith('Published'), null, { timeout: 5000 }));
    await step('published event listed', () => page.waitForFunction((t) => [...document.querySelectorAll('#events tbody td')].some((td) => td.textContent === t), `hello from the console ${run}`, { timeout: 5000 }));
    // A named event from elsewhere, and a batch from the page.
    const id = await publish(topic, 'a greeting from curl', 'greet');
    await step('named event listed', () => page.waitForFunction((id) => [...document.querySelectorAll('#events tbody tr')].some((tr) => tr.cells[0].textContent === id && tr.cells[1].textContent === 'greet'), id, { timeout: 5000 }));
    await page.check('#pub-batch');
    await page.fill('#pub-data', 'event: tick\ndata: batch one\n\ndata: batch two\n');
    await page.click('#pub-go');
    await step('batch answered', () => page.waitForFunction(() => document.getElementById('pub-status').textContent.startsWith('Published 2 events'), null, { timeout: 5000 }));
    await step('batch listed', () => page.waitForFunction(() => [...document.querySelectorAll('#events tbody td')].some((td) => td.textContent === 'batch two'), null, { timeout: 5000 }));
    await page.uncheck('#pub-batch');
    await page.fill('#pub-data', 'hello from the console');
    // The counters and the topic table move.
    await step('counters move', () => page.waitForFunction((before) => document.getElementById('published').textContent !== before, publishedBefore, { timeout: 5000 }));
    await step('topic listed with its subscriber', () => page.waitForFunction((t) => [...document.querySelectorAll('#topics tbody tr')].some((tr) => tr.cells[0].textContent === t && tr.cells[1].textContent === '1'), topic, { timeout: 5000 }));
    const streams = await page.textContent('#streams');
    // A few seconds of the chart, with some traffic on it.
    for (let i = 0; i < 12; i++) {
      await publish(`console-load-${run}`, `load ${i}`);
      await page.waitForTimeout(250);
    }
    // The top of the page, as it opens; and the whole page for review.
    await page.evaluate(() => window.scrollTo(0, 0));
    const file = `${outDir}/console-${viewport.width}x${viewport.height}.png`;
    await page.screenshot({ path: file });
    await page.screenshot({ path: `${outDir}/console-${viewport.width}x${viewport.height}-full.png`, fullPage: true });
    const l = await page.evaluate(layout);
    if (l.wider || l.cut.length) {
      fail(`console-layout-${name}`, `wider than the screen: ${l.wider}; cut off: ${show(l.cut)}`);
    } else {
      ok(`console-layout-${name}`, `${viewport.width}x${viewport.height}: nothing wider than the screen, nothing cut off; screenshot ${file}`);
    }
    ok(`console-${name}`, `live; subscribed, published from the page, a named event and a batch listed; counters moved; ${streams} open stream(s)`);
  } catch (e) {
    fail(`console-${name}`, e.message);
  }
  if (errors.length) fail(`console-errors-${name}`, show(errors));
  else ok(`console-errors-${name}`, 'no console error');
  await context.close();
}

await session('desktop', { width: 1280, height: 800 });
await session('phone', { width: 390, height: 844 });

await browser.close();
finish();
