/* web.h -- what the server answers to HTTP, with no socket in sight: the
 * WebSocket handshake (handshake.c) and the web port's pages, page config
 * and operators' endpoints (webpage.c). Each answer is written to an sbuf. */
#ifndef TAGARELA_WEB_H
#define TAGARELA_WEB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hist.h"
#include "http_req.h"
#include "options.h"
#include "procinfo.h"
#include "sbuf.h"
#include "ws_deflate.h"

/* Close handshakes are counted by code: the ones a server sends or hears
 * most, each in its slot, any other in the last. */
#define CLOSE_SLOTS 9
unsigned close_slot(unsigned code);
unsigned close_slot_code(unsigned slot);        /* 0: the slot of the others */

/* A moment's picture of the server's counters, for /stats and /metrics. */
typedef struct serve_stats {
    uint64_t accepted, handshakes, messages_in, frames_out, bytes_out, slow_closed;
    uint64_t closes[CLOSE_SLOTS];
    /* permessage-deflate: handshakes that agreed to it, broadcasts
     * compressed, and what deflate clients were sent compressed or not */
    uint64_t deflate_handshakes, deflate_compressions, deflate_deliveries, deflate_plain;
    uint64_t inflated;              /* compressed messages received from clients */
    proc_info proc;
    size_t conns, users, rooms;
    unsigned threads;
    size_t *per_thread;             /* threads counts, or NULL when out of memory */
    int redis_shards;               /* cluster mode (0: not clustered) */
    bool redis_up;                  /* every shard reachable and caught up */
    char redis_why[200];            /* what is wrong when not */
    uint64_t redis_resyncs;         /* subscriptions made (1 per shard at start) */
    hist delivery, append, commit;  /* latencies: delivery, the history's writes */
} serve_stats;

/* What the web answers need from the running server. */
typedef struct web_ctx {
    const server_config *cfg;
    /* Fills a picture of the counters (per_thread allocated: free it). */
    void (*stats)(void *arg, serve_stats *out);
    void *arg;
} web_ctx;

/* Answers a WebSocket upgrade request. Returns 101 (out holds the 101
 * response) or the HTTP status of the refusal (out holds it). A
 * permessage-deflate offer is answered per pol (NULL: declined), and what
 * was agreed is left in *pmd (pmd->on false: nothing). */
int handshake_answer(const http_req *r, const server_config *cfg, bool web_port,
                     const ws_pmd_policy *pol, ws_pmd *pmd, sbuf *out);
/* A complete error response with a short text body. */
void http_error_response(sbuf *out, int status, const char *extra_headers, const char *body);
const char *http_status_text(int status);

/* Answers a plain HTTP request on the web port: out holds the answer, or
 * its headers when *body is set (a frame of the page's own bytes, one
 * reference for the caller). */
struct ws_frame;
void webpage_answer(const http_req *r, const web_ctx *ctx, sbuf *out, bool *close_after,
                    struct ws_frame **body);

#endif
