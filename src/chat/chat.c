/* chat.c -- rooms, users, and the messages of the wire contract.
 *
 * All state hangs off a chat struct (no globals), so each event loop can
 * own one. Outgoing JSON is written by hand: key order is part of the
 * contract and the broadcast path should not pay for a generic encoder. */
#include "chat.h"
#include "bucket.h"

#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dict.h"
#include "escape.h"
#include "identity.h"
#include "jwt.h"
#include "sbuf.h"
#include "utf8.h"

#define DEFAULT_ROOM "1"
#define MAX_ROOM_ID 64
#define DEFAULT_CHUNK_BYTES (64 * 1024)
#define ROOM_RATE_WINDOW_MS 60000
/* Errors a client may have queued and not yet read. Every message past the
 * rate earns one, so a client that floods and reads nothing would have us
 * queue a reply per message it sends; past this many, further errors wait
 * for it to read (chat_drained) and are dropped meanwhile. Far above what
 * a reader's burst gets in one turn. */
#define ERRORS_UNREAD_MAX 256

typedef struct room {
    char *id;
    size_t id_len;
    chat_user *head, *tail;     /* members in the order they joined */
    size_t count;
    uint64_t last_id;           /* last message id given in the room */
} room;

/* What is left to send after a login, piece by piece as the connection
 * drains: the rest of a long user list, then the history. */
typedef struct replay {
    uint32_t *uids;             /* the user list's members at login; NULL: done */
    size_t n_uids, next_uid;
    bool history;               /* history still to send */
    bool started;               /* its bounds are set (after the login's turn) */
    bool sent_one;              /* a history message went out */
    bool always;                /* a resume: a history message even when empty */
    bool names;                 /* history_names */
    unsigned limit;
    uint64_t after;             /* the last id sent (or the window's start) */
    uint64_t upto;              /* the room's last id once the login was stored:
                                   later ones reach the client live */
} replay;

struct chat_user {
    void *conn;
    uint32_t uid;               /* 0 until logged in */
    char *name;                 /* HTML-escaped, as sent on the wire */
    size_t name_len;
    uint64_t ident;             /* the store's identity (0: none) */
    int64_t ident_used;         /* when the store last heard it was used (unix s) */
    room *room;
    chat_user *prev, *next;     /* room membership */
    bucket rate;                /* messages it may still send */
    replay rp;
    uint8_t key[CHAT_KEY_MAX];  /* who the client is, for per-client limits */
    uint8_t key_len;
    bool remote;                /* another server's (cluster mode): no conn here */
    bool kicked;                /* by an operator: heard no more */
    uint16_t errors_unread;     /* errors queued since it last drained */
    uint64_t since_ms;          /* logged in at (wall clock) */
};

/* One message for one connection, held until the turn ends. */
typedef struct delivery {
    void *conn;
    void *msg;
    bool stored;                /* a say: it goes only if the commit succeeds */
} delivery;

/* A say stored this turn: its sender hears of a failed commit. */
typedef struct turn_say {
    chat_user *from;
    room *room;
} turn_say;

/* Rooms a client key brought up in the current minute. */
typedef struct room_rate {
    uint64_t since_ms;
    unsigned count;
    uint8_t key_len;
    uint8_t key[CHAT_KEY_MAX];
} room_rate;

/* A growable array of n items of a given size. */
#define VEC(T) struct { T *v; size_t len, cap; }

struct chat {
    chat_limits limits;         /* auth_key points to the chat's own copy */
    chat_io io;
    store *store;
    dict rooms;                 /* id -> room */
    dict users;                 /* uid (4 bytes) -> logged-in user */
    uint32_t next_uid;
    sbuf out;                   /* reused for every outgoing message */
    sbuf tmp;
    sbuf item;                  /* one history item */
    /* this turn's output, released by chat_end_turn */
    VEC(delivery) outbox;
    VEC(void *) made;           /* the chat's reference on each message made */
    VEC(turn_say) says;
    VEC(chat_user *) starting;  /* logins whose history begins after the commit */
    VEC(chat_user *) draining;  /* connections to hear from once written */
    dict rates;                 /* client key -> room_rate */
    size_t rates_after_sweep;
    time_t time_sec;            /* cached formatted time */
    char time_str[20];
    chat_bus bus;               /* cluster mode; bus.say NULL: none */
};

static void release_made(chat *c);

void chat_limits_defaults(chat_limits *l)
{
    l->max_name = 32;
    l->max_content = 4096;
    l->rate = 50;
    l->burst = 100;
    l->history = 50;
    l->resume_cap = 1000;
    l->auth_key = NULL;
    l->auth_key_len = 0;
    l->chunk_bytes = DEFAULT_CHUNK_BYTES;
    l->rooms_per_minute = 30;
}

/* Makes room for one more item in a VEC; -1 when out of memory. */
static int vec_grow(void *vec, size_t size)
{
    VEC(char) *v = vec;
    if (v->len < v->cap) return 0;
    size_t cap = v->cap ? v->cap * 2 : 16;
    char *p = realloc(v->v, cap * size);
    if (!p) return -1;
    v->v = p;
    v->cap = cap;
    return 0;
}
#define VEC_PUSH(vec, item) \
    (vec_grow(&(vec), sizeof *(vec).v) < 0 ? -1 : ((vec).v[(vec).len++] = (item), 0))

chat *chat_new(const chat_limits *limits, const chat_io *io, uint32_t uid_seed, store *st)
{
    chat *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->limits = *limits;
    if (limits->auth_key) {
        uint8_t *key = malloc(limits->auth_key_len ? limits->auth_key_len : 1);
        if (!key) {
            free(c);
            return NULL;
        }
        memcpy(key, limits->auth_key, limits->auth_key_len);
        c->limits.auth_key = key;
    }
    if (!c->limits.chunk_bytes) c->limits.chunk_bytes = DEFAULT_CHUNK_BYTES;
    c->io = *io;
    c->store = st;
    dict_init(&c->rooms);
    dict_init(&c->users);
    dict_init(&c->rates);
    sbuf_init(&c->out);
    sbuf_init(&c->tmp);
    sbuf_init(&c->item);
    c->next_uid = uid_seed ? uid_seed : 1;
    c->time_sec = -1;
    return c;
}

static void room_free(room *r)
{
    free(r->id);
    free(r);
}

