/* hub.c -- where the chat runs and how the workers reach it.
 *
 * With one thread the chat is called directly from the connection's loop.
 * With more, the main loop runs the chat and its history, and each worker
 * thread runs a loop over its own connections. Workers hand the hub their
 * connections' events (connect, text, leave) once per loop turn; the hub
 * answers, once per turn, with each worker's list of deliveries: a
 * connection and a frame. A broadcast is one frame however many recipients
 * and threads it has: a delivery is a pointer and a reference, never a
 * copy, and a lock is taken once per batch, never per recipient.
 *
 * A connection the chat knows is never freed behind the hub's back: its
 * worker keeps the memory until the hub answers a leave with a release,
 * which comes after every delivery the hub had queued to it. */
#define _GNU_SOURCE             /* memmem */
#include "hub.h"
#include "admin.h"
#include "log.h"

#include <fcntl.h>
#include <sys/random.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "counters.h"
#include "sys.h"

/* ---- the chat's output -------------------------------------------------- */

/* What the chat makes while it reads a client's text carries the time
 * the text arrived: its last write gives the delivery latency. */
static void *io_message_new(void *ctx, const char *json, size_t n)
{
    hub *h = ctx;
    ws_frame *f = ws_frame_new(WS_OP_TEXT, json, n);
    if (f) f->born = h->arrival;
    return f;
}

/* Messages shorter than this go uncompressed to every client: see
 * docs/deflate.md for the measurements. */
#define DEFLATE_MIN 64
/* zlib's level for broadcasts: see docs/deflate.md. */
#define DEFLATE_LEVEL 1

/* The compressed twin of a broadcast's frame, made on the first deflate
 * recipient: on this thread, before the frame goes to any loop, so the
 * loops never see it change. NULL: the plain frame serves. */
static ws_frame *twin_of(hub *h, ws_frame *f)
{
    if (!f->twin_made) {
        f->twin_made = true;
        ws_header hd;
        int hs = ws_header_parse(f->bytes, f->len, &hd);
        if (hs > 0 && hd.len >= DEFLATE_MIN && !hd.rsv1) {
            f->twin = ws_frame_deflate(&h->deflater, hd.opcode, f->bytes + hs, (size_t)hd.len);
            if (f->twin) f->twin->born = f->born;
            COUNTER_ADD(h->compressions, 1);
        }
    }
    return f->twin;
}

/* Each message is compressed alone, so its matches reach back at most its
 * own length: it fits any window at least that long. */
static bool fits_window(const ws_frame *f, uint8_t bits)
{
    ws_header hd;
    return bits >= 15 || (ws_header_parse(f->bytes, f->len, &hd) > 0 && hd.len <= (1u << bits));
}

/* What c gets of f: its compressed twin when c agreed to permessage-
 * deflate and the message fits the window c asked us to keep to. */
static ws_frame *frame_for(hub *h, conn *c, ws_frame *f)
{
    if (!c->deflate) return f;
    ws_frame *t = twin_of(h, f);
    if (t && fits_window(f, c->deflate_bits)) {
        COUNTER_ADD(h->deflate_deliveries, 1);
        return t;
    }
    COUNTER_ADD(h->deflate_plain, 1);
    return f;
}

static void io_message_send(void *ctx, void *cp, void *msg)
{
    hub *h = ctx;
    conn *c = cp;
    msg = frame_for(h, c, msg);
    if (!h->threaded) {
        conn_send(c, msg);
        return;
    }
    xmsg m = { .c = c, .p = ws_frame_ref(msg), .kind = XM_SEND };
    xvec_push(&h->out[c->w->id], m);
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
    xvec_push(&h->out[c->w->id], (xmsg){ .c = c, .kind = XM_WANT_DRAIN });
}

static int io_name_banned(void *ctx, const char *name, size_t n)
{
    hub *h = ctx;
    return bans_name(&h->bans, name, n, wall_ms());
}

