// The chat page over TLS (issue 12): the server with --tls-cert / --tls-key
// (a certificate made here with the openssl command line), Chromium with
// --ignore-certificate-errors loading the page over https:// and chatting
// over wss:// on the same origin.
//
//   cd tests/browser && npm ci && npm test
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ctx, setUp, tearDown, baseUrl, login, waitUsers, waitMessage, say, shot } from './lib.mjs';

const certDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tagarela-tls-'));
const cert = path.join(certDir, 'cert.pem');
const key = path.join(certDir, 'key.pem');

before(async () => {
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' });
  await setUp({ https: true, extra: ['--tls-cert', cert, '--tls-key', key] });
});
after(async () => {
  await tearDown();
  fs.rmSync(certDir, { recursive: true, force: true });
});

test('the page over https chats over wss on the same origin', async () => {
  assert.match(baseUrl(), /^https:\/\//);
  const ana = await login('Ana', { room: 'tls', screenshot: 'tls-login.png' });
  const bia = await login('Bia', { room: 'tls' });
  for (const { page } of [ana, bia]) await waitUsers(page, ['Ana', 'Bia']);
  const url = await ana.page.evaluate(() => location.href);
  assert.match(url, /^https:\/\/127\.0\.0\.1:\d+\//);
  await say(ana.page, 'olá por TLS');
  await waitMessage(bia.page, 'olá por TLS');
  await say(bia.page, 'recebido');
  await waitMessage(ana.page, 'recebido');
  await shot(ana.page, 'tls-chat.png');
  // The page's own socket: wss:// on the page's origin, /ws.
  assert.deepEqual(ana.sockets, [`wss://127.0.0.1:${ctx.server.httpPort}/ws`]);
  assert.ok(ana.received.some((m) => m.type === 'say' && m.content === 'recebido'), 'the say came over wss');
  for (const who of [ana, bia]) {
    assert.deepEqual(who.errors, [], 'no page errors');
    assert.deepEqual(who.console, [], 'no console errors');
  }
  assert.equal(ctx.server.died, null);
});