void chat_free(chat *c)
{
    if (!c) return;
    /* Whatever is still held has no one left to go to. */
    release_made(c);
    /* Other servers' users are the chat's own; local ones their conn's. */
    for (size_t i = 0; i < c->users.nslots; i++)
        for (dict_entry *e = c->users.slots[i]; e; e = e->next) {
            chat_user *u = e->value;
            if (!u->remote) continue;
            free(u->name);
            free(u);
        }
    for (size_t i = 0; i < c->rooms.nslots; i++)
        for (dict_entry *e = c->rooms.slots[i]; e; e = e->next) room_free(e->value);
    for (size_t i = 0; i < c->rates.nslots; i++)
        for (dict_entry *e = c->rates.slots[i]; e; e = e->next) free(e->value);
    dict_free(&c->rooms);
    dict_free(&c->users);
    dict_free(&c->rates);
    sbuf_free(&c->out);
    sbuf_free(&c->tmp);
    free((void *)c->limits.auth_key);
    sbuf_free(&c->item);
    free(c->outbox.v);
    free(c->made.v);
    free(c->says.v);
    free(c->starting.v);
    free(c->draining.v);
    free(c);
}

chat_user *chat_connect(chat *c, void *conn, const void *key, size_t key_len)
{
    chat_user *u = calloc(1, sizeof *u);
    if (!u) return NULL;
    u->conn = conn;
    bucket_init(&u->rate, c->limits.burst, 0);
    u->key_len = (uint8_t)(key_len < CHAT_KEY_MAX ? key_len : CHAT_KEY_MAX);
    if (u->key_len) memcpy(u->key, key, u->key_len);
    return u;
}

uint32_t chat_user_uid(const chat_user *u) { return u->uid; }
size_t chat_user_count(const chat *c) { return c->users.count; }
size_t chat_room_count(const chat *c) { return c->rooms.count; }

static const char *now_str(chat *c, uint64_t now_ms)
{
    time_t sec = (time_t)(now_ms / 1000);
    if (sec != c->time_sec) {
        struct tm tm;
        localtime_r(&sec, &tm);
        strftime(c->time_str, sizeof c->time_str, "%Y-%m-%d %H:%M:%S", &tm);
        c->time_sec = sec;
    }
    return c->time_str;
}

/* ---- delivering ------------------------------------------------------ */

/* A message of c->out; the chat's reference is dropped at the turn's end. */
static void *make_message(chat *c)
{
    if (c->out.oom) return NULL;
    void *m = c->io.message_new(c->io.ctx, c->out.p, c->out.len);
    if (m && VEC_PUSH(c->made, m) < 0) {
        c->io.message_release(c->io.ctx, m);
        return NULL;
    }
    return m;
}

/* Holds m for conn until the turn ends: a pointer per recipient. Out of
 * memory, a message that needs no commit goes at once, and a say is lost
 * for that recipient only (its history still has it). */
static void deliver(chat *c, void *conn, void *m, bool stored)
{
    if (VEC_PUSH(c->outbox, ((delivery){ conn, m, stored })) == 0) return;
    if (!stored) c->io.message_send(c->io.ctx, conn, m);
}

static void send_to(chat *c, chat_user *u)
{
    void *m = make_message(c);
    if (m) deliver(c, u->conn, m, false);
}

static void send_to_room_as(chat *c, room *r, bool stored)
{
    void *m = make_message(c);
    if (!m) return;
    for (chat_user *u = r->head; u; u = u->next)
        if (!u->remote) deliver(c, u->conn, m, stored);
}

static void send_to_room(chat *c, room *r)
{
    send_to_room_as(c, r, false);
}

/* Nothing more of u's user list or history will be sent. */
static void replay_stop(chat_user *u)
{
    free(u->rp.uids);
    memset(&u->rp, 0, sizeof u->rp);
}

/* After the current message to u, the chat wants to hear when u's
 * connection has written it (chat_drained). */
static void drain_then_continue(chat *c, chat_user *u)
{
    /* Out of memory the rest is dropped: a page resumes with last_id. */
    if (VEC_PUSH(c->draining, u) < 0) replay_stop(u);
}

/* Halfway to the cap the chat asks to hear when the client has read what
 * it was sent; a client that reads gets every error. */
static bool error_allowed(chat *c, chat_user *u)
{
    if (u->errors_unread >= ERRORS_UNREAD_MAX) return false;
    /* out of memory for the request, the count starts over: no notice
     * would ever lift the cap */
    if (++u->errors_unread == ERRORS_UNREAD_MAX / 2 && VEC_PUSH(c->draining, u) < 0)
        u->errors_unread = 0;
    return true;
}

static void send_error(chat *c, chat_user *u, const char *code, const char *message)
{
    if (!error_allowed(c, u)) return;
    sbuf *o = &c->out;
    sbuf_reset(o);
    sbuf_puts(o, "{\"type\":\"error\",\"code\":");
    sbuf_json_str(o, code, strlen(code));
    sbuf_puts(o, ",\"message\":");
    sbuf_json_str(o, message, strlen(message));
    sbuf_putc(o, '}');
    send_to(c, u);
}

/* ---- rooms and uids -------------------------------------------------- */

/* The room, brought up when it has no member. last_id: the room's last id
 * when the caller has read it already (NULL: read it here). */
static room *room_get(chat *c, const char *id, size_t len, const uint64_t *last_id)
{
    room *r = dict_get(&c->rooms, id, len);
    if (r) return r;
    r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->id = malloc(len + 1);
    if (!r->id) {
        free(r);
        return NULL;
    }
    memcpy(r->id, id, len);
    r->id[len] = '\0';
    r->id_len = len;
    /* Ids continue where the room left off, across restarts. */
    if (last_id) r->last_id = *last_id;
    else if (c->store && c->store->ops->last_id(c->store->impl, r->id, len, &r->last_id) < 0) {
        room_free(r);
        return NULL;
    }
    if (dict_put(&c->rooms, r->id, len, r) < 0) {
        room_free(r);
        return NULL;
    }
    return r;
}

/* Old windows go once the table has doubled since the last sweep, so it
 * holds about the keys of the last minute. */
static void sweep_rates(chat *c, uint64_t now_ms)
{
    if (c->rates.count < 2 * c->rates_after_sweep + 256) return;
    for (size_t i = 0; i < c->rates.nslots; i++) {
        dict_entry *next;
        for (dict_entry *e = c->rates.slots[i]; e; e = next) {
            next = e->next;
            room_rate *rt = e->value;
            if (now_ms - rt->since_ms < ROOM_RATE_WINDOW_MS) continue;
            dict_del(&c->rates, rt->key, rt->key_len);
            free(rt);
        }
    }
    c->rates_after_sweep = c->rates.count;
}


/* A room costs its table entry and, once someone speaks, rows on disk: a
 * client key brings up at most rooms_per_minute of them a minute. */
static bool may_create_room(chat *c, chat_user *u, uint64_t now_ms)
{
    unsigned limit = c->limits.rooms_per_minute;
    if (!limit) return true;
    sweep_rates(c, now_ms);
    room_rate *rt = dict_get(&c->rates, u->key, u->key_len);
    if (!rt) {
        rt = calloc(1, sizeof *rt);
        if (!rt) return false;
        rt->key_len = u->key_len;
        memcpy(rt->key, u->key, u->key_len);
        rt->since_ms = now_ms;
        if (dict_put(&c->rates, rt->key, rt->key_len, rt) < 0) {
            free(rt);
            return false;
        }
    }
    if (now_ms - rt->since_ms >= ROOM_RATE_WINDOW_MS) {
        rt->since_ms = now_ms;
        rt->count = 0;
    }
    if (rt->count >= limit) return false;
    rt->count++;
    return true;
}

