/* hub.c -- where the chat runs and how the event loops reach it.
 *
 * With one thread the chat is called directly from the connection's loop.
 * With more, the main loop runs the chat and its history, and each server
 * thread runs a loop over its own connections. Servers hand the hub their
 * connections' events (connect, text, leave) once per loop turn; the hub
 * answers, once per turn, with each server's list of deliveries: a
 * connection and a frame. A broadcast is one frame however many recipients
 * and threads it has: a delivery is a pointer and a reference, never a
 * copy, and a lock is taken once per batch, never per recipient.
 *
 * A connection the chat knows is never freed behind the hub's back: its
 * server keeps the memory until the hub answers a leave with a release,
 * which comes after every delivery the hub had queued to it. */
#include "serve_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- vectors and queues ------------------------------------------------- */

/* Running out of memory here would lose events with no one to tell: the
 * process stops with a message instead of running on inconsistent. */
static void xvec_push(xvec *v, xmsg m)
{
    if (v->len == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        xmsg *p = realloc(v->v, cap * sizeof *p);
        if (!p) {
            fprintf(stderr, "tagarela: out of memory between threads\n");
            abort();
        }
        v->v = p;
        v->cap = cap;
    }
    v->v[v->len++] = m;
}

static void xvec_free(xvec *v)
{
    free(v->v);
    memset(v, 0, sizeof *v);
}

static void xqueue_init(xqueue *q)
{
    uv_mutex_init(&q->lock);
    memset(&q->q, 0, sizeof q->q);
}

static void xqueue_free(xqueue *q)
{
    uv_mutex_destroy(&q->lock);
    xvec_free(&q->q);
}

/* Moves batch into q; batch is left empty (possibly with a new buffer). */
static void xqueue_put(xqueue *q, xvec *batch)
{
    uv_mutex_lock(&q->lock);
    if (q->q.len == 0) {
        xvec t = q->q;          /* hand the whole buffer over, take the empty one */
        q->q = *batch;
        *batch = t;
    } else {
        for (size_t i = 0; i < batch->len; i++) xvec_push(&q->q, batch->v[i]);
    }
    uv_mutex_unlock(&q->lock);
    batch->len = 0;
}

/* Takes everything queued into into, which must be empty. */
static void xqueue_take(xqueue *q, xvec *into)
{
    uv_mutex_lock(&q->lock);
    xvec t = q->q;
    q->q = *into;
    *into = t;
    uv_mutex_unlock(&q->lock);
}

/* ---- the chat's output -------------------------------------------------- */

static void *io_message_new(void *ctx, const char *json, size_t n)
{
    return ws_frame_new(WS_OP_TEXT, json, n);
}

static void io_message_send(void *ctx, void *cp, void *msg)
{
    hub *h = ctx;
    conn *c = cp;
    if (!h->threaded) {
        conn_send(c, msg);
        return;
    }
    xmsg m = { .c = c, .p = ws_frame_ref(msg), .kind = XM_SEND };
    xvec_push(&h->out[c->srv->id], m);
    h->pending++;
}

static void io_message_release(void *ctx, void *msg)
{
    ws_frame_unref(msg);
}

/* The chat wants to hear when what it queued to cp so far is written (the
 * next piece of a history waits for it). With threads, the request
 * travels behind the deliveries it follows. */
static void io_want_drain(void *ctx, void *cp)
{
    hub *h = ctx;
    conn *c = cp;
    if (!h->threaded) {
        c->want_drain = true;
        return;
    }
    xvec_push(&h->out[c->srv->id], (xmsg){ .c = c, .kind = XM_WANT_DRAIN });
}

/* ---- the connection's side ---------------------------------------------- */

static void post(conn *c, uint8_t kind, void *p, uint32_t n, uint8_t flag)
{
    xmsg m = { .c = c, .p = p, .n = n, .kind = kind, .flag = flag };
    xvec_push(&c->srv->to_hub, m);
}

void chat_link_connect(conn *c)
{
    server *s = c->srv;
    c->in_chat = true;
    if (s->threaded) {
        c->held = true;
        post(c, XM_CONNECT, NULL, 0, 0);
        return;
    }
    c->user = chat_connect(s->hub->chat, c, c->ip ? c->ip->addr : NULL, c->ip ? c->ip->len : 0);
    if (!c->user) {
        c->in_chat = false;
        conn_abort(c);
    }
}

