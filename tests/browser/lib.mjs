// Helpers shared by the browser tests: the real server on free ports, a
// headless Chromium, pages that log in, and waits that say what the page
// showed when they time out.
//
// Environment:
//   TAGARELA_BIN    server binary (default: <repo>/build/tagarela)
//   CHROMIUM_PATH   browser (default: /usr/bin/chromium)
//
// node --test runs each test file in its own process, so the state below
// (ctx) belongs to one file.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, '..', '..');
export const BIN = process.env.TAGARELA_BIN || path.join(REPO, 'build', 'tagarela');
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const ARTIFACTS = path.join(HERE, 'artifacts');
export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };
/** The narrowest phones still sold (iPhone SE 1st generation). */
export const SMALL_PHONE = { width: 320, height: 568 };
export const WAIT = 10_000;
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** This file's server, browser and pages. */
export const ctx = { server: null, browser: null, dataDir: null, everyone: [], https: false };

/* ---------- the server ---------- */

/** Starts `tagarela serve` and resolves once it printed both listeners. */
export function startServer({ wsPort = 0, httpPort = 0, dataDir, extra = [] }) {
  const args = ['serve', '--ws', `127.0.0.1:${wsPort}`, '--http', `127.0.0.1:${httpPort}`, '--data', dataDir, ...extra];
  // Never the machine's /etc/tagarela/tagarela.conf (read when no --config is given).
  const env = { ...process.env, TAGARELA_CONFIG: process.env.TAGARELA_CONFIG ?? '' };
  const proc = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  const log = [];
  const exited = new Promise((resolve) => {
    proc.on('exit', (code, signal) => resolve({ code, signal }));
    proc.on('error', (err) => resolve({ code: null, signal: null, error: err }));
  });
  proc.stderr.on('data', (d) => log.push(`[stderr] ${d}`));
  const ports = {};
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`server did not print its listeners within ${WAIT} ms:\n${log.join('')}`));
    }, WAIT);
    readline.createInterface({ input: proc.stdout }).on('line', (line) => {
      log.push(`[stdout] ${line}\n`);
      const m = /^(ws|http) listening on 127\.0\.0\.1:(\d+)$/.exec(line.trim());
      if (m) ports[m[1]] = Number(m[2]);
      if (ports.ws && ports.http) {
        clearTimeout(timer);
        resolve();
      }
    });
    exited.then(({ code, signal, error }) => {
      clearTimeout(timer);
      reject(new Error(`server exited before it was ready (code ${code}, signal ${signal}${error ? `, ${error.message}` : ''}) ` +
        `running ${BIN} ${args.join(' ')}:\n${log.join('')}`));
    });
  });
  return ready.then(() => {
    const srv = { proc, exited, log, wsPort: ports.ws, httpPort: ports.http, stopping: false, died: null };
    exited.then((r) => {
      if (srv.stopping) return;
      srv.died = r;
      // Said at once, with the server's output: a test that fails later
      // because of it must not hide why.
      process.stderr.write(`\n*** THE SERVER DIED on its own (exit code ${r.code}, signal ${r.signal}); its output:\n` +
        `${log.join('').slice(-8000)}\n***\n`);
    });
    return srv;
  });
}

/** What went wrong with the server, if it died on its own: for error messages. */
export function serverTrouble(srv = ctx.server) {
  if (!srv || !srv.died) return '';
  const { code, signal } = srv.died;
  return `\nTHE SERVER DIED on its own (exit code ${code}, signal ${signal}); its output:\n${srv.log.join('').slice(-4000)}`;
}

export async function stopServer(srv, signal = 'SIGTERM') {
  if (!srv || srv.proc.exitCode !== null || srv.proc.signalCode !== null) return srv && srv.exited;
  srv.stopping = true;
  srv.proc.kill(signal);
  const timer = setTimeout(() => srv.proc.kill('SIGKILL'), 5000);
  const result = await srv.exited;
  clearTimeout(timer);
  return result;
}

/** Stops the server (SIGTERM: must exit 0; SIGKILL: a crash), runs
 *  whileDown() if given, and starts it again on the same ports and data
 *  directory. */
export async function restartServer(signal = 'SIGTERM', { whileDown, extra = [] } = {}) {
  const { wsPort, httpPort } = ctx.server;
  assert.equal(ctx.server.died, null, `the server was already dead${serverTrouble()}`);
  const result = await stopServer(ctx.server, signal);
  if (signal === 'SIGTERM') {
    assert.equal(result.signal, null, `server died of ${result.signal}`);
    assert.equal(result.code, 0, `the server exits 0 on SIGTERM; its output:\n${ctx.server.log.join('')}`);
  } else {
    assert.equal(result.signal, signal);
  }
  if (whileDown) await whileDown();
  ctx.server = await startServer({ wsPort, httpPort, dataDir: ctx.dataDir, extra });
  assert.equal(ctx.server.wsPort, wsPort, 'the new server uses the same ws port');
  assert.equal(ctx.server.httpPort, httpPort, 'the new server uses the same http port');
}

/** before(): a data directory, the server, the browser. With https, the
 *  server speaks TLS (extra names its certificate) and the browser takes
 *  any certificate. */
