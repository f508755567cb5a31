/* par.h -- `tagarela capture --threads N`: flows decoded on N threads, the
 * output still in capture order.
 *
 * The main thread reads the file, parses the link, IP and TCP headers and
 * puts the packets in batches (a bounded ring: when every batch is in use
 * it waits, so memory does not grow with the file). Each flow (both
 * directions) belongs to one decoder thread, by its hash; the main thread
 * lists each thread's packets of a batch. Every decoder walks every batch:
 * it decodes its own packets and, at the others, only reads their time and
 * evicts what that time makes idle (cap_sweep_due), so that evictions
 * happen at the same packet as with one thread. What a decoder prints for
 * a batch goes to its own buffer, marked packet by packet; the main thread
 * merges the buffers of a batch in capture order (cap_merge) and writes
 * them out, byte for byte what one thread prints. */
#ifndef TAGARELA_CAPTURE_PAR_H
#define TAGARELA_CAPTURE_PAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "out.h"

#define CAP_MAX_THREADS 64

/* Where a piece of a decoder's output starts, and what it belongs to: the
 * packet of the batch it was printed at (UINT32_MAX: the end of the
 * capture), then key 0 for the packet's own decoding, or a flow's key for
 * what evicting or flushing that flow printed. */
typedef struct cap_piece {
    uint32_t pkt;
    uint64_t key;
    size_t start;               /* offset in the part's buffer */
} cap_piece;

/* One decoder's output for one batch. */
typedef struct cap_part {
    cap_wbuf out;               /* a memory buffer (fd -1) */
    cap_piece *marks;
    size_t n, cap;
    bool failed;                /* out of memory for the marks */
} cap_part;

int cap_part_init(cap_part *p);
/* The same, writing first into buf (cap bytes, not the part's: when it
 * is full the part moves to a buffer of its own). */
void cap_part_init_in(cap_part *p, char *buf, size_t cap);
void cap_part_free(cap_part *p);
/* Output written to p->out from now on belongs to (pkt, key). */
void cap_part_begin(cap_part *p, uint32_t pkt, uint64_t key);
/* Appends the pieces of parts[0..n) to w, the smallest (pkt, key) first
 * among the next piece of each part (each part's pieces keep their own
 * order), then empties the parts. Returns -1 if a part ran out of memory
 * (its output is incomplete). */
int cap_merge(cap_part *parts, int n, cap_wbuf *w);

/* ---- run.c: the threads ---- */

struct cap_ctx;
struct cap_pkt;
typedef struct cap_run cap_run;

/* Starts n decoder threads for the capture c (its options, key log and
 * output); NULL when memory or threads are short. */
cap_run *cap_run_start(struct cap_ctx *c, int n);
/* A packet the main thread parsed, at its capture time: copied into the
 * current batch. Waits while every batch is in use. */
void cap_run_packet(cap_run *r, const struct cap_pkt *p, int64_t sec, uint32_t usec);
/* The end of the capture: the last batches decoded and written, each
 * thread's flows finished, their counters added to c's; frees r. Returns
 * -1 if output was lost for want of memory. */
int cap_run_end(cap_run *r);

#endif
