/* test_chat.c -- the chat module (chat.c) driven with fake connections.
 *
 * A fake chat_io makes real shared frames (ws_frame_new, as the server does),
 * checks each one is a complete unmasked text frame holding valid JSON, and
 * records for every fake connection the frames it was given. It also keeps
 * its own books on every frame: the chat must release each frame exactly
 * once, never send after releasing, never send to a connection that is gone,
 * and a frame's reference count must equal the number of connections that
 * received it (checked after every test, in the teardown).
 *
 * A fake in-memory store (store_ops) stands in for SQLite to test message
 * ids, history, resume after last_id and private replay.
 *
 * Time is driven through the now_ms argument; the process runs in UTC so
 * that the contract's time strings can be written out exactly. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat.h"
#include "jwt_mint.h"
#include "sbuf.h"
#include "store.h"
#include "utf8.h"
#include "ws_codec.h"

#define MAX_CONNS 2048

/* 2014-08-12 17:50:30 UTC, the seed's login time. */
#define T0 1407865830000ULL

/* ---- the fake io: frames and their books --------------------------------- */

typedef struct ftrack {         /* one message_new call */
    ws_frame *f;
    const char *text;           /* the JSON payload, inside f */
    size_t len;
    json_t *js;                 /* decoded */
    int chat_ref;               /* 1 until the chat releases it */
    unsigned sends;             /* connections it was sent to */
    bool dead;                  /* freed (released with no recipient) */
} ftrack;

typedef struct fconn {
    bool gone;                  /* disconnected: nothing may reach it */
    size_t *rx;                 /* ftrack indexes, in arrival order */
    size_t n, cap, next;        /* next: first one not yet popped */
} fconn;

typedef struct fio {
    ftrack *t;
    size_t n, cap;
    size_t news, releases, sends;
    bool fail_new;              /* message_new answers NULL (out of memory) */
    void *drain_asked[MAX_CONNS];   /* want_drain calls not yet answered */
    size_t n_drain_asked;
} fio;

typedef struct world world;

/* ---- the fake store ------------------------------------------------------ */

typedef struct srec {
    char *room;
    size_t room_len;
    store_msg m;                /* with its own copies of the strings */
} srec;

typedef struct fident {
    uint8_t key[STORE_KEY_LEN];
    int64_t last_used;
} fident;

typedef struct fstore {
    srec *r;
    size_t n, cap;
    fident ident[64];           /* identity id k+1 is ident[k] */
    size_t nident;
    bool fail_ident;
    struct { const char *room; uint64_t id; } preset[4];    /* last_id of old rooms */
    size_t npreset;
    bool fail_last_id, fail_append, fail_range, fail_commit;
    size_t committed;           /* records that survive a failed commit */
    unsigned last_id_calls, append_calls, range_calls, scan_calls, commit_calls;
    /* the last range() call */
    char range_room[80];
    uint64_t range_after;
    unsigned range_limit;
    uint64_t range_viewer;
} fstore;

struct world {
    chat *c;
    fio io;
    fstore fs;
    store st;
    fconn *conns;
    chat_user **users;
    size_t nconns;
    uint64_t now;
};

static ftrack *track_of(fio *io, void *msg)
{
    assert_non_null(msg);
    for (size_t i = io->n; i-- > 0;)
        if (!io->t[i].dead && io->t[i].f == msg) return &io->t[i];
    fail_msg("the chat used a message the io never made (or one already freed)");
    return NULL;
}

static void *io_new(void *ctx, const char *json, size_t n)
{
    fio *io = ctx;
    if (io->fail_new) return NULL;
    ws_frame *f = ws_frame_new(WS_OP_TEXT, json, n);
    assert_non_null(f);
    /* The frame as a client would read it: whole, final, unmasked text. */
    ws_header h;
    int hl = ws_header_parse(f->data, f->len, &h);
    assert_true(hl > 0);
    assert_true(h.fin);
    assert_false(h.rsv1 || h.rsv2 || h.rsv3);
    assert_false(h.masked);
    assert_int_equal(h.opcode, WS_OP_TEXT);
    assert_int_equal((uint64_t)hl + h.len, f->len);
    const char *text = (const char *)f->data + hl;
    assert_true(utf8_valid((const uint8_t *)text, (size_t)h.len));
    json_error_t e;
    json_t *js = json_loadb(text, (size_t)h.len, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &e);
    if (!js) fail_msg("the chat sent invalid JSON (%s): %.*s", e.text, (int)h.len, text);
    assert_true(json_is_object(js));
    if (io->n == io->cap) {
        io->cap = io->cap ? io->cap * 2 : 64;
        io->t = realloc(io->t, io->cap * sizeof *io->t);
        assert_non_null(io->t);
    }
    io->t[io->n++] = (ftrack){ f, text, (size_t)h.len, js, 1, 0, false };
    io->news++;
    return f;
}

static void io_send(void *ctx, void *conn, void *msg)
{
    fio *io = ctx;
    fconn *fc = conn;
    ftrack *t = track_of(io, msg);
    if (t->chat_ref != 1) fail_msg("message sent after its release: %.*s", (int)t->len, t->text);
    if (fc->gone) fail_msg("message sent to a connection that is gone: %.*s", (int)t->len, t->text);
    ws_frame_ref(t->f);
    t->sends++;
    io->sends++;
    if (fc->n == fc->cap) {
        fc->cap = fc->cap ? fc->cap * 2 : 16;
        fc->rx = realloc(fc->rx, fc->cap * sizeof *fc->rx);
        assert_non_null(fc->rx);
    }
    fc->rx[fc->n++] = (size_t)(t - io->t);
}

static void io_want_drain(void *ctx, void *conn)
{
    fio *io = ctx;
    assert_true(io->n_drain_asked < MAX_CONNS);
    io->drain_asked[io->n_drain_asked++] = conn;
}

static void io_release(void *ctx, void *msg)
{
    fio *io = ctx;
    ftrack *t = track_of(io, msg);
    if (t->chat_ref != 1) fail_msg("message released twice: %.*s", (int)t->len, t->text);
    t->chat_ref = 0;
    io->releases++;
    if (t->sends == 0) t->dead = true;
    ws_frame_unref(t->f);
}

/* Every frame made so far was released once, and each holds exactly one
 * reference per connection that received it. */
static void io_check(fio *io)
{
    assert_int_equal(io->news, io->releases);
    for (size_t i = 0; i < io->n; i++) {
        ftrack *t = &io->t[i];
        if (t->dead) continue;
        if (t->chat_ref) fail_msg("message never released: %.*s", (int)t->len, t->text);
        if (t->f->refs != t->sends)
            fail_msg("frame holds %u references for %u recipients: %.*s", (unsigned)t->f->refs,
                     t->sends, (int)t->len, t->text);
    }
}

/* ---- fake store ops -------------------------------------------------------- */

static char *dupn(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    assert_non_null(p);
    if (n) memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static bool room_is(const srec *r, const char *room, size_t len)
{
    return r->room_len == len && memcmp(r->room, room, len) == 0;
}

static int fs_last_id(void *impl, const char *room, size_t room_len, uint64_t *out)
{
    fstore *fs = impl;
    fs->last_id_calls++;
    if (fs->fail_last_id) return -1;
    uint64_t id = 0;
    for (size_t i = 0; i < fs->npreset; i++)
        if (strlen(fs->preset[i].room) == room_len && memcmp(fs->preset[i].room, room, room_len) == 0)
            id = fs->preset[i].id;
    for (size_t i = 0; i < fs->n; i++)
        if (room_is(&fs->r[i], room, room_len) && fs->r[i].m.id > id) id = fs->r[i].m.id;
    *out = id;
    return 0;
}

static int fs_append(void *impl, const char *room, size_t room_len, const store_msg *m)
{
    fstore *fs = impl;
    fs->append_calls++;
    if (fs->fail_append) return -1;
    uint64_t last;
    fs_last_id(impl, room, room_len, &last);
    fs->last_id_calls--;
    if (m->id <= last) fail_msg("store got id %llu after %llu", (unsigned long long)m->id,
                                (unsigned long long)last);
    if (fs->n == fs->cap) {
        fs->cap = fs->cap ? fs->cap * 2 : 16;
        fs->r = realloc(fs->r, fs->cap * sizeof *fs->r);
        assert_non_null(fs->r);
    }
    srec *r = &fs->r[fs->n++];
    r->room = dupn(room, room_len);
    r->room_len = room_len;
    r->m = *m;
    r->m.from_name = dupn(m->from_name, m->from_name_len);
    r->m.to_name = m->to_name ? dupn(m->to_name, m->to_name_len) : NULL;
    r->m.content = dupn(m->content, m->content_len);
    return 0;
}

static int fs_remove(void *impl, const char *room, size_t room_len, uint64_t id)
{
    fstore *fs = impl;
    for (size_t i = 0; i < fs->n; i++) {
        srec *r = &fs->r[i];
        if (!room_is(r, room, room_len) || r->m.id != id) continue;
        free(r->room);
        free((char *)r->m.from_name);
        free((char *)r->m.to_name);
        free((char *)r->m.content);
        memmove(r, r + 1, (fs->n - i - 1) * sizeof *r);
        fs->n--;
        return 1;
    }
    return 0;
}

static bool visible(const srec *r, uint64_t viewer)
{
    const store_msg *m = &r->m;
    if (m->to_uid == 0) return true;
    return viewer && (m->from_ident == viewer || m->to_ident == viewer);
}

static bool in_range(const srec *r, const char *room, size_t room_len, uint64_t after_id,
                     uint64_t viewer)
{
    return room_is(r, room, room_len) && r->m.id > after_id && visible(r, viewer);
}

/* As store.h says: where the newest `limit` visible messages after
 * after_id begin. Its arguments are what the tests look at ("range"). */
static int fs_window(void *impl, const char *room, size_t room_len, uint64_t after_id,
                     unsigned limit, uint64_t viewer, uint64_t *start)
{
    fstore *fs = impl;
    fs->range_calls++;
    snprintf(fs->range_room, sizeof fs->range_room, "%.*s", (int)room_len, room);
    fs->range_after = after_id;
    fs->range_limit = limit;
    fs->range_viewer = viewer;
    if (fs->fail_range) return -1;
    unsigned seen = 0;
    *start = after_id;
    for (size_t i = fs->n; i-- > 0;) {
        srec *r = &fs->r[i];
        if (!in_range(r, room, room_len, after_id, viewer)) continue;
        if (seen++ == limit) {
            *start = r->m.id;
            break;
        }
    }
    return 0;
}

/* The visible messages after after_id, oldest first, until each stops. */
static int fs_range(void *impl, const char *room, size_t room_len, uint64_t after_id,
                    uint64_t viewer, store_each_fn each, void *arg)
{
    fstore *fs = impl;
    fs->scan_calls++;
    if (fs->fail_range) return -1;
    for (size_t i = 0; i < fs->n; i++) {
        srec *r = &fs->r[i];
        if (in_range(r, room, room_len, after_id, viewer) && each(arg, &r->m)) break;
    }
    return 0;
}

static int fs_trim(void *impl, int64_t now) { return 0; }
/* A failing commit loses the turn's appends, as SQLite's rollback does. */
static int fs_commit(void *impl)
{
    fstore *fs = impl;
    fs->commit_calls++;
    if (!fs->fail_commit) {
        fs->committed = fs->n;
        return 0;
    }
    while (fs->n > fs->committed) {
        srec *r = &fs->r[--fs->n];
        free(r->room);
        free((char *)r->m.from_name);
        free((char *)r->m.to_name);
        free((char *)r->m.content);
    }
    return -1;
}
static void fs_close(void *impl) {}

static int fs_ident_find(void *impl, const uint8_t key[STORE_KEY_LEN], int64_t now, uint64_t *id)
{
    fstore *fs = impl;
    if (fs->fail_ident) return -1;
    for (size_t k = 0; k < fs->nident; k++)
        if (memcmp(fs->ident[k].key, key, STORE_KEY_LEN) == 0) {
            fs->ident[k].last_used = now;
            *id = k + 1;
            return 1;
        }
    return 0;
}

static int fs_ident_add(void *impl, const uint8_t key[STORE_KEY_LEN], int64_t now, uint64_t *id)
{
    fstore *fs = impl;
    if (fs->fail_ident) return -1;
    if (fs->nident == sizeof fs->ident / sizeof fs->ident[0]) fail_msg("too many identities for the fake store");
    for (size_t k = 0; k < fs->nident; k++)
        if (memcmp(fs->ident[k].key, key, STORE_KEY_LEN) == 0) fail_msg("an identity key added twice");
    memcpy(fs->ident[fs->nident].key, key, STORE_KEY_LEN);
    fs->ident[fs->nident].last_used = now;
    *id = ++fs->nident;
    return 0;
}

static int fs_ident_touch(void *impl, uint64_t id, int64_t now)
{
    fstore *fs = impl;
    if (id == 0 || id > fs->nident) fail_msg("touched identity %llu, never made", (unsigned long long)id);
    fs->ident[id - 1].last_used = now;
    return 0;
}

static const store_ops fake_store_ops = {
    fs_last_id, fs_append, fs_window, fs_range, fs_trim, fs_commit, fs_close, fs_ident_find,
    fs_ident_add, fs_ident_touch, fs_remove,
};

static void fstore_free(fstore *fs)
{
    for (size_t i = 0; i < fs->n; i++) {
        free(fs->r[i].room);
        free((char *)fs->r[i].m.from_name);
        free((char *)fs->r[i].m.to_name);
        free((char *)fs->r[i].m.content);
    }
    free(fs->r);
}

/* ---- the world: a chat, its fake io, connections --------------------------- */

/* The operator's name bans as the chat asks for them: "banned" only. */
static int name_banned(void *ctx, const char *name, size_t n)
{
    return n == 6 && memcmp(name, "banned", 6) == 0;
}

static chat_limits test_limits(void)
{
    /* the shipped defaults, but a bucket no ordinary test runs dry */
    chat_limits l = { 32, 4096, 1e6, 1e6, 50, 1000, NULL, 0, 64 * 1024, 0 };
    return l;
}

static world *w_open_io(void **state, const chat_limits *lim, uint32_t seed, bool with_store,
                        bool want_drain)
{
    world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    *state = w;
    chat_limits l = lim ? *lim : test_limits();
    chat_io io = { &w->io, io_new, io_send, io_release, want_drain ? io_want_drain : NULL, name_banned };
    w->st.ops = &fake_store_ops;
    w->st.impl = &w->fs;
    w->c = chat_new(&l, &io, seed, with_store ? &w->st : NULL);
    assert_non_null(w->c);
    w->now = T0;
    return w;
}

static world *w_open(void **state, const chat_limits *lim, uint32_t seed, bool with_store)
{
    return w_open_io(state, lim, seed, with_store, false);
}

static int w_teardown(void **state)
{
    world *w = *state;
    if (!w) return 0;
    for (size_t i = 0; i < w->nconns; i++)
        if (!w->conns[i].gone) {
            w->conns[i].gone = true;
            chat_disconnect(w->c, w->users[i], w->now, 1);
        }
    chat_free(w->c);
    io_check(&w->io);
    for (size_t i = 0; i < w->nconns; i++) {
        fconn *fc = &w->conns[i];
        for (size_t k = 0; k < fc->n; k++) ws_frame_unref(w->io.t[fc->rx[k]].f);
        free(fc->rx);
    }
    for (size_t i = 0; i < w->io.n; i++) json_decref(w->io.t[i].js);
    free(w->io.t);
    free(w->conns);
    free(w->users);
    fstore_free(&w->fs);
    free(w);
    *state = NULL;
    return 0;
}

/* Opens a fake connection; returns its index. */
static int w_conn(world *w)
{
    /* allocated once: the chat holds pointers to the connections */
    if (!w->conns) {
        w->conns = calloc(MAX_CONNS, sizeof *w->conns);
        w->users = calloc(MAX_CONNS, sizeof *w->users);
        assert_non_null(w->conns);
        assert_non_null(w->users);
    }
    assert_true(w->nconns < MAX_CONNS);
    int i = (int)w->nconns++;
    w->users[i] = chat_connect(w->c, &w->conns[i], "k", 1);
    assert_non_null(w->users[i]);
    return i;
}

/* A message whose turn does not end yet (several events in one turn). */
static void w_text_in_turn(world *w, int i, const char *json)
{
    assert_false(w->conns[i].gone);
    chat_text(w->c, w->users[i], json, strlen(json), w->now);
}

static void w_sendn(world *w, int i, const char *json, size_t n)
{
    assert_false(w->conns[i].gone);
    chat_text(w->c, w->users[i], json, n, w->now);
    chat_end_turn(w->c);
}

static void w_send(world *w, int i, const char *json) { w_sendn(w, i, json, strlen(json)); }

static void w_sendf(world *w, int i, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void w_sendf(world *w, int i, const char *fmt, ...)
{
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof buf);
    w_sendn(w, i, buf, (size_t)n);
}

/* Sends a JSON value built with jansson (for names and contents that are
 * awkward to write as C literals). */
static void w_send_json(world *w, int i, json_t *msg)
{
    assert_non_null(msg);
    char *s = json_dumps(msg, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_non_null(s);
    w_send(w, i, s);
    free(s);
    json_decref(msg);
}

static void w_disconnect(world *w, int i, int quiet)
{
    assert_false(w->conns[i].gone);
    w->conns[i].gone = true;
    chat_disconnect(w->c, w->users[i], w->now, quiet);
    chat_end_turn(w->c);
    w->users[i] = NULL;
}

static size_t pending(world *w, int i) { return w->conns[i].n - w->conns[i].next; }

/* The next message connection i received. */
static ftrack *pop(world *w, int i)
{
    fconn *fc = &w->conns[i];
    if (fc->next == fc->n) fail_msg("connection %d received nothing", i);
    return &w->io.t[fc->rx[fc->next++]];
}

static void none(world *w, int i)
{
    if (pending(w, i)) {
        ftrack *t = pop(w, i);
        fail_msg("connection %d got an unexpected message: %.*s", i, (int)t->len, t->text);
    }
}

static void none_all(world *w)
{
    for (size_t i = 0; i < w->nconns; i++) none(w, (int)i);
}

static void drain_all(world *w)
{
    for (size_t i = 0; i < w->nconns; i++) w->conns[i].next = w->conns[i].n;
}

static void drain_all_but(world *w, int keep)
{
    for (size_t i = 0; i < w->nconns; i++)
        if ((int)i != keep) w->conns[i].next = w->conns[i].n;
}

static void expect_text(const ftrack *t, const char *want)
{
    if (t->len != strlen(want) || memcmp(t->text, want, t->len) != 0)
        fail_msg("got  %.*s\nwant %s", (int)t->len, t->text, want);
}

/* The object's keys, in order, are exactly those of the comma list. */
static void assert_keys(json_t *o, const char *keys)
{
    char buf[256];
    size_t n = 0;
    buf[0] = '\0';
    for (void *it = json_object_iter(o); it; it = json_object_iter_next(o, it))
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", n ? "," : "", json_object_iter_key(it));
    if (strcmp(buf, keys) != 0) fail_msg("keys %s, want %s", buf, keys);
}

static const char *str_of(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v)) fail_msg("\"%s\" is not a string", key);
    return json_string_value(v);
}