void chat_link_text(conn *c, const uint8_t *data, size_t n)
{
    server *s = c->srv;
    if (!s->threaded) {
        chat_text(s->hub->chat, c->user, (const char *)data, n, wall_ms());
        return;
    }
    char *copy = malloc(n ? n : 1);
    if (!copy) {
        conn_close_ws(c, WS_CLOSE_INTERNAL, "out of memory");
        return;
    }
    memcpy(copy, data, n);
    post(c, XM_TEXT, copy, (uint32_t)n, 0);
}

void chat_link_binary(conn *c)
{
    server *s = c->srv;
    if (s->threaded) post(c, XM_BINARY, NULL, 0, 0);
    else chat_binary(s->hub->chat, c->user);
}

static void on_next_turn(uv_timer_t *t);

/* The events of the turn so far go to the hub now. */
static void post_to_hub(server *s)
{
    if (!s->to_hub.len) return;
    xqueue_put(&s->hub->inbox, &s->to_hub);
    uv_async_send(&s->hub->wake);
}

/* c's output queue has emptied after the chat asked (io_want_drain). It
 * may empty in a timer's callback, after which the loop would sleep in
 * poll before its turn ends: the next piece must not wait for an
 * unrelated event, so the notice goes at once (threads) or a zero timer
 * ends the turn (one thread). */
void chat_link_drained(conn *c)
{
    server *s = c->srv;
    if (!c->in_chat) return;
    if (s->threaded) {
        post(c, XM_DRAINED, NULL, 0, 0);
        post_to_hub(s);
        return;
    }
    chat_drained(s->hub->chat, c->user);
    uv_timer_start(&s->hub->coalesce, on_next_turn, 0, 0);
}

bool chat_link_leave(conn *c)
{
    server *s = c->srv;
    if (!c->in_chat) return c->held;
    c->in_chat = false;
    if (s->threaded) {
        post(c, XM_LEAVE, NULL, 0, s->stopping);
        return true;
    }
    chat_disconnect(s->hub->chat, c->user, wall_ms(), s->stopping);
    c->user = NULL;
    return false;
}

/* ---- the hub's side ----------------------------------------------------- */

static void hub_handle(hub *h, xmsg *m)
{
    conn *c = m->c;
    switch (m->kind) {
    case XM_CONNECT:
        c->user = chat_connect(h->chat, c, c->ip ? c->ip->addr : NULL, c->ip ? c->ip->len : 0);
        if (!c->user) xvec_push(&h->out[c->srv->id], (xmsg){ .c = c, .kind = XM_ABORT });
        break;
    case XM_TEXT:
        if (c->user) chat_text(h->chat, c->user, m->p, m->n, wall_ms());
        free(m->p);
        break;
    case XM_BINARY:
        if (c->user) chat_binary(h->chat, c->user);
        break;
    case XM_LEAVE:
        if (c->user) chat_disconnect(h->chat, c->user, wall_ms(), m->flag);
        c->user = NULL;
        xvec_push(&h->out[c->srv->id], (xmsg){ .c = c, .kind = XM_RELEASE });
        break;
    case XM_DRAINED:
        if (c->user) chat_drained(h->chat, c->user);
        break;
    case XM_DONE:
        hub_server_done(h, NULL);
        break;
    }
}

static void hub_on_wake(uv_async_t *a)
{
    hub *h = a->data;
    xqueue_take(&h->inbox, &h->spare);
    for (size_t i = 0; i < h->spare.len; i++) hub_handle(h, &h->spare.v[i]);
    h->spare.len = 0;
}

/* The chat's turn: its says committed, then its output handed to the
 * connections (or to the loops' batches). A failed commit is the chat's
 * to tell: their senders get "unavailable" and nobody gets the says. */
void hub_commit(hub *h)
{
    size_t refused = h->chat ? chat_end_turn(h->chat) : 0;
    if (refused)
        fprintf(stderr, "tagarela: history commit failed; %zu message(s) refused as unavailable\n", refused);
}

/* With one thread: a turn's end that cannot wait for the loop's check. */
static void on_next_turn(uv_timer_t *t)
{
    hub_end_turn(t->data);
}

/* Makes the messages durable, then lets them go out: a client never holds
 * a message the history could lose. */
