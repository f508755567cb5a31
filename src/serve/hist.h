/* hist.h -- latency histograms for /metrics: fixed buckets (Prometheus's
 * cumulative le= form is made when written out), one writer each, read
 * from any thread with relaxed atomics (counters.h). */
#ifndef TAGARELA_HIST_H
#define TAGARELA_HIST_H

#include <stdint.h>

#include "sbuf.h"

/* Upper bounds, in seconds: 50 us to 10 s, about 2.5 apart. */
#define HIST_BUCKETS 16
extern const double hist_bounds[HIST_BUCKETS];

typedef struct hist {
    uint64_t counts[HIST_BUCKETS + 1];      /* the last: above every bound */
    uint64_t sum_ns;
} hist;

/* One observation of ns nanoseconds (the histogram's one writer only). */
void hist_observe(hist *h, uint64_t ns);
/* Adds a picture of h into sum (any thread). */
void hist_add(hist *sum, const hist *h);
/* The Prometheus histogram tagarela_<name>_seconds with its help line. */
void hist_write(sbuf *b, const char *name, const char *help, const hist *h);

#endif
