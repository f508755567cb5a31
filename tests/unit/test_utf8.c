/* test_utf8.c -- the incremental UTF-8 validator, counting and decoding. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "utf8.h"

#define U(s) ((const uint8_t *)(s))

/* An independent oracle: decode each sequence and check its value. */
static int ref_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t b = p[i];
        size_t l;
        uint32_t cp, min;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xE0) == 0xC0) {
            l = 2; cp = b & 0x1F; min = 0x80;
        } else if ((b & 0xF0) == 0xE0) {
            l = 3; cp = b & 0x0F; min = 0x800;
        } else if ((b & 0xF8) == 0xF0) {
            l = 4; cp = b & 0x07; min = 0x10000;
        } else {
            return 0;
        }
        if (i + l > n) return 0;
        for (size_t k = 1; k < l; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += l;
    }
    return 1;
}

/* Feeds one byte at a time; returns the index of the first byte that made
 * utf8_feed fail, or -1 when none did. */
static long first_bad_byte(const uint8_t *p, size_t n)
{
    utf8_state s;
    utf8_init(&s);
    for (size_t i = 0; i < n; i++)
        if (utf8_feed(&s, p + i, 1) < 0) return (long)i;
    return -1;
}

/* ---- valid boundary code points ------------------------------------- */

static const struct { const char *s; size_t len; uint32_t cp; } boundaries[] = {
    { "\x00", 1, 0x0 },
    { "\x7F", 1, 0x7F },
    { "\xC2\x80", 2, 0x80 },
    { "\xDF\xBF", 2, 0x7FF },
    { "\xE0\xA0\x80", 3, 0x800 },
    { "\xED\x9F\xBF", 3, 0xD7FF },
    { "\xEE\x80\x80", 3, 0xE000 },
    { "\xEF\xBF\xBF", 3, 0xFFFF },
    { "\xF0\x90\x80\x80", 4, 0x10000 },
    { "\xF4\x8F\xBF\xBF", 4, 0x10FFFF },
};

static void test_valid_boundary_code_points(void **state)
{
    for (size_t i = 0; i < sizeof boundaries / sizeof boundaries[0]; i++) {
        const uint8_t *p = U(boundaries[i].s);
        size_t n = boundaries[i].len;
        assert_true(utf8_valid(p, n));
        assert_int_equal(first_bad_byte(p, n), -1);
        size_t l = 0;
        assert_int_equal(utf8_decode(p, n, &l), boundaries[i].cp);
        assert_int_equal(l, n);
        assert_int_equal(utf8_count(p, n), 1);
    }
}

static void test_empty_is_valid(void **state)
{
    assert_true(utf8_valid(U(""), 0));
    utf8_state s;
    utf8_init(&s);
    assert_true(utf8_at_boundary(&s));
    assert_int_equal(utf8_feed(&s, U(""), 0), 0);
    assert_true(utf8_at_boundary(&s));
}

/* ---- invalid forms, and the byte where each is caught ----------------- */

static const struct { const char *name, *s; size_t len; long bad_at; } invalid[] = {
    { "overlong C0 80", "\xC0\x80", 2, 0 },
    { "overlong C1 BF", "\xC1\xBF", 2, 0 },
    { "overlong E0 80 80", "\xE0\x80\x80", 3, 1 },
    { "overlong E0 9F BF", "\xE0\x9F\xBF", 3, 1 },
    { "overlong F0 80 80 80", "\xF0\x80\x80\x80", 4, 1 },
    { "overlong F0 8F BF BF", "\xF0\x8F\xBF\xBF", 4, 1 },
    { "surrogate ED A0 80", "\xED\xA0\x80", 3, 1 },
    { "surrogate ED BF BF", "\xED\xBF\xBF", 3, 1 },
    { "above U+10FFFF F4 90 80 80", "\xF4\x90\x80\x80", 4, 1 },
    { "F5 lead", "\xF5\x80\x80\x80", 4, 0 },
    { "F7 lead", "\xF7\xBF\xBF\xBF", 4, 0 },
    { "F8 lead", "\xF8\x88\x80\x80\x80", 5, 0 },
    { "FE", "\xFE", 1, 0 },
    { "FF", "\xFF", 1, 0 },
    { "stray continuation 80", "\x80", 1, 0 },
    { "stray continuation BF after ASCII", "ab\xBF", 3, 2 },
    { "continuation after complete 2-byte", "\xC3\xA9\xA9", 3, 2 },
    { "2-byte lead then ASCII", "\xC3" "a", 2, 1 },
    { "3-byte lead then ASCII", "\xE2\x82" "a", 3, 2 },
    { "4-byte lead then new lead", "\xF0\x9F\x98\xC3\xA9", 5, 3 },
};