static json_int_t int_of(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v)) fail_msg("\"%s\" is not an integer", key);
    return json_integer_value(v);
}

static ftrack *pop_type(world *w, int i, const char *type)
{
    ftrack *t = pop(w, i);
    if (strcmp(str_of(t->js, "type"), type) != 0)
        fail_msg("connection %d: want a %s, got %.*s", i, type, (int)t->len, t->text);
    return t;
}

/* An error to connection i, with the contract's shape, and nothing else to anyone. */
static void expect_error(world *w, int i, const char *code)
{
    ftrack *t = pop_type(w, i, "error");
    assert_keys(t->js, "type,code,message");
    if (strcmp(str_of(t->js, "code"), code) != 0)
        fail_msg("connection %d: want error %s, got %.*s", i, code, (int)t->len, t->text);
    assert_true(strlen(str_of(t->js, "message")) > 0);
    assert_int_equal(t->sends, 1);
    none_all(w);
}

/* Logs connection i in (into room_json when not NULL: raw JSON of the
 * room_id value) and drains what that sent to everyone. Returns its uid. */
static uint32_t w_login_room(world *w, int i, const char *name, const char *room_json)
{
    json_t *m = json_pack("{s:s, s:s}", "type", "login", "name", name);
    if (room_json) json_object_set_new(m, "room_id", json_loads(room_json, JSON_DECODE_ANY, NULL));
    w_send_json(w, i, m);
    pop_type(w, i, "user_list");
    ftrack *t = pop_type(w, i, "login");
    uint32_t uid = chat_user_uid(w->users[i]);
    assert_int_equal(int_of(t->js, "uid"), uid);
    drain_all(w);
    return uid;
}

static uint32_t w_login(world *w, int i, const char *name) { return w_login_room(w, i, name, NULL); }

/* A string of n copies of unit. */
static char *rep(const char *unit, size_t n)
{
    size_t ul = strlen(unit);
    char *s = malloc(ul * n + 1);
    assert_non_null(s);
    for (size_t k = 0; k < n; k++) memcpy(s + k * ul, unit, ul);
    s[ul * n] = '\0';
    return s;
}

/* ---- the seed session and the shape of messages ----------------------------- */

static void test_seed_session(void **state)
{
    world *w = w_open(state, NULL, 783654164, false);
    char want[512];
    int a = w_conn(w), b = w_conn(w);

    w->now = T0 - 60000;
    w_send(w, a, "{\"type\":\"login\",\"name\":\"gabriel\"}");
    expect_text(pop(w, a), "{\"type\":\"user_list\",\"user_list\":[{\"uid\":783654164,\"name\":\"gabriel\"}]}");
    expect_text(pop(w, a), "{\"type\":\"login\",\"uid\":783654164,\"name\":\"gabriel\",\"time\":\"2014-08-12 17:49:30\"}");
    none_all(w);

    w->now = T0;
    w_send(w, b, "{\"type\":\"login\",\"name\":\"mynick\"}");
    /* the newcomer: the list (itself last), then the broadcast */
    expect_text(pop(w, b), "{\"type\":\"user_list\",\"user_list\":[{\"uid\":783654164,\"name\":\"gabriel\"},"
                           "{\"uid\":783654165,\"name\":\"mynick\"}]}");
    ftrack *lb = pop(w, b), *la = pop(w, a);
    snprintf(want, sizeof want, "{\"type\":\"login\",\"uid\":783654165,\"name\":\"mynick\",\"time\":\"2014-08-12 17:50:30\"}");
    expect_text(lb, want);
    assert_ptr_equal(la->f, lb->f);
    none_all(w);
    assert_int_equal(chat_user_uid(w->users[b]), 783654165);

    w->now = T0 + 32000;
    w_send(w, b, "{\"type\":\"say\",\"to_uid\":\"all\",\"content\":\"oi, pessoal !\"}");
    ftrack *sa = pop(w, a), *sb = pop(w, b);
    expect_text(sa, "{\"type\":\"say\",\"from_uid\":783654165,\"to_uid\":\"all\",\"content\":\"oi, pessoal !\","
                    "\"time\":\"2014-08-12 17:51:02\"}");
    assert_ptr_equal(sa->f, sb->f);
    none_all(w);
    assert_int_equal(chat_user_count(w->c), 2);
    assert_int_equal(chat_room_count(w->c), 1);
}

static void test_key_order_of_every_message(void **state)
{
    world *w = w_open(state, NULL, 1, false);
    int a = w_conn(w), b = w_conn(w);
    w_login(w, a, "a");
    w_send(w, b, "{\"name\":\"b\",\"room_id\":\"1\",\"type\":\"login\",\"extra\":[1,2]}");
    ftrack *t = pop_type(w, b, "user_list");
    assert_keys(t->js, "type,user_list");
    json_t *list = json_object_get(t->js, "user_list");
    assert_int_equal(json_array_size(list), 2);
    for (size_t k = 0; k < 2; k++) assert_keys(json_array_get(list, k), "uid,name");
    assert_keys(pop_type(w, b, "login")->js, "type,uid,name,time");
    drain_all(w);
    w_send(w, a, "{\"content\":\"x\",\"type\":\"say\"}");                  /* to_uid absent: all */
    t = pop_type(w, b, "say");
    assert_keys(t->js, "type,from_uid,to_uid,content,time");
    assert_string_equal(str_of(t->js, "to_uid"), "all");
    drain_all(w);
    w_sendf(w, a, "{\"type\":\"say\",\"content\":\"x\",\"to_uid\":%u}", chat_user_uid(w->users[b]));
    assert_keys(pop_type(w, b, "say")->js, "type,from_uid,to_uid,content,time");
    drain_all(w);
    w_disconnect(w, a, 0);
    assert_keys(pop_type(w, b, "logout")->js, "type,uid,time");
}

static void test_user_list_in_join_order(void **state)
{
    world *w = w_open(state, NULL, 500, false);
    const char *names[] = { "ana", "bia", "caio", "davi" };
    int c[6];
    for (int k = 0; k < 4; k++) {
        c[k] = w_conn(w);
        w_login(w, c[k], names[k]);
    }
    w_disconnect(w, c[1], 0);
    drain_all(w);
    c[4] = w_conn(w);
    w_send(w, c[4], "{\"type\":\"login\",\"name\":\"eva\"}");
    expect_text(pop(w, c[4]), "{\"type\":\"user_list\",\"user_list\":[{\"uid\":500,\"name\":\"ana\"},"
                              "{\"uid\":502,\"name\":\"caio\"},{\"uid\":503,\"name\":\"davi\"},"
                              "{\"uid\":504,\"name\":\"eva\"}]}");
    drain_all(w);
    /* the first to come back is last again */
    c[5] = w_conn(w);
    w_send(w, c[5], "{\"type\":\"login\",\"name\":\"bia\"}");
    expect_text(pop(w, c[5]), "{\"type\":\"user_list\",\"user_list\":[{\"uid\":500,\"name\":\"ana\"},"
                              "{\"uid\":502,\"name\":\"caio\"},{\"uid\":503,\"name\":\"davi\"},"
                              "{\"uid\":504,\"name\":\"eva\"},{\"uid\":505,\"name\":\"bia\"}]}");
}

static void test_time_format(void **state)
{
    world *w = w_open(state, NULL, 1, false);
    int a = w_conn(w);
    w_login(w, a, "a");
    static const struct { uint64_t ms; const char *want; } cases[] = {
        { T0 + 999, "2014-08-12 17:50:30" },
        { T0 + 1000, "2014-08-12 17:50:31" },
        { T0 + 1999, "2014-08-12 17:50:31" },
        { T0 + 30 * 1000 + 1, "2014-08-12 17:51:00" },
        { 1388631845000ULL, "2014-01-02 03:04:05" },            /* padded fields */
        { 1388631845000ULL, "2014-01-02 03:04:05" },            /* same second again */
        { 1704067199999ULL, "2023-12-31 23:59:59" },
        { 1704067200000ULL, "2024-01-01 00:00:00" },
        { 4102444800000ULL, "2100-01-01 00:00:00" },
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        w->now = cases[k].ms;
        w_send(w, a, "{\"type\":\"say\",\"content\":\"t\"}");
        ftrack *t = pop_type(w, a, "say");
        if (strcmp(str_of(t->js, "time"), cases[k].want) != 0)
            fail_msg("case %zu: time %s, want %s", k, str_of(t->js, "time"), cases[k].want);
    }
}

static void test_time_is_local_time(void **state)
{
    world *w = w_open(state, NULL, 1, false);
    int a = w_conn(w);
    w_login(w, a, "a");
    /* a POSIX TZ string needs no tzdata: three hours west of UTC */
    setenv("TZ", "BRT3", 1);
    tzset();
    w->now = T0 + 5000;
    w_send(w, a, "{\"type\":\"say\",\"content\":\"t\"}");
    setenv("TZ", "UTC", 1);
    tzset();
    assert_string_equal(str_of(pop_type(w, a, "say")->js, "time"), "2014-08-12 14:50:35");
    w->now = T0 + 6000;
    w_send(w, a, "{\"type\":\"say\",\"content\":\"t\"}");
    assert_string_equal(str_of(pop_type(w, a, "say")->js, "time"), "2014-08-12 17:50:36");
}

static void test_uid_zero_until_login(void **state)
{
    world *w = w_open(state, NULL, 42, false);
    int a = w_conn(w);
    assert_int_equal(chat_user_uid(w->users[a]), 0);
    assert_int_equal(chat_user_count(w->c), 0);
    w_send(w, a, "{\"type\":\"login\",\"name\":\"\"}");
    expect_error(w, a, "bad_name");
    assert_int_equal(chat_user_uid(w->users[a]), 0);
    assert_int_equal(w_login(w, a, "x"), 42);
    assert_int_equal(chat_user_count(w->c), 1);
}

/* ---- rooms -------------------------------------------------------------------- */

static void test_rooms_isolate_messages(void **state)
{
    world *w = w_open(state, NULL, 1, false);
    int a = w_conn(w), b = w_conn(w), c = w_conn(w), d = w_conn(w);
    w_login(w, a, "a");                                         /* room "1" */
    w_login_room(w, b, "b", "1");                               /* the same room */
    w_send(w, c, "{\"type\":\"login\",\"name\":\"c\",\"room_id\":\"x\"}");
    expect_text(pop(w, c), "{\"type\":\"user_list\",\"user_list\":[{\"uid\":3,\"name\":\"c\"}]}");
    pop_type(w, c, "login");
    none_all(w);                                                /* a and b heard nothing */
    w_send(w, d, "{\"type\":\"login\",\"name\":\"d\",\"room_id\":\"x\"}");
    json_t *list = json_object_get(pop_type(w, d, "user_list")->js, "user_list");
    assert_int_equal(json_array_size(list), 2);
    assert_int_equal(int_of(json_array_get(list, 0), "uid"), 3);
    ftrack *lc = pop_type(w, c, "login"), *ld = pop_type(w, d, "login");
    assert_ptr_equal(lc->f, ld->f);
    assert_int_equal(lc->sends, 2);
    none_all(w);
    assert_int_equal(chat_room_count(w->c), 2);

    w_send(w, a, "{\"type\":\"say\",\"content\":\"in 1\"}");
    assert_string_equal(str_of(pop_type(w, a, "say")->js, "content"), "in 1");
    assert_string_equal(str_of(pop_type(w, b, "say")->js, "content"), "in 1");
    none_all(w);
    w_send(w, d, "{\"type\":\"say\",\"content\":\"in x\"}");
    assert_string_equal(str_of(pop_type(w, c, "say")->js, "content"), "in x");
    assert_string_equal(str_of(pop_type(w, d, "say")->js, "content"), "in x");
    none_all(w);

    w_disconnect(w, a, 0);
    pop_type(w, b, "logout");
    none_all(w);
    w_disconnect(w, c, 0);
    assert_int_equal(int_of(pop_type(w, d, "logout")->js, "uid"), 3);
    none_all(w);
}

static void test_room_id_number_is_the_string(void **state)
{
    world *w = w_open(state, NULL, 1, false);
    int a = w_conn(w), b = w_conn(w), c = w_conn(w), d = w_conn(w), e = w_conn(w);
    w_login_room(w, a, "a", "7");
    w_login_room(w, b, "b", "\"7\"");
    w_login_room(w, c, "c", "7.0");
    w_login_room(w, d, "d", "1");       /* the default room is "1" */
    w_login(w, e, "e");
    assert_int_equal(chat_room_count(w->c), 2);
    w_send(w, a, "{\"type\":\"say\",\"content\":\"seven\"}");
    pop_type(w, a, "say");
    pop_type(w, b, "say");
    pop_type(w, c, "say");
    none_all(w);
    w_send(w, e, "{\"type\":\"say\",\"content\":\"one\"}");
    pop_type(w, d, "say");
    pop_type(w, e, "say");
    none_all(w);
}

