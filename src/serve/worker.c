/* worker.c -- one event loop's share of the connections: the per-address
 * counts, accepting, liveness (pings, idle and handshake timeouts), the
 * writes of each turn (coalesced under broadcast storms), the messages
 * from the hub, its thread, and stopping. */
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn_addr.h"
#include "counters.h"

#define SHUTDOWN_GRACE_MS 3000

static void worker_write(worker *w);

/* ---- per-address limits ------------------------------------------------ */

void ip_table_init(ip_table *t)
{
    uv_mutex_init(&t->lock);
    dict_init(&t->map);
}

void ip_table_free(ip_table *t)
{
    for (size_t i = 0; i < t->map.nslots; i++)
        for (dict_entry *e = t->map.slots[i]; e; e = e->next) free(e->value);
    dict_free(&t->map);
    uv_mutex_destroy(&t->lock);
}

/* Taken when a connection's address becomes known and at its end: any
 * loop may. *count is the address's count with this connection. */
ip_count *ip_acquire(ip_table *t, const net_addr *a, unsigned *count)
{
    uint8_t addr[8];
    uint8_t len = (uint8_t)net_addr_limit_key(a, addr);
    uv_mutex_lock(&t->lock);
    ip_count *ip = dict_get(&t->map, addr, len);
    if (!ip && (ip = calloc(1, sizeof *ip)) != NULL) {
        memcpy(ip->addr, addr, len);
        ip->len = len;
        if (dict_put(&t->map, ip->addr, len, ip) < 0) {
            free(ip);
            ip = NULL;
        }
    }
    *count = ip ? ++ip->count : 0;
    uv_mutex_unlock(&t->lock);
    return ip;
}

void ip_release(ip_table *t, ip_count *ip)
{
    if (!ip) return;
    uv_mutex_lock(&t->lock);
    if (--ip->count == 0) {
        dict_del(&t->map, ip->addr, ip->len);
        free(ip);
    }
    uv_mutex_unlock(&t->lock);
}


/* ---- a worker's connections ----------------------------------------------- */

static void worker_finish(worker *w)
{
    uv_close((uv_handle_t *)&w->sweep, NULL);
    uv_close((uv_handle_t *)&w->coalesce, NULL);
    if (w->threaded) {
        uv_close((uv_handle_t *)&w->turn, NULL);
        uv_close((uv_handle_t *)&w->wake, NULL);
    } else {
        w->link->done(w);
    }
}

void worker_forget(worker *w, conn *c)
{
    if (c->prev) c->prev->next = c->next; else w->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    __atomic_fetch_sub(&w->n_conns, 1, __ATOMIC_RELAXED);
    ip_release(w->ips, c->ip);
    if (w->stopping && COUNTER_GET(w->n_conns) == 0) worker_finish(w);
}


/* Counted in n_conns by the caller. */
static conn *conn_new(worker *w, int port)
{
    conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->w = w;
    c->port = (uint8_t)port;
    uv_tcp_init(w->loop, &c->tcp);
    c->next = w->conns;
    if (w->conns) w->conns->prev = c;
    w->conns = c;
    return c;
}



/* An accepted connection: count it against its address, then serve it.
 * A trusted proxy's connections are counted once they say whose they are
 * (conn.c), not against the proxy. */
static void worker_admit(worker *w, conn *c)
{
    COUNTER_ADD(w->stats.accepted, 1);
    conn_note_peer(c);
    if (c->addr_len && !c->proxy_peer) {
        net_addr a = { .len = c->addr_len };
        memcpy(a.bytes, c->addr, c->addr_len);
        if (!conn_set_addr(c, &a)) {
            conn_refuse_busy(c);
            return;
        }
    }
    conn_start(w, c);
}

void worker_accept(worker *w, uv_stream_t *listener, int port)
{
    conn *c = conn_new(w, port);
    if (!c) return;
    __atomic_fetch_add(&w->n_conns, 1, __ATOMIC_RELAXED);
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) < 0) {
        conn_abort(c);
        return;
    }
    worker_admit(w, c);
}

