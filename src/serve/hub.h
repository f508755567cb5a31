/* hub.h -- where the chat runs and how the workers reach it: directly with
 * one thread, across threads with more (hub.c has the why). */
#ifndef TAGARELA_HUB_H
#define TAGARELA_HUB_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "bans.h"
#include "chat.h"
#include "cluster.h"
#include "options.h"
#include "store.h"
#include "store_timed.h"
#include "worker.h"
#include "xqueue.h"

typedef struct hub {
    uv_loop_t *loop;
    const server_config *cfg;
    uv_timer_t trim;
    uv_check_t turn;
    chat *chat;
    store store;                    /* chat history (SQLite) */
    store *st;                      /* the history: &store, or the cluster's */
    cluster *cluster;               /* --redis; NULL: one server */
    store_timed timed;              /* the history, timed for /metrics: the chat's */
    store chat_store;
    uint64_t arrival;               /* uv_hrtime() the text the chat is on was read; 0: none */
    worker *workers;
    unsigned n_workers;
    bool threaded;
    bool stopping;
    unsigned workers_done;
    ip_table ips;
    ban_table bans;                 /* the operator's (admin.c) */
    size_t partial_bytes;           /* unfinished messages, all workers (atomic) */
    size_t deflate_bytes;           /* clients' kept inflate contexts, all workers (atomic) */
    worker_link link;               /* how the workers reach the chat */
    size_t users, rooms;            /* relaxed atomic copies for /stats */
    ws_deflater deflater;           /* each broadcast compressed once, here */
    uint64_t compressions;          /* counters (one writer: the hub) */
    uint64_t deflate_deliveries;    /* compressed frames queued to clients */
    uint64_t deflate_plain;         /* uncompressed ones queued to deflate clients */
    uv_timer_t coalesce;            /* a deferred hand-over to the loops */
    size_t pending;                 /* deliveries waiting in out */
    uint64_t last_big_hand_over;    /* uv_hrtime() */
    void (*on_done)(struct hub *h); /* every worker has stopped */
    /* threaded only */
    uv_async_t wake;
    xqueue inbox;                   /* from the workers */
    xvec spare;
    xvec *out;                      /* per worker: this turn's messages */
} hub;

/* Opens the history and sets up `threads` workers (one: on loop itself). */
int hub_init(hub *h, const server_config *cfg, uv_loop_t *loop, unsigned threads);
/* Hands reloaded options (generation gen) to every loop: see serve.c. */
void hub_reload(hub *h, const server_config *cfg, uint32_t gen);
void hub_free(hub *h);
int hub_start(hub *h);
void hub_join(hub *h);
/* Serves a new connection on listener: here (one thread) or on the least
 * busy worker's loop. */
void hub_accept(hub *h, uv_stream_t *listener, int port);
/* The chat's output so far goes out (the turn ends early), then c is
 * closed with code and reason (a static string): an operator's kick. */
void hub_close_after_chat(hub *h, conn *c, unsigned code, const char *reason);
/* Every client hears 1001, then on_done runs; a second call aborts them. */
void hub_stop(hub *h);

#endif
