/* test_tcp.c -- the capture's TCP reassembly (src/capture/tcp.c): segments
 * in order, out of order, repeated, overlapping, across the 2^32 wrap, holes
 * reported as gaps, the per-direction memory bound and the FIN.
 *
 * The sink records what it is given as text: delivered bytes as they are,
 * a hole as "[gap N]", so each test states the whole expected stream. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "tcp.h"
#include "unit_helpers.h"

typedef struct recorder {
    bytes out;
    unsigned data_calls, gap_calls;
    unsigned stop_after;        /* nonzero: the sink stops at that data call */
} recorder;

static int rec_data(void *ud, const uint8_t *p, size_t n)
{
    recorder *r = ud;
    bytes_put(&r->out, p, n);
    r->data_calls++;
    return r->stop_after && r->data_calls >= r->stop_after;
}

static int rec_gap(void *ud, uint64_t missing)
{
    recorder *r = ud;
    char tag[40];
    int n = snprintf(tag, sizeof tag, "[gap %llu]", (unsigned long long)missing);
    bytes_put(&r->out, tag, (size_t)n);
    r->gap_calls++;
    return 0;
}

/* One stream under test with its budget, sink and recorder. */
typedef struct fixture {
    cap_stream s;
    cap_mem mem;
    recorder rec;
    cap_sink sink;
} fixture;

static void fx_init(fixture *f, size_t max_ooo)
{
    memset(f, 0, sizeof *f);
    f->mem.limit = (size_t)-1;
    cap_stream_init(&f->s, max_ooo);
    f->sink.data = rec_data;
    f->sink.gap = rec_gap;
    f->sink.ud = &f->rec;
}

static void fx_seg(fixture *f, uint32_t seq, const char *text)
{
    cap_stream_segment(&f->s, &f->mem, seq, (const uint8_t *)text, strlen(text), &f->sink);
}

/* The recorded stream so far, as a C string. */
static const char *fx_out(fixture *f)
{
    bytes_put(&f->rec.out, "", 1);
    f->rec.out.len--;
    return (const char *)f->rec.out.p;
}

/* Every test ends with nothing held: what was charged was given back. */
static void fx_close(fixture *f)
{
    cap_stream_stop(&f->s, &f->mem);
    assert_int_equal(f->mem.used, 0);
    assert_int_equal(f->s.ooo_bytes, 0);
    bytes_free(&f->rec.out);
}

static void test_in_order_segments_pass_straight_through(void **state)
{
    fixture f;
    fx_init(&f, 1 << 20);
    cap_stream_syn(&f.s, 1000);
    fx_seg(&f, 1001, "hello");
    fx_seg(&f, 1006, " world");
    assert_string_equal(fx_out(&f), "hello world");
    assert_int_equal(f.s.st.delivered, 11);
    assert_int_equal(f.s.st.ooo, 0);
    assert_int_equal(f.s.st.retrans, 0);
    assert_int_equal(f.mem.peak, 0);     /* in-order data is never copied */
    assert_int_equal(f.s.next_seq, 1012);
    fx_close(&f);
}

static void test_stream_without_syn_starts_at_first_data(void **state)
{
    fixture f;
    fx_init(&f, 1 << 20);
    fx_seg(&f, 5000, "mid");
    fx_seg(&f, 5003, "stream");
    assert_string_equal(fx_out(&f), "midstream");
    cap_stream_syn(&f.s, 1);            /* a late SYN changes nothing */
    fx_seg(&f, 5009, "!");
    assert_string_equal(fx_out(&f), "midstream!");
    fx_close(&f);
}

static void test_out_of_order_waits_for_the_hole(void **state)
{
    fixture f;
    fx_init(&f, 1 << 20);
    cap_stream_syn(&f.s, 0);
    fx_seg(&f, 6, "world");
    assert_int_equal(f.rec.out.len, 0);
    assert_int_equal(f.s.st.ooo, 1);
    fx_seg(&f, 1, "hello");
    assert_string_equal(fx_out(&f), "helloworld");
    fx_close(&f);

    /* Ten segments delivered in reverse: nothing until the first arrives. */
    fx_init(&f, 1 << 20);
    cap_stream_syn(&f.s, 0);
    const char *parts[] = { "a0", "b1", "c2", "d3", "e4", "f5", "g6", "h7", "i8", "j9" };
    for (int i = 9; i >= 1; i--) {
        fx_seg(&f, 1 + 2 * (uint32_t)i, parts[i]);
        assert_int_equal(f.rec.out.len, 0);
    }
    assert_true(f.mem.used > 0);
    assert_int_equal(f.s.st.ooo, 9);
    fx_seg(&f, 1, parts[0]);
    assert_string_equal(fx_out(&f), "a0b1c2d3e4f5g6h7i8j9");
    assert_int_equal(f.mem.used, 0);    /* every waiting copy freed */
    assert_int_equal(f.s.st.gaps, 0);
    fx_close(&f);
}

