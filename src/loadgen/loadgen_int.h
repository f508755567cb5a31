/* loadgen_int.h -- what the parts of `tagarela bench` share: options, the
 * latency histogram, a client, a worker and the run.
 *
 * One controller (the main thread) and --threads workers, each running its
 * own libuv loop over its share of the clients (client i belongs to worker
 * i % threads). Workers write their counters with relaxed atomic stores
 * (each counter has one writer); the controller reads them with relaxed
 * loads to print progress and to decide when a phase is over, and moves the
 * run from phase to phase (a relaxed store plus a uv_async wake-up). */
#ifndef TAGARELA_BENCH_INT_H
#define TAGARELA_BENCH_INT_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "counters.h"
#include "ws_codec.h"
#include "ws_deflate.h"

/* Bytes of a server message kept when it spans reads: the say frame's keys
 * before the content plus the fields at the content's start fit with room
 * to spare, and so does any control frame (at most 125 bytes). */
#define BENCH_PREFIX 192
#define BENCH_NONCE_LEN 6

/* One server URL; several (a cluster's nodes) share the clients. */
#define BENCH_MAX_TARGETS 16
typedef struct bench_target {
    char host[256];             /* as given in the URL (Host header) */
    char path[512];
    int port;
    struct sockaddr_in addr;    /* the resolved server address (IPv4) */
    bool tls;                   /* wss:// */
} bench_target;

typedef struct bench_opts {
    char url[2048];             /* the URLs as given, comma-separated */
    bench_target targets[BENCH_MAX_TARGETS];   /* client i goes to i % n_targets */
    unsigned n_targets;
    bool loopback;              /* every server is on 127/8: spread sources */
    unsigned clients, senders, window, threads, src_addrs, rooms, size;
    double rate;                /* messages/s per sender; 0: window-bound */
    double duration, drain, connect_timeout;
    double connect_rate;        /* logins/s; 0: as fast as possible */
    unsigned max_connecting;    /* connects + handshakes + logins in flight */
    const char *room;           /* NULL: the server's default room */
    bool idle, json, quiet;
    bool deflate;               /* offer permessage-deflate, inflate what comes */
    bool tls;                   /* wss:// */
    bool tls_max12;             /* --tls12: no TLS 1.3 */
    const char *ca;             /* --ca FILE: check the server's certificate; NULL: not checked */
    struct ssl_ctx_st *tls_ctx;
    int server_pid;             /* 0: none */
    char nonce[BENCH_NONCE_LEN + 1]; /* tags this run's messages */
} bench_opts;

/* Latency histogram in nanoseconds, log-linear: exact below 128 ns, then 64
 * sub-buckets per power of two (under 1.6% bucket width), up to 2^40 ns
 * (18 minutes; larger values land in the last bucket). */
#define BENCH_HIST_SUB 64
#define BENCH_HIST_MAXEXP 40
#define BENCH_HIST_N (128 + (BENCH_HIST_MAXEXP - 7) * BENCH_HIST_SUB)

typedef struct bench_hist {
    uint64_t count, sum, min, max;
    uint64_t b[BENCH_HIST_N];
} bench_hist;

void bench_hist_init(bench_hist *h);
void bench_hist_add(bench_hist *h, uint64_t ns);         /* one writer */
void bench_hist_merge(bench_hist *into, const bench_hist *from); /* relaxed reads */
/* The value at quantile q (0..1): the middle of the bucket holding the
 * ceil(q * count)-th value, clamped to [min, max]; 0 when empty. */
uint64_t bench_hist_quantile(const bench_hist *h, double q);
/* Bucket of a value and the smallest value of a bucket (for the tests). */
unsigned bench_hist_bucket(uint64_t ns);
uint64_t bench_hist_bucket_low(unsigned b);

enum { PHASE_CONNECT, PHASE_HOLD, PHASE_SEND, PHASE_DRAIN, PHASE_STOP };

enum {
    /* CS_CLOSING: the server sent a close frame; ours is on its way, then
     * FIN, and the handle waits for the server's end of the connection */
    CS_NEW, CS_CONNECTING, CS_HANDSHAKE, CS_LOGIN, CS_READY, CS_CLOSING, CS_DEAD
};

/* What a receiver has seen of one sender: the next sequence number and a
 * 64-bit window of the ones before it, so a little reordering is not
 * mistaken for duplicates. */
typedef struct bench_seen {
    uint32_t next;
    uint64_t mask;              /* bit k: next - 1 - k arrived */
} bench_seen;

typedef struct bench_worker bench_worker;

typedef struct bench_client {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    bench_worker *w;
    uint32_t idx;
    uint32_t room;
    uint8_t state;              /* CS_* */
    bool handle_open, writing, dirty;
    bool closing;               /* CS_CLOSING and our FIN is sent */
    uint64_t t_start;           /* ns, connect started */

    char *hs;                   /* handshake: expected accept + response so far */
    uint32_t hs_len;

    /* a frame spanning reads */
    uint8_t hdr[WS_MAX_HEADER];
    uint8_t hdr_len;
    bool in_frame;
    uint8_t f_op;
    uint64_t f_len, f_left;
    uint16_t pre_len;
    uint8_t pre[BENCH_PREFIX];
    bool deflate;               /* the server agreed to permessage-deflate */
    bool f_rsv1;                /* the frame spanning reads is compressed */
    uint8_t *zbuf;              /* its compressed payload, whole */

    /* output: appended to out, written from wbuf */
    uint8_t *out, *wbuf;
    uint32_t out_len, out_cap, wbuf_cap;
    struct bench_client *dirty_next;

    bench_seen *seen;           /* per sender of the room, by s / rooms */
    uint32_t nseen;

    struct ssl_st *ssl;         /* wss:// (tls.c); NULL: plain */
    bool tls_done;              /* the TLS handshake is over */
} bench_client;

