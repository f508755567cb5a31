// Browser tests of history, replay and resume: what the page shows of the
// messages said while it was not there, against the real server binary.
//
//   cd tests/browser && npm ci && npm test
//
// The server runs with --history 5, so that a page that did not ask for
// what it missed (last_id) would lose messages, and these tests would see it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  ctx, setUp, tearDown, restartServer, login, RECONNECT_WAIT, holdableSockets, waitIn, waitOnline, waitUsers,
  waitMessage, countText, duplicateIds, shownMessages, say, shot,
} from './lib.mjs';

const HISTORY = 5;

before(() => setUp({ extra: ['--history', String(HISTORY)] }));
after(() => tearDown());

/** The say messages a page was sent in history frames since `from` (an
 *  index into entry.received). */
function replayed(entry, from = 0) {
  return entry.received.slice(from).filter((m) => m.type === 'history').flatMap((h) => h.messages);
}

function lastLogin(entry) {
  return entry.sent.filter((m) => m.type === 'login').pop();
}

/** Says each text from the given page in turn, and waits until `watcher`
 *  shows it (so their order is the order they were said). Returns the ids. */
async function sayAll(lines, watcher) {
  const ids = [];
  for (const [entry, text] of lines) {
    await say(entry.page, text);
    const m = await waitMessage(watcher.page, text);
    assert.ok(m.id != null, `the message ${JSON.stringify(text)} has an id`);
    ids.push(Number(m.id));
  }
  return ids;
}

async function waitReconnecting(...entries) {
  for (const e of entries) {
    await waitIn(e.page, `${e.name} to see the connection lost`, () =>
      document.getElementById('status').dataset.state === 'reconnecting');
  }
}

/** The history dividers of the visible log, each followed by the text of
 *  the message right after it. */
function dividers(page) {
  return page.evaluate(() => [...document.querySelectorAll('.log:not([hidden]) .divider-history')]
    .flatMap((d) => [d.textContent, d.nextElementSibling?.querySelector('.text')?.textContent ?? null]));
}

function isIncreasing(ids) {
  return ids.every((id, i) => i === 0 || id > ids[i - 1]);
}

async function closeAll(...entries) {
  for (const e of entries) await e.context.close();
}

test('a page that joins later sees what was said as history, in order, once', async () => {
  const room = 'hist-join';
  const ana = await login('Ana', { room });
  const bruno = await login('Bruno', { room });
  const said = ['first: the agenda is in the doc', 'second: standup moved to 10:30', 'third: who has the keys?'];
  const ids = await sayAll([[ana, said[0]], [bruno, said[1]], [ana, said[2]]], ana);
  assert.ok(isIncreasing(ids), `ids increase: ${ids}`);

  const carla = await login('Carla', { room });
  await waitMessage(carla.page, said[2]);
  const shown = await shownMessages(carla.page);
  assert.deepEqual(shown.map((m) => m.text), said, 'the history, in the order it was said, each once');
  assert.deepEqual(shown.map((m) => m.id), ids, 'with the ids the others saw');
  assert.deepEqual(shown.map((m) => m.author), ['Ana', 'Bruno', 'Ana'], 'senders still in the room are named');
  assert.ok(shown.every((m) => m.history && !m.private), 'marked as history');

  // Above Carla's own "you joined" line: old talk first, then her arrival.
  const order = await carla.page.evaluate(() => {
    const log = document.querySelector('.log:not([hidden])');
    const join = [...log.querySelectorAll('.notice-join')].find((n) => n.textContent.includes('You joined'));
    return [...log.querySelectorAll('.msg.from-history')].map((m) =>
      // eslint-disable-next-line no-bitwise
      (m.compareDocumentPosition(join) & Node.DOCUMENT_POSITION_FOLLOWING) !== 0);
  });
  assert.deepEqual(order, [true, true, true], 'history comes before the join notice');
  assert.deepEqual(await dividers(carla.page), ['Earlier messages', said[0]], 'a divider says what is history');

  // One history frame, holding exactly what was said.
  const frames = carla.received.filter((m) => m.type === 'history');
  assert.equal(frames.length, 1, 'one history frame');
  assert.deepEqual(frames[0].messages.map((m) => m.id), ids);

  // What is said from now on is live, and shown once.
  const live = 'fourth: Carla, welcome!';
  await say(bruno.page, live);
  const m = await waitMessage(carla.page, live);
  assert.equal(m.history, false, 'a live message is not marked as history');
  assert.equal(Number(m.id), ids[ids.length - 1] + 1, 'ids go on, one per message in the room');
  for (const text of [...said, live]) assert.equal(await countText(carla.page, text), 1, `${text} shown once`);
  assert.deepEqual(await duplicateIds(carla.page), []);
  await shot(carla.page, 'history-join.png');

  // The server keeps the last --history messages for a newcomer: still in order.
  const more = ['5', '6', '7'].map((n) => `number ${n}`);
  await sayAll(more.map((t) => [ana, t]), ana);
  const dora = await login('Dora', { room });
  await waitMessage(dora.page, more[2]);
  const doraShown = (await shownMessages(dora.page)).map((m) => m.text);
  assert.deepEqual(doraShown, [...said, live, ...more].slice(-HISTORY), `the last ${HISTORY} messages`);
  await closeAll(ana, bruno, carla, dora);
});

