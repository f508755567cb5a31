// Browser tests of identity: the page keeps the session token it is given
// and sends it on every login, so a reload keeps its private history (and
// a stranger taking the same name gets none); a JWT in the page's
// #token= fragment is used instead, for a server run with --auth-key.
//
//   cd tests/browser && npm ci && npm test
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  ctx, setUp, tearDown, startServer, stopServer, openPage, login, waitIn, waitOnline, waitMessage,
  waitUsers, countText, say, shot,
} from './lib.mjs';

before(() => setUp());
after(() => tearDown());

function logins(entry) {
  return entry.sent.filter((m) => m.type === 'login');
}

function sessions(entry) {
  return entry.received.filter((m) => m.type === 'session');
}

test('a reload keeps the identity: the token is kept and sent, private history comes back', async () => {
  const room = 'id-reload';
  const ana = await login('Ana', { room });
  const bruno = await login('Bruno', { room });
  for (const e of [ana, bruno]) await waitUsers(e.page, ['Ana', 'Bruno']);
  const token = sessions(ana).at(-1)?.token;
  assert.ok(typeof token === 'string' && token.length >= 22, 'the server gave Ana a session token');
  assert.equal(await ana.page.evaluate(() => localStorage.getItem('tagarela.token')), token, 'kept in localStorage');

  const secret = 'Ana, the key is under the mat';
  await bruno.page.locator('#user-list button.user', { hasText: 'Ana' }).click();
  await say(bruno.page, secret);
  await waitMessage(ana.page, secret);
  await bruno.page.locator('#target-clear').click();
  const pub = 'good morning, room';
  await say(bruno.page, pub);
  await waitMessage(ana.page, pub);

  await ana.page.reload();
  await waitOnline(ana.page);
  const again = await waitMessage(ana.page, secret);
  assert.deepEqual([again.private, again.history, again.author], [true, true, 'Bruno'], 'private history after the reload');
  const sent = logins(ana);
  assert.ok(sent.length >= 2);
  assert.equal(sent[0].token, undefined, 'the first login ever has no token');
  assert.ok(sent.slice(1).every((m) => m.token === token), 'every later login carries the token');
  assert.equal(sessions(ana).at(-1).token, token, 'the identity continued: the same token back');

  // A stranger who takes Ana's name, in a browser of their own, gets none of it.
  const impostor = await login('Ana', { room });
  await waitMessage(impostor.page, pub);
  assert.equal(await countText(impostor.page, secret), 0, 'the impostor is not shown the private message');
  assert.ok(impostor.received.filter((m) => m.type === 'history').flatMap((h) => h.messages)
    .every((m) => m.to_uid === 'all'), 'nor sent it');
  assert.notEqual(sessions(impostor).at(-1).token, token);
  await shot(ana.page, 'identity-after-reload.png');
  for (const e of [ana, bruno, impostor]) await e.context.close();
});

function mint(claims, key) {
  const b64 = (s) => Buffer.from(s).toString('base64url');
  const body = `${b64(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64(JSON.stringify(claims))}`;
  return `${body}.${crypto.createHmac('sha256', key).update(body).digest('base64url')}`;
}

test('a JWT in #token= is used instead, kept over a reload and out of the address bar', async () => {
  const key = crypto.randomBytes(32).toString('hex');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tagarela-signed-'));
  fs.writeFileSync(path.join(dir, 'auth.key'), key);
  const srv = await startServer({ dataDir: dir, extra: ['--auth-key', path.join(dir, 'auth.key')] });
  try {
    const exp = Math.floor(Date.now() / 1000) + 600;
    const jwt = mint({ sub: 'user-17', name: 'Signed Sara', exp }, key);
    const sara = await openPage();
    await sara.page.goto(`http://127.0.0.1:${srv.httpPort}/?room_id=signed#token=${jwt}`);
    await waitOnline(sara.page);
    await waitUsers(sara.page, ['Signed Sara']);
    assert.equal(new URL(sara.page.url()).hash, '', 'the token is taken out of the address bar');
    assert.equal(logins(sara).at(-1).token, jwt, 'the login carries the JWT');
    assert.equal(sessions(sara).at(-1).token, jwt, 'and the session is the signed one');
    assert.equal(await sara.page.evaluate(() => localStorage.getItem('tagarela.token')), null,
      'a signed token is not kept as the session token');
    await sara.page.reload();
    await waitOnline(sara.page);
    assert.equal(logins(sara).at(-1).token, jwt, 'a reload logs in with the same JWT');

    // An expired token: the page says why and stays out.
    const late = await openPage();
    const old = mint({ sub: 'user-18', name: 'Late', exp: exp - 4000 }, key);
    await late.page.goto(`http://127.0.0.1:${srv.httpPort}/?room_id=signed#token=${old}`);
    await waitIn(late.page, 'the refusal', () => /bad_token/.test(document.getElementById('login-error').textContent));
    assert.equal(await late.page.locator('#login').isVisible(), true);
    await say(sara.page, 'still here');
    await waitMessage(sara.page, 'still here');
    for (const e of [sara, late]) await e.context.close();
  } finally {
    await stopServer(srv);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
