/* hist.c -- latency histograms: where an observation goes, and the
 * Prometheus text of one. */
#include "hist.h"

#include "counters.h"

const double hist_bounds[HIST_BUCKETS] = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10,
};

/* The bounds as written in le="...": no exponents. */
static const char *const le_text[HIST_BUCKETS] = {
    "0.00005", "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01",
    "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "10",
};

void hist_observe(hist *h, uint64_t ns)
{
    double s = (double)ns / 1e9;
    unsigned i = 0;
    while (i < HIST_BUCKETS && s > hist_bounds[i]) i++;
    COUNTER_ADD(h->counts[i], 1);
    COUNTER_ADD(h->sum_ns, ns);
}

void hist_add(hist *sum, const hist *h)
{
    for (unsigned i = 0; i <= HIST_BUCKETS; i++) sum->counts[i] += COUNTER_GET(h->counts[i]);
    sum->sum_ns += COUNTER_GET(h->sum_ns);
}

void hist_write(sbuf *b, const char *name, const char *help, const hist *h)
{
    sbuf_printf(b, "# HELP tagarela_%s_seconds %s\n# TYPE tagarela_%s_seconds histogram\n", name, help, name);
    uint64_t cum = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        cum += h->counts[i];
        sbuf_printf(b, "tagarela_%s_seconds_bucket{le=\"%s\"} %llu\n", name, le_text[i],
                    (unsigned long long)cum);
    }
    cum += h->counts[HIST_BUCKETS];
    sbuf_printf(b, "tagarela_%s_seconds_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    sbuf_printf(b, "tagarela_%s_seconds_sum %.9f\n", name, (double)h->sum_ns / 1e9);
    sbuf_printf(b, "tagarela_%s_seconds_count %llu\n", name, (unsigned long long)cum);
}
