/* test_bench_hist.c -- the bench's latency histogram and message content. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "loadgen_int.h"

static void test_empty_is_zero(void **state)
{
    bench_hist h;
    bench_hist_init(&h);
    assert_int_equal(bench_hist_quantile(&h, 0.5), 0);
    assert_int_equal(bench_hist_quantile(&h, 0.99), 0);
    assert_int_equal(bench_hist_quantile(&h, 1.0), 0);
}

static void test_small_values_are_exact(void **state)
{
    bench_hist h;
    bench_hist_init(&h);
    for (uint64_t v = 0; v < 100; v++) bench_hist_add(&h, v);
    assert_int_equal(h.count, 100);
    /* the ceil(q * n)-th smallest value */
    assert_int_equal(bench_hist_quantile(&h, 0.5), 49);
    assert_int_equal(bench_hist_quantile(&h, 0.99), 98);
    assert_int_equal(bench_hist_quantile(&h, 0.01), 0);
    assert_int_equal(bench_hist_quantile(&h, 0.011), 1);
    assert_int_equal(bench_hist_quantile(&h, 1.0), 99);
    assert_int_equal(bench_hist_quantile(&h, 0.0), 0);
}

static void test_buckets_cover_values_in_order(void **state)
{
    unsigned prev = 0;
    for (uint64_t v = 1; v < ((uint64_t)1 << 40); v += v / 7 + 1) {
        unsigned b = bench_hist_bucket(v);
        assert_true(b < BENCH_HIST_N);
        assert_true(b >= prev);
        prev = b;
        uint64_t lo = bench_hist_bucket_low(b);
        assert_true(lo <= v);
        if (b + 1 < BENCH_HIST_N) {
            uint64_t hi = bench_hist_bucket_low(b + 1);
            assert_true(v < hi);
            /* a bucket spans at most 1/64 of its values */
            if (v >= 128) assert_true((hi - lo) * 64 <= lo);
        }
    }
    /* the edges of the linear part and of a power of two */
    assert_int_equal(bench_hist_bucket(127), 127);
    assert_int_equal(bench_hist_bucket(128), 128);
    assert_int_equal(bench_hist_bucket_low(bench_hist_bucket(256)), 256);
    assert_int_equal(bench_hist_bucket_low(bench_hist_bucket(255)), 254);
    /* past the last power of two: the last bucket */
    assert_int_equal(bench_hist_bucket(UINT64_MAX), BENCH_HIST_N - 1);
}

