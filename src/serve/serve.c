/* serve.c -- `tagarela serve` as a process: its options, the data
 * directory, the listeners, the signals, and running until a clean
 * shutdown. The chat and the loops are the hub's (hub.c). */
#include "serve.h"

#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "hub.h"
#include "options.h"
#include "sys.h"

typedef struct serve_proc {
    uv_loop_t loop;
    hub hub;
    uv_tcp_t ws_listener, http_listener;
    uv_signal_t sigint, sigterm;
} serve_proc;

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
    } else {
        uv_ip4_name((struct sockaddr_in *)&sa, ip, sizeof ip);
        port = ntohs(((struct sockaddr_in *)&sa)->sin_port);
        printf("%s listening on %s:%d\n", what, ip, port);
    }
    fflush(stdout);
}

/* The first signal stops (every client hears 1001), a second one ends it
 * at once. */
static void on_signal(uv_signal_t *sig, int signum)
{
    serve_proc *p = sig->data;
    if (!p->hub.stopping) {
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
}

static int start_process_handles(serve_proc *p, const server_config *cfg)
{
    if (listen_on(p, &p->ws_listener, &cfg->ws, "ws") < 0) return -1;
    if (listen_on(p, &p->http_listener, &cfg->http, "http") < 0) return -1;
    uv_signal_init(&p->loop, &p->sigint);
    uv_signal_init(&p->loop, &p->sigterm);
    p->sigint.data = p->sigterm.data = p;
    uv_signal_start(&p->sigint, on_signal, SIGINT);
    uv_signal_start(&p->sigterm, on_signal, SIGTERM);
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
    if (uv_loop_init(&p.loop) < 0) return 1;
    int rc = hub_init(&p.hub, cfg, &p.loop, cfg->threads ? cfg->threads : usable_cores());
    p.hub.on_done = on_hub_done;
    if (rc == 0) rc = start_process_handles(&p, cfg);
    if (rc == 0) rc = hub_start(&p.hub);
    if (rc == 0) {
        print_listening(&p.ws_listener, "ws");
        print_listening(&p.http_listener, "http");
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
    return rc == 0 ? 0 : 1;
}

int serve_main(int argc, char **argv)
{
    server_config cfg;
    config_defaults(&cfg);
    int rc = config_parse(&cfg, argc, argv);
    if (rc != 0) return rc > 0 ? 0 : 2;
    return serve_run(&cfg);
}
