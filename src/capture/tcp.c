/* tcp.c -- per-direction TCP reassembly and the capture's memory
 * budget.
 *
 * The hot path is the in-order segment: it is handed to the sink straight
 * from the packet buffer, with no copy. Only segments that arrive ahead of a
 * hole are copied, into a sorted list that is drained as the hole fills. */
#include "tcp.h"

#include <stdlib.h>
#include <string.h>

struct cap_seg {
    cap_seg *next;
    int64_t off;
    uint32_t len;
    uint8_t data[];
};

/* TCP windows are at most 2^30 bytes: a segment further ahead than that is
 * not part of this stream (a corrupt packet, a port reused) and is dropped
 * rather than turned into a gigantic hole. */
#define MAX_AHEAD (1LL << 30)

/* ACKs past a waiting segment before the hole before it is given up. */
#define ACK_STRIKES 3

void *cap_mem_alloc(cap_mem *m, size_t n)
{
    void *p = malloc(n);
    if (p) cap_mem_charge(m, n);
    return p;
}

void *cap_mem_realloc(cap_mem *m, void *p, size_t old, size_t n)
{
    void *q = realloc(p, n);
    if (q) {
        m->used = m->used - old + n;
        if (m->used > m->peak) m->peak = m->used;
    }
    return q;
}

void cap_mem_free(cap_mem *m, void *p, size_t n)
{
    if (!p) return;
    free(p);
    m->used -= n;
}

void cap_stream_init(cap_stream *s, size_t max_ooo)
{
    memset(s, 0, sizeof *s);
    s->max_ooo = max_ooo;
}

void cap_stream_syn(cap_stream *s, uint32_t isn)
{
    if (s->started) return;     /* a retransmitted SYN changes nothing */
    s->started = true;
    s->next_seq = isn + 1;
}

/* What a waiting segment costs: its bytes, its header and malloc's. */
static size_t seg_cost(size_t n) { return n + sizeof(cap_seg) + 16; }

static void free_segs(cap_stream *s, cap_mem *m)
{
    while (s->ooo) {
        cap_seg *g = s->ooo;
        s->ooo = g->next;
        cap_mem_free(m, g, sizeof *g + g->len);
    }
    s->ooo_tail = NULL;
    s->ooo_bytes = 0;
}

void cap_stream_stop(cap_stream *s, cap_mem *m)
{
    free_segs(s, m);
    s->stopped = true;
}

static int64_t seq_off(const cap_stream *s, uint32_t seq)
{
    return (int64_t)s->next_off + (int32_t)(seq - s->next_seq);
}

void cap_stream_end(cap_stream *s, uint32_t seq)
{
    if (!s->started || s->has_end) return;
    /* A FIN behind what was delivered, or far ahead, is not this stream's. */
    int64_t d = seq_off(s, seq) - (int64_t)s->next_off;
    if (d < 0 || d > MAX_AHEAD) return;
    s->has_end = true;
    s->end_seq = seq;
}

bool cap_stream_complete(const cap_stream *s)
{
    if (!s->started || s->stopped) return true;
    return s->has_end && s->next_seq == s->end_seq && !s->ooo;
}

bool cap_stream_end_acked(const cap_stream *s)
{
    return s->has_end && s->acked && (int32_t)(s->max_ack - s->end_seq) > 0;
}

static void deliver(cap_stream *s, cap_mem *m, const uint8_t *p, size_t n,
                    const cap_sink *k)
{
    s->next_off += n;
    s->next_seq += (uint32_t)n;
    s->st.delivered += n;
    if (k->data(k->ud, p, n)) cap_stream_stop(s, m);
}

/* Takes the first waiting segment off the list. */
static cap_seg *pop_seg(cap_stream *s)
{
    cap_seg *g = s->ooo;
    s->ooo = g->next;
    if (!s->ooo) s->ooo_tail = NULL;
    s->ooo_bytes -= seg_cost(g->len);
    return g;
}

/* Delivers the waiting segments that the stream has now reached. */
static void drain(cap_stream *s, cap_mem *m, const cap_sink *k)
{
    while (!s->stopped && s->ooo && s->ooo->off <= (int64_t)s->next_off) {
        cap_seg *g = pop_seg(s);
        int64_t skip = (int64_t)s->next_off - g->off;
        if (skip < g->len)
            deliver(s, m, g->data + skip, g->len - (size_t)skip, k);
        cap_mem_free(m, g, sizeof *g + g->len);
    }
}

/* Reports a hole of `missing` bytes at next_off and moves past it. */
static void report_hole(cap_stream *s, cap_mem *m, uint64_t missing, const cap_sink *k)
{
    s->st.gaps++;
    s->st.gap_bytes += missing;
    s->next_off += missing;
    s->next_seq += (uint32_t)missing;
    if (k->gap(k->ud, missing)) cap_stream_stop(s, m);
}

/* Reports the hole before the first waiting segment and moves past it. */
static void skip_hole(cap_stream *s, cap_mem *m, const cap_sink *k)
{
    report_hole(s, m, (uint64_t)(s->ooo->off - (int64_t)s->next_off), k);
    drain(s, m, k);
}

