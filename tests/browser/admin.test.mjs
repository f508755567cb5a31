// Browser tests of the operator's controls as a page sees them: a message
// an operator deletes leaves every page and the history, and a kicked
// page says why and does not come back by itself.
//
//   cd tests/browser && npm ci && npm test
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  ctx, setUp, tearDown, baseUrl, login, waitIn, waitMessage, countText, shownMessages, say, shot,
} from './lib.mjs';

const TOKEN = 'browser-test-operator-token-0123';
const tokenDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tagarela-admin-'));
const tokenFile = path.join(tokenDir, 'token');
fs.writeFileSync(tokenFile, `${TOKEN}\n`);

before(() => setUp({ extra: ['--admin-token', tokenFile] }));
after(async () => {
  await tearDown();
  fs.rmSync(tokenDir, { recursive: true, force: true });
});

/** One request to the operator's API; resolves to [status, JSON body]. */
async function admin(method, route, body) {
  const r = await fetch(`${baseUrl()}${route}`, {
    method,
    headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return [r.status, await r.json()];
}

test('a deleted message leaves every page in the room, and the history', async () => {
  const room = 'moderated';
  const ana = await login('Ana', { room });
  const bruno = await login('Bruno', { room });
  const said = ['good morning', 'buy cheap pills at spam.example', 'the meeting is at ten'];
  const ids = [];
  for (const text of said) {
    await say(ana.page, text);
    ids.push(Number((await waitMessage(bruno.page, text)).id));
  }
  await waitMessage(ana.page, said[2]);

  const [status, body] = await admin('POST', '/admin/delete', { room, id: ids[1] });
  assert.equal(status, 200, JSON.stringify(body));
  for (const e of [ana, bruno]) {
    await waitIn(e.page, `${e.name} to drop the deleted message`, (t) =>
      ![...document.querySelectorAll('.log:not([hidden]) .msg .text')].some((x) => x.textContent === t), said[1]);
    assert.deepEqual((await shownMessages(e.page)).map((m) => m.text), [said[0], said[2]], `${e.name}'s log`);
  }
  // Ana's last message was grouped under the deleted one: it keeps a header.
  const header = await ana.page.evaluate((t) => {
    const row = [...document.querySelectorAll('.log:not([hidden]) .msg')].find((m) => m.querySelector('.text').textContent === t);
    return getComputedStyle(row.querySelector('.author')).visibility !== 'hidden' && row.offsetHeight > 0;
  }, said[2]);
  assert.ok(header, 'the message after the deleted one is still shown whole');
  await shot(bruno.page, 'admin-delete.png');

  const carla = await login('Carla', { room });
  await waitMessage(carla.page, said[2]);
  assert.equal(await countText(carla.page, said[1]), 0, 'the history has it no more');
  assert.deepEqual((await shownMessages(carla.page)).map((m) => m.id), [ids[0], ids[2]]);
  await Promise.all([ana, bruno, carla].map((e) => e.context.close()));
});

test('a kicked page shows the reason and stays out', async () => {
  const room = 'kicks';
  const dora = await login('Dora', { room });
  const eve = await login('Eve', { room });
  const [, list] = await admin('GET', '/admin/users');
  const target = list.users.find((u) => u.name === 'Eve' && u.room === room);
  assert.ok(target, JSON.stringify(list));
  const [status] = await admin('POST', '/admin/kick', { uid: target.uid, reason: 'flooding the room' });
  assert.equal(status, 200);
  await waitIn(eve.page, 'the kick notice', () =>
    [...document.querySelectorAll('.notice')].some((n) => n.textContent.includes('flooding the room')));
  await waitIn(eve.page, 'the page to stop', () => document.getElementById('status').dataset.state === 'idle');
  await waitIn(dora.page, 'Eve to leave Dora\'s list', () =>
    ![...document.querySelectorAll('#user-list .user-name')].some((e) => e.textContent === 'Eve'));
  // No reconnect behind the operator's back.
  await new Promise((r) => setTimeout(r, 1500));
  const [, after] = await admin('GET', '/admin/users');
  assert.ok(!after.users.some((u) => u.name === 'Eve'), 'Eve did not come back');
  await shot(eve.page, 'admin-kicked.png');
  await Promise.all([dora, eve].map((e) => e.context.close()));
});

test('no page showed a dialog, threw, or wrote an error or warning to its console', async () => {
  for (const e of ctx.everyone) {
    assert.deepEqual(e.dialogs, [], 'dialogs');
    assert.deepEqual(e.errors, [], 'uncaught page errors');
    assert.deepEqual(e.console, [], 'console errors and warnings');
  }
});
