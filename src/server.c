/* server.c -- `tagarela serve`: the event loop, the two listeners, accepting
 * connections, liveness (pings, idle and handshake timeouts), and a clean
 * shutdown on SIGINT / SIGTERM. */
#include "server.h"

#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHUTDOWN_GRACE_MS 3000

/* ---- chat glue: the chat's messages become shared text frames ---------- */

static void *io_message_new(void *ctx, const char *json, size_t n)
{
    return ws_frame_new(WS_OP_TEXT, json, n);
}

static void io_message_send(void *ctx, void *c, void *msg)
{
    conn_send(c, msg);
}

static void io_message_release(void *ctx, void *msg)
{
    ws_frame_unref(msg);
}

/* ---- per-address limits ------------------------------------------------ */

static ip_count *ip_acquire(server *s, const struct sockaddr_storage *sa)
{
    uint8_t addr[16];
    uint8_t len;
    if (sa->ss_family == AF_INET6) {
        memcpy(addr, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        len = 16;
    } else {
        memcpy(addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        len = 4;
    }
    ip_count *ip = dict_get(&s->per_ip, addr, len);
    if (!ip) {
        ip = calloc(1, sizeof *ip);
        if (!ip) return NULL;
        memcpy(ip->addr, addr, len);
        ip->len = len;
        if (dict_put(&s->per_ip, ip->addr, len, ip) < 0) {
            free(ip);
            return NULL;
        }
    }
    ip->count++;
    return ip;
}

static void ip_release(server *s, ip_count *ip)
{
    if (ip && --ip->count == 0) {
        dict_del(&s->per_ip, ip->addr, ip->len);
        free(ip);
    }
}

static void close_server_handles(server *s);

void server_forget(server *s, conn *c)
{
    if (c->prev) c->prev->next = c->next; else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->n_conns--;
    ip_release(s, c->ip);
    if (s->stopping && s->n_conns == 0) close_server_handles(s);
}

/* ---- accepting ---------------------------------------------------------- */

static void refuse_busy(conn *c)
{
    static const char msg[] =
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
        "Content-Length: 39\r\nConnection: close\r\n\r\n"
        "Too many connections from your address\n";
    uv_buf_t b = uv_buf_init((char *)msg, sizeof msg - 1);
    uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    conn_abort(c);
}

static void on_connection(uv_stream_t *listener, int status)
{
    server *s = listener->data;
    if (status < 0 || s->stopping) return;
    conn *c = calloc(1, sizeof *c);
    if (!c) return;
    c->srv = s;
    c->port = listener == (uv_stream_t *)&s->http_listener ? PORT_HTTP : PORT_WS;
    uv_tcp_init(s->loop, &c->tcp);
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->n_conns++;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) < 0) {
        conn_abort(c);
        return;
    }
    s->stats.accepted++;
    struct sockaddr_storage sa;
    int salen = sizeof sa;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &salen) == 0) {
        c->ip = ip_acquire(s, &sa);
        if (c->ip && c->ip->count > s->cfg->max_conns_per_ip) {
            refuse_busy(c);
            return;
        }
    }
    conn_start(s, c);
}

static int listen_on(server *s, uv_tcp_t *h, const listen_addr *a, const char *what)
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
    uv_tcp_init(s->loop, h);
    h->data = s;
    rc = uv_tcp_bind(h, res->ai_addr, 0);
    freeaddrinfo(res);
    if (rc == 0) rc = uv_listen((uv_stream_t *)h, 4096, on_connection);
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

/* ---- liveness ----------------------------------------------------------- */

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

/* Retention passes run every minute, or more often when messages live
 * shorter than that. */
static uint64_t trim_interval(const server_config *cfg)
{
    uint64_t every = 60000;
    uint64_t age_ms = (uint64_t)cfg->retention.max_age * 1000;
    if (age_ms && age_ms / 4 < every) every = age_ms / 4;
    return every < 1000 ? 1000 : every;
}

static void on_sweep(uv_timer_t *t)
{
    server *s = t->data;
    uint64_t now = uv_now(s->loop);
    if (now - s->last_trim >= trim_interval(s->cfg)) {
        s->last_trim = now;
        if (s->store.ops->trim(s->store.impl, (int64_t)(wall_ms() / 1000)) < 0)
            fprintf(stderr, "tagarela: history retention pass failed\n");
    }
    conn *next;
    for (conn *c = s->conns; c; c = next) {
        next = c->next;
        if (!c->closed) sweep_conn(s, c, now);
    }
    conn_flush_all(s);
}

