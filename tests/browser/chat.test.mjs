// Browser tests of the chat page against the real server binary.
//
//   cd tests/browser && npm ci && npm test
//
// Environment:
//   TAGARELA_BIN    server binary (default: <repo>/build/tagarela)
//   CHROMIUM_PATH   browser (default: /usr/bin/chromium)
//
// The server is started with ports 0 and the ports it prints are parsed;
// screenshots go to tests/browser/artifacts/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');
const BIN = process.env.TAGARELA_BIN || path.join(REPO, 'build', 'tagarela');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ARTIFACTS = path.join(HERE, 'artifacts');
const ROOM = 'lobby';
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const WAIT = 10_000;

/* ---------- the server ---------- */

/** Starts `tagarela serve` and resolves once it printed both listeners. */
function startServer({ wsPort = 0, httpPort = 0, dataDir }) {
  const args = ['serve', '--ws', `127.0.0.1:${wsPort}`, '--http', `127.0.0.1:${httpPort}`, '--data', dataDir];
  const proc = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
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
    exited.then((r) => { if (!srv.stopping) srv.died = r; });
    return srv;
  });
}

/** What went wrong with the server, if it died on its own: for error messages. */
function serverTrouble() {
  if (!server || !server.died) return '';
  const { code, signal } = server.died;
  return `\nTHE SERVER DIED on its own (exit code ${code}, signal ${signal}); its output:\n${server.log.join('').slice(-4000)}`;
}

async function stopServer(srv, signal = 'SIGTERM') {
  if (!srv || srv.proc.exitCode !== null || srv.proc.signalCode !== null) return srv && srv.exited;
  srv.stopping = true;
  srv.proc.kill(signal);
  const timer = setTimeout(() => srv.proc.kill('SIGKILL'), 5000);
  const result = await srv.exited;
  clearTimeout(timer);
  return result;
}

/* ---------- pages ---------- */

let browser;
let server;
let dataDir;
const people = {};      // name -> {context, page, dialogs, errors}
const everyone = [];    // all pages ever opened, for the final checks

async function openPage(viewport = DESKTOP) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const entry = { context, page, dialogs: [], errors: [], received: [], sent: [] };
  page.on('dialog', (d) => { entry.dialogs.push(`${d.type()}: ${d.message()}`); d.dismiss().catch(() => {}); });
  page.on('pageerror', (e) => entry.errors.push(String(e)));
  // What went over the page's WebSockets, to check the page against the wire.
  const parse = (f) => { try { return JSON.parse(f.payload); } catch (_) { return null; } };
  page.on('websocket', (ws) => {
    ws.on('framereceived', (f) => { const m = parse(f); if (m) entry.received.push(m); });
    ws.on('framesent', (f) => { const m = parse(f); if (m) entry.sent.push(m); });
  });
  everyone.push(entry);
  return entry;
}

function baseUrl() {
  return `http://127.0.0.1:${server.httpPort}`;
}

/** Waits for fn(arg) to be truthy in the page; on time-out, says what the page showed. */
async function waitIn(page, what, fn, arg, timeout = WAIT) {
  try {
    return await page.waitForFunction(fn, arg, { timeout, polling: 50 });
  } catch (err) {
    const seen = await describe(page).catch(() => '(page gone)');
    throw new Error(`timed out waiting for ${what}\n${seen}${serverTrouble()}`);
  }
}

async function describe(page) {
  return page.evaluate(() => {
    const log = document.querySelector('.log:not([hidden])');
    return [
      `url: ${location.href}; page state: ${JSON.stringify(window.tagarela && window.tagarela.state)}`,
      `logs: ${[...document.querySelectorAll('.log')].map((l) => `#${l.dataset.room}${l.hidden ? ' (hidden)' : ''}: ${l.children.length}`).join(', ')}`,
      `status: ${document.getElementById('status').dataset.state} (${document.getElementById('status-text').textContent})`,
      `users: ${[...document.querySelectorAll('#user-list .user-name')].map((e) => e.textContent).join(' | ')}`,
      `log:\n  ${log ? [...log.children].map((e) => e.textContent).join('\n  ') : '(none)'}`,
    ].join('\n');
  });
}

async function waitOnline(page) {
  await waitIn(page, 'the page to be online', () => document.getElementById('status').dataset.state === 'online');
}