/* A number n is the room "n" however the JSON writes n: a real of 1e15 or
 * more printed with "%.17g" would make 1e17 the room "1e+17", apart from
 * the integer's "100000000000000000", and -0.0 printed with "%.0f" the
 * room "-0", apart from 0's. */
static void test_room_id_equal_numbers_same_room(void **state)
{
    world *w = w_open(state, NULL, 1, false);
    static const char *pairs[][2] = {
        { "100000000000000000", "1e17" },
        { "0", "-0.0" },
        { "100", "1e2" },
    };
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
        int a = w_conn(w), b = w_conn(w);
        w_login_room(w, a, "a", pairs[k][0]);
        w_sendf(w, b, "{\"type\":\"login\",\"name\":\"b\",\"room_id\":%s}", pairs[k][1]);
        json_t *list = json_object_get(pop_type(w, b, "user_list")->js, "user_list");
        if (json_array_size(list) != 2)
            fail_msg("room_id %s and %s are different rooms", pairs[k][0], pairs[k][1]);
        drain_all(w);
    }
}

static void test_room_id_bad_values(void **state)
{
    world *w = w_open(state, NULL, 1, false);
    int a = w_conn(w);
    char *r65 = rep("r", 65), *r64 = rep("r", 64);
    const char *bad[] = { "true", "false", "null", "{}", "[]", "[1]", "\"\"" };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        w_sendf(w, a, "{\"type\":\"login\",\"name\":\"a\",\"room_id\":%s}", bad[k]);
        expect_error(w, a, "bad_json");
    }
    w_sendf(w, a, "{\"type\":\"login\",\"name\":\"a\",\"room_id\":\"%s\"}", r65);
    expect_error(w, a, "bad_json");
    assert_int_equal(chat_user_uid(w->users[a]), 0);
    assert_int_equal(chat_room_count(w->c), 0);
    assert_int_equal(chat_user_count(w->c), 0);
    /* 64 bytes is a room */
    w_sendf(w, a, "{\"type\":\"login\",\"name\":\"a\",\"room_id\":\"%s\"}", r64);
    pop_type(w, a, "user_list");
    pop_type(w, a, "login");
    assert_int_equal(chat_room_count(w->c), 1);
    free(r65);
    free(r64);
}

static void test_room_lives_while_occupied(void **state)
{
    world *w = w_open(state, NULL, 1, false);
    int a = w_conn(w), b = w_conn(w), c = w_conn(w);
    w_login_room(w, a, "a", "\"r\"");
    w_login_room(w, b, "b", "\"r\"");
    w_login(w, c, "c");
    assert_int_equal(chat_room_count(w->c), 2);
    w_disconnect(w, a, 0);
    assert_int_equal(chat_room_count(w->c), 2);
    w_disconnect(w, b, 0);
    assert_int_equal(chat_room_count(w->c), 1);
    assert_int_equal(chat_user_count(w->c), 1);
    /* a new room of that name starts empty */
    int d = w_conn(w);
    w_send(w, d, "{\"type\":\"login\",\"name\":\"d\",\"room_id\":\"r\"}");
    assert_int_equal(json_array_size(json_object_get(pop_type(w, d, "user_list")->js, "user_list")), 1);
}

/* ---- private messages ------------------------------------------------------------ */

static void test_private_say_to_target_and_echo(void **state)
{
    world *w = w_open(state, NULL, 10, false);
    int a = w_conn(w), b = w_conn(w), c = w_conn(w);
    uint32_t ua = w_login(w, a, "a"), ub = w_login(w, b, "b");
    w_login(w, c, "c");
    char want[256];
    snprintf(want, sizeof want, "{\"type\":\"say\",\"from_uid\":%u,\"to_uid\":%u,\"content\":\"psiu\","
             "\"time\":\"2014-08-12 17:50:30\"}", ua, ub);
    /* a number, then a numeric string: the message always carries a number */
    const char *forms[] = { "%u", "\"%u\"", "%u.0" };
    for (size_t k = 0; k < 3; k++) {
        char to[32], msg[128];
        snprintf(to, sizeof to, forms[k], ub);
        snprintf(msg, sizeof msg, "{\"type\":\"say\",\"to_uid\":%s,\"content\":\"psiu\"}", to);
        w_send(w, a, msg);
        ftrack *tb = pop(w, b), *ta = pop(w, a);
        expect_text(tb, want);
        assert_ptr_equal(ta->f, tb->f);
        assert_int_equal(tb->sends, 2);
        none_all(w);
    }
}

static void test_private_say_to_self_once(void **state)
{
    world *w = w_open(state, NULL, 10, false);
    int a = w_conn(w), b = w_conn(w);
    uint32_t ua = w_login(w, a, "a");
    w_login(w, b, "b");
    w_sendf(w, a, "{\"type\":\"say\",\"to_uid\":%u,\"content\":\"me\"}", ua);
    ftrack *t = pop_type(w, a, "say");
    assert_int_equal(int_of(t->js, "to_uid"), ua);
    assert_int_equal(t->sends, 1);
    none_all(w);
}

static void test_private_say_no_such_user(void **state)
{
    world *w = w_open(state, NULL, 10, false);
    int a = w_conn(w), b = w_conn(w), c = w_conn(w), d = w_conn(w);
    w_login(w, a, "a");
    uint32_t ub = w_login(w, b, "b");
    uint32_t uc = w_login_room(w, c, "c", "\"other\"");
    uint32_t ud = w_login(w, d, "d");
    w_disconnect(w, d, 0);
    drain_all(w);
    char s[3][16];
    snprintf(s[0], 16, "%u", uc);               /* in another room */
    snprintf(s[1], 16, "\"%u\"", uc);
    snprintf(s[2], 16, "%u", ud);               /* gone */
    const char *bad[] = { s[0], s[1], s[2], "999999", "\"999999\"", "0", "\"0\"", "-11", "\"-11\"",
                          "\"abc\"", "\"11a\"", "\"\"", "\"ALL\"", "4294967296", "\"4294967296\"",
                          "4294967307", "11.5", "1e300" };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        w_sendf(w, a, "{\"type\":\"say\",\"to_uid\":%s,\"content\":\"x\"}", bad[k]);
        expect_error(w, a, "no_such_user");
    }
    /* values of no uid's type at all */
    const char *wrong[] = { "true", "null", "{}", "[11]" };
    for (size_t k = 0; k < sizeof wrong / sizeof wrong[0]; k++) {
        w_sendf(w, a, "{\"type\":\"say\",\"to_uid\":%s,\"content\":\"x\"}", wrong[k]);
        expect_error(w, a, "bad_json");
    }
    /* and the connection still works */
    w_sendf(w, a, "{\"type\":\"say\",\"to_uid\":%u,\"content\":\"x\"}", ub);
    pop_type(w, a, "say");
    pop_type(w, b, "say");
    none_all(w);
}

/* ---- logout -------------------------------------------------------------------------- */

static void test_logout_to_the_room_on_disconnect(void **state)
{
    world *w = w_open(state, NULL, 20, false);
    int a = w_conn(w), b = w_conn(w), c = w_conn(w), x = w_conn(w);
    w_login(w, a, "a");
    uint32_t ub = w_login(w, b, "b");
    w_login(w, c, "c");
    w_login_room(w, x, "x", "2");
    w->now = T0 + 61000;
    w_disconnect(w, b, 0);
    char want[128];
    snprintf(want, sizeof want, "{\"type\":\"logout\",\"uid\":%u,\"time\":\"2014-08-12 17:51:31\"}", ub);
    ftrack *ta = pop(w, a), *tc = pop(w, c);
    expect_text(ta, want);
    assert_ptr_equal(ta->f, tc->f);
    assert_int_equal(ta->sends, 2);
    none_all(w);
    assert_int_equal(chat_user_count(w->c), 3);
    /* b's uid is no longer a target */
    w_sendf(w, a, "{\"type\":\"say\",\"to_uid\":%u,\"content\":\"x\"}", ub);
    expect_error(w, a, "no_such_user");
}

static void test_quiet_disconnect_sends_nothing(void **state)
{
    world *w = w_open(state, NULL, 20, false);
    int a = w_conn(w), b = w_conn(w);
    w_login(w, a, "a");
    w_login(w, b, "b");
    size_t news = w->io.news;
    w_disconnect(w, b, 1);
    w_disconnect(w, a, 1);
    assert_int_equal(w->io.news, news);
    none_all(w);
    assert_int_equal(chat_user_count(w->c), 0);
    assert_int_equal(chat_room_count(w->c), 0);
}

static void test_disconnect_before_login_or_alone(void **state)
{
    world *w = w_open(state, NULL, 20, false);
    int a = w_conn(w), b = w_conn(w), c = w_conn(w);
    w_login(w, a, "a");
    w_send(w, b, "{\"type\":\"pong\"}");
    w_disconnect(w, b, 0);                      /* never logged in: no logout */
    none_all(w);
    w_disconnect(w, a, 0);                      /* alone in its room: nobody to tell */
    none_all(w);
    assert_int_equal(chat_user_count(w->c), 0);
    assert_int_equal(chat_room_count(w->c), 0);
    /* and a later login finds an empty room */
    w_send(w, c, "{\"type\":\"login\",\"name\":\"c\"}");
    assert_int_equal(json_array_size(json_object_get(pop_type(w, c, "user_list")->js, "user_list")), 1);
}

/* ---- errors -------------------------------------------------------------------------- */

static void test_error_bad_json(void **state)
{
    world *w = w_open(state, NULL, 1, false);
    int a = w_conn(w), b = w_conn(w);
    w_login(w, b, "b");
    const char *bad[] = {
        "", " ", "{", "}", "{\"type\":\"login\",\"name\":\"a\"", "{\"type\":\"login\",\"name\":\"a\"}}",
        "{\"type\":\"login\",\"name\":\"a\"} x", "{type:\"login\"}", "{'type':'login'}",
        "[]", "[{\"type\":\"login\",\"name\":\"a\"}]", "\"login\"", "42", "null", "true",
        "{}", "{\"name\":\"a\"}", "{\"type\":null}", "{\"type\":5}", "{\"type\":[\"login\"]}",
        "{\"type\":{}}", "{\"type\":\"login\\u0000\",\"name\":\"a\"}",
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        w_send(w, a, bad[k]);
        if (pending(w, a) != 1) fail_msg("case %zu (%s): %zu replies", k, bad[k], pending(w, a));
        expect_error(w, a, "bad_json");
    }
    chat_binary(w->c, w->users[a]);
    chat_end_turn(w->c);
    expect_error(w, a, "bad_json");
    chat_binary(w->c, w->users[b]);             /* logged in or not */
    chat_end_turn(w->c);
    expect_error(w, b, "bad_json");
    /* the connection stays usable */
    assert_int_equal(chat_user_uid(w->users[a]), 0);
    w_login(w, a, "a");
}

static void test_error_unknown_type(void **state)
{
    world *w = w_open(state, NULL, 1, false);
    int a = w_conn(w), b = w_conn(w);
    const char *types[] = { "ping", "LOGIN", "Say", "", "logout", "user_list", "error", "history", " say" };
    for (int pass = 0; pass < 2; pass++) {      /* before and after login */
        for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
            w_sendf(w, a, "{\"type\":\"%s\",\"name\":\"a\",\"content\":\"x\"}", types[k]);
            expect_error(w, a, "unknown_type");
        }
        if (!pass) {
            w_login(w, a, "a");
            w_login(w, b, "b");
        }
    }
}

static void test_pong_is_ignored(void **state)
{
    chat_limits l = test_limits();
    l.rate = 1;
    l.burst = 1;
    world *w = w_open(state, &l, 1, false);
    int a = w_conn(w);
    for (int k = 0; k < 50; k++) w_send(w, a, "{\"type\":\"pong\"}");
    none_all(w);
    /* nor did those use the one token */
    w_login(w, a, "a");
    for (int k = 0; k < 50; k++) w_send(w, a, "{\"type\":\"pong\",\"extra\":1}");
    none_all(w);
}

/* Malformed messages take tokens too, and a long one is refused unparsed
 * once there are none (only the short heartbeat stays free). */
static void test_rate_counts_every_message_but_the_heartbeat(void **state)
{
    chat_limits l = test_limits();
    l.rate = 0.001;
    l.burst = 2;
    world *w = w_open(state, &l, 1, false);
    int a = w_conn(w);
    w_login(w, a, "a");
    none_all(w);
    w_send(w, a, "{not json");
    expect_error(w, a, "bad_json");
    w_send(w, a, "{not json");
    expect_error(w, a, "rate_limited");
    char big[CHAT_FREE_MAX + 50];
    memset(big, '[', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    w_send(w, a, big);
    expect_error(w, a, "rate_limited");
    w_send(w, a, "{\"type\":\"pong\"}");
    none_all(w);
}

static void test_error_not_logged_in(void **state)
{
    world *w = w_open(state, NULL, 1, false);
    int a = w_conn(w), b = w_conn(w);
    w_login(w, b, "b");
    w_send(w, a, "{\"type\":\"say\",\"to_uid\":\"all\",\"content\":\"oi, pessoal !\"}");
    expect_error(w, a, "not_logged_in");
    w_sendf(w, a, "{\"type\":\"say\",\"to_uid\":%u,\"content\":\"x\"}", chat_user_uid(w->users[b]));
    expect_error(w, a, "not_logged_in");
    w_send(w, a, "{\"type\":\"say\"}");
    expect_error(w, a, "not_logged_in");
    /* a refused login leaves it out */
    w_send(w, a, "{\"type\":\"login\",\"name\":\"  \"}");
    expect_error(w, a, "bad_name");
    w_send(w, a, "{\"type\":\"say\",\"content\":\"x\"}");
    expect_error(w, a, "not_logged_in");
}

static void test_error_already_logged_in(void **state)
{
    world *w = w_open(state, NULL, 1, false);
    int a = w_conn(w), b = w_conn(w);
    uint32_t ua = w_login(w, a, "first");
    w_login(w, b, "b");
    w_send(w, a, "{\"type\":\"login\",\"name\":\"second\"}");
    expect_error(w, a, "already_logged_in");
    w_send(w, a, "{\"type\":\"login\",\"name\":\"third\",\"room_id\":\"elsewhere\"}");
    expect_error(w, a, "already_logged_in");
    assert_int_equal(chat_user_uid(w->users[a]), ua);
    assert_int_equal(chat_user_count(w->c), 2);
    assert_int_equal(chat_room_count(w->c), 1);
    /* still in its room, under its first name */
    int c = w_conn(w);
    w_send(w, c, "{\"type\":\"login\",\"name\":\"c\"}");
    json_t *list = json_object_get(pop_type(w, c, "user_list")->js, "user_list");
    assert_string_equal(str_of(json_array_get(list, 0), "name"), "first");
}

static void test_error_bad_name(void **state)
{
    world *w = w_open(state, NULL, 1, false);
    int a = w_conn(w), b = w_conn(w);
    w_login(w, b, "b");
    char *n33 = rep("n", 33);
    const char *bad[] = { "{\"type\":\"login\"}", "{\"type\":\"login\",\"name\":null}",
                          "{\"type\":\"login\",\"name\":5}", "{\"type\":\"login\",\"name\":[\"a\"]}",
                          "{\"type\":\"login\",\"name\":{}}", "{\"type\":\"login\",\"name\":true}",
                          "{\"type\":\"login\",\"name\":\"\"}", "{\"type\":\"login\",\"name\":\"   \"}",
                          "{\"type\":\"login\",\"name\":\" \\t\\r\\n \"}",
                          "{\"type\":\"login\",\"name\":\"\\u00a0\\u3000\"}" };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        w_send(w, a, bad[k]);
        expect_error(w, a, "bad_name");
    }
    w_sendf(w, a, "{\"type\":\"login\",\"name\":\"%s\"}", n33);
    expect_error(w, a, "bad_name");
    assert_int_equal(chat_user_uid(w->users[a]), 0);
    assert_int_equal(chat_user_count(w->c), 1);
    free(n33);
}