static void test_retransmissions_are_delivered_once(void **state)
{
    fixture f;
    fx_init(&f, 1 << 20);
    cap_stream_syn(&f.s, 99);
    fx_seg(&f, 100, "abcd");
    fx_seg(&f, 100, "abcd");            /* whole segment again */
    fx_seg(&f, 101, "bc");              /* a piece of it */
    assert_string_equal(fx_out(&f), "abcd");
    assert_int_equal(f.s.st.retrans, 2);

    /* Partly old, partly new: only the new tail goes on. */
    fx_seg(&f, 102, "cdEF");
    assert_string_equal(fx_out(&f), "abcdEF");
    assert_int_equal(f.s.st.retrans, 3);

    /* A waiting segment sent twice is kept once. */
    fx_seg(&f, 110, "KL");
    fx_seg(&f, 110, "KL");
    fx_seg(&f, 106, "GHIJ");
    assert_string_equal(fx_out(&f), "abcdEFGHIJKL");
    assert_int_equal(f.s.st.conflicts, 0);
    fx_close(&f);
}

static void test_overlaps_keep_the_first_copy(void **state)
{
    fixture f;
    fx_init(&f, 1 << 20);
    cap_stream_syn(&f.s, 0);
    /* Waiting: offsets 5..9 "WORLD". A later segment at 3..7 disagrees on
     * 5..7: the first copy stays, the difference is counted, its new part
     * (3..4) is kept. */
    fx_seg(&f, 6, "WORLD");
    fx_seg(&f, 4, "xyzzz");
    assert_int_equal(f.s.st.conflicts, 1);
    fx_seg(&f, 1, "abc");
    assert_string_equal(fx_out(&f), "abcxyWORLD");
    fx_close(&f);

    /* An in-order segment over waiting bytes: the waiting (first) copy wins
     * there too, and the segment's bytes past them still arrive. */
    fx_init(&f, 1 << 20);
    cap_stream_syn(&f.s, 0);
    fx_seg(&f, 6, "BBBB");
    fx_seg(&f, 1, "aaaaaaaaaaaa");
    assert_string_equal(fx_out(&f), "aaaaaBBBBaaa");
    assert_int_equal(f.s.st.conflicts, 1);
    fx_close(&f);

    /* A segment spanning two waiting ones fills the space between them. */
    fx_init(&f, 1 << 20);
    cap_stream_syn(&f.s, 0);
    fx_seg(&f, 3, "CC");
    fx_seg(&f, 8, "HH");
    fx_seg(&f, 2, "bCCdefHHi");       /* agrees where it overlaps */
    assert_int_equal(f.s.st.conflicts, 0);
    fx_seg(&f, 1, "a");
    assert_string_equal(fx_out(&f), "abCCdefHHi");
    fx_close(&f);
}

static void test_sequence_numbers_wrap_at_2_32(void **state)
{
    fixture f;
    fx_init(&f, 1 << 20);
    cap_stream_syn(&f.s, 0xFFFFFFF9u);              /* data starts at ...FA */
    fx_seg(&f, 0xFFFFFFFAu, "0123");                /* ...FA..FD */
    fx_seg(&f, 0xFFFFFFFEu, "4567");                /* crosses the wrap */
    fx_seg(&f, 0x00000002u, "89");
    assert_string_equal(fx_out(&f), "0123456789");
    assert_int_equal(f.s.next_seq, 4);
    assert_int_equal(f.s.next_off, 10);             /* offsets do not wrap */
    fx_close(&f);

    /* Out of order across the wrap: the segment after it waits. */
    fx_init(&f, 1 << 20);
    cap_stream_syn(&f.s, 0xFFFFFFFDu);
    fx_seg(&f, 0x00000001u, "cd");
    fx_seg(&f, 0xFFFFFFFEu, "xy");
    fx_seg(&f, 0xFFFFFFFEu, "xy");                  /* old, just before the wrap */
    assert_string_equal(fx_out(&f), "xy");
    fx_seg(&f, 0x00000000u, "z");
    assert_string_equal(fx_out(&f), "xyzcd");
    assert_int_equal(f.s.st.retrans, 1);
    /* A FIN after the wrap and an ACK of it. */
    cap_stream_end(&f.s, 0x00000003u);
    assert_true(cap_stream_complete(&f.s));
    cap_stream_ack(&f.s, &f.mem, 0x00000004u, &f.sink);
    assert_true(cap_stream_end_acked(&f.s));
    fx_close(&f);
}

