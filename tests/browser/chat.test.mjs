// Browser tests of the chat page against the real server binary: login,
// the user list, public and private messages, literal HTML, errors, links,
// reconnects, rooms, screenshots.
//
//   cd tests/browser && npm ci && npm test
//
// Environment: TAGARELA_BIN, CHROMIUM_PATH (see lib.mjs). The server is
// started with ports 0 and the ports it prints are parsed; screenshots go
// to tests/browser/artifacts/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  ctx, setUp, tearDown, restartServer, baseUrl, openPage, DESKTOP, PHONE, SMALL_PHONE, RECONNECT_WAIT,
  login as loginAs, waitIn, waitOnline, waitUsers, waitMessage, hasText, duplicateIds,
  countText, decodeWire, say, shot, brokenTimes,
} from './lib.mjs';

const ROOM = 'lobby';
const people = {};      // name -> {context, page, dialogs, errors, console, received, sent}

async function login(name, viewport = DESKTOP, screenshot) {
  const entry = await loginAs(name, { room: ROOM, viewport, screenshot });
  people[name] = entry;
  return entry;
}

before(() => setUp());
after(() => tearDown());

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
  const broken = await brokenTimes(bruno);
  assert.deepEqual(broken, [], `times broken over lines: ${broken.join(', ')}`);
  await bruno.setViewportSize(DESKTOP);
});

// Issue 9: on a phone the time of a join notice wrapped mid-number ("14:4" /
// "1"). It takes a notice as wide as the screen: a long name on a small phone.
test('on a small phone a long name\'s join and leave notices keep their time on one line', async () => {
  const room = 'narrow';
  const watcher = await loginAs('Wes', { room, viewport: SMALL_PHONE });
  for (const name of ['Maximiliano de Albuquerque e Sou', 'MaximilianodeAlbuquerqueeSouzaXY']) {
    const guest = await loginAs(name, { room });
    await waitIn(watcher.page, `${name}'s join notice`, (n) =>
      [...document.querySelectorAll('.log:not([hidden]) .notice-join')].some((e) => e.textContent.includes(`${n} joined`)), name);
    await guest.context.close();
    await waitIn(watcher.page, `${name}'s leave notice`, (n) =>
      [...document.querySelectorAll('.log:not([hidden]) .notice-leave')].some((e) => e.textContent.includes(`${n} left`)), name);
  }
  const broken = await brokenTimes(watcher.page);
  assert.deepEqual(broken, [], `times broken over lines in: ${broken.join(' | ')}`);
  const overflow = await watcher.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `page wider than the phone by ${overflow}px`);
  await shot(watcher.page, 'phone-small-notices.png');
  await watcher.context.close();
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
  for (const e of ctx.everyone) assert.deepEqual(e.dialogs, [], 'no dialog was opened');
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
  await restartServer('SIGTERM', {
    whileDown: async () => {
      for (const n of names) {
        await waitIn(people[n].page, 'the reconnecting state', () =>
          document.getElementById('status').dataset.state === 'reconnecting');
      }
      await shot(people.Carla.page, 'reconnecting.png');
    },
  });
  for (const n of names) {
    await waitOnline(people[n].page, RECONNECT_WAIT);
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
      unknown: [...document.querySelectorAll('.log:not([hidden]) .author.unknown')].map((e) =>
        `${e.textContent}: ${e.closest('.msg').querySelector('.text').textContent} (id ${e.closest('.msg').dataset.id})`),
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

test('the page can be used by keyboard alone, on a desktop and on a phone', async () => {
  const room = 'keys';
  const lia = await loginAs('Lia', { room });
  const kim = await openPage();
  const { page } = kim;
  await page.goto(`${baseUrl()}/?room_id=${room}`);
  await page.locator('#nick').waitFor({ state: 'visible' });
  const focused = () => page.evaluate(() => {
    const a = document.activeElement;
    return { id: a.id, user: a.matches('button.user') ? a.querySelector('.user-name').textContent : null,
      inUsers: !!a.closest('#users'), tag: a.tagName };
  });
  assert.equal((await focused()).id, 'nick', 'the nickname field has the focus');
  await page.keyboard.type('Kim');
  await page.keyboard.press('Enter');
  await waitOnline(page);
  await waitUsers(page, ['Kim', 'Lia']);
  assert.equal((await focused()).id, 'message', 'then the message box has it');

  // Tab reaches the people list; Enter on a person starts a private message.
  let f;
  for (let i = 0; i < 12 && !(f = await focused()).user; i++) await page.keyboard.press('Tab');
  assert.equal(f.user, 'Lia', 'Tab reaches the other person in the list');
  await page.keyboard.press('Enter');
  assert.equal(await page.locator('#target-name').textContent(), 'Lia');
  assert.equal((await focused()).id, 'message', 'back to the message box');
  await page.keyboard.type('hi Lia, only you see this');
  await page.keyboard.press('Enter');
  assert.equal((await waitMessage(lia.page, 'hi Lia, only you see this')).private, true);
  await page.keyboard.press('Escape');
  assert.equal(await page.locator('#target').isVisible(), false, 'Escape goes back to everyone');

  // On a phone the list is a drawer: it takes the focus, Tab stays in it, Escape closes it.
  await page.setViewportSize(PHONE);
  await waitIn(page, 'the drawer to close', () => document.getElementById('users-toggle').getAttribute('aria-expanded') === 'false');
  await page.locator('#users-toggle').focus();
  await page.keyboard.press('Enter');
  await waitIn(page, 'the drawer to open', () => getComputedStyle(document.getElementById('users')).visibility === 'visible');
  assert.equal((await focused()).user, 'Lia', 'the focus moves into the drawer');
  for (let i = 0; i < 8; i++) {
    await page.keyboard.press('Tab');
    const g = await focused();
    assert.ok(g.inUsers || g.tag === 'BODY', `Tab stays in the drawer (got ${JSON.stringify(g)})`);
  }
  await page.keyboard.press('Escape');
  assert.equal(await page.locator('#users-toggle').getAttribute('aria-expanded'), 'false');
  assert.equal((await focused()).id, 'users-toggle', 'the focus goes back to the toggle');
  await page.keyboard.press('Enter');
  await waitIn(page, 'the drawer to open again', () => document.activeElement.matches('#users button.user'));
  await page.keyboard.press('Enter');
  assert.equal(await page.locator('#target-name').textContent(), 'Lia', 'a person chosen from the drawer');
  assert.equal(await page.locator('#users-toggle').getAttribute('aria-expanded'), 'false', 'the drawer closes');
  assert.equal((await focused()).id, 'message');
  await kim.context.close();
  await lia.context.close();
});

test('no page showed a dialog, threw, or wrote an error or warning to its console', async () => {
  for (const e of ctx.everyone) {
    assert.deepEqual(e.dialogs, [], 'dialogs');
    assert.deepEqual(e.errors, [], 'uncaught page errors');
    assert.deepEqual(e.console, [], 'console errors and warnings');
  }
});