static void hub_hand_over(hub *h)
{
    hub_commit(h);
    if (h->pending >= COALESCE_MIN_CONNS) h->last_big_hand_over = uv_hrtime();
    h->pending = 0;
    for (unsigned i = 0; i < h->n_servers; i++) {
        if (h->out[i].len == 0) continue;
        xqueue_put(&h->servers[i].inbox, &h->out[i]);
        uv_async_send(&h->servers[i].wake);
    }
}

static void on_hub_coalesce(uv_timer_t *t)
{
    hub_hand_over(t->data);
}

/* Once per turn of the main loop: the chat's turn ends (commit, then its
 * output). With one thread the server writes; with more, the hand-over to
 * the loops is coalesced as server_write() does for sockets. */
void hub_end_turn(hub *h)
{
    if (h->chat) {
        STAT_ADD(h->users, chat_user_count(h->chat) - STAT_GET(h->users));
        STAT_ADD(h->rooms, chat_room_count(h->chat) - STAT_GET(h->rooms));
    }
    if (!h->threaded) {
        /* While a write waits to be coalesced the turns add up in the chat,
         * which commits them once when the write goes (flush_now). */
        if (!uv_is_active((uv_handle_t *)&h->servers[0].coalesce)) hub_commit(h);
        server_flush(&h->servers[0]);
        return;
    }
    if (uv_is_active((uv_handle_t *)&h->coalesce)) return;     /* hub_hand_over commits */
    hub_commit(h);
    if (!coalesce_wait(&h->coalesce, on_hub_coalesce, h->pending, h->last_big_hand_over, h->stopping))
        hub_hand_over(h);
}

void hub_send_conn(hub *h, server *s, int fd, int port)
{
    xvec_push(&h->out[s->id], (xmsg){ .fd = fd, .kind = XM_NEWCONN, .flag = (uint8_t)port });
}

void hub_post_all(hub *h, uint8_t kind)
{
    if (!h->threaded) {
        if (kind == XM_STOP) server_stop(&h->servers[0]);
        else server_abort_all(&h->servers[0]);
        return;
    }
    for (unsigned i = 0; i < h->n_servers; i++)
        xvec_push(&h->out[i], (xmsg){ .kind = kind });
    uv_timer_stop(&h->coalesce);
    hub_hand_over(h);
}

/* ---- a server thread's side --------------------------------------------- */

static void server_handle(server *s, xmsg *m)
{
    switch (m->kind) {
    case XM_SEND:
        conn_send_owned(m->c, m->p);
        break;
    case XM_RELEASE:
        conn_release(m->c);
        break;
    case XM_WANT_DRAIN:
        m->c->want_drain = true;
        break;
    case XM_ABORT:
        if (m->c) conn_abort(m->c);
        else server_abort_all(s);
        break;
    case XM_NEWCONN:
        server_adopt(s, m->fd, m->flag);
        break;
    case XM_STOP:
        server_stop(s);
        break;
    }
}

static void server_on_wake(uv_async_t *a)
{
    server *s = a->data;
    xqueue_take(&s->inbox, &s->spare);
    for (size_t i = 0; i < s->spare.len; i++) server_handle(s, &s->spare.v[i]);
    s->spare.len = 0;
}

/* The end of a server thread's turn: its writes, then its events for the
 * chat, in one batch. */
void server_flush(server *s)
{
    server_write(s);
    if (s->threaded) post_to_hub(s);
}

static void server_thread(void *arg)
{
    server *s = arg;
    uv_run(s->loop, UV_RUN_DEFAULT);
    xvec done = {0};
    xvec_push(&done, (xmsg){ .kind = XM_DONE });
    xqueue_put(&s->hub->inbox, &done);
    xvec_free(&done);
    uv_async_send(&s->hub->wake);
}

/* ---- setting up and tearing down ---------------------------------------- */

static void close_hub_handles(hub *h)
{
    uv_close((uv_handle_t *)&h->trim, NULL);
    uv_close((uv_handle_t *)&h->commit, NULL);
    uv_close((uv_handle_t *)&h->coalesce, NULL);
    uv_close((uv_handle_t *)&h->sigint, NULL);
    uv_close((uv_handle_t *)&h->sigterm, NULL);
    if (h->threaded) uv_close((uv_handle_t *)&h->wake, NULL);
}

