/* cluster_int.h -- the cluster module's insides: shards and their
 * connections, the key layout, the Lua scripts. */
#ifndef TAGARELA_CLUSTER_INT_H
#define TAGARELA_CLUSTER_INT_H

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "cluster.h"
#include "dict.h"
#include "sbuf.h"

/* Timings: a node's heartbeat lives HEARTBEAT_TTL_MS and is refreshed every
 * TICK_MS; a node whose heartbeat has expired is reaped by another one,
 * which has been connected for at least REAP_GRACE_MS (so that a node
 * coming back with Redis may refresh its heartbeat first). */
#define TICK_MS 1000
#define HEARTBEAT_TTL_MS 5000
#define REAP_GRACE_MS 7000
#define REAP_LOCK_MS 10000
#define COMMAND_TIMEOUT_MS 1000
#define ASYNC_TIMEOUT_MS 3000    /* an async connection must be up by then */
#define MAX_PENDING_SAYS 4096   /* per shard: past it says are refused */
/* Each node pings itself through each shard's bus every TICK_MS: a
 * subscription that brought nothing for SUB_SILENT_MS is taken for dead
 * (hiredis 0.14's libuv adapter can miss a socket error) and made again. */
#define SUB_SILENT_MS 3500
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 1000
#define READER_MAX_BUF (1024 * 1024)    /* an idle reader keeps no more */

enum {
    SCRIPT_SAY, SCRIPT_LOGIN, SCRIPT_LOGOUT, SCRIPT_SNAPSHOT, SCRIPT_TRIM_AGE,
    SCRIPT_CLAIM_UID, SCRIPT_IDENT_FIND, SCRIPT_IDENT_ADD, N_SCRIPTS
};
extern const char *const cluster_scripts[N_SCRIPTS];

/* A say sent to Redis, in the order of the answers. Its script runs only
 * until SAY_DEADLINE_MS after sending (by Redis's clock); its sender is
 * told it was refused SAY_REFUSE_MS after sending (by ours) when no answer
 * came: the margin between them covers the clocks' skew. */
#define SAY_DEADLINE_MS 1000
#define SAY_REFUSE_MS 2000
typedef struct pending_say {
    uint64_t sent;              /* wall ms */
    uint32_t uid;
    bool told;                  /* its sender heard unavailable already */
} pending_say;

typedef struct shard {
    cluster *cl;
    int index;
    cluster_url url;
    redisContext *cmd;          /* commands (blocking, with a timeout); NULL: down */
    uint64_t cmd_retry_at;      /* ms: the next connection attempt */
    unsigned cmd_backoff;
    redisAsyncContext *sub;     /* the subscription, on the chat's loop; NULL: down */
    bool sub_ready;             /* subscribed, and caught up with the shard */
    bool resync_due;            /* subscribed, not caught up yet */
    uint64_t sub_retry_at;
    uint64_t sub_started;       /* ms: when the subscription was asked for */
    uint64_t sub_heard;         /* ms: the last message it brought (our pings included) */
    uint64_t last_ping;         /* ms: our last ping on the bus */
    redisAsyncContext *says;    /* the say script, on the chat's loop; NULL: down */
    bool says_up;
    uint64_t says_started, says_retry_at;
    unsigned says_backoff;
    pending_say *pending;       /* a ring of MAX_PENDING_SAYS: scripts sent, not answered */
    unsigned pending_head, says_pending;
    bool says_stalled;          /* the oldest one is past its deadline */
    unsigned sub_backoff;
    uint64_t up_since;          /* ms: connected without a break since */
    char sha[N_SCRIPTS][41];
} shard;

struct cluster {
    shard shards[CLUSTER_MAX_SHARDS];
    int n;
    store_limits limits;
    store st;
    uv_loop_t *loop;
    uv_timer_t tick;
    bool timer_on;
    chat *chat;
    char node[17];              /* this node's random id, hex */
    char channel[32];           /* the bus: tg:bus:<db> */
    bool leaving;
    bool closed;
    int healthy;                /* atomic: 1 when every shard is ready */
    uint64_t reconnects;        /* atomic */
    sbuf tmp;
};

/* ---- keys (rooms by the hex of their id, in a hash tag) ---- */
int cluster_shard_of(const cluster *cl, const char *room, size_t len);
/* "tg:{r<hex>}:<suffix>" into buf (CLUSTER_KEY_MAX bytes). */
#define CLUSTER_KEY_MAX 192
void cluster_room_key(char *buf, const char *room, size_t len, const char *suffix);
void cluster_room_hex(char *buf, const char *room, size_t len);     /* 129 bytes */
int cluster_unhex(const char *hex, size_t n, char *out, size_t cap);  /* length or -1 */

/* ---- connections (conn.c) ---- */
/* The shard's command connection, connected (and its scripts loaded) when
 * it was down and its backoff allows; NULL when unreachable. */
redisContext *shard_cmd(shard *s);
/* Runs a command; NULL when the shard is unreachable (it is then marked
 * down) — an error reply is returned as it is. */
redisReply *shard_command(shard *s, const char *fmt, ...);
redisReply *shard_argv(shard *s, int argc, const char **argv, const size_t *lens);
/* EVALSHA of one of the scripts (loaded again after a Redis restart). */
redisReply *shard_script(shard *s, int script, int nkeys, int argc, const char **argv,
                         const size_t *lens);
void shard_cmd_down(shard *s);
void shard_async_connect(shard *s);
void shard_async_check(shard *s);
void shard_async_close(shard *s);
/* Drops a connection that looks dead; it is made again at the next tick. */
void shard_drop_sub(shard *s);
void shard_drain_sub(shard *s);
void shard_drop_says(shard *s);
void cluster_update_health(cluster *cl);

/* ---- the bus and the node (cluster.c) ---- */
void cluster_on_subscribed(shard *s);
void cluster_on_message(shard *s, const char *msg, size_t n);

/* ---- the store (rstore.c) ---- */
extern const store_ops cluster_store_ops;
/* Every stored say of the room with from < id < to (to 0: no end), oldest
 * first, private ones included: what a node missed, delivered late. */
int cluster_catch_up(cluster *cl, const char *room, size_t len, uint64_t from, uint64_t to);

#endif
