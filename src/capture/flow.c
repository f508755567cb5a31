/* flow.c -- connections: the flow table, who is client and who is
 * server, SYN/FIN/RST, eviction, and routing each direction's in-order bytes
 * to its decoder (HTTP until the 101, then WebSocket).
 *
 * Open flows sit on an LRU list so that idle ones, and the least recently
 * used ones when memory runs short, are evicted from its tail. Closed flows
 * linger briefly on a second list so that late ACKs and retransmissions are
 * recognised instead of starting a bogus flow. */
#include "capture_int.h"
#include "tls.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLOSED_LINGER 10.0      /* seconds of capture time */
#define LRU_STEP 1.0            /* seconds: how exact the LRU order is */
#define MIN_BUCKETS 1024

/* ---- buffers charged to the memory budget ---- */

void cap_buf_free(cap_ctx *c, cap_buf *b)
{
    cap_mem_free(&c->mem, b->p, b->cap);
    b->p = NULL;
    b->len = b->cap = 0;
}

int cap_buf_append(cap_ctx *c, cap_buf *b, const uint8_t *p, size_t n)
{
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n) cap *= 2;
        uint8_t *q = cap_mem_realloc(&c->mem, b->p, b->cap, cap);
        if (!q) return -1;
        b->p = q;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

/* ---- the context ---- */

int cap_ctx_init(cap_ctx *c)
{
    /* The table grows with the flows (see grow_table): a small one stays
     * in the cache, and a lookup is one bucket load per packet. */
    c->nbuckets = MIN_BUCKETS;
    c->buckets = calloc(c->nbuckets, sizeof *c->buckets);
    c->mem.limit = c->opt.max_mem;
    return c->buckets ? 0 : -1;
}

/* Doubles the hash table once there are more flows than buckets. On
 * failure the table stays as it is: slower, still right. */
static void grow_table(cap_ctx *c)
{
    size_t n = c->nbuckets * 2;
    cap_flow **b = calloc(n, sizeof *b);
    if (!b) return;
    for (size_t i = 0; i < c->nbuckets; i++) {
        cap_flow *f = c->buckets[i], *next;
        for (; f; f = next) {
            next = f->hnext;
            cap_flow **slot = &b[f->hash & (n - 1)];
            f->hnext = *slot;
            *slot = f;
        }
    }
    free(c->buckets);
    c->buckets = b;
    c->nbuckets = n;
}

/* ---- lists ---- */

static void list_remove(cap_list *l, cap_flow *f)
{
    if (f->prev) f->prev->next = f->next;
    else l->head = f->next;
    if (f->next) f->next->prev = f->prev;
    else l->tail = f->prev;
    f->prev = f->next = NULL;
    l->n--;
}

static void list_push(cap_list *l, cap_flow *f)
{
    f->prev = NULL;
    f->next = l->head;
    if (l->head) l->head->prev = f;
    else l->tail = f;
    l->head = f;
    l->n++;
}

/* ---- keys ---- */

static uint64_t key_hash(const cap_key *k)
{
    uint64_t w[5], h = 0x9E3779B97F4A7C15ULL;
    memcpy(w, k, sizeof w);
    for (int i = 0; i < 5; i++) {
        h ^= w[i];
        h *= 0xBF58476D1CE4E5B9ULL;
        h ^= h >> 31;
    }
    return h;
}

/* memcmp's order of two addresses, in two big-endian words: the library
 * call was 3% of a capture's time, on every packet. */
static int addr_cmp(const uint8_t *a, const uint8_t *b)
{
    uint64_t x[2], y[2];
    memcpy(x, a, 16);
    memcpy(y, b, 16);
    for (int i = 0; i < 2; i++) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        uint64_t u = __builtin_bswap64(x[i]), v = __builtin_bswap64(y[i]);
#else
        uint64_t u = x[i], v = y[i];
#endif
        if (u != v) return u < v ? -1 : 1;
    }
    return 0;
}

/* Builds the key; *side is 0 when the packet goes from key side a to b. */
static void make_key(const cap_pkt *p, cap_key *k, int *side)
{
    int cmp = addr_cmp(p->src, p->dst);
    if (cmp == 0) cmp = (p->sport > p->dport) - (p->sport < p->dport);
    *side = cmp > 0;
    memset(k, 0, sizeof *k);
    k->ipver = p->ipver;
    memcpy(k->a, *side ? p->dst : p->src, 16);
    memcpy(k->b, *side ? p->src : p->dst, 16);
    k->pa = *side ? p->dport : p->sport;
    k->pb = *side ? p->sport : p->dport;
}