static void room_leave(chat *c, chat_user *u)
{
    room *r = u->room;
    if (u->prev) u->prev->next = u->next; else r->head = u->next;
    if (u->next) u->next->prev = u->prev; else r->tail = u->prev;
    u->prev = u->next = NULL;
    u->room = NULL;
    if (--r->count == 0) {
        dict_del(&c->rooms, r->id, r->id_len);
        room_free(r);
    }
}

static void room_join(room *r, chat_user *u)
{
    u->room = r;
    u->prev = r->tail;
    u->next = NULL;
    if (r->tail) r->tail->next = u; else r->head = u;
    r->tail = u;
    r->count++;
}

static uint32_t new_uid(chat *c)
{
    for (;;) {
        uint32_t uid = c->next_uid++;
        if (uid == 0) continue;
        if (!dict_get(&c->users, &uid, sizeof uid)) return uid;
    }
}

/* ---- login ----------------------------------------------------------- */

/* Validates and escapes the name into c->tmp. Returns an error text or NULL. */
static const char *check_name_text(chat *c, const char *s, size_t n)
{
    s = utf8_trim(s, &n);
    if (n == 0) return "name is empty";
    if (utf8_has_control(s, n)) return "name holds control characters";
    if (utf8_count((const uint8_t *)s, n) > c->limits.max_name) return "name is too long";
    sbuf_reset(&c->tmp);
    html_escape(&c->tmp, s, n, false);
    return c->tmp.oom ? "out of memory" : NULL;
}

static const char *check_name(chat *c, json_t *v)
{
    if (!json_is_string(v)) return "name is required and must be a string";
    return check_name_text(c, json_string_value(v), json_string_length(v));
}

