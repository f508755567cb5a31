/* server.c -- `tagarela serve`: the listeners and accepting (on the main
 * loop, which hands each socket to the least busy server loop), liveness
 * (pings, idle and handshake timeouts), retention passes, the threads, and
 * a clean shutdown on SIGINT / SIGTERM. */
#include "serve_int.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHUTDOWN_GRACE_MS 3000

/* ---- per-address limits ------------------------------------------------ */

/* Taken when a connection's address becomes known and at its end: any
 * loop may. *count is the address's count with this connection. */
ip_count *ip_acquire(hub *h, const net_addr *a, unsigned *count)
{
    uint8_t addr[8];
    uint8_t len = (uint8_t)net_addr_limit_key(a, addr);
    uv_mutex_lock(&h->ip_lock);
    ip_count *ip = dict_get(&h->per_ip, addr, len);
    if (!ip && (ip = calloc(1, sizeof *ip)) != NULL) {
        memcpy(ip->addr, addr, len);
        ip->len = len;
        if (dict_put(&h->per_ip, ip->addr, len, ip) < 0) {
            free(ip);
            ip = NULL;
        }
    }
    *count = ip ? ++ip->count : 0;
    uv_mutex_unlock(&h->ip_lock);
    return ip;
}

void ip_release(hub *h, ip_count *ip)
{
    if (!ip) return;
    uv_mutex_lock(&h->ip_lock);
    if (--ip->count == 0) {
        dict_del(&h->per_ip, ip->addr, ip->len);
        free(ip);
    }
    uv_mutex_unlock(&h->ip_lock);
}

/* ---- a server's connections ---------------------------------------------- */

static void server_finish(server *s)
{
    uv_close((uv_handle_t *)&s->sweep, NULL);
    uv_close((uv_handle_t *)&s->coalesce, NULL);
    if (s->threaded) {
        uv_close((uv_handle_t *)&s->flush, NULL);
        uv_close((uv_handle_t *)&s->wake, NULL);
    } else {
        hub_server_done(s->hub, s);
    }
}

void server_forget(server *s, conn *c)
{
    if (c->prev) c->prev->next = c->next; else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    __atomic_fetch_sub(&s->n_conns, 1, __ATOMIC_RELAXED);
    ip_release(s->hub, c->ip);
    if (s->stopping && STAT_GET(s->n_conns) == 0) server_finish(s);
}

void conn_refuse_busy(conn *c)
{
    static const char msg[] =
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
        "Content-Length: 39\r\nConnection: close\r\n\r\n"
        "Too many connections from your address\n";
    uv_buf_t b = uv_buf_init((char *)msg, sizeof msg - 1);
    uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    conn_abort(c);
}

static conn *conn_new(server *s, int port)
{
    conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->srv = s;
    c->port = (uint8_t)port;
    uv_tcp_init(s->loop, &c->tcp);
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    return c;
}

bool conn_set_addr(conn *c, const net_addr *a)
{
    memcpy(c->addr, a->bytes, a->len);
    c->addr_len = a->len;
    net_addr_format(a, c->addr_text);
    ip_release(c->srv->hub, c->ip);
    unsigned count;
    c->ip = ip_acquire(c->srv->hub, a, &count);
    return count <= c->srv->cfg->max_conns_per_ip;
}

void conn_note_peer(conn *c)
{
    struct sockaddr_storage sa;
    int salen = sizeof sa;
    net_addr a = {0};
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &salen) == 0)
        net_addr_from_sockaddr(&a, (struct sockaddr *)&sa);
    memcpy(c->addr, a.bytes, a.len);
    c->addr_len = a.len;
    net_addr_format(&a, c->addr_text);
    c->proxy_peer = cidr_list_match(c->srv->cfg->trusted, (size_t)c->srv->cfg->n_trusted, &a);
}

/* An accepted connection: count it against its address, then serve it.
 * A trusted proxy's connections are counted once they say whose they are
 * (conn.c), not against the proxy. */
static void conn_admit(server *s, conn *c)
{
    STAT_ADD(s->stats.accepted, 1);
    conn_note_peer(c);
    if (c->addr_len && !c->proxy_peer) {
        net_addr a = { .len = c->addr_len };
        memcpy(a.bytes, c->addr, c->addr_len);
        if (!conn_set_addr(c, &a)) {
            conn_refuse_busy(c);
            return;
        }
    }
    conn_start(s, c);
}

/* The hub counted it in n_conns when it handed the socket over. */
void server_adopt(server *s, int fd, int port)
{
    conn *c = s->stopping ? NULL : conn_new(s, port);
    if (!c) {
        close(fd);
        __atomic_fetch_sub(&s->n_conns, 1, __ATOMIC_RELAXED);
        return;
    }
    if (uv_tcp_open(&c->tcp, fd) < 0) {
        close(fd);
        conn_abort(c);
        return;
    }
    conn_admit(s, c);
}