/* A server has no connection left while stopping (s NULL: a server thread
 * told us its loop is over). The main loop ends with the last one. */
void hub_server_done(hub *h, server *s)
{
    if (++h->servers_done == h->n_servers) close_hub_handles(h);
}

static int server_init(server *s, hub *h, unsigned id, bool threaded)
{
    memset(s, 0, sizeof *s);
    s->cfg = h->cfg;
    s->hub = h;
    s->id = id;
    s->threaded = threaded;
    s->readbuf = malloc(READ_BUFFER_SIZE);
    if (!s->readbuf) return -1;
    if (!threaded) {
        s->loop = h->loop;
        return 0;
    }
    if (uv_loop_init(&s->own_loop) < 0) return -1;
    s->loop = &s->own_loop;
    xqueue_init(&s->inbox);
    uv_async_init(s->loop, &s->wake, server_on_wake);
    s->wake.data = s;
    return 0;
}

static void server_free(server *s)
{
    if (s->threaded && s->loop) {
        uv_loop_close(s->loop);
        xqueue_free(&s->inbox);
        xvec_free(&s->to_hub);
        xvec_free(&s->spare);
    }
    free(s->readbuf);
}

int hub_init(hub *h, const server_config *cfg, uv_loop_t *loop, unsigned threads)
{
    memset(h, 0, sizeof *h);
    h->loop = loop;
    h->cfg = cfg;
    h->threaded = threads > 1;
    h->n_servers = threads;
    uv_mutex_init(&h->ip_lock);
    dict_init(&h->per_ip);
    char err[512];
    if (store_sqlite_open(&h->store, cfg->data_dir, &cfg->retention, err, sizeof err) < 0) {
        fprintf(stderr, "tagarela: cannot open the history in %s/tagarela.db: %s\n", cfg->data_dir, err);
        return -1;
    }
    chat_io io = { h, io_message_new, io_message_send, io_message_release, io_want_drain };
    uint32_t seed = (uint32_t)((uint64_t)wall_ms() * 2654435761u) % 900000000u + 100000000u;
    h->chat = chat_new(&cfg->chat, &io, seed, &h->store);
    h->servers = calloc(threads, sizeof *h->servers);
    h->out = calloc(threads, sizeof *h->out);
    if (!h->chat || !h->servers || !h->out) goto oom;
    for (unsigned i = 0; i < threads; i++)
        if (server_init(&h->servers[i], h, i, h->threaded) < 0) goto oom;
    uv_timer_init(loop, &h->coalesce);
    h->coalesce.data = h;
    if (h->threaded) {
        xqueue_init(&h->inbox);
        uv_async_init(loop, &h->wake, hub_on_wake);
        h->wake.data = h;
    }
    return 0;
oom:
    fprintf(stderr, "tagarela: out of memory\n");
    return -1;
}

int hub_start_threads(hub *h)
{
    if (!h->threaded) return 0;
    for (unsigned i = 0; i < h->n_servers; i++) {
        int rc = uv_thread_create(&h->servers[i].thread, server_thread, &h->servers[i]);
        if (rc < 0) {
            fprintf(stderr, "tagarela: cannot start a thread: %s\n", uv_strerror(rc));
            return -1;
        }
    }
    return 0;
}

void hub_join_threads(hub *h)
{
    if (!h->threaded) return;
    for (unsigned i = 0; i < h->n_servers; i++) uv_thread_join(&h->servers[i].thread);
}

void hub_free(hub *h)
{
    for (size_t i = 0; i < h->per_ip.nslots; i++)
        for (dict_entry *e = h->per_ip.slots[i]; e; e = e->next) free(e->value);
    dict_free(&h->per_ip);
    uv_mutex_destroy(&h->ip_lock);
    if (h->chat) chat_free(h->chat);
    if (h->store.ops) h->store.ops->close(h->store.impl);
    if (h->servers)
        for (unsigned i = 0; i < h->n_servers; i++) server_free(&h->servers[i]);
    if (h->out)
        for (unsigned i = 0; i < h->n_servers; i++) xvec_free(&h->out[i]);
    if (h->threaded) {
        xqueue_free(&h->inbox);
        xvec_free(&h->spare);
    }
    free(h->servers);
    free(h->out);
}