static cap_seg *new_seg(cap_stream *s, cap_mem *m, int64_t off,
                        const uint8_t *p, size_t n, cap_seg *next)
{
    cap_seg *g = cap_mem_alloc(m, sizeof *g + n);
    if (!g) return NULL;
    g->next = next;
    g->off = off;
    g->len = (uint32_t)n;
    memcpy(g->data, p, n);
    s->ooo_bytes += seg_cost(n);
    if (!next) s->ooo_tail = g;
    return g;
}

/* Files a segment that lies ahead of next_off. Where it overlaps segments
 * already waiting, their (first) copy is kept and differences counted. */
static void insert(cap_stream *s, cap_mem *m, int64_t off, const uint8_t *p, size_t n)
{
    cap_seg *t = s->ooo_tail;
    if (t && off >= t->off + t->len) {      /* the usual case: after the last */
        cap_seg *g = new_seg(s, m, off, p, n, NULL);
        if (g) t->next = g;
        return;
    }
    cap_seg **pp = &s->ooo;
    while (n > 0) {
        cap_seg *c = *pp;
        int64_t end = off + (int64_t)n;
        if (!c || end <= c->off) {
            cap_seg *g = new_seg(s, m, off, p, n, c);
            if (g) *pp = g;
            return;
        }
        int64_t cend = c->off + c->len;
        if (off >= cend) {
            pp = &c->next;
            continue;
        }
        if (off < c->off) {     /* the part before c is new */
            size_t k = (size_t)(c->off - off);
            cap_seg *g = new_seg(s, m, off, p, k, c);
            if (!g) return;
            *pp = g;
            pp = &g->next;
            p += k, n -= k, off = c->off;
            continue;
        }
        size_t k = (size_t)((end < cend ? end : cend) - off);
        if (memcmp(p, c->data + (off - c->off), k)) s->st.conflicts++;
        p += k, n -= k, off += (int64_t)k;
        pp = &c->next;
    }
}

void cap_stream_segment(cap_stream *s, cap_mem *m, uint32_t seq,
                        const uint8_t *p, size_t n, const cap_sink *k)
{
    if (s->stopped || n == 0) return;
    if (!s->started) {
        s->started = true;
        s->next_seq = seq;
    }
    int64_t off = seq_off(s, seq), next = (int64_t)s->next_off;
    if (off + (int64_t)n <= next || off - next > MAX_AHEAD) {
        s->st.retrans++;
        return;
    }
    if (off < next) {           /* partly seen already: keep the new tail */
        s->st.retrans++;
        p += next - off;
        n -= (size_t)(next - off);
        off = next;
    }
    if (off == next && (!s->ooo || s->ooo->off >= off + (int64_t)n)) {
        deliver(s, m, p, n, k);     /* the hot path: no copy */
        drain(s, m, k);
        return;
    }
    if (off == next) {
        /* It overlaps waiting segments: filed with them, so that the bytes
         * that arrived first win here too, then delivered from the list. */
        insert(s, m, off, p, n);
        drain(s, m, k);
        return;
    }
    s->st.ooo++;
    insert(s, m, off, p, n);
    /* Too much waiting: the hole will not be filled in time to matter. */
    while (!s->stopped && s->ooo && s->ooo_bytes > s->max_ooo)
        skip_hole(s, m, k);
}

void cap_stream_ack(cap_stream *s, cap_mem *m, uint32_t ack, const cap_sink *k)
{
    if (!s->started || s->stopped) return;
    if (!s->acked || (int32_t)(ack - s->max_ack) > 0) {
        /* An ACK far ahead of anything delivered is not for this stream. */
        if (seq_off(s, ack) - (int64_t)s->next_off <= MAX_AHEAD) {
            s->acked = true;
            s->max_ack = ack;
        }
    }
    if (!s->ooo) return;
    int64_t ack_off = seq_off(s, ack);
    /* The peer acknowledged a whole waiting segment, so it has the bytes
     * of the hole before it. A capture may still see the segment that
     * fills the hole after that ACK (queues of a multi-queue NIC), so the
     * hole is given up at the third such ACK, as TCP does a segment. */
    if (ack_off < s->ooo->off + s->ooo->len) return;
    if (s->strike_off != s->ooo->off) {
        s->strike_off = s->ooo->off;
        s->strikes = 0;
    }
    if (++s->strikes < ACK_STRIKES) return;
    while (!s->stopped && s->ooo && ack_off >= s->ooo->off + s->ooo->len)
        skip_hole(s, m, k);
}

void cap_stream_flush(cap_stream *s, cap_mem *m, const cap_sink *k)
{
    while (!s->stopped && s->ooo) skip_hole(s, m, k);
    if (s->stopped || !s->started) return;
    /* Bytes after the last captured one that were sent all the same: up
     * to the FIN, or else up to what the peer acknowledged. Without a FIN
     * a one-byte difference is the FIN itself, not captured: not a hole. */
    int32_t missing = 0;
    if (s->has_end) missing = (int32_t)(s->end_seq - s->next_seq);
    else if (s->acked) {
        missing = (int32_t)(s->max_ack - s->next_seq);
        if (missing == 1) missing = 0;
    }
    if (missing > 0) report_hole(s, m, (uint64_t)missing, k);
}