export async function setUp({ extra = [], https = false } = {}) {
  assert.ok(fs.existsSync(BIN), `server binary not found at ${BIN} (build it, or set TAGARELA_BIN)`);
  ctx.https = https;
  ctx.dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tagarela-browser-'));
  ctx.server = await startServer({ dataDir: ctx.dataDir, extra });
  const args = https ? [...CHROMIUM_ARGS, '--ignore-certificate-errors'] : CHROMIUM_ARGS;
  ctx.browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args });
}

/** after(): everything setUp() made, gone. */
export async function tearDown() {
  if (ctx.browser) await ctx.browser.close().catch(() => {});
  await stopServer(ctx.server).catch(() => {});
  if (ctx.dataDir) fs.rmSync(ctx.dataDir, { recursive: true, force: true });
}

export function baseUrl() {
  return `${ctx.https ? 'https' : 'http'}://127.0.0.1:${ctx.server.httpPort}`;
}

/* ---------- pages ---------- */

/** Console lines that are the browser's own report of a refused or dropped
 *  WebSocket (while a server restarts): network events, not page faults. */
const NETWORK_NOISE = /^WebSocket connection to '[^']*' failed/;

/** A new browser context and page, with what it shows and sends recorded.
 *  `init` is a script run in the page before its own (see holdableSockets). */
export async function openPage(viewport = DESKTOP, { init } = {}) {
  const context = await ctx.browser.newContext({ viewport });
  if (init) await context.addInitScript(init);
  const page = await context.newPage();
  const entry = { context, page, dialogs: [], errors: [], console: [], received: [], sent: [], sockets: [] };
  page.on('dialog', (d) => { entry.dialogs.push(`${d.type()}: ${d.message()}`); d.dismiss().catch(() => {}); });
  page.on('pageerror', (e) => entry.errors.push(String(e)));
  page.on('console', (m) => {
    if ((m.type() === 'error' || m.type() === 'warning') && !NETWORK_NOISE.test(m.text())) {
      entry.console.push(`${m.type()}: ${m.text()}`);
    }
  });
  // What went over the page's WebSockets, to check the page against the wire.
  const parse = (f) => { try { return JSON.parse(f.payload); } catch (_) { return null; } };
  page.on('websocket', (ws) => {
    entry.sockets.push(ws.url());
    ws.on('framereceived', (f) => { const m = parse(f); if (m) entry.received.push(m); });
    ws.on('framesent', (f) => { const m = parse(f); if (m) entry.sent.push(m); });
  });
  ctx.everyone.push(entry);
  return entry;
}

/** Init script for openPage: the page's WebSockets can be closed from the
 *  test (window.__dropSockets()) and new ones refused while held
 *  (window.__holdSockets = true): a connection lost, then a network that
 *  stays down for a while. The page's own code is left as it is. */
export function holdableSockets() {
  const Real = window.WebSocket;
  const open = new Set();
  window.__holdSockets = false;
  window.__socketsMade = 0;
  class Holdable extends Real {
    constructor(url, protocols) {
      super(url, protocols);
      window.__socketsMade++;
      // Held: the connection fails as a refused one would (close code 1006).
      if (window.__holdSockets) { super.close(); return; }
      open.add(this);
      this.addEventListener('close', () => open.delete(this));
    }
  }
  window.WebSocket = Holdable;
  window.__dropSockets = () => { for (const s of open) s.close(4001, 'dropped by the test'); open.clear(); };
}

/** Waits for fn(arg) to be truthy in the page; on time-out, says what the page showed. */
export async function waitIn(page, what, fn, arg, timeout = WAIT) {
  try {
    return await page.waitForFunction(fn, arg, { timeout, polling: 50 });
  } catch (err) {
    const seen = await describe(page).catch(() => '(page gone)');
    throw new Error(`timed out waiting for ${what}\n${seen}${serverTrouble()}`);
  }
}

export async function describe(page) {
  return page.evaluate(() => {
    const log = document.querySelector('.log:not([hidden])');
    return [
      `url: ${location.href}; page state: ${JSON.stringify(window.tagarela && window.tagarela.state)}`,
      `logs: ${[...document.querySelectorAll('.log')].map((l) => `#${l.dataset.room}${l.hidden ? ' (hidden)' : ''}: ${l.children.length}`).join(', ')}`,
      `status: ${document.getElementById('status').dataset.state} (${document.getElementById('status-text').textContent})`,
      `users: ${[...document.querySelectorAll('#user-list .user-name')].map((e) => e.textContent).join(' | ')}`,
      `log:\n  ${log ? [...log.children].map((e) => `${e.dataset.id ? `[${e.dataset.id}] ` : ''}${e.textContent}`).join('\n  ') : '(none)'}`,
    ].join('\n');
  });
}

export async function waitOnline(page, timeout = WAIT) {
  await waitIn(page, 'the page to be online', () => document.getElementById('status').dataset.state === 'online', undefined, timeout);
}

/** A page whose reconnects failed for a while waits up to the page's
 *  longest backoff (10 s) before it tries again. */
export const RECONNECT_WAIT = 10_000 + WAIT;

