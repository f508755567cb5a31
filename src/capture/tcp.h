/* tcp.h -- one direction of a TCP connection, put back in order.
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
/* Memory taken from elsewhere (the slab) counted against the budget. */
static inline void cap_mem_charge(cap_mem *m, size_t n)
{
    m->used += n;
    if (m->used > m->peak) m->peak = m->used;
}

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
    bool has_end;           /* a FIN (or RST) said where the data ends */
    bool acked;             /* the peer acknowledged something: max_ack is set */
    uint32_t end_seq;       /* the sequence number after the last data byte */
    uint32_t max_ack;       /* the highest acknowledgement from the peer */
    cap_seg *ooo;           /* waiting segments, sorted, not overlapping */
    cap_seg *ooo_tail;      /* the last of them: most arrive in order */
    size_t ooo_bytes;       /* what they hold, with their overhead */
    int64_t strike_off;     /* the waiting segment the peer's ACKs passed */
    unsigned strikes;       /* how many ACKs passed it */
    size_t max_ooo;         /* limit on ooo_bytes before a hole is declared */
    cap_stream_stats st;
} cap_stream;

void cap_stream_init(cap_stream *s, size_t max_ooo);

/* A SYN: the stream's data starts at isn + 1. */
void cap_stream_syn(cap_stream *s, uint32_t isn);

/* A FIN (or RST) at seq: the stream's data ends there. */
void cap_stream_end(cap_stream *s, uint32_t seq);

/* True when every byte up to the end is delivered (or the stream stopped,
 * or it never started): nothing is missing before the FIN. */
bool cap_stream_complete(const cap_stream *s);

/* True when the peer acknowledged the FIN: whatever is still missing
 * before it was received by the peer and will never be captured. */
bool cap_stream_end_acked(const cap_stream *s);

/* A segment's payload. Bytes already delivered are dropped, the first copy
 * of overlapping bytes wins, bytes ahead wait for the hole before them. */
void cap_stream_segment(cap_stream *s, cap_mem *m, uint32_t seq,
                        const uint8_t *p, size_t n, const cap_sink *k);

/* The peer acknowledged up to ack. Once the peer holds bytes that come after
 * a hole, the hole can never be filled: after a few such ACKs (one could be
 * a capture that saw the ACK before the segment) it is reported and
 * skipped. */
void cap_stream_ack(cap_stream *s, cap_mem *m, uint32_t ack, const cap_sink *k);

/* End of the stream (close, eviction, end of capture): every waiting segment
 * is delivered, holes before them reported, and so are the bytes missing
 * before the FIN or before what the peer acknowledged. */
void cap_stream_flush(cap_stream *s, cap_mem *m, const cap_sink *k);

/* Stops the direction and frees what it holds. */
void cap_stream_stop(cap_stream *s, cap_mem *m);

#endif