/* Room id as a string: a number n is the room "n". Returns length or -1. */
static int room_id_of(json_t *v, char *buf, size_t cap)
{
    if (!v) return snprintf(buf, cap, "%s", DEFAULT_ROOM);
    if (json_is_integer(v)) return snprintf(buf, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    if (json_is_real(v)) {
        /* One number, one room: 1e17 is 100000000000000000 and -0.0 is 0.
         * Whole numbers too long for a room id are refused by its length. */
        double d = json_real_value(v);
        if (d == 0) d = 0;
        if (d == floor(d)) return snprintf(buf, cap, "%.0f", d);
        return snprintf(buf, cap, "%.17g", d);
    }
    if (!json_is_string(v)) return -1;
    size_t n = json_string_length(v);
    if (n == 0 || n > MAX_ROOM_ID || n >= cap) return -1;
    memcpy(buf, json_string_value(v), n);
    return (int)n;
}

static void write_user(sbuf *o, const chat_user *u)
{
    sbuf_puts(o, "{\"uid\":");
    sbuf_u64(o, u->uid);
    sbuf_puts(o, ",\"name\":");
    sbuf_json_str(o, u->name, u->name_len);
    sbuf_putc(o, '}');
}

/* The closing of a piece that is not the last one. */
#define MORE_TAIL ",\"more\":true}"

/* The next piece of a long user list: the members at login still in the
 * room, as many as fit the budget, the new client last. */
static void send_user_list_piece(chat *c, chat_user *u, room *r)
{
    replay *rp = &u->rp;
    sbuf *o = &c->out;
    sbuf_reset(o);
    sbuf_puts(o, "{\"type\":\"user_list\",\"user_list\":[");
    size_t empty = o->len;
    for (; rp->next_uid < rp->n_uids; rp->next_uid++) {
        chat_user *m = dict_get(&c->users, &rp->uids[rp->next_uid], sizeof(uint32_t));
        if (!m || (m->room != r && m != u)) continue;   /* gone since: its logout came */
        size_t before = o->len;
        if (o->len > empty) sbuf_putc(o, ',');
        write_user(o, m);
        if (before > empty && o->len + sizeof MORE_TAIL > c->limits.chunk_bytes) {
            o->len = before;
            break;
        }
    }
    bool more = rp->next_uid < rp->n_uids;
    sbuf_puts(o, more ? "]" MORE_TAIL : "]}");
    send_to(c, u);
    if (!more) {
        free(rp->uids);
        rp->uids = NULL;
    }
    if (more || rp->history) drain_then_continue(c, u);
}

/* Everyone in the room, u last: one message, or pieces when it would pass
 * the budget (a room of thousands). */
static void send_user_list(chat *c, chat_user *u, room *r)
{
    sbuf *o = &c->out;
    sbuf_reset(o);
    sbuf_puts(o, "{\"type\":\"user_list\",\"user_list\":[");
    for (chat_user *m = r->head; m; m = m->next) {
        write_user(o, m);
        sbuf_putc(o, ',');
    }
    write_user(o, u);
    sbuf_puts(o, "]}");
    if (o->len <= c->limits.chunk_bytes) {
        send_to(c, u);
        return;
    }
    replay *rp = &u->rp;
    rp->uids = malloc((r->count + 1) * sizeof *rp->uids);
    if (!rp->uids) {
        send_error(c, u, "internal", "out of memory");
        return;
    }
    for (chat_user *m = r->head; m; m = m->next) rp->uids[rp->n_uids++] = m->uid;
    rp->uids[rp->n_uids++] = u->uid;
    send_user_list_piece(c, u, r);
}

/* A say as the contract shapes it, from its raw content: live and in
 * history alike, so a replayed say is the very text first sent. */
static void write_say_to(chat *c, sbuf *o, uint32_t from, uint32_t to, const char *s, size_t n,
                         const char *time, uint64_t id)
{
    sbuf_puts(o, "{\"type\":\"say\",\"from_uid\":");
    sbuf_u64(o, from);
    if (to) {
        sbuf_puts(o, ",\"to_uid\":");
        sbuf_u64(o, to);
    } else {
        sbuf_puts(o, ",\"to_uid\":\"all\"");
    }
    sbuf_puts(o, ",\"content\":");
    sbuf_reset(&c->tmp);
    html_escape(&c->tmp, s, n, true);
    if (c->tmp.oom) o->oom = 1;
    else sbuf_json_str(o, c->tmp.p, c->tmp.len);
    sbuf_puts(o, ",\"time\":\"");
    sbuf_puts(o, time);
    sbuf_putc(o, '"');
    if (id) {
        sbuf_puts(o, ",\"id\":");
        sbuf_u64(o, id);
    }
    sbuf_putc(o, '}');
}

/* One history piece being filled. */
typedef struct history_piece {
    chat *c;
    chat_user *u;
    unsigned items;
    bool more;                  /* stopped by the budget */
} history_piece;

/* A stored say, rebuilt; a client that asked for names gets the parties'
 * names added after its last key (uids change with every connection, so a
 * page could not name who said what before it came). */
static void write_history_item(chat *c, sbuf *o, const store_msg *m, bool names)
{
    char time[20];
    time_t sec = (time_t)m->ts;
    struct tm tm;
    localtime_r(&sec, &tm);
    strftime(time, sizeof time, "%Y-%m-%d %H:%M:%S", &tm);
    write_say_to(c, o, m->from_uid, m->to_uid, m->content, m->content_len, time, m->id);
    if (!names || !m->from_name) return;
    o->len--;                   /* the closing brace */
    sbuf_puts(o, ",\"from_name\":");
    sbuf_json_str(o, m->from_name, m->from_name_len);
    if (m->to_name) {
        sbuf_puts(o, ",\"to_name\":");
        sbuf_json_str(o, m->to_name, m->to_name_len);
    }
    sbuf_putc(o, '}');
}

static int add_history_item(void *arg, const store_msg *m)
{
    history_piece *h = arg;
    chat *c = h->c;
    replay *rp = &h->u->rp;
    if (m->id > rp->upto) return 1;     /* later ones reached the client live */
    sbuf *item = &c->item, *o = &c->out;
    sbuf_reset(item);
    write_history_item(c, item, m, rp->names);
    if (item->oom) {
        o->oom = 1;
        return 1;
    }
    /* A say alone is always smaller than the budget allows: the first
     * item always goes, so every piece makes progress. */
    if (h->items && o->len + 1 + item->len + sizeof MORE_TAIL + 1 > c->limits.chunk_bytes) {
        h->more = true;
        return 1;
    }
    if (h->items) sbuf_putc(o, ',');
    sbuf_put(o, item->p, item->len);
    h->items++;
    rp->after = m->id;
    return 0;
}

/* The next piece of u's history: messages in increasing id order, as many
 * as fit the budget; all but the last end with "more":true. */
static void send_history_piece(chat *c, chat_user *u)
{
    replay *rp = &u->rp;
    room *r = u->room;
    sbuf *o = &c->out;
    sbuf_reset(o);
    sbuf_puts(o, "{\"type\":\"history\",\"messages\":[");
    history_piece h = { c, u, 0, false };
    if (c->store->ops->range(c->store->impl, r->id, r->id_len, rp->after,
                             u->ident, add_history_item, &h) < 0 || o->oom) {
        replay_stop(u);
        send_error(c, u, "unavailable", "history is unavailable");
        return;
    }
    if (!h.more) rp->history = false;
    if (h.items || rp->sent_one || rp->always) {
        sbuf_puts(o, h.more ? "]" MORE_TAIL : "]}");
        send_to(c, u);
        rp->sent_one = true;
    }
    if (h.more) drain_then_continue(c, u);
}

/* After the login's turn is stored: the history ends at the room's last id
 * and starts where its newest `limit` messages do. */
static void start_history(chat *c, chat_user *u)
{
    replay *rp = &u->rp;
    room *r = u->room;
    rp->upto = r->last_id;
    rp->started = true;
    if (c->store->ops->window(c->store->impl, r->id, r->id_len, rp->after, rp->limit,
                              u->ident, &rp->after) < 0) {
        replay_stop(u);
        send_error(c, u, "unavailable", "history is unavailable");
        return;
    }
    if (!rp->uids) send_history_piece(c, u);
}

/* The room's recent messages, or all those after last_id (up to a cap), for
 * a client that logs in: sent after the turn is stored (so that nothing of
 * it is missed or shown unstored), when there is something to say, or
 * always when the client asked with last_id. */
static void queue_history(chat *c, chat_user *u, json_t *last_id, bool names)
{
    if (!c->store) return;
    bool resume = json_is_integer(last_id) && json_integer_value(last_id) >= 0;
    unsigned limit = resume ? c->limits.resume_cap : c->limits.history;
    if (limit == 0) return;
    replay *rp = &u->rp;
    rp->after = resume ? (uint64_t)json_integer_value(last_id) : 0;
    rp->limit = limit;
    rp->always = resume;
    rp->names = names;
    if (VEC_PUSH(c->starting, u) < 0) {
        send_error(c, u, "internal", "out of memory");
        return;
    }
    rp->history = true;
}

/* ---- identity -------------------------------------------------------- */

/* Who a login is: the signed claims under --auth-key, the store's identity,
 * and the token the session message gives back. */
typedef struct login_identity {
    jwt_claims claims;
    bool signed_in;             /* claims hold a payload to release */
    uint64_t id;
    const char *token;          /* for the session message; NULL: none */
    size_t token_len;
    char new_token[IDENTITY_TOKEN_LEN + 1];
} login_identity;

/* Under --auth-key: the login's JWT, verified. Returns an error text or NULL. */
static const char *check_signed(chat *c, json_t *token, uint64_t now_ms, login_identity *li)
{
    if (!json_is_string(token)) return "this server needs a signed token in the login's \"token\"";
    const char *err = jwt_verify(c->limits.auth_key, c->limits.auth_key_len, json_string_value(token),
                                 json_string_length(token), (int64_t)(now_ms / 1000), &li->claims);
    if (err) return err;
    li->signed_in = true;
    return NULL;
}

/* The rooms claim, when present, lists every room the user may enter. */
static bool room_allowed(const jwt_claims *cl, const char *id, size_t len)
{
    if (!cl->rooms) return true;
    size_t i;
    json_t *v;
    json_array_foreach(cl->rooms, i, v) {
        char buf[MAX_ROOM_ID + 1];
        int n = room_id_of(v, buf, sizeof buf);
        if (n > 0 && (size_t)n == len && memcmp(buf, id, len) == 0) return true;
    }
    return false;
}

/* Continues or starts the login's identity in the store (none without a
 * store). A malformed, oversized or unknown token quietly gets a new one. */
static int resolve_identity(chat *c, json_t *token, uint64_t now_ms, login_identity *li)
{
    if (!c->store) return 0;
    int64_t now = (int64_t)(now_ms / 1000);
    if (li->signed_in) {
        /* the session hands back the JWT the client presented */
        li->token = json_string_value(token);
        li->token_len = json_string_length(token);
        return identity_of_subject(c->store, li->claims.sub, li->claims.sub_len, now, &li->id);
    }
    const char *t = json_is_string(token) ? json_string_value(token) : NULL;
    size_t n = t ? json_string_length(token) : 0;
    if (identity_of_token(c->store, t, n, now, &li->id, li->new_token) < 0) return -1;
    li->token = li->new_token[0] ? li->new_token : t;
    li->token_len = li->new_token[0] ? IDENTITY_TOKEN_LEN : n;
    return 0;
}

/* The start of {"type":<type>,"uid":<uid>,<key>:<string> into c->out
 * (open: the caller adds the rest). */
static void write_uid_message(chat *c, const char *type, uint32_t uid, const char *key,
                              const char *s, size_t n)
{
    sbuf *o = &c->out;
    sbuf_reset(o);
    sbuf_printf(o, "{\"type\":\"%s\",\"uid\":", type);
    sbuf_u64(o, uid);
    sbuf_printf(o, ",\"%s\":", key);
    sbuf_json_str(o, s, n);
}

static void send_session(chat *c, chat_user *u, const login_identity *li)
{
    if (!li->token) return;
    write_uid_message(c, "session", u->uid, "token", li->token, li->token_len);
    sbuf_putc(&c->out, '}');
    send_to(c, u);
}

/* The login broadcast: to everyone in the room, u included. */
static void send_login(chat *c, room *r, const chat_user *u, uint64_t now_ms)
{
    sbuf *o = &c->out;
    write_uid_message(c, "login", u->uid, "name", u->name, u->name_len);
    sbuf_puts(o, ",\"time\":\"");
    sbuf_puts(o, now_str(c, now_ms));
    sbuf_puts(o, "\"}");
    send_to_room(c, r);
}

/* Cluster mode: the login is announced on the bus under a uid no other
 * server gives; a uid taken elsewhere is replaced by one further on. */
static int announce(chat *c, chat_user *u, const char *room_id, size_t room_len)
{
    for (int tries = 0; tries < 16; tries++) {
        int rc = c->bus.login(c->bus.ctx, room_id, room_len, u->uid, u->name, u->name_len, u->ident);
        if (rc <= 0) {
            if (rc < 0) u->uid = 0;
            return rc;
        }
        c->next_uid += u->uid * 2654435761u;
        u->uid = new_uid(c);
    }
    return -1;
}

/* The login's checks passed (its escaped name is in c->tmp): into the room,
 * then the contract's sequence: user_list, login broadcast, session, history. */
static void join(chat *c, chat_user *u, json_t *msg, const char *id, size_t id_len,
                 const login_identity *li, uint64_t now_ms, const uint64_t *last_id)
{
    bool bus = c->bus.say != NULL;
    room *r = bus ? NULL : room_get(c, id, id_len, last_id);
    char *name = malloc(c->tmp.len + 1);
    if ((!bus && !r) || !name) {
        free(name);
        if (r && r->count == 0) {
            dict_del(&c->rooms, r->id, r->id_len);
            room_free(r);
        }
        send_error(c, u, "internal", "out of memory");
        return;
    }
    memcpy(name, c->tmp.p, c->tmp.len + 1);
    u->name = name;
    u->name_len = c->tmp.len;
    u->ident = li->id;
    u->ident_used = (int64_t)(now_ms / 1000);
    u->uid = new_uid(c);
    /* Cluster mode: announcing brings in what the bus published before
     * (other servers' logins, says), so the room is looked up after it,
     * its last id read again when it has to come up. */
    if (bus && (announce(c, u, id, id_len) < 0 || !(r = room_get(c, id, id_len, NULL)))) {
        if (u->uid && r == NULL && c->bus.say) c->bus.logout(c->bus.ctx, id, id_len, u->uid);
        u->uid = 0;
        free(u->name);
        u->name = NULL;
        send_error(c, u, "unavailable", "the chat's shared store is unreachable; try again");
        return;
    }
    u->since_ms = now_ms;
    if (dict_put(&c->users, &u->uid, sizeof u->uid, u) < 0) {
        if (bus) c->bus.logout(c->bus.ctx, r->id, r->id_len, u->uid);
        if (r->count == 0) {
            dict_del(&c->rooms, r->id, r->id_len);
            room_free(r);
        }
        u->uid = 0;
        send_error(c, u, "internal", "out of memory");
        return;
    }
    send_user_list(c, u, r);
    room_join(r, u);
    send_login(c, r, u, now_ms);
    send_session(c, u, li);
    queue_history(c, u, json_object_get(msg, "last_id"),
                  json_is_true(json_object_get(msg, "history_names")));
}

/* Checks a login in the order a client can act on: token (under
 * --auth-key), name, room, then the identity, then joins. */
static void login_checked(chat *c, chat_user *u, json_t *msg, uint64_t now_ms, login_identity *li)
{
    json_t *token = json_object_get(msg, "token");
    const char *err = c->limits.auth_key ? check_signed(c, token, now_ms, li) : NULL;
    if (err) {
        send_error(c, u, "bad_token", err);
        return;
    }
    if (li->signed_in)
        err = li->claims.name ? check_name(c, li->claims.name)
                              : check_name_text(c, li->claims.sub, li->claims.sub_len);
    else
        err = check_name(c, json_object_get(msg, "name"));
    if (err) {
        send_error(c, u, "bad_name", err);
        return;
    }
    if (c->io.name_banned && c->io.name_banned(c->io.ctx, c->tmp.p, c->tmp.len)) {
        send_error(c, u, "banned", "this name is banned from this server");
        return;
    }
    char id[MAX_ROOM_ID + 1];
    int id_len = room_id_of(json_object_get(msg, "room_id"), id, sizeof id);
    if (id_len <= 0 || id_len > MAX_ROOM_ID) {
        send_error(c, u, "bad_json", "room_id must be a number or a string of 1 to 64 bytes");
        return;
    }
    if (li->signed_in && !room_allowed(&li->claims, id, (size_t)id_len)) {
        send_error(c, u, "bad_token", "the token does not allow this room");
        return;
    }
    /* A room with no member comes up with this login: new unless it has a
     * history (its last member may come back as often as they like). */
    bool up = dict_get(&c->rooms, id, (size_t)id_len) != NULL;
    uint64_t last_id = 0;
    if (!up && c->store && c->store->ops->last_id(c->store->impl, id, (size_t)id_len, &last_id) < 0) {
        send_error(c, u, "unavailable", "the room's history is unavailable; try again");
        return;
    }
    if (!up && last_id == 0 && !may_create_room(c, u, now_ms)) {
        send_error(c, u, "too_many_rooms", "too many new rooms from your address; try again in a minute");
        return;
    }
    if (resolve_identity(c, token, now_ms, li) < 0) {
        send_error(c, u, "unavailable", "your identity could not be stored; try again");
        return;
    }
    join(c, u, msg, id, (size_t)id_len, li, now_ms, up ? NULL : &last_id);
}

static void do_login(chat *c, chat_user *u, json_t *msg, uint64_t now_ms)
{
    if (u->uid) {
        send_error(c, u, "already_logged_in", "this connection is already logged in");
        return;
    }
    login_identity li;
    memset(&li, 0, sizeof li);
    login_checked(c, u, msg, now_ms, &li);
    if (li.signed_in) jwt_claims_free(&li.claims);
}

/* ---- say ------------------------------------------------------------- */

/* Target of a say: 0 for everyone, a uid, or -1 for a value of a wrong type
 * and -2 for one that can be no uid. */
static int64_t target_of(json_t *v)
{
    if (!v) return 0;
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        if (n == 3 && memcmp(s, "all", 3) == 0) return 0;
        if (n == 0 || n > 10) return -2;
        int64_t uid = 0;
        for (size_t i = 0; i < n; i++) {
            if (s[i] < '0' || s[i] > '9') return -2;
            uid = uid * 10 + (s[i] - '0');
        }
        return uid > 0 && uid <= UINT32_MAX ? uid : -2;
    }
    if (json_is_integer(v)) {
        json_int_t uid = json_integer_value(v);
        return uid > 0 && uid <= UINT32_MAX ? uid : -2;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        return d == floor(d) && d > 0 && d <= UINT32_MAX ? (int64_t)d : -2;
    }
    return -1;
}

