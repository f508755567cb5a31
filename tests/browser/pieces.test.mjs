// Browser test of history and user lists that come in several pieces
// ("more": true on all but the last), against the real server binary.
//
// The server runs with --outbound-cap 1100: its pieces stay under a quarter
// of it (275 bytes), so a room of five long names and a few says is enough
// to make both the user list and the history come in pieces. (A cap that
// small needs short maximum says too: the server refuses a cap that a
// maximum say, escaped, could not fit.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  setUp, tearDown, login, waitIn, waitMessage, waitUsers, countText, duplicateIds, shownMessages, say,
} from './lib.mjs';

before(() => setUp({ extra: ['--outbound-cap', '1100', '--max-content', '54', '--max-name', '30'] }));
after(() => tearDown());

const long = (name) => `${name} ${'x'.repeat(28 - name.length)}`;

test('a page merges a user list and a history that come in pieces', async () => {
  const room = 'pieces';
  const names = ['Ana', 'Bruno', 'Carla', 'Dora'].map(long);
  const pages = [];
  for (const n of names) pages.push(await login(n, { room }));
  const said = Array.from({ length: 6 }, (_, i) => `message ${i + 1}: long enough to fill a piece of history`);
  for (const text of said) {
    await say(pages[0].page, text);
    await waitMessage(pages[0].page, text);
  }

  const eve = await login(long('Eve'), { room });
  await waitMessage(eve.page, said[said.length - 1]);
  const lists = eve.received.filter((m) => m.type === 'user_list');
  assert.ok(lists.length > 1, `the user list came in pieces (${lists.length})`);
  assert.ok(lists.slice(0, -1).every((m) => m.more === true) && !('more' in lists[lists.length - 1]),
    'every piece but the last says more');
  await waitUsers(eve.page, [...names, long('Eve')]);
  const joined = await eve.page.evaluate(() =>
    [...document.querySelectorAll('.log:not([hidden]) .notice-join')].map((n) => n.textContent));
  assert.equal(joined.filter((t) => t.includes('You joined')).length, 1, 'her own login is hers');
  assert.ok(!joined.some((t) => t.includes(`${long('Eve')} joined`)), 'not someone else joining');

  const histories = eve.received.filter((m) => m.type === 'history');
  assert.ok(histories.length > 1, `the history came in pieces (${histories.length})`);
  const shown = await shownMessages(eve.page);
  assert.deepEqual(shown.map((m) => m.text), said, 'every message, in order');
  assert.ok(shown.every((m) => m.history), 'marked as history');
  assert.deepEqual(await duplicateIds(eve.page), []);
  for (const text of said) assert.equal(await countText(eve.page, text), 1, `${text} shown once`);
  const dividers = await eve.page.evaluate(() =>
    document.querySelectorAll('.log:not([hidden]) .divider-history').length);
  assert.equal(dividers, 1, 'one divider above the whole history');

  // and the page goes on live
  await say(pages[1].page, 'live, after the pieces');
  const m = await waitMessage(eve.page, 'live, after the pieces');
  assert.equal(m.history, false);
  await waitIn(eve.page, 'no error shown', () => !document.querySelector('.notice-error'));
  for (const p of [...pages, eve]) await p.context.close();
});
