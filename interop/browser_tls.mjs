// Checks that HTTP/2 over TLS lifts the browser's six-connection cap: one
// page in headless Chromium opens 20 EventSources to ssehub over TLS (h2
// chosen by ALPN) and all 20 open and receive an event published after;
// the same page against ssehub over plain HTTP/1.1 gets only 6 open.
//
//   node browser_tls.mjs TLS_HUB_BASE H1_HUB_BASE PAGE_BASE [CHROMIUM]
//
// Both hubs run with --cors-origin PAGE_BASE; the page is served from
// PAGE_BASE (another origin, as a site using the hub would be). Chromium's limit is
// per scheme, host and port, so the page's own origin does not count
// against the hub's six. The TLS certificate is self-signed for the run:
// Chromium gets --ignore-certificate-errors, and this script's own
// requests skip verification. Prints `ok NAME` / `FAIL NAME: why`.

import { fail, finish, launch, ok, run, show, sleep } from './common.mjs';
import https from 'node:https';
import http from 'node:http';

const [tlsHub, h1Hub, pageBase, exe = '/usr/bin/chromium'] = process.argv.slice(2);
if (!tlsHub || !h1Hub || !pageBase) {
  console.error('usage: node browser_tls.mjs TLS_HUB_BASE H1_HUB_BASE PAGE_BASE [CHROMIUM]');
  process.exit(2);
}
const N = 20;

// One request to a hub, HTTP/1.1 (node's https), certificate not verified.
function request(base, method, path, body = '') {
  const url = new URL(path, base);
  const lib = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = lib.request(url, { method, rejectUnauthorized: false, timeout: 5000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode, text }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end(body);
  });
}

async function gauge(base, protocol) {
  const { text } = await request(base, 'GET', '/metrics');
  const line = text.split('\n').find((l) => l.startsWith(`ssehub_open_streams{protocol="${protocol}"}`));
  return line ? Number(line.split(' ')[1]) : NaN;
}

async function waitFor(pred, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await pred()) return true;
    await sleep(50);
  }
  return false;
}

const browser = await launch(exe, ['--ignore-certificate-errors']);

async function openMany(hub, topic) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  await page.goto(`${pageBase}/many.html?hub=${encodeURIComponent(hub)}&topic=${topic}&n=${N}`);
  return { context, page, state: () => page.evaluate(() => window.many) };
}

try {
  // HTTP/2 over TLS: all 20 open, on streams of one connection.
  const topic = `tls-many-${run}`;
  const { context, state } = await openMany(tlsHub, topic);
  const opened = await waitFor(async () => (await state()).opened === N, 10000);
  const streams = await gauge(tlsHub, 'http2');
  if (!opened) {
    fail('chromium-h2-20-streams', `only ${(await state()).opened} of ${N} EventSources opened over TLS`);
  } else if (streams !== N) {
    fail('chromium-h2-20-streams', `${N} opened but ssehub counts ${streams} HTTP/2 streams`);
  } else {
    ok('chromium-h2-20-streams', `${N} EventSources open over HTTP/2 on one origin`);
  }
  const pub = await request(tlsHub, 'POST', `/publish?topic=${topic}&event=ping`, 'after open');
  if (pub.status !== 200) {
    fail('chromium-h2-20-receive', `publish -> ${pub.status} ${pub.text}`);
  } else if (await waitFor(async () => (await state()).received === N, 10000)) {
    ok('chromium-h2-20-receive', `all ${N} received the event`);
  } else {
    fail('chromium-h2-20-receive', `only ${(await state()).received} of ${N} received the event`);
  }
  await context.close();

  // Plain HTTP/1.1: the browser stops at six connections to the host:port.
  const topic1 = `h1-many-${run}`;
  const h1 = await openMany(h1Hub, topic1);
  await waitFor(async () => (await h1.state()).opened >= 6, 10000);
  // Give a seventh every chance to open (it never should); this wait
  // proves an absence, so it has to be a wait.
  await sleep(1500);
  const h1State = await h1.state();
  const h1Streams = await gauge(h1Hub, 'http1');
  if (h1State.opened === 6 && h1Streams === 6) {
    ok('chromium-h1-six-cap', `only 6 of ${N} EventSources open over HTTP/1.1`);
  } else {
    fail('chromium-h1-six-cap', `expected 6 open over HTTP/1.1, the page saw ${h1State.opened}, ssehub counts ${h1Streams}`);
  }
  await h1.context.close();
} catch (e) {
  fail('chromium-tls', e && e.message ? e.message : String(e));
} finally {
  await browser.close();
}
finish();
