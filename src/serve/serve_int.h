/* server.h -- the server's structures: the hub (listeners, signals, the
 * chat and its history: one per process, on the main loop), a server (one
 * event loop's share of the connections: one per thread) and a connection
 * (socket, HTTP request or WebSocket reader, output queue).
 *
 * networking.c moves bytes, handshake.c and webpage.c answer HTTP, hub.c
 * carries events between the loops and the chat, server.c accepts, keeps
 * connections alive and runs the loops. docs/architecture.md has the why. */
#ifndef TAGARELA_SERVER_H
#define TAGARELA_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "chat.h"
#include "options.h"
#include "dict.h"
#include "http_req.h"
#include "sbuf.h"
#include "ws_codec.h"

#define READ_BUFFER_SIZE (64 * 1024)
#define CLOSE_GRACE_MS 2000     /* wait this long for a peer to finish closing */

enum conn_state { CONN_HTTP, CONN_WS, CONN_CLOSING };
enum conn_port { PORT_WS, PORT_HTTP };

typedef struct server server;
typedef struct hub hub;

/* Connections from one address, counted against --max-conns-per-ip. */
typedef struct ip_count {
    unsigned count;
    uint8_t len;
    uint8_t addr[16];
} ip_count;

typedef struct conn {
    uv_tcp_t tcp;                   /* first: a conn is its handle */
    server *srv;
    struct conn *prev, *next;       /* every connection of the server */
    struct conn *dirty_next;        /* output waiting for the flush */
    http_req *req;                  /* while speaking HTTP */
    chat_user *user;                /* the chat's, written by the hub only */
    ws_reader rd;
    ws_frame **q;                   /* ring of queued shared buffers */
    uint32_t q_head, q_len, q_cap;
    uint32_t q_off;                 /* bytes of q[q_head] already written */
    size_t queued;                  /* bytes queued, those in flight included */
    size_t inflight;                /* bytes handed to uv_write */
    uint64_t last_active;           /* loop time, ms */
    uint64_t last_ping;
    uint64_t deadline;              /* when CONN_CLOSING gives up waiting */
    ip_count *ip;
    uint8_t state;
    uint8_t port;
    bool dirty;
    bool writing;                   /* a uv_write is in flight */
    bool overflow;                  /* went past the outbound cap */
    bool close_after_flush;
    bool shut;                      /* FIN sent */
    bool closed;                    /* uv_close called */
    bool in_chat;                   /* the chat knows it: told of its end */
    bool held;                      /* the hub still refers to it */
    bool handle_closed;             /* the handle is gone, the memory stays while held */
    bool want_drain;                /* the chat waits for the queue to empty */
} conn;

/* Counters with one writer (their loop), read by any loop for /stats. */
typedef struct server_stats {
    uint64_t accepted, handshakes, messages_in, frames_out, bytes_out, slow_closed;
} server_stats;
#define STAT_ADD(x, v) __atomic_store_n(&(x), __atomic_load_n(&(x), __ATOMIC_RELAXED) + (v), __ATOMIC_RELAXED)
#define STAT_GET(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

/* A message between loops (hub.c). */
typedef struct xmsg {
    conn *c;
    void *p;                        /* a ws_frame, or a copy of a text */
    uint32_t n;
    int32_t fd;
    uint8_t kind, flag;
} xmsg;

typedef struct xvec {
    xmsg *v;
    size_t len, cap;
} xvec;

/* A queue other threads push batches into; its reader swaps it out whole. */
typedef struct xqueue {
    uv_mutex_t lock;
    xvec q;
} xqueue;

struct server {
    uv_loop_t *loop;
    const server_config *cfg;
    hub *hub;
    unsigned id;
    bool threaded;                  /* own thread; the chat is across the hub */
    uv_timer_t sweep;
    uv_check_t flush;
    conn *conns;                    /* all connections */
    size_t n_conns;                 /* relaxed atomic: the hub balances on it */
    conn *dirty;                    /* connections to flush this turn */
    size_t n_dirty;
    uint64_t last_big_flush;        /* uv_hrtime() of the last write to many */
    uv_timer_t coalesce;            /* a deferred write to many */
    uint8_t *readbuf;               /* one read buffer for the whole loop */
    bool readbuf_busy;
    bool stopping;
    server_stats stats;
    /* threaded only */
    uv_loop_t own_loop;
    uv_thread_t thread;
    uv_async_t wake;
    xqueue inbox;                   /* from the hub */
    xvec to_hub;                    /* this turn's events for the chat */
    xvec spare;
};