test('after its connection drops, a page gets exactly the messages it missed', async () => {
  const room = 'hist-resume';
  const ana = await login('Ana', { room });
  const bruno = await login('Bruno', { room });
  const carla = await login('Carla', { room, init: holdableSockets });
  const before = ['before the drop, from Ana', 'before the drop, from Bruno'];
  const beforeIds = await sayAll([[ana, before[0]], [bruno, before[1]]], carla);

  // Carla's connection goes, and the network stays down for her.
  await carla.page.evaluate(() => { window.__holdSockets = true; window.__dropSockets(); });
  await waitReconnecting(carla);
  await waitIn(ana.page, 'the server to notice Carla left', () =>
    [...document.querySelectorAll('.log:not([hidden]) .notice-leave')].some((e) => e.textContent.includes('Carla left')));
  await waitUsers(ana.page, ['Ana', 'Bruno']);

  // The others keep talking: more than --history messages.
  const missed = Array.from({ length: HISTORY + 2 }, (_, i) => `missed ${i + 1} (${i % 2 ? 'Bruno' : 'Ana'})`);
  const missedIds = await sayAll(missed.map((t, i) => [i % 2 ? bruno : ana, t]), ana);
  // Carla's page kept trying meanwhile, and failed.
  await waitIn(carla.page, 'a refused reconnect attempt', () => window.__socketsMade >= 2);
  assert.equal(await carla.page.locator('#status').getAttribute('data-state'), 'reconnecting');

  // The network is back: the page reconnects and logs in by itself.
  const mark = carla.received.length;
  await carla.page.evaluate(() => { window.__holdSockets = false; });
  await waitOnline(carla.page, RECONNECT_WAIT);
  await waitUsers(carla.page, ['Ana', 'Bruno', 'Carla']);
  await waitMessage(carla.page, missed[missed.length - 1]);

  const loginMsg = lastLogin(carla);
  assert.equal(loginMsg.name, 'Carla');
  assert.equal(loginMsg.room_id, room);
  assert.equal(loginMsg.last_id, beforeIds[1], 'the page asks for what came after the last message it showed');
  assert.deepEqual(replayed(carla, mark).map((m) => m.id), missedIds, 'the server replays exactly what was missed');

  const shown = await shownMessages(carla.page);
  assert.deepEqual(shown.map((m) => m.text), [...before, ...missed], 'none lost, none doubled, in order');
  assert.deepEqual(shown.map((m) => m.id), [...beforeIds, ...missedIds]);
  assert.deepEqual(shown.map((m) => m.history), [...before.map(() => false), ...missed.map(() => true)]);
  assert.deepEqual(await dividers(carla.page), [`${missed.length} messages while you were away`, missed[0]],
    'a divider says what was missed');
  const notices = await carla.page.$$eval('.log:not([hidden]) .notice', (els) => els.map((e) => e.querySelector('.notice-text').textContent));
  assert.deepEqual(notices, ['You joined #hist-resume as Carla', 'Connection lost. Reconnecting…', 'Back in #hist-resume as Carla']);
  assert.deepEqual(await duplicateIds(carla.page), []);

  const live = 'Carla is back?';
  await say(ana.page, live);
  const m = await waitMessage(carla.page, live);
  assert.equal(m.history, false);
  assert.equal(await countText(carla.page, live), 1);
  await waitIn(ana.page, 'Carla to join again', () =>
    [...document.querySelectorAll('.log:not([hidden]) .notice-join')].some((e) => e.textContent.includes('Carla joined')));
  await shot(carla.page, 'history-resume.png');
  await closeAll(ana, bruno, carla);
});

