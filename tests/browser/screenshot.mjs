// Makes docs/screenshot.png, the README's picture of the page: three people
// in a real conversation (join notices, a link, a private message) against
// the real server binary, seen from one of them on a desktop screen.
//
//   cd tests/browser && npm ci && TAGARELA_BIN=../../build/tagarela node screenshot.mjs [out.png]
//
// Not part of the test run (a committed image would change on every run);
// run it again when the page's look changes.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { REPO, DESKTOP, setUp, tearDown, login, say, waitMessage, waitUsers, waitIn } from './lib.mjs';

const OUT = path.resolve(process.argv[2] || path.join(REPO, 'docs', 'screenshot.png'));
const MAX_BYTES = 300 * 1024;
const ROOM = 'release';

async function main() {
  await setUp();
  try {
    const ana = await login('Ana', { room: ROOM });
    const bruno = await login('Bruno', { room: ROOM });
    const carla = await login('Carla', { room: ROOM });
    await waitUsers(ana.page, ['Ana', 'Bruno', 'Carla']);

    const talk = async (who, text) => {
      await say(who.page, text);
      await waitMessage(ana.page, text);
    };
    await talk(ana, 'Bom dia, pessoal! Release 1.2 goes out today.');
    await talk(bruno, 'Morning! The reconnect and history changes are merged.');
    await talk(carla, 'Release notes draft: https://example.com/tagarela/notes-1.2 (comments welcome)');
    await talk(carla, 'Checklist:\n1. tag v1.2\n2. publish the notes\n3. tell the users');

    // Bruno writes to Ana only: he picks her in the people list.
    await bruno.page.locator('#user-list button.user', { hasText: 'Ana' }).click();
    await talk(bruno, 'Ana, could you look at my last review comment before lunch?');
    await bruno.page.locator('#target-clear').click();

    await talk(ana, 'Thanks, both. We ship at 16:00, then cake.');
    await ana.page.locator('#message').fill('On it, Bruno');
    await ana.page.locator('#message').blur();
    await waitIn(ana.page, 'the log to settle', () => document.getElementById('jump').hidden);
    await ana.page.waitForTimeout(300);

    fs.mkdirSync(path.dirname(OUT), { recursive: true });
    await ana.page.setViewportSize(DESKTOP);
    await ana.page.screenshot({ path: OUT });
    const { size } = fs.statSync(OUT);
    assert.ok(size < MAX_BYTES, `${OUT} is ${size} bytes, more than ${MAX_BYTES}`);
    console.log(`wrote ${OUT} (${size} bytes)`);
  } finally {
    await tearDown();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