/* The process-wide part, on the main loop. */
struct hub {
    uv_loop_t *loop;
    const server_config *cfg;
    uv_tcp_t ws_listener, http_listener;
    uv_signal_t sigint, sigterm;
    uv_timer_t trim;
    uv_check_t commit;
    chat *chat;
    store store;                    /* chat history */
    server *servers;
    unsigned n_servers;
    bool threaded;
    bool stopping;
    unsigned servers_done;
    uv_mutex_t ip_lock;             /* per_ip is shared by the loops */
    dict per_ip;                    /* address bytes -> ip_count */
    size_t users, rooms;            /* relaxed atomic copies for /stats */
    uv_timer_t coalesce;            /* a deferred hand-over to the loops */
    size_t pending;                 /* deliveries waiting in out */
    uint64_t last_big_hand_over;    /* uv_hrtime() */
    /* threaded only */
    uv_async_t wake;
    xqueue inbox;                   /* from the servers */
    xvec spare;
    xvec *out;                      /* per server: this turn's messages */
};

int server_run(const server_config *cfg);
/* server.c: a connection is gone for good; drop it from its server. */
void server_forget(server *s, conn *c);
/* Adds c to s and starts reading it; fd is an accepted socket, or -1 when
 * the caller has accepted into c->tcp already. */
void server_adopt(server *s, int fd, int port);
void server_stop(server *s);
void server_abort_all(server *s);
void server_flush(server *s);           /* end of a loop turn */
void server_write(server *s);           /* the writes of a turn, maybe coalesced */
ip_count *ip_acquire(hub *h, const struct sockaddr_storage *sa, unsigned *count);
void ip_release(hub *h, ip_count *ip);

/* hub.c: the chat as seen from a connection, wherever the chat runs. */
int hub_init(hub *h, const server_config *cfg, uv_loop_t *loop, unsigned threads);
void hub_free(hub *h);
void chat_link_connect(conn *c);
void chat_link_text(conn *c, const uint8_t *data, size_t n);
void chat_link_binary(conn *c);
void chat_link_drained(conn *c);        /* the queue emptied as the chat asked */
/* The connection is ending; returns true when the hub still holds it (the
 * memory must stay until conn_release). */
bool chat_link_leave(conn *c);
void hub_send_conn(hub *h, server *s, int fd, int port);   /* hand an accepted socket over */
void hub_post_all(hub *h, uint8_t kind);                   /* XM_STOP or XM_ABORT */
void hub_server_done(hub *h, server *s);
void hub_end_turn(hub *h);
void hub_commit(hub *h);

/* Coalescing (server.c): a turn that writes to at least this many
 * connections within this long of the last such one waits for a timer. */
#define COALESCE_MIN_CONNS 64
#define COALESCE_NS 1000000
/* True when the work waits for t (already, or from now on); false: do it now. */
bool coalesce_wait(uv_timer_t *t, uv_timer_cb cb, size_t fanout, uint64_t last_big, bool stopping);
int hub_start_threads(hub *h);
void hub_join_threads(hub *h);

enum xmsg_kind {
    XM_CONNECT, XM_TEXT, XM_BINARY, XM_LEAVE,      /* server -> hub */
    XM_SEND, XM_RELEASE, XM_NEWCONN, XM_STOP, XM_ABORT, /* hub -> server */
    XM_DONE,                                         /* server -> hub: its loop ended */
    XM_WANT_DRAIN,                                   /* hub -> server: tell when written */
    XM_DRAINED,                                      /* server -> hub: it is */
};

/* networking.c */
void conn_start(server *s, conn *c);
void conn_send(conn *c, ws_frame *f);           /* takes a new reference */
void conn_send_owned(conn *c, ws_frame *f);     /* takes the caller's reference */
void conn_release(conn *c);                     /* the hub is done with it */
void conn_send_forced(conn *c, ws_frame *f);    /* past the outbound cap */
void conn_close_ws(conn *c, unsigned code, const char *reason);
void conn_abort(conn *c);
void conn_flush_all(server *s);
uint64_t wall_ms(void);

/* handshake.c: answers a WebSocket upgrade request. Returns 101 (out holds
 * the 101 response) or the HTTP status of the refusal (out holds it). */
int handshake_answer(const http_req *r, const server_config *cfg, bool web_port, sbuf *out);
/* A complete error response with a short text body. */
void http_error_response(sbuf *out, int status, const char *extra_headers, const char *body);
const char *http_status_text(int status);

/* webpage.c: answers a plain HTTP request on the web port. */
void webpage_answer(const http_req *r, const server *s, sbuf *out, bool *close_after);

#endif