static void test_quantiles_within_bucket_error(void **state)
{
    static bench_hist h;
    bench_hist_init(&h);
    /* 1 us .. 1 s in steps of 1 us: one million values */
    for (uint64_t i = 1; i <= 1000000; i++) bench_hist_add(&h, i * 1000);
    struct { double q; double want; } cases[] = {
        {0.5, 500000e3}, {0.99, 990000e3}, {0.999, 999000e3}, {0.1, 100000e3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double got = (double)bench_hist_quantile(&h, cases[i].q);
        double err = (got - cases[i].want) / cases[i].want;
        if (err < 0) err = -err;
        assert_true(err < 1.0 / 64);
    }
    assert_int_equal(bench_hist_quantile(&h, 1.0), 1000000000);
    assert_int_equal(h.min, 1000);
    assert_int_equal(h.max, 1000000000);
}

static void test_one_value_is_reported_exactly(void **state)
{
    bench_hist h;
    bench_hist_init(&h);
    bench_hist_add(&h, 1234567);
    /* clamped to [min, max], so a single sample comes back as itself */
    assert_int_equal(bench_hist_quantile(&h, 0.5), 1234567);
    assert_int_equal(bench_hist_quantile(&h, 0.999), 1234567);
    bench_hist_add(&h, (uint64_t)1 << 50);      /* beyond the range */
    assert_int_equal(bench_hist_quantile(&h, 1.0), (uint64_t)1 << 50);
    /* no longer clamped from above: the middle of its bucket */
    uint64_t mid = bench_hist_quantile(&h, 0.5);
    assert_true(mid >= 1234567 && mid - 1234567 < 1234567 / 64);
}

static void test_merge_equals_one_histogram(void **state)
{
    static bench_hist a, b, all, m;
    bench_hist_init(&a);
    bench_hist_init(&b);
    bench_hist_init(&all);
    bench_hist_init(&m);
    for (uint64_t i = 0; i < 5000; i++) {
        uint64_t v = (i * 7919) % 3000000;
        bench_hist_add(i % 3 ? &a : &b, v);
        bench_hist_add(&all, v);
    }
    bench_hist_merge(&m, &a);
    bench_hist_merge(&m, &b);
    assert_int_equal(m.count, all.count);
    assert_int_equal(m.sum, all.sum);
    assert_int_equal(m.min, all.min);
    assert_int_equal(m.max, all.max);
    assert_memory_equal(m.b, all.b, sizeof m.b);
    for (double q = 0.05; q < 1; q += 0.05)
        assert_int_equal(bench_hist_quantile(&m, q), bench_hist_quantile(&all, q));
    /* merging an empty one changes nothing */
    static bench_hist e;
    bench_hist_init(&e);
    bench_hist_merge(&m, &e);
    assert_int_equal(m.min, all.min);
    assert_int_equal(m.count, all.count);
}

static void test_content_round_trip(void **state)
{
    char buf[256];
    size_t n = bench_content_write(buf, 123456789012345ull, 42, 7, "abcdef", 64);
    assert_int_equal(n, 64);
    assert_memory_equal(buf, "123456789012345.42.7.abcdefxxx", 30);
    uint64_t ns, seq;
    unsigned s;
    assert_true(bench_content_parse((uint8_t *)buf, n, "abcdef", &ns, &s, &seq));
    assert_int_equal(ns, 123456789012345ull);
    assert_int_equal(s, 42);
    assert_int_equal(seq, 7);
    /* shorter than what the fields need: not padded, not cut */
    n = bench_content_write(buf, 1, 0, 0, "zzzzzz", 4);
    assert_int_equal(n, 12);
    memcpy(buf + n, "\"}", 2);
    assert_true(bench_content_parse((uint8_t *)buf, n + 2, "zzzzzz", &ns, &s, &seq));
    /* another run's nonce, a cut field, garbage */
    assert_false(bench_content_parse((uint8_t *)buf, n + 2, "zzzzzy", &ns, &s, &seq));
    assert_false(bench_content_parse((uint8_t *)buf, 8, "zzzzzz", &ns, &s, &seq));
    assert_false(bench_content_parse((uint8_t *)"oi, pessoal !", 13, "zzzzzz", &ns, &s, &seq));
    assert_false(bench_content_parse((uint8_t *)"1.2.3.zzzzzzq", 13, "zzzzzz", &ns, &s, &seq));
}

static void test_content_parse_long_buffers(void **state)
{
    /* a long content is parsed without bounds checks: same answers */
    char buf[256];
    size_t n = bench_content_write(buf, 18446744073709551615ull, 4294967295u,
                                   99999999999999999ull, "qwerty", 200);
    assert_int_equal(n, 200);
    uint64_t ns, seq;
    unsigned s;
    assert_true(bench_content_parse((uint8_t *)buf, n, "qwerty", &ns, &s, &seq));
    assert_true(ns == 18446744073709551615ull);
    assert_int_equal(s, 4294967295u);
    assert_true(seq == 99999999999999999ull);
    assert_false(bench_content_parse((uint8_t *)buf, n, "qwertz", &ns, &s, &seq));
    /* 21 digits in a field, a missing dot, an empty field */
    memset(buf, 'x', sizeof buf);
    memcpy(buf, "123456789012345678901.1.1.qwerty", 32);
    assert_false(bench_content_parse((uint8_t *)buf, 100, "qwerty", &ns, &s, &seq));
    memcpy(buf, "12345.1x1.qwerty", 16);
    assert_false(bench_content_parse((uint8_t *)buf, 100, "qwerty", &ns, &s, &seq));
    memcpy(buf, "12345..1.qwerty", 15);
    assert_false(bench_content_parse((uint8_t *)buf, 100, "qwerty", &ns, &s, &seq));
    /* a sender index past 32 bits */
    memcpy(buf, "1.4294967296.1.qwerty", 21);
    assert_false(bench_content_parse((uint8_t *)buf, 100, "qwerty", &ns, &s, &seq));
}

static void test_content_min_fits_the_fields(void **state)
{
    uint64_t now = 987654321098765ull;          /* 15 digits */
    size_t min = bench_content_min(1000, now);
    char buf[128];
    size_t n = bench_content_write(buf, now, 999, 9999999, "abcdef", 0);
    assert_int_equal(n, min);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_is_zero),
        cmocka_unit_test(test_small_values_are_exact),
        cmocka_unit_test(test_buckets_cover_values_in_order),
        cmocka_unit_test(test_quantiles_within_bucket_error),
        cmocka_unit_test(test_one_value_is_reported_exactly),
        cmocka_unit_test(test_merge_equals_one_histogram),
        cmocka_unit_test(test_content_round_trip),
        cmocka_unit_test(test_content_parse_long_buffers),
        cmocka_unit_test(test_content_min_fits_the_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