static void test_error_bad_content(void **state)
{
    world *w = w_open(state, NULL, 1, false);
    int a = w_conn(w), b = w_conn(w);
    w_login(w, a, "a");
    uint32_t ub = w_login(w, b, "b");
    const char *bad[] = { "", ",\"content\":null", ",\"content\":5", ",\"content\":[\"x\"]",
                          ",\"content\":{}", ",\"content\":true", ",\"content\":\"\"" };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        w_sendf(w, a, "{\"type\":\"say\"%s}", bad[k]);
        expect_error(w, a, "bad_content");
        w_sendf(w, a, "{\"type\":\"say\",\"to_uid\":%u%s}", ub, bad[k]);
        expect_error(w, a, "bad_content");
    }
    char *c4097 = rep("c", 4097);
    w_send_json(w, a, json_pack("{s:s, s:s}", "type", "say", "content", c4097));
    expect_error(w, a, "bad_content");
    free(c4097);
}

static void test_errors_only_to_the_offender(void **state)
{
    world *w = w_open(state, NULL, 1, false);
    int a = w_conn(w), b = w_conn(w), c = w_conn(w);
    w_login(w, a, "a");
    w_login(w, b, "b");
    w_send(w, c, "{\"type\":\"say\",\"content\":\"x\"}");
    expect_error(w, c, "not_logged_in");        /* expect_error checks a and b got nothing */
    w_send(w, a, "nope");
    expect_error(w, a, "bad_json");
    assert_int_equal(w->io.t[w->io.n - 1].sends, 1);
}

/* ---- escaping and limits ------------------------------------------------------------- */

static void test_html_escaping_of_name_and_content(void **state)
{
    world *w = w_open(state, NULL, 30, false);
    int a = w_conn(w), b = w_conn(w);
    w_login(w, a, "x");
    w_send(w, b, "{\"type\":\"login\",\"name\":\"<b>&\\\"O'Neil\\\"</b>\"}");
    ftrack *t = pop_type(w, b, "user_list");
    expect_text(t, "{\"type\":\"user_list\",\"user_list\":[{\"uid\":30,\"name\":\"x\"},"
                   "{\"uid\":31,\"name\":\"&lt;b&gt;&amp;&quot;O&#039;Neil&quot;&lt;/b&gt;\"}]}");
    t = pop_type(w, b, "login");
    assert_string_equal(str_of(t->js, "name"), "&lt;b&gt;&amp;&quot;O&#039;Neil&quot;&lt;/b&gt;");
    drain_all(w);
    w_send(w, b, "{\"type\":\"say\",\"content\":\"a & b < c > d \\\" e ' f\"}");
    assert_string_equal(str_of(pop_type(w, a, "say")->js, "content"),
                        "a &amp; b &lt; c &gt; d &quot; e &#039; f");
    drain_all(w);
    /* a third client sees the escaped name in its list too */
    int c = w_conn(w);
    w_send(w, c, "{\"type\":\"login\",\"name\":\"c\"}");
    json_t *list = json_object_get(pop_type(w, c, "user_list")->js, "user_list");
    assert_string_equal(str_of(json_array_get(list, 1), "name"), "&lt;b&gt;&amp;&quot;O&#039;Neil&quot;&lt;/b&gt;");
    drain_all(w);
    /* escaping is not undone: an entity is escaped again */
    w_send(w, c, "{\"type\":\"say\",\"content\":\"&amp; &#039;\"}");
    assert_string_equal(str_of(pop_type(w, c, "say")->js, "content"), "&amp;amp; &amp;#039;");
}

static void test_line_breaks_get_br(void **state)
{
    world *w = w_open(state, NULL, 1, false);
    int a = w_conn(w);
    w_login(w, a, "a");
    static const struct { const char *json, *want; } cases[] = {
        { "a\\nb", "a<br />\nb" },
        { "a\\r\\nb", "a<br />\r\nb" },
        { "a\\n\\rb", "a<br />\n\rb" },
        { "a\\rb", "a<br />\rb" },
        { "a\\n\\nb", "a<br />\n<br />\nb" },
        { "a\\r\\n\\r\\nb", "a<br />\r\n<br />\r\nb" },
        { "\\n", "<br />\n" },
        { "<\\n>", "&lt;<br />\n&gt;" },
        { "x\\u2028y\\ty", "x\xE2\x80\xA8y\ty" },       /* not line breaks for nl2br */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        w_sendf(w, a, "{\"type\":\"say\",\"content\":\"%s\"}", cases[k].json);
        const char *got = str_of(pop_type(w, a, "say")->js, "content");
        if (strcmp(got, cases[k].want) != 0) fail_msg("case %zu: content \"%s\"", k, got);
    }
}

static void test_content_json_round_trip(void **state)
{
    world *w = w_open(state, NULL, 1, false);
    int a = w_conn(w);
    w_login(w, a, "a");
    /* characters that must be escaped in JSON (the decoder in io_new checks
     * the frame is valid JSON) and others that must pass unchanged */
    const char in[] = "{\"type\":\"say\",\"content\":\"q\\\\b\\/s \\u0000\\u0001\\u001f\\u007f\\b\\f\\t"
                      "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\\ud83d\\ude00\"}";
    const char want[] = "q\\b/s \0\x01\x1f\x7f\b\f\t\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xF0\x9F\x98\x80";
    w_send(w, a, in);
    json_t *content = json_object_get(pop_type(w, a, "say")->js, "content");
    assert_int_equal(json_string_length(content), sizeof want - 1);
    assert_memory_equal(json_string_value(content), want, sizeof want - 1);
}

static void test_name_is_trimmed(void **state)
{
    world *w = w_open(state, NULL, 1, false);
    static const struct { const char *json, *want; } cases[] = {
        { "\"  mynick  \"", "mynick" },
        { "\"\\t\\r\\n mynick\\n\"", "mynick" },
        { "\"\\u00a0\\u3000my nick\\u2003\\ufeff\"", "my nick" },
        { "\" a  b \"", "a  b" },
        { "\"a\\u00a0b\"", "a\xC2\xA0" "b" },          /* inner space kept */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int a = w_conn(w);
        w_sendf(w, a, "{\"type\":\"login\",\"name\":%s}", cases[k].json);
        json_t *list = json_object_get(pop_type(w, a, "user_list")->js, "user_list");
        const char *in_list = str_of(json_array_get(list, json_array_size(list) - 1), "name");
        if (strcmp(in_list, cases[k].want) != 0) fail_msg("case %zu: name \"%s\"", k, in_list);
        assert_string_equal(str_of(pop_type(w, a, "login")->js, "name"), cases[k].want);
        drain_all(w);
    }
}

/* A name of n units (each one code point) between optional spaces. */
static void login_name(world *w, int i, const char *unit, size_t n, const char *pad)
{
    char *core = rep(unit, n);
    char *name = malloc(strlen(core) + 2 * strlen(pad) + 1);
    assert_non_null(name);
    sprintf(name, "%s%s%s", pad, core, pad);
    w_send_json(w, i, json_pack("{s:s, s:s}", "type", "login", "name", name));
    free(core);
    free(name);
}

static void test_name_limit_in_code_points(void **state)
{
    world *w = w_open(state, NULL, 1, false);
    static const struct { const char *unit, *sent; } units[] = {
        { "n", "n" },
        { "\xC3\xA9", "\xC3\xA9" },                    /* 2 bytes */
        { "\xE2\x82\xAC", "\xE2\x82\xAC" },            /* 3 bytes */
        { "\xF0\x9F\x98\x80", "\xF0\x9F\x98\x80" },    /* 4 bytes */
        { "&", "&amp;" },                              /* escaping comes after counting */
        { "'", "&#039;" },
    };
    for (size_t k = 0; k < sizeof units / sizeof units[0]; k++) {
        for (int padded = 0; padded < 2; padded++) {
            const char *pad = padded ? " \xE3\x80\x80 " : "";
            int a = w_conn(w);
            login_name(w, a, units[k].unit, 33, pad);
            expect_error(w, a, "bad_name");
            login_name(w, a, units[k].unit, 32, pad);
            ftrack *t = pop_type(w, a, "user_list");
            pop_type(w, a, "login");
            char *want = rep(units[k].sent, 32);
            json_t *list = json_object_get(t->js, "user_list");
            assert_string_equal(str_of(json_array_get(list, json_array_size(list) - 1), "name"), want);
            free(want);
            drain_all(w);
        }
    }
}

static void test_name_limit_is_configurable(void **state)
{
    chat_limits l = test_limits();
    l.max_name = 3;
    world *w = w_open(state, &l, 1, false);
    int a = w_conn(w);
    login_name(w, a, "\xF0\x9F\x98\x80", 4, "");
    expect_error(w, a, "bad_name");
    login_name(w, a, "\xF0\x9F\x98\x80", 3, "  ");
    pop_type(w, a, "user_list");
}

static void test_name_control_characters(void **state)
{
    world *w = w_open(state, NULL, 1, false);
    int a = w_conn(w);
    const char *bad[] = { "a\\u0000b", "a\\u0001b", "a\\tb", "a\\nb", "a\\rb", "a\\u001bb", "a\\u001fb",
                          "a\\u007fb", "a\\u0080b", "a\\u0085b", "a\\u009fb", "bob\\u0007",
                          "\\u0000bob", "bob\\u007f", "\\u0008" };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        w_sendf(w, a, "{\"type\":\"login\",\"name\":\"%s\"}", bad[k]);
        if (pending(w, a) != 1 || strcmp(str_of(w->io.t[w->conns[a].rx[w->conns[a].next]].js, "type"), "error"))
            fail_msg("name \"%s\" was accepted", bad[k]);
        expect_error(w, a, "bad_name");
    }
    /* just above and below: U+00A0 is a space, U+00A1 a sign */
    w_send(w, a, "{\"type\":\"login\",\"name\":\"a\\u00a1\\u00a0b\"}");
    pop_type(w, a, "user_list");
    assert_string_equal(str_of(pop_type(w, a, "login")->js, "name"), "a\xC2\xA1\xC2\xA0" "b");
}

static void test_content_limit_in_code_points(void **state)
{
    world *w = w_open(state, NULL, 1, false);
    int a = w_conn(w);
    w_login(w, a, "a");
    static const char *units[] = { "c", "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80", "<", "\n" };
    for (size_t k = 0; k < sizeof units / sizeof units[0]; k++) {
        char *big = rep(units[k], 4097), *max = rep(units[k], 4096);
        w_send_json(w, a, json_pack("{s:s, s:s}", "type", "say", "content", big));
        expect_error(w, a, "bad_content");
        w_send_json(w, a, json_pack("{s:s, s:s}", "type", "say", "content", max));
        pop_type(w, a, "say");
        none_all(w);
        free(big);
        free(max);
    }
    /* content is not trimmed: a single space is one code point */
    w_send(w, a, "{\"type\":\"say\",\"content\":\" \"}");
    assert_string_equal(str_of(pop_type(w, a, "say")->js, "content"), " ");
}

static void test_content_limit_is_configurable(void **state)
{
    chat_limits l = test_limits();
    l.max_content = 5;
    world *w = w_open(state, &l, 1, false);
    int a = w_conn(w);
    w_login(w, a, "a");
    w_send(w, a, "{\"type\":\"say\",\"content\":\"\xE2\x82\xAC\xE2\x82\xAC\xE2\x82\xAC\xE2\x82\xAC\xE2\x82\xAC\xE2\x82\xAC\"}");
    expect_error(w, a, "bad_content");
    w_send(w, a, "{\"type\":\"say\",\"content\":\"\xE2\x82\xAC\xE2\x82\xAC\xE2\x82\xAC\xE2\x82\xAC\xE2\x82\xAC\"}");
    pop_type(w, a, "say");
}

/* ---- rate limit ------------------------------------------------------------------------- */

/* Sends a say at time t; true when it was delivered, false when refused
 * with rate_limited (and then nobody else heard anything). */
static bool say_at(world *w, int i, uint64_t t)
{
    w->now = t;
    w_send(w, i, "{\"type\":\"say\",\"content\":\"r\"}");
    ftrack *m = pop(w, i);
    const char *type = str_of(m->js, "type");
    if (strcmp(type, "error") == 0) {
        assert_string_equal(str_of(m->js, "code"), "rate_limited");
        none_all(w);
        return false;
    }
    assert_string_equal(type, "say");
    drain_all(w);
    return true;
}

static void test_rate_limit_token_bucket(void **state)
{
    chat_limits l = test_limits();
    l.rate = 4;         /* a token every 250 ms: exact in binary */
    l.burst = 4;
    world *w = w_open(state, &l, 1, false);
    int a = w_conn(w), b = w_conn(w);
    w->now = T0;
    w_login(w, a, "a");                         /* a login takes a token too */
    w_login(w, b, "b");
    assert_true(say_at(w, a, T0));
    assert_true(say_at(w, a, T0));
    assert_true(say_at(w, a, T0));
    assert_false(say_at(w, a, T0));
    assert_false(say_at(w, a, T0 + 125));       /* half a token */
    assert_true(say_at(w, a, T0 + 250));        /* refused tries cost nothing */
    assert_false(say_at(w, a, T0 + 250));
    assert_false(say_at(w, a, T0 + 375));
    assert_true(say_at(w, a, T0 + 500));
    assert_true(say_at(w, a, T0 + 1000));       /* 2 tokens saved up */
    assert_true(say_at(w, a, T0 + 1000));
    assert_false(say_at(w, a, T0 + 1000));
    /* a long pause fills the bucket to the burst, not beyond */
    for (int k = 0; k < 4; k++) assert_true(say_at(w, a, T0 + 3600 * 1000));
    assert_false(say_at(w, a, T0 + 3600 * 1000));
    /* other kinds of message draw on the same bucket */
    w_send(w, a, "{\"type\":\"nope\"}");
    expect_error(w, a, "rate_limited");
    /* the other user is not affected */
    assert_true(say_at(w, b, T0 + 3600 * 1000));
}

static void test_rate_limit_before_login(void **state)
{
    chat_limits l = test_limits();
    l.rate = 1;
    l.burst = 2;
    world *w = w_open(state, &l, 1, false);
    int a = w_conn(w);
    w_send(w, a, "{\"type\":\"login\",\"name\":\"\"}");
    expect_error(w, a, "bad_name");
    w_send(w, a, "{\"type\":\"login\",\"name\":\"\"}");
    expect_error(w, a, "bad_name");
    w_send(w, a, "{\"type\":\"login\",\"name\":\"a\"}");
    expect_error(w, a, "rate_limited");
    assert_int_equal(chat_user_uid(w->users[a]), 0);
    w->now += 1000;
    w_login(w, a, "a");
}

static void test_default_limits_allow_20_per_second(void **state)
{
    chat_limits lim;
    chat_limits_defaults(&lim);
    world *w = w_open(state, &lim, 1, false);
    int a = w_conn(w);
    w_login(w, a, "a");
    /* a burst of 20 at once, then 20 a second for a minute */
    for (int k = 0; k < 20; k++) assert_true(say_at(w, a, T0));
    for (int k = 0; k < 20 * 60; k++) assert_true(say_at(w, a, T0 + 1000 + (uint64_t)k * 50));
    assert_true(lim.max_name >= 32 && lim.max_content >= 4096);
}

/* ---- uids -------------------------------------------------------------------------------- */

static int cmp_u32(const void *x, const void *y)
{
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return a < b ? -1 : a > b;
}

