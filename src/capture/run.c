/* run.c -- the decoder threads of `tagarela capture --threads N` (par.h):
 * a ring of batches the main thread fills and the decoders all walk, each
 * decoding the flows that hash to it, and the main thread writing each
 * batch's merged output once every decoder is done with it. */
#include "par.h"
#include "slab.h"
#include "capture_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define RING 8                      /* batches in flight: the back-pressure */
#define BATCH_PKTS 2048
#define BATCH_BYTES (1024u << 10)   /* payload bytes a batch takes before it closes */
#define MAX_PAYLOAD (256u << 10)    /* the largest snaplen: one packet always fits */

typedef struct bpkt {
    cap_pkt p;                      /* payload: in the batch's bytes */
    int64_t sec;
    uint32_t usec;
    uint64_t hash;                  /* its flow's */
} bpkt;

/* A packet of a thread's list: its index in the batch, and its flow's hash
 * again, so that the thread reads its list in order, not every bpkt. */
typedef struct owned {
    uint32_t i;
    uint64_t hash;
} owned;

typedef struct batch {
    bpkt *pkts;
    uint32_t n;
    uint8_t *bytes;
    size_t used;
    uint64_t base;                  /* number of pkts[0] in the capture */
    double *now;                    /* each packet's time, as c->now */
    owned **own;                    /* per thread: its packets */
    uint32_t *nown;
    cap_part *parts;                /* one per thread */
    int pending;                    /* threads not done with it (under mu) */
    uint8_t *map;                   /* where the buffers above are carved */
    size_t map_len;
} batch;

typedef struct worker {
    cap_run *run;
    int id;
    cap_ctx c;
    pthread_t tid;
    bool started;
} worker;

struct cap_run {
    cap_ctx *main;
    int n;
    worker *w;
    batch ring[RING];
    batch *cur;                     /* being filled, or NULL */
    uint64_t published, written;    /* batches handed out, and written out */
    uint64_t npkts;
    bool ending;
    bool lost;                      /* output lost for want of memory */
    pthread_mutex_t mu;
    pthread_cond_t ready, done;
};

/* ---- a decoder thread ---- */

/* The memory of a packet's flow is fetched while the packets before it are
 * decoded (as capture.c does with one thread): its hash bucket
 * PREFETCH_BUCKET of this thread's packets ahead, the flow PREFETCH_FLOW
 * ahead. */
#define PREFETCH_FLOW 1
#define PREFETCH_BUCKET 4

static void prefetch(worker *wk, const batch *b, const owned *own, uint32_t k, uint32_t nown)
{
    if (k + PREFETCH_FLOW < nown)
        cap_prefetch_hash(&wk->c, own[k + PREFETCH_FLOW].hash, true);
    if (k + PREFETCH_BUCKET < nown) {
        const char *bp = (const char *)&b->pkts[own[k + PREFETCH_BUCKET].i];
        cap_prefetch_hash(&wk->c, own[k + PREFETCH_BUCKET].hash, false);
        __builtin_prefetch(bp);
        __builtin_prefetch(bp + sizeof(bpkt) - 1);
    }
}

/* The decoder's clock at packet i of the batch. */
static void set_clock(cap_ctx *c, const batch *b, uint32_t i)
{
    c->pkt_idx = i;
    c->pkt_seq = b->base + i;
    c->now_sec = b->pkts[i].sec;
    c->now_usec = b->pkts[i].usec;
    c->now = b->now[i];
}

/* The packets of other threads from i to end (excluded): only the clock
 * moves, and where that makes flows idle they go at the same packet as
 * with one thread. Most packets need nothing: only their time is read. */
static void pass_others(cap_ctx *c, const batch *b, uint32_t i, uint32_t end)
{
    if (i >= end) return;
    for (; i < end; i++) {
        c->now = b->now[i];
        if (!cap_sweep_due(c)) continue;
        set_clock(c, b, i);
        cap_mark(c, i, 0);
        cap_sweep(c, NULL);
    }
    set_clock(c, b, end - 1);   /* the whole clock, as after every packet */
}

static void decode_batch(worker *wk, batch *b)
{
    cap_ctx *c = &wk->c;
    cap_part *part = &b->parts[wk->id];
    const owned *own = b->own[wk->id];
    uint32_t nown = b->nown[wk->id], i = 0;
    c->part = part;
    c->out.w = part->out;
    for (uint32_t k = 0; k < nown; k++) {
        uint32_t at = own[k].i;
        pass_others(c, b, i, at);
        set_clock(c, b, at);
        cap_mark(c, at, 0);
        prefetch(wk, b, own, k, nown);
        cap_packet_hash(c, &b->pkts[at].p, own[k].hash);
        i = at + 1;
    }
    pass_others(c, b, i, b->n);
    part->out = c->out.w;
    c->part = NULL;
}

