// server.js -- the chat contract on Node.js with the `ws` package, a
// benchmark peer of tagarela (see ../common/chat.js for the contract itself).
//
//   node server.js --port 7301 [--host 127.0.0.1] [--rate N --burst N ...]
//
// WebSocket on any path of the port (so / and /ws both work). A message to
// a room is serialized once, turned into one Buffer once, and that Buffer is
// given to every member's send(): the broadcast idiom of the ws README
// (`wss.clients.forEach(c => c.send(data))`), minus the per-client UTF-8
// encoding a string would cost. ws frames it per client (a 2-10 byte header
// and the shared payload, written with one corked writev).
'use strict';

const { WebSocketServer } = require('ws');
const { Chat, parseOptions } = require('../common/chat.js');

const opts = parseOptions(process.argv.slice(2));
const TEXT = { binary: false };

// A client that does not read gets closed once this much waits for it.
function deliver(ws, data) {
  if (ws.readyState !== ws.OPEN) return;
  if (ws.bufferedAmount > opts.outboundCap) {
    ws.close(1008, 'too slow');
    return;
  }
  ws.send(data, TEXT);
}

const chat = new Chat(opts.limits, {
  send(ws, text) {
    deliver(ws, text);
  },
  publish(roomId, members, text) {
    const data = Buffer.from(text);
    for (const u of members) deliver(u.conn, data);
  },
  join() {},      // membership lives in chat's room sets
  leave() {},
});

const wss = new WebSocketServer({
  host: opts.host,
  port: opts.port,
  maxPayload: opts.maxMessage,      // larger: close 1009
  perMessageDeflate: false,
});

wss.on('connection', (ws) => {
  const u = chat.connect(ws);
  ws.seen = Date.now();
  ws.pinged = false;
  ws.on('message', (data, isBinary) => {
    ws.seen = Date.now();
    ws.pinged = false;
    if (isBinary) chat.binary(u);
    else chat.text(u, data.toString());
  });
  ws.on('pong', () => {
    ws.seen = Date.now();
    ws.pinged = false;
  });
  ws.on('error', () => {});         // 'close' follows
  ws.on('close', () => chat.disconnect(u));
});

// Liveness: ping a connection silent for pingInterval, close one silent for
// idleTimeout (1008). One timer for all, as in the ws README's heartbeat.
const tick = Math.max(0.25, Math.min(opts.pingInterval, opts.idleTimeout) / 4) * 1000;
const heartbeat = setInterval(() => {
  const now = Date.now();
  for (const ws of wss.clients) {
    const idle = (now - ws.seen) / 1000;
    if (idle >= opts.idleTimeout) ws.close(1008, 'idle');
    else if (idle >= opts.pingInterval && !ws.pinged) {
      ws.pinged = true;
      ws.ping();
    }
  }
}, tick);

wss.on('listening', () => {
  console.log(`node-ws peer listening on ${opts.host}:${wss.address().port}`);
});
wss.on('error', (err) => {
  console.error(`node-ws peer: ${err.message}`);
  process.exit(1);
});

function stop() {
  clearInterval(heartbeat);
  for (const ws of wss.clients) ws.close(1001, 'shutdown');
  wss.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