/* The client key per-client limits count: the address as counted against
 * --max-conns-per-ip (an IPv6 /64, the client a trusted proxy names). Made
 * from the conn's own copy of the address, not from c->ip: on a threaded
 * hub the worker may already have closed the conn and freed its ip entry. */
static chat_user *connect_user(hub *h, conn *c)
{
    net_addr a = { .len = c->addr_len };
    uint8_t key[8];
    size_t key_len = 0;
    if (a.len) {
        memcpy(a.bytes, c->addr, a.len);
        key_len = net_addr_limit_key(&a, key);
    }
    return chat_connect(h->chat, c, key, key_len);
}

/* ---- one thread: the chat called from the connection's loop -------------- */

static hub *hub_of(const worker *w)
{
    return w->link->arg;
}

static void direct_connect(conn *c)
{
    c->in_chat = true;
    c->user = connect_user(hub_of(c->w), c);
    if (!c->user) {
        c->in_chat = false;
        conn_abort(c);
    }
}

static void direct_text(conn *c, const uint8_t *data, size_t n)
{
    hub *h = hub_of(c->w);
    h->arrival = uv_hrtime();
    chat_text(h->chat, c->user, (const char *)data, n, wall_ms());
    h->arrival = 0;
}

static void direct_binary(conn *c)
{
    chat_binary(hub_of(c->w)->chat, c->user);
}

static bool direct_leave(conn *c)
{
    if (!c->in_chat) return c->held;
    c->in_chat = false;
    chat_disconnect(hub_of(c->w)->chat, c->user, wall_ms(), c->w->stopping);
    c->user = NULL;
    return false;
}

/* The chat's turn: its says committed, then its output handed to the
 * connections (or to the loops' batches). A failed commit is the chat's
 * to tell: their senders get "unavailable" and nobody gets the says. */
static void hub_commit(hub *h)
{
    size_t refused = h->chat ? chat_end_turn(h->chat) : 0;
    if (refused)
        log_event(LOG_ERROR, "history_commit_failed", "refused=%zu", refused);
}

static void hub_end_turn(hub *h);

/* With one thread: a turn's end that cannot wait for the loop's check. */
static void on_next_turn(uv_timer_t *t)
{
    hub_end_turn(t->data);
}

/* c's output queue has emptied after the chat asked (io_want_drain). It
 * may empty in a timer's callback, after which the loop would sleep in
 * poll before its turn ends: the next piece must not wait for an
 * unrelated event, so a zero timer ends the turn. */
static void direct_drained(conn *c)
{
    hub *h = hub_of(c->w);
    if (!c->in_chat) return;
    chat_drained(h->chat, c->user);
    uv_timer_start(&h->coalesce, on_next_turn, 0, 0);
}

/* The history's transaction is committed right before the writes: grouped
 * like them, and never after them. */
static void direct_before_write(worker *w)
{
    hub_commit(hub_of(w));
}

static void hub_worker_done(hub *h);

/* The answer to an operator's command as the shared buffer a connection
 * queues (NULL when out of memory: the connection is dropped). */
static ws_frame *admin_answer(hub *h, admin_cmd *cmd)
{
    sbuf out;
    sbuf_init(&out);
    admin_run(h, cmd, &out);
    ws_frame *f = out.oom ? NULL : ws_frame_raw(out.p, out.len);
    sbuf_free(&out);
    free(cmd);
    return f;
}

static void direct_admin(conn *c, admin_cmd *cmd)
{
    conn_http_answered(c, admin_answer(hub_of(c->w), cmd));
}

static void nothing(worker *w)
{
}


/* ---- more threads: events posted to the hub once per turn ---------------- */

static void post(conn *c, uint8_t kind, void *p, uint32_t n, uint8_t flag)
{
    xmsg m = { .c = c, .p = p, .n = n, .kind = kind, .flag = flag };
    xvec_push(&c->w->to_hub, m);
}

static void posted_connect(conn *c)
{
    c->in_chat = true;
    c->held = true;
    post(c, XM_CONNECT, NULL, 0, 0);
}

/* What a message on its way to the hub holds besides its bytes: its xmsg
 * and the copy's allocation. Without it a flood of two-byte messages would
 * hold thirty times the budget. */