static void *worker_main(void *arg)
{
    worker *wk = arg;
    cap_run *r = wk->run;
    for (uint64_t next = 0;; next++) {
        pthread_mutex_lock(&r->mu);
        while (r->published <= next && !r->ending) pthread_cond_wait(&r->ready, &r->mu);
        bool have = r->published > next;
        pthread_mutex_unlock(&r->mu);
        if (!have) break;
        batch *b = &r->ring[next % RING];
        decode_batch(wk, b);
        pthread_mutex_lock(&r->mu);
        if (--b->pending == 0) pthread_cond_signal(&r->done);
        pthread_mutex_unlock(&r->mu);
    }
    return NULL;
}

/* ---- the main thread ---- */

/* Writes out the oldest batch handed out, once its decoders are done;
 * wait: whether to wait for them. Returns false when it is not done. */
static bool write_oldest(cap_run *r, bool wait)
{
    batch *b = &r->ring[r->written % RING];
    pthread_mutex_lock(&r->mu);
    while (wait && b->pending) pthread_cond_wait(&r->done, &r->mu);
    bool ready = b->pending == 0;
    pthread_mutex_unlock(&r->mu);
    if (!ready) return false;
    if (cap_merge(b->parts, r->n, &r->main->out.w) < 0) r->lost = true;
    r->written++;
    return true;
}

static void publish(cap_run *r)
{
    pthread_mutex_lock(&r->mu);
    r->cur->pending = r->n;
    r->published++;
    pthread_cond_broadcast(&r->ready);
    pthread_mutex_unlock(&r->mu);
    r->cur = NULL;
    /* What is done already goes out now, without waiting. */
    while (r->written < r->published && write_oldest(r, false)) {}
}

static batch *acquire(cap_run *r)
{
    while (r->published - r->written >= RING) write_oldest(r, true);
    batch *b = &r->ring[r->published % RING];
    b->n = 0;
    b->used = 0;
    b->base = r->npkts;
    memset(b->nown, 0, (size_t)r->n * sizeof *b->nown);
    return b;
}

void cap_run_packet(cap_run *r, const cap_pkt *p, int64_t sec, uint32_t usec)
{
    if (r->cur && (r->cur->n == BATCH_PKTS || r->cur->used + p->payload_len > BATCH_BYTES))
        publish(r);
    if (!r->cur) r->cur = acquire(r);
    batch *b = r->cur;
    bpkt *bp = &b->pkts[b->n++];
    bp->p = *p;
    bp->p.payload = b->bytes + b->used;
    if (p->payload_len) memcpy(b->bytes + b->used, p->payload, p->payload_len);
    b->used += p->payload_len;
    bp->sec = sec;
    bp->usec = usec;
    bp->hash = cap_pkt_flow_hash(p);
    uint32_t w = (uint32_t)((bp->hash >> 32) % (uint64_t)r->n);
    b->own[w][b->nown[w]++] = (owned){b->n - 1, bp->hash};
    /* The same expression as capture.c's c->now, so the threads' clocks
     * compare exactly as one thread's. */
    b->now[b->n - 1] = (double)sec + usec / 1e6;
    r->npkts++;
}

/* ---- start and end ---- */

/* A batch's buffers, carved from one huge-page mapping (see
 * cap_huge_map): the packets, their times, each thread's list, the
 * payload bytes, and what is left as each thread's first output buffer. */
#define BATCH_MAP (2u << 20)

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

static int batch_init(batch *b, int n)
{
    size_t pkts = align64(BATCH_PKTS * sizeof *b->pkts), now = align64(BATCH_PKTS * sizeof *b->now);
    size_t own = align64(BATCH_PKTS * sizeof **b->own), bytes = align64(BATCH_BYTES + MAX_PAYLOAD);
    size_t fixed = pkts + now + (size_t)n * own + bytes;
    b->map_len = fixed > BATCH_MAP ? fixed : BATCH_MAP;
    uint8_t *m = cap_huge_map(b->map_len);
    b->map = m;
    b->parts = calloc((size_t)n, sizeof *b->parts);
    b->own = calloc((size_t)n, sizeof *b->own);
    b->nown = calloc((size_t)n, sizeof *b->nown);
    if (!m || !b->parts || !b->own || !b->nown) return -1;
    b->pkts = (bpkt *)(void *)m;
    b->now = (double *)(void *)(m + pkts);
    for (int i = 0; i < n; i++) b->own[i] = (owned *)(void *)(m + pkts + now + (size_t)i * own);
    b->bytes = m + pkts + now + (size_t)n * own;
    size_t share = ((b->map_len - fixed) / (size_t)n) & ~(size_t)63;
    for (int i = 0; i < n; i++) {
        if (share >= 64 * 1024)
            cap_part_init_in(&b->parts[i], (char *)m + fixed + (size_t)i * share, share);
        else if (cap_part_init(&b->parts[i]) < 0)
            return -1;
    }
    return 0;
}