static void test_invalid_forms_fail_at_the_right_byte(void **state)
{
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        const uint8_t *p = U(invalid[i].s);
        size_t n = invalid[i].len;
        long at = first_bad_byte(p, n);
        if (at != invalid[i].bad_at)
            fail_msg("%s: failed at byte %ld, expected %ld", invalid[i].name, at,
                     invalid[i].bad_at);
        assert_false(utf8_valid(p, n));
        utf8_state s;
        utf8_init(&s);
        assert_int_equal(utf8_feed(&s, p, n), -1);
    }
}

static void test_truncated_sequences_are_not_at_boundary(void **state)
{
    static const struct { const char *s; size_t len; } trunc[] = {
        { "\xC3", 1 }, { "\xE2", 1 }, { "\xE2\x82", 2 }, { "\xF0", 1 },
        { "\xF0\x9F", 2 }, { "\xF0\x9F\x98", 3 }, { "abc\xE2\x82", 5 },
    };
    for (size_t i = 0; i < sizeof trunc / sizeof trunc[0]; i++) {
        utf8_state s;
        utf8_init(&s);
        assert_int_equal(utf8_feed(&s, U(trunc[i].s), trunc[i].len), 0);
        assert_false(utf8_at_boundary(&s));
        assert_false(utf8_valid(U(trunc[i].s), trunc[i].len));
    }
    /* and completing them brings the state back to a boundary */
    utf8_state s;
    utf8_init(&s);
    assert_int_equal(utf8_feed(&s, U("\xF0\x9F"), 2), 0);
    assert_false(utf8_at_boundary(&s));
    assert_int_equal(utf8_feed(&s, U("\x98"), 1), 0);
    assert_false(utf8_at_boundary(&s));
    assert_int_equal(utf8_feed(&s, U("\x80"), 1), 0);
    assert_true(utf8_at_boundary(&s));
}

/* ---- incremental feeding ---------------------------------------------- */

static const char mixed[] =
    "ol\xC3\xA1 \xE4\xB8\x96\xE7\x95\x8C \xF0\x9F\x98\x80 caf\xC3\xA9 "
    "\xEF\xBF\xBF\xF4\x8F\xBF\xBF\x7F\xC2\x80 ascii run long enough for 8-byte words";

static void test_valid_text_split_at_every_position(void **state)
{
    size_t n = sizeof mixed - 1;
    assert_true(utf8_valid(U(mixed), n));
    for (size_t i = 0; i <= n; i++) {
        utf8_state s;
        utf8_init(&s);
        assert_int_equal(utf8_feed(&s, U(mixed), i), 0);
        assert_int_equal(utf8_feed(&s, U(mixed) + i, n - i), 0);
        assert_true(utf8_at_boundary(&s));
        /* three pieces too */
        for (size_t j = i; j <= n; j += 7) {
            utf8_init(&s);
            assert_int_equal(utf8_feed(&s, U(mixed), i), 0);
            assert_int_equal(utf8_feed(&s, U(mixed) + i, j - i), 0);
            assert_int_equal(utf8_feed(&s, U(mixed) + j, n - j), 0);
            assert_true(utf8_at_boundary(&s));
        }
    }
    assert_int_equal(first_bad_byte(U(mixed), n), -1);
}

static void test_invalid_text_split_at_every_position(void **state)
{
    /* a surrogate in the middle of valid text */
    static const char bad[] = "abc\xC3\xA9xyz\xED\xA0\x80tail";
    size_t n = sizeof bad - 1;
    assert_int_equal(first_bad_byte(U(bad), n), 9);
    for (size_t i = 0; i <= n; i++) {
        utf8_state s;
        utf8_init(&s);
        int a = utf8_feed(&s, U(bad), i);
        int b = a < 0 ? -1 : utf8_feed(&s, U(bad) + i, n - i);
        /* the first piece fails only if it holds the bad byte (A0, index 9) */
        assert_int_equal(a, i > 9 ? -1 : 0);
        assert_int_equal(b, -1);
    }
}

static void test_ascii_fast_path_then_bad_byte_at_every_offset(void **state)
{
    uint8_t buf[64];
    for (size_t k = 0; k < 40; k++) {
        memset(buf, 'a', k);
        buf[k] = 0xFF;
        memset(buf + k + 1, 'b', 8);
        assert_int_equal(first_bad_byte(buf, k + 9), (long)k);
        assert_false(utf8_valid(buf, k + 9));
        utf8_state s;
        utf8_init(&s);
        assert_int_equal(utf8_feed(&s, buf, k + 9), -1);

        /* a valid two-byte character at the same place */
        memset(buf, 'a', k);
        buf[k] = 0xC3;
        buf[k + 1] = 0xA9;
        memset(buf + k + 2, 'b', 8);
        assert_true(utf8_valid(buf, k + 10));
        /* and one cut short at the end of a long ASCII run */
        assert_false(utf8_valid(buf, k + 1));
    }
}