static bool rate_allows(chat *c, chat_user *u, uint64_t now_ms)
{
    return bucket_take(&u->rate, c->limits.rate, c->limits.burst, now_ms);
}

static void write_say(chat *c, chat_user *from, int64_t to, const char *s, size_t n,
                      uint64_t now_ms, uint64_t id)
{
    sbuf_reset(&c->out);
    write_say_to(c, &c->out, from->uid, (uint32_t)to, s, n, now_str(c, now_ms), id);
}

/* The retention pass forgets identities unused for the history's age that
 * no kept message names; a connection can outlive that age, so the store
 * hears of use at logout and, at most hourly, on private talk. */
#define IDENTITY_TOUCH_EVERY 3600

static void touch_identity(chat *c, chat_user *u, int64_t now, bool force)
{
    if (!c->store || !u->ident || (!force && now - u->ident_used < IDENTITY_TOUCH_EVERY)) return;
    if (c->store->ops->identity_touch(c->store->impl, u->ident, now) == 0) u->ident_used = now;
}

/* Gives the message its id and stores its raw content; the turn's end
 * commits before anyone receives it, so no client ever holds a message
 * that the history could lose. */
static int store_say(chat *c, chat_user *u, chat_user *target, int64_t to,
                     const char *s, size_t n, uint64_t now_ms)
{
    room *r = u->room;
    if (!c->store) {
        write_say(c, u, to, s, n, now_ms, 0);
        return 0;
    }
    /* Booked first: a say its sender could not be told about is not stored. */
    if (VEC_PUSH(c->says, ((turn_say){ u, r })) < 0) return -1;
    uint64_t id = r->last_id + 1;
    write_say(c, u, to, s, n, now_ms, id);
    store_msg m = { id, (int64_t)(now_ms / 1000), u->uid, (uint32_t)to,
                    u->name, u->name_len, target ? target->name : NULL,
                    target ? target->name_len : 0, s, n,
                    target ? u->ident : 0, target ? target->ident : 0 };
    if (c->out.oom || c->store->ops->append(c->store->impl, r->id, r->id_len, &m) < 0) {
        c->says.len--;
        return -1;
    }
    r->last_id = id;
    if (target) {
        touch_identity(c, u, m.ts, false);
        touch_identity(c, target, m.ts, false);
    }
    return 0;
}