void worker_adopt(worker *w, int fd, int port)
{
    conn *c = w->stopping ? NULL : conn_new(w, port);
    if (!c) {
        close(fd);
        __atomic_fetch_sub(&w->n_conns, 1, __ATOMIC_RELAXED);
        return;
    }
    if (uv_tcp_open(&c->tcp, fd) < 0) {
        close(fd);
        conn_abort(c);
        return;
    }
    worker_admit(w, c);
}

/* ---- liveness ------------------------------------------------------------ */



static void on_sweep(uv_timer_t *t)
{
    worker *w = t->data;
    uint64_t now = uv_now(w->loop);
    conn *next;
    for (conn *c = w->conns; c; c = next) {
        next = c->next;
        if (!c->closed) conn_sweep(c, now);
    }
    worker_write(w);
}

static uint64_t sweep_interval(const server_config *cfg)
{
    uint64_t m = cfg->ping_interval_ms;
    if (cfg->idle_timeout_ms < m) m = cfg->idle_timeout_ms;
    if (cfg->handshake_timeout_ms < m) m = cfg->handshake_timeout_ms;
    m /= 4;
    return m < 25 ? 25 : m > 1000 ? 1000 : m;
}

/* ---- coalescing writes ----------------------------------------------------- */

/* A broadcast storm written turn by turn costs one system call per
 * recipient per message, and on loopback the receiver's TCP work is
 * charged to that call too. So when a turn would write to many
 * connections and the last such write was less than a millisecond ago,
 * the write waits for a timer (1 to 2 ms) and the frames of those turns go
 * out in one writev per connection. A server that is not busy writes at
 * once. */
/* With one thread, the history's transaction is committed here, right
 * before the writes: grouped like them, and never after them. */
static void flush_now(worker *w)
{
    w->link->before_write(w);
    if (w->n_dirty >= COALESCE_MIN_CONNS) w->last_big_flush = uv_hrtime();
    conn_flush_dirty(w);
}

static void on_coalesce(uv_timer_t *t)
{
    flush_now(t->data);
}

bool coalesce_wait(uv_timer_t *t, uv_timer_cb cb, size_t fanout, uint64_t last_big, bool stopping)
{
    if (uv_is_active((uv_handle_t *)t)) return true;
    if (fanout < COALESCE_MIN_CONNS || stopping || uv_hrtime() - last_big >= COALESCE_NS) return false;
    uv_timer_start(t, cb, 1, 0);
    return true;
}

static void worker_write(worker *w)
{
    if (!coalesce_wait(&w->coalesce, on_coalesce, w->n_dirty, w->last_big_flush, w->stopping))
        flush_now(w);
}


/* ---- shutdown ------------------------------------------------------------- */

/* Every client hears 1001; a loop ends when its last client is gone or the
 * grace period is over. */
void worker_stop(worker *w)
{
    if (w->stopping) return;
    w->stopping = true;
    uint64_t now = uv_now(w->loop);
    for (conn *c = w->conns; c; c = c->next) {
        if (c->state == CONN_WS) {
            conn_close_ws(c, WS_CLOSE_GOING_AWAY, "server shutting down");
            c->deadline = now + SHUTDOWN_GRACE_MS;
        } else if (c->state == CONN_HTTP) {
            conn_abort(c);
        }
    }
    worker_flush(w);
    if (COUNTER_GET(w->n_conns) == 0) worker_finish(w);
}

void worker_abort_all(worker *w)
{
    for (conn *c = w->conns; c; c = c->next) conn_abort(c);
}

/* From here on the connections read the new options. The generation,
 * once stored, tells the main loop that the older options are read no
 * more and may be freed. The sweep keeps its period (at most a second):
 * a shorter timeout is noticed that much later. */
