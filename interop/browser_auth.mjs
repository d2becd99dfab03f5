// Checks private events reaching a real browser's EventSource on the
// authority of a cookie: headless Chromium (playwright-core, Debian's
// /usr/bin/chromium), a page on another origin, `withCredentials: true`.
//
//   node browser_auth.mjs HUB_BASE PAGE_BASE CHROMIUM SECRET
//
// HUB_BASE is ssehub started with --subscriber-jwt-key SECRET --anonymous
// --cors-origin PAGE_BASE; PAGE_BASE serves page/es.html. One page holds the
// mercureAuthorization cookie (an HS256 token for the topic), another none:
// the first must get the public and the private events in order, the second
// only the public ones. Prints `ok NAME` / `FAIL NAME: why`; exits 1 on failure.

import { fail, finish, hs256, launch, ok, run, show, sleep } from './common.mjs';

const [hub, pageBase, exe, secret] = process.argv.slice(2);
if (!hub || !pageBase || !exe || !secret) {
  console.error('usage: node browser_auth.mjs HUB_BASE PAGE_BASE CHROMIUM SECRET');
  process.exit(2);
}

async function publish(topic, data, priv) {
  const q = new URLSearchParams({ topic });
  if (priv) q.set('private', '1');
  const res = await fetch(`${hub}/publish?${q}`, { method: 'POST', body: data });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`publish -> ${res.status} ${show(text)}`);
  return text.trim();
}

const browser = await launch(exe);

async function entries(page) {
  const text = await page.locator('#log').textContent();
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
}
async function waitEntries(page, pred, ms) {
  const end = Date.now() + ms;
  let got = [];
  while (Date.now() < end) {
    got = await entries(page);
    if (pred(got)) return got;
    await sleep(50);
  }
  return got;
}
const datas = (log) => log.filter((e) => e.kind === 'event').map((e) => e.data);

const topic = `https://example.com/private/${run}`;
const hubUrl = new URL(hub);
try {
  // The authorised page: its context holds the cookie for ssehub's host
  // (same site, another origin: the port differs).
  const authorised = await browser.newContext();
  await authorised.addCookies([{
    name: 'mercureAuthorization',
    value: hs256(secret, { mercure: { subscribe: ['https://example.com/private/{id}'] } }),
    domain: hubUrl.hostname,
    path: '/',
    httpOnly: true,
  }]);
  const anonymous = await browser.newContext();
  const pages = {};
  const responses = [];
  for (const [who, context] of [['authorised', authorised], ['anonymous', anonymous]]) {
    const page = await context.newPage();
    page.on('response', (res) => {
      if (res.url().startsWith(hub)) responses.push({ who, status: res.status(), headers: res.headers() });
    });
    await page.goto(`${pageBase}/es.html?hub=${encodeURIComponent(hub)}&topic=${encodeURIComponent(topic)}&credentials=1`);
    const log = await waitEntries(page, (l) => l.some((e) => e.kind === 'open'), 5000);
    if (!log.some((e) => e.kind === 'open')) throw new Error(`${who}: EventSource never opened: ${show(log)} ${show(responses)}`);
    pages[who] = page;
  }
  const sent = [['public 1', false], ['private 1', true], ['public 2', false], ['private 2', true], ['public 3', false]];
  for (const [data, priv] of sent) await publish(topic, data, priv);
  const want = {
    authorised: sent.map(([d]) => d),
    anonymous: sent.filter(([, p]) => !p).map(([d]) => d),
  };
  for (const who of ['authorised', 'anonymous']) {
    const log = await waitEntries(pages[who], (l) => datas(l).length >= want[who].length, 5000);
    await sleep(300); // anything that should not come would come now
    const got = datas(await entries(pages[who]));
    const res = responses.find((r) => r.who === who);
    if (show(got) !== show(want[who])) {
      fail(`chromium-auth-${who}`, `got ${show(got)}, want ${show(want[who])}; log ${show(log.slice(-4))}`);
    } else {
      ok(`chromium-auth-${who}`, `${got.length} events${who === 'authorised' ? ' incl. private ones, by cookie' : ', public only'}; ACAO ${show(res?.headers['access-control-allow-origin'])}, credentials ${show(res?.headers['access-control-allow-credentials'])}`);
    }
  }
} catch (e) {
  fail('chromium-auth', e && e.message ? e.message : String(e));
}
await browser.close();
finish();
