/* outq.h -- a connection's output queue: a ring of shared frames (or HTTP
 * answers) waiting to be written, and how much of the first is gone.
 *
 * Queueing is a pointer and the reference the caller hands over, never a
 * copy: one broadcast frame sits in every recipient's ring. */
#ifndef TAGARELA_OUTQ_H
#define TAGARELA_OUTQ_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "hist.h"
#include "ws_codec.h"

typedef struct outq {
    ws_frame **ring;                /* capacity a power of two, or NULL */
    uint32_t head, len, cap;
    uint32_t off;                   /* bytes of ring[head] already written */
    size_t bytes;                   /* bytes queued, those in flight included */
    uint64_t done;                  /* bytes ever written: done + bytes is the end */
} outq;

/* Takes the caller's reference to f. Returns -1 when out of memory (the
 * reference is then still the caller's). */
int outq_push(outq *q, ws_frame *f);
/* Drops n written bytes from the front; returns the frames finished. A
 * timed frame whose last write this was goes into delivered (when given). */
uint64_t outq_consume(outq *q, size_t n, hist *delivered);
/* Points iov (at most max entries) at the unwritten bytes; *bytes: their sum. */
uint32_t outq_fill_iov(const outq *q, uv_buf_t *iov, uint32_t max, size_t *bytes);
/* An empty queue gives its ring back (idle connections hold no ring). */
void outq_shrink(outq *q);
void outq_free(outq *q);

#endif