_Static_assert(sizeof(cap_key) == 40, "key_hash and key_eq read the key as five words");

/* The key is 40 bytes with no padding left uninitialised (make_key clears
 * it): five words to compare, which memcmp() does more slowly. */
static bool key_eq(const cap_key *a, const cap_key *b)
{
    uint64_t x[5], y[5], d = 0;
    memcpy(x, a, sizeof x);
    memcpy(y, b, sizeof y);
    for (int i = 0; i < 5; i++) d |= x[i] ^ y[i];
    return d == 0;
}

static cap_flow *lookup(cap_ctx *c, const cap_key *k, uint64_t h, cap_flow ***slot)
{
    cap_flow **pp = &c->buckets[h & (c->nbuckets - 1)];
    for (; *pp; pp = &(*pp)->hnext)
        if ((*pp)->hash == h && key_eq(&(*pp)->key, k)) break;
    *slot = pp;
    return *pp;
}

static void format_addr(char *out, uint8_t *outlen, int ipver, const uint8_t *a, uint16_t port)
{
    char ip[INET6_ADDRSTRLEN];
    inet_ntop(ipver == 4 ? AF_INET : AF_INET6, a, ip, sizeof ip);
    int n = snprintf(out, CAP_ADDR_MAX, ipver == 4 ? "%s:%u" : "[%s]:%u", ip, port);
    *outlen = (uint8_t)(n < CAP_ADDR_MAX ? n : CAP_ADDR_MAX - 1);
}

static bool looks_like_request(const cap_pkt *p)
{
    static const char *const m[] = {"GET ", "POST ", "HEAD ", "PUT ", "OPTIONS "};
    for (size_t i = 0; i < sizeof m / sizeof *m; i++) {
        size_t n = strlen(m[i]);
        if (p->payload_len >= n && !memcmp(p->payload, m[i], n)) return true;
    }
    return false;
}

/* Whether the packet's sender is the client. The SYN says it; without one
 * (the capture started midway) the server port, the first bytes, then the
 * lower port decide. */
static bool sender_is_client(const cap_ctx *c, const cap_pkt *p)
{
    if (p->flags & CAP_TH_SYN) return !(p->flags & CAP_TH_ACK);
    if (c->opt.port && p->dport == c->opt.port) return true;
    if (c->opt.port && p->sport == c->opt.port) return false;
    if (looks_like_request(p)) return true;
    if (p->payload_len >= 5 && !memcmp(p->payload, "HTTP/", 5)) return false;
    return p->sport > p->dport;
}

static cap_flow *flow_new(cap_ctx *c, const cap_pkt *p, const cap_key *k, uint64_t h, int side)
{
    cap_flow *f = cap_mem_alloc(&c->mem, sizeof *f);
    if (!f) return NULL;
    memset(f, 0, sizeof *f);
    f->key = *k;
    f->hash = h;
    f->client = sender_is_client(c, p) ? (uint8_t)side : (uint8_t)!side;
    f->midstream = !(p->flags & CAP_TH_SYN);
    const uint8_t *cl = f->client == side ? p->src : p->dst;
    const uint8_t *sv = f->client == side ? p->dst : p->src;
    uint16_t cp = f->client == side ? p->sport : p->dport;
    uint16_t sp = f->client == side ? p->dport : p->sport;
    format_addr(f->addr[0], &f->addr_len[0], p->ipver, cl, cp);
    format_addr(f->addr[1], &f->addr_len[1], p->ipver, sv, sp);
    for (int d = 0; d < 2; d++) {
        cap_stream_init(&f->d[d].st, c->opt.max_stream);
        f->d[d].app = CAP_APP_HTTP;
    }
    f->on_server_port = !c->opt.any_port || k->pa == c->opt.port || k->pb == c->opt.port;
    f->show = !f->on_server_port || c->opt.keylog ? CAP_SHOW_PENDING : CAP_SHOW_YES;
    c->st.flows++;
    return f;
}

/* ---- freeing ---- */

static void dir_free(cap_ctx *c, cap_dir *d)
{
    cap_stream_stop(&d->st, &c->mem);
    cap_http_free(c, d);
    cap_buf_free(c, &d->pend);
    cap_ws_free(c, &d->ws);
    d->app = CAP_APP_STOPPED;
}