async function login(name, viewport, screenshot) {
  const entry = await openPage(viewport);
  const { page } = entry;
  try {
    await page.goto(`${baseUrl()}/?room_id=${ROOM}`);
  } catch (err) {
    throw new Error(`${err.message}${serverTrouble()}`);
  }
  await page.locator('#nick').waitFor({ state: 'visible' });
  if (screenshot) await shot(page, screenshot);
  assert.equal(await page.locator('#login-room').inputValue(), ROOM, 'the room field comes from ?room_id=');
  await page.locator('#nick').fill(name);
  await page.locator('#nick').press('Enter');
  await waitOnline(page);
  assert.equal(await page.locator('#login').isVisible(), false, 'the login form goes away');
  people[name] = entry;
  return entry;
}

function userNames(page) {
  return page.$$eval('#user-list .user-name', (els) => els.map((e) => e.textContent));
}

async function waitUsers(page, names) {
  const want = [...names].sort();
  await waitIn(page, `user list = ${JSON.stringify(want)}`, (w) => {
    const got = [...document.querySelectorAll('#user-list .user-name')].map((e) => e.textContent).sort();
    return JSON.stringify(got) === JSON.stringify(w) &&
      document.getElementById('user-count').textContent === String(w.length);
  }, want);
}

/** Waits for a message whose text is exactly `text` in the visible log; returns facts about it. */
async function waitMessage(page, text) {
  await waitIn(page, `message ${JSON.stringify(text)}`, (t) =>
    [...document.querySelectorAll('.log:not([hidden]) .msg .text')].some((e) => e.textContent === t), text);
  return page.evaluate((t) => {
    const body = [...document.querySelectorAll('.log:not([hidden]) .msg .text')].filter((e) => e.textContent === t).pop();
    const row = body.closest('.msg');
    const time = row.querySelector('time');
    return {
      author: row.querySelector('.author').textContent,
      private: row.classList.contains('private'),
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

function hasText(page, text) {
  return page.evaluate((t) => [...document.querySelectorAll('.log:not([hidden]) .msg .text')].some((e) => e.textContent.includes(t)), text);
}

/** Message ids shown more than once in any room's log. */
function duplicateIds(page) {
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

/** How many times a message with exactly this text is in the visible log. */
function countText(page, text) {
  return page.evaluate((t) => [...document.querySelectorAll('.log:not([hidden]) .msg .text')]
    .filter((e) => e.textContent === t).length, text);
}

/** The server's escaping, to compare wire content with what a page shows. */
function decodeWire(s) {
  const ent = { '&amp;': '&', '&lt;': '<', '&gt;': '>', '&quot;': '"', '&#039;': "'" };
  return s.replace(/<br \/>/g, '').replace(/&(amp|lt|gt|quot|#039);/g, (m) => ent[m]);
}

async function say(page, text) {
  const box = page.locator('#message');
  await box.fill(text);
  await box.press('Enter');
  await waitIn(page, 'the composer to empty after sending', () => document.getElementById('message').value === '');
}

async function shot(page, name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, name);
  await page.screenshot({ path: file });
  return file;
}

/* ---------- setup ---------- */

before(async () => {
  assert.ok(fs.existsSync(BIN), `server binary not found at ${BIN} (build it, or set TAGARELA_BIN)`);
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tagarela-browser-'));
  server = await startServer({ dataDir });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  await stopServer(server).catch(() => {});
  if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
});

/* ---------- scenarios ---------- */

test('the server serves the page and its config', async () => {
  const res = await fetch(`${baseUrl()}/`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') || '', /^text\/html/);
  const html = await res.text();
  assert.match(html, /<script src="\/app\.js"/);
  const cfg = await fetch(`${baseUrl()}/config.json`);
  assert.equal(cfg.status, 200);
  const body = await cfg.json();
  assert.ok('ws_url' in body, 'config.json has ws_url');
  assert.ok(body.ws_url === null || /^wss?:\/\//.test(body.ws_url), `ws_url is null or a ws URL: ${body.ws_url}`);
});

test('three people log in and each sees the others', async () => {
  const { page: ana } = await login('Ana', DESKTOP, 'login.png');
  const { page: bruno } = await login('Bruno');
  const { page: carla } = await login('Carla');
  for (const page of [ana, bruno, carla]) await waitUsers(page, ['Ana', 'Bruno', 'Carla']);

  // Each page marks its own entry, and the others are buttons (to write privately).
  assert.equal(await ana.locator('#user-list .user.self .user-name').textContent(), 'Ana');
  assert.equal(await ana.locator('#user-list button.user').count(), 2);
  assert.equal(await ana.locator('#me-name').textContent(), 'Ana');

  // Ana saw the other two arrive; Carla saw only herself arrive.
  await waitIn(ana, 'join notices at Ana', () => {
    const t = [...document.querySelectorAll('.log:not([hidden]) .notice-join')].map((e) => e.textContent).join('\n');
    return t.includes('Bruno joined') && t.includes('Carla joined');
  });
  const carlaNotices = await carla.$$eval('.log:not([hidden]) .notice-join', (els) => els.map((e) => e.textContent));
  assert.ok(carlaNotices.some((t) => t.includes('You joined #lobby as Carla')), carlaNotices.join(' / '));
  assert.ok(!carlaNotices.some((t) => t.includes('Ana joined')), 'no join notice for people already there');
  assert.match(await ana.title(), /#lobby/);
});

test("the page decodes exactly the server's escaping", async () => {
  const { page } = people.Ana;
  const cases = await page.evaluate(() => [
    'a &amp;lt;b&amp;gt; &lt;i&gt;',
    'one<br />\ntwo<br />\r\nthree<br />\rfour',
    '&quot;x&quot; &#039;y&#039; &#39; &nbsp; &amp;amp;',
  ].map((s) => window.tagarela.decode(s)));
  assert.deepEqual(cases, [
    'a &lt;b&gt; <i>',
    'one\ntwo\nthree\nfour',
    '"x" \'y\' &#39; &nbsp; &amp;',
  ]);
});

test('a public message appears for everyone, with sender and time', async () => {
  const { page: ana } = people.Ana;
  const text = "Bom dia, pessoal! Who's up for reviewing the release notes?";
  await say(ana, text);
  for (const name of ['Ana', 'Bruno', 'Carla']) {
    const m = await waitMessage(people[name].page, text);
    assert.equal(m.author, 'Ana', `sender name at ${name}`);
    assert.equal(m.private, false);
    assert.match(m.time, /^\d\d:\d\d$/, 'HH:MM shown');
    assert.match(m.timeTitle, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/, 'the full server time as title');
    assert.ok(m.timeTitle.endsWith(`${m.time}:${m.timeTitle.slice(-2)}`), 'HH:MM is taken from the server time');
  }
});

test('a private message reaches only its target and its sender', async () => {
  const { page: ana } = people.Ana;
  const { page: bruno } = people.Bruno;
  const { page: carla } = people.Carla;

  await bruno.locator('#user-list button.user', { hasText: 'Ana' }).click();
  assert.equal(await bruno.locator('#target').isVisible(), true, 'the composer shows the private target');
  assert.equal(await bruno.locator('#target-name').textContent(), 'Ana');
  assert.equal(await bruno.locator('#user-list button.user[aria-pressed="true"] .user-name').textContent(), 'Ana');

  const secret = 'psst, Ana: I can take the WebSocket part';
  await say(bruno, secret);
  const atAna = await waitMessage(ana, secret);
  assert.equal(atAna.private, true, 'marked private at the target');
  assert.equal(atAna.author, 'Bruno');
  assert.match(atAna.badge, /Private to you/);
  const atBruno = await waitMessage(bruno, secret);
  assert.equal(atBruno.private, true, 'marked private at the sender');
  assert.match(atBruno.badge, /Private to Ana/);

  // Back to everyone; a public message after it proves Carla is up to date.
  await bruno.locator('#target-clear').click();
  assert.equal(await bruno.locator('#target').isVisible(), false);
  const pub = "I'll review the WebSocket part after lunch.";
  await say(bruno, pub);
  const m = await waitMessage(carla, pub);
  assert.equal(m.private, false);
  assert.equal(await hasText(carla, 'psst'), false, 'Carla must not see the private message');
  await waitMessage(ana, pub);
});

test('Enter sends and Shift+Enter makes a new line', async () => {
  const { page: carla } = people.Carla;
  const box = carla.locator('#message');
  await box.click();
  await box.pressSequentially('Deploy checklist:');
  await box.press('Shift+Enter');
  await box.pressSequentially('1. tag the release');
  await box.press('Shift+Enter');
  await box.pressSequentially('2. update the docs');
  const text = 'Deploy checklist:\n1. tag the release\n2. update the docs';
  assert.equal(await box.inputValue(), text, 'Shift+Enter inserts line breaks and sends nothing');
  await box.press('Enter');
  assert.equal(await box.inputValue(), '', 'Enter sent the message');
  for (const name of ['Ana', 'Bruno', 'Carla']) {
    const m = await waitMessage(people[name].page, text);
    assert.equal(m.author, 'Carla');
  }
  // The line breaks are shown as line breaks.
  const height = await people.Ana.page.evaluate((t) => {
    const e = [...document.querySelectorAll('.log:not([hidden]) .msg .text')].find((x) => x.textContent === t);
    return e.getBoundingClientRect().height / parseFloat(getComputedStyle(e).lineHeight);
  }, text);
  assert.ok(height > 2.5, `three lines tall (${height})`);
});

test('links in messages are clickable and open safely', async () => {
  const { page: ana } = people.Ana;
  const text = 'Notes are at https://example.com/notes?v=1&lang=pt. Not a link: javascript:alert(1)';
  await say(ana, text);
  const m = await waitMessage(people.Bruno.page, text);
  assert.deepEqual(m.links, [{
    href: 'https://example.com/notes?v=1&lang=pt', text: 'https://example.com/notes?v=1&lang=pt',
    target: '_blank', rel: 'noopener noreferrer',
  }]);
});

test('screenshots: desktop and phone', async () => {
  const { page: ana } = people.Ana;
  await say(people.Carla.page, 'Looks good to me. Shipping it after the tests pass.');
  await waitMessage(ana, 'Looks good to me. Shipping it after the tests pass.');
  await shot(ana, 'desktop.png');
  await ana.emulateMedia({ colorScheme: 'dark' });
  await shot(ana, 'desktop-dark.png');
  await ana.emulateMedia({ colorScheme: 'light' });

  const { page: bruno } = people.Bruno;
  await bruno.setViewportSize(PHONE);
  await waitIn(bruno, 'the people list to collapse on a phone', () =>
    getComputedStyle(document.getElementById('users')).visibility === 'hidden' &&
    document.getElementById('users-toggle').getAttribute('aria-expanded') === 'false');
  await shot(bruno, 'phone.png');
  await bruno.locator('#users-toggle').click();
  await waitIn(bruno, 'the people drawer to open', () => {
    const r = document.getElementById('users').getBoundingClientRect();
    return r.right <= window.innerWidth + 1 && r.left >= 0 && getComputedStyle(document.getElementById('users')).visibility === 'visible';
  });
  assert.equal(await bruno.locator('#users-toggle').getAttribute('aria-expanded'), 'true');
  await bruno.waitForTimeout(250);
  await shot(bruno, 'phone-people.png');
  await bruno.keyboard.press('Escape');
  assert.equal(await bruno.locator('#users-toggle').getAttribute('aria-expanded'), 'false');
  // No horizontal scrolling on a phone.
  const overflow = await bruno.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `page wider than the phone by ${overflow}px`);
  await bruno.setViewportSize(DESKTOP);
});

test('HTML and script in a name and a message are shown literally and run nothing', async (t) => {
  const evilName = '<img src=x onerror=window.p=1>';
  const evil = await login(evilName);
  const evilText = `<script>window.p=2</script><img src=x onerror="window.p=3;alert(3)"> <svg onload=alert(4)> ` +
    `&amp; &lt;b&gt; "quoted" 'single' <b>bold</b>\n<a href="javascript:alert(5)">click</a>`;
  await say(evil.page, evilText);
  // A newcomer may get the room's recent messages: each shown once, none private to others.
  const history = evil.received.filter((m) => m.type === 'history');
  if (history.length) {
    const replayed = history.flatMap((h) => h.messages);
    for (const m of replayed) {
      assert.equal(m.to_uid, 'all', `a newcomer is replayed only public messages, got ${JSON.stringify(m)}`);
      assert.equal(await countText(evil.page, decodeWire(m.content)), 1, `history message shown once: ${m.content}`);
    }
    assert.ok(replayed.some((m) => m.content.startsWith('Bom dia')), 'recent public messages are replayed');
    t.diagnostic(`a newcomer was replayed ${replayed.length} messages`);
  } else {
    t.diagnostic('the server replayed no history to a newcomer');
  }
  assert.equal(await hasText(evil.page, 'psst'), false, 'a private message is not replayed to others');
  const pages = ['Ana', 'Bruno', 'Carla'].map((n) => people[n].page).concat([evil.page]);
  for (const page of pages) {
    await waitUsers(page, ['Ana', 'Bruno', 'Carla', evilName]);
    const m = await waitMessage(page, evilText);
    assert.equal(m.author, evilName, 'the name is shown as typed');
    assert.deepEqual(m.links, [], 'no link made from markup');
  }
  await people.Ana.page.waitForTimeout(400); // a broken <img> would have fired onerror by now
  await shot(people.Ana.page, 'literal-html.png');
  for (const page of pages) {
    const found = await page.evaluate(() => ({
      flag: window.p,
      elements: document.querySelectorAll('.log img, .log script, .log b, .log iframe, #user-list img, #user-list script').length,
      svgs: [...document.querySelectorAll('.log svg, #user-list svg')].filter((s) => !s.closest('.badge-private, .user-pm')).length,
    }));
    assert.equal(found.flag, undefined, 'no script from the wire ran');
    assert.equal(found.elements, 0, 'no element made from the wire');
    assert.equal(found.svgs, 0, 'no svg made from the wire');
  }
  await evil.context.close();
  await waitIn(people.Ana.page, 'the leave notice', (n) =>
    [...document.querySelectorAll('.log:not([hidden]) .notice-leave')].some((e) => e.textContent.includes(`${n} left`)), evilName);
  await waitUsers(people.Ana.page, ['Ana', 'Bruno', 'Carla']);
  for (const e of everyone) assert.deepEqual(e.dialogs, [], 'no dialog was opened');
});

test('server errors are shown inline and the connection stays', async () => {
  const { page: carla } = people.Carla;
  await carla.locator('#message').fill('x'.repeat(4097));
  await carla.locator('#message').press('Enter');
  await waitIn(carla, 'an inline error', () => document.querySelector('.log:not([hidden]) .notice-error') !== null);
  const err = await carla.evaluate(() => {
    const e = document.querySelector('.log:not([hidden]) .notice-error');
    return { code: e.dataset.code, role: e.getAttribute('role'), text: e.textContent };
  });
  assert.equal(err.code, 'bad_content');
  assert.equal(err.role, 'alert');
  assert.equal(await carla.locator('#status').getAttribute('data-state'), 'online');
  assert.equal(await people.Ana.page.locator('.notice-error').count(), 0, 'the error goes to the sender only');
  // Still usable.
  await say(carla, 'oops, too long');
  await waitMessage(people.Ana.page, 'oops, too long');
});

test('after a server restart every page reconnects and logs in by itself', async () => {
  const names = ['Ana', 'Bruno', 'Carla'];
  const { wsPort, httpPort } = server;
  const result = await stopServer(server, 'SIGTERM');
  assert.equal(result.signal, null, `server died of ${result.signal}`);
  assert.equal(result.code, 0, 'the server exits 0 on SIGTERM');
  for (const n of names) {
    await waitIn(people[n].page, 'the reconnecting state', () =>
      document.getElementById('status').dataset.state === 'reconnecting');
  }
  await shot(people.Carla.page, 'reconnecting.png');
  server = await startServer({ wsPort, httpPort, dataDir });
  assert.equal(server.wsPort, wsPort, 'the new server uses the same ws port');
  assert.equal(server.httpPort, httpPort, 'the new server uses the same http port');
  for (const n of names) {
    await waitOnline(people[n].page);
    await waitUsers(people[n].page, names);
  }
  assert.ok(await people.Ana.page.locator('.notice-info', { hasText: 'Connection lost' }).count() >= 1);
  for (const n of names) {
    const entry = people[n];
    const sawIds = entry.received.some((m) => m.type === 'say' && m.id != null);
    const logins = entry.sent.filter((m) => m.type === 'login');
    assert.ok(logins.length >= 2, `${n} logged in again`);
    const last = logins[logins.length - 1];
    assert.equal(last.name, n, 'the same name');
    assert.equal(last.room_id, ROOM, 'the same room');
    if (sawIds) {
      const maxId = Math.max(...entry.received.filter((m) => m.type === 'say' && m.id != null).map((m) => Number(m.id)));
      assert.equal(typeof last.last_id, 'number', `${n} sends last_id when it knows one`);
      assert.ok(last.last_id >= 1 && last.last_id <= maxId, `last_id ${last.last_id} is an id seen (max ${maxId})`);
    }
    assert.deepEqual(await duplicateIds(entry.page), [], `no message shown twice at ${n}`);
  }
  await say(people.Bruno.page, 'and we are back');
  for (const n of names) await waitMessage(people[n].page, 'and we are back');
  // Messages from before the restart are still on the page.
  assert.equal(await hasText(people.Carla.page, 'Bom dia, pessoal!'), true);
});

test('a reload logs in again with the remembered nickname', async () => {
  const { page: bruno } = people.Bruno;
  assert.equal(await bruno.evaluate(() => localStorage.getItem('tagarela.name')), 'Bruno');
  await bruno.reload();
  await waitOnline(bruno);
  assert.equal(await bruno.locator('#login').isVisible(), false, 'no login form for a known nickname');
  await waitUsers(bruno, ['Ana', 'Bruno', 'Carla']);
  assert.equal(await bruno.locator('#user-list .user.self .user-name').textContent(), 'Bruno');
  assert.deepEqual(await duplicateIds(bruno), []);
  await shot(bruno, 'after-reload.png');
  // If the server replayed history, the reloaded tab still knows who said what.
  const replay = people.Bruno.received.filter((m) => m.type === 'history').pop();
  if (replay && replay.messages.length) {
    const facts = await bruno.evaluate(() => ({
      unknown: [...document.querySelectorAll('.log:not([hidden]) .author.unknown')].map((e) => e.textContent),
      mine: [...document.querySelectorAll('.log:not([hidden]) .msg.mine .text')].map((e) => e.textContent),
    }));
    assert.deepEqual(facts.unknown, [], 'every replayed sender is named');
    assert.ok(facts.mine.includes('and we are back'), 'own messages from before the reload are marked as own');
    if (replay.messages.some((m) => m.to_uid !== 'all')) {
      const m = await waitMessage(bruno, 'psst, Ana: I can take the WebSocket part');
      assert.equal(m.private, true);
      assert.match(m.badge, /Private to Ana/, 'an own private message replayed says whom it went to');
    }
  }
});

test('switching rooms logs in to the other room and updates the URL', async (t) => {
  const { page: ana } = people.Ana;
  const { page: carla } = people.Carla;
  const room = carla.locator('#room-input');
  await room.fill('backstage');
  await room.press('Enter');
  await waitIn(carla, 'the URL to name the room', () => new URL(location.href).searchParams.get('room_id') === 'backstage');
  await waitOnline(carla);
  await waitUsers(carla, ['Carla']);
  await waitUsers(ana, ['Ana', 'Bruno']);
  await waitIn(ana, 'Carla left', () =>
    [...document.querySelectorAll('.log:not([hidden]) .notice-leave')].some((e) => e.textContent.includes('Carla left')));
  assert.equal(await hasText(carla, 'Bom dia'), false, 'the other room starts with its own log');

  await say(carla, 'anyone backstage?');
  await waitMessage(carla, 'anyone backstage?');
  await say(people.Bruno.page, 'still in the lobby');
  await waitMessage(ana, 'still in the lobby');
  assert.equal(await hasText(ana, 'anyone backstage?'), false, 'rooms are separate');

  // The browser's Back button returns to the lobby, with its log kept.
  await carla.goBack();
  await waitIn(carla, 'the lobby again', () => new URL(location.href).searchParams.get('room_id') === 'lobby');
  await waitOnline(carla);
  await waitUsers(carla, ['Ana', 'Bruno', 'Carla']);
  assert.equal(await hasText(carla, 'Bom dia, pessoal!'), true, 'the lobby log was kept');
  // With message ids, the page asks for what it missed (last_id) and shows it once.
  const carlaEntry = people.Carla;
  const backLogin = carlaEntry.sent.filter((m) => m.type === 'login').pop();
  assert.equal(backLogin.room_id, ROOM);
  if (carlaEntry.received.some((m) => m.type === 'say' && m.id != null)) {
    assert.equal(typeof backLogin.last_id, 'number', 'the page sends last_id for a room it has seen');
    t.diagnostic(`back in the lobby with last_id ${backLogin.last_id}`);
    await waitMessage(carla, 'still in the lobby');
    assert.equal(await countText(carla, 'still in the lobby'), 1, 'the missed message is shown once');
    const order = await carla.evaluate(() => [...document.querySelectorAll('.log:not([hidden]) .msg[data-id]')].map((e) => Number(e.dataset.id)));
    assert.deepEqual(order, [...order].sort((a, b) => a - b), 'messages are in id order');
  }
  assert.deepEqual(await duplicateIds(carla), []);
  assert.equal(await carla.locator('#room-input').inputValue(), 'lobby');
});

test('no page showed a dialog or threw', async () => {
  for (const e of everyone) {
    assert.deepEqual(e.dialogs, [], 'dialogs');
    assert.deepEqual(e.errors, [], 'uncaught page errors');
  }
});
