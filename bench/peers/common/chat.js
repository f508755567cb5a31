// chat.js -- the wire contract (shared/spec/protocol.md) for the benchmark
// peers: rooms, users, validation, escaping and the messages, with no I/O.
//
// Both peers (node-ws and uws) wrap this module in their own transport, so
// that any difference in the numbers comes from the WebSocket stack, not from
// two readings of the contract. Unlike tagarela, the peers keep no history:
// a message is delivered and forgotten (no SQLite, no message ids).
'use strict';

const DEFAULT_ROOM = '1';
const MAX_ROOM_ID = 64;             // bytes
const MAX_UID = 0xffffffff;

// The whitespace tagarela trims: JavaScript's \s plus U+0085 (NEL).
const TRIM = /^[\s\u0085]+|[\s\u0085]+$/g;
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const HTML = /[&<>"']/g;
const HTML_REP = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#039;' };
const BREAK = /\r\n|\n\r|\r|\n/g;

function escapeHtml(s) {
  return s.replace(HTML, (c) => HTML_REP[c]);
}

// PHP's nl2br: "<br />" before each line break, a \r\n or \n\r pair kept whole.
function nl2br(s) {
  return s.replace(BREAK, '<br />$&');
}

// Length in code points, but only counted when the UTF-16 length could be
// over the limit (a string has at most as many code points as code units).
function tooLong(s, max) {
  if (s.length <= max) return false;
  let n = 0;
  for (const _ of s) if (++n > max) return true;
  return false;
}

// The room a login asks for, as a string, or null when room_id is unusable.
function roomOf(v) {
  if (v === undefined) return DEFAULT_ROOM;
  if (typeof v === 'number') return String(v);
  if (typeof v !== 'string') return null;
  const bytes = Buffer.byteLength(v);
  return bytes >= 1 && bytes <= MAX_ROOM_ID ? v : null;
}

// Target of a say: 0 for everyone, a uid, -1 for a value of a wrong type,
// -2 for one that can be no uid (answered with no_such_user).
function targetOf(v) {
  if (v === undefined) return 0;
  if (typeof v === 'string') {
    if (v === 'all') return 0;
    if (!/^[0-9]{1,10}$/.test(v)) return -2;
    v = Number(v);
  } else if (typeof v !== 'number') {
    return -1;
  }
  return Number.isInteger(v) && v > 0 && v <= MAX_UID ? v : -2;
}

class Chat {
  // limits: { maxName, maxContent, rate, burst }
  // io: { send(conn, text), publish(roomId, members, text),
  //       join(conn, roomId), leave(conn, roomId) }
  constructor(limits, io) {
    this.limits = limits;
    this.io = io;
    this.rooms = new Map();     // room id -> Set of users, in join order
    this.users = new Map();     // uid -> logged-in user
    this.nextUid = 1 + Math.floor(Math.random() * 0x7fffffff);
    this.timeSec = -1;
    this.timeStr = '';
  }

  connect(conn) {
    return { conn, uid: 0, name: null, room: null, tokens: this.limits.burst, last: 0 };
  }

  now() {
    const ms = Date.now();
    const sec = Math.floor(ms / 1000);
    if (sec !== this.timeSec) {
      const d = new Date(ms);
      const p = (n) => (n < 10 ? '0' : '') + n;
      this.timeStr = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
        `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
      this.timeSec = sec;
    }
    return this.timeStr;
  }

  error(u, code, message) {
    this.io.send(u.conn, JSON.stringify({ type: 'error', code, message }));
  }

  newUid() {
    for (;;) {
      const uid = this.nextUid;
      this.nextUid = uid >= MAX_UID ? 1 : uid + 1;
      if (!this.users.has(uid)) return uid;
    }
  }

  rateAllows(u, ms) {
    const { rate, burst } = this.limits;
    if (ms > u.last) u.tokens = Math.min(burst, u.tokens + (ms - u.last) * rate / 1000);
    u.last = ms;
    if (u.tokens < 1) return false;
    u.tokens -= 1;
    return true;
  }

  // A text message from a client.
  text(u, data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return this.error(u, 'bad_json', 'malformed JSON');
    }
    // tagarela's parser takes only an object or an array at the top.
    if (msg === null || typeof msg !== 'object') return this.error(u, 'bad_json', 'malformed JSON');
    if (Array.isArray(msg)) return this.error(u, 'bad_json', 'a message must be a JSON object');
    const t = msg.type;
    if (typeof t !== 'string' || t.includes('\0'))
      return this.error(u, 'bad_json', 'a message needs a string "type"');
    if (t === 'pong') return;
    if (!this.rateAllows(u, Date.now())) return this.error(u, 'rate_limited', 'too many messages; slow down');
    if (t === 'say') return this.say(u, msg);
    if (t === 'login') return this.login(u, msg);
    return this.error(u, 'unknown_type', 'unknown message type');
  }

  binary(u) {
    this.error(u, 'bad_json', 'binary messages are not part of the protocol');
  }

  checkName(v) {
    if (typeof v !== 'string') return [null, 'name is required and must be a string'];
    const s = v.replace(TRIM, '');
    if (s.length === 0) return [null, 'name is empty'];
    if (CONTROL.test(s)) return [null, 'name holds control characters'];
    if (tooLong(s, this.limits.maxName)) return [null, 'name is too long'];
    return [escapeHtml(s), null];
  }

  login(u, msg) {
    if (u.uid) return this.error(u, 'already_logged_in', 'this connection is already logged in');
    const [name, err] = this.checkName(msg.name);
    if (err) return this.error(u, 'bad_name', err);
    const roomId = roomOf(msg.room_id);
    if (roomId === null)
      return this.error(u, 'bad_json', 'room_id must be a number or a string of 1 to 64 bytes');
    let room = this.rooms.get(roomId);
    if (!room) this.rooms.set(roomId, (room = new Set()));
    u.uid = this.newUid();
    u.name = name;
    this.users.set(u.uid, u);

    const list = [];
    for (const m of room) list.push({ uid: m.uid, name: m.name });
    list.push({ uid: u.uid, name });
    this.io.send(u.conn, JSON.stringify({ type: 'user_list', user_list: list }));

    room.add(u);
    u.room = roomId;
    this.io.join(u.conn, roomId);
    this.io.publish(roomId, room,
      JSON.stringify({ type: 'login', uid: u.uid, name, time: this.now() }));
  }

  say(u, msg) {
    if (!u.uid) return this.error(u, 'not_logged_in', 'log in before you say anything');
    const content = msg.content;
    if (typeof content !== 'string') return this.error(u, 'bad_content', 'content is required and must be a string');
    if (content.length === 0) return this.error(u, 'bad_content', 'content is empty');
    if (tooLong(content, this.limits.maxContent)) return this.error(u, 'bad_content', 'content is too long');
    const to = targetOf(msg.to_uid);
    if (to === -1) return this.error(u, 'bad_json', 'to_uid must be "all" or a uid');
    let target = null;
    if (to !== 0) {
      target = to > 0 ? this.users.get(to) : undefined;
      if (!target || target.room !== u.room) return this.error(u, 'no_such_user', 'no user with that uid in your room');
    }
    const text = JSON.stringify({
      type: 'say', from_uid: u.uid, to_uid: target ? to : 'all',
      content: nl2br(escapeHtml(content)), time: this.now(),
    });
    if (!target) return this.io.publish(u.room, this.rooms.get(u.room), text);
    this.io.send(target.conn, text);
    if (target !== u) this.io.send(u.conn, text);
  }

  // The connection is gone (close, error, timeout): tell the room.
  disconnect(u) {
    if (!u.uid) return;
    const room = this.rooms.get(u.room);
    this.users.delete(u.uid);
    room.delete(u);
    this.io.leave(u.conn, u.room);
    if (room.size === 0) {
      this.rooms.delete(u.room);
    } else {
      this.io.publish(u.room, room, JSON.stringify({ type: 'logout', uid: u.uid, time: this.now() }));
    }
    u.uid = 0;
  }
}

// The command line both peers share; defaults are tagarela's.
function parseOptions(argv) {
  const { parseArgs } = require('node:util');
  const { values } = parseArgs({
    args: argv,
    options: {
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '7272' },
      rate: { type: 'string', default: '50' },
      burst: { type: 'string', default: '100' },
      'max-name': { type: 'string', default: '32' },
      'max-content': { type: 'string', default: '4096' },
      'max-message': { type: 'string', default: String(1 << 20) },
      'ping-interval': { type: 'string', default: '25' },
      'idle-timeout': { type: 'string', default: '60' },
      'outbound-cap': { type: 'string', default: String(4 << 20) },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write('options: --host H --port P --rate N --burst N --max-name N --max-content N\n' +
      '         --max-message BYTES --ping-interval SEC --idle-timeout SEC --outbound-cap BYTES\n');
    process.exit(0);
  }
  const num = (k) => {
    const n = Number(values[k]);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${k} wants a number, not '${values[k]}'`);
    return n;
  };
  return {
    host: values.host,
    port: num('port'),
    limits: { maxName: num('max-name'), maxContent: num('max-content'), rate: num('rate'), burst: num('burst') },
    maxMessage: num('max-message'),
    pingInterval: num('ping-interval'),
    idleTimeout: num('idle-timeout'),
    outboundCap: num('outbound-cap'),
  };
}

module.exports = { Chat, parseOptions, escapeHtml, nl2br };