void worker_set_config(worker *w, const server_config *cfg, uint32_t gen)
{
    w->cfg = cfg;
    w->web.cfg = cfg;
    __atomic_store_n(&w->config_gen, gen, __ATOMIC_RELEASE);
}

/* ---- messages from the hub (threaded) ------------------------------------ */

static void worker_handle(worker *w, xmsg *m)
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
        else worker_abort_all(w);
        break;
    case XM_NEWCONN:
        worker_adopt(w, m->fd, m->flag);
        break;
    case XM_STOP:
        worker_stop(w);
        break;
    case XM_CONFIG:
        worker_set_config(w, m->p, m->n);
        break;
    case XM_ADMIN_DONE:
        conn_http_answered(m->c, m->p);
        break;
    case XM_KICK:
        conn_close_ws(m->c, m->n, m->p);
        break;
    case XM_RESUME:
        if (__atomic_load_n(&m->c->to_hub, __ATOMIC_SEQ_CST) <= CONN_HUB_INFLIGHT / 2) {
            __atomic_store_n(&m->c->hub_full, false, __ATOMIC_SEQ_CST);
            conn_update_reading(m->c);
        }
        break;
    }
}

static void worker_on_wake(uv_async_t *a)
{
    worker *w = a->data;
    xqueue_take(&w->inbox, &w->spare);
    for (size_t i = 0; i < w->spare.len; i++) worker_handle(w, &w->spare.v[i]);
    w->spare.len = 0;
}

void worker_post(worker *w, xvec *batch)
{
    xqueue_put(&w->inbox, batch);
    uv_async_send(&w->wake);
}

/* The end of a turn: its writes, then its events for the chat. */
void worker_flush(worker *w)
{
    worker_write(w);
    conn_turn_end(w);
    w->link->turn_end(w);
}

static void on_turn(uv_check_t *c)
{
    worker_flush(c->data);
}

/* ---- setting up and tearing down ---------------------------------------- */

int worker_init(worker *w, unsigned id, uv_loop_t *loop, const server_config *cfg,
                const worker_link *link, ip_table *ips, const web_ctx *web)
{
    memset(w, 0, sizeof *w);
    w->cfg = cfg;
    w->link = link;
    w->ips = ips;
    w->web = *web;
    w->id = id;
    w->threaded = loop == NULL;
    w->readbuf = malloc(READ_BUFFER_SIZE);
    if (!w->readbuf) return -1;
    if (loop) {
        w->loop = loop;
        return 0;
    }
    if (uv_loop_init(&w->own_loop) < 0) return -1;
    w->loop = &w->own_loop;
    xqueue_init(&w->inbox);
    uv_async_init(w->loop, &w->wake, worker_on_wake);
    w->wake.data = w;
    return 0;
}

void worker_free(worker *w)
{
    if (w->threaded && w->loop) {
        uv_loop_close(w->loop);
        xqueue_free(&w->inbox);
        xvec_free(&w->to_hub);
        xvec_free(&w->spare);
    }
    free(w->readbuf);
}

static void worker_thread(void *arg)
{
    worker *w = arg;
    uv_run(w->loop, UV_RUN_DEFAULT);
    w->link->done(w);
}

int worker_start(worker *w)
{
    uv_timer_init(w->loop, &w->sweep);
    w->sweep.data = w;
    uint64_t every = sweep_interval(w->cfg);
    uv_timer_start(&w->sweep, on_sweep, every, every);
    uv_timer_init(w->loop, &w->coalesce);
    w->coalesce.data = w;
    if (!w->threaded) return 0;
    uv_check_init(w->loop, &w->turn);
    w->turn.data = w;
    uv_check_start(&w->turn, on_turn);
    int rc = uv_thread_create(&w->thread, worker_thread, w);
    if (rc < 0) fprintf(stderr, "tagarela: cannot start a thread: %s\n", uv_strerror(rc));
    return rc < 0 ? -1 : 0;
}

void worker_join(worker *w)
{
    if (w->threaded) uv_thread_join(&w->thread);
}
