/* conn.h -- one client connection of a worker: its socket, the HTTP phase,
 * the WebSocket reader, its output queue, and the ways it ends.
 *
 * A connection belongs to one worker (one loop, one thread) for its whole
 * life; only that loop reads, writes or frees it. */
#ifndef TAGARELA_CONN_H
#define TAGARELA_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "bucket.h"
#include "chat.h"
#include "http_req.h"
#include "outq.h"
#include "proxy.h"
#include "ws_codec.h"
#include "ws_deflate.h"

#define READ_BUFFER_SIZE (64 * 1024)
#define CLOSE_GRACE_MS 2000     /* wait this long for a peer to finish closing */
/* Bytes of one connection's messages on their way to the hub (another
 * thread) before it is read no more: a burst's worth, and all that one
 * connection can pin there. */
#define CONN_HUB_INFLIGHT (256 * 1024)

enum conn_state { CONN_HTTP, CONN_WS, CONN_CLOSING };
enum conn_port { PORT_WS, PORT_HTTP };

typedef struct worker worker;
typedef struct ip_count ip_count;
struct tls_conn;

/* A PROXY protocol header that arrived in pieces (trusted peers only). */
typedef struct proxy_wait {
    uint16_t len;
    uint8_t buf[PROXY_MAX];
} proxy_wait;

typedef struct conn {
    uv_tcp_t tcp;                   /* first: a conn is its handle */
    worker *w;
    struct conn *prev, *next;       /* every connection of the worker */
    struct conn *dirty_next;        /* output waiting for the flush */
    http_req *req;                  /* while speaking HTTP */
    chat_user *user;                /* the chat's, written by the hub only */
    ws_reader rd;
    ws_inflater inf;                /* permessage-deflate: the client's messages */
    outq q;
    size_t inflight;                /* bytes handed to uv_write */
    uint64_t last_active;           /* loop time, ms: a message, pong or close came */
    uint64_t last_ping;
    uint64_t deadline;              /* when CONN_CLOSING gives up waiting */
    uint64_t last_progress;         /* loop ms: the output last moved, or began to wait */
    uint64_t partial_since;         /* loop ms a message began; 0: none unfinished */
    uint64_t unread_since;          /* loop ms we stopped reading it mid-message: the
                                     * message's clock stands still; 0: running */
    uint64_t pong_end;              /* q.done once our last pong is written */
    uint8_t *next_ping;             /* a ping to answer after it: length, payload */
    uint8_t *stash;                 /* pipelined HTTP bytes behind an unsent answer */
    uint32_t stash_len;
    uint32_t turn;                  /* the worker's turn turn_read counts */
    uint32_t turn_read;             /* bytes read in that turn */
    size_t partial_held;            /* the reader's bytes counted in the partial budget */
    size_t to_hub;                  /* bytes of its messages on the way to the hub (atomic) */
    bucket in_rate;                 /* the chat's rate, checked before a copy to the hub */
    uint64_t ctl_at;                /* loop ms of the last control frame */
    float ctl_tokens;               /* control frames it may still send at once */
    struct conn *turn_full_next;    /* read its share of a turn: resumed at its end */
    ip_count *ip;                   /* NULL: not counted (yet) */
    uint8_t addr[16];               /* the client's address, normalised */
    uint8_t addr_len;               /* 4, 16, or 0 when unknown */
    char addr_text[ADDR_TEXT_LEN];  /* printable, for logs */
    bool proxy_peer;                /* the peer is a --trusted-proxy */
    bool proxy_checked;             /* the start was looked at for a PROXY header */
    proxy_wait *proxy;              /* a PROXY header being read */
    struct tls_conn *tls;           /* TLS session (tls_conn.c); NULL: plain TCP */
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
    bool reading;                   /* uv_read_start in force */
    bool deaf;                      /* never read again (dropped for not reading) */
    bool turn_full;                 /* read its share of this turn */
    bool http_waiting;              /* an HTTP answer is unsent: the next request waits */
    bool hub_full;                  /* CONN_HUB_INFLIGHT on the way: not read (atomic) */
    bool want_drain;                /* the chat waits for the queue to empty */
    bool http_later;                /* the hub owes an answer (admin.c): nothing is read */
    bool deflate;                   /* permessage-deflate agreed (set before the hub knows it) */
    uint8_t deflate_bits;           /* the window it asked our compressor to keep to */
    uint32_t deflate_held;          /* its kept inflate context, counted in deflate_bytes */
} conn;

/* Starts reading an accepted connection (speaking HTTP first). */
void conn_start(worker *w, conn *c);
void conn_send(conn *c, ws_frame *f);           /* takes a new reference */
void conn_send_owned(conn *c, ws_frame *f);     /* takes the caller's reference */
void conn_send_forced(conn *c, ws_frame *f);    /* past the outbound cap */
void conn_close_ws(conn *c, unsigned code, const char *reason);
void conn_abort(conn *c);
/* The hub is done with it: the memory may go once the handle is closed. */
void conn_release(conn *c);
/* Writes what this turn queued to the worker's dirty connections, and
 * closes those left with more than --outbound-cap unwritten. */
void conn_flush_dirty(worker *w);
/* The worker's turn is over: connections that read their share of it
 * read again. */
void conn_turn_end(worker *w);
/* The hub's answer to an operator's request (an HTTP response, one
 * reference for the callee); the connection closes once it is written. */
void conn_http_answered(conn *c, ws_frame *answer);
/* Starts or stops reading as its state now wants (after hub_full changed). */
void conn_update_reading(conn *c);
/* For the transport (tls_conn.c): n bytes of the queue were taken (sent,
 * or encrypted); a uv_write of the connection's ended with status. */
void conn_consumed(conn *c, size_t n);
void conn_write_done(conn *c, int status);
/* Reads no more of c in this loop turn (resumed at its end). */
void conn_pause_turn(conn *c);
/* Liveness and deadlines, from the worker's sweep. */
void conn_sweep(conn *c, uint64_t now);

#endif
