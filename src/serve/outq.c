/* outq.c -- the ring of shared frames behind each connection (outq.h). */
#include "outq.h"

#include <stdlib.h>

int outq_push(outq *q, ws_frame *f)
{
    if (q->len == q->cap) {
        uint32_t cap = q->cap ? q->cap * 2 : 8;
        ws_frame **ring = malloc(cap * sizeof *ring);
        if (!ring) return -1;
        for (uint32_t i = 0; i < q->len; i++) ring[i] = q->ring[(q->head + i) & (q->cap - 1)];
        free(q->ring);
        q->ring = ring;
        q->cap = cap;
        q->head = 0;
    }
    q->ring[(q->head + q->len) & (q->cap - 1)] = f;
    q->len++;
    q->bytes += f->len;
    return 0;
}

uint64_t outq_consume(outq *q, size_t n, hist *delivered)
{
    uint64_t frames = 0, now = 0;
    q->bytes -= n;
    q->done += n;
    while (n) {
        ws_frame *f = q->ring[q->head];
        size_t left = f->len - q->off;
        if (n < left) {
            q->off += (uint32_t)n;
            break;
        }
        n -= left;
        uint64_t born = ws_frame_unref_born(f);
        if (born && delivered) {
            if (!now) now = uv_hrtime();
            hist_observe(delivered, now > born ? now - born : 0);
        }
        q->head = (q->head + 1) & (q->cap - 1);
        q->len--;
        q->off = 0;
        frames++;
    }
    return frames;
}

uint32_t outq_fill_iov(const outq *q, uv_buf_t *iov, uint32_t max, size_t *bytes)
{
    uint32_t n = q->len < max ? q->len : max;
    *bytes = 0;
    for (uint32_t i = 0; i < n; i++) {
        ws_frame *f = q->ring[(q->head + i) & (q->cap - 1)];
        size_t off = i == 0 ? q->off : 0;
        iov[i] = uv_buf_init((char *)f->bytes + off, (unsigned)(f->len - off));
        *bytes += f->len - off;
    }
    return n;
}

void outq_shrink(outq *q)
{
    if (q->len || !q->cap) return;
    free(q->ring);
    q->ring = NULL;
    q->cap = q->head = 0;
}

void outq_free(outq *q)
{
    for (uint32_t i = 0; i < q->len; i++) ws_frame_unref(q->ring[(q->head + i) & (q->cap - 1)]);
    free(q->ring);
    *q = (outq){0};
}