/** Opens the page on ?room_id=room, types the name into the inline form and
 *  waits until it is online. */
export async function login(name, { room, viewport = DESKTOP, screenshot, init } = {}) {
  const entry = await openPage(viewport, { init });
  const { page } = entry;
  try {
    await page.goto(`${baseUrl()}/?room_id=${encodeURIComponent(room)}`);
  } catch (err) {
    throw new Error(`${err.message}${serverTrouble()}`);
  }
  await page.locator('#nick').waitFor({ state: 'visible' });
  if (screenshot) await shot(page, screenshot);
  assert.equal(await page.locator('#login-room').inputValue(), room, 'the room field comes from ?room_id=');
  await page.locator('#nick').fill(name);
  await page.locator('#nick').press('Enter');
  await waitOnline(page);
  assert.equal(await page.locator('#login').isVisible(), false, 'the login form goes away');
  entry.name = name;
  return entry;
}

export function userNames(page) {
  return page.$$eval('#user-list .user-name', (els) => els.map((e) => e.textContent));
}

export async function waitUsers(page, names) {
  const want = [...names].sort();
  await waitIn(page, `user list = ${JSON.stringify(want)}`, (w) => {
    const got = [...document.querySelectorAll('#user-list .user-name')].map((e) => e.textContent).sort();
    return JSON.stringify(got) === JSON.stringify(w) &&
      document.getElementById('user-count').textContent === String(w.length);
  }, want);
}

/** Waits for a message whose text is exactly `text` in the visible log; returns facts about it. */
export async function waitMessage(page, text) {
  await waitIn(page, `message ${JSON.stringify(text)}`, (t) =>
    [...document.querySelectorAll('.log:not([hidden]) .msg .text')].some((e) => e.textContent === t), text);
  return page.evaluate((t) => {
    const body = [...document.querySelectorAll('.log:not([hidden]) .msg .text')].filter((e) => e.textContent === t).pop();
    const row = body.closest('.msg');
    const time = row.querySelector('time');
    return {
      author: row.querySelector('.author').textContent,
      private: row.classList.contains('private'),
      history: row.classList.contains('from-history'),
      id: row.dataset.id ?? null,
      badge: row.querySelector('.badge-private')?.textContent ?? null,
      time: time?.textContent ?? null,
      timeTitle: time?.title ?? null,
      html: body.innerHTML,
      links: [...body.querySelectorAll('a')].map((a) => ({
        href: a.getAttribute('href'), text: a.textContent, target: a.target, rel: a.rel,
      })),
    };
  }, text);
}

export function hasText(page, text) {
  return page.evaluate((t) => [...document.querySelectorAll('.log:not([hidden]) .msg .text')].some((e) => e.textContent.includes(t)), text);
}

/** Message ids shown more than once in any room's log. */
export function duplicateIds(page) {
  return page.evaluate(() => {
    const dups = [];
    for (const log of document.querySelectorAll('.log')) {
      const seen = new Set();
      for (const m of log.querySelectorAll('.msg[data-id]')) {
        if (seen.has(m.dataset.id)) dups.push(`#${log.dataset.room}:${m.dataset.id}`);
        seen.add(m.dataset.id);
      }
    }
    return dups;
  });
}

/** The text of the notice or message around each visible time that the
 *  layout broke over two lines. */
export function brokenTimes(page) {
  return page.evaluate(() => [...document.querySelectorAll('time')]
    .filter((t) => {
      if (!t.offsetParent || !t.firstChild) return false;
      const r = document.createRange();
      r.selectNodeContents(t);
      return new Set([...r.getClientRects()].map((x) => Math.round(x.top))).size > 1;
    })
    .map((t) => (t.closest('.notice, .msg') || t).textContent));
}

/** How many times a message with exactly this text is in the visible log. */
export function countText(page, text) {
  return page.evaluate((t) => [...document.querySelectorAll('.log:not([hidden]) .msg .text')]
    .filter((e) => e.textContent === t).length, text);
}

/** The messages of the visible log, in DOM order, as {id, text, author, history, private}. */
export function shownMessages(page) {
  return page.evaluate(() => [...document.querySelectorAll('.log:not([hidden]) .msg')].map((m) => ({
    id: m.dataset.id == null ? null : Number(m.dataset.id),
    text: m.querySelector('.text').textContent,
    author: m.querySelector('.author').textContent,
    history: m.classList.contains('from-history'),
    private: m.classList.contains('private'),
  })));
}

/** The server's escaping, to compare wire content with what a page shows. */
export function decodeWire(s) {
  const ent = { '&amp;': '&', '&lt;': '<', '&gt;': '>', '&quot;': '"', '&#039;': "'" };
  return s.replace(/<br \/>/g, '').replace(/&(amp|lt|gt|quot|#039);/g, (m) => ent[m]);
}

export async function say(page, text) {
  const box = page.locator('#message');
  await box.fill(text);
  await box.press('Enter');
  await waitIn(page, 'the composer to empty after sending', () => document.getElementById('message').value === '');
}

export async function shot(page, name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, name);
  await page.screenshot({ path: file });
  return file;
}