/* A sender's counters, written by the worker that owns it. */
typedef struct bench_sender {
    uint64_t sent, echoed, rejected;
    uint64_t next_due;          /* ns, when rate > 0 */
} bench_sender;

struct bench_run;

struct bench_worker {
    int id;
    struct bench_run *run;
    const bench_opts *o;
    uv_loop_t loop;
    uv_timer_t tick;
    uv_check_t check;
    uv_async_t wake;
    pthread_t th;
    bool started;

    bench_client **clients;     /* this worker's share */
    unsigned nclients;
    unsigned next_connect;      /* clients[0..next_connect) were started */
    unsigned connecting;        /* started, not yet logged in */
    unsigned max_connecting;
    double conn_tokens;
    uint64_t conn_last;
    int phase;                  /* the phase it acts on */
    uint64_t tick_ms;

    bench_client *dirty;        /* clients with output to flush */
    bench_client **senders;     /* this worker's senders */
    unsigned nsenders;

    uint64_t rng;
    uint64_t now;               /* ns, taken once per read */
    uint8_t *rbuf;              /* the loop's one read buffer */
    size_t rbuf_size;
    /* permessage-deflate: the server keeps no context, so one inflater
     * serves every client of the loop, a whole message at a time */
    ws_inflater inf;
    ws_inflate_out zout;
    uint8_t *pbuf;              /* wss://: the plaintext of one record */

    /* counters (one writer: this worker) */
    int phase_seen;             /* the last phase it acted on */
    uint64_t started_n, logged_in, first_connect_ns, last_login_ns;
    uint64_t deliveries, unique, dups, gaps, foreign;
    uint64_t err_rate_limited, err_other, disconnects, pings;
    uint64_t bytes_in, deflate_clients, compressed_in;
    bench_hist lat;             /* delivery latency */
    bench_hist login;           /* connect start to own login broadcast */
};

/* The controller's view of the run, shared with the workers. */
typedef struct bench_run {
    bench_opts o;
    bench_worker *w;
    bench_client *all;          /* every client, by index */
    bench_sender *snd;          /* every sender, by index < senders */
    char **login_msg;           /* per room: the login message's tail */
    int phase;                  /* PHASE_*, written by the controller */
    int failed;                 /* set once by whoever fails first */
    pthread_mutex_t lock;
    char error[512];            /* the first fatal error */
    char first_disconnect[256]; /* why the first logged-in client went */
} bench_run;

/* Records why a logged-in client went away, the first time only. */
void bench_note_disconnect(struct bench_run *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Records the first fatal error; the controller stops the run. */
void bench_fail(struct bench_run *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

uint64_t bench_now_ns(void);

/* TLS for wss:// (tls.c). The client's output buffer holds plaintext until
 * bench_tls_seal() encrypts it (and whatever the session has to send) in
 * place, right before a write. */
#define BENCH_TLS_RECORD 16384
/* Room for extra more bytes in c's output buffer (worker.c); -1: out of memory. */
int bench_out_reserve(bench_client *c, size_t extra);
int bench_tls_init(bench_opts *o);
void bench_tls_free(bench_opts *o);
int bench_tls_start(bench_client *c);
void bench_tls_end(bench_client *c);
int bench_tls_seal(bench_client *c);
bool bench_tls_wants_write(const bench_client *c);
/* Decrypts n bytes read; deliver gets each piece of plaintext, and once
 * (p == NULL) the moment the session is up. -1: the session failed. */
int bench_tls_open(bench_client *c, const uint8_t *p, size_t n, uint8_t *plain, size_t cap,
                   void (*deliver)(bench_client *c, uint8_t *p, size_t n));

/* Workers (worker.c). */
int bench_workers_init(bench_run *r);
int bench_worker_start(bench_worker *w);
void bench_worker_join(bench_worker *w);
void bench_workers_free(bench_run *r);
/* Tells every worker the phase changed. */
void bench_set_phase(bench_run *r, int phase);
/* Members of a room (clients i with i % rooms == room). */
unsigned bench_room_members(const bench_opts *o, unsigned room);

/* Content of a say: "<ns>.<sender>.<seq>.<nonce>" padded with 'x'. */
size_t bench_content_min(unsigned senders, uint64_t now_ns);
size_t bench_content_write(char *out, uint64_t ns, unsigned sender, uint64_t seq,
                           const char *nonce, size_t size);
/* Parses a content start (up to n bytes, ends at '"' or padding). Returns
 * true when it is one of ours (nonce matches). */
bool bench_content_parse(const uint8_t *p, size_t n, const char *nonce,
                         uint64_t *ns, unsigned *sender, uint64_t *seq);

#endif