static void check_unique(world *w, size_t *idx, size_t n)
{
    uint32_t *u = malloc(n * sizeof *u);
    assert_non_null(u);
    for (size_t k = 0; k < n; k++) {
        u[k] = chat_user_uid(w->users[idx[k]]);
        assert_true(u[k] > 0);
    }
    qsort(u, n, sizeof *u, cmp_u32);
    for (size_t k = 1; k < n; k++)
        if (u[k] == u[k - 1]) fail_msg("uid %u given twice", u[k]);
    free(u);
}

static void test_unique_uids_many_logins(void **state)
{
    world *w = w_open(state, NULL, 0xFFFFFC00u, false);        /* wraps past 2^32 */
    size_t live[2048], nlive = 0;
    char name[32], room[32];
    for (int k = 0; k < 1000; k++) {
        int a = w_conn(w);
        snprintf(name, sizeof name, "user%d", k);
        snprintf(room, sizeof room, "%d", k % 10);
        uint32_t uid = w_login_room(w, a, name, room);
        assert_true(uid > 0);
        live[nlive++] = (size_t)a;
    }
    assert_int_equal(chat_user_count(w->c), 1000);
    assert_int_equal(chat_room_count(w->c), 10);
    check_unique(w, live, nlive);
    /* half leave, 500 more come */
    size_t kept = 0;
    for (size_t k = 0; k < nlive; k++) {
        if (k % 2) w_disconnect(w, (int)live[k], 1);
        else live[kept++] = live[k];
    }
    nlive = kept;
    for (int k = 0; k < 500; k++) {
        int a = w_conn(w);
        snprintf(room, sizeof room, "%d", k % 7);
        w_login_room(w, a, "again", room);
        live[nlive++] = (size_t)a;
    }
    assert_int_equal(chat_user_count(w->c), 1000);
    check_unique(w, live, nlive);
    /* a room's list holds its live members only */
    int z = w_conn(w);
    w_send(w, z, "{\"type\":\"login\",\"name\":\"z\",\"room_id\":0}");
    json_t *list = json_object_get(pop_type(w, z, "user_list")->js, "user_list");
    assert_true(json_array_size(list) > 50);
}

static void test_uid_seed_and_wrap(void **state)
{
    world *w = w_open(state, NULL, 0, false);
    int a = w_conn(w);
    assert_int_equal(w_login(w, a, "a"), 1);            /* seed 0: uids are positive */
    w_teardown(state);
    w = w_open(state, NULL, UINT32_MAX, false);
    int b = w_conn(w), c = w_conn(w);
    assert_int_equal(w_login(w, b, "b"), UINT32_MAX);
    assert_int_equal(w_login(w, c, "c"), 1);            /* 0 is skipped */
}

/* ---- shared frames ----------------------------------------------------------------------- */

static void test_broadcast_is_one_frame(void **state)
{
    world *w = w_open(state, NULL, 1, false);
    enum { N = 50 };
    int c[N];
    for (int k = 0; k < N; k++) {
        c[k] = w_conn(w);
        w_login(w, c[k], "u");
    }
    int other = w_conn(w);
    w_login_room(w, other, "o", "\"elsewhere\"");

    size_t news = w->io.news;
    w_send(w, c[7], "{\"type\":\"say\",\"content\":\"to all fifty\"}");
    assert_int_equal(w->io.news, news + 1);
    ws_frame *f = pop_type(w, c[0], "say")->f;
    for (int k = 1; k < N; k++) assert_ptr_equal(pop_type(w, c[k], "say")->f, f);
    assert_int_equal(f->refs, N);                       /* the chat kept none */
    none_all(w);

    /* the login broadcast: one frame for the room, one list for the newcomer */
    int late = w_conn(w);
    news = w->io.news;
    w_send(w, late, "{\"type\":\"login\",\"name\":\"late\"}");
    assert_int_equal(w->io.news, news + 2);
    pop_type(w, late, "user_list");
    f = pop_type(w, late, "login")->f;
    for (int k = 0; k < N; k++) assert_ptr_equal(pop_type(w, c[k], "login")->f, f);
    assert_int_equal(f->refs, N + 1);
    none_all(w);

    /* and the logout */
    news = w->io.news;
    w_disconnect(w, c[3], 0);
    assert_int_equal(w->io.news, news + 1);
    f = pop_type(w, late, "logout")->f;
    for (int k = 0; k < N; k++)
        if (k != 3) assert_ptr_equal(pop_type(w, c[k], "logout")->f, f);
    assert_int_equal(f->refs, N);
    none_all(w);
}

static void test_frames_released_once(void **state)
{
    world *w = w_open(state, NULL, 1, false);
    int a = w_conn(w), b = w_conn(w), c = w_conn(w);
    w_login(w, a, "a");
    uint32_t ub = w_login(w, b, "b");
    w_send(w, a, "{\"type\":\"say\",\"content\":\"x\"}");
    w_sendf(w, a, "{\"type\":\"say\",\"to_uid\":%u,\"content\":\"x\"}", ub);
    w_send(w, c, "{\"type\":\"say\",\"content\":\"x\"}");
    w_send(w, c, "garbage");
    w_disconnect(w, b, 0);
    io_check(&w->io);
    assert_true(w->io.news >= 9);
    /* errors and user lists are frames like the others */
    for (size_t k = 0; k < w->io.n; k++) assert_int_equal(w->io.t[k].chat_ref, 0);
}

static void test_no_frame_when_out_of_memory(void **state)
{
    world *w = w_open(state, NULL, 1, false);
    int a = w_conn(w), b = w_conn(w);
    w_login(w, a, "a");
    w->io.fail_new = true;
    size_t sends = w->io.sends, releases = w->io.releases;
    w_send(w, b, "{\"type\":\"login\",\"name\":\"b\"}");
    w_send(w, a, "{\"type\":\"say\",\"content\":\"x\"}");
    w_send(w, a, "nope");
    w_disconnect(w, a, 0);
    assert_int_equal(w->io.sends, sends);
    assert_int_equal(w->io.releases, releases);
    w->io.fail_new = false;
    /* the chat carries on once memory is back */
    w_send(w, b, "{\"type\":\"say\",\"content\":\"y\"}");
    pop_type(w, b, "say");
}

/* ---- with a store ------------------------------------------------------------------------ */

static void say_n(world *w, int i, int n, const char *fmt)
{
    for (int k = 0; k < n; k++) {
        char content[64];
        snprintf(content, sizeof content, fmt, k);
        w_send_json(w, i, json_pack("{s:s, s:s}", "type", "say", "content", content));
    }
    drain_all(w);
}

static void test_store_ids_per_room(void **state)
{
    world *w = w_open(state, NULL, 1, true);
    int a = w_conn(w), b = w_conn(w), c = w_conn(w);
    uint32_t ua = w_login(w, a, "a");
    uint32_t ub = w_login(w, b, "b");
    w_login_room(w, c, "c", "\"two\"");
    for (int k = 1; k <= 3; k++) {
        w->now = T0 + (uint64_t)k * 1500;
        w_send(w, a, "{\"type\":\"say\",\"content\":\"x\"}");
        ftrack *t = pop_type(w, a, "say");
        assert_keys(t->js, "type,from_uid,to_uid,content,time,id");
        assert_int_equal(int_of(t->js, "id"), k);
        assert_ptr_equal(pop_type(w, b, "say")->f, t->f);
        /* stored before delivery, exactly as sent */
        srec *r = &w->fs.r[w->fs.n - 1];
        assert_int_equal(r->m.id, k);
        assert_int_equal(r->m.ts, (int64_t)(w->now / 1000));
        assert_int_equal(r->m.from_uid, ua);
        assert_int_equal(r->m.to_uid, 0);
        assert_string_equal(r->room, "1");
        assert_string_equal(r->m.from_name, "a");
        assert_string_equal(r->m.content, "x");     /* raw, not the JSON */
    }
    w_send(w, c, "{\"type\":\"say\",\"content\":\"x\"}");
    assert_int_equal(int_of(pop_type(w, c, "say")->js, "id"), 1);
    /* a private message takes the room's next id and names both parties */
    w_sendf(w, a, "{\"type\":\"say\",\"to_uid\":%u,\"content\":\"p\"}", ub);
    ftrack *t = pop_type(w, b, "say");
    assert_int_equal(int_of(t->js, "id"), 4);
    srec *r = &w->fs.r[w->fs.n - 1];
    assert_int_equal(r->m.to_uid, ub);
    assert_string_equal(r->m.to_name, "b");
    assert_int_equal(r->m.to_name_len, 1);
    assert_string_equal(r->m.content, "p");
    w_send(w, c, "{\"type\":\"say\",\"content\":\"x\"}");
    assert_int_equal(int_of(pop_type(w, c, "say")->js, "id"), 2);
    assert_int_equal(w->fs.append_calls, 6);
    drain_all(w);
}

static void test_store_ids_continue_from_last_id(void **state)
{
    world *w = w_open(state, NULL, 1, true);
    w->fs.preset[w->fs.npreset].room = "1";
    w->fs.preset[w->fs.npreset++].id = 41;
    int a = w_conn(w);
    w_login(w, a, "a");
    w_send(w, a, "{\"type\":\"say\",\"content\":\"x\"}");
    assert_int_equal(int_of(pop_type(w, a, "say")->js, "id"), 42);
    /* the room empties and is made again: ids go on, never reused */
    w_disconnect(w, a, 0);
    assert_int_equal(chat_room_count(w->c), 0);
    int b = w_conn(w);
    w_login(w, b, "b");
    w_send(w, b, "{\"type\":\"say\",\"content\":\"x\"}");
    assert_int_equal(int_of(pop_type(w, b, "say")->js, "id"), 43);
    assert_int_equal(w->fs.last_id_calls, 2);
}

static void test_store_history_after_login(void **state)
{
    world *w = w_open(state, NULL, 1, true);
    int a = w_conn(w), b = w_conn(w);
    /* an empty room: no history message at all */
    w_send(w, a, "{\"type\":\"login\",\"name\":\"a\"}");
    pop_type(w, a, "user_list");
    pop_type(w, a, "login");
    pop_type(w, a, "session");
    none_all(w);
    assert_int_equal(w->fs.range_calls, 1);
    const char *sent[3];
    size_t sent_len[3];
    for (int k = 0; k < 3; k++) {
        w_sendf(w, a, "{\"type\":\"say\",\"content\":\"m%d\"}", k);
        ftrack *t = pop_type(w, a, "say");
        sent[k] = t->text;
        sent_len[k] = t->len;
    }
    w_send(w, b, "{\"type\":\"login\",\"name\":\"b\"}");
    pop_type(w, b, "user_list");
    pop_type(w, b, "login");
    pop_type(w, b, "session");
    ftrack *h = pop_type(w, b, "history");   /* after the list, the broadcast, the session */
    pop_type(w, a, "login");
    none_all(w);
    assert_keys(h->js, "type,messages");
    char want[1024];
    int n = snprintf(want, sizeof want, "{\"type\":\"history\",\"messages\":[%.*s,%.*s,%.*s]}",
                     (int)sent_len[0], sent[0], (int)sent_len[1], sent[1], (int)sent_len[2], sent[2]);
    assert_true(n > 0 && (size_t)n < sizeof want);
    expect_text(h, want);
    assert_int_equal(h->sends, 1);
    assert_string_equal(w->fs.range_room, "1");
    assert_int_equal(w->fs.range_after, 0);
    assert_int_equal(w->fs.range_limit, 50);
    assert_int_equal(w->fs.range_viewer, 2);       /* b's identity, the second */
}

static void test_store_history_limit(void **state)
{
    chat_limits l = test_limits();
    l.history = 2;
    world *w = w_open(state, &l, 1, true);
    int a = w_conn(w), b = w_conn(w);
    w_login(w, a, "a");
    say_n(w, a, 5, "m%d");
    w_send(w, b, "{\"type\":\"login\",\"name\":\"b\"}");
    pop_type(w, b, "user_list");
    pop_type(w, b, "login");
    pop_type(w, b, "session");
    json_t *msgs = json_object_get(pop_type(w, b, "history")->js, "messages");
    assert_int_equal(w->fs.range_limit, 2);
    assert_int_equal(json_array_size(msgs), 2);
    assert_string_equal(str_of(json_array_get(msgs, 0), "content"), "m3");
    assert_string_equal(str_of(json_array_get(msgs, 1), "content"), "m4");
    assert_int_equal(int_of(json_array_get(msgs, 1), "id"), 5);
    /* history 0: none at all */
    w_teardown(state);
    l.history = 0;
    w = w_open(state, &l, 1, true);
    a = w_conn(w);
    b = w_conn(w);
    w_login(w, a, "a");
    say_n(w, a, 2, "m%d");
    w_send(w, b, "{\"type\":\"login\",\"name\":\"b\"}");
    pop_type(w, b, "user_list");
    pop_type(w, b, "login");
    pop_type(w, b, "session");
    none(w, b);
}

static void test_store_resume_after_last_id(void **state)
{
    world *w = w_open(state, NULL, 1, true);
    int a = w_conn(w);
    w_login(w, a, "a");
    say_n(w, a, 6, "m%d");                      /* ids 1..6 */
    int b = w_conn(w);
    w_send(w, b, "{\"type\":\"login\",\"name\":\"b\",\"last_id\":4}");
    pop_type(w, b, "user_list");
    pop_type(w, b, "login");
    pop_type(w, b, "session");
    json_t *msgs = json_object_get(pop_type(w, b, "history")->js, "messages");
    assert_int_equal(w->fs.range_after, 4);
    assert_int_equal(w->fs.range_limit, 1000);
    assert_int_equal(json_array_size(msgs), 2);
    assert_int_equal(int_of(json_array_get(msgs, 0), "id"), 5);
    assert_int_equal(int_of(json_array_get(msgs, 1), "id"), 6);
    drain_all(w);
    /* nothing new: an empty history still answers the resume */
    int c = w_conn(w);
    w_send(w, c, "{\"type\":\"login\",\"name\":\"c\",\"last_id\":6}");
    pop_type(w, c, "user_list");
    pop_type(w, c, "login");
    pop_type(w, c, "session");
    expect_text(pop(w, c), "{\"type\":\"history\",\"messages\":[]}");
    drain_all(w);
    /* last_id 0: everything */
    int d = w_conn(w);
    w_send(w, d, "{\"type\":\"login\",\"name\":\"d\",\"last_id\":0}");
    pop_type(w, d, "user_list");
    pop_type(w, d, "login");
    pop_type(w, d, "session");
    assert_int_equal(json_array_size(json_object_get(pop_type(w, d, "history")->js, "messages")), 6);
    assert_int_equal(w->fs.range_after, 0);
    assert_int_equal(w->fs.range_limit, 1000);
    drain_all(w);
    /* not a resume: the ordinary history */
    const char *not_resume[] = { "\"4\"", "-1", "null", "4.5" };
    for (size_t k = 0; k < sizeof not_resume / sizeof not_resume[0]; k++) {
        int e = w_conn(w);
        w_sendf(w, e, "{\"type\":\"login\",\"name\":\"e\",\"last_id\":%s}", not_resume[k]);
        pop_type(w, e, "user_list");
        pop_type(w, e, "login");
        pop_type(w, e, "session");
        pop_type(w, e, "history");
        assert_int_equal(w->fs.range_after, 0);
        assert_int_equal(w->fs.range_limit, 50);
        drain_all(w);
    }
}