static void batch_free(batch *b, int n)
{
    if (b->parts)
        for (int i = 0; i < n; i++) cap_part_free(&b->parts[i]);
    free(b->parts);
    free(b->own);
    free(b->nown);
    cap_huge_unmap(b->map, b->map_len);
}

/* A decoder's context: the capture's options, with its share of the
 * memory and flow budgets. */
static int worker_init(worker *wk, cap_run *r, int id)
{
    const cap_ctx *m = r->main;
    wk->run = r;
    wk->id = id;
    cap_ctx *c = &wk->c;
    memset(c, 0, sizeof *c);
    c->opt = m->opt;
    c->opt.filter = NULL;       /* the main thread's */
    c->opt.max_mem = m->opt.max_mem / (size_t)r->n;
    c->opt.max_flows = m->opt.max_flows / (size_t)r->n;
    if (c->opt.max_flows < 1) c->opt.max_flows = 1;
    c->out.json = m->out.json;
    c->out.hex = m->out.hex;
    c->out.color = m->out.color;
    c->out.live = m->out.live;
    c->out.w.fd = -1;
    c->keylog = m->keylog;
    return cap_ctx_init(c);
}

static void free_run(cap_run *r)
{
    for (int i = 0; i < RING; i++) batch_free(&r->ring[i], r->n);
    if (r->w)
        for (int i = 0; i < r->n; i++) {
            cap_ctx_free(&r->w[i].c);
        }
    free(r->w);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->ready);
    pthread_cond_destroy(&r->done);
    free(r);
}

static void join_all(cap_run *r)
{
    pthread_mutex_lock(&r->mu);
    r->ending = true;
    pthread_cond_broadcast(&r->ready);
    pthread_mutex_unlock(&r->mu);
    for (int i = 0; i < r->n; i++)
        if (r->w[i].started) pthread_join(r->w[i].tid, NULL);
}

cap_run *cap_run_start(cap_ctx *c, int n)
{
    cap_run *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->main = c;
    r->n = n;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->ready, NULL);
    pthread_cond_init(&r->done, NULL);
    bool ok = (r->w = calloc((size_t)n, sizeof *r->w)) != NULL;
    for (int i = 0; ok && i < RING; i++) ok = batch_init(&r->ring[i], n) == 0;
    for (int i = 0; ok && i < n; i++) ok = worker_init(&r->w[i], r, i) == 0;
    for (int i = 0; ok && i < n; i++)
        ok = (r->w[i].started = pthread_create(&r->w[i].tid, NULL, worker_main, &r->w[i]) == 0);
    if (!ok) {
        if (r->w) join_all(r);
        free_run(r);
        return NULL;
    }
    return r;
}

_Static_assert(sizeof(cap_stats) % sizeof(uint64_t) == 0, "cap_stats: counters only");

/* Every field of cap_stats is a uint64_t counter. */
static void add_stats(cap_stats *to, const cap_stats *from)
{
    uint64_t a[sizeof *to / sizeof(uint64_t)], b[sizeof *to / sizeof(uint64_t)];
    memcpy(a, to, sizeof a);
    memcpy(b, from, sizeof b);
    for (size_t i = 0; i < sizeof a / sizeof *a; i++) a[i] += b[i];
    memcpy(to, a, sizeof a);
}

/* The flows still open at the end, each thread's, merged: the most
 * recently active first, as one thread lists them. */
static void finish_all(cap_run *r)
{
    cap_part *parts = r->ring[0].parts;     /* every batch is written by now */
    for (int i = 0; i < r->n; i++) {
        cap_ctx *c = &r->w[i].c;
        c->part = &parts[i];
        c->out.w = parts[i].out;
        cap_finish(c);
        parts[i].out = c->out.w;
        c->part = NULL;
    }
    if (cap_merge(parts, r->n, &r->main->out.w) < 0) r->lost = true;
}

int cap_run_end(cap_run *r)
{
    if (r->cur && r->cur->n) publish(r);
    r->cur = NULL;
    while (r->written < r->published) write_oldest(r, true);
    join_all(r);
    finish_all(r);
    cap_ctx *m = r->main;
    for (int i = 0; i < r->n; i++) {
        cap_ctx *c = &r->w[i].c;
        add_stats(&m->st, &c->st);
        m->mem.peak += c->mem.peak;     /* each thread's peak: at most their sum */
    }
    int rc = r->lost ? -1 : 0;
    free_run(r);
    return rc;
}