static void test_holes_are_reported_as_gaps_at_flush(void **state)
{
    fixture f;
    fx_init(&f, 1 << 20);
    cap_stream_syn(&f.s, 0);
    fx_seg(&f, 1, "ab");
    fx_seg(&f, 11, "kl");       /* 8 bytes never captured */
    fx_seg(&f, 21, "uv");       /* 8 more */
    assert_string_equal(fx_out(&f), "ab");
    cap_stream_flush(&f.s, &f.mem, &f.sink);
    assert_string_equal(fx_out(&f), "ab[gap 8]kl[gap 8]uv");
    assert_int_equal(f.s.st.gaps, 2);
    assert_int_equal(f.s.st.gap_bytes, 16);
    assert_int_equal(f.mem.used, 0);
    /* The stream goes on after a reported hole. */
    fx_seg(&f, 23, "w");
    assert_string_equal(fx_out(&f), "ab[gap 8]kl[gap 8]uvw");
    fx_close(&f);
}

static void test_hole_given_up_at_the_third_ack_past_it(void **state)
{
    fixture f;
    fx_init(&f, 1 << 20);
    cap_stream_syn(&f.s, 0);
    fx_seg(&f, 1, "ab");
    fx_seg(&f, 6, "fg");        /* hole: 3..5 ("cde") */
    /* An ACK that does not pass the waiting segment proves nothing. */
    cap_stream_ack(&f.s, &f.mem, 3, &f.sink);
    cap_stream_ack(&f.s, &f.mem, 7, &f.sink);
    assert_string_equal(fx_out(&f), "ab");
    /* The peer holds "fg": the hole cannot be filled any more. Two ACKs
     * may be a capture reordering; the third one settles it. */
    cap_stream_ack(&f.s, &f.mem, 8, &f.sink);
    cap_stream_ack(&f.s, &f.mem, 8, &f.sink);
    assert_string_equal(fx_out(&f), "ab");
    cap_stream_ack(&f.s, &f.mem, 8, &f.sink);
    assert_string_equal(fx_out(&f), "ab[gap 3]fg");
    assert_int_equal(f.mem.used, 0);
    fx_close(&f);

    /* The segment filling the hole after two such ACKs is still used. */
    fx_init(&f, 1 << 20);
    cap_stream_syn(&f.s, 0);
    fx_seg(&f, 6, "fg");
    cap_stream_ack(&f.s, &f.mem, 8, &f.sink);
    cap_stream_ack(&f.s, &f.mem, 8, &f.sink);
    fx_seg(&f, 1, "abcde");
    assert_string_equal(fx_out(&f), "abcdefg");
    assert_int_equal(f.s.st.gaps, 0);
    fx_close(&f);
}

static void test_waiting_bytes_bounded_per_direction(void **state)
{
    fixture f;
    const size_t max_ooo = 2000;
    fx_init(&f, max_ooo);
    cap_stream_syn(&f.s, 0);
    char seg[101];
    memset(seg, 'x', 100);
    seg[100] = 0;
    /* 200 segments of 100 bytes, each after a 1-byte hole: 20 KB would
     * wait; the bound makes the oldest holes be given up instead. */
    for (uint32_t i = 0; i < 200; i++) {
        fx_seg(&f, 2 + i * 101, seg);
        assert_true(f.s.ooo_bytes <= max_ooo);
        assert_true(f.mem.used <= max_ooo);
    }
    assert_true(f.s.st.gaps > 100);
    assert_true(f.s.st.delivered > 100 * 100);
    assert_true(f.mem.peak <= max_ooo);
    cap_stream_flush(&f.s, &f.mem, &f.sink);
    assert_int_equal(f.s.st.gaps, 200);
    assert_int_equal(f.s.st.gap_bytes, 200);
    assert_int_equal(f.s.st.delivered, 200 * 100);
    fx_close(&f);

    /* A segment absurdly far ahead (a corrupt packet, a reused port) is not
     * buffered nor turned into a giant hole. */
    fx_init(&f, max_ooo);
    cap_stream_syn(&f.s, 0);
    fx_seg(&f, 1, "a");
    fx_seg(&f, 1u + (1u << 31), "far");
    assert_int_equal(f.mem.used, 0);
    assert_int_equal(f.s.st.retrans, 1);
    cap_stream_flush(&f.s, &f.mem, &f.sink);
    assert_string_equal(fx_out(&f), "a");
    fx_close(&f);
}