test('a private message is replayed after a reload only to its two parties', async () => {
  const room = 'hist-private';
  const ana = await login('Ana', { room });
  const bruno = await login('Bruno', { room });
  const carla = await login('Carla', { room });
  for (const e of [ana, bruno, carla]) await waitUsers(e.page, ['Ana', 'Bruno', 'Carla']);

  const secret = 'psst, Ana: the surprise party is on Friday';
  await bruno.page.locator('#user-list button.user', { hasText: 'Ana' }).click();
  await say(bruno.page, secret);
  await waitMessage(ana.page, secret);
  await bruno.page.locator('#target-clear').click();
  const pub = 'Lunch at noon, everyone?';
  await say(carla.page, pub);
  for (const e of [ana, bruno, carla]) await waitMessage(e.page, pub);
  assert.equal(await countText(carla.page, secret), 0);

  const marks = new Map([ana, bruno, carla].map((e) => [e, e.received.length]));
  for (const e of [ana, bruno, carla]) {
    await e.page.reload();
    await waitOnline(e.page);
    await waitMessage(e.page, pub);
  }
  for (const e of [ana, bruno, carla]) assert.equal(lastLogin(e).last_id, undefined, 'a reloaded page starts afresh');

  const atAna = await waitMessage(ana.page, secret);
  assert.deepEqual([atAna.private, atAna.history, atAna.author], [true, true, 'Bruno']);
  assert.match(atAna.badge, /Private to you/);
  const atBruno = await waitMessage(bruno.page, secret);
  assert.deepEqual([atBruno.private, atBruno.history, atBruno.author], [true, true, 'Bruno']);
  assert.match(atBruno.badge, /Private to Ana/);
  for (const e of [ana, bruno]) {
    assert.deepEqual((await shownMessages(e.page)).map((m) => m.text), [secret, pub], `${e.name}: once each, in order`);
  }

  // Carla, and a newcomer, get the public message only: neither shown nor sent.
  const dora = await login('Dora', { room });
  await waitMessage(dora.page, pub);
  for (const e of [carla, dora]) {
    assert.deepEqual((await shownMessages(e.page)).map((m) => m.text), [pub], `${e.name} sees only the public message`);
    const wire = replayed(e, marks.get(e) ?? 0);
    assert.ok(wire.length >= 1, `${e.name} was replayed the history`);
    assert.ok(wire.every((m) => m.to_uid === 'all'), `${e.name} was sent no private message: ${JSON.stringify(wire)}`);
  }
  await shot(ana.page, 'history-private.png');
  await closeAll(ana, bruno, carla, dora);
});

