// What every Chromium check shares: the `ok NAME` / `FAIL NAME: why` lines
// that interop/run.sh reads, the exit status, and Chromium launched the way
// this machine allows (Debian's binary through playwright-core, without the
// background networking that a closed network refuses).

import { chromium } from 'playwright-core';
import { createHmac } from 'node:crypto';

/** A suffix that keeps this run's topics apart from any other's. */
export const run = Math.random().toString(36).slice(2, 8);
let failures = 0;
export const ok = (name, note) => console.log(`ok ${name}${note ? ` (${note})` : ''}`);
export const fail = (name, why) => {
  failures++;
  console.log(`FAIL ${name}: ${why}`);
};
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const show = (v) => JSON.stringify(v);

/** Ends the script: exit status 1 if any check failed. */
export const finish = () => process.exit(failures ? 1 : 0);

/** Headless Chromium; `extra` adds command-line switches. */
export function launch(exe = '/usr/bin/chromium', extra = []) {
  return chromium.launch({
    executablePath: exe,
    headless: true,
    timeout: 20000,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', ...extra],
  });
}

/** Runs one check; an exception is its FAIL line. */
export async function check(name, fn) {
  try {
    await fn();
  } catch (e) {
    fail(name, e && e.message ? e.message : String(e));
  }
}

/** Polls `pred` (sync or async) every 50 ms until it is truthy or `ms` pass; returns its last value. */
export async function until(pred, ms) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await pred();
    if (v || Date.now() > end) return v;
    await sleep(50);
  }
}

/**
 * An HS256 JWT over `claims`, minted here with node's crypto as any JWT
 * library would, independently of ssehub's own code.
 */
export function hs256(secret, claims) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const head = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${head}.${createHmac('sha256', secret).update(head).digest('base64url')}`;
}