void cap_dir_stop(cap_ctx *c, cap_flow *f, int dir)
{
    cap_dir *d = &f->d[dir];
    d->app = CAP_APP_STOPPED;
    /* The reassembler is stopped by the sink's return value; what else the
     * direction holds can go now. */
    cap_http_free(c, d);
    cap_buf_free(c, &d->pend);
    cap_ws_free(c, &d->ws);
}

static void unlink_flow(cap_ctx *c, cap_flow *f)
{
    cap_flow **slot;
    lookup(c, &f->key, f->hash, &slot);
    if (*slot == f) *slot = f->hnext;
    list_remove(f->closed ? &c->done : &c->open, f);
}

static void flow_destroy(cap_ctx *c, cap_flow *f)
{
    unlink_flow(c, f);
    dir_free(c, &f->d[0]);
    dir_free(c, &f->d[1]);
    cap_tls_free(c, f);
    cap_mem_free(&c->mem, f, sizeof *f);
}

/* ---- sinks: reassembled bytes to the decoders ---- */

typedef struct sink_ud {
    cap_ctx *c;
    cap_flow *f;
    int dir;
} sink_ud;

int cap_dir_feed(cap_ctx *c, cap_flow *f, int dir, const uint8_t *p, size_t n)
{
    cap_dir *d = &f->d[dir];
    while (n > 0) {
        switch (d->app) {
        case CAP_APP_HTTP: {
            size_t k = cap_http_feed(c, f, dir, p, n);
            p += k, n -= k;
            break;
        }
        case CAP_APP_WAIT_101:
            if (d->pend.len + n > 65536 || cap_buf_append(c, &d->pend, p, n)) {
                cap_event ev = {.type = CAP_EV_ERROR,
                                .error = "too much client data before the handshake response"};
                cap_emit(c, f, dir, &ev);
                c->st.errors++;
                cap_dir_stop(c, f, dir);
                return 1;
            }
            return 0;
        case CAP_APP_WS:
            cap_ws_feed(c, f, dir, p, n);
            return d->app == CAP_APP_STOPPED;
        default:
            return 1;
        }
    }
    return d->app == CAP_APP_STOPPED;
}

void cap_dir_replay(cap_ctx *c, cap_flow *f, int dir)
{
    cap_buf held = f->d[dir].pend;
    memset(&f->d[dir].pend, 0, sizeof held);
    if (held.len && cap_dir_feed(c, f, dir, held.p, held.len))
        cap_stream_stop(&f->d[dir].st, &c->mem);
    cap_buf_free(c, &held);
}

static int sink_data(void *ud, const uint8_t *p, size_t n)
{
    sink_ud *u = ud;
    if (u->f->is_tls) return cap_tls_feed(u->c, u->f, u->dir, p, n);
    return cap_dir_feed(u->c, u->f, u->dir, p, n);
}

int cap_dir_gap(cap_ctx *c, cap_flow *f, int dir, uint64_t missing)
{
    c->st.gaps++;
    c->st.gap_bytes += missing;
    if (f->d[dir].app == CAP_APP_WS) return cap_ws_gap(c, f, dir, missing);
    /* Before the handshake is complete there is no frame to resume at. */
    cap_event ev = {.type = CAP_EV_GAP, .missing = missing};
    cap_emit(c, f, dir, &ev);
    cap_dir_stop(c, f, dir);
    return 1;
}

static int sink_gap(void *ud, uint64_t missing)
{
    sink_ud *u = ud;
    if (u->f->is_tls) {
        u->c->st.gaps++;
        u->c->st.gap_bytes += missing;
        return cap_tls_gap(u->c, u->f, u->dir, missing);
    }
    return cap_dir_gap(u->c, u->f, u->dir, missing);
}