/* ---- accepting (main loop) ----------------------------------------------- */

static server *least_busy(hub *h)
{
    server *best = &h->servers[0];
    for (unsigned i = 1; i < h->n_servers; i++)
        if (STAT_GET(h->servers[i].n_conns) < STAT_GET(best->n_conns)) best = &h->servers[i];
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
            server *s = least_busy(h);
            /* counted now, so that the next accept sees it */
            __atomic_fetch_add(&s->n_conns, 1, __ATOMIC_RELAXED);
            hub_send_conn(h, s, own, port);
        }
    }
    uv_close((uv_handle_t *)t, free_handle);
}

static void on_connection(uv_stream_t *listener, int status)
{
    hub *h = listener->data;
    if (status < 0 || h->stopping) return;
    int port = listener == (uv_stream_t *)&h->http_listener ? PORT_HTTP : PORT_WS;
    if (h->threaded) {
        hand_over(h, listener, port);
        return;
    }
    server *s = &h->servers[0];
    conn *c = conn_new(s, port);
    if (!c) return;
    __atomic_fetch_add(&s->n_conns, 1, __ATOMIC_RELAXED);
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) < 0) {
        conn_abort(c);
        return;
    }
    conn_admit(s, c);
}

static int listen_on(hub *h, uv_tcp_t *t, const listen_addr *a, const char *what)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char port[8];
    snprintf(port, sizeof port, "%d", a->port);
    int rc = getaddrinfo(a->host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "tagarela: cannot resolve %s address %s: %s\n", what, a->host, gai_strerror(rc));
        return -1;
    }
    uv_tcp_init(h->loop, t);
    t->data = h;
    rc = uv_tcp_bind(t, res->ai_addr, 0);
    freeaddrinfo(res);
    if (rc == 0) rc = uv_listen((uv_stream_t *)t, 4096, on_connection);
    if (rc < 0) {
        fprintf(stderr, "tagarela: cannot listen for %s on %s:%d: %s\n", what, a->host, a->port, uv_strerror(rc));
        return -1;
    }
    return 0;
}

static void print_listening(uv_tcp_t *h, const char *what)
{
    struct sockaddr_storage sa;
    int len = sizeof sa;
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    uv_tcp_getsockname(h, (struct sockaddr *)&sa, &len);
    if (sa.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&sa, ip, sizeof ip);
        port = ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
        printf("%s listening on [%s]:%d\n", what, ip, port);
    } else {
        uv_ip4_name((struct sockaddr_in *)&sa, ip, sizeof ip);
        port = ntohs(((struct sockaddr_in *)&sa)->sin_port);
        printf("%s listening on %s:%d\n", what, ip, port);
    }
    fflush(stdout);
}

/* ---- liveness (each server loop) ----------------------------------------- */

static void send_ping(conn *c, uint64_t now)
{
    ws_frame *f = ws_frame_new(WS_OP_PING, NULL, 0);
    if (!f) return;
    conn_send(c, f);
    ws_frame_unref(f);
    c->last_ping = now;
}

static void sweep_conn(server *s, conn *c, uint64_t now)
{
    const server_config *cfg = s->cfg;
    switch (c->state) {
    case CONN_HTTP:
        if (now >= c->deadline) conn_abort(c);
        break;
    case CONN_WS:
        if (now - c->last_active >= cfg->idle_timeout_ms)
            conn_close_ws(c, WS_CLOSE_POLICY, "idle timeout");
        else if (now - c->last_active >= cfg->ping_interval_ms &&
                 now - c->last_ping >= cfg->ping_interval_ms)
            send_ping(c, now);
        else if (c->q_len == 0 && c->q_cap) {
            free(c->q);         /* idle: give the queue's memory back */
            c->q = NULL;
            c->q_cap = c->q_head = 0;
        }
        break;
    default:
        if (now >= c->deadline) conn_abort(c);
    }
}

