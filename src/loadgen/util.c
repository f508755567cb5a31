/* util.c -- small pure parts of `tagarela bench`: the clock, the
 * log-linear latency histogram and the content of the messages it sends. */
#include "loadgen_int.h"

#include <string.h>
#include <time.h>

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- histogram --------------------------------------------------------- */

void bench_hist_init(bench_hist *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

/* Below 128: the value itself. Above: 64 buckets per power of two, e.g.
 * [2^e, 2^(e+1)) split in steps of 2^(e-6). */
unsigned bench_hist_bucket(uint64_t ns)
{
    if (ns < 128) return (unsigned)ns;
    unsigned e = 63u - (unsigned)__builtin_clzll(ns);
    if (e >= BENCH_HIST_MAXEXP) return BENCH_HIST_N - 1;
    unsigned sub = (unsigned)(ns >> (e - 6)) & (BENCH_HIST_SUB - 1);
    return 128 + (e - 7) * BENCH_HIST_SUB + sub;
}

uint64_t bench_hist_bucket_low(unsigned b)
{
    if (b < 128) return b;
    unsigned e = 7 + (b - 128) / BENCH_HIST_SUB;
    unsigned sub = (b - 128) % BENCH_HIST_SUB;
    return ((uint64_t)1 << e) + ((uint64_t)sub << (e - 6));
}

static uint64_t bucket_width(unsigned b)
{
    if (b < 128) return 1;
    return (uint64_t)1 << (7 + (b - 128) / BENCH_HIST_SUB - 6);
}

void bench_hist_add(bench_hist *h, uint64_t ns)
{
    unsigned b = bench_hist_bucket(ns);
    COUNTER_ADD(h->b[b], 1);
    COUNTER_ADD(h->count, 1);
    COUNTER_ADD(h->sum, ns);
    if (ns < COUNTER_GET(h->min)) COUNTER_SET(h->min, ns);
    if (ns > COUNTER_GET(h->max)) COUNTER_SET(h->max, ns);
}

void bench_hist_merge(bench_hist *into, const bench_hist *from)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < BENCH_HIST_N; i++) {
        uint64_t v = COUNTER_GET(from->b[i]);
        into->b[i] += v;
        n += v;
    }
    /* count is the buckets' sum, so quantiles stay consistent even when
     * the writer is halfway through an add */
    into->count += n;
    into->sum += COUNTER_GET(from->sum);
    uint64_t mn = COUNTER_GET(from->min), mx = COUNTER_GET(from->max);
    if (n && mn < into->min) into->min = mn;
    if (n && mx > into->max) into->max = mx;
}

uint64_t bench_hist_quantile(const bench_hist *h, double q)
{
    if (h->count == 0) return 0;
    if (q <= 0) return h->min;
    if (q >= 1) return h->max;
    uint64_t rank = (uint64_t)(q * (double)h->count);
    if ((double)rank < q * (double)h->count) rank++;
    if (rank == 0) rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < BENCH_HIST_N; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            uint64_t v = bench_hist_bucket_low(i) + bucket_width(i) / 2;
            if (v < h->min) v = h->min;
            if (v > h->max) v = h->max;
            return v;
        }
    }
    return h->max;
}

/* ---- message content --------------------------------------------------- */

static size_t put_u64(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
    return n;
}

size_t bench_content_min(unsigned senders, uint64_t now_ns)
{
    /* the digits of the time now, a sender index, a sequence number of up
     * to 7 digits (longer ones just make a longer content), the nonce */
    char tmp[24];
    return put_u64(tmp, now_ns) + 1 + put_u64(tmp, senders ? senders - 1 : 0) + 1 + 7 + 1
           + BENCH_NONCE_LEN;
}

size_t bench_content_write(char *out, uint64_t ns, unsigned sender, uint64_t seq,
                           const char *nonce, size_t size)
{
    size_t n = put_u64(out, ns);
    out[n++] = '.';
    n += put_u64(out + n, sender);
    out[n++] = '.';
    n += put_u64(out + n, seq);
    out[n++] = '.';
    memcpy(out + n, nonce, BENCH_NONCE_LEN);
    n += BENCH_NONCE_LEN;
    if (n < size) {
        memset(out + n, 'x', size - n);
        n = size;
    }
    return n;
}

/* Digits up to a '.', at most 20 of them. */
static bool get_u64(const uint8_t *p, size_t n, size_t *i, uint64_t *v)
{
    size_t j = *i, start = j;
    uint64_t x = 0;
    while (j < n && p[j] >= '0' && p[j] <= '9' && j - start < 20)
        x = x * 10 + (uint64_t)(p[j++] - '0');
    if (j == start || j >= n || p[j] != '.') return false;
    *v = x;
    *i = j + 1;
    return true;
}

/* The same without bounds checks, for when 20 digits and a dot fit. */
static inline const uint8_t *get_u64_fast(const uint8_t *p, uint64_t *v)
{
    uint64_t x = 0;
    unsigned d, k = 0;
    while (k < 20 && (d = (unsigned)p[k] - '0') < 10) {
        x = x * 10 + d;
        k++;
    }
    if (k == 0 || p[k] != '.') return NULL;
    *v = x;
    return p + k + 1;
}

bool bench_content_parse(const uint8_t *p, size_t n, const char *nonce,
                         uint64_t *ns, unsigned *sender, uint64_t *seq)
{
    uint64_t s;
    size_t i = 0;
    /* three fields of up to 21 bytes and the nonce fit: no bounds to check */
    if (n >= 3 * 21 + BENCH_NONCE_LEN + 1) {
        const uint8_t *q = get_u64_fast(p, ns);
        if (q) q = get_u64_fast(q, &s);
        if (q) q = get_u64_fast(q, seq);
        if (!q) return false;
        i = (size_t)(q - p);
    } else if (!get_u64(p, n, &i, ns) || !get_u64(p, n, &i, &s) || !get_u64(p, n, &i, seq)) {
        return false;
    }
    if (s > UINT32_MAX || n - i < BENCH_NONCE_LEN) return false;
    if (memcmp(p + i, nonce, BENCH_NONCE_LEN) != 0) return false;
    i += BENCH_NONCE_LEN;
    if (i < n && p[i] != 'x' && p[i] != '"') return false;
    *sender = (unsigned)s;
    return true;
}
