/* server.h -- the server's shared structures: the server (listeners, the
 * chat, the connection lists) and a connection (socket, HTTP request or
 * WebSocket reader, output queue). networking.c moves bytes, handshake.c
 * and webpage.c answer HTTP, server.c owns the loop. */
#ifndef TAGARELA_SERVER_H
#define TAGARELA_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "chat.h"
#include "config.h"
#include "dict.h"
#include "http_req.h"
#include "sbuf.h"
#include "ws_codec.h"

#define READ_BUFFER_SIZE (64 * 1024)
#define CLOSE_GRACE_MS 2000     /* wait this long for a peer to finish closing */

enum conn_state { CONN_HTTP, CONN_WS, CONN_CLOSING };
enum conn_port { PORT_WS, PORT_HTTP };

typedef struct server server;

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
    chat_user *user;                /* once a WebSocket */
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
} conn;

typedef struct server_stats {
    uint64_t accepted, handshakes, messages_in, frames_out, bytes_out, slow_closed;
} server_stats;

struct server {
    uv_loop_t *loop;
    const server_config *cfg;
    uv_tcp_t ws_listener, http_listener;
    uv_signal_t sigint, sigterm;
    uv_timer_t sweep;
    uv_check_t flush;
    conn *conns;                    /* all connections */
    size_t n_conns;
    conn *dirty;                    /* connections to flush this turn */
    chat *chat;
    store store;                    /* chat history */
    uint64_t last_trim;             /* loop time of the last retention pass */
    dict per_ip;                    /* address bytes -> ip_count */
    uint8_t *readbuf;               /* one read buffer for the whole loop */
    bool readbuf_busy;
    bool stopping;
    server_stats stats;
};

int server_run(const server_config *cfg);
/* server.c: a connection's handle is closed; drop it from the server. */
void server_forget(server *s, conn *c);

/* networking.c */
void conn_start(server *s, conn *c);
void conn_send(conn *c, ws_frame *f);           /* takes a new reference */
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
