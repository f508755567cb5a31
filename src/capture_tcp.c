/* capture_tcp.c -- per-direction TCP reassembly and the capture's memory
 * budget.
 *
 * The hot path is the in-order segment: it is handed to the sink straight
 * from the packet buffer, with no copy. Only segments that arrive ahead of a
 * hole are copied, into a sorted list that is drained as the hole fills. */
#include "capture_tcp.h"

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

void *cap_mem_alloc(cap_mem *m, size_t n)
{
    void *p = malloc(n);
    if (p) {
        m->used += n;
        if (m->used > m->peak) m->peak = m->used;
    }
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

static void free_segs(cap_stream *s, cap_mem *m)
{
    while (s->ooo) {
        cap_seg *g = s->ooo;
        s->ooo = g->next;
        cap_mem_free(m, g, sizeof *g + g->len);
    }
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

static void deliver(cap_stream *s, cap_mem *m, const uint8_t *p, size_t n,
                    const cap_sink *k)
{
    s->next_off += n;
    s->next_seq += (uint32_t)n;
    s->st.delivered += n;
    if (k->data(k->ud, p, n)) cap_stream_stop(s, m);
}

/* Delivers the waiting segments that the stream has now reached. */
static void drain(cap_stream *s, cap_mem *m, const cap_sink *k)
{
    while (!s->stopped && s->ooo && s->ooo->off <= (int64_t)s->next_off) {
        cap_seg *g = s->ooo;
        s->ooo = g->next;
        s->ooo_bytes -= g->len;
        int64_t skip = (int64_t)s->next_off - g->off;
        if (skip < g->len)
            deliver(s, m, g->data + skip, g->len - (size_t)skip, k);
        cap_mem_free(m, g, sizeof *g + g->len);
    }
}

/* Reports the hole before the first waiting segment and moves past it. */
static void skip_hole(cap_stream *s, cap_mem *m, const cap_sink *k)
{
    uint64_t missing = (uint64_t)(s->ooo->off - (int64_t)s->next_off);
    s->st.gaps++;
    s->st.gap_bytes += missing;
    s->next_off += missing;
    s->next_seq += (uint32_t)missing;
    if (k->gap(k->ud, missing)) {
        cap_stream_stop(s, m);
        return;
    }
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
    s->ooo_bytes += n;
    return g;
}

/* Files a segment that lies ahead of next_off. Where it overlaps segments
 * already waiting, their (first) copy is kept and differences counted. */
static void insert(cap_stream *s, cap_mem *m, int64_t off, const uint8_t *p, size_t n)
{
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
    if (off == next) {
        deliver(s, m, p, n, k);
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
    if (!s->started || s->stopped || !s->ooo) return;
    int64_t ack_off = seq_off(s, ack);
    /* Only when the peer acknowledged a whole waiting segment: an ACK that
     * merely reaches the hole's end may be one the capture saw before the
     * segment that fills it (multi-queue reordering). */
    while (!s->stopped && s->ooo && ack_off >= s->ooo->off + s->ooo->len)
        skip_hole(s, m, k);
}

void cap_stream_flush(cap_stream *s, cap_mem *m, const cap_sink *k)
{
    while (!s->stopped && s->ooo) skip_hole(s, m, k);
}
