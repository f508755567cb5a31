/* serve.c -- `tagarela serve` as a process: its options, the data
 * directory, the listeners, the signals (SIGHUP: reload), telling systemd
 * it is ready, and running until a clean shutdown. The chat and the loops
 * are the hub's (hub.c). */
#include "serve.h"

#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "hub.h"
#include "log.h"
#include "options.h"
#include "sys.h"
#include "tls_conn.h"

/* A reload's options, kept until no loop reads them. */
typedef struct config_gen {
    server_config cfg;
    uint32_t number;
    struct config_gen *older;
} config_gen;

typedef struct serve_proc {
    uv_loop_t loop;
    hub hub;
    uv_tcp_t ws_listener, http_listener;
    uv_signal_t sigint, sigterm, sighup;
    uv_timer_t watchdog;            /* WATCHDOG=1 to systemd, when it asks */
    const server_config *cfg;       /* the newest options: the start's, or a reload's */
    config_gen *gens;               /* the reloads' options, newest first */
    uint32_t last_gen;              /* the start's are generation 0 */
} serve_proc;

static void sd_notify(const char *state);

static void on_connection(uv_stream_t *listener, int status)
{
    serve_proc *p = listener->data;
    if (status < 0) return;
    hub_accept(&p->hub, listener, listener == (uv_stream_t *)&p->http_listener ? PORT_HTTP : PORT_WS);
}

static int listen_on(serve_proc *p, uv_tcp_t *t, const listen_addr *a, const char *what)
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
    uv_tcp_init(&p->loop, t);
    t->data = p;
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
        log_event(LOG_INFO, "listening", "listener=%s host=%s port=%d", what, ip, port);
    } else {
        uv_ip4_name((struct sockaddr_in *)&sa, ip, sizeof ip);
        port = ntohs(((struct sockaddr_in *)&sa)->sin_port);
        printf("%s listening on %s:%d\n", what, ip, port);
        log_event(LOG_INFO, "listening", "listener=%s host=%s port=%d", what, ip, port);
    }
    fflush(stdout);
}

/* The first signal stops (every client hears 1001), a second one ends it
 * at once. */
static void on_signal(uv_signal_t *sig, int signum)
{
    serve_proc *p = sig->data;
    log_event(LOG_INFO, "signal", "name=%s stopping=%s", signum == SIGINT ? "INT" : "TERM",
              p->hub.stopping ? "now" : "clean");
    if (!p->hub.stopping) {
        sd_notify("STOPPING=1");
        uv_close((uv_handle_t *)&p->ws_listener, NULL);
        uv_close((uv_handle_t *)&p->http_listener, NULL);
    }
    hub_stop(&p->hub);
}

/* The last worker has stopped: the signals go too, and the loop ends. */
static void on_hub_done(hub *h)
{
    serve_proc *p = (serve_proc *)((char *)h - offsetof(serve_proc, hub));
    uv_close((uv_handle_t *)&p->sigint, NULL);
    uv_close((uv_handle_t *)&p->sigterm, NULL);
    uv_close((uv_handle_t *)&p->sighup, NULL);
    uv_close((uv_handle_t *)&p->watchdog, NULL);
}

/* Tells systemd (Type=notify) how the service is doing: one datagram to
 * $NOTIFY_SOCKET, a path or, starting with '@', an abstract name. Without
 * the variable (not under systemd) there is no one to tell. */
