/* tagarela -- the chat page.
 *
 * Safety rule of this file: nothing that comes from the network is ever
 * parsed as HTML. The server sends `name` and `content` HTML-escaped (the
 * five entities of PHP's htmlspecialchars, plus "<br />" before line
 * breaks); decodeServerText() turns exactly those back into plain text,
 * and every node is then built with createElement/textContent. Links are
 * <a> elements made here, for http(s) URLs only. */
'use strict';

(() => {
  const DEFAULT_ROOM = '1';
  const BACKOFF_BASE_MS = 500;
  const BACKOFF_MAX_MS = 10000;
  const CONNECT_TIMEOUT_MS = 10000;
  const LOGIN_TIMEOUT_MS = 10000;
  const NAME_MAX = 32;
  const CONTENT_MAX = 4096;
  const GROUP_WINDOW_MS = 5 * 60 * 1000;
  const LS_NAME = 'tagarela.name';
  const LS_ROOMS = 'tagarela.rooms';
  const SS_NAMES = 'tagarela.names';  // this tab's uid -> name memory, kept over reloads
  const SS_UIDS = 'tagarela.uids';    // this tab's own uids, kept over reloads
  const LS_TOKEN = 'tagarela.token';  // the session token: this browser's identity and its private history
  const SS_JWT = 'tagarela.jwt';      // a signed token given as #token=, kept over reloads of this tab
  const TOKEN_MAX = 8192;
  const MAX_NAMES = 400;
  const MAX_UIDS = 50;

  const $ = (id) => document.getElementById(id);
  const el = {
    app: $('app'), topbar: $('topbar'), main: $('main'),
    roomForm: $('room-form'), roomInput: $('room-input'), recentRooms: $('recent-rooms'),
    status: $('status'), statusText: $('status-text'), retry: $('retry'),
    usersToggle: $('users-toggle'), usersToggleCount: $('users-toggle-count'),
    users: $('users'), usersClose: $('users-close'), userList: $('user-list'),
    userCount: $('user-count'), meName: $('me-name'), changeName: $('change-name'),
    backdrop: $('backdrop'),
    chat: $('chat'), logScroll: $('log-scroll'), empty: $('empty'), jump: $('jump'),
    composer: $('composer'), message: $('message'), send: $('send'), counter: $('counter'),
    target: $('target'), targetName: $('target-name'), targetClear: $('target-clear'),
    login: $('login'), loginForm: $('login-form'), nick: $('nick'), loginRoom: $('login-room'),
    loginError: $('login-error'), loginCancel: $('login-cancel'),
  };

  const state = {
    name: '',              // our nickname, as typed (trimmed)
    room: DEFAULT_ROOM,    // current room id (string)
    selfUid: null,         // our uid in the current connection (string)
    myUids: new Set(),     // every uid we have had on this page (for history)
    users: new Map(),      // uid -> name, in join order, for the current room
    names: new Map(),      // every uid -> name ever seen (senders who left)
    target: null,          // {uid, name} when writing a private message
    signedToken: null,     // a JWT from the site (#token=), sent instead of the session token
    ws: null,
    gen: 0,                // bumps on every new connection; stale events are dropped
    wanted: false,         // true while we want to be connected
    online: false,         // logged in on the current connection
    everOnline: false,
    attempt: 0,            // reconnect attempt, for the backoff
    retryTimer: 0, retryAt: 0, tickTimer: 0, watchdog: 0,
    wsUrl: null,           // from /config.json, once it answered
    rooms: new Map(),      // room -> {log, seen:Set, lastId, joinMark, resumeFrom}
    unread: 0,
    listParts: null,       // a user list still coming in pieces
    listHeld: [],          // messages that came between its pieces
    historyPart: null,     // {room, divider, label, shown} while history pieces come
  };

  /* ---------- text from the wire ---------- */

  const ENTITIES = { '&amp;': '&', '&lt;': '<', '&gt;': '>', '&quot;': '"', '&#039;': "'" };

  /** The server's escaped text back to plain text: "<br />" (with the line
   *  break after it) and the five entities, in one pass each, nothing else. */
  function decodeServerText(s) {
    if (typeof s !== 'string') return s == null ? '' : String(s);
    return s
      .replace(/<br \/>(\r\n|\n\r|\n|\r)?/g, (_, nl) => nl || '\n')
      .replace(/&(?:amp|lt|gt|quot|#039);/g, (m) => ENTITIES[m])
      .replace(/\r\n|\n\r|\r/g, '\n');
  }

  const codePoints = (s) => Array.from(s).length;
  const CONTROL_RE = /[\u0000-\u001f\u007f-\u009f]/;

  const URL_RE = /\bhttps?:\/\/[^\s<>"'`]+/gi;

  /** Appends text to parent, with http(s) URLs as links. */
  function appendRichText(parent, text) {
    let last = 0;
    URL_RE.lastIndex = 0;
    let m;
    while ((m = URL_RE.exec(text)) !== null) {
      let url = m[0];
      // Trailing punctuation is usually the sentence's, not the URL's.
      for (;;) {
        const c = url.slice(-1);
        if (/[.,;:!?*]/.test(c)) { url = url.slice(0, -1); continue; }
        if (c === ')' && count(url, '(') < count(url, ')')) { url = url.slice(0, -1); continue; }
        if (c === ']' && count(url, '[') < count(url, ']')) { url = url.slice(0, -1); continue; }
        break;
      }
      let parsed = null;
      try { parsed = new URL(url); } catch (_) { /* not a URL after all */ }
      if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') || !parsed.host) continue;
      if (m.index > last) parent.appendChild(document.createTextNode(text.slice(last, m.index)));
      const a = document.createElement('a');
      a.href = parsed.href;
      a.textContent = url;
      a.target = '_blank';
      a.rel = 'noopener noreferrer';
      parent.appendChild(a);
      last = m.index + url.length;
      URL_RE.lastIndex = last;
    }
    if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
  }
  const count = (s, ch) => s.split(ch).length - 1;

  /* ---------- small helpers ---------- */

  function store(key, value) {
    try { if (value == null) localStorage.removeItem(key); else localStorage.setItem(key, value); } catch (_) { /* private mode */ }
  }
  function load(key) {
    try { return localStorage.getItem(key); } catch (_) { return null; }
  }

  /* A site that embeds the chat for its signed-in users hands the page
   * their JWT as #token=...; it is taken out of the address bar (where
   * bookmarks, shared links and the history would keep it) and kept for
   * this tab only. Without one, the page uses its session token. */
  function takeSignedToken() {
    const t = new URLSearchParams(location.hash.slice(1)).get('token');
    if (t && t.length <= TOKEN_MAX) {
      state.signedToken = t;
      try { sessionStorage.setItem(SS_JWT, t); } catch (_) { /* private mode: this load only */ }
      const u = new URL(location.href);
      u.hash = '';
      history.replaceState(history.state, '', u);
      return;
    }
    try { state.signedToken = sessionStorage.getItem(SS_JWT); } catch (_) { state.signedToken = null; }
  }

  /* The name a signed token carries (name, else sub), to fill in the form;
   * the server takes the name from the verified token whatever we send. */
  function signedTokenName() {
    try {
      const part = state.signedToken.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      const claims = JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(part), (c) => c.charCodeAt(0))));
      const n = typeof claims.name === 'string' ? claims.name : claims.sub;
      return typeof n === 'string' || typeof n === 'number' ? String(n) : '';
    } catch (_) { return ''; }
  }

  function forgetSignedToken() {
    state.signedToken = null;
    try { sessionStorage.removeItem(SS_JWT); } catch (_) { /* nothing kept */ }
  }

  function onSession(msg) {
    // Kept for the next login, reconnects and reloads included: it is what
    // gives this browser its private history back. A signed token stays.
    if (state.signedToken || typeof msg.token !== 'string' || msg.token.length > TOKEN_MAX) return;
    store(LS_TOKEN, msg.token);
  }

  /* The uids this tab has had and the names it has seen, kept in
   * sessionStorage so that a reload can still tell who said what in the
   * history the server replays (uids change with every connection). */
  function loadTabMemory() {
    try {
      const names = JSON.parse(sessionStorage.getItem(SS_NAMES) || '[]');
      if (Array.isArray(names)) {
        for (const e of names) if (Array.isArray(e) && typeof e[0] === 'string' && typeof e[1] === 'string') state.names.set(e[0], e[1]);
      }
      const uids = JSON.parse(sessionStorage.getItem(SS_UIDS) || '[]');
      if (Array.isArray(uids)) for (const u of uids) if (typeof u === 'string') state.myUids.add(u);
    } catch (_) { /* none, or unreadable: start afresh */ }
  }
  let saveTimer = 0;
  function saveTabMemoryNow() {
    clearTimeout(saveTimer);
    saveTimer = 0;
    try {
      sessionStorage.setItem(SS_NAMES, JSON.stringify([...state.names].slice(-MAX_NAMES)));
      sessionStorage.setItem(SS_UIDS, JSON.stringify([...state.myUids].slice(-MAX_UIDS)));
    } catch (_) { /* full or unavailable */ }
  }
  /* Grouped: a user_list names many at once. What is still pending is
   * written on pagehide, so a quick reload loses no name. */
  function saveTabMemory() {
    if (!saveTimer) saveTimer = setTimeout(saveTabMemoryNow, 200);
  }
  function learnName(uid, name) {
    state.names.delete(uid); // re-insert: the most recent stay when trimming
    state.names.set(uid, name);
    saveTabMemory();
  }

  function hueOf(name) {
    let h = 2166136261;
    for (const ch of name) { h ^= ch.codePointAt(0); h = Math.imul(h, 16777619); }
    return ((h >>> 0) % 360);
  }

  function makeAvatar(name) {
    const a = document.createElement('span');
    a.className = 'avatar';
    a.setAttribute('aria-hidden', 'true');
    a.style.setProperty('--hue', String(hueOf(name)));
    const first = Array.from(name.trim())[0] || '?';
    a.textContent = first.toLocaleUpperCase();
    return a;
  }

  function pad(n) { return n < 10 ? '0' + n : String(n); }
  function nowStamp() {
    const d = new Date();
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  const TIME_RE = /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2})(?::(\d{2}))?$/;

  /** <time> showing HH:MM, with the server's full value as a title. */
  function makeTime(stamp) {
    const t = document.createElement('time');
    const s = typeof stamp === 'string' && stamp ? stamp : nowStamp();
    const m = TIME_RE.exec(s);
    if (m) {
      t.textContent = `${m[4]}:${m[5]}`;
      t.dateTime = `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6] || '00'}`;
    } else {
      t.textContent = s;
    }
    t.title = s;
    return t;
  }
  function stampMs(stamp) {
    const m = typeof stamp === 'string' ? TIME_RE.exec(stamp) : null;
    if (!m) return Date.now();
    return new Date(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0)).getTime();
  }

  function uidKey(v) { return v == null ? '' : String(v); }
  function nameOf(uid) {
    return state.users.get(uid) ?? state.names.get(uid) ?? `user ${uid}`;
  }

  /* ---------- rooms and their logs ---------- */

  function normalizeRoom(raw) {
    const r = (raw == null ? '' : String(raw)).trim().replace(/^#/, '');
    if (!r) return null;
    if (new TextEncoder().encode(r).length > 64) return null;
    if (CONTROL_RE.test(r)) return null;
    return r;
  }
  function roomFromUrl() {
    const r = new URL(location.href).searchParams.get('room_id');
    return normalizeRoom(r) || DEFAULT_ROOM;
  }

  function roomState(room) {
    let r = state.rooms.get(room);
    if (!r) {
      const log = document.createElement('div');
      log.className = 'log';
      log.setAttribute('role', 'log');
      log.setAttribute('aria-live', 'polite');
      log.setAttribute('aria-relevant', 'additions');
      log.setAttribute('aria-label', `Messages in #${room}`);
      log.dataset.room = room;
      log.hidden = true;
      el.logScroll.appendChild(log);
      r = { log, seen: new Set(), lastId: null, joinMark: null, resumeFrom: null, joinedBefore: false };
      state.rooms.set(room, r);
    }
    return r;
  }
  function currentLog() { return roomState(state.room).log; }

  function showRoom(room) {
    for (const [name, r] of state.rooms) r.log.hidden = name !== room;
    roomState(room).log.hidden = false;
    el.roomInput.value = room;
    el.message.placeholder = state.target ? `Private message to ${state.target.name}` : `Message #${room}`;
    document.title = `#${room} · tagarela`;
    state.unread = 0;
    updateEmpty();
    scrollToBottom();
  }

  function rememberRoom(room) {
    let rooms = [];
    try { rooms = JSON.parse(load(LS_ROOMS) || '[]'); } catch (_) { rooms = []; }
    if (!Array.isArray(rooms)) rooms = [];
    rooms = [room, ...rooms.filter((r) => typeof r === 'string' && r !== room)].slice(0, 8);
    store(LS_ROOMS, JSON.stringify(rooms));
    renderRecentRooms(rooms);
  }
  function renderRecentRooms(rooms) {
    if (!rooms) {
      try { rooms = JSON.parse(load(LS_ROOMS) || '[]'); } catch (_) { rooms = []; }
    }
    el.recentRooms.replaceChildren();
    for (const r of Array.isArray(rooms) ? rooms : []) {
      if (typeof r !== 'string') continue;
      const o = document.createElement('option');
      o.value = r;
      el.recentRooms.appendChild(o);
    }
  }

  function setUrlRoom(room, push) {
    const u = new URL(location.href);
    if (u.searchParams.get('room_id') === room) return;
    u.searchParams.set('room_id', room);
    if (push) history.pushState({ room }, '', u);
    else history.replaceState({ room }, '', u);
  }

  function switchRoom(raw, { push = true } = {}) {
    const room = normalizeRoom(raw);
    if (!room) {
      addNotice('error', 'A room name has 1 to 64 bytes and no control characters.');
      el.roomInput.value = state.room;
      return false;
    }
    setUrlRoom(room, push);
    if (room === state.room) return true;
    state.room = room;
    state.users.clear();
    setTarget(null);
    renderUsers();
    showRoom(room);
    rememberRoom(room);
    if (state.name) reconnectNow();
    return true;
  }

  /* ---------- the message log ---------- */

  function nearBottom() {
    const s = el.logScroll;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 120;
  }
  function scrollToBottom() {
    el.logScroll.scrollTop = el.logScroll.scrollHeight;
    el.jump.hidden = true;
  }
  function updateEmpty() {
    el.empty.hidden = currentLog().querySelector('.msg') !== null;
  }

  /** Appends node to the current room's log (or before `before`), keeping
   *  the view pinned to the bottom when it was there. */
  function append(node, { force = false, before = null, log = currentLog() } = {}) {
    const visible = !log.hidden;
    const stick = visible && (force || nearBottom());
    if (before && before.parentNode === log) log.insertBefore(node, before);
    else log.appendChild(node);
    if (!visible) return;
    updateEmpty();
    if (stick) scrollToBottom();
    else el.jump.hidden = false;
  }

  function addNotice(kind, text, stamp, opts) {
    const n = document.createElement('div');
    n.className = `notice notice-${kind}`;
    if (kind === 'error') n.setAttribute('role', 'alert');
    const body = document.createElement('span');
    body.className = 'notice-text';
    if (kind === 'error') {
      const strong = document.createElement('strong');
      strong.textContent = 'Error';
      body.appendChild(strong);
      body.appendChild(document.createTextNode(' '));
    }
    body.appendChild(document.createTextNode(text));
    n.appendChild(body);
    n.appendChild(makeTime(stamp));
    append(n, opts);
    return n;
  }

  function lockIcon() {
    const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('focusable', 'false');
    const p = document.createElementNS('http://www.w3.org/2000/svg', 'path');
    p.setAttribute('d', 'M17 10V8A5 5 0 0 0 7 8v2H5v11h14V10h-2zM9 8a3 3 0 0 1 6 0v2H9V8z');
    svg.appendChild(p);
    return svg;
  }

  /** Renders a say message (live or from history). */
  function renderSay(msg, { history = false } = {}) {
    const room = roomState(state.room);
    if (msg.id != null) {
      // Only history can repeat what we have shown: live messages always show.
      // A live id below the highest one seen means the server's sequence
      // started again (a restart without its data): forget the old ids.
      const key = String(msg.id);
      const n = Number(msg.id);
      if (history && room.seen.has(key)) return null;
      if (!history && Number.isFinite(n) && room.lastId != null && n <= room.lastId && !room.seen.has(key)) {
        room.seen.clear();
        room.lastId = null;
      }
      room.seen.add(key);
      if (Number.isFinite(n) && (room.lastId == null || n > room.lastId)) room.lastId = n;
    }
    const from = uidKey(msg.from_uid);
    const to = msg.to_uid == null ? 'all' : uidKey(msg.to_uid);
    const isPrivate = to !== 'all';
    const mine = state.myUids.has(from);
    const toMe = isPrivate && state.myUids.has(to);
    // A newer server may name the parties (uids change on every reconnect).
    const wireFrom = typeof msg.from_name === 'string' ? msg.from_name : (typeof msg.name === 'string' ? msg.name : null);
    if (wireFrom !== null && !state.users.has(from)) learnName(from, decodeServerText(wireFrom));
    if (isPrivate && typeof msg.to_name === 'string' && !state.users.has(to)) learnName(to, decodeServerText(msg.to_name));
    const known = state.users.has(from) || state.names.has(from);
    const senderName = nameOf(from);
    const text = decodeServerText(msg.content);
    const ms = stampMs(msg.time);

    const row = document.createElement('div');
    row.className = 'msg';
    if (mine) row.classList.add('mine');
    if (isPrivate) row.classList.add('private');
    if (history) row.classList.add('from-history');
    row.dataset.from = from;
    row.dataset.to = to;
    row.dataset.t = String(ms);
    if (msg.id != null) row.dataset.id = String(msg.id);

    // Consecutive messages of one sender, to the same audience, close in time: grouped.
    const log = room.log;
    const prev = log.lastElementChild;
    if (!history && prev && prev.classList.contains('msg') && prev.dataset.from === from &&
        prev.dataset.to === to && ms - Number(prev.dataset.t) < GROUP_WINDOW_MS && ms >= Number(prev.dataset.t)) {
      row.classList.add('cont');
    }

    row.appendChild(makeAvatar(senderName));
    const bubble = document.createElement('div');
    bubble.className = 'bubble';

    const meta = document.createElement('div');
    meta.className = 'meta';
    const author = document.createElement('span');
    author.className = 'author';
    author.style.setProperty('--hue', String(hueOf(senderName)));
    author.textContent = senderName;
    if (!known) {
      author.classList.add('unknown');
      author.title = 'This sender\'s name is not known to this page';
    }
    meta.appendChild(author);
    if (mine) {
      const you = document.createElement('span');
      you.className = 'you-tag';
      you.textContent = 'you';
      meta.appendChild(you);
    }
    if (isPrivate) {
      const badge = document.createElement('span');
      badge.className = 'badge-private';
      badge.appendChild(lockIcon());
      const label = document.createElement('span');
      // Ours to someone else, to us, or (history we cannot place) between two others.
      label.textContent = toMe ? 'Private to you' : `Private to ${nameOf(to)}`;
      badge.appendChild(label);
      meta.appendChild(badge);
    }
    meta.appendChild(makeTime(msg.time));
    bubble.appendChild(meta);

    const body = document.createElement('div');
    body.className = 'text';
    appendRichText(body, text);
    bubble.appendChild(body);
    row.appendChild(bubble);

    // History goes before our own "you joined" line, so the old talk comes first.
    const before = history && room.joinMark && room.joinMark.parentNode === log ? room.joinMark : null;
    append(row, { force: mine, before, log });

    if (!history && !mine && document.hidden) {
      state.unread++;
      document.title = `(${state.unread}) #${state.room} · tagarela`;
    }
    return row;
  }

  /* ---------- the user list ---------- */

  function renderUsers() {
    el.userList.replaceChildren();
    for (const [uid, name] of state.users) {
      const li = document.createElement('li');
      const self = uid === state.selfUid;
      const item = document.createElement(self ? 'div' : 'button');
      item.className = 'user';
      item.dataset.uid = uid;
      if (!self) {
        item.type = 'button';
        const selected = state.target && state.target.uid === uid;
        item.setAttribute('aria-pressed', selected ? 'true' : 'false');
        item.title = selected ? `Stop writing privately to ${name}` : `Write privately to ${name}`;
      } else {
        item.classList.add('self');
      }
      item.appendChild(makeAvatar(name));
      const n = document.createElement('span');
      n.className = 'user-name';
      n.textContent = name;
      item.appendChild(n);
      if (self) {
        const you = document.createElement('span');
        you.className = 'you-tag';
        you.textContent = 'you';
        item.appendChild(you);
      } else {
        const pm = document.createElement('span');
        pm.className = 'user-pm';
        pm.appendChild(lockIcon());
        item.appendChild(pm);
      }
      li.appendChild(item);
      el.userList.appendChild(li);
    }
    const n = String(state.users.size);
    el.userCount.textContent = n;
    el.usersToggleCount.textContent = n;
    el.users.classList.toggle('stale', !state.online);
  }

  function setTarget(t) {
    state.target = t;
    if (t) {
      el.target.hidden = false;
      el.targetName.textContent = t.name;
      el.message.placeholder = `Private message to ${t.name}`;
      el.composer.classList.add('is-private');
    } else {
      el.target.hidden = true;
      el.targetName.textContent = '';
      el.message.placeholder = `Message #${state.room}`;
      el.composer.classList.remove('is-private');
    }
    for (const b of el.userList.querySelectorAll('button.user')) {
      b.setAttribute('aria-pressed', t && b.dataset.uid === t.uid ? 'true' : 'false');
    }
  }

  /* ---------- the connection ---------- */

  const STATUS_TEXT = {
    idle: 'Not connected', connecting: 'Connecting…', online: 'Online',
    reconnecting: 'Reconnecting…', offline: 'Offline',
  };
  function setStatus(s, text) {
    el.status.dataset.state = s;
    el.statusText.textContent = text || STATUS_TEXT[s] || s;
    el.retry.hidden = s !== 'reconnecting';
    el.app.dataset.conn = s;
    updateSendButton();
  }

  function defaultWsUrl() {
    if (location.protocol === 'http:' || location.protocol === 'https:') {
      return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
    }
    return 'ws://127.0.0.1:7272/';
  }

  async function resolveWsUrl() {
    if (state.wsUrl) return state.wsUrl;
    if (!(location.protocol === 'http:' || location.protocol === 'https:')) return defaultWsUrl();
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), 4000);
    try {
      const res = await fetch('/config.json', { cache: 'no-store', signal: ctl.signal });
      if (!res.ok) return defaultWsUrl();
      const cfg = await res.json();
      const u = cfg && typeof cfg.ws_url === 'string' && /^wss?:\/\//i.test(cfg.ws_url) ? cfg.ws_url : null;
      // Remember only a real answer: a failed fetch is asked again next time.
      state.wsUrl = u || defaultWsUrl();
      return state.wsUrl;
    } catch (_) {
      return defaultWsUrl();
    } finally {
      clearTimeout(timer);
    }
  }

  function clearTimers() {
    clearTimeout(state.retryTimer);
    clearInterval(state.tickTimer);
    clearTimeout(state.watchdog);
    state.retryTimer = state.tickTimer = state.watchdog = 0;
  }

  function dropSocket(code) {
    const ws = state.ws;
    state.ws = null;
    state.online = false;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(code || 1000); } catch (_) { /* already closed */ }
    }
  }

  function connect() {
    clearTimers();
    dropSocket(1000);
    state.wanted = true;
    const gen = ++state.gen;
    setStatus(state.attempt > 0 ? 'reconnecting' : 'connecting',
      state.attempt > 0 ? 'Reconnecting…' : 'Connecting…');
    resolveWsUrl().then((url) => {
      if (gen !== state.gen || !state.wanted) return;
      let ws;
      try {
        ws = new WebSocket(url);
      } catch (_) {
        scheduleReconnect();
        return;
      }
      state.ws = ws;
      state.watchdog = setTimeout(() => {
        if (gen === state.gen && !state.online) { dropSocket(4000); onLost(); }
      }, CONNECT_TIMEOUT_MS + LOGIN_TIMEOUT_MS);
      ws.onopen = () => {
        if (gen !== state.gen) return;
        sendLogin();
      };
      ws.onmessage = (ev) => {
        if (gen !== state.gen) return;
        onMessage(ev.data);
      };
      ws.onerror = () => { /* a close event follows */ };
      ws.onclose = () => {
        if (gen !== state.gen) return;
        state.ws = null;
        onLost();
      };
    });
  }

  function onLost() {
    const wasOnline = state.online;
    state.online = false;
    clearTimeout(state.watchdog);
    renderUsers();
    if (wasOnline) addNotice('info', 'Connection lost. Reconnecting…');
    if (state.wanted) scheduleReconnect();
    else setStatus('idle');
  }

  function scheduleReconnect() {
    clearTimers();
    // Exponential backoff with "equal jitter": half fixed, half random, capped.
    const exp = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.min(state.attempt, 10));
    const delay = Math.round(exp / 2 + Math.random() * (exp / 2));
    state.attempt++;
    state.retryAt = Date.now() + delay;
    const tick = () => {
      const left = Math.max(0, Math.ceil((state.retryAt - Date.now()) / 1000));
      setStatus('reconnecting', left > 0 ? `Reconnecting in ${left} s…` : 'Reconnecting…');
    };
    tick();
    state.tickTimer = setInterval(tick, 500);
    state.retryTimer = setTimeout(connect, delay);
  }

  function reconnectNow() {
    state.attempt = 0;
    connect();
  }

  function sendRaw(obj) {
    const ws = state.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(obj));
    return true;
  }

  function sendLogin() {
    const msg = { type: 'login', name: state.name, room_id: state.room };
    const token = state.signedToken || load(LS_TOKEN);
    if (token) msg.token = token;
    const r = state.rooms.get(state.room);
    if (r && r.lastId != null) msg.last_id = r.lastId;
    // Ask for the senders' names in history (uids change with every connection).
    msg.history_names = true;
    roomState(state.room).resumeFrom = msg.last_id ?? null;
    state.listParts = null;
    state.listHeld = [];
    state.historyPart = null;
    sendRaw(msg);
  }

  function onMessage(data) {
    if (typeof data !== 'string') return;
    let msg;
    try { msg = JSON.parse(data); } catch (_) { return; }
    if (!msg || typeof msg !== 'object' || Array.isArray(msg)) return;
    // A long user list comes in pieces ("more": true on all but the last),
    // with the room's news between them: the news waits for the whole
    // list, so that it reads as if the list had come in one message.
    if (msg.type === 'user_list') {
      const part = Array.isArray(msg.user_list) ? msg.user_list : [];
      state.listParts = (state.listParts || []).concat(part);
      if (msg.more === true) return;
      const whole = { type: 'user_list', user_list: state.listParts };
      const held = state.listHeld || [];
      state.listParts = null;
      state.listHeld = [];
      dispatch(whole);
      for (const m of held) dispatch(m);
      return;
    }
    if (state.listParts) {
      if (state.listHeld.length < 10000) state.listHeld.push(msg);
      return;
    }
    dispatch(msg);
  }

  function dispatch(msg) {
    switch (msg.type) {
      case 'ping': sendRaw({ type: 'pong' }); break;
      case 'user_list': onUserList(msg); break;
      case 'login': onLogin(msg); break;
      case 'session': onSession(msg); break;
      case 'logout': onLogout(msg); break;
      case 'say': renderSay(msg); break;
      case 'history': onHistory(msg); break;
      case 'error': onError(msg); break;
      case 'delete': onDelete(msg); break;
      default: break; // newer server, older page: ignore
    }
  }

  function onUserList(msg) {
    const list = Array.isArray(msg.user_list) ? msg.user_list : [];
    state.users.clear();
    for (const u of list) {
      if (!u || typeof u !== 'object') continue;
      const uid = uidKey(u.uid);
      const name = decodeServerText(u.name);
      state.users.set(uid, name);
      learnName(uid, name);
    }
    // The new client is last in the list: that is us.
    const me = list.length ? list[list.length - 1] : null;
    state.selfUid = me ? uidKey(me.uid) : null;
    if (state.selfUid) { state.myUids.add(state.selfUid); saveTabMemoryNow(); }
    const wasReconnect = state.everOnline;
    state.online = true;
    state.everOnline = true;
    state.attempt = 0;
    clearTimers();
    setStatus('online');
    // A private target from before a reconnect has a new uid now: find it by name.
    if (state.target) {
      let found = null;
      for (const [uid, name] of state.users) if (name === state.target.name && uid !== state.selfUid) found = uid;
      setTarget(found ? { uid: found, name: state.target.name } : null);
    }
    renderUsers();
    if (wasReconnect) roomState(state.room).joinMark = null;
  }

  function onLogin(msg) {
    const uid = uidKey(msg.uid);
    const name = decodeServerText(msg.name);
    learnName(uid, name);
    if (uid === state.selfUid) {
      const room = roomState(state.room);
      const text = room.joinedBefore ? `Back in #${state.room} as ${name}` : `You joined #${state.room} as ${name}`;
      room.joinMark = addNotice('join', text, msg.time, { force: true });
      room.joinedBefore = true;
      return;
    }
    state.users.set(uid, name);
    renderUsers();
    addNotice('join', `${name} joined`, msg.time);
  }

  function onLogout(msg) {
    const uid = uidKey(msg.uid);
    const name = nameOf(uid);
    state.users.delete(uid);
    if (state.target && state.target.uid === uid) {
      setTarget(null);
    }
    renderUsers();
    addNotice('leave', `${name} left`, msg.time);
  }

  /** Replayed messages: the room's recent talk after a first join, or what
   *  was missed after a reconnect. A divider above them says which. A long
   *  history comes in pieces ("more": true on all but the last), in
   *  increasing id order: they share one divider, and an id already shown
   *  (live, or in another piece) is not shown twice. */
  function onHistory(msg) {
    const list = Array.isArray(msg.messages) ? msg.messages : [];
    const room = roomState(state.room);
    const log = room.log;
    const resumed = room.resumeFrom != null;
    const part = state.historyPart && state.historyPart.room === room ? state.historyPart : null;
    state.historyPart = msg.more === true ? (part || { room, divider: null, label: null, shown: 0 }) : null;
    let first = null;
    let shown = part ? part.shown : 0;
    for (const m of list) {
      if (!m || typeof m !== 'object' || !(m.type === 'say' || m.type == null)) continue;
      const row = renderSay(m, { history: true });
      if (row) { first = first || row; shown++; }
    }
    if (part && part.label) {
      part.shown = shown;
      if (state.historyPart) state.historyPart.shown = shown;
      if (resumed) part.label.textContent = `${shown} ${shown === 1 ? 'message' : 'messages'} while you were away`;
      return;
    }
    if (!first) return;
    const d = document.createElement('div');
    d.className = 'divider divider-history';
    d.setAttribute('role', 'separator');
    const label = document.createElement('span');
    label.textContent = resumed
      ? `${shown} ${shown === 1 ? 'message' : 'messages'} while you were away`
      : 'Earlier messages';
    d.appendChild(label);
    log.insertBefore(d, first);
    if (state.historyPart) Object.assign(state.historyPart, { divider: d, label, shown });
  }

  const LOGIN_FATAL = new Set(['bad_name', 'bad_json', 'bad_token', 'banned']);

  /* An operator deleted a message of our room: it goes from the log. A
   * message grouped under it takes over its header. */
  function onDelete(msg) {
    if (msg.id == null) return;
    const log = roomState(state.room).log;
    const row = log.querySelector(`.msg[data-id="${CSS.escape(String(msg.id))}"]`);
    if (!row) return;
    const next = row.nextElementSibling;
    if (!row.classList.contains('cont') && next && next.classList.contains('cont')) next.classList.remove('cont');
    row.remove();
  }

  /* An operator removed us: no reconnecting, and the reason shown. */
  function onKicked(text, time) {
    state.wanted = false;
    ++state.gen;
    dropSocket(1000);
    clearTimers();
    state.online = false;
    renderUsers();
    setStatus('idle', 'Not connected');
    addNotice('error', `An operator removed you from the chat: ${text}`, time, { force: true }).dataset.code = 'kicked';
  }

  function onError(msg) {
    const code = typeof msg.code === 'string' ? msg.code : 'error';
    const text = typeof msg.message === 'string' && msg.message ? decodeServerText(msg.message) : code.replace(/_/g, ' ');
    if (code === 'kicked') {
      onKicked(text, msg.time);
      return;
    }
    if (!state.online && LOGIN_FATAL.has(code)) {
      // The server refused our login: retrying would fail the same way.
      if (code === 'bad_token') forgetSignedToken();
      state.wanted = false;
      ++state.gen;
      dropSocket(1000);
      clearTimers();
      setStatus('idle', 'Not connected');
      showLogin(`The server refused this login: ${text} (${code})`);
      return;
    }
    const n = addNotice('error', `${text}`, msg.time, { force: true });
    n.dataset.code = code;
    const c = document.createElement('code');
    c.className = 'error-code';
    c.textContent = code;
    n.querySelector('.notice-text').appendChild(c);
  }

  /* ---------- the composer ---------- */

  function updateSendButton() {
    const text = el.message.value;
    el.send.disabled = !state.online || text.trim() === '';
    const n = codePoints(text);
    if (n > CONTENT_MAX - 200) {
      el.counter.hidden = false;
      el.counter.textContent = `${n} / ${CONTENT_MAX}`;
      el.counter.classList.toggle('over', n > CONTENT_MAX);
    } else {
      el.counter.hidden = true;
    }
  }

  function autosize() {
    const t = el.message;
    t.style.height = 'auto';
    t.style.height = Math.min(t.scrollHeight + 2, 200) + 'px';
  }

  function sendMessage() {
    const text = el.message.value;
    if (text.trim() === '') return;
    if (!state.online) {
      addNotice('info', 'You are offline: your message is kept and can be sent once reconnected.');
      return;
    }
    const msg = { type: 'say', to_uid: 'all', content: text };
    if (state.target) {
      const n = Number(state.target.uid);
      msg.to_uid = Number.isSafeInteger(n) ? n : state.target.uid;
    }
    if (sendRaw(msg)) {
      el.message.value = '';
      autosize();
      updateSendButton();
    }
  }

  /* ---------- the login form ---------- */

  function validName(raw) {
    const name = (raw || '').trim();
    if (!name) return { error: 'Please choose a nickname.' };
    if (codePoints(name) > NAME_MAX) return { error: `A nickname has at most ${NAME_MAX} characters.` };
    if (CONTROL_RE.test(name)) return { error: 'A nickname cannot contain control characters.' };
    return { name };
  }

  function showLogin(error) {
    if (narrow.matches && el.app.classList.contains('users-open')) setUsersOpen(false);
    el.app.dataset.view = 'login';
    el.login.hidden = false;
    el.topbar.inert = true;
    el.main.inert = true;
    el.nick.value = state.name || load(LS_NAME) || '';
    el.loginRoom.value = state.room;
    el.loginError.textContent = error || '';
    el.loginCancel.hidden = !state.wanted;
    el.nick.setAttribute('aria-invalid', error ? 'true' : 'false');
    el.nick.focus();
    el.nick.select();
  }

  function hideLogin() {
    el.app.dataset.view = 'chat';
    el.login.hidden = true;
    el.topbar.inert = false;
    el.main.inert = false;
  }

  function enterChat(name) {
    const changed = name !== state.name;
    state.name = name;
    el.meName.textContent = name;
    hideLogin();
    showRoom(state.room);
    rememberRoom(state.room);
    if (changed || !state.wanted) reconnectNow();
    el.message.focus();
  }

  /* ---------- people panel ---------- */

  const narrow = window.matchMedia('(max-width: 760px)');
  /* On a narrow screen the list is a drawer over the chat: while it is open
   * the chat behind it is inert (Tab stays in the drawer) and focus moves
   * into it; Escape, the close button or the backdrop close it. */
  function setUsersOpen(open, { focus = false } = {}) {
    const drawer = open && narrow.matches;
    el.app.classList.toggle('users-open', open);
    el.app.classList.toggle('users-closed', !open);
    el.usersToggle.setAttribute('aria-expanded', open ? 'true' : 'false');
    el.backdrop.hidden = !drawer;
    el.chat.inert = drawer;
    el.topbar.inert = drawer || !el.login.hidden;
    if (drawer && focus) (el.userList.querySelector('button.user') || el.usersClose).focus();
  }

  /* ---------- wiring ---------- */

  el.loginForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const v = validName(el.nick.value);
    if (v.error) {
      el.loginError.textContent = v.error;
      el.nick.setAttribute('aria-invalid', 'true');
      el.nick.focus();
      return;
    }
    const room = normalizeRoom(el.loginRoom.value || DEFAULT_ROOM);
    if (!room) {
      el.loginError.textContent = 'A room name has 1 to 64 bytes and no control characters.';
      el.loginRoom.focus();
      return;
    }
    store(LS_NAME, v.name);
    if (room !== state.room) {
      state.room = room;
      state.users.clear();
      setTarget(null);
      renderUsers();
      setUrlRoom(room, true);
      state.name = ''; // forces a new connection in enterChat
    }
    enterChat(v.name);
  });

  el.loginCancel.addEventListener('click', () => { hideLogin(); el.message.focus(); });
  el.login.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && !el.loginCancel.hidden) { hideLogin(); el.message.focus(); }
  });
  el.changeName.addEventListener('click', () => showLogin());

  el.roomForm.addEventListener('submit', (e) => {
    e.preventDefault();
    if (switchRoom(el.roomInput.value)) el.message.focus();
  });

  el.retry.addEventListener('click', () => reconnectNow());
  window.addEventListener('online', () => { if (state.wanted && !state.online) reconnectNow(); });

  el.composer.addEventListener('submit', (e) => { e.preventDefault(); sendMessage(); });
  el.message.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      sendMessage();
    } else if (e.key === 'Escape' && state.target) {
      e.preventDefault();
      setTarget(null);
    }
  });
  el.message.addEventListener('input', () => { autosize(); updateSendButton(); });

  el.userList.addEventListener('click', (e) => {
    const b = e.target.closest('button.user');
    if (!b) return;
    const uid = b.dataset.uid;
    if (state.target && state.target.uid === uid) setTarget(null);
    else setTarget({ uid, name: state.users.get(uid) || nameOf(uid) });
    if (narrow.matches) setUsersOpen(false);
    el.message.focus();
  });
  el.targetClear.addEventListener('click', () => { setTarget(null); el.message.focus(); });

  el.usersToggle.addEventListener('click', () => setUsersOpen(!el.app.classList.contains('users-open'), { focus: true }));
  el.usersClose.addEventListener('click', () => { setUsersOpen(false); el.usersToggle.focus(); });
  el.backdrop.addEventListener('click', () => setUsersOpen(false));
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && narrow.matches && el.app.classList.contains('users-open')) {
      setUsersOpen(false);
      el.usersToggle.focus();
    }
  });
  narrow.addEventListener('change', () => setUsersOpen(!narrow.matches));

  el.logScroll.addEventListener('scroll', () => { if (nearBottom()) el.jump.hidden = true; });
  el.jump.addEventListener('click', () => { scrollToBottom(); el.message.focus(); });

  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && state.unread) {
      state.unread = 0;
      document.title = `#${state.room} · tagarela`;
    }
  });

  window.addEventListener('pagehide', () => { if (saveTimer) saveTabMemoryNow(); });
  window.addEventListener('popstate', () => { switchRoom(roomFromUrl(), { push: false }); });

  /* ---------- start ---------- */

  state.room = roomFromUrl();
  takeSignedToken();
  loadTabMemory();
  renderRecentRooms();
  setUsersOpen(!narrow.matches);
  showRoom(state.room);
  renderUsers();
  setStatus('idle');

  const saved = validName(load(LS_NAME) || (state.signedToken ? signedTokenName() : ''));
  if (saved.name) enterChat(saved.name);
  else showLogin();

  // For debugging from the console; holds no secrets.
  window.tagarela = Object.freeze({
    get state() { return { name: state.name, room: state.room, uid: state.selfUid, online: state.online, attempt: state.attempt }; },
    decode: decodeServerText,
  });
})();
