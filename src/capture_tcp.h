/* capture_tcp.h -- one direction of a TCP connection, put back in order.
 *
 * A cap_stream turns captured segments (in any order, repeated, overlapping,
 * with sequence numbers wrapping at 2^32) into an in-order byte stream for a
 * sink, and reports the holes: bytes that were sent but never captured. It
 * has no notion of flows, time or output, which is what makes it testable on
 * its own. Memory it buffers is charged to a cap_mem budget shared by the
 * whole capture. */
#ifndef TAGARELA_CAPTURE_TCP_H
#define TAGARELA_CAPTURE_TCP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes held by the capture (segments, messages, zlib), against a limit. */
typedef struct cap_mem {
    size_t used, peak, limit;
} cap_mem;

void *cap_mem_alloc(cap_mem *m, size_t n);
void *cap_mem_realloc(cap_mem *m, void *p, size_t old, size_t n);
void cap_mem_free(cap_mem *m, void *p, size_t n);
static inline bool cap_mem_over(const cap_mem *m) { return m->used > m->limit; }

/* Where the in-order bytes go. Both return nonzero to stop the direction:
 * the stream then frees what it holds and ignores everything after. */
typedef struct cap_sink {
    int (*data)(void *ud, const uint8_t *p, size_t n);
    int (*gap)(void *ud, uint64_t missing);
    void *ud;
} cap_sink;

typedef struct cap_seg cap_seg;

typedef struct cap_stream_stats {
    uint64_t delivered;     /* bytes handed to the sink */
    uint64_t retrans;       /* segments (or parts) already delivered, dropped */
    uint64_t ooo;           /* segments that had to wait for earlier bytes */
    uint64_t conflicts;     /* overlaps whose bytes differed from the first copy */
    uint64_t gaps, gap_bytes;
} cap_stream_stats;

typedef struct cap_stream {
    uint64_t next_off;      /* stream offset of the next byte to deliver */
    uint32_t next_seq;      /* the sequence number of that byte */
    bool started;           /* next_seq is known (SYN or first data seen) */
    bool stopped;
    cap_seg *ooo;           /* waiting segments, sorted, not overlapping */
    size_t ooo_bytes;
    size_t max_ooo;         /* limit on ooo_bytes before a hole is declared */
    cap_stream_stats st;
} cap_stream;

void cap_stream_init(cap_stream *s, size_t max_ooo);

/* A SYN: the stream's data starts at isn + 1. */
void cap_stream_syn(cap_stream *s, uint32_t isn);

/* A segment's payload. Bytes already delivered are dropped, the first copy
 * of overlapping bytes wins, bytes ahead wait for the hole before them. */
void cap_stream_segment(cap_stream *s, cap_mem *m, uint32_t seq,
                        const uint8_t *p, size_t n, const cap_sink *k);

/* The peer acknowledged up to ack. Once the peer holds bytes that come after
 * a hole, the hole can never be filled: it is reported and skipped. */
void cap_stream_ack(cap_stream *s, cap_mem *m, uint32_t ack, const cap_sink *k);

/* End of the stream (close, eviction, end of capture): every waiting segment
 * is delivered, holes before them reported. */
void cap_stream_flush(cap_stream *s, cap_mem *m, const cap_sink *k);

/* Stops the direction and frees what it holds. */
void cap_stream_stop(cap_stream *s, cap_mem *m);

#endif