static void sd_notify(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    size_t n = path ? strlen(path) : 0;
    if (n == 0 || n >= sizeof sa.sun_path || (path[0] != '/' && path[0] != '@')) return;
    memcpy(sa.sun_path, path, n);
    if (path[0] == '@') sa.sun_path[0] = '\0';
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    if (sendto(fd, state, strlen(state), 0, (struct sockaddr *)&sa,
               (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) < 0)
        log_event(LOG_WARN, "notify_failed", "socket=%s error=%s", path, strerror(errno));
    close(fd);
}

/* An option a reload found changed. */
static void reload_changed(const char *key, bool applied)
{
    log_event(applied ? LOG_INFO : LOG_WARN, "reload_option", "key=%s applied=%s restart=%s", key,
              applied ? "yes" : "no", applied ? NULL : "needed");
}

/* The options held in plain fields, by the name of their key; live ones
 * are read at each event and change on a reload. */
static const struct { const char *key; size_t off, len; bool live; } plain_options[] = {
#define PLAIN(key, field, live) { key, offsetof(server_config, field), sizeof ((server_config *)0)->field, live }
    PLAIN("ping-interval", ping_interval_ms, true), PLAIN("idle-timeout", idle_timeout_ms, true),
    PLAIN("handshake-timeout", handshake_timeout_ms, true), PLAIN("write-timeout", write_timeout_ms, true),
    PLAIN("message-timeout", message_timeout_ms, true), PLAIN("partial-budget", partial_budget, true),
    PLAIN("outbound-cap", outbound_cap, true), PLAIN("max-conns-per-ip", max_conns_per_ip, true),
    PLAIN("log-level", log_level, true), PLAIN("admin-token", admin_token, true),
    PLAIN("log-level", log_level, true), PLAIN("deflate", deflate, true),
    PLAIN("deflate-memory", deflate_memory, true),
    PLAIN("ws", ws, false), PLAIN("http", http, false), PLAIN("max-message", max_message, false),
    PLAIN("max-header", max_header, false), PLAIN("threads", threads, false),
    PLAIN("log-format", log_format, false),
    PLAIN("max-name", chat.max_name, false), PLAIN("max-content", chat.max_content, false),
    PLAIN("rate", chat.rate, false), PLAIN("burst", chat.burst, false), PLAIN("history", chat.history, false),
    PLAIN("resume-cap", chat.resume_cap, false), PLAIN("rooms-per-minute", chat.rooms_per_minute, false),
    PLAIN("keep-messages", retention.max_per_room, false), PLAIN("keep-days", retention.max_age, false),
    PLAIN("keep-identities", retention.max_identities, false),
    PLAIN("history-room-bytes", retention.max_room_bytes, false),
    PLAIN("history-bytes", retention.max_bytes, false),
#undef PLAIN
};

static bool str_differs(const char *a, const char *b)
{
    return (a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0);
}

static bool origins_differ(const server_config *a, const server_config *b)
{
    bool differ = a->n_origins != b->n_origins;
    for (int i = 0; !differ && i < a->n_origins; i++) differ = str_differs(a->origins[i], b->origins[i]);
    return differ;
}

/* Logs each option the file and command line now give differently. */
static void report_changes(const server_config *parsed, const server_config *old)
{
    for (size_t i = 0; i < sizeof plain_options / sizeof plain_options[0]; i++) {
        const char *a = (const char *)parsed + plain_options[i].off, *b = (const char *)old + plain_options[i].off;
        if (memcmp(a, b, plain_options[i].len) != 0) reload_changed(plain_options[i].key, plain_options[i].live);
    }
    if (origins_differ(parsed, old)) reload_changed("origin", true);
    if (str_differs(parsed->data_dir, old->data_dir)) reload_changed("data", false);
    if (str_differs(parsed->ws_url, old->ws_url)) reload_changed("ws-url", false);
    if (str_differs(parsed->tls_cert, old->tls_cert)) reload_changed("tls-cert", false);
    if (str_differs(parsed->tls_key, old->tls_key)) reload_changed("tls-key", false);
    if (str_differs(parsed->tls_keylog, old->tls_keylog)) reload_changed("tls-keylog", false);
    if (parsed->n_trusted != old->n_trusted ||
        memcmp(parsed->trusted, old->trusted, sizeof parsed->trusted[0] * (size_t)parsed->n_trusted) != 0)
        reload_changed("trusted-proxy", false);
    if (parsed->auth_key_len != old->auth_key_len || memcmp(parsed->auth_key, old->auth_key, parsed->auth_key_len) != 0)
        reload_changed("auth-key", false);
    if (parsed->n_redis != old->n_redis || memcmp(parsed->redis, old->redis, sizeof parsed->redis[0] * (size_t)parsed->n_redis) != 0)
        reload_changed("redis", false);
}

/* The next generation: the old options with the live ones as parsed. The
 * others (listeners, history, the chat's limits, which the chat copied at
 * start) keep their values, and their strings stay those of the start.
 * Takes the parsed file's text, which the new origins point into. */
static void take_live_options(server_config *next, const server_config *old, server_config *parsed)
{
    *next = *old;
    for (size_t i = 0; i < sizeof plain_options / sizeof plain_options[0]; i++)
        if (plain_options[i].live)
            memcpy((char *)next + plain_options[i].off, (const char *)parsed + plain_options[i].off,
                   plain_options[i].len);
    next->n_origins = parsed->n_origins;
    memcpy(next->origins, parsed->origins, sizeof next->origins);
    if (next->chat.auth_key) next->chat.auth_key = next->auth_key;
    next->file_text = parsed->file_text;
    parsed->file_text = NULL;
}

/* Generations no loop reads any more: older than every loop's. */
static void free_unread_generations(serve_proc *p)
{
    uint32_t oldest = p->last_gen;
    for (unsigned i = 0; i < p->hub.n_workers; i++) {
        uint32_t g = __atomic_load_n(&p->hub.workers[i].config_gen, __ATOMIC_ACQUIRE);
        if (g < oldest) oldest = g;
    }
    for (config_gen **at = &p->gens; *at; ) {
        config_gen *g = *at;
        if (g->number < oldest) {
            *at = g->older;
            config_free(&g->cfg);
            free(g);
        } else {
            at = &g->older;
        }
    }
}

/* Parses the options again and, when valid, publishes the next generation
 * to the loops. Returns 0 or -1 (logged). */
static int reload_options(serve_proc *p, server_config *parsed)
{
    const server_config *old = p->cfg;
    config_defaults(parsed);
    if (config_parse(parsed, old->argc, old->argv) != 0) {
        log_event(LOG_ERROR, "reload_failed", "config=%s error=%s", old->config_path,
                  "invalid configuration (see the line above); nothing changed");
        return -1;
    }
    config_gen *g = malloc(sizeof *g);
    if (!g) {
        log_event(LOG_ERROR, "reload_failed", "error=%s", "out of memory");
        return -1;
    }
    take_live_options(&g->cfg, old, parsed);
    if (config_validate(&g->cfg) < 0) {
        log_event(LOG_ERROR, "reload_failed", "config=%s error=%s", old->config_path,
                  "the new limits do not fit the options kept from the start (see above); nothing changed");
        config_free(&g->cfg);
        free(g);
        return -1;
    }
    log_set_level(g->cfg.log_level);    /* first: the report below is at the new level */
    report_changes(parsed, old);
    g->number = ++p->last_gen;
    g->older = p->gens;
    p->gens = g;
    p->cfg = &g->cfg;
    hub_reload(&p->hub, &g->cfg, g->number);
    return 0;
}

/* SIGHUP: the options are read again, file and command line. The live
 * ones (timeouts, caps, origins, log level) are handed to each loop as a
 * new copy that it takes on its own thread; the old copy is freed once
 * every loop has moved on. The rest is logged as waiting for a restart. */
static void on_reload(uv_signal_t *sig, int signum)
{
    serve_proc *p = sig->data;
    if (p->hub.stopping) return;
    sd_notify("RELOADING=1");
    /* certbot renewals: the same files, read again (tls_conn.c) */
    if (p->cfg->tls) tls_server_reload(p->cfg->tls);
    free_unread_generations(p);
    server_config *parsed = malloc(sizeof *parsed);
    if (!parsed) {
        log_event(LOG_ERROR, "reload_failed", "error=%s", "out of memory");
    } else {
        if (reload_options(p, parsed) == 0) log_event(LOG_INFO, "reloaded", "config=%s", p->cfg->config_path);
        config_free(parsed);
        free(parsed);
    }
    sd_notify("READY=1");
}

static void on_watchdog(uv_timer_t *t)
{
    sd_notify("WATCHDOG=1");
}

/* With WatchdogSec= systemd sets $WATCHDOG_USEC (and $WATCHDOG_PID: ours,
 * not a child's) and restarts a service silent that long. The main loop
 * says it is alive twice per period: it runs the hub, so a stuck chat or
 * history stops the pings. */
static void start_watchdog(serve_proc *p)
{
    const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
    double v;
    if (!usec || parse_number(usec, 2000, 1e12, true, &v) < 0) return;
    if (pid && strtol(pid, NULL, 10) != (long)getpid()) return;
    uint64_t every = (uint64_t)(v / 2000);
    uv_timer_start(&p->watchdog, on_watchdog, every, every);
}

static int start_process_handles(serve_proc *p, const server_config *cfg)
{
    if (listen_on(p, &p->ws_listener, &cfg->ws, "ws") < 0) return -1;
    if (listen_on(p, &p->http_listener, &cfg->http, "http") < 0) return -1;
    uv_signal_init(&p->loop, &p->sigint);
    uv_signal_init(&p->loop, &p->sigterm);
    uv_signal_init(&p->loop, &p->sighup);
    p->sigint.data = p->sigterm.data = p->sighup.data = p;
    uv_signal_start(&p->sigint, on_signal, SIGINT);
    uv_signal_start(&p->sigterm, on_signal, SIGTERM);
    uv_signal_start(&p->sighup, on_reload, SIGHUP);
    uv_timer_init(&p->loop, &p->watchdog);
    start_watchdog(p);
    return 0;
}

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

static void close_any(uv_handle_t *handle, void *arg)
{
    if (!uv_is_closing(handle)) uv_close(handle, NULL);
}

static int serve_run(const server_config *cfg)
{
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit(0);          /* many connections need many descriptors */
    if (prepare_data_dir(cfg->data_dir) < 0) return 1;
    serve_proc p;
    memset(&p, 0, sizeof p);
    p.cfg = cfg;
    if (uv_loop_init(&p.loop) < 0) return 1;
    int rc = hub_init(&p.hub, cfg, &p.loop, cfg->threads ? cfg->threads : usable_cores());
    p.hub.on_done = on_hub_done;
    if (rc == 0) rc = start_process_handles(&p, cfg);
    if (rc == 0) rc = hub_start(&p.hub);
    if (rc == 0) {
        print_listening(&p.ws_listener, "ws");
        print_listening(&p.http_listener, "http");
        log_event(LOG_INFO, "started", "version=%s threads=%u data=%s config=%s", TAGARELA_VERSION,
                  p.hub.n_workers, cfg->data_dir, cfg->config_path);
        sd_notify("READY=1");
        uv_run(&p.loop, UV_RUN_DEFAULT);
        hub_join(&p.hub);
    } else {
        /* Nothing was served: the threads (none started, or stopped by
         * exiting) leave with the process. */
        if (p.hub.threaded) _exit(1);
        uv_walk(&p.loop, close_any, NULL);
        uv_run(&p.loop, UV_RUN_DEFAULT);
    }
    uv_loop_close(&p.loop);
    hub_free(&p.hub);
    while (p.gens) {                    /* every loop is gone: all of them go */
        config_gen *g = p.gens;
        p.gens = g->older;
        config_free(&g->cfg);
        free(g);
    }
    return rc == 0 ? 0 : 1;
}

int serve_main(int argc, char **argv)
{
    server_config cfg;
    config_defaults(&cfg);
    int rc = config_parse(&cfg, argc, argv);
    if (rc == 0) {
        log_setup(cfg.log_format, cfg.log_level);
        /* A certificate that cannot serve stops the start, before any port
         * is taken. */
        if (cfg.tls_cert && !(cfg.tls = tls_server_new(cfg.tls_cert, cfg.tls_key, cfg.tls_keylog))) rc = 1;
        if (rc == 0) rc = serve_run(&cfg);
        tls_server_free(cfg.tls);
    } else {
        rc = rc > 0 ? 0 : 2;
    }
    config_free(&cfg);
    return rc;
}