test('history survives a server crash and restart with the same data', async () => {
  const room = 'hist-restart';
  const ana = await login('Ana', { room });
  const bruno = await login('Bruno', { room });
  const said = ['said before the crash (1)', 'said before the crash (2)'];
  const ids = await sayAll([[ana, said[0]], [bruno, said[1]]], bruno);

  // SIGKILL: whatever a page was shown must have been stored.
  await restartServer('SIGKILL', { whileDown: () => waitReconnecting(ana, bruno) });
  for (const e of [ana, bruno]) {
    await waitOnline(e.page, RECONNECT_WAIT);
    await waitUsers(e.page, ['Ana', 'Bruno']);
  }
  assert.equal(lastLogin(ana).last_id, ids[1], 'Ana resumes after the last id she saw');
  for (const e of [ana, bruno]) {
    assert.deepEqual((await shownMessages(e.page)).map((m) => m.text), said, `${e.name}: nothing doubled by the resume`);
  }

  // A newcomer after the restart is told what was said before it.
  const carla = await login('Carla', { room });
  await waitMessage(carla.page, said[1]);
  const shown = await shownMessages(carla.page);
  assert.deepEqual(shown.map((m) => m.text), said);
  assert.deepEqual(shown.map((m) => m.id), ids, 'with the same ids');

  // Ids go on from where they were: none is given twice.
  const after = 'said after the restart';
  await say(ana.page, after);
  for (const e of [ana, bruno, carla]) {
    const m = await waitMessage(e.page, after);
    assert.equal(Number(m.id), ids[1] + 1, `the next id at ${e.name}`);
    assert.deepEqual(await duplicateIds(e.page), []);
  }
  await closeAll(ana, bruno, carla);
});

test('a page held offline across a server restart gets what was said meanwhile', async () => {
  const room = 'hist-restart-resume';
  const ana = await login('Ana', { room });
  const carla = await login('Carla', { room, init: holdableSockets });
  const before = 'before the restart';
  const [beforeId] = await sayAll([[ana, before]], carla);

  // Carla's network goes down; then the server restarts (SIGTERM); Ana comes back and talks.
  await carla.page.evaluate(() => { window.__holdSockets = true; window.__dropSockets(); });
  await waitReconnecting(carla);
  await restartServer('SIGTERM', { whileDown: () => waitReconnecting(ana) });
  await waitOnline(ana.page, RECONNECT_WAIT);
  const missed = ['while Carla was away (1)', 'while Carla was away (2)'];
  const missedIds = await sayAll(missed.map((t) => [ana, t]), ana);
  assert.deepEqual(missedIds, [beforeId + 1, beforeId + 2], 'ids continue after the restart');

  const mark = carla.received.length;
  await carla.page.evaluate(() => { window.__holdSockets = false; });
  await waitOnline(carla.page, RECONNECT_WAIT);
  await waitMessage(carla.page, missed[1]);
  assert.equal(lastLogin(carla).last_id, beforeId);
  assert.deepEqual(replayed(carla, mark).map((m) => m.id), missedIds);
  const shown = await shownMessages(carla.page);
  assert.deepEqual(shown.map((m) => m.text), [before, ...missed]);
  assert.deepEqual(shown.map((m) => m.id), [beforeId, ...missedIds]);
  await closeAll(ana, carla);
});

// History frames carry the say messages as they were sent: uids, no names.
// A sender who left, or came back with a new uid (a reconnect, a restart),
// would be "user <uid>" to a newcomer; the page asks for names in its login
// ("history_names": true) and the server adds "from_name" / "to_name".
test('a newcomer sees the names of senders who left or reconnected', async () => {
  const room = 'hist-names';
  const ana = await login('Ana', { room });
  const bruno = await login('Bruno', { room });
  await sayAll([[ana, 'Ana, who then leaves'], [bruno, 'Bruno, who then reconnects']], bruno);
  await closeAll(ana);
  await waitUsers(bruno.page, ['Bruno']);
  await restartServer('SIGTERM', { whileDown: () => waitReconnecting(bruno) });
  await waitOnline(bruno.page, RECONNECT_WAIT);
  const carla = await login('Carla', { room });
  await waitMessage(carla.page, 'Bruno, who then reconnects');
  const authors = (await shownMessages(carla.page)).map((m) => m.author);
  await closeAll(bruno, carla);
  assert.deepEqual(authors, ['Ana', 'Bruno']);
});

test('no page showed a dialog, threw, or wrote an error or warning to its console', async () => {
  for (const e of ctx.everyone) {
    assert.deepEqual(e.dialogs, [], 'dialogs');
    assert.deepEqual(e.errors, [], 'uncaught page errors');
    assert.deepEqual(e.console, [], 'console errors and warnings');
  }
});