static void on_sweep(uv_timer_t *t)
{
    server *s = t->data;
    uint64_t now = uv_now(s->loop);
    conn *next;
    for (conn *c = s->conns; c; c = next) {
        next = c->next;
        if (!c->closed) sweep_conn(s, c, now);
    }
    server_write(s);
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
static void flush_now(server *s)
{
    if (!s->threaded) hub_commit(s->hub);
    if (s->n_dirty >= COALESCE_MIN_CONNS) s->last_big_flush = uv_hrtime();
    conn_flush_all(s);
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

void server_write(server *s)
{
    if (!coalesce_wait(&s->coalesce, on_coalesce, s->n_dirty, s->last_big_flush, s->stopping))
        flush_now(s);
}

/* ---- retention and turns (main loop) ------------------------------------- */

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
    if (h->store.ops->trim(h->store.impl, (int64_t)(wall_ms() / 1000)) < 0)
        fprintf(stderr, "tagarela: history retention pass failed\n");
}

static void on_hub_check(uv_check_t *c)
{
    hub_end_turn(c->data);
}

static void on_server_check(uv_check_t *c)
{
    server_flush(c->data);
}

/* ---- shutdown ------------------------------------------------------------- */

/* Every client hears 1001; a loop ends when its last client is gone or the
 * grace period is over. */
void server_stop(server *s)
{
    if (s->stopping) return;
    s->stopping = true;
    uint64_t now = uv_now(s->loop);
    for (conn *c = s->conns; c; c = c->next) {
        if (c->state == CONN_WS) {
            conn_close_ws(c, WS_CLOSE_GOING_AWAY, "server shutting down");
            c->deadline = now + SHUTDOWN_GRACE_MS;
        } else if (c->state == CONN_HTTP) {
            conn_abort(c);
        }
    }
    server_flush(s);
    if (STAT_GET(s->n_conns) == 0) server_finish(s);
}

void server_abort_all(server *s)
{
    for (conn *c = s->conns; c; c = c->next) conn_abort(c);
}

/* A second signal ends it at once. */
static void on_signal(uv_signal_t *sig, int signum)
{
    hub *h = sig->data;
    if (h->stopping) {
        hub_post_all(h, XM_ABORT);
        return;
    }
    h->stopping = true;
    uv_close((uv_handle_t *)&h->ws_listener, NULL);
    uv_close((uv_handle_t *)&h->http_listener, NULL);
    hub_post_all(h, XM_STOP);
}

/* ---- running -------------------------------------------------------------- */

static int prepare_data_dir(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(path, 0755) < 0 && errno != EEXIST) break;
        *p = '/';
    }
    if (mkdir(path, 0755) < 0 && errno != EEXIST) {
        fprintf(stderr, "tagarela: cannot create data directory %s: %s\n", dir, strerror(errno));
        return -1;
    }
    if (access(dir, W_OK | X_OK) < 0) {
        fprintf(stderr, "tagarela: data directory %s is not writable: %s\n", dir, strerror(errno));
        return -1;
    }
    return 0;
}

/* Many connections need many descriptors: take what the hard limit allows. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void start_server_handles(server *s)
{
    uv_timer_init(s->loop, &s->sweep);
    s->sweep.data = s;
    uint64_t every = sweep_interval(s->cfg);
    uv_timer_start(&s->sweep, on_sweep, every, every);
    uv_timer_init(s->loop, &s->coalesce);
    s->coalesce.data = s;
    if (s->threaded) {
        uv_check_init(s->loop, &s->flush);
        s->flush.data = s;
        uv_check_start(&s->flush, on_server_check);
    }
}

static int start_hub_handles(hub *h)
{
    const server_config *cfg = h->cfg;
    if (listen_on(h, &h->ws_listener, &cfg->ws, "ws") < 0) return -1;
    if (listen_on(h, &h->http_listener, &cfg->http, "http") < 0) return -1;
    uv_timer_init(h->loop, &h->trim);
    h->trim.data = h;
    uint64_t every = trim_interval(cfg);
    uv_timer_start(&h->trim, on_trim, every, every);
    uv_check_init(h->loop, &h->commit);
    h->commit.data = h;
    uv_check_start(&h->commit, on_hub_check);
    uv_signal_init(h->loop, &h->sigint);
    uv_signal_init(h->loop, &h->sigterm);
    h->sigint.data = h->sigterm.data = h;
    uv_signal_start(&h->sigint, on_signal, SIGINT);
    uv_signal_start(&h->sigterm, on_signal, SIGTERM);
    return 0;
}

static void close_any(uv_handle_t *handle, void *arg)
{
    if (!uv_is_closing(handle)) uv_close(handle, NULL);
}

static unsigned thread_count(const server_config *cfg)
{
    if (cfg->threads) return cfg->threads;
    unsigned n = uv_available_parallelism();
    return n ? n : 1;
}

int server_run(const server_config *cfg)
{
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    if (prepare_data_dir(cfg->data_dir) < 0) return 1;
    uv_loop_t loop;
    if (uv_loop_init(&loop) < 0) return 1;
    hub h;
    int rc = hub_init(&h, cfg, &loop, thread_count(cfg));
    if (rc == 0) rc = start_hub_handles(&h);
    if (rc == 0) {
        for (unsigned i = 0; i < h.n_servers; i++) start_server_handles(&h.servers[i]);
        rc = hub_start_threads(&h);
    }
    if (rc == 0) {
        print_listening(&h.ws_listener, "ws");
        print_listening(&h.http_listener, "http");
        uv_run(&loop, UV_RUN_DEFAULT);
        hub_join_threads(&h);
    } else {
        /* Nothing was served: the threads (none started, or stopped by
         * exiting) leave with the process. */
        if (h.threaded) _exit(1);
        uv_walk(&loop, close_any, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    uv_loop_close(&loop);
    hub_free(&h);
    return rc == 0 ? 0 : 1;
}
