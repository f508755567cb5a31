/* worker.h -- one event loop's share of the connections (one per thread):
 * accepting them, their liveness (pings, idle and handshake timeouts), the
 * writes of each loop turn, and stopping.
 *
 * A worker does not know where the chat runs: its connections reach the
 * chat, and the worker reports the end of its turns, through worker_link,
 * which the hub fills in (hub.c). */
#ifndef TAGARELA_WORKER_H
#define TAGARELA_WORKER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "conn.h"
#include "dict.h"
#include "options.h"
#include "web.h"
#include "xqueue.h"

struct admin_cmd;
struct ban_table;

/* Connections from one address (an IPv4 address, an IPv6 /64), counted
 * against --max-conns-per-ip. */
struct ip_count {
    unsigned count;
    uint8_t len;
    uint8_t addr[8];                /* net_addr_limit_key() */
};

/* The per-address counts, shared by every worker under one lock, taken at
 * accept and at the end of a connection only. */
typedef struct ip_table {
    uv_mutex_t lock;
    dict map;                       /* address bytes -> ip_count */
} ip_table;

void ip_table_init(ip_table *t);
void ip_table_free(ip_table *t);
/* *count is the address's count with this connection. */
ip_count *ip_acquire(ip_table *t, const net_addr *a, unsigned *count);
void ip_release(ip_table *t, ip_count *ip);

/* Counters with one writer (their loop), read by any loop for /stats. */
typedef struct worker_stats {
    uint64_t accepted, handshakes, messages_in, frames_out, bytes_out, slow_closed;
    uint64_t deflate_handshakes;    /* of them, with permessage-deflate */
    uint64_t inflated;              /* compressed messages received whole */
    uint64_t closes[CLOSE_SLOTS];   /* close handshakes by code (close_slot) */
    hist delivery;                  /* a message's arrival to its last write, its frames written here */
} worker_stats;

typedef struct worker_link {
    void (*connect)(conn *c);
    void (*text)(conn *c, const uint8_t *data, size_t n);
    void (*binary)(conn *c);
    /* The connection is ending; true when the hub still holds it (the
     * memory must stay until conn_release). */
    bool (*leave)(conn *c);
    void (*drained)(conn *c);           /* its queue emptied, as the chat asked */
    void (*before_write)(worker *w);    /* this turn's writes are about to go out */
    void (*turn_end)(worker *w);        /* the turn is over: hand its events on */
    void (*done)(worker *w);            /* stopped: its loop has nothing left */
    void *arg;                          /* the hub */
    /* An operator's command (admin.c), answered by conn_http_answered. */
    void (*admin)(conn *c, struct admin_cmd *cmd);
} worker_link;

struct worker {
    uv_loop_t *loop;
    const server_config *cfg;       /* changed on its own thread only (worker_set_config) */
    uint32_t config_gen;            /* atomic: the reload whose options cfg is */
    const worker_link *link;
    ip_table *ips;
    struct ban_table *bans;         /* the operator's, checked at each handshake */
    web_ctx web;
    unsigned id;
    bool threaded;                  /* own thread; the chat is across the hub */
    uv_timer_t sweep;
    uv_check_t turn;                /* threaded: the end of each loop turn */
    conn *conns;                    /* all connections */
    size_t n_conns;                 /* relaxed atomic: the hub balances on it */
    conn *dirty;                    /* connections to flush this turn */
    size_t n_dirty;
    conn *turn_full;                /* connections that read their share of this turn */
    uint32_t turns;                 /* loop turns, counted at their end */
    size_t *partial_bytes;          /* unfinished messages' bytes, all workers (atomic) */
    size_t *deflate_bytes;          /* kept inflate contexts' bytes, all workers (atomic) */
    uint64_t last_big_flush;        /* uv_hrtime() of the last write to many */
    uv_timer_t coalesce;            /* a deferred write to many */
    uint8_t *readbuf;               /* one read buffer for the whole loop */
    bool readbuf_busy;
    bool stopping;
    worker_stats stats;
    /* threaded only */
    uv_loop_t own_loop;
    uv_thread_t thread;
    uv_async_t wake;
    xqueue inbox;                   /* from the hub */
    xvec to_hub;                    /* this turn's events for the chat */
    xvec spare;
};

/* loop: the loop to share (one thread), or NULL for a loop of its own on
 * a thread of its own. */
int worker_init(worker *w, unsigned id, uv_loop_t *loop, const server_config *cfg,
                const worker_link *link, ip_table *ips, const web_ctx *web);
void worker_free(worker *w);
/* Starts its timers (and its thread, when it has its own loop). */
int worker_start(worker *w);
void worker_join(worker *w);

/* A new connection on listener (same loop), or an accepted socket handed
 * over from another loop (counted in n_conns by the caller). */
void worker_accept(worker *w, uv_stream_t *listener, int port);
void worker_adopt(worker *w, int fd, int port);
/* Messages from the hub, one batch (the hub's thread). */
void worker_post(worker *w, xvec *batch);
/* A connection is gone for good; drop it from its worker. */
void worker_forget(worker *w, conn *c);
void worker_stop(worker *w);
/* A reload's options, generation gen, on the worker's own thread. */
void worker_set_config(worker *w, const server_config *cfg, uint32_t gen);
void worker_abort_all(worker *w);
void worker_flush(worker *w);           /* end of a loop turn */

/* Coalescing: a turn that writes to at least this many connections within
 * this long of the last such one waits for a timer. */
#define COALESCE_MIN_CONNS 64
#define COALESCE_NS 1000000
/* True when the work waits for t (already, or from now on); false: do it now. */
bool coalesce_wait(uv_timer_t *t, uv_timer_cb cb, size_t fanout, uint64_t last_big, bool stopping);

#endif
