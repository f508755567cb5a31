/* cluster.h -- cluster mode (`tagarela serve --redis URL`): servers that
 * share one or more Redis servers are one chat. The cluster gives the chat
 * its bus (logins, logouts and says shared through Redis pub/sub, says
 * numbered and stored by one Lua script) and its store (history in Redis
 * Streams, identities in Redis keys), keeps this node's heartbeat, and
 * reaps the users of nodes that died. docs/cluster.md has the design. */
#ifndef TAGARELA_CLUSTER_H
#define TAGARELA_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "chat.h"
#include "store.h"

#define CLUSTER_MAX_SHARDS 16
#define CLUSTER_MAX_URL 512

/* One Redis server: redis://[:password@]host[:port][/db] or unix:///path. */
typedef struct cluster_url {
    char host[256];             /* "" for a unix socket */
    int port;
    char path[256];             /* the unix socket */
    char password[128];         /* "" when none */
    int db;
} cluster_url;

/* Parses one URL. Returns 0, or -1 with the reason in err. */
int cluster_url_parse(const char *s, cluster_url *out, char *err, size_t errlen);

typedef struct cluster cluster;

/* The shards, in order (the first holds the global keys), the retention
 * limits its history keeps, and the loop the chat runs on. Connects to
 * every shard at once: -1 with the reason in err when one cannot be
 * reached or refuses (a bad password, a Redis without Streams). */
cluster *cluster_new(const cluster_url *urls, int n, const store_limits *limits,
                     uv_loop_t *loop, char *err, size_t errlen);
/* The store the chat reads history and identities from. */
store *cluster_store(cluster *cl);
/* Gives the chat its bus and starts the subscriptions and the heartbeat. */
void cluster_start(cluster *cl, chat *c);
/* Runs the loop until every shard is subscribed and caught up, at most
 * ms; false when it is not. */
bool cluster_wait_ready(cluster *cl, uint64_t ms);
/* SIGTERM: this node's users leave the cluster at once (their logouts
 * are published), and its heartbeat goes. */
void cluster_leave(cluster *cl);
/* Closes the connections and timers (the loop then can end). */
void cluster_close(cluster *cl);
/* After the loop has ended. */
void cluster_free(cluster *cl);

/* For /healthz and /metrics, from any thread: true when every shard is
 * reachable and subscribed; why says what is wrong otherwise. */
bool cluster_healthy(const cluster *cl, char *why, size_t whylen);
int cluster_shards(const cluster *cl);
uint64_t cluster_reconnects(const cluster *cl);

#endif