static void test_store_resume_cap(void **state)
{
    chat_limits l = test_limits();
    l.resume_cap = 3;
    l.history = 1;
    world *w = w_open(state, &l, 1, true);
    int a = w_conn(w), b = w_conn(w);
    w_login(w, a, "a");
    say_n(w, a, 8, "m%d");                      /* ids 1..8 */
    w_send(w, b, "{\"type\":\"login\",\"name\":\"b\",\"last_id\":2}");
    pop_type(w, b, "user_list");
    pop_type(w, b, "login");
    pop_type(w, b, "session");
    json_t *msgs = json_object_get(pop_type(w, b, "history")->js, "messages");
    assert_int_equal(w->fs.range_limit, 3);
    assert_int_equal(w->fs.range_after, 2);
    assert_int_equal(json_array_size(msgs), 3);
    for (size_t k = 0; k < 3; k++) assert_int_equal(int_of(json_array_get(msgs, k), "id"), 6 + k);
}

/* Logs connection i in with a login's extra JSON keys (extra: "" or
 * ",\"k\":v...") and returns its session token (a copy to free). */
static char *w_login_session(world *w, int i, const char *name, const char *extra)
{
    w_sendf(w, i, "{\"type\":\"login\",\"name\":\"%s\"%s}", name, extra);
    pop_type(w, i, "user_list");
    pop_type(w, i, "login");
    ftrack *t = pop_type(w, i, "session");
    assert_keys(t->js, "type,uid,token");
    assert_int_equal(int_of(t->js, "uid"), chat_user_uid(w->users[i]));
    char *tok = strdup(str_of(t->js, "token"));
    assert_non_null(tok);
    drain_all(w);
    return tok;
}

/* How many of the history's messages to connection i say content. */
static size_t history_count(world *w, int i, const char *content)
{
    json_t *msgs = json_object_get(pop_type(w, i, "history")->js, "messages");
    size_t n = 0;
    for (size_t m = 0; m < json_array_size(msgs); m++)
        n += strcmp(str_of(json_array_get(msgs, m), "content"), content) == 0;
    return n;
}

static void test_session_token_new_and_continued(void **state)
{
    world *w = w_open(state, NULL, 1, true);
    int a = w_conn(w);
    char *tok = w_login_session(w, a, "a", "");
    /* 256 random bits, base64url: 43 characters, never a repeat */
    assert_int_equal(strlen(tok), 43);
    assert_int_equal(strspn(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), 43);
    assert_int_equal(w->fs.nident, 1);
    /* stored hashed: the key is not the token's bytes */
    assert_true(memcmp(w->fs.ident[0].key, tok, 32) != 0);
    w_disconnect(w, a, 1);
    /* the same token: the same identity, the same token back */
    int b = w_conn(w);
    w->now += 5000;
    char extra[128];
    snprintf(extra, sizeof extra, ",\"token\":\"%s\"", tok);
    char *again = w_login_session(w, b, "other name", extra);
    assert_string_equal(again, tok);
    assert_int_equal(w->fs.nident, 1);
    assert_int_equal(w->fs.ident[0].last_used, (int64_t)(w->now / 1000));
    /* unknown, malformed, oversized or mistyped: a new identity, silently */
    const char *bad_json[] = { "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"", "\"short\"", "12",
                               "null", "[1]", "\"sub:abc\"", "\"\"" };
    for (size_t k = 0; k < sizeof bad_json / sizeof *bad_json; k++) {
        int c = w_conn(w);
        char x[128];
        snprintf(x, sizeof x, ",\"token\":%s", bad_json[k]);
        char *fresh = w_login_session(w, c, "c", x);
        assert_string_not_equal(fresh, tok);
        assert_int_equal(strlen(fresh), 43);
        assert_int_equal(w->fs.nident, 2 + k);
        free(fresh);
    }
    /* the token with one more character, and one of 100000 */
    char *big = rep("A", 100000);
    memcpy(big, tok, 43);
    big[44] = '\0';
    for (int k = 0; k < 2; k++) {
        int c = w_conn(w);
        w_send_json(w, c, json_pack("{s:s, s:s, s:s}", "type", "login", "name", "c", "token", big));
        pop_type(w, c, "user_list");
        pop_type(w, c, "login");
        assert_string_not_equal(str_of(pop_type(w, c, "session")->js, "token"), tok);
        drain_all(w);
        big[44] = 'A';
    }
    assert_int_equal(w->fs.nident, 10);
    free(big);
    free(again);
    free(tok);
}

static void test_session_order_and_no_store(void **state)
{
    world *w = w_open(state, NULL, 1, true);
    int a = w_conn(w);
    w_send(w, a, "{\"type\":\"login\",\"name\":\"a\",\"last_id\":0}");
    pop_type(w, a, "user_list");
    pop_type(w, a, "login");
    ftrack *t = pop_type(w, a, "session");
    assert_int_equal(t->sends, 1);
    pop_type(w, a, "history");
    none_all(w);
    /* without a store there is no identity to keep, so no session */
    w_teardown(state);
    w = w_open(state, NULL, 1, false);
    a = w_conn(w);
    w_send(w, a, "{\"type\":\"login\",\"name\":\"a\",\"token\":\"x\"}");
    pop_type(w, a, "user_list");
    pop_type(w, a, "login");
    none_all(w);
}

/* A long connection keeps its identity fresh: at logout, and at most hourly
 * on private talk (the retention pass forgets identities unused for the
 * history's age). */
static void test_identity_last_use(void **state)
{
    world *w = w_open(state, NULL, 1, true);
    int a = w_conn(w), b = w_conn(w);
    free(w_login_session(w, a, "a", ""));
    free(w_login_session(w, b, "b", ""));
    int64_t t0 = (int64_t)(w->now / 1000);
    assert_int_equal(w->fs.ident[0].last_used, t0);
    w->now += 1800 * 1000;                      /* half an hour: not yet */
    w_sendf(w, a, "{\"type\":\"say\",\"to_uid\":%u,\"content\":\"x\"}", chat_user_uid(w->users[b]));
    drain_all(w);
    assert_int_equal(w->fs.ident[0].last_used, t0);
    w->now += 3600 * 1000;                      /* past the hour: both parties */
    w_sendf(w, a, "{\"type\":\"say\",\"to_uid\":%u,\"content\":\"y\"}", chat_user_uid(w->users[b]));
    drain_all(w);
    assert_int_equal(w->fs.ident[0].last_used, t0 + 5400);
    assert_int_equal(w->fs.ident[1].last_used, t0 + 5400);
    w->now += 60 * 1000;                        /* public talk: nothing */
    w_send(w, a, "{\"type\":\"say\",\"content\":\"z\"}");
    drain_all(w);
    assert_int_equal(w->fs.ident[0].last_used, t0 + 5400);
    w->now += 10 * 1000;                        /* logout: always */
    w_disconnect(w, a, 0);
    drain_all(w);
    assert_int_equal(w->fs.ident[0].last_used, t0 + 5470);
    assert_int_equal(w->fs.ident[1].last_used, t0 + 5400);
}

/* An impostor who takes bob's name gets nothing of bob's private talk;
 * bob, with his token, gets it under any name. */
static void test_store_private_replay_by_identity(void **state)
{
    world *w = w_open(state, NULL, 1, true);
    int a = w_conn(w), b = w_conn(w);
    char *ta = w_login_session(w, a, "al&ce", "");
    char *tb = w_login_session(w, b, "bob", "");
    uint32_t ub = chat_user_uid(w->users[b]);
    w_send(w, a, "{\"type\":\"say\",\"content\":\"public\"}");
    w_sendf(w, a, "{\"type\":\"say\",\"to_uid\":%u,\"content\":\"secret\"}", ub);
    w_send(w, b, "{\"type\":\"say\",\"content\":\"public 2\"}");
    drain_all(w);
    srec *r = &w->fs.r[1];
    assert_string_equal(r->m.from_name, "al&amp;ce");  /* names as sent, for history_names */
    assert_string_equal(r->m.to_name, "bob");
    assert_int_equal(r->m.from_ident, 1);
    assert_int_equal(r->m.to_ident, 2);
    assert_int_equal(w->fs.r[0].m.from_ident, 0);        /* public: no parties */
    w_disconnect(w, a, 0);
    w_disconnect(w, b, 0);
    char xa[160], xb[160];
    snprintf(xa, sizeof xa, ",\"token\":\"%s\",\"last_id\":0", ta);
    snprintf(xb, sizeof xb, ",\"token\":\"%s\",\"last_id\":0,\"history_names\":true", tb);
    static const struct { const char *name; int who; size_t secret; } cases[] = {
        { "bob", 0, 0 }, { "al&ce", 0, 0 }, { " bob ", 0, 0 },  /* names alone: nothing */
        { "bob", 2, 1 }, { "someone", 2, 1 }, { "x", 1, 1 },      /* a party's token */
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        int c = w_conn(w);
        const char *extra = cases[k].who == 1 ? xa : cases[k].who == 2 ? xb : ",\"last_id\":0,\"history_names\":true";
        w_sendf(w, c, "{\"type\":\"login\",\"name\":\"%s\"%s}", cases[k].name, extra);
        pop_type(w, c, "user_list");
        pop_type(w, c, "login");
        pop_type(w, c, "session");
        if (history_count(w, c, "secret") != cases[k].secret) fail_msg("case %zu: wrong private replay", k);
        w_disconnect(w, c, 1);
        drain_all(w);
    }
    free(ta);
    free(tb);
}

#define AUTH_KEY "the operator's secret, 32 bytes+"

static world *w_open_signed(void **state)
{
    chat_limits l = test_limits();
    l.auth_key = (const uint8_t *)AUTH_KEY;
    l.auth_key_len = strlen(AUTH_KEY);
    return w_open(state, &l, 1, true);
}

/* A login carrying a token minted for these claims (JSON, without exp,
 * which is an hour after the test's clock), plus extra keys. */
static char *w_login_jwt(world *w, int i, const char *claims, const char *extra)
{
    char payload[512];
    snprintf(payload, sizeof payload, "{%s,\"exp\":%llu}", claims, (unsigned long long)(w->now / 1000 + 3600));
    char *t = mint_hs256(AUTH_KEY, payload);
    w_sendf(w, i, "{\"type\":\"login\",\"name\":\"ignored\",\"token\":\"%s\"%s}", t, extra);
    return t;
}

static void test_signed_login_needs_a_good_token(void **state)
{
    world *w = w_open_signed(state);
    int a = w_conn(w);
    w_send(w, a, "{\"type\":\"login\",\"name\":\"ana\"}");
    expect_error(w, a, "bad_token");
    w_send(w, a, "{\"type\":\"login\",\"name\":\"ana\",\"token\":\"abc.def.ghi\"}");
    expect_error(w, a, "bad_token");
    /* signed with another key, or expired */
    char *t = mint_hs256("not the key", "{\"sub\":\"u1\",\"exp\":9999999999}");
    w_sendf(w, a, "{\"type\":\"login\",\"name\":\"x\",\"token\":\"%s\"}", t);
    expect_error(w, a, "bad_token");
    free(t);
    t = mint_hs256(AUTH_KEY, "{\"sub\":\"u1\",\"exp\":1407865000}");
    w_sendf(w, a, "{\"type\":\"login\",\"name\":\"x\",\"token\":\"%s\"}", t);
    expect_error(w, a, "bad_token");
    free(t);
    assert_int_equal(chat_user_uid(w->users[a]), 0);
    assert_int_equal(w->fs.nident, 0);
    /* the same connection may retry: the name comes from the token */
    t = w_login_jwt(w, a, "\"sub\":\"u1\",\"name\":\"Ana <3\"", "");
    ftrack *ul = pop_type(w, a, "user_list");
    assert_string_equal(str_of(json_array_get(json_object_get(ul->js, "user_list"), 0), "name"), "Ana &lt;3");
    pop_type(w, a, "login");
    ftrack *s = pop_type(w, a, "session");
    assert_string_equal(str_of(s->js, "token"), t);     /* the token presented */
    none_all(w);
    free(t);
    /* no name claim: the sub is the name; a bad name claim is a bad name */
    int b = w_conn(w);
    t = w_login_jwt(w, b, "\"sub\":\"  \"", "");
    expect_error(w, b, "bad_name");
    free(t);
    t = w_login_jwt(w, b, "\"sub\":\"bob\"", "");
    assert_string_equal(str_of(pop_type(w, b, "user_list")->js, "type"), "user_list");
    assert_string_equal(str_of(pop_type(w, b, "login")->js, "name"), "bob");
    drain_all(w);
    free(t);
}

static void test_signed_rooms_claim(void **state)
{
    world *w = w_open_signed(state);
    int a = w_conn(w);
    char *t = w_login_jwt(w, a, "\"sub\":\"u1\",\"rooms\":[\"lobby\",7]", "");  /* default room "1" */
    expect_error(w, a, "bad_token");
    free(t);
    t = w_login_jwt(w, a, "\"sub\":\"u1\",\"rooms\":[\"lobby\",7]", ",\"room_id\":\"8\"");
    expect_error(w, a, "bad_token");
    free(t);
    t = w_login_jwt(w, a, "\"sub\":\"u1\",\"rooms\":[]", ",\"room_id\":\"lobby\"");
    expect_error(w, a, "bad_token");
    free(t);
    t = w_login_jwt(w, a, "\"sub\":\"u1\",\"rooms\":[\"lobby\",7]", ",\"room_id\":\"7\"");
    pop_type(w, a, "user_list");
    pop_type(w, a, "login");
    pop_type(w, a, "session");
    drain_all(w);
    free(t);
    int b = w_conn(w);
    t = w_login_jwt(w, b, "\"sub\":\"u2\",\"rooms\":[\"lobby\",\"7\"]", ",\"room_id\":\"lobby\"");
    pop_type(w, b, "user_list");
    drain_all(w);
    free(t);
    assert_int_equal(chat_room_count(w->c), 2);
}

/* Under --auth-key the identity is the sub: private history follows the
 * signed user across tokens and names, and no one else. */
static void test_signed_identity_is_the_sub(void **state)
{
    world *w = w_open_signed(state);
    int a = w_conn(w), b = w_conn(w);
    free(w_login_jwt(w, a, "\"sub\":\"alice\"", ""));
    drain_all(w);
    free(w_login_jwt(w, b, "\"sub\":\"bob\"", ""));
    drain_all(w);
    assert_int_equal(w->fs.nident, 2);
    w_sendf(w, a, "{\"type\":\"say\",\"to_uid\":%u,\"content\":\"secret\"}", chat_user_uid(w->users[b]));
    drain_all(w);
    w_disconnect(w, b, 0);
    drain_all(w);
    /* bob again, a new token and a new name: his history */
    int c = w_conn(w);
    w->now += 60000;
    free(w_login_jwt(w, c, "\"sub\":\"bob\",\"name\":\"Robert\"", ",\"last_id\":0"));
    pop_type(w, c, "user_list");
    pop_type(w, c, "login");
    pop_type(w, c, "session");
    assert_int_equal(history_count(w, c, "secret"), 1);
    drain_all(w);
    assert_int_equal(w->fs.nident, 2);
    /* someone signed as "bob2" and named bob: nothing */
    int d = w_conn(w);
    free(w_login_jwt(w, d, "\"sub\":\"bob2\",\"name\":\"bob\"", ",\"last_id\":0"));
    pop_type(w, d, "user_list");
    pop_type(w, d, "login");
    pop_type(w, d, "session");
    assert_int_equal(history_count(w, d, "secret"), 0);
    drain_all(w);
}

/* A store that cannot keep an identity: the login is refused, retryable. */
static void test_identity_store_failure(void **state)
{
    world *w = w_open(state, NULL, 1, true);
    int a = w_conn(w);
    w->fs.fail_ident = true;
    w_send(w, a, "{\"type\":\"login\",\"name\":\"a\"}");
    expect_error(w, a, "unavailable");
    assert_int_equal(chat_user_uid(w->users[a]), 0);
    w->fs.fail_ident = false;
    free(w_login_session(w, a, "a", ""));
}