/* Cluster mode: the bus gives the say its id, stores and publishes it;
 * it reaches everyone, its sender included, through chat_bus_say. */
static void bus_say(chat *c, chat_user *u, chat_user *target, int64_t to, const char *s,
                    size_t n, uint64_t now_ms)
{
    room *r = u->room;
    store_msg m = { 0, (int64_t)(now_ms / 1000), u->uid, (uint32_t)to,
                    u->name, u->name_len, target ? target->name : NULL,
                    target ? target->name_len : 0, s, n,
                    target ? u->ident : 0, target ? target->ident : 0 };
    if (c->bus.say(c->bus.ctx, r->id, r->id_len, &m) < 0) {
        send_error(c, u, "unavailable", "the message could not be stored; it was not delivered");
        return;
    }
    if (target) {
        touch_identity(c, u, m.ts, false);
        if (!target->remote) touch_identity(c, target, m.ts, false);
    }
}

static void do_say(chat *c, chat_user *u, json_t *msg, uint64_t now_ms)
{
    if (!u->uid) {
        send_error(c, u, "not_logged_in", "log in before you say anything");
        return;
    }
    json_t *content = json_object_get(msg, "content");
    if (!json_is_string(content)) {
        send_error(c, u, "bad_content", "content is required and must be a string");
        return;
    }
    const char *s = json_string_value(content);
    size_t n = json_string_length(content);
    size_t cps = utf8_count((const uint8_t *)s, n);
    if (cps == 0 || cps > c->limits.max_content) {
        send_error(c, u, "bad_content", cps ? "content is too long" : "content is empty");
        return;
    }
    int64_t to = target_of(json_object_get(msg, "to_uid"));
    if (to == -1) {
        send_error(c, u, "bad_json", "to_uid must be \"all\" or a uid");
        return;
    }
    chat_user *target = NULL;
    if (to != 0) {
        uint32_t uid = (uint32_t)to;
        target = to > 0 ? dict_get(&c->users, &uid, sizeof uid) : NULL;
        if (!target || target->room != u->room) {
            send_error(c, u, "no_such_user", "no user with that uid in your room");
            return;
        }
    }
    if (c->bus.say) {
        bus_say(c, u, target, to, s, n, now_ms);
        return;
    }
    if (store_say(c, u, target, to, s, n, now_ms) < 0) {
        send_error(c, u, "unavailable", "the message could not be stored; it was not delivered");
        return;
    }
    bool stored = c->store != NULL;
    if (!target) {
        send_to_room_as(c, u->room, stored);
        return;
    }
    void *m = make_message(c);
    if (!m) return;
    deliver(c, target->conn, m, stored);
    if (target != u) deliver(c, u->conn, m, stored);
}

/* ---- dispatch -------------------------------------------------------- */

/* The message's "type" when it is a string without NUL, else NULL. */
static const char *type_of(json_t *msg)
{
    json_t *type = json_is_object(msg) ? json_object_get(msg, "type") : NULL;
    return json_is_string(type) && strlen(json_string_value(type)) == json_string_length(type)
               ? json_string_value(type) : NULL;
}

static bool is_heartbeat(const char *type)
{
    return type && strcmp(type, "pong") == 0;
}

bool chat_is_heartbeat(const char *data, size_t n)
{
    json_t *msg = json_loadb(data, n, JSON_ALLOW_NUL, NULL);
    bool yes = is_heartbeat(type_of(msg));
    json_decref(msg);
    return yes;
}