#define HUB_MSG_COST (sizeof(xmsg) + 32)

/* An XM_LIMITED's n counts the refusals it stands for, not bytes. */
static size_t hub_cost(const xmsg *m)
{
    return m->kind == XM_LIMITED ? HUB_MSG_COST : m->n + HUB_MSG_COST;
}

/* Past CONN_HUB_INFLIGHT on the way, the connection is read no more until
 * the hub has worked through half of it (XM_RESUME). */
static void charge_hub(conn *c, size_t cost)
{
    if (__atomic_add_fetch(&c->to_hub, cost, __ATOMIC_SEQ_CST) <= CONN_HUB_INFLIGHT) return;
    __atomic_store_n(&c->hub_full, true, __ATOMIC_SEQ_CST);
    /* the hub may have worked through it meanwhile, seeing no flag */
    if (__atomic_load_n(&c->to_hub, __ATOMIC_SEQ_CST) <= CONN_HUB_INFLIGHT / 2)
        __atomic_store_n(&c->hub_full, false, __ATOMIC_SEQ_CST);
    conn_update_reading(c);
}

/* A refusal joins the one just before it when that is c's too: a flood of
 * tiny messages past the rate costs the hub one message per read. */
static void post_limited(conn *c)
{
    xvec *v = &c->w->to_hub;
    xmsg *last = v->len ? &v->v[v->len - 1] : NULL;
    if (last && last->c == c && last->kind == XM_LIMITED && last->n < UINT32_MAX) {
        last->n++;
        return;
    }
    xmsg m = { .c = c, .n = 1, .kind = XM_LIMITED };
    xvec_push(v, m);
    charge_hub(c, hub_cost(&m));
}

/* The chat's rate limit is checked here too, before the copy, the same
 * way: every message but the heartbeat takes a token. The heartbeat, which
 * the chat ignores, does not make the trip. */
static void posted_text(conn *c, const uint8_t *data, size_t n)
{
    const chat_limits *l = &c->w->cfg->chat;
    /* only a message naming "pong" can be one: the others are not parsed here */
    if (n <= CHAT_FREE_MAX && memmem(data, n, "pong", 4) && chat_is_heartbeat((const char *)data, n))
        return;
    if (!bucket_take(&c->in_rate, l->rate, l->burst, uv_now(c->w->loop))) {
        post_limited(c);
        return;
    }
    xmsg m = { .c = c, .n = (uint32_t)n, .kind = XM_TEXT, .at = uv_hrtime() };
    if (!(m.p = malloc(n ? n : 1))) {
        conn_close_ws(c, WS_CLOSE_INTERNAL, "out of memory");
        return;
    }
    memcpy(m.p, data, n);
    xvec_push(&c->w->to_hub, m);
    charge_hub(c, hub_cost(&m));
}

static void posted_admin(conn *c, admin_cmd *cmd)
{
    post(c, XM_ADMIN, cmd, 0, 0);
}

static void posted_binary(conn *c)
{
    post(c, XM_BINARY, NULL, 0, 0);
}

static bool posted_leave(conn *c)
{
    if (!c->in_chat) return c->held;
    c->in_chat = false;
    post(c, XM_LEAVE, NULL, 0, c->w->stopping);
    return true;
}

static void hub_post(hub *h, xvec *batch)
{
    xqueue_put(&h->inbox, batch);
    uv_async_send(&h->wake);
}

static void posted_turn_end(worker *w)
{
    if (w->to_hub.len) hub_post(hub_of(w), &w->to_hub);
}

/* The notice goes at once, with the turn's events before it: the next
 * piece must not wait for an unrelated event. */
static void posted_drained(conn *c)
{
    if (!c->in_chat) return;
    post(c, XM_DRAINED, NULL, 0, 0);
    posted_turn_end(c->w);
}

/* On the worker's thread, its loop over. */
static void posted_done(worker *w)
{
    xvec done = {0};
    xvec_push(&done, (xmsg){ .kind = XM_DONE });
    hub_post(hub_of(w), &done);
    xvec_free(&done);
}