static void test_store_failures(void **state)
{
    world *w = w_open(state, NULL, 1, true);
    int a = w_conn(w), b = w_conn(w);
    w_login(w, a, "a");
    w_login(w, b, "b");
    /* a message that cannot be stored is not delivered */
    w->fs.fail_append = true;
    w_send(w, a, "{\"type\":\"say\",\"content\":\"lost\"}");
    expect_error(w, a, "unavailable");
    w->fs.fail_append = false;
    w_send(w, a, "{\"type\":\"say\",\"content\":\"kept\"}");
    assert_int_equal(int_of(pop_type(w, b, "say")->js, "id"), 1);   /* no id was used up */
    drain_all(w);
    /* a room whose last id is unknown cannot be opened: the store is the
     * contract's "unavailable", not an internal fault */
    int c = w_conn(w);
    w->fs.fail_last_id = true;
    w_send(w, c, "{\"type\":\"login\",\"name\":\"c\",\"room_id\":\"new\"}");
    expect_error(w, c, "unavailable");
    assert_int_equal(chat_user_uid(w->users[c]), 0);
    assert_int_equal(chat_room_count(w->c), 1);
    w->fs.fail_last_id = false;
    /* a history that cannot be read: logged in, told so */
    w->fs.fail_range = true;
    w_send(w, c, "{\"type\":\"login\",\"name\":\"c\"}");
    pop_type(w, c, "user_list");
    pop_type(w, c, "login");
    pop_type(w, a, "login");
    pop_type(w, b, "login");
    pop_type(w, c, "session");
    expect_error(w, c, "unavailable");
    assert_true(chat_user_uid(w->users[c]) > 0);
}

/* ---- a turn's output held until it is stored (issue 10, item 5) ---------------------- */

static void test_failed_commit_delivers_no_say(void **state)
{
    world *w = w_open(state, NULL, 1, true);
    int a = w_conn(w), b = w_conn(w), c = w_conn(w);
    w_login(w, a, "a");
    w_login(w, b, "b");
    w_send(w, a, "{\"type\":\"say\",\"content\":\"one\"}");
    assert_int_equal(int_of(pop_type(w, b, "say")->js, "id"), 1);
    drain_all(w);
    /* one turn: a public say, a private one, and a login (not a say) */
    w->fs.fail_commit = true;
    w_text_in_turn(w, a, "{\"type\":\"say\",\"content\":\"lost\"}");
    char priv[128];
    snprintf(priv, sizeof priv, "{\"type\":\"say\",\"to_uid\":%u,\"content\":\"lost too\"}",
             chat_user_uid(w->users[a]));
    w_text_in_turn(w, b, priv);
    w_text_in_turn(w, c, "{\"type\":\"login\",\"name\":\"c\"}");
    none_all(w);                                /* nothing before the turn ends */
    assert_int_equal(chat_end_turn(w->c), 2);   /* two says refused */
    /* the says reach nobody; the login goes on, in order; the senders hear */
    pop_type(w, c, "user_list");
    pop_type(w, c, "login");
    pop_type(w, c, "session");
    assert_string_equal(str_of(pop_type(w, a, "login")->js, "name"), "c");
    assert_string_equal(str_of(pop_type(w, b, "login")->js, "name"), "c");
    ftrack *h = pop_type(w, c, "history");      /* the stored part only */
    assert_int_equal(json_array_size(json_object_get(h->js, "messages")), 1);
    ftrack *e = pop_type(w, b, "error");
    assert_string_equal(str_of(e->js, "code"), "unavailable");
    expect_error(w, a, "unavailable");
}

static void test_failed_commit_ids_reloaded(void **state)
{
    world *w = w_open(state, NULL, 1, true);
    int a = w_conn(w), b = w_conn(w);
    w_login(w, a, "a");
    w_login(w, b, "b");
    w->fs.fail_commit = true;
    w_send(w, a, "{\"type\":\"say\",\"content\":\"lost\"}");
    expect_error(w, a, "unavailable");
    w_send(w, a, "{\"type\":\"say\",\"content\":\"lost\"}");
    expect_error(w, a, "unavailable");
    w->fs.fail_commit = false;
    /* ids the store never kept (and nobody saw) are given again: 1 */
    w_send(w, a, "{\"type\":\"say\",\"content\":\"kept\"}");
    ftrack *t = pop_type(w, b, "say");
    assert_int_equal(int_of(t->js, "id"), 1);
    assert_ptr_equal(pop_type(w, a, "say")->f, t->f);
    none_all(w);
    assert_int_equal(w->fs.n, 1);
}

static void test_history_includes_says_of_the_login_turn(void **state)
{
    world *w = w_open(state, NULL, 1, true);
    int a = w_conn(w), b = w_conn(w);
    w_login(w, a, "a");
    /* b logs in in the turn a's say is made: not in the room for it live,
     * it finds it in its history, once stored */
    w_text_in_turn(w, a, "{\"type\":\"say\",\"content\":\"same turn\"}");
    w_text_in_turn(w, b, "{\"type\":\"login\",\"name\":\"b\",\"last_id\":0}");
    chat_end_turn(w->c);
    pop_type(w, b, "user_list");
    pop_type(w, b, "login");
    pop_type(w, b, "session");
    json_t *msgs = json_object_get(pop_type(w, b, "history")->js, "messages");
    assert_int_equal(json_array_size(msgs), 1);
    assert_string_equal(str_of(json_array_get(msgs, 0), "content"), "same turn");
    none(w, b);
}

/* ---- history and user lists in pieces (issue 10, item 3) ---------------------------- */

static size_t answer_drains(world *w)
{
    size_t n = w->io.n_drain_asked;
    void *asked[MAX_CONNS];
    memcpy(asked, w->io.drain_asked, n * sizeof *asked);
    w->io.n_drain_asked = 0;
    for (size_t k = 0; k < n; k++) {
        int i = (int)((fconn *)asked[k] - w->conns);
        if (!w->conns[i].gone) chat_drained(w->c, w->users[i]);
    }
    chat_end_turn(w->c);
    return n;
}

static void test_history_in_pieces_as_the_connection_drains(void **state)
{
    chat_limits l = test_limits();
    l.chunk_bytes = 700;
    world *w = w_open_io(state, &l, 1, true, true);
    int a = w_conn(w), b = w_conn(w);
    w_login(w, a, "a");
    say_n(w, a, 12, "message number %d, long enough to matter");
    /* every piece but the last asks to hear of the drain, and waits for it */
    w_send(w, b, "{\"type\":\"login\",\"name\":\"b\",\"last_id\":0,\"history_names\":true}");
    pop_type(w, b, "user_list");
    pop_type(w, b, "login");
    pop_type(w, b, "session");
    drain_all_but(w, b);
    json_int_t next = 1;
    int pieces = 0;
    for (;;) {
        ftrack *h = pop_type(w, b, "history");
        pieces++;
        assert_true(h->len <= 700);
        json_t *msgs = json_object_get(h->js, "messages");
        assert_true(json_array_size(msgs) >= 1);
        for (size_t k = 0; k < json_array_size(msgs); k++) {
            json_t *m = json_array_get(msgs, k);
            assert_keys(m, "type,from_uid,to_uid,content,time,id,from_name");
            assert_int_equal(int_of(m, "id"), next++);
        }
        none(w, b);
        if (!json_object_get(h->js, "more")) {
            assert_keys(h->js, "type,messages");
            assert_int_equal(w->io.n_drain_asked, 0);
            break;
        }
        assert_keys(h->js, "type,messages,more");
        assert_true(json_is_true(json_object_get(h->js, "more")));
        assert_int_equal(w->io.n_drain_asked, 1);
        if (pieces == 2) {
            /* live says reach b between pieces, and are not repeated */
            w_send(w, a, "{\"type\":\"say\",\"content\":\"live\"}");
            assert_int_equal(int_of(pop_type(w, b, "say")->js, "id"), 13);
            drain_all_but(w, b);
        }
        assert_int_equal(answer_drains(w), 1);
    }
    assert_int_equal(next, 13);
    assert_true(pieces >= 3);
    /* a drain notice nobody asked for changes nothing */
    chat_drained(w->c, w->users[b]);
    chat_end_turn(w->c);
    none_all(w);
}

static void test_history_piece_pending_when_client_leaves(void **state)
{
    chat_limits l = test_limits();
    l.chunk_bytes = 400;
    world *w = w_open_io(state, &l, 1, true, true);
    int a = w_conn(w), b = w_conn(w);
    w_login(w, a, "a");
    say_n(w, a, 6, "message number %d, long enough to matter");
    w_send(w, b, "{\"type\":\"login\",\"name\":\"b\",\"last_id\":0}");
    assert_int_equal(w->io.n_drain_asked, 1);
    w_disconnect(w, b, 0);
    w->io.n_drain_asked = 0;                    /* the server drops the request with b */
    drain_all(w);
    w_send(w, a, "{\"type\":\"say\",\"content\":\"still fine\"}");
    pop_type(w, a, "say");
}

static void test_user_list_in_pieces(void **state)
{
    chat_limits l = test_limits();
    l.chunk_bytes = 300;
    world *w = w_open_io(state, &l, 1, true, true);
    int n = 20;
    uint32_t uids[20];
    for (int i = 0; i < n; i++) {
        int c = w_conn(w);
        char name[32];
        snprintf(name, sizeof name, "member-%02d", i);
        /* lists of up to 300 bytes come whole: the seed's shape */
        w_sendf(w, c, "{\"type\":\"login\",\"name\":\"%s\"}", name);
        ftrack *ul = pop_type(w, c, "user_list");
        if (i < 3) assert_keys(ul->js, "type,user_list");     /* short: whole, as the seed's */
        while (w->io.n_drain_asked) answer_drains(w);
        drain_all(w);
        uids[i] = chat_user_uid(w->users[c]);
    }
    int late = w_conn(w);
    w_send(w, late, "{\"type\":\"login\",\"name\":\"late\"}");
    ftrack *first = pop_type(w, late, "user_list");
    assert_keys(first->js, "type,user_list,more");
    assert_true(first->len <= 300);
    pop_type(w, late, "login");                 /* the broadcast, after the first piece */
    pop_type(w, late, "session");               /* right after the broadcast */
    /* one of the members leaves before its piece is sent: it is left out */
    int leaving = n - 2;
    w_disconnect(w, leaving, 0);
    pop_type(w, late, "logout");
    uint32_t got[32];
    size_t ng = 0;
    json_t *list = json_object_get(first->js, "user_list");
    for (size_t k = 0; k < json_array_size(list); k++) got[ng++] = (uint32_t)int_of(json_array_get(list, k), "uid");
    for (;;) {
        assert_int_equal(answer_drains(w), 1);
        ftrack *p = pop_type(w, late, "user_list");
        assert_true(p->len <= 300);
        list = json_object_get(p->js, "user_list");
        for (size_t k = 0; k < json_array_size(list); k++) got[ng++] = (uint32_t)int_of(json_array_get(list, k), "uid");
        if (!json_object_get(p->js, "more")) break;
        assert_keys(p->js, "type,user_list,more");
    }
    assert_int_equal(w->io.n_drain_asked, 1);   /* then the history */
    answer_drains(w);
    none(w, late);                              /* an empty room history: none */
    size_t k = 0;
    for (int i = 0; i < n; i++)
        if (i != leaving) assert_int_equal(got[k++], uids[i]);
    assert_int_equal(got[k++], chat_user_uid(w->users[late]));
    assert_int_equal(k, ng);
}

/* ---- rooms per minute ------------------------------------------------------------------------ */

static int w_conn_key(world *w, const char *key)
{
    int i = w_conn(w);
    chat_disconnect(w->c, w->users[i], w->now, 1);
    w->users[i] = chat_connect(w->c, &w->conns[i], key, strlen(key));
    assert_non_null(w->users[i]);
    return i;
}

/* A room with a history that empties and comes back is no new room: its
 * last member may leave and return as often as they like. */
static void test_room_with_history_comes_back_free(void **state)
{
    chat_limits l = test_limits();
    l.rooms_per_minute = 1;
    world *w = w_open(state, &l, 1, true);
    int a = w_conn_key(w, "10.0.0.1");
    w_login_room(w, a, "a", "\"talk\"");
    w_send(w, a, "{\"type\":\"say\",\"content\":\"kept\"}");
    pop_type(w, a, "say");
    for (int k = 0; k < 5; k++) {
        w_disconnect(w, a, 0);
        a = w_conn_key(w, "10.0.0.1");
        w_login_room(w, a, "a", "\"talk\"");
        drain_all(w);
    }
    /* a room never spoken in still counts */
    int b = w_conn_key(w, "10.0.0.1");
    w_send(w, b, "{\"type\":\"login\",\"name\":\"b\",\"room_id\":\"new\"}");
    expect_error(w, b, "too_many_rooms");
}

static void test_rooms_per_minute_per_key(void **state)
{
    chat_limits l = test_limits();
    l.rooms_per_minute = 2;
    world *w = w_open(state, &l, 1, false);
    int a = w_conn_key(w, "10.0.0.1"), b = w_conn_key(w, "10.0.0.1");
    int c = w_conn_key(w, "10.0.0.1"), d = w_conn_key(w, "10.0.0.2");
    w_login_room(w, a, "a", "\"r1\"");
    w_login_room(w, b, "b", "\"r2\"");
    w_send(w, c, "{\"type\":\"login\",\"name\":\"c\",\"room_id\":\"r3\"}");
    expect_error(w, c, "too_many_rooms");
    assert_int_equal(chat_room_count(w->c), 2);
    w_login_room(w, d, "d", "\"r3\"");          /* another key has its own count */
    w_login_room(w, c, "c", "\"r1\"");          /* a room that is up is no new one */
    /* a room that emptied is a new one when it comes back */
    int e = w_conn_key(w, "10.0.0.1");
    w_disconnect(w, b, 0);
    w_send(w, e, "{\"type\":\"login\",\"name\":\"e\",\"room_id\":\"r2\"}");
    expect_error(w, e, "too_many_rooms");
    w->now += 60000;                            /* a minute later */
    w_login_room(w, e, "e", "\"r2\"");
}

static void test_rooms_per_minute_table_is_swept(void **state)
{
    chat_limits l = test_limits();
    l.rooms_per_minute = 1;
    world *w = w_open(state, &l, 1, false);
    char key[16], room[16];
    for (int i = 0; i < 1200; i++) {
        snprintf(key, sizeof key, "k%d", i);
        snprintf(room, sizeof room, "\"r%d\"", i % 3);
        int c = w_conn_key(w, key);
        w_login_room(w, c, "x", room);
        w_disconnect(w, c, 1);
        if (i == 599) w->now += 61000;
    }
    /* the keys of the first minute went with a sweep; those of this one stay */
    int c = w_conn_key(w, "k1199");
    w_send(w, c, "{\"type\":\"login\",\"name\":\"x\",\"room_id\":\"new\"}");
    expect_error(w, c, "too_many_rooms");
}


/* ---- cluster mode: the bus ------------------------------------------------ */

typedef struct fbus {
    uint32_t logins[16], logouts[16];
    size_t n_logins, n_logouts, n_says;
    store_msg last_say;
    char content[64];
    int login_rc;               /* what login answers (1 once: the uid is taken) */
    int say_rc;
} fbus;

static int fb_login(void *ctx, const char *room, size_t room_len, uint32_t uid, const char *name,
                    size_t name_len, uint64_t ident)
{
    fbus *b = ctx;
    int rc = b->login_rc;
    if (rc == 1) b->login_rc = 0;
    if (rc == 0 && b->n_logins < 16) b->logins[b->n_logins++] = uid;
    return rc;
}

static void fb_logout(void *ctx, const char *room, size_t room_len, uint32_t uid)
{
    fbus *b = ctx;
    if (b->n_logouts < 16) b->logouts[b->n_logouts++] = uid;
}

static int fb_say(void *ctx, const char *room, size_t room_len, const store_msg *m)
{
    fbus *b = ctx;
    if (b->say_rc) return b->say_rc;
    b->n_says++;
    b->last_say = *m;
    snprintf(b->content, sizeof b->content, "%.*s", (int)m->content_len, m->content);
    b->last_say.content = b->content;
    return 0;
}