static uint64_t sweep_interval(const server_config *cfg)
{
    uint64_t m = cfg->ping_interval_ms;
    if (cfg->idle_timeout_ms < m) m = cfg->idle_timeout_ms;
    if (cfg->handshake_timeout_ms < m) m = cfg->handshake_timeout_ms;
    m /= 4;
    return m < 25 ? 25 : m > 1000 ? 1000 : m;
}

/* ---- flushing and shutdown ----------------------------------------------- */

/* Once per loop turn: make this turn's messages durable, then write them
 * out. A client never holds a message the history could lose. */
static void on_check(uv_check_t *h)
{
    server *s = h->data;
    if (s->store.ops->commit(s->store.impl) < 0)
        fprintf(stderr, "tagarela: history commit failed; messages of this moment may be missing from it\n");
    conn_flush_all(s);
}

static void close_server_handles(server *s)
{
    uv_close((uv_handle_t *)&s->sweep, NULL);
    uv_close((uv_handle_t *)&s->flush, NULL);
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
}

/* Every client hears 1001; the loop ends when the last one is gone or the
 * grace period is over. A second signal ends it at once. */
static void on_signal(uv_signal_t *h, int signum)
{
    server *s = h->data;
    uint64_t now = uv_now(s->loop);
    if (s->stopping) {
        for (conn *c = s->conns; c; c = c->next) conn_abort(c);
        return;
    }
    s->stopping = true;
    uv_close((uv_handle_t *)&s->ws_listener, NULL);
    uv_close((uv_handle_t *)&s->http_listener, NULL);
    for (conn *c = s->conns; c; c = c->next) {
        if (c->state == CONN_WS) {
            conn_close_ws(c, WS_CLOSE_GOING_AWAY, "server shutting down");
            c->deadline = now + SHUTDOWN_GRACE_MS;
        } else if (c->state == CONN_HTTP) {
            conn_abort(c);
        }
    }
    conn_flush_all(s);
    if (s->n_conns == 0) close_server_handles(s);
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

static int server_init(server *s, const server_config *cfg, uv_loop_t *loop)
{
    memset(s, 0, sizeof *s);
    s->loop = loop;
    s->cfg = cfg;
    dict_init(&s->per_ip);
    char err[512];
    if (store_sqlite_open(&s->store, cfg->data_dir, &cfg->retention, err, sizeof err) < 0) {
        fprintf(stderr, "tagarela: cannot open the history in %s/tagarela.db: %s\n", cfg->data_dir, err);
        return -1;
    }
    s->readbuf = malloc(READ_BUFFER_SIZE);
    chat_io io = { s, io_message_new, io_message_send, io_message_release };
    uint32_t seed = (uint32_t)((uint64_t)wall_ms() * 2654435761u) % 900000000u + 100000000u;
    s->chat = chat_new(&cfg->chat, &io, seed, &s->store);
    if (!s->readbuf || !s->chat) {
        fprintf(stderr, "tagarela: out of memory\n");
        return -1;
    }
    if (listen_on(s, &s->ws_listener, &cfg->ws, "ws") < 0) return -1;
    if (listen_on(s, &s->http_listener, &cfg->http, "http") < 0) return -1;
    uv_timer_init(loop, &s->sweep);
    s->sweep.data = s;
    uint64_t every = sweep_interval(cfg);
    uv_timer_start(&s->sweep, on_sweep, every, every);
    uv_check_init(loop, &s->flush);
    s->flush.data = s;
    uv_check_start(&s->flush, on_check);
    uv_signal_init(loop, &s->sigint);
    uv_signal_init(loop, &s->sigterm);
    s->sigint.data = s->sigterm.data = s;
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    return 0;
}

static void server_free(server *s)
{
    for (size_t i = 0; i < s->per_ip.nslots; i++)
        for (dict_entry *e = s->per_ip.slots[i]; e; e = e->next) free(e->value);
    dict_free(&s->per_ip);
    chat_free(s->chat);
    if (s->store.ops) s->store.ops->close(s->store.impl);
    free(s->readbuf);
}

static void close_any(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

int server_run(const server_config *cfg)
{
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    if (prepare_data_dir(cfg->data_dir) < 0) return 1;
    uv_loop_t loop;
    if (uv_loop_init(&loop) < 0) return 1;
    server s;
    memset(&s, 0, sizeof s);
    int rc = server_init(&s, cfg, &loop);
    if (rc == 0) {
        print_listening(&s.ws_listener, "ws");
        print_listening(&s.http_listener, "http");
        uv_run(&loop, UV_RUN_DEFAULT);
    } else {
        uv_walk(&loop, close_any, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    uv_loop_close(&loop);
    server_free(&s);
    return rc == 0 ? 0 : 1;
}