/* ---- the hub's side ----------------------------------------------------- */

/* A text of c's is done with: when that brings what is on the way below
 * half the budget and c was paused for it, its worker reads it again. */
static void text_done(hub *h, conn *c, size_t n)
{
    size_t before = __atomic_fetch_sub(&c->to_hub, n, __ATOMIC_SEQ_CST);
    if (before > CONN_HUB_INFLIGHT / 2 && before - n <= CONN_HUB_INFLIGHT / 2 &&
        __atomic_load_n(&c->hub_full, __ATOMIC_SEQ_CST))
        xvec_push(&h->out[c->w->id], (xmsg){ .c = c, .kind = XM_RESUME });
}

static void hub_handle(hub *h, xmsg *m)
{
    conn *c = m->c;
    switch (m->kind) {
    case XM_CONNECT:
        c->user = connect_user(h, c);
        if (!c->user) xvec_push(&h->out[c->w->id], (xmsg){ .c = c, .kind = XM_ABORT });
        break;
    case XM_TEXT:
        h->arrival = m->at;
        if (c->user) chat_text(h->chat, c->user, m->p, m->n, wall_ms());
        h->arrival = 0;
        free(m->p);
        text_done(h, c, hub_cost(m));
        break;
    case XM_LIMITED:
        for (uint32_t i = 0; c->user && i < m->n; i++) chat_rate_limited(h->chat, c->user);
        text_done(h, c, hub_cost(m));
        break;
    case XM_BINARY:
        if (c->user) chat_binary(h->chat, c->user);
        break;
    case XM_LEAVE:
        if (c->user) chat_disconnect(h->chat, c->user, wall_ms(), m->flag);
        c->user = NULL;
        xvec_push(&h->out[c->w->id], (xmsg){ .c = c, .kind = XM_RELEASE });
        break;
    case XM_DRAINED:
        if (c->user) chat_drained(h->chat, c->user);
        break;
    case XM_DONE:
        hub_worker_done(h);
        break;
    case XM_ADMIN:
        xvec_push(&h->out[c->w->id], (xmsg){ .c = c, .p = admin_answer(h, m->p), .kind = XM_ADMIN_DONE });
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

/* Makes the messages durable, then lets them go out: a client never holds
 * a message the history could lose. */
static void hub_hand_over(hub *h)
{
    hub_commit(h);
    if (h->pending >= COALESCE_MIN_CONNS) h->last_big_hand_over = uv_hrtime();
    h->pending = 0;
    for (unsigned i = 0; i < h->n_workers; i++)
        if (h->out[i].len) worker_post(&h->workers[i], &h->out[i]);
}

static void on_hub_coalesce(uv_timer_t *t)
{
    hub_hand_over(t->data);
}

/* Once per turn of the main loop: the chat's turn ends (commit, then its
 * output). With one thread the worker writes; with more, the hand-over to
 * the loops is coalesced as the workers' writes are. */
static void hub_end_turn(hub *h)
{
    if (h->chat) {
        COUNTER_SET(h->users, chat_user_count(h->chat));
        COUNTER_SET(h->rooms, chat_room_count(h->chat));
    }
    if (!h->threaded) {
        /* While a write waits to be coalesced the turns add up in the chat,
         * which commits them once when the write goes (before_write). */
        if (!uv_is_active((uv_handle_t *)&h->workers[0].coalesce)) hub_commit(h);
        worker_flush(&h->workers[0]);
        return;
    }
    if (uv_is_active((uv_handle_t *)&h->coalesce)) return;     /* hub_hand_over commits */
    hub_commit(h);
    if (!coalesce_wait(&h->coalesce, on_hub_coalesce, h->pending, h->last_big_hand_over, h->stopping))
        hub_hand_over(h);
}

static void on_hub_turn(uv_check_t *t)
{
    hub_end_turn(t->data);
}

static void post_all(hub *h, uint8_t kind, void *p, uint32_t n)
{
    for (unsigned i = 0; i < h->n_workers; i++)
        xvec_push(&h->out[i], (xmsg){ .kind = kind, .p = p, .n = n });
    uv_timer_stop(&h->coalesce);
    hub_hand_over(h);
}

/* Each loop takes the reloaded options on its own thread, in order with
 * the rest of its messages: no connection reads a struct being changed. */
void hub_reload(hub *h, const server_config *cfg, uint32_t gen)
{
    if (h->threaded) post_all(h, XM_CONFIG, (void *)cfg, gen);
    else worker_set_config(&h->workers[0], cfg, gen);
}

void hub_close_after_chat(hub *h, conn *c, unsigned code, const char *reason)
{
    hub_commit(h);
    if (h->threaded)
        xvec_push(&h->out[c->w->id], (xmsg){ .c = c, .p = (void *)reason, .n = code, .kind = XM_KICK });
    else
        conn_close_ws(c, code, reason);
}

void hub_stop(hub *h)
{
    uint8_t kind = h->stopping ? XM_ABORT : XM_STOP;
    /* the other servers hear this one's users leave now, not when the
     * connections have closed or the heartbeat has expired */
    if (h->cluster && !h->stopping) cluster_leave(h->cluster);
    h->stopping = true;
    if (h->threaded) {
        post_all(h, kind, NULL, 0);
    } else if (kind == XM_STOP) {
        worker_stop(&h->workers[0]);
    } else {
        worker_abort_all(&h->workers[0]);
    }
}

/* ---- accepting ------------------------------------------------------------ */

static worker *least_busy(hub *h)
{
    worker *best = &h->workers[0];
    for (unsigned i = 1; i < h->n_workers; i++)
        if (COUNTER_GET(h->workers[i].n_conns) < COUNTER_GET(best->n_conns)) best = &h->workers[i];
    return best;
}

static void free_handle(uv_handle_t *handle)
{
    free(handle);
}

/* With threads, the socket goes to the loop with the fewest connections:
 * chat connections live long, so balance at accept is balance for good. */
static void hand_over(hub *h, uv_stream_t *listener, int port)
{
    uv_tcp_t *t = malloc(sizeof *t);
    if (!t) return;
    uv_tcp_init(h->loop, t);
    uv_os_fd_t fd;
    if (uv_accept(listener, (uv_stream_t *)t) == 0 && uv_fileno((uv_handle_t *)t, &fd) == 0) {
        int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (own >= 0) {
            worker *w = least_busy(h);
            /* counted now, so that the next accept sees it */
            __atomic_fetch_add(&w->n_conns, 1, __ATOMIC_RELAXED);
            xvec_push(&h->out[w->id], (xmsg){ .fd = own, .kind = XM_NEWCONN, .flag = (uint8_t)port });
        }
    }
    uv_close((uv_handle_t *)t, free_handle);
}

void hub_accept(hub *h, uv_stream_t *listener, int port)
{
    if (h->stopping) return;
    if (h->threaded) hand_over(h, listener, port);
    else worker_accept(&h->workers[0], listener, port);
}

/* ---- retention ------------------------------------------------------------ */

/* Retention passes run every minute, or more often when messages live
 * shorter than that. */
static uint64_t trim_interval(const server_config *cfg)
{
    uint64_t every = 60000;
    uint64_t age_ms = (uint64_t)cfg->retention.max_age * 1000;
    if (age_ms && age_ms / 4 < every) every = age_ms / 4;
    return every < 1000 ? 1000 : every;
}

static void on_trim(uv_timer_t *t)
{
    hub *h = t->data;
    if (h->chat_store.ops->trim(h->chat_store.impl, (int64_t)(wall_ms() / 1000)) < 0)
        log_event(LOG_ERROR, "history_trim_failed", "");
}

/* ---- counters for the web port -------------------------------------------- */

/* Each counter read once, so the total of connections is the sum of the
 * per-loop counts. */
static void hub_stats(void *arg, serve_stats *sum)
{
    hub *h = arg;
    memset(sum, 0, sizeof *sum);
    sum->threads = h->n_workers;
    sum->per_thread = calloc(h->n_workers, sizeof *sum->per_thread);
    for (unsigned i = 0; i < h->n_workers; i++) {
        worker_stats *st = &h->workers[i].stats;
        size_t conns = COUNTER_GET(h->workers[i].n_conns);
        if (sum->per_thread) sum->per_thread[i] = conns;
        sum->conns += conns;
        sum->accepted += COUNTER_GET(st->accepted);
        sum->handshakes += COUNTER_GET(st->handshakes);
        sum->deflate_handshakes += COUNTER_GET(st->deflate_handshakes);
        sum->inflated += COUNTER_GET(st->inflated);
        sum->messages_in += COUNTER_GET(st->messages_in);
        sum->frames_out += COUNTER_GET(st->frames_out);
        sum->bytes_out += COUNTER_GET(st->bytes_out);
        sum->slow_closed += COUNTER_GET(st->slow_closed);
        for (unsigned k = 0; k < CLOSE_SLOTS; k++) sum->closes[k] += COUNTER_GET(st->closes[k]);
        hist_add(&sum->delivery, &st->delivery);
    }
    hist_add(&sum->append, &h->timed.append);
    hist_add(&sum->commit, &h->timed.commit);
    proc_info_read(&sum->proc);
    sum->deflate_compressions = COUNTER_GET(h->compressions);
    sum->deflate_deliveries = COUNTER_GET(h->deflate_deliveries);
    sum->deflate_plain = COUNTER_GET(h->deflate_plain);
    sum->users = COUNTER_GET(h->users);
    sum->rooms = COUNTER_GET(h->rooms);
    if (h->cluster) {
        sum->redis_shards = cluster_shards(h->cluster);
        sum->redis_up = cluster_healthy(h->cluster, sum->redis_why, sizeof sum->redis_why);
        sum->redis_resyncs = cluster_reconnects(h->cluster);
    }
}

/* ---- setting up and tearing down ---------------------------------------- */

static void close_hub_handles(hub *h)
{
    uv_close((uv_handle_t *)&h->trim, NULL);
    uv_close((uv_handle_t *)&h->turn, NULL);
    uv_close((uv_handle_t *)&h->coalesce, NULL);
    if (h->threaded) uv_close((uv_handle_t *)&h->wake, NULL);
    if (h->cluster) cluster_close(h->cluster);
    if (h->on_done) h->on_done(h);
}

/* A worker has stopped: no connection left (one thread), or its thread's
 * loop is over. The main loop ends with the last one. */
static void hub_worker_done(hub *h)
{
    if (++h->workers_done == h->n_workers) close_hub_handles(h);
}

static void direct_done(worker *w)
{
    hub_worker_done(hub_of(w));
}

static const worker_link direct_link_ops = {
    direct_connect, direct_text, direct_binary, direct_leave, direct_drained,
    direct_before_write, nothing, direct_done, NULL, direct_admin,
};

static const worker_link posted_link_ops = {
    posted_connect, posted_text, posted_binary, posted_leave, posted_drained,
    nothing, posted_turn_end, posted_done, NULL, posted_admin,
};

/* The history: SQLite in the data directory, or the cluster's Redis. */
static int open_store(hub *h, const server_config *cfg)
{
    char err[1024];
    if (cfg->n_redis) {
        h->cluster = cluster_new(cfg->redis, cfg->n_redis, &cfg->retention, h->loop, err, sizeof err);
        if (!h->cluster) {
            fprintf(stderr, "tagarela: --redis: %s\n", err);
            return -1;
        }
        h->st = cluster_store(h->cluster);
        return 0;
    }
    if (store_sqlite_open(&h->store, cfg->data_dir, &cfg->retention, err, sizeof err) < 0) {
        fprintf(stderr, "tagarela: cannot open the history in %s/tagarela.db: %s\n", cfg->data_dir, err);
        return -1;
    }
    h->st = &h->store;
    return 0;
}

/* Many servers draw uids from one space: each starts somewhere random. */
static uint32_t random_uid_seed(void)
{
    uint32_t r = 0;
    if (getrandom(&r, sizeof r, 0) != sizeof r) r = (uint32_t)wall_ms() * 2654435761u;
    return r % 2000000000u + 100000000u;
}

/* The chat on the cluster's bus, caught up with every shard before the
 * server listens: a login then sees everyone already there. */
static int join_cluster(hub *h)
{
    cluster_start(h->cluster, h->chat);
    if (cluster_wait_ready(h->cluster, 5000)) {
        log_event(LOG_INFO, "cluster_joined", "shards=%d", cluster_shards(h->cluster));
        return 0;
    }
    fprintf(stderr, "tagarela: --redis: cannot subscribe to Redis or catch up with it\n");
    return -1;
}

int hub_init(hub *h, const server_config *cfg, uv_loop_t *loop, unsigned threads)
{
    memset(h, 0, sizeof *h);
    h->loop = loop;
    h->cfg = cfg;
    h->threaded = threads > 1;
    h->n_workers = threads;
    ip_table_init(&h->ips);
    h->link = h->threaded ? posted_link_ops : direct_link_ops;
    h->link.arg = h;
    if (open_store(h, cfg) < 0) return -1;
    if (bans_init(&h->bans, cfg->data_dir) < 0) return -1;
    chat_io io = { h, io_message_new, io_message_send, io_message_release, io_want_drain, io_name_banned };
    uint32_t seed = (uint32_t)((uint64_t)wall_ms() * 2654435761u) % 900000000u + 100000000u;
    if (h->cluster) seed = random_uid_seed();
    h->chat = chat_new(&cfg->chat, &io, seed, store_timed_wrap(&h->timed, h->st, &h->chat_store));
    if (h->chat && h->cluster && join_cluster(h) < 0) return -1;
    h->workers = calloc(threads, sizeof *h->workers);
    h->out = calloc(threads, sizeof *h->out);
    if (!h->chat || !h->workers || !h->out) goto oom;
    if (ws_deflater_init(&h->deflater, DEFLATE_LEVEL) < 0) goto oom;
    web_ctx web = { cfg, hub_stats, h };
    for (unsigned i = 0; i < threads; i++)
        if (worker_init(&h->workers[i], i, h->threaded ? NULL : loop, cfg, &h->link, &h->ips, &web) < 0)
            goto oom;
    for (unsigned i = 0; i < threads; i++) {
        h->workers[i].partial_bytes = &h->partial_bytes;
        h->workers[i].bans = &h->bans;
        h->workers[i].deflate_bytes = &h->deflate_bytes;
    }
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

int hub_start(hub *h)
{
    uv_timer_init(h->loop, &h->trim);
    h->trim.data = h;
    uint64_t every = trim_interval(h->cfg);
    uv_timer_start(&h->trim, on_trim, every, every);
    uv_check_init(h->loop, &h->turn);
    h->turn.data = h;
    uv_check_start(&h->turn, on_hub_turn);
    for (unsigned i = 0; i < h->n_workers; i++)
        if (worker_start(&h->workers[i]) < 0) return -1;
    return 0;
}

void hub_join(hub *h)
{
    for (unsigned i = 0; i < h->n_workers; i++) worker_join(&h->workers[i]);
}

void hub_free(hub *h)
{
    ws_deflater_free(&h->deflater);
    ip_table_free(&h->ips);
    bans_free(&h->bans);
    if (h->chat) chat_free(h->chat);
    if (h->store.ops) h->store.ops->close(h->store.impl);
    if (h->cluster) cluster_free(h->cluster);
    if (h->workers)
        for (unsigned i = 0; i < h->n_workers; i++) worker_free(&h->workers[i]);
    if (h->out)
        for (unsigned i = 0; i < h->n_workers; i++) xvec_free(&h->out[i]);
    if (h->threaded) {
        xqueue_free(&h->inbox);
        xvec_free(&h->spare);
    }
    free(h->workers);
    free(h->out);
}