static fbus the_bus;

static world *w_open_bus(void **state)
{
    chat_limits l = test_limits();
    world *w = w_open(state, &l, 1, true);
    memset(&the_bus, 0, sizeof the_bus);
    chat_bus bus = { &the_bus, fb_login, fb_logout, fb_say };
    chat_set_bus(w->c, &bus);
    return w;
}

/* What the bus brings back: a stored say with its id. */
static void bus_deliver(world *w, const char *room, uint64_t id, uint32_t from, uint32_t to, const char *text)
{
    store_msg m = { .id = id, .ts = (int64_t)(w->now / 1000), .from_uid = from, .to_uid = to,
                    .content = text, .content_len = strlen(text) };
    chat_bus_say(w->c, room, strlen(room), &m);
    chat_end_turn(w->c);
}

/* A say goes to the bus, and to no one until the bus brings it back; then
 * to everyone in the room, one frame, and once only. */
static void test_bus_say_comes_back_from_the_bus(void **state)
{
    world *w = w_open_bus(state);
    int a = w_conn(w), b = w_conn(w);
    uint32_t ua = w_login(w, a, "a"), ub = w_login(w, b, "b");
    assert_int_equal(the_bus.n_logins, 2);
    assert_int_equal(the_bus.logins[0], ua);
    assert_int_equal(the_bus.logins[1], ub);
    w_send(w, a, "{\"type\":\"say\",\"content\":\"oi\"}");
    none_all(w);
    assert_int_equal(the_bus.n_says, 1);
    assert_int_equal(the_bus.last_say.from_uid, ua);
    assert_string_equal(the_bus.content, "oi");
    assert_int_equal(w->fs.append_calls, 0);
    bus_deliver(w, "1", 1, ua, 0, "oi");
    ftrack *t = pop_type(w, a, "say");
    assert_int_equal(int_of(t->js, "id"), 1);
    assert_int_equal(t->sends, 2);
    pop_type(w, b, "say");
    bus_deliver(w, "1", 1, ua, 0, "oi");         /* again: not past the room's last id */
    none_all(w);
    w_disconnect(w, a, 0);
    assert_int_equal(the_bus.n_logouts, 1);
    assert_int_equal(the_bus.logouts[0], ua);
}

/* Other servers' users are in the rooms (user lists, private says) but
 * get nothing from this one. */
static void test_bus_users_of_other_servers(void **state)
{
    world *w = w_open_bus(state);
    int a = w_conn(w);
    uint32_t ua = w_login(w, a, "a");
    chat_bus_login(w->c, "1", 1, 77, "z&amp;", 6, 9, w->now);
    chat_end_turn(w->c);
    ftrack *t = pop_type(w, a, "login");
    assert_int_equal(int_of(t->js, "uid"), 77);
    assert_string_equal(str_of(t->js, "name"), "z&amp;");
    chat_bus_login(w->c, "1", 1, 77, "z", 1, 9, w->now);      /* known: nothing */
    chat_end_turn(w->c);
    none_all(w);
    int c = w_conn(w);
    w_send(w, c, "{\"type\":\"login\",\"name\":\"c\"}");
    t = pop_type(w, c, "user_list");
    json_t *list = json_object_get(t->js, "user_list");
    assert_int_equal(json_array_size(list), 3);
    assert_int_equal(int_of(json_array_get(list, 1), "uid"), 77);
    drain_all(w);
    w_send(w, a, "{\"type\":\"say\",\"to_uid\":77,\"content\":\"psiu\"}");
    none_all(w);
    assert_int_equal(the_bus.last_say.to_uid, 77);
    assert_int_equal(the_bus.last_say.to_ident, 9);
    bus_deliver(w, "1", 1, 77, ua, "de volta");   /* a private say to a: a only */
    pop_type(w, a, "say");
    none_all(w);
    chat_bus_logout(w->c, ua, w->now);            /* a is ours: not the bus's to end */
    chat_end_turn(w->c);
    none_all(w);
    chat_bus_logout(w->c, 77, w->now);
    chat_end_turn(w->c);
    assert_int_equal(int_of(pop_type(w, a, "logout")->js, "uid"), 77);
    pop_type(w, c, "logout");
    chat_bus_login(w->c, "outra", 5, 78, "y", 1, 0, w->now);  /* freed with the chat */
    chat_end_turn(w->c);
    assert_int_equal(chat_user_count(w->c), 3);
}

/* An unreachable bus refuses logins and says; a uid taken elsewhere is
 * replaced; a say the bus refuses later is told to its sender. */
static void test_bus_refusals(void **state)
{
    world *w = w_open_bus(state);
    int a = w_conn(w);
    the_bus.login_rc = -1;
    w_send(w, a, "{\"type\":\"login\",\"name\":\"a\"}");
    expect_error(w, a, "unavailable");
    assert_int_equal(chat_user_uid(w->users[a]), 0);
    assert_int_equal(chat_room_count(w->c), 0);
    the_bus.login_rc = 1;
    uint32_t ua = w_login(w, a, "a");
    assert_int_equal(the_bus.n_logins, 1);
    assert_int_equal(the_bus.logins[0], ua);
    the_bus.say_rc = -1;
    w_send(w, a, "{\"type\":\"say\",\"content\":\"x\"}");
    expect_error(w, a, "unavailable");
    chat_say_refused(w->c, ua);
    chat_end_turn(w->c);
    expect_error(w, a, "unavailable");
    chat_say_refused(w->c, 12345);               /* someone gone: nothing */
    chat_end_turn(w->c);
    none_all(w);
}

/* ---- the operator's controls ---------------------------------------------- */

static const char *conn_name(void *conn)
{
    return "192.0.2.1";
}

/* The JSON array chat_admin_rooms / chat_admin_users wrote. */
static json_t *admin_list(world *w, bool rooms, size_t offset, size_t limit)
{
    sbuf o;
    sbuf_init(&o);
    if (rooms) chat_admin_rooms(w->c, &o, offset, limit);
    else chat_admin_users(w->c, &o, offset, limit, conn_name);
    json_t *j = json_loadb(o.p, o.len, 0, NULL);
    sbuf_free(&o);
    assert_true(json_is_array(j));
    return j;
}

static void test_admin_lists(void **state)
{
    world *w = w_open(state, NULL, 1, true);
    int a = w_conn(w), b = w_conn(w), c = w_conn(w);
    uint32_t ua = w_login_room(w, a, "ana", "\"x\"");
    w_login_room(w, b, "b<b>", "\"x\"");
    w_login_room(w, c, "cid", "7");
    w_send(w, a, "{\"type\":\"say\",\"content\":\"hi\"}");
    drain_all(w);
    json_t *rooms = admin_list(w, true, 0, 100);
    assert_int_equal(json_array_size(rooms), 2);
    size_t i;
    json_t *r;
    json_array_foreach(rooms, i, r) {
        assert_keys(r, "id,members,last_id");
        bool x = strcmp(str_of(r, "id"), "x") == 0;
        assert_int_equal(int_of(r, "members"), x ? 2 : 1);
        assert_int_equal(int_of(r, "last_id"), x ? 1 : 0);
    }
    json_decref(rooms);
    json_t *users = admin_list(w, false, 0, 100);
    assert_int_equal(json_array_size(users), 3);
    json_array_foreach(users, i, r) {
        assert_keys(r, "uid,name,room,address,since");
        assert_string_equal(str_of(r, "address"), "192.0.2.1");
        assert_int_equal(int_of(r, "since"), (json_int_t)T0);
        if (int_of(r, "uid") == ua) assert_string_equal(str_of(r, "name"), "ana");
    }
    json_decref(users);
    /* pages: each user once, none past the end */
    uint32_t seen = 0;
    for (size_t off = 0; off < 3; off++) {
        json_t *p = admin_list(w, false, off, 1);
        assert_int_equal(json_array_size(p), 1);
        seen += (uint32_t)int_of(json_array_get(p, 0), "uid");
        json_decref(p);
    }
    assert_int_equal(seen, ua + chat_user_uid(w->users[b]) + chat_user_uid(w->users[c]));
    json_t *past = admin_list(w, false, 3, 10);
    assert_int_equal(json_array_size(past), 0);
    json_decref(past);
}

/* A world with a history and two users in room 1: ana (a) and bob (b). */
static world *w_ana_and_bob(void **state, int *a, int *b, uint32_t *ub)
{
    world *w = w_open(state, NULL, 1, true);
    *a = w_conn(w);
    *b = w_conn(w);
    w_login(w, *a, "ana");
    *ub = w_login(w, *b, "bob");
    return w;
}

static void test_admin_kick(void **state)
{
    int a, b;
    uint32_t ub;
    world *w = w_ana_and_bob(state, &a, &b, &ub);
    assert_null(chat_admin_kick(w->c, 999999, "x", 1));
    assert_ptr_equal(chat_admin_kick(w->c, ub, "spam \"here\"", 11), &w->conns[b]);
    chat_end_turn(w->c);
    ftrack *t = pop_type(w, b, "error");
    expect_text(t, "{\"type\":\"error\",\"code\":\"kicked\",\"message\":\"spam \\\"here\\\"\"}");
    none_all(w);
    /* heard no more, and not kicked twice */
    w_send(w, b, "{\"type\":\"say\",\"content\":\"still?\"}");
    none_all(w);
    assert_null(chat_admin_kick(w->c, ub, "x", 1));
    w_disconnect(w, b, 0);
    pop_type(w, a, "logout");
}

static void test_admin_delete(void **state)
{
    int a, b;
    uint32_t ub;
    world *w = w_ana_and_bob(state, &a, &b, &ub);
    for (int k = 0; k < 3; k++) w_sendf(w, a, "{\"type\":\"say\",\"content\":\"m%d\"}", k);
    drain_all(w);
    assert_int_equal(chat_admin_delete(w->c, "1", 1, 2), 1);
    chat_end_turn(w->c);
    expect_text(pop(w, a), "{\"type\":\"delete\",\"id\":2}");
    expect_text(pop(w, b), "{\"type\":\"delete\",\"id\":2}");
    none_all(w);
    assert_int_equal(chat_admin_delete(w->c, "1", 1, 2), 0);       /* gone already */
    assert_int_equal(chat_admin_delete(w->c, "other", 5, 1), 0);   /* no such room: nobody told */
    chat_end_turn(w->c);
    none_all(w);
    /* what later history replays read: the others only */
    assert_int_equal(w->fs.n, 2);
    assert_int_equal(w->fs.r[0].m.id, 1);
    assert_int_equal(w->fs.r[1].m.id, 3);
}

static void test_admin_delete_needs_a_store(void **state)
{
    world *w = w_open(state, NULL, 1, false);
    assert_int_equal(chat_admin_delete(w->c, "1", 1, 1), -1);
}

static void test_banned_name_refused_at_login(void **state)
{
    world *w = w_open(state, NULL, 1, true);
    int a = w_conn(w);
    w_send(w, a, "{\"type\":\"login\",\"name\":\"  banned \"}");
    expect_error(w, a, "banned");
    assert_int_equal(chat_user_uid(w->users[a]), 0);
    w_login(w, a, "banned2");
}

#define T(f) cmocka_unit_test_teardown(f, w_teardown)

/* ---- errors to a client that does not read them (issue 10) ------------------------------ */

/* Messages that each earn an error, a thousand in one turn from a client
 * that reads nothing: a bounded number of errors is queued and the chat
 * asks to hear when they are read; until then the rest are dropped, and
 * once they are read errors flow again. */
static void test_errors_wait_for_a_client_that_does_not_read(void **state)
{
    world *w = w_open_io(state, NULL, 1, false, true);
    int a = w_conn(w);
    for (int k = 0; k < 1000; k++) chat_text(w->c, w->users[a], "[]", 2, w->now);
    chat_end_turn(w->c);
    assert_int_equal(pending(w, a), 256);
    assert_int_equal(w->io.n_drain_asked, 1);
    drain_all(w);
    w_send(w, a, "[]");
    assert_int_equal(pending(w, a), 0);
    assert_int_equal(answer_drains(w), 1);
    w_send(w, a, "[]");
    expect_error(w, a, "bad_json");
}

/* A client that reads what it is sent gets every error. */
static void test_a_client_that_reads_gets_every_error(void **state)
{
    world *w = w_open_io(state, NULL, 1, false, true);
    int a = w_conn(w);
    for (int k = 0; k < 1000; k++) {
        w_send(w, a, "[]");
        expect_error(w, a, "bad_json");
        answer_drains(w);
    }
}

int main(void)
{
    /* the contract's times are local; these tests write them in UTC */
    setenv("TZ", "UTC", 1);
    tzset();
    const struct CMUnitTest tests[] = {
        T(test_admin_lists),
        T(test_admin_kick),
        T(test_admin_delete),
        T(test_admin_delete_needs_a_store),
        T(test_banned_name_refused_at_login),
        T(test_seed_session),
        T(test_bus_say_comes_back_from_the_bus),
        T(test_bus_users_of_other_servers),
        T(test_bus_refusals),
        T(test_key_order_of_every_message),
        T(test_user_list_in_join_order),
        T(test_time_format),
        T(test_time_is_local_time),
        T(test_uid_zero_until_login),
        T(test_rooms_isolate_messages),
        T(test_room_id_number_is_the_string),
        T(test_room_id_equal_numbers_same_room),
        T(test_room_id_bad_values),
        T(test_room_lives_while_occupied),
        T(test_private_say_to_target_and_echo),
        T(test_private_say_to_self_once),
        T(test_private_say_no_such_user),
        T(test_logout_to_the_room_on_disconnect),
        T(test_quiet_disconnect_sends_nothing),
        T(test_disconnect_before_login_or_alone),
        T(test_error_bad_json),
        T(test_error_unknown_type),
        T(test_pong_is_ignored),
        T(test_rate_counts_every_message_but_the_heartbeat),
        T(test_error_not_logged_in),
        T(test_error_already_logged_in),
        T(test_error_bad_name),
        T(test_error_bad_content),
        T(test_errors_only_to_the_offender),
        T(test_html_escaping_of_name_and_content),
        T(test_line_breaks_get_br),
        T(test_content_json_round_trip),
        T(test_name_is_trimmed),
        T(test_name_limit_in_code_points),
        T(test_name_limit_is_configurable),
        T(test_name_control_characters),
        T(test_content_limit_in_code_points),
        T(test_content_limit_is_configurable),
        T(test_rate_limit_token_bucket),
        T(test_rate_limit_before_login),
        T(test_errors_wait_for_a_client_that_does_not_read),
        T(test_a_client_that_reads_gets_every_error),
        T(test_default_limits_allow_20_per_second),
        T(test_unique_uids_many_logins),
        T(test_uid_seed_and_wrap),
        T(test_broadcast_is_one_frame),
        T(test_frames_released_once),
        T(test_no_frame_when_out_of_memory),
        T(test_store_ids_per_room),
        T(test_store_ids_continue_from_last_id),
        T(test_store_history_after_login),
        T(test_store_history_limit),
        T(test_store_resume_after_last_id),
        T(test_store_resume_cap),
        T(test_session_token_new_and_continued),
        T(test_session_order_and_no_store),
        T(test_identity_last_use),
        T(test_store_private_replay_by_identity),
        T(test_identity_store_failure),
        T(test_signed_login_needs_a_good_token),
        T(test_signed_rooms_claim),
        T(test_signed_identity_is_the_sub),
        T(test_store_failures),
        T(test_failed_commit_delivers_no_say),
        T(test_failed_commit_ids_reloaded),
        T(test_history_includes_says_of_the_login_turn),
        T(test_history_in_pieces_as_the_connection_drains),
        T(test_history_piece_pending_when_client_leaves),
        T(test_user_list_in_pieces),
        T(test_room_with_history_comes_back_free),
        T(test_rooms_per_minute_per_key),
        T(test_rooms_per_minute_table_is_swept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