/* Every 1-, 2- and 3-byte string, and every 4-byte string starting with
 * F0..F4 over the interesting second bytes, against the oracle. */
static void test_exhaustive_against_reference(void **state)
{
    uint8_t b[4];
    for (unsigned x = 0; x < 256; x++) {
        b[0] = (uint8_t)x;
        assert_int_equal(utf8_valid(b, 1), ref_valid(b, 1));
        for (unsigned y = 0; y < 256; y++) {
            b[1] = (uint8_t)y;
            assert_int_equal(utf8_valid(b, 2), ref_valid(b, 2));
            for (unsigned z = 0; z < 256; z++) {
                b[2] = (uint8_t)z;
                if (utf8_valid(b, 3) != ref_valid(b, 3))
                    fail_msg("3-byte %02X %02X %02X: got %d", x, y, z, utf8_valid(b, 3));
            }
        }
    }
    static const uint8_t tails[] = { 0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xFF };
    for (unsigned x = 0xE0; x < 0x100; x++)
        for (unsigned y = 0; y < 256; y++)
            for (size_t z = 0; z < sizeof tails; z++)
                for (size_t w = 0; w < sizeof tails; w++) {
                    b[0] = (uint8_t)x; b[1] = (uint8_t)y; b[2] = tails[z]; b[3] = tails[w];
                    if (utf8_valid(b, 4) != ref_valid(b, 4))
                        fail_msg("4-byte %02X %02X %02X %02X", b[0], b[1], b[2], b[3]);
                }
}

/* ---- counting and decoding -------------------------------------------- */

static void test_count_code_points(void **state)
{
    assert_int_equal(utf8_count(U(""), 0), 0);
    assert_int_equal(utf8_count(U("abc"), 3), 3);
    assert_int_equal(utf8_count(U("caf\xC3\xA9"), 5), 4);
    assert_int_equal(utf8_count(U("\xE4\xB8\x96\xE7\x95\x8C"), 6), 2);
    assert_int_equal(utf8_count(U("\xF0\x9F\x98\x80!"), 5), 2);
    assert_int_equal(utf8_count(U(mixed), sizeof mixed - 1), 57);
}

static void test_decode_sequence_of_code_points(void **state)
{
    static const uint32_t want[] = { 'o', 'l', 0xE1, ' ', 0x4E16, 0x754C, ' ', 0x1F600 };
    const uint8_t *p = U(mixed);
    size_t n = sizeof mixed - 1, off = 0;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        size_t l;
        assert_int_equal(utf8_decode(p + off, n - off, &l), want[i]);
        off += l;
    }
    assert_int_equal(off, 16);
}

/* utf8_sequence_len() agrees with the validator on every lead byte and
 * every pair of following bytes, and on every cut of the input. */
static void test_sequence_len_agrees_with_validator(void **state)
{
    (void)state;
    for (unsigned a = 0; a < 256; a++)
        for (unsigned b = 0; b < 256; b++)
            for (unsigned c = 0; c < 256; c += 0x11) {
                uint8_t p[4] = {(uint8_t)a, (uint8_t)b, (uint8_t)c, 0x80 | (c & 0x3F)};
                size_t got = utf8_sequence_len(p, 4), want = 0;
                for (size_t len = 1; len <= 4 && !want; len++)
                    if (utf8_valid(p, len)) want = len;
                assert_int_equal(got, want);
                if (got > 1) assert_int_equal(utf8_sequence_len(p, got - 1), 0);
            }
    assert_int_equal(utf8_sequence_len(U(""), 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_boundary_code_points),
        cmocka_unit_test(test_empty_is_valid),
        cmocka_unit_test(test_invalid_forms_fail_at_the_right_byte),
        cmocka_unit_test(test_truncated_sequences_are_not_at_boundary),
        cmocka_unit_test(test_valid_text_split_at_every_position),
        cmocka_unit_test(test_invalid_text_split_at_every_position),
        cmocka_unit_test(test_ascii_fast_path_then_bad_byte_at_every_offset),
        cmocka_unit_test(test_exhaustive_against_reference),
        cmocka_unit_test(test_count_code_points),
        cmocka_unit_test(test_decode_sequence_of_code_points),
        cmocka_unit_test(test_sequence_len_agrees_with_validator),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