static void test_fin_marks_the_end(void **state)
{
    fixture f;
    fx_init(&f, 1 << 20);
    cap_stream_syn(&f.s, 0);
    fx_seg(&f, 1, "abc");
    assert_false(cap_stream_complete(&f.s));    /* no FIN yet */
    cap_stream_end(&f.s, 4);
    assert_true(cap_stream_complete(&f.s));
    assert_false(cap_stream_end_acked(&f.s));
    cap_stream_ack(&f.s, &f.mem, 4, &f.sink);   /* acks the data, not the FIN */
    assert_false(cap_stream_end_acked(&f.s));
    cap_stream_ack(&f.s, &f.mem, 5, &f.sink);
    assert_true(cap_stream_end_acked(&f.s));
    cap_stream_flush(&f.s, &f.mem, &f.sink);
    assert_string_equal(fx_out(&f), "abc");     /* nothing missing */
    fx_close(&f);

    /* Data missing before the FIN: not complete, reported at flush. */
    fx_init(&f, 1 << 20);
    cap_stream_syn(&f.s, 0);
    fx_seg(&f, 1, "abc");
    cap_stream_end(&f.s, 10);
    assert_false(cap_stream_complete(&f.s));
    cap_stream_flush(&f.s, &f.mem, &f.sink);
    assert_string_equal(fx_out(&f), "abc[gap 6]");
    fx_close(&f);

    /* A FIN behind what was delivered is not this stream's; the first FIN
     * is the one that counts. */
    fx_init(&f, 1 << 20);
    cap_stream_syn(&f.s, 0);
    fx_seg(&f, 1, "abcdef");
    cap_stream_end(&f.s, 3);
    assert_false(f.s.has_end);
    cap_stream_end(&f.s, 7);
    cap_stream_end(&f.s, 9);
    assert_int_equal(f.s.end_seq, 7);
    assert_true(cap_stream_complete(&f.s));
    fx_close(&f);
}

static void test_flush_without_fin_uses_the_peers_ack(void **state)
{
    fixture f;
    fx_init(&f, 1 << 20);
    cap_stream_syn(&f.s, 0);
    fx_seg(&f, 1, "abc");
    cap_stream_ack(&f.s, &f.mem, 9, &f.sink);   /* the peer got 5 more */
    cap_stream_flush(&f.s, &f.mem, &f.sink);
    assert_string_equal(fx_out(&f), "abc[gap 5]");
    fx_close(&f);

    /* One byte past the data is the uncaptured FIN, not a hole. */
    fx_init(&f, 1 << 20);
    cap_stream_syn(&f.s, 0);
    fx_seg(&f, 1, "abc");
    cap_stream_ack(&f.s, &f.mem, 5, &f.sink);
    cap_stream_flush(&f.s, &f.mem, &f.sink);
    assert_string_equal(fx_out(&f), "abc");
    fx_close(&f);
}

static void test_sink_that_stops_frees_the_direction(void **state)
{
    fixture f;
    fx_init(&f, 1 << 20);
    f.rec.stop_after = 2;
    cap_stream_syn(&f.s, 0);
    fx_seg(&f, 7, "ghi");
    fx_seg(&f, 4, "def");
    assert_true(f.mem.used > 0);
    fx_seg(&f, 1, "abc");       /* delivers abc, then def: the sink stops */
    assert_true(f.s.stopped);
    assert_int_equal(f.mem.used, 0);
    assert_string_equal(fx_out(&f), "abcdef");
    fx_seg(&f, 10, "jkl");      /* ignored from now on */
    cap_stream_flush(&f.s, &f.mem, &f.sink);
    assert_string_equal(fx_out(&f), "abcdef");
    assert_true(cap_stream_complete(&f.s));
    fx_close(&f);
}

static void test_empty_and_unstarted_streams(void **state)
{
    fixture f;
    fx_init(&f, 1 << 20);
    assert_true(cap_stream_complete(&f.s));     /* never started */
    cap_stream_end(&f.s, 100);                  /* ignored before a start */
    assert_false(f.s.has_end);
    cap_stream_ack(&f.s, &f.mem, 100, &f.sink);
    cap_stream_flush(&f.s, &f.mem, &f.sink);
    assert_int_equal(f.rec.out.len, 0);
    cap_stream_syn(&f.s, 0);
    fx_seg(&f, 1, "");                          /* no payload: nothing */
    assert_int_equal(f.rec.data_calls, 0);
    fx_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_order_segments_pass_straight_through),
        cmocka_unit_test(test_stream_without_syn_starts_at_first_data),
        cmocka_unit_test(test_out_of_order_waits_for_the_hole),
        cmocka_unit_test(test_retransmissions_are_delivered_once),
        cmocka_unit_test(test_overlaps_keep_the_first_copy),
        cmocka_unit_test(test_sequence_numbers_wrap_at_2_32),
        cmocka_unit_test(test_holes_are_reported_as_gaps_at_flush),
        cmocka_unit_test(test_hole_given_up_at_the_third_ack_past_it),
        cmocka_unit_test(test_waiting_bytes_bounded_per_direction),
        cmocka_unit_test(test_fin_marks_the_end),
        cmocka_unit_test(test_flush_without_fin_uses_the_peers_ack),
        cmocka_unit_test(test_sink_that_stops_frees_the_direction),
        cmocka_unit_test(test_empty_and_unstarted_streams),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
