/* bench_int.h -- what the parts of `tagarela bench` share: options, the
 * per-thread state the controller reads, the latency histogram.
 *
 * One controller (the main thread) and --threads workers, each running its
 * own libuv loop over its share of the clients (client i belongs to worker
 * i % threads). Workers write their counters with relaxed atomic stores
 * (each counter has one writer); the controller reads them with relaxed
 * loads to print progress and to decide when a phase is over. */
#ifndef TAGARELA_BENCH_INT_H
#define TAGARELA_BENCH_INT_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#define BENCH_LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define BENCH_STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
/* Increment by the only writer: a plain add, no locked instruction. */
#define BENCH_ADD(x, v) BENCH_STORE(x, BENCH_LOAD(x) + (v))

/* Bytes of a data message kept to look at: the say frame's keys before the
 * content plus the digits at the content's start fit with room to spare. */
#define BENCH_PREFIX 192

typedef struct bench_opts {
    char url[600];
    char host[256];             /* as given in the URL (Host header) */
    char path[512];
    int port;
    struct sockaddr_in addr;    /* the resolved server address (IPv4) */
    unsigned clients, senders, window, threads, src_addrs, rooms, size;
    double rate;                /* messages/s per sender; 0: window-bound */
    double duration, drain, connect_timeout;
    double connect_rate;        /* logins/s; 0: as fast as possible */
    unsigned max_handshakes;    /* connects + handshakes + logins in flight */
    const char *room;           /* NULL: the server's default room */
    const char *name_prefix;
    bool idle, json, quiet;
    int server_pid;             /* 0: none */
    char nonce[12];             /* tags this run's messages */
} bench_opts;

/* Latency histogram in nanoseconds, log-linear: exact below 128 ns, then 64
 * sub-buckets per power of two (under 1.6% error), up to 2^40 ns. */
#define BENCH_HIST_SUB 64
#define BENCH_HIST_MAXEXP 40
#define BENCH_HIST_N (128 + (BENCH_HIST_MAXEXP - 6) * BENCH_HIST_SUB)

typedef struct bench_hist {
    uint64_t count, sum, min, max;
    uint64_t b[BENCH_HIST_N];
} bench_hist;

void bench_hist_init(bench_hist *h);
void bench_hist_add(bench_hist *h, uint64_t ns);         /* one writer */
void bench_hist_merge(bench_hist *into, const bench_hist *from); /* relaxed reads */
/* The value at quantile q (0..1), clamped to [min, max]; 0 when empty. */
uint64_t bench_hist_quantile(const bench_hist *h, double q);

enum { PHASE_CONNECT, PHASE_HOLD, PHASE_SEND, PHASE_DRAIN, PHASE_STOP };

struct bench_client;

typedef struct bench_sender {
    uint32_t sent, echoed, rejected;    /* written by the worker */
    uint32_t sent_at_t1;                /* unused by workers */
    uint64_t next_due;                  /* ns, when rate > 0 */
} bench_sender;

typedef struct bench_worker {
    int id;
    const bench_opts *o;
    uv_loop_t loop;
    uv_timer_t tick;
    uv_prepare_t prep;
    uv_check_t check;
    pthread_t th;

    struct bench_client **clients;  /* this worker's share */
    unsigned nclients;
    unsigned next_connect;          /* clients[0..next_connect) were started */
    unsigned inflight;              /* started, not yet logged in */
    unsigned max_inflight;
    double conn_tokens;
    uint64_t conn_last;
    unsigned tick_count;
    int phase_seen;
    bool stopping;

    struct bench_client **dirty;    /* clients with output to flush */
    unsigned ndirty, dirty_cap;

    struct bench_client **senders;  /* this worker's senders */
    unsigned nsenders;

    uint64_t rng;
    uint8_t rbuf[256 * 1024];       /* the loop's one read buffer */

    /* counters (one writer: this worker) */
    uint64_t started, connected, logged_in, first_connect_ns, last_login_ns;
    uint64_t deliveries, unique, dups, gaps, foreign;
    uint64_t err_rate_limited, err_other, disconnects, bytes_in, frames_in;
    bench_hist lat;                 /* delivery latency */
    bench_hist login;               /* connect start to own login broadcast */
} bench_worker;

/* The controller's view of the run, shared with the workers. */
typedef struct bench_run {
    bench_opts o;
    bench_worker *w;
    struct bench_client *all;       /* every client, by index */
    bench_sender *snd;              /* every sender, by index < senders */
    int phase;                      /* PHASE_*, written by the controller */
    int failed;                     /* set once by whoever fails first */
    pthread_mutex_t lock;
    char error[512];
} bench_run;

extern bench_run *bench_g;

/* Records the first fatal error; the controller stops the run. */
void bench_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

uint64_t bench_now_ns(void);

/* Workers (bench_worker.c). */
int bench_workers_init(bench_run *r);
int bench_worker_start(bench_worker *w);
void bench_workers_free(bench_run *r);
/* Members of a room (clients i with i % rooms == room). */
unsigned bench_room_members(const bench_opts *o, unsigned room);

#endif