void chat_text(chat *c, chat_user *u, const char *data, size_t n, uint64_t now_ms)
{
    if (u->kicked) return;
    /* Out of tokens, only a short message can be the free heartbeat: a
     * longer one is refused before any parsing. */
    if (n > CHAT_FREE_MAX && !bucket_peek(&u->rate, c->limits.rate, c->limits.burst, now_ms)) {
        chat_rate_limited(c, u);
        return;
    }
    json_error_t jerr;
    /* NUL is allowed through so that a "\u0000" in a name is reported as
     * a bad name, not as bad JSON; strings are handled with their length. */
    json_t *msg = json_loadb(data, n, JSON_ALLOW_NUL, &jerr);
    const char *t = type_of(msg);
    if (is_heartbeat(t)) {
        /* heartbeat answer of the original clients: nothing to do, and free */
    } else if (!rate_allows(c, u, now_ms)) {
        chat_rate_limited(c, u);
    } else if (!json_is_object(msg)) {
        send_error(c, u, "bad_json", msg ? "a message must be a JSON object" : "malformed JSON");
    } else if (!t) {
        send_error(c, u, "bad_json", "a message needs a string \"type\"");
    } else if (strcmp(t, "say") == 0) {
        do_say(c, u, msg, now_ms);
    } else if (strcmp(t, "login") == 0) {
        do_login(c, u, msg, now_ms);
    } else {
        send_error(c, u, "unknown_type", "unknown message type");
    }
    json_decref(msg);
}

void chat_rate_limited(chat *c, chat_user *u)
{
    send_error(c, u, "rate_limited", "too many messages; slow down");
}

void chat_binary(chat *c, chat_user *u)
{
    send_error(c, u, "bad_json", "binary messages are not part of the protocol");
}

static void send_logout(chat *c, room *r, uint32_t uid, uint64_t now_ms)
{
    sbuf *o = &c->out;
    sbuf_reset(o);
    sbuf_puts(o, "{\"type\":\"logout\",\"uid\":");
    sbuf_u64(o, uid);
    sbuf_puts(o, ",\"time\":\"");
    sbuf_puts(o, now_str(c, now_ms));
    sbuf_puts(o, "\"}");
    send_to_room(c, r);
}

void chat_disconnect(chat *c, chat_user *u, uint64_t now_ms, int quiet)
{
    if (!u) return;
    /* What the turn holds may name u or its room: it goes out first. */
    if (chat_turn_pending(c)) chat_end_turn(c);
    if (u->uid) {
        room *r = u->room;
        bool others = r->count > 1;     /* else room_leave frees the room */
        dict_del(&c->users, &u->uid, sizeof u->uid);
        if (c->bus.say) c->bus.logout(c->bus.ctx, r->id, r->id_len, u->uid);
        room_leave(c, u);
        touch_identity(c, u, (int64_t)(now_ms / 1000), true);
        if (!quiet && others) send_logout(c, r, u->uid, now_ms);
    }
    replay_stop(u);
    free(u->name);
    free(u);
}

/* ---- the end of a turn ------------------------------------------------- */

int chat_turn_pending(const chat *c)
{
    return c->outbox.len || c->says.len || c->starting.len || c->draining.len;
}

/* The commit failed: the rooms' ids go back to what the store holds, so
 * the lost ones (never shown to anyone) are given again and no id a
 * client saw ever is. */
static void reload_ids(chat *c)
{
    for (size_t i = 0; i < c->says.len; i++) {
        room *r = c->says.v[i].room;
        uint64_t id;
        if (c->store->ops->last_id(c->store->impl, r->id, r->id_len, &id) == 0) r->last_id = id;
    }
}

static void hand_over(chat *c, bool lost)
{
    for (size_t i = 0; i < c->outbox.len; i++) {
        delivery *d = &c->outbox.v[i];
        if (!(lost && d->stored)) c->io.message_send(c->io.ctx, d->conn, d->msg);
    }
    c->outbox.len = 0;
}

static void release_made(chat *c)
{
    for (size_t i = 0; i < c->made.len; i++) c->io.message_release(c->io.ctx, c->made.v[i]);
    c->made.len = 0;
}

/* Each piece asked for a notice once written; without a way to get one
 * (tests), the next piece goes at once. */
static void ask_drains(chat *c)
{
    while (c->draining.len) {
        if (c->io.want_drain) {
            for (size_t i = 0; i < c->draining.len; i++)
                c->io.want_drain(c->io.ctx, c->draining.v[i]->conn);
            c->draining.len = 0;
            return;
        }
        chat_user *u = c->draining.v[--c->draining.len];
        chat_drained(c, u);
        hand_over(c, false);
    }
}

size_t chat_end_turn(chat *c)
{
    bool lost = c->store && c->store->ops->commit(c->store->impl) < 0;
    size_t refused = lost ? c->says.len : 0;
    if (lost) reload_ids(c);
    for (size_t i = 0; i < c->starting.len; i++) start_history(c, c->starting.v[i]);
    c->starting.len = 0;
    hand_over(c, lost);
    if (lost)
        for (size_t i = 0; i < c->says.len; i++)
            send_error(c, c->says.v[i].from, "unavailable",
                       "the message could not be stored; it was not delivered");
    c->says.len = 0;
    hand_over(c, false);
    ask_drains(c);
    release_made(c);
    return refused;
}

void chat_drained(chat *c, chat_user *u)
{
    replay *rp = &u->rp;
    u->errors_unread = 0;
    if (!u->room) return;
    if (rp->uids) send_user_list_piece(c, u, u->room);
    else if (rp->history && rp->started) send_history_piece(c, u);
}

/* ---- cluster mode: what the bus brings ---------------------------------- */

void chat_set_bus(chat *c, const chat_bus *bus)
{
    c->bus = *bus;
}

void chat_bus_login(chat *c, const char *room_id, size_t room_len, uint32_t uid,
                    const char *name, size_t name_len, uint64_t ident, uint64_t now_ms)
{
    if (!uid || dict_get(&c->users, &uid, sizeof uid) || room_len > MAX_ROOM_ID) return;
    room *r = room_get(c, room_id, room_len, NULL);
    if (!r) return;
    chat_user *u = calloc(1, sizeof *u);
    char *copy = malloc(name_len + 1);
    if (u) u->uid = uid;
    if (!u || !copy || dict_put(&c->users, &u->uid, sizeof u->uid, u) < 0) {
        free(u);
        free(copy);
        if (r->count == 0) {
            dict_del(&c->rooms, r->id, r->id_len);
            room_free(r);
        }
        return;
    }
    memcpy(copy, name, name_len);
    copy[name_len] = '\0';
    u->remote = true;
    u->name = copy;
    u->name_len = name_len;
    u->ident = ident;
    room_join(r, u);
    send_login(c, r, u, now_ms);
}