#define SINK(name, c_, f_, dir_)                             \
    sink_ud name##_ud = {(c_), (f_), (dir_)};                \
    cap_sink name = {sink_data, sink_gap, &name##_ud}

/* ---- closing and evicting ---- */

static void flush_dirs(cap_ctx *c, cap_flow *f)
{
    for (int d = 0; d < 2; d++) {
        SINK(k, c, f, d);
        cap_stream_flush(&f->d[d].st, &c->mem, &k);
        if (f->is_tls) cap_tls_end(c, f, d);
    }
}

static void account_stream(cap_ctx *c, cap_flow *f)
{
    for (int d = 0; d < 2; d++) {
        cap_stream_stats *s = &f->d[d].st.st;
        c->st.retrans += s->retrans;
        c->st.ooo += s->ooo;
        c->st.conflicts += s->conflicts;
        memset(s, 0, sizeof *s);
    }
}

static void flow_close(cap_ctx *c, cap_flow *f, int dir, const char *why)
{
    flush_dirs(c, f);
    cap_event ev = {.type = CAP_EV_TCP_CLOSE, .why = why};
    cap_emit(c, f, dir, &ev);
    if (f->show == CAP_SHOW_YES) c->st.closed++;
    account_stream(c, f);
    dir_free(c, &f->d[0]);
    dir_free(c, &f->d[1]);
    cap_tls_free(c, f);
    list_remove(&c->open, f);
    f->closed = true;
    list_push(&c->done, f);
}

static void flow_evict(cap_ctx *c, cap_flow *f, const char *why)
{
    flush_dirs(c, f);
    cap_event ev = {.type = CAP_EV_EVICT, .why = why};
    cap_emit(c, f, 0, &ev);
    c->st.evicted++;
    account_stream(c, f);
    flow_destroy(c, f);
}

/* Whether cap_sweep(c, NULL) would do anything at c->now: the entry test
 * of each of its three loops, the same expressions. A decoder thread asks
 * it at the packets of other threads, where only its clock moves. */
bool cap_sweep_due(const cap_ctx *c)
{
    const cap_flow *d = c->done.tail, *o = c->open.tail;
    if (d && (c->now - d->last > CLOSED_LINGER || c->open.n + c->done.n > c->opt.max_flows))
        return true;
    return o && (c->now - o->lru > c->opt.idle || cap_mem_over(&c->mem) ||
                 c->open.n > c->opt.max_flows);
}

/* Evicts idle flows, and least recently used ones while over the memory or
 * flow-count budget. keep: the flow of the packet being processed.
 *
 * Which flows are idle does not depend on where they sit in the list: the
 * list is in lru order and a flow's last packet is less than LRU_STEP after
 * its lru, so every idle flow is in the run of the tail older than the idle
 * time. With --threads each thread holds a part of the list and evicts
 * exactly what one thread would have evicted from the whole. */
void cap_sweep(cap_ctx *c, cap_flow *keep)
{
    while (c->done.tail && (c->now - c->done.tail->last > CLOSED_LINGER ||
                            c->open.n + c->done.n > c->opt.max_flows))
        flow_destroy(c, c->done.tail);
    cap_flow *t = c->open.tail, *prev;
    for (; t && c->now - t->lru > c->opt.idle; t = prev) {
        prev = t->prev;
        if (t == keep || c->now - t->last <= c->opt.idle) continue;
        cap_mark(c, c->pkt_idx, t->lru_seq + 1);
        flow_evict(c, t, "idle");
    }
    while (c->open.tail && c->open.tail != keep) {
        t = c->open.tail;
        if (!cap_mem_over(&c->mem) && c->open.n <= c->opt.max_flows) break;
        cap_mark(c, c->pkt_idx, t->lru_seq + 1);
        flow_evict(c, t, cap_mem_over(&c->mem) ? "memory" : "flows");
    }
}

/* ---- packets ---- */

static cap_flow *find_flow(cap_ctx *c, const cap_pkt *p, uint64_t h, int *side)
{
    cap_key k;
    make_key(p, &k, side);
    cap_flow **slot;
    cap_flow *f = lookup(c, &k, h, &slot);
    bool new_syn = (p->flags & (CAP_TH_SYN | CAP_TH_ACK)) == CAP_TH_SYN;
    if (f && new_syn) {
        int dir = (*side == f->client) ? 0 : 1;
        bool same = f->d[dir].syn && f->d[dir].isn == p->seq;
        if (!same && (f->closed || f->d[dir].syn || f->d[dir].any_data)) {
            /* A new connection on the same ports: the old one is over. */
            if (!f->closed) flow_evict(c, f, "reused");
            else flow_destroy(c, f);
            f = lookup(c, &k, h, &slot);
        }
    }
    if (f) return f;
    if (!(p->flags & CAP_TH_SYN) && p->payload_len == 0 && (p->flags & (CAP_TH_RST | CAP_TH_FIN)))
        return NULL;            /* the end of something never seen */
    f = flow_new(c, p, &k, h, *side);
    if (!f) return NULL;
    *slot = f;
    list_push(&c->open, f);
    f->lru = c->now;
    f->lru_seq = c->pkt_seq;
    if (c->open.n + c->done.n > c->nbuckets && c->nbuckets < (1u << 22)) grow_table(c);
    return f;
}

uint64_t cap_pkt_flow_hash(const cap_pkt *p)
{
    cap_key k;
    int side;
    make_key(p, &k, &side);
    return key_hash(&k);
}

void cap_prefetch(cap_ctx *c, const cap_pkt *p, bool flow)
{
    cap_prefetch_hash(c, cap_pkt_flow_hash(p), flow);
}

void cap_prefetch_hash(cap_ctx *c, uint64_t hash, bool flow)
{
    cap_flow **b = &c->buckets[hash & (c->nbuckets - 1)];
    if (!flow) {
        __builtin_prefetch(b);
        return;
    }
    const char *f = (const char *)*b;
    if (!f) return;
    for (size_t i = 0; i < sizeof(cap_flow); i += 64) __builtin_prefetch(f + i);
}

static void on_syn(cap_ctx *c, cap_flow *f, int dir, const cap_pkt *p)
{
    cap_dir *d = &f->d[dir];
    if (d->syn) return;
    d->syn = true;
    d->isn = p->seq;
    cap_stream_syn(&d->st, p->seq);
    if (dir == 0 && !(p->flags & CAP_TH_ACK)) {
        if (f->show == CAP_SHOW_PENDING) {
            f->open_pending = true;
            f->open_sec = c->now_sec;
            f->open_usec = c->now_usec;
            return;
        }
        c->st.connections++;
        cap_event ev = {.type = CAP_EV_TCP_OPEN};
        cap_emit(c, f, 0, &ev);
    }
}

void cap_flow_show(cap_ctx *c, cap_flow *f)
{
    if (f->show == CAP_SHOW_YES) return;
    f->show = CAP_SHOW_YES;
    if (!f->open_pending) return;
    f->open_pending = false;
    c->st.connections++;
    /* The event keeps the SYN's time, not the time it could be shown. */
    int64_t sec = c->now_sec;
    uint32_t usec = c->now_usec;
    c->now_sec = f->open_sec;
    c->now_usec = f->open_usec;
    cap_event ev = {.type = CAP_EV_TCP_OPEN};
    cap_emit(c, f, 0, &ev);
    c->now_sec = sec;
    c->now_usec = usec;
}

static void flow_stop(cap_ctx *c, cap_flow *f)
{
    for (int d = 0; d < 2; d++) {
        cap_stream_stop(&f->d[d].st, &c->mem);
        cap_dir_stop(c, f, d);
    }
}

/* Not a connection to show: stopped without a word. */
static void flow_hide(cap_ctx *c, cap_flow *f)
{
    f->show = CAP_SHOW_NO;
    f->open_pending = false;
    flow_stop(c, f);
}

/* A flow waiting to be shown, at its first payload: a client that starts
 * with an HTTP request, or with a TLS ClientHello when there is a key log,
 * is shown; anything else is hidden on other ports, and shown on the
 * server port (where its decoders say what is wrong). */
static void decide_show(cap_ctx *c, cap_flow *f, int dir, const cap_pkt *p)
{
    bool request = dir == 0 && looks_like_request(p);
    bool tls = dir == 0 && c->opt.keylog && cap_tls_client_hello(p->payload, p->payload_len);
    if (!request && !tls && !f->on_server_port) {
        flow_hide(c, f);
        return;
    }
    if (tls) {
        f->is_tls = true;
        c->st.tls_sessions++;
    }
    cap_flow_show(c, f);
}

static void on_truncated(cap_ctx *c, cap_flow *f, int dir)
{
    cap_dir *d = &f->d[dir];
    if (d->truncated || d->st.stopped) return;
    d->truncated = true;
    c->st.truncated++;
    cap_event ev = {.type = CAP_EV_TRUNCATED};
    cap_emit(c, f, dir, &ev);
    cap_stream_stop(&d->st, &c->mem);
    cap_dir_stop(c, f, dir);
}

static void on_payload(cap_ctx *c, cap_flow *f, int dir, const cap_pkt *p)
{
    cap_dir *d = &f->d[dir];
    if (f->show == CAP_SHOW_PENDING) decide_show(c, f, dir, p);
    if (f->show == CAP_SHOW_NO) return;
    if (!d->any_data && dir == 0 && !f->is_tls &&
        cap_tls_client_hello(p->payload, p->payload_len)) {
        /* wss:// on the server port, and no key log to open it. */
        d->any_data = true;
        cap_event ev = {.type = CAP_EV_ERROR,
                        .error = "TLS (wss://): not decoded without --keylog"};
        cap_emit(c, f, dir, &ev);
        c->st.errors++;
        flow_stop(c, f);
        return;
    }
    if (!d->any_data && f->midstream && d->app == CAP_APP_HTTP && !d->st.started &&
        !looks_like_request(p) && !(p->payload_len >= 5 && !memcmp(p->payload, "HTTP/", 5))) {
        /* Joined an established connection: no handshake to start from. */
        d->any_data = true;
        cap_event ev = {.type = CAP_EV_ERROR, .error = "joined mid-connection: not decoded"};
        cap_emit(c, f, dir, &ev);
        cap_stream_stop(&d->st, &c->mem);
        cap_dir_stop(c, f, dir);
        return;
    }
    d->any_data = true;
    c->st.payload[dir] += p->payload_len;
    SINK(k, c, f, dir);
    cap_stream_segment(&d->st, &c->mem, p->seq + ((p->flags & CAP_TH_SYN) ? 1 : 0),
                       p->payload, p->payload_len, &k);
}

/* Both FINs seen: the connection closes once nothing is missing before
 * either FIN, or once the peer acknowledged a FIN whose data is still
 * incomplete (what is missing then was never captured). */
static bool close_ready(const cap_flow *f)
{
    for (int d = 0; d < 2; d++) {
        const cap_stream *s = &f->d[d].st;
        if (!cap_stream_complete(s) && !cap_stream_end_acked(s)) return false;
    }
    return true;
}

void cap_packet(cap_ctx *c, const cap_pkt *p)
{
    cap_packet_hash(c, p, cap_pkt_flow_hash(p));
}

void cap_packet_hash(cap_ctx *c, const cap_pkt *p, uint64_t hash)
{
    int side;
    cap_flow *f = find_flow(c, p, hash, &side);
    if (!f) return;
    f->last = c->now;
    if (f->closed) {
        /* Late packets of a finished connection: it lingers on, the
         * closed list kept in order of the last packet. */
        if (c->done.head != f) {
            list_remove(&c->done, f);
            list_push(&c->done, f);
        }
        return;
    }
    if (c->now - f->lru >= LRU_STEP) {
        /* The LRU order is kept to LRU_STEP: moving the flow on every
         * packet would touch two other flows' memory each time. */
        if (c->open.head != f) {
            list_remove(&c->open, f);
            list_push(&c->open, f);
        }
        f->lru = c->now;
        f->lru_seq = c->pkt_seq;
    }
    int dir = side == f->client ? 0 : 1;
    if (p->flags & CAP_TH_SYN) on_syn(c, f, dir, p);
    if (p->truncated) on_truncated(c, f, dir);
    else if (p->payload_len > 0) on_payload(c, f, dir, p);
    if ((p->flags & CAP_TH_ACK) && !(p->flags & CAP_TH_RST)) {
        SINK(k, c, f, !dir);
        cap_stream_ack(&f->d[!dir].st, &c->mem, p->ack, &k);
    }
    uint32_t end = p->seq + p->wire_len + ((p->flags & CAP_TH_SYN) ? 1 : 0);
    if (p->flags & CAP_TH_RST) {
        cap_stream_end(&f->d[dir].st, end);
        flow_close(c, f, dir, "rst");
    } else {
        if (p->flags & CAP_TH_FIN) {
            f->fin[dir] = true;
            cap_stream_end(&f->d[dir].st, end);
        }
        if (f->fin[0] && f->fin[1] && close_ready(f)) flow_close(c, f, dir, "fin");
    }
    cap_sweep(c, f);
}

/* End of the capture: what is still waiting is delivered, holes reported;
 * connections whose two FINs were seen are closed. */
void cap_finish(cap_ctx *c)
{
    cap_flow *next;
    for (cap_flow *f = c->open.head; f; f = next) {
        next = f->next;
        /* The most recent first: with threads, the merge keeps that order. */
        cap_mark(c, UINT32_MAX, UINT64_MAX - f->lru_seq);
        if (f->fin[0] && f->fin[1]) {
            flow_close(c, f, 0, "fin");
            continue;
        }
        flush_dirs(c, f);
        account_stream(c, f);
    }
}

void cap_ctx_free(cap_ctx *c)
{
    while (c->open.head) flow_destroy(c, c->open.head);
    while (c->done.head) flow_destroy(c, c->done.head);
    free(c->buckets);
    c->buckets = NULL;
    cap_buf_free(c, &c->scratch);
    cap_buf_free(c, &c->inflated);
    cap_buf_free(c, &c->tls_plain);
    cap_ws_ctx_free(c);
    cap_slab_close(&c->zslab);
    free(c->names);
    c->names = NULL;
}
