// server.js -- the chat contract on uWebSockets.js, a benchmark peer of
// tagarela (see ../common/chat.js for the contract itself).
//
//   node server.js --port 7302 [--host 127.0.0.1] [--rate N --burst N ...]
//
// uWebSockets.js comes from the npm package @trufflesuite/uws-js-unofficial
// (a build of upstream v20.30.0; the official package lives on GitHub only).
// Its entry point silently falls back to a pure-JS emulation when the
// native addon does not load; we load the addon itself, so that a missing
// binary fails loudly instead of benchmarking the wrong thing.
//
// A room is a pub/sub topic: each member subscribes to it and a message to
// the room is one app.publish(), which serializes nothing per member and
// lets uWS write the frame to every subscriber (the sender included) with
// its corking. Private messages and the user list are plain ws.send().
'use strict';

const path = require('node:path');
const { Chat, parseOptions } = require('../common/chat.js');

const pkg = path.dirname(require.resolve('@trufflesuite/uws-js-unofficial/package.json'));
const uWS = require(path.join(pkg, 'binaries',
  `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`));

const opts = parseOptions(process.argv.slice(2));
const app = uWS.App();

const chat = new Chat(opts.limits, {
  send(ws, text) {
    ws.send(text);
  },
  publish(roomId, members, text) {
    app.publish(roomId, text);
  },
  join(ws, roomId) {
    ws.subscribe(roomId);
  },
  // Called from the close handler only, when uWS has already dropped the
  // socket's subscriptions (and the socket may no longer be touched).
  leave() {},
});

app.ws('/*', {
  compression: uWS.DISABLED,
  maxPayloadLength: opts.maxMessage,
  // uWS pings a silent connection by itself and closes it after idleTimeout
  // seconds (its timer has a 4 s granularity, so the ping interval is its own).
  idleTimeout: opts.idleTimeout,
  sendPingsAutomatically: true,
  maxBackpressure: opts.outboundCap,
  closeOnBackpressureLimit: true,
  open: (ws) => {
    ws.getUserData().user = chat.connect(ws);
  },
  message: (ws, message, isBinary) => {
    const u = ws.getUserData().user;
    if (isBinary) chat.binary(u);
    else chat.text(u, Buffer.from(message).toString());
  },
  close: (ws) => {
    chat.disconnect(ws.getUserData().user);
  },
});

app.listen(opts.host, opts.port, (listenSocket) => {
  if (!listenSocket) {
    console.error(`uws peer: cannot listen on ${opts.host}:${opts.port}`);
    process.exit(1);
  }
  console.log(`uws peer listening on ${opts.host}:${uWS.us_socket_local_port(listenSocket)}`);
  const stop = () => {
    uWS.us_listen_socket_close(listenSocket);
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
});
