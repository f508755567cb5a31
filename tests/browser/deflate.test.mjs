// Browser test of permessage-deflate (RFC 7692): Chromium offers it, the
// server agrees, and two pages chat through compressed frames both ways.
// The page side reads the agreed extension from a WebSocket of its own
// (WebSocket.extensions); the server's /stats count the agreements, the
// broadcasts compressed and the compressed deliveries.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ctx, setUp, tearDown, baseUrl, login, waitMessage, say } from './lib.mjs';

before(() => setUp());
after(() => tearDown());

async function deflateStats() {
  const res = await fetch(`${baseUrl()}/stats`);
  assert.equal(res.status, 200);
  return (await res.json()).deflate;
}

test('Chromium negotiates permessage-deflate and chats through it', async () => {
  const before = await deflateStats();
  const ana = await login('Ana', { room: 'zip' });
  const bruno = await login('Bruno', { room: 'zip' });

  // The page's view of the agreement, on the page's own origin (/ws).
  const extensions = await ana.page.evaluate(() => new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://${location.host}/ws`);
    ws.onopen = () => { resolve(ws.extensions); ws.close(); };
    ws.onerror = () => reject(new Error('the WebSocket did not open'));
  }));
  assert.match(extensions, /^permessage-deflate; server_no_context_takeover/, `agreed: ${extensions}`);

  // Long, compressible messages both ways: Chromium compresses what it
  // sends (the server inflates it) and inflates what the server sends.
  const fromAna = `Ana here: ${'the train leaves at nine, bring the tickets. '.repeat(20)}`.trim();
  const fromBruno = `Bruno here: ${'ok, see you at the station. '.repeat(30)}`.trim();
  await say(ana.page, fromAna);
  await say(bruno.page, fromBruno);
  for (const { page } of [ana, bruno]) {
    await waitMessage(page, fromAna);
    await waitMessage(page, fromBruno);
  }

  const after = await deflateStats();
  assert.ok(after.handshakes - before.handshakes >= 3, `the two pages and the probe agreed: ${JSON.stringify(after)}`);
  assert.ok(after.compressions > before.compressions, 'broadcasts were compressed');
  assert.ok(after.inflated - before.inflated >= 2, `Chromium compressed what it sent: ${JSON.stringify(after)}`);
  // each say went compressed to both pages, from one compression each
  assert.ok(after.deliveries - before.deliveries >= 4, JSON.stringify({ before, after }));
  assert.ok(after.deliveries - before.deliveries >= after.compressions - before.compressions,
    'a compression serves every deflate recipient of its broadcast');
  for (const { errors } of [ana, bruno]) assert.deepEqual(errors, [], 'no page errors');
  assert.equal(ctx.server.died, null, 'the server is still up');
});