void chat_bus_logout(chat *c, uint32_t uid, uint64_t now_ms)
{
    chat_user *u = dict_get(&c->users, &uid, sizeof uid);
    if (!u || !u->remote) return;
    room *r = u->room;
    bool others = r->count > 1;
    dict_del(&c->users, &u->uid, sizeof u->uid);
    room_leave(c, u);
    if (others) send_logout(c, r, uid, now_ms);
    free(u->name);
    free(u);
}

/* A local member of r with this uid, or NULL. */
static chat_user *local_member(chat *c, room *r, uint32_t uid)
{
    chat_user *u = uid ? dict_get(&c->users, &uid, sizeof uid) : NULL;
    return u && !u->remote && u->room == r ? u : NULL;
}

void chat_bus_say(chat *c, const char *room_id, size_t room_len, const store_msg *m)
{
    room *r = dict_get(&c->rooms, room_id, room_len);
    if (!r || m->id <= r->last_id) return;
    r->last_id = m->id;
    char time[20];
    time_t sec = (time_t)m->ts;
    struct tm tm;
    localtime_r(&sec, &tm);
    strftime(time, sizeof time, "%Y-%m-%d %H:%M:%S", &tm);
    sbuf_reset(&c->out);
    write_say_to(c, &c->out, m->from_uid, m->to_uid, m->content, m->content_len, time, m->id);
    if (!m->to_uid) {
        send_to_room_as(c, r, false);
        return;
    }
    chat_user *from = local_member(c, r, m->from_uid), *to = local_member(c, r, m->to_uid);
    if (!from && !to) return;
    void *msg = make_message(c);
    if (!msg) return;
    if (to) deliver(c, to->conn, msg, false);
    if (from && from != to) deliver(c, from->conn, msg, false);
}

void chat_say_refused(chat *c, uint32_t uid)
{
    chat_user *u = dict_get(&c->users, &uid, sizeof uid);
    if (u && !u->remote)
        send_error(c, u, "unavailable", "the message could not be stored; it was not delivered");
}

int chat_room_last_id(const chat *c, const char *room_id, size_t room_len, uint64_t *out)
{
    room *r = dict_get(&c->rooms, room_id, room_len);
    if (!r) return -1;
    *out = r->last_id;
    return 0;
}

void chat_each_user(const chat *c, void (*fn)(void *arg, const chat_user_info *u), void *arg)
{
    for (size_t i = 0; i < c->users.nslots; i++)
        for (dict_entry *e = c->users.slots[i]; e; e = e->next) {
            const chat_user *u = e->value;
            chat_user_info info = { u->room->id, u->room->id_len, u->uid, u->name,
                                    u->name_len, u->ident, u->remote };
            fn(arg, &info);
        }
}

/* ---- the operator's controls ------------------------------------------ */

/* Calls each(value) for the table's entries [offset, offset + limit), in
 * the table's order. */
static void dict_page(const dict *d, size_t offset, size_t limit, void (*each)(void *, void *), void *arg)
{
    size_t i = 0;
    for (size_t s = 0; s < d->nslots && i < offset + limit; s++)
        for (dict_entry *e = d->slots[s]; e && i < offset + limit; e = e->next, i++)
            if (i >= offset) each(arg, e->value);
}

typedef struct admin_page {
    sbuf *o;
    bool first;
    chat_conn_addr_fn addr;
} admin_page;

static void write_room_entry(void *arg, void *v)
{
    admin_page *p = arg;
    room *r = v;
    sbuf_puts(p->o, p->first ? "{\"id\":" : ",{\"id\":");
    p->first = false;
    sbuf_json_str(p->o, r->id, r->id_len);
    sbuf_printf(p->o, ",\"members\":%zu,\"last_id\":", r->count);
    sbuf_u64(p->o, r->last_id);
    sbuf_putc(p->o, '}');
}

void chat_admin_rooms(chat *c, sbuf *o, size_t offset, size_t limit)
{
    admin_page p = { o, true, NULL };
    sbuf_putc(o, '[');
    dict_page(&c->rooms, offset, limit, write_room_entry, &p);
    sbuf_putc(o, ']');
}

static void write_user_entry(void *arg, void *v)
{
    admin_page *p = arg;
    chat_user *u = v;
    const char *addr = p->addr && u->conn ? p->addr(u->conn) : NULL;
    sbuf_puts(p->o, p->first ? "{\"uid\":" : ",{\"uid\":");
    p->first = false;
    sbuf_u64(p->o, u->uid);
    sbuf_puts(p->o, ",\"name\":");
    sbuf_json_str(p->o, u->name, u->name_len);
    sbuf_puts(p->o, ",\"room\":");
    sbuf_json_str(p->o, u->room->id, u->room->id_len);
    sbuf_puts(p->o, ",\"address\":");
    sbuf_json_str(p->o, addr ? addr : "-", addr ? strlen(addr) : 1);
    sbuf_puts(p->o, ",\"since\":");
    sbuf_u64(p->o, u->since_ms);
    sbuf_putc(p->o, '}');
}

void chat_admin_users(chat *c, sbuf *o, size_t offset, size_t limit, chat_conn_addr_fn addr)
{
    admin_page p = { o, true, addr };
    sbuf_putc(o, '[');
    dict_page(&c->users, offset, limit, write_user_entry, &p);
    sbuf_putc(o, ']');
}

void *chat_admin_kick(chat *c, uint32_t uid, const char *reason, size_t n)
{
    chat_user *u = uid ? dict_get(&c->users, &uid, sizeof uid) : NULL;
    if (!u || u->kicked || !u->conn) return NULL;   /* no conn: not on this server */
    sbuf *o = &c->out;
    sbuf_reset(o);
    sbuf_puts(o, "{\"type\":\"error\",\"code\":\"kicked\",\"message\":");
    sbuf_json_str(o, reason, n);
    sbuf_putc(o, '}');
    send_to(c, u);
    u->kicked = true;
    replay_stop(u);
    return u->conn;
}

int chat_admin_delete(chat *c, const char *id, size_t id_len, uint64_t msg_id)
{
    if (!c->store || !c->store->ops->remove) return -1;
    /* The turn's says are committed (or refused) first, so that the delete
     * commits alone and is announced only once it is durable. */
    if (chat_turn_pending(c)) chat_end_turn(c);
    int rc = c->store->ops->remove(c->store->impl, id, id_len, msg_id);
    if (rc > 0 && c->store->ops->commit(c->store->impl) < 0) rc = -1;
    room *r = rc > 0 ? dict_get(&c->rooms, id, id_len) : NULL;
    if (!r) return rc;
    sbuf *o = &c->out;
    sbuf_reset(o);
    sbuf_puts(o, "{\"type\":\"delete\",\"id\":");
    sbuf_u64(o, msg_id);
    sbuf_putc(o, '}');
    send_to_room(c, r);
    return rc;
}
