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

typedef struct room {
    char *id;
    size_t id_len;
    chat_user *head, *tail;     /* members in the order they joined */
    size_t count;
    uint64_t last_id;           /* last message id given in the room */
} room;

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
};

struct chat {
    chat_limits limits;         /* auth_key points to the chat's own copy */
    chat_io io;
    store *store;
    dict rooms;                 /* id -> room */
    dict users;                 /* uid (4 bytes) -> logged-in user */
    uint32_t next_uid;
    sbuf out;                   /* reused for every outgoing message */
    sbuf tmp;
    time_t time_sec;            /* cached formatted time */
    char time_str[20];
};

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
}

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
    c->io = *io;
    c->store = st;
    dict_init(&c->rooms);
    dict_init(&c->users);
    sbuf_init(&c->out);
    sbuf_init(&c->tmp);
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
    for (size_t i = 0; i < c->rooms.nslots; i++)
        for (dict_entry *e = c->rooms.slots[i]; e; e = e->next) room_free(e->value);
    dict_free(&c->rooms);
    dict_free(&c->users);
    sbuf_free(&c->out);
    sbuf_free(&c->tmp);
    free((void *)c->limits.auth_key);
    free(c);
}

chat_user *chat_connect(chat *c, void *conn)
{
    chat_user *u = calloc(1, sizeof *u);
    if (!u) return NULL;
    u->conn = conn;
    bucket_init(&u->rate, c->limits.burst, 0);
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

static void *make_message(chat *c)
{
    if (c->out.oom) return NULL;
    return c->io.message_new(c->io.ctx, c->out.p, c->out.len);
}

static void send_to(chat *c, chat_user *u)
{
    void *m = make_message(c);
    if (!m) return;
    c->io.message_send(c->io.ctx, u->conn, m);
    c->io.message_release(c->io.ctx, m);
}

static void send_to_room(chat *c, room *r)
{
    void *m = make_message(c);
    if (!m) return;
    for (chat_user *u = r->head; u; u = u->next) c->io.message_send(c->io.ctx, u->conn, m);
    c->io.message_release(c->io.ctx, m);
}

static void send_error(chat *c, chat_user *u, const char *code, const char *message)
{
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

static room *room_get(chat *c, const char *id, size_t len)
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
    if ((c->store && c->store->ops->last_id(c->store->impl, r->id, len, &r->last_id) < 0) ||
        dict_put(&c->rooms, r->id, len, r) < 0) {
        room_free(r);
        return NULL;
    }
    return r;
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
    send_to(c, u);
}

typedef struct history_out {
    sbuf *o;
    bool names;
} history_out;

/* A say as it was sent; a client that asked for names gets the parties'
 * names added after its last key (uids change with every connection, so a
 * page could not name who said what before it came). */
static void add_history_item(void *arg, const store_msg *m)
{
    history_out *h = arg;
    sbuf *o = h->o;
    if (o->p[o->len - 1] != '[') sbuf_putc(o, ',');
    if (!h->names || !m->from_name || m->json_len < 2 || m->json[m->json_len - 1] != '}') {
        sbuf_put(o, m->json, m->json_len);
        return;
    }
    sbuf_put(o, m->json, m->json_len - 1);
    sbuf_puts(o, ",\"from_name\":");
    sbuf_json_str(o, m->from_name, m->from_name_len);
    if (m->to_name) {
        sbuf_puts(o, ",\"to_name\":");
        sbuf_json_str(o, m->to_name, m->to_name_len);
    }
    sbuf_putc(o, '}');
}

/* The room's recent messages, or all those after last_id (up to a cap), for
 * a client that logs in. Sent when there is something to say, or always when
 * the client asked with last_id. */
static void send_history(chat *c, chat_user *u, json_t *last_id, bool names)
{
    if (!c->store) return;
    bool resume = json_is_integer(last_id) && json_integer_value(last_id) >= 0;
    uint64_t after = resume ? (uint64_t)json_integer_value(last_id) : 0;
    unsigned limit = resume ? c->limits.resume_cap : c->limits.history;
    if (limit == 0) return;
    sbuf *o = &c->out;
    sbuf_reset(o);
    sbuf_puts(o, "{\"type\":\"history\",\"messages\":[");
    size_t empty = o->len;
    room *r = u->room;
    history_out h = { o, names };
    if (c->store->ops->range(c->store->impl, r->id, r->id_len, after, limit,
                             u->ident, add_history_item, &h) < 0) {
        send_error(c, u, "internal", "history is unavailable");
        return;
    }
    if (o->len == empty && !resume) return;
    sbuf_puts(o, "]}");
    send_to(c, u);
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

static void send_session(chat *c, chat_user *u, const login_identity *li)
{
    if (!li->token) return;
    sbuf *o = &c->out;
    sbuf_reset(o);
    sbuf_puts(o, "{\"type\":\"session\",\"uid\":");
    sbuf_u64(o, u->uid);
    sbuf_puts(o, ",\"token\":");
    sbuf_json_str(o, li->token, li->token_len);
    sbuf_putc(o, '}');
    send_to(c, u);
}

/* The login's checks passed (its escaped name is in c->tmp): into the room,
 * then the contract's sequence: user_list, login broadcast, session, history. */
static void join(chat *c, chat_user *u, json_t *msg, const char *id, size_t id_len,
                 const login_identity *li, uint64_t now_ms)
{
    room *r = room_get(c, id, id_len);
    char *name = malloc(c->tmp.len + 1);
    if (!r || !name) {
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
    if (dict_put(&c->users, &u->uid, sizeof u->uid, u) < 0) {
        u->uid = 0;
        send_error(c, u, "internal", "out of memory");
        return;
    }
    send_user_list(c, u, r);
    room_join(r, u);

    sbuf *o = &c->out;
    sbuf_reset(o);
    sbuf_puts(o, "{\"type\":\"login\",\"uid\":");
    sbuf_u64(o, u->uid);
    sbuf_puts(o, ",\"name\":");
    sbuf_json_str(o, u->name, u->name_len);
    sbuf_puts(o, ",\"time\":\"");
    sbuf_puts(o, now_str(c, now_ms));
    sbuf_puts(o, "\"}");
    send_to_room(c, r);
    send_session(c, u, li);
    send_history(c, u, json_object_get(msg, "last_id"),
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
    if (resolve_identity(c, token, now_ms, li) < 0) {
        send_error(c, u, "unavailable", "your identity could not be stored; try again");
        return;
    }
    join(c, u, msg, id, (size_t)id_len, li, now_ms);
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
    sbuf *o = &c->out;
    sbuf_reset(o);
    sbuf_puts(o, "{\"type\":\"say\",\"from_uid\":");
    sbuf_u64(o, from->uid);
    if (to) {
        sbuf_puts(o, ",\"to_uid\":");
        sbuf_u64(o, (uint64_t)to);
    } else {
        sbuf_puts(o, ",\"to_uid\":\"all\"");
    }
    sbuf_puts(o, ",\"content\":");
    sbuf_reset(&c->tmp);
    html_escape(&c->tmp, s, n, true);
    if (c->tmp.oom) o->oom = 1;
    else sbuf_json_str(o, c->tmp.p, c->tmp.len);
    sbuf_puts(o, ",\"time\":\"");
    sbuf_puts(o, now_str(c, now_ms));
    sbuf_putc(o, '"');
    if (id) {
        sbuf_puts(o, ",\"id\":");
        sbuf_u64(o, id);
    }
    sbuf_putc(o, '}');
}

/* Gives the message its id and stores it; the server commits the store
 * before it writes this loop turn's output, so no client ever receives a
 * message that a crash could lose. */
/* The retention pass forgets identities unused for the history's age that
 * no kept message names; a connection can outlive that age, so the store
 * hears of use at logout and, at most hourly, on private talk. */
#define IDENTITY_TOUCH_EVERY 3600

static void touch_identity(chat *c, chat_user *u, int64_t now, bool force)
{
    if (!c->store || !u->ident || (!force && now - u->ident_used < IDENTITY_TOUCH_EVERY)) return;
    if (c->store->ops->identity_touch(c->store->impl, u->ident, now) == 0) u->ident_used = now;
}

static int store_say(chat *c, chat_user *u, chat_user *target, int64_t to,
                     const char *s, size_t n, uint64_t now_ms)
{
    room *r = u->room;
    if (!c->store) {
        write_say(c, u, to, s, n, now_ms, 0);
        return 0;
    }
    uint64_t id = ++r->last_id;
    write_say(c, u, to, s, n, now_ms, id);
    if (c->out.oom) return -1;
    store_msg m = { id, (int64_t)(now_ms / 1000), u->uid, (uint32_t)to,
                    u->name, u->name_len, target ? target->name : NULL,
                    target ? target->name_len : 0, c->out.p, c->out.len,
                    target ? u->ident : 0, target ? target->ident : 0 };
    if (target) {
        touch_identity(c, u, m.ts, false);
        touch_identity(c, target, m.ts, false);
    }
    return c->store->ops->append(c->store->impl, r->id, r->id_len, &m);
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
    if (store_say(c, u, target, to, s, n, now_ms) < 0) {
        send_error(c, u, "internal", "the message could not be stored; try again");
        return;
    }
    if (!target) {
        send_to_room(c, u->room);
        return;
    }
    void *m = make_message(c);
    if (!m) return;
    c->io.message_send(c->io.ctx, target->conn, m);
    if (target != u) c->io.message_send(c->io.ctx, u->conn, m);
    c->io.message_release(c->io.ctx, m);
}

/* ---- dispatch -------------------------------------------------------- */

void chat_text(chat *c, chat_user *u, const char *data, size_t n, uint64_t now_ms)
{
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
    json_t *type = json_is_object(msg) ? json_object_get(msg, "type") : NULL;
    const char *t = json_is_string(type) && strlen(json_string_value(type)) == json_string_length(type)
                        ? json_string_value(type) : NULL;
    if (t && strcmp(t, "pong") == 0) {
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

void chat_disconnect(chat *c, chat_user *u, uint64_t now_ms, int quiet)
{
    if (!u) return;
    if (u->uid) {
        room *r = u->room;
        bool others = r->count > 1;     /* else room_leave frees the room */
        dict_del(&c->users, &u->uid, sizeof u->uid);
        room_leave(c, u);
        touch_identity(c, u, (int64_t)(now_ms / 1000), true);
        if (!quiet && others) {
            sbuf *o = &c->out;
            sbuf_reset(o);
            sbuf_puts(o, "{\"type\":\"logout\",\"uid\":");
            sbuf_u64(o, u->uid);
            sbuf_puts(o, ",\"time\":\"");
            sbuf_puts(o, now_str(c, now_ms));
            sbuf_puts(o, "\"}");
            send_to_room(c, r);
        }
    }
    free(u->name);
    free(u);
}
