/* test_codec.c -- RFC 6455 wire format: handshake key, frame headers,
 * masking, close codes, shared frames, and the inbound ws_reader. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws_codec.h"
#include "unit_helpers.h"

/* ===================================================================== */
/* Handshake                                                              */
/* ===================================================================== */

static void check_accept(const char *key, const char *want)
{
    char out[WS_ACCEPT_LEN + 1];
    memset(out, 'x', sizeof out);
    ws_accept_key(key, strlen(key), out);
    assert_int_equal(strlen(out), WS_ACCEPT_LEN);
    assert_string_equal(out, want);
}

static void test_accept_key_seed_vector(void **state)
{
    check_accept("zPDr6m4czzUdOFnsxIUEAw==", "nSsCeIBUsFnDJCRb/BNlFzBUDpM=");
}

static void test_accept_key_rfc6455_vector(void **state)
{
    check_accept("dGhlIHNhbXBsZSBub25jZQ==", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

#define KEYV(s) ws_key_valid(s, sizeof(s) - 1)

static void test_key_valid(void **state)
{
    assert_true(KEYV("zPDr6m4czzUdOFnsxIUEAw=="));
    assert_true(KEYV("dGhlIHNhbXBsZSBub25jZQ=="));
    assert_true(KEYV("AAAAAAAAAAAAAAAAAAAAAA=="));
    assert_true(KEYV("+/+/+/+/+/+/+/+/+/+/+w=="));
}

static void test_key_wrong_length(void **state)
{
    assert_false(KEYV(""));
    assert_false(KEYV("zPDr6m4czzUdOFnsxIUEA=="));      /* 23 */
    assert_false(KEYV("zPDr6m4czzUdOFnsxIUEAwA=="));    /* 25 */
    assert_false(KEYV("zPDr6m4czzUdOFnsxIUEAw==zPDr6m4c"));
    /* 12 bytes of key: 16 characters, valid base64 but not 16 bytes */
    assert_false(KEYV("AAAAAAAAAAAAAAAA"));
}

static void test_key_bad_characters(void **state)
{
    assert_false(KEYV("zPDr6m4czzUdOFnsxIUE!w=="));
    assert_false(KEYV("zPDr6m4czz dOFnsxIUEAw=="));
    assert_false(KEYV("zPDr6m4czzUdOFnsxIUE-w=="));    /* base64url is not base64 */
    assert_false(KEYV("zPDr6m4czzUdOFnsxIUE_w=="));
    assert_false(KEYV("zPDr6m4=zzUdOFnsxIUEAw=="));    /* padding in the middle */
    assert_false(ws_key_valid("zPDr6m4czzUdOFns\0IUEAw==", 24));
}

static void test_key_missing_padding(void **state)
{
    assert_false(KEYV("zPDr6m4czzUdOFnsxIUEAw"));      /* 22, no padding */
    assert_false(KEYV("zPDr6m4czzUdOFnsxIUEAwAA"));    /* 24 without '==' */
    assert_false(KEYV("zPDr6m4czzUdOFnsxIUEAwA="));
    assert_false(KEYV("zPDr6m4czzUdOFnsxIUEAw=A"));
}

/* ===================================================================== */
/* Frame headers                                                          */
/* ===================================================================== */

static void test_header_every_length_form_round_trips(void **state)
{
    static const struct { uint64_t len; size_t size; } forms[] = {
        { 0, 2 }, { 1, 2 }, { 125, 2 }, { 126, 4 }, { 127, 4 }, { 65535, 4 },
        { 65536, 10 }, { 0xFFFFFFFFull, 10 }, { 0x100000001ull, 10 },
        { 0x7FFFFFFFFFFFFFFFull, 10 },
    };
    static const uint8_t mask[4] = { 1, 2, 3, 4 };
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        for (int masked = 0; masked <= 1; masked++) {
            uint8_t buf[WS_MAX_HEADER + 4];
            memset(buf, 0xEE, sizeof buf);
            size_t want = forms[i].size + (masked ? 4 : 0);
            size_t got = ws_header_write(buf, true, false, WS_OP_BINARY, forms[i].len,
                                         masked ? mask : NULL);
            assert_int_equal(got, want);
            assert_int_equal(buf[got], 0xEE);       /* nothing written past it */
            assert_int_equal(buf[0], 0x82);

            /* every shorter prefix asks for more */
            ws_header h;
            for (size_t k = 0; k < got; k++)
                assert_int_equal(ws_header_parse(buf, k, &h), 0);

            memset(&h, 0xAA, sizeof h);
            assert_int_equal(ws_header_parse(buf, got, &h), (int)got);
            assert_int_equal(h.size, got);
            assert_true(h.fin);
            assert_false(h.rsv1 || h.rsv2 || h.rsv3);
            assert_int_equal(h.opcode, WS_OP_BINARY);
            assert_int_equal(h.len, forms[i].len);
            assert_int_equal(h.masked, masked);
            if (masked) assert_memory_equal(h.mask, mask, 4);
            /* extra bytes after the header do not change the result */
            assert_int_equal(ws_header_parse(buf, sizeof buf, &h), (int)got);
        }
    }
}

static void test_header_exact_bytes(void **state)
{
    uint8_t b[WS_MAX_HEADER];
    size_t n;
    n = ws_header_write(b, true, false, WS_OP_TEXT, 5, NULL);
    assert_int_equal(n, 2);
    assert_memory_equal(b, "\x81\x05", 2);
    n = ws_header_write(b, false, false, WS_OP_CONT, 125, NULL);
    assert_memory_equal(b, "\x00\x7d", 2);
    n = ws_header_write(b, true, false, WS_OP_TEXT, 126, NULL);
    assert_int_equal(n, 4);
    assert_memory_equal(b, "\x81\x7e\x00\x7e", 4);
    n = ws_header_write(b, true, false, WS_OP_TEXT, 65535, NULL);
    assert_memory_equal(b, "\x81\x7e\xff\xff", 4);
    n = ws_header_write(b, true, false, WS_OP_TEXT, 65536, NULL);
    assert_int_equal(n, 10);
    assert_memory_equal(b, "\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
    n = ws_header_write(b, true, false, WS_OP_BINARY, 0x100000001ull, NULL);
    assert_memory_equal(b, "\x82\x7f\x00\x00\x00\x01\x00\x00\x00\x01", 10);
    n = ws_header_write(b, true, true, WS_OP_TEXT, 3, (const uint8_t *)"\xa1\xb2\xc3\xd4");
    assert_int_equal(n, 6);
    assert_memory_equal(b, "\xc1\x83\xa1\xb2\xc3\xd4", 6);
    n = ws_header_write(b, true, false, WS_OP_CLOSE, 2, NULL);
    assert_memory_equal(b, "\x88\x02", 2);
}

static void test_header_parse_bits(void **state)
{
    ws_header h;
    assert_int_equal(ws_header_parse((const uint8_t *)"\xF9\x00", 2, &h), 2);
    assert_true(h.fin && h.rsv1 && h.rsv2 && h.rsv3);
    assert_false(h.masked);
    assert_int_equal(h.opcode, 9);
    assert_int_equal(h.len, 0);
    assert_int_equal(ws_header_parse((const uint8_t *)"\x0F\xFD\x01\x02\x03\x04", 6, &h), 6);
    assert_false(h.fin || h.rsv1 || h.rsv2 || h.rsv3);
    assert_true(h.masked);
    assert_int_equal(h.opcode, 0xF);
    assert_int_equal(h.len, 125);
    assert_memory_equal(h.mask, "\x01\x02\x03\x04", 4);
}

static void test_header_partial_returns_zero(void **state)
{
    ws_header h;
    assert_int_equal(ws_header_parse((const uint8_t *)"", 0, &h), 0);
    assert_int_equal(ws_header_parse((const uint8_t *)"\x81", 1, &h), 0);
    assert_int_equal(ws_header_parse((const uint8_t *)"\x81\x7e\x01", 3, &h), 0);
    assert_int_equal(ws_header_parse((const uint8_t *)"\x81\x7f\x00\x00\x00\x00\x00\x00\x01", 9, &h), 0);
    assert_int_equal(ws_header_parse((const uint8_t *)"\x81\x85\x01\x02\x03", 5, &h), 0);
    assert_int_equal(ws_header_parse((const uint8_t *)"\x81\xfe\x01\x00\x01\x02\x03", 7, &h), 0);
}

static void test_header_64bit_length_top_bit_rejected(void **state)
{
    ws_header h;
    assert_int_equal(ws_header_parse((const uint8_t *)"\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00", 10, &h), -1);
    assert_int_equal(ws_header_parse((const uint8_t *)"\x82\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\x02\x03\x04", 14, &h), -1);
    /* the largest legal value */
    assert_int_equal(ws_header_parse((const uint8_t *)"\x82\x7f\x7f\xff\xff\xff\xff\xff\xff\xff", 10, &h), 10);
    assert_int_equal(h.len, 0x7FFFFFFFFFFFFFFFull);
}

/* ---- server rules on client headers ------------------------------------ */

static ws_header mkh(uint8_t opcode, bool fin, uint64_t len)
{
    ws_header h;
    memset(&h, 0, sizeof h);
    h.fin = fin;
    h.masked = true;
    h.opcode = opcode;
    h.len = len;
    return h;
}

static void test_check_accepts_normal_frames(void **state)
{
    ws_header h = mkh(WS_OP_TEXT, true, 10);
    assert_int_equal(ws_header_check(&h, false, false), 0);
    h = mkh(WS_OP_BINARY, false, 1000000);
    assert_int_equal(ws_header_check(&h, false, false), 0);
    h = mkh(WS_OP_CONT, true, 5);
    assert_int_equal(ws_header_check(&h, true, false), 0);
    h = mkh(WS_OP_CONT, false, 5);
    assert_int_equal(ws_header_check(&h, true, false), 0);
    for (int in_msg = 0; in_msg <= 1; in_msg++) {
        h = mkh(WS_OP_PING, true, 125);
        assert_int_equal(ws_header_check(&h, in_msg, false), 0);
        h = mkh(WS_OP_PONG, true, 0);
        assert_int_equal(ws_header_check(&h, in_msg, false), 0);
        h = mkh(WS_OP_CLOSE, true, 2);
        assert_int_equal(ws_header_check(&h, in_msg, false), 0);
    }
}

static void test_check_unmasked_is_1002(void **state)
{
    ws_header h = mkh(WS_OP_TEXT, true, 1);
    h.masked = false;
    assert_int_equal(ws_header_check(&h, false, false), WS_CLOSE_PROTOCOL);
    h = mkh(WS_OP_PING, true, 0);
    h.masked = false;
    assert_int_equal(ws_header_check(&h, false, false), WS_CLOSE_PROTOCOL);
}

static void test_check_reserved_bits(void **state)
{
    ws_header h = mkh(WS_OP_TEXT, true, 1);
    h.rsv2 = true;
    assert_int_equal(ws_header_check(&h, false, true), WS_CLOSE_PROTOCOL);
    h = mkh(WS_OP_TEXT, true, 1);
    h.rsv3 = true;
    assert_int_equal(ws_header_check(&h, false, true), WS_CLOSE_PROTOCOL);
    h = mkh(WS_OP_TEXT, true, 1);
    h.rsv1 = true;
    assert_int_equal(ws_header_check(&h, false, false), WS_CLOSE_PROTOCOL);
    /* with permessage-deflate, rsv1 marks the first frame of a message */
    assert_int_equal(ws_header_check(&h, false, true), 0);
    /* but never a continuation or a control frame (RFC 7692 6.1) */
    h = mkh(WS_OP_CONT, true, 1);
    h.rsv1 = true;
    assert_int_equal(ws_header_check(&h, true, true), WS_CLOSE_PROTOCOL);
    h = mkh(WS_OP_PING, true, 1);
    h.rsv1 = true;
    assert_int_equal(ws_header_check(&h, false, true), WS_CLOSE_PROTOCOL);
}

static void test_check_reserved_opcodes(void **state)
{
    static const uint8_t reserved[] = { 3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF };
    for (size_t i = 0; i < sizeof reserved; i++) {
        ws_header h = mkh(reserved[i], true, 0);
        assert_int_equal(ws_header_check(&h, false, false), WS_CLOSE_PROTOCOL);
        assert_int_equal(ws_header_check(&h, true, true), WS_CLOSE_PROTOCOL);
    }
}

static void test_check_control_frame_rules(void **state)
{
    static const uint8_t ctl[] = { WS_OP_CLOSE, WS_OP_PING, WS_OP_PONG };
    for (size_t i = 0; i < sizeof ctl; i++) {
        ws_header h = mkh(ctl[i], true, 126);
        assert_int_equal(ws_header_check(&h, false, false), WS_CLOSE_PROTOCOL);
        h = mkh(ctl[i], true, 65536);
        assert_int_equal(ws_header_check(&h, false, false), WS_CLOSE_PROTOCOL);
        h = mkh(ctl[i], false, 0);
        assert_int_equal(ws_header_check(&h, false, false), WS_CLOSE_PROTOCOL);
        assert_int_equal(ws_header_check(&h, true, false), WS_CLOSE_PROTOCOL);
    }
}

static void test_check_continuation_without_message(void **state)
{
    ws_header h = mkh(WS_OP_CONT, true, 1);
    assert_int_equal(ws_header_check(&h, false, false), WS_CLOSE_PROTOCOL);
    h = mkh(WS_OP_CONT, false, 0);
    assert_int_equal(ws_header_check(&h, false, false), WS_CLOSE_PROTOCOL);
}

static void test_check_new_message_during_message(void **state)
{
    ws_header h = mkh(WS_OP_TEXT, true, 1);
    assert_int_equal(ws_header_check(&h, true, false), WS_CLOSE_PROTOCOL);
    h = mkh(WS_OP_BINARY, false, 1);
    assert_int_equal(ws_header_check(&h, true, false), WS_CLOSE_PROTOCOL);
}

/* ===================================================================== */
/* Masking                                                                */
/* ===================================================================== */

static void test_unmask_matches_reference(void **state)
{
    static const uint8_t mask[4] = { 0x12, 0x34, 0x56, 0x78 };
    uint8_t src[64], buf[80];
    for (size_t i = 0; i < sizeof src; i++) src[i] = (uint8_t)(i * 7 + 3);
    for (uint64_t off = 0; off < 8; off++)
        for (size_t align = 0; align < 8; align++)
            for (size_t n = 0; n <= sizeof src; n++) {
                memcpy(buf + align, src, n);
                ws_unmask(buf + align, n, mask, off);
                for (size_t i = 0; i < n; i++)
                    assert_int_equal(buf[align + i], src[i] ^ mask[(off + i) & 3]);
            }
    /* a large offset keeps the phase */
    memcpy(buf, src, 16);
    ws_unmask(buf, 16, mask, 0x100000003ull);
    for (size_t i = 0; i < 16; i++) assert_int_equal(buf[i], src[i] ^ mask[(3 + i) & 3]);
}

static void test_unmask_in_pieces_equals_whole(void **state)
{
    static const uint8_t mask[4] = { 0xde, 0xad, 0xbe, 0xef };
    enum { N = 100 };
    uint8_t src[N], whole[N], pieces[N];
    for (size_t i = 0; i < N; i++) src[i] = (uint8_t)(255 - i * 3);
    memcpy(whole, src, N);
    ws_unmask(whole, N, mask, 0);
    /* two pieces split at every point */
    for (size_t s = 0; s <= N; s++) {
        memcpy(pieces, src, N);
        ws_unmask(pieces, s, mask, 0);
        ws_unmask(pieces + s, N - s, mask, s);
        assert_memory_equal(pieces, whole, N);
    }
    /* pieces of every size 1..9: every phase 0..7 of the 8-byte word */
    for (size_t k = 1; k <= 9; k++) {
        memcpy(pieces, src, N);
        for (size_t off = 0; off < N; off += k) {
            size_t len = off + k <= N ? k : N - off;
            ws_unmask(pieces + off, len, mask, off);
        }
        assert_memory_equal(pieces, whole, N);
    }
    /* unmasking twice restores the data */
    ws_unmask(whole, N, mask, 0);
    assert_memory_equal(whole, src, N);
}

/* ===================================================================== */
/* Close codes and close payloads                                         */
/* ===================================================================== */

static void test_close_codes_valid(void **state)
{
    static const unsigned ok[] = { 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                                   1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999 };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (!ws_close_code_valid(ok[i])) fail_msg("code %u should be valid", ok[i]);
}

static void test_close_codes_invalid(void **state)
{
    static const unsigned bad[] = { 0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100,
                                    2000, 2999, 5000, 65535 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (ws_close_code_valid(bad[i])) fail_msg("code %u should be invalid", bad[i]);
}

static void test_close_codes_whole_range(void **state)
{
    for (unsigned c = 0; c <= 65535; c++) {
        bool want = (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) ||
                    (c >= 3000 && c <= 4999);
        if (ws_close_code_valid(c) != want) fail_msg("code %u", c);
    }
}

static void test_close_parse(void **state)
{
    unsigned code = 0;
    const uint8_t *reason;
    size_t rl = 99;
    /* empty: no status, fine */
    assert_int_equal(ws_close_parse((const uint8_t *)"", 0, &code, &reason, &rl), 0);
    assert_int_equal(code, WS_CLOSE_NO_STATUS);
    assert_int_equal(rl, 0);
    /* one byte: protocol error */
    assert_int_equal(ws_close_parse((const uint8_t *)"\x03", 1, &code, &reason, &rl), WS_CLOSE_PROTOCOL);
    /* codes that may not be sent */
    assert_int_equal(ws_close_parse((const uint8_t *)"\x03\xed", 2, &code, &reason, &rl), WS_CLOSE_PROTOCOL); /* 1005 */
    assert_int_equal(ws_close_parse((const uint8_t *)"\x03\xee", 2, &code, &reason, &rl), WS_CLOSE_PROTOCOL); /* 1006 */
    assert_int_equal(ws_close_parse((const uint8_t *)"\x00\x00ok", 4, &code, &reason, &rl), WS_CLOSE_PROTOCOL);
    assert_int_equal(ws_close_parse((const uint8_t *)"\x13\x88", 2, &code, &reason, &rl), WS_CLOSE_PROTOCOL); /* 5000 */
    /* bad UTF-8 reason */
    assert_int_equal(ws_close_parse((const uint8_t *)"\x03\xe8\xff", 3, &code, &reason, &rl), WS_CLOSE_BAD_DATA);
    assert_int_equal(ws_close_parse((const uint8_t *)"\x03\xe8" "ab\xC3", 5, &code, &reason, &rl), WS_CLOSE_BAD_DATA);
    assert_int_equal(ws_close_parse((const uint8_t *)"\x03\xe8\xed\xa0\x80", 5, &code, &reason, &rl), WS_CLOSE_BAD_DATA);
    /* good ones */
    static const uint8_t good[] = "\x03\xe8" "bye \xC3\xA9";
    assert_int_equal(ws_close_parse(good, sizeof good - 1, &code, &reason, &rl), 0);
    assert_int_equal(code, 1000);
    assert_int_equal(rl, 6);
    assert_ptr_equal(reason, good + 2);
    assert_int_equal(ws_close_parse((const uint8_t *)"\x0f\xa0", 2, &code, &reason, &rl), 0);
    assert_int_equal(code, 4000);
    assert_int_equal(rl, 0);
}

/* ===================================================================== */
/* Shared outgoing frames                                                 */
/* ===================================================================== */

static void test_frame_new_small_text(void **state)
{
    ws_frame *f = ws_frame_new(WS_OP_TEXT, "hi", 2);
    assert_non_null(f);
    assert_int_equal(f->refs, 1);
    assert_int_equal(f->len, 4);
    assert_memory_equal(f->data, "\x81\x02hi", 4);
    assert_ptr_equal(ws_frame_ref(f), f);
    assert_int_equal(f->refs, 2);
    ws_frame_unref(f);
    assert_int_equal(f->refs, 1);
    ws_frame_unref(f);          /* freed: ASan reports a leak otherwise */
    ws_frame_unref(NULL);
}

static void test_frame_new_empty_and_large(void **state)
{
    ws_frame *f = ws_frame_new(WS_OP_PONG, NULL, 0);
    assert_int_equal(f->len, 2);
    assert_memory_equal(f->data, "\x8a\x00", 2);
    ws_frame_unref(f);

    static uint8_t big[70000];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)i;
    f = ws_frame_new(WS_OP_BINARY, big, 126);
    assert_int_equal(f->len, 4 + 126);
    assert_memory_equal(f->data, "\x82\x7e\x00\x7e", 4);
    assert_memory_equal(f->data + 4, big, 126);
    ws_frame_unref(f);
    f = ws_frame_new(WS_OP_TEXT, big, sizeof big);
    assert_int_equal(f->len, 10 + sizeof big);
    assert_memory_equal(f->data, "\x81\x7f\x00\x00\x00\x00\x00\x01\x11\x70", 10);
    assert_memory_equal(f->data + 10, big, sizeof big);
    /* a parsed header of our own frame says the same */
    ws_header h;
    assert_int_equal(ws_header_parse(f->data, f->len, &h), 10);
    assert_int_equal(h.len, sizeof big);
    assert_false(h.masked);
    ws_frame_unref(f);
}

static void test_frame_close_encodings(void **state)
{
    ws_frame *f = ws_frame_close(1000, "bye");
    assert_int_equal(f->refs, 1);
    assert_int_equal(f->len, 7);
    assert_memory_equal(f->data, "\x88\x05\x03\xe8" "bye", 7);
    ws_frame_unref(f);
    f = ws_frame_close(1001, NULL);
    assert_int_equal(f->len, 4);
    assert_memory_equal(f->data, "\x88\x02\x03\xe9", 4);
    ws_frame_unref(f);
    f = ws_frame_close(4999, "");
    assert_int_equal(f->len, 4);
    assert_memory_equal(f->data, "\x88\x02\x13\x87", 4);
    ws_frame_unref(f);
}

static void test_frame_close_long_reason_truncated_to_control_limit(void **state)
{
    char reason[300];
    memset(reason, 'r', sizeof reason - 1);
    reason[sizeof reason - 1] = '\0';
    ws_frame *f = ws_frame_close(1009, reason);
    assert_int_equal(f->len, 2 + 125);
    assert_int_equal(f->data[1], 125);
    assert_memory_equal(f->data + 2, "\x03\xf1", 2);
    unsigned code;
    const uint8_t *r;
    size_t rl;
    assert_int_equal(ws_close_parse(f->data + 2, 125, &code, &r, &rl), 0);
    assert_int_equal(rl, 123);
    ws_frame_unref(f);
}

/* RFC 6455 5.5.1: the reason is UTF-8. A cut inside a character makes a
 * close frame the peer must reject with 1007. */
static void test_frame_close_truncation_keeps_reason_valid_utf8(void **state)
{
    char reason[200];
    memset(reason, 'a', 122);
    memcpy(reason + 122, "\xC3\xA9\xC3\xA9", 4);     /* 'é' straddles byte 123 */
    reason[126] = '\0';
    ws_frame *f = ws_frame_close(1000, reason);
    ws_header h;
    int hs = ws_header_parse(f->data, f->len, &h);
    assert_int_equal(hs, 2);
    assert_true(h.len <= WS_MAX_CONTROL);
    unsigned code;
    const uint8_t *r;
    size_t rl;
    assert_int_equal(ws_close_parse(f->data + hs, (size_t)h.len, &code, &r, &rl), 0);
    ws_frame_unref(f);
}

static void test_frame_raw(void **state)
{
    static const char resp[] = "HTTP/1.1 101 Switching Protocols\r\n\r\n";
    ws_frame *f = ws_frame_raw(resp, sizeof resp - 1);
    assert_int_equal(f->refs, 1);
    assert_int_equal(f->len, sizeof resp - 1);
    assert_memory_equal(f->data, resp, sizeof resp - 1);
    ws_frame_ref(f);
    ws_frame_ref(f);
    assert_int_equal(f->refs, 3);
    ws_frame_unref(f);
    ws_frame_unref(f);
    ws_frame_unref(f);
    f = ws_frame_raw("", 0);
    assert_int_equal(f->len, 0);
    ws_frame_unref(f);
}

/* ===================================================================== */
/* ws_reader                                                              */
/* ===================================================================== */

typedef struct ev {
    bool control;
    uint8_t opcode;
    size_t n;
    uint8_t *data;
} ev;

typedef struct rec {
    ev ev[64];
    int count;
    int stop_at;        /* return nonzero from the stop_at-th callback (1-based) */
} rec;

static int rec_push(rec *r, bool control, uint8_t opcode, const uint8_t *data, size_t n)
{
    assert_true(r->count < 64);
    ev *e = &r->ev[r->count++];
    e->control = control;
    e->opcode = opcode;
    e->n = n;
    e->data = malloc(n + 1);
    assert_non_null(e->data);
    if (n) memcpy(e->data, data, n);
    e->data[n] = '\0';
    return r->stop_at && r->count == r->stop_at;
}

static int on_message(void *ud, uint8_t opcode, uint8_t *data, size_t n)
{
    return rec_push(ud, false, opcode, data, n);
}

static int on_control(void *ud, uint8_t opcode, uint8_t *data, size_t n)
{
    return rec_push(ud, true, opcode, data, n);
}

static const ws_reader_cb cbs = { on_message, on_control };

static void rec_clear(rec *r)
{
    for (int i = 0; i < r->count; i++) free(r->ev[i].data);
    memset(r, 0, sizeof *r);
}

static void assert_ev(const rec *r, int i, bool control, uint8_t opcode, const void *data, size_t n)
{
    assert_true(i < r->count);
    assert_int_equal(r->ev[i].control, control);
    assert_int_equal(r->ev[i].opcode, opcode);
    assert_int_equal(r->ev[i].n, n);
    if (n) assert_memory_equal(r->ev[i].data, data, n);
}
#define ASSERT_EV(r, i, ctl, op, s) assert_ev(r, i, ctl, op, s, sizeof(s) - 1)

/* Feeds a copy of the stream in pieces of `piece` bytes (0: all at once).
 * Returns the first nonzero result; *fed is the offset it was reached at. */
static int feed_pieces(ws_reader *r, const bytes *b, size_t piece, rec *rc, size_t *fed)
{
    uint8_t *copy = bytes_dup(b);
    size_t off = 0;
    int res = 0;
    if (piece == 0) piece = b->len ? b->len : 1;
    while (off < b->len) {
        size_t k = b->len - off < piece ? b->len - off : piece;
        size_t used = 12345;
        res = ws_reader_feed(r, copy + off, k, &cbs, rc, &used);
        if (res) {
            if (res == WS_READER_STOP) off += used;
            break;
        }
        assert_int_equal(used, k);
        off += k;
    }
    if (fed) *fed = off;
    free(copy);
    return res;
}

/* Feeds the whole stream to a fresh reader in pieces; returns the result. */
static int run_stream(const bytes *b, uint64_t max, size_t piece, rec *rc)
{
    ws_reader r;
    ws_reader_init(&r, max);
    int res = feed_pieces(&r, b, piece, rc, NULL);
    ws_reader_free(&r);
    return res;
}

static void test_reader_single_text_message(void **state)
{
    bytes b = { 0 };
    cframe_str(&b, F_FIN | WS_OP_TEXT, "{\"type\":\"pong\"}");
    rec rc = { 0 };
    ws_reader r;
    ws_reader_init(&r, 1 << 20);
    size_t used = 0;
    uint8_t *copy = bytes_dup(&b);
    assert_int_equal(ws_reader_feed(&r, copy, b.len, &cbs, &rc, &used), 0);
    assert_int_equal(used, b.len);
    assert_int_equal(rc.count, 1);
    ASSERT_EV(&rc, 0, false, WS_OP_TEXT, "{\"type\":\"pong\"}");
    /* idle again: no heap kept */
    assert_null(r.msg);
    assert_null(r.ctl);
    free(copy);
    ws_reader_free(&r);
    rec_clear(&rc);
    bytes_free(&b);
}

static void test_reader_several_messages_in_one_read(void **state)
{
    bytes b = { 0 };
    cframe_str(&b, F_FIN | WS_OP_TEXT, "one");
    cframe_str(&b, F_FIN | WS_OP_PING, "p");
    cframe(&b, F_FIN | WS_OP_BINARY, "\x00\xff", 2);
    cframe_str(&b, F_FIN | WS_OP_TEXT, "two");
    rec rc = { 0 };
    assert_int_equal(run_stream(&b, 1 << 20, 0, &rc), 0);
    assert_int_equal(rc.count, 4);
    ASSERT_EV(&rc, 0, false, WS_OP_TEXT, "one");
    ASSERT_EV(&rc, 1, true, WS_OP_PING, "p");
    ASSERT_EV(&rc, 2, false, WS_OP_BINARY, "\x00\xff");
    ASSERT_EV(&rc, 3, false, WS_OP_TEXT, "two");
    rec_clear(&rc);
    bytes_free(&b);
}

/* A stream mixing every shape, fed in every piece size and split at every
 * point, must give the same events as when fed whole. */
static void build_mixed_stream(bytes *b)
{
    static uint8_t mid[300];
    for (size_t i = 0; i < sizeof mid; i++) mid[i] = (uint8_t)('a' + i % 26);
    cframe_str(b, F_FIN | WS_OP_TEXT, "hello");
    cframe_str(b, WS_OP_TEXT, "frag-\xC3");                 /* 'é' split */
    cframe_str(b, F_FIN | WS_OP_PING, "between");
    cframe_str(b, WS_OP_CONT, "\xA9-middle-");
    cframe(b, F_FIN | WS_OP_PONG, "", 0);
    cframe_str(b, F_FIN | WS_OP_CONT, "end");
    cframe(b, F_FIN | WS_OP_BINARY, mid, sizeof mid);        /* 16-bit length */
    cframe(b, F_FIN | WS_OP_TEXT, "", 0);
    cframe_str(b, F_FIN | WS_OP_CLOSE, "\x03\xe8" "done");
}

static void check_mixed_events(const rec *rc)
{
    static uint8_t mid[300];
    for (size_t i = 0; i < sizeof mid; i++) mid[i] = (uint8_t)('a' + i % 26);
    assert_int_equal(rc->count, 7);
    ASSERT_EV(rc, 0, false, WS_OP_TEXT, "hello");
    ASSERT_EV(rc, 1, true, WS_OP_PING, "between");
    ASSERT_EV(rc, 2, true, WS_OP_PONG, "");
    ASSERT_EV(rc, 3, false, WS_OP_TEXT, "frag-\xC3\xA9-middle-end");
    assert_ev(rc, 4, false, WS_OP_BINARY, mid, sizeof mid);
    ASSERT_EV(rc, 5, false, WS_OP_TEXT, "");
    ASSERT_EV(rc, 6, true, WS_OP_CLOSE, "\x03\xe8" "done");
}

static void test_reader_fed_in_pieces_of_every_size(void **state)
{
    bytes b = { 0 };
    build_mixed_stream(&b);
    for (size_t piece = 0; piece <= 40; piece++) {
        rec rc = { 0 };
        assert_int_equal(run_stream(&b, 1 << 20, piece, &rc), 0);
        check_mixed_events(&rc);
        rec_clear(&rc);
    }
    bytes_free(&b);
}

static void test_reader_split_at_every_point(void **state)
{
    bytes b = { 0 };
    build_mixed_stream(&b);
    for (size_t s = 0; s <= b.len; s++) {
        rec rc = { 0 };
        ws_reader r;
        ws_reader_init(&r, 1 << 20);
        uint8_t *copy = bytes_dup(&b);
        size_t used;
        assert_int_equal(ws_reader_feed(&r, copy, s, &cbs, &rc, &used), 0);
        assert_int_equal(used, s);
        assert_int_equal(ws_reader_feed(&r, copy + s, b.len - s, &cbs, &rc, &used), 0);
        assert_int_equal(used, b.len - s);
        check_mixed_events(&rc);
        free(copy);
        ws_reader_free(&r);
        rec_clear(&rc);
    }
    bytes_free(&b);
}

static void test_reader_fragmented_text_with_ping_between(void **state)
{
    bytes f1 = { 0 }, ping = { 0 }, f2 = { 0 }, f3 = { 0 };
    cframe_str(&f1, WS_OP_TEXT, "oi, ");
    cframe_str(&ping, F_FIN | WS_OP_PING, "hb");
    cframe_str(&f2, WS_OP_CONT, "pessoal");
    cframe_str(&f3, F_FIN | WS_OP_CONT, " !");
    ws_reader r;
    ws_reader_init(&r, 1 << 20);
    rec rc = { 0 };
    assert_int_equal(feed_pieces(&r, &f1, 0, &rc, NULL), 0);
    assert_int_equal(rc.count, 0);
    assert_int_equal(feed_pieces(&r, &ping, 0, &rc, NULL), 0);
    assert_int_equal(rc.count, 1);
    ASSERT_EV(&rc, 0, true, WS_OP_PING, "hb");
    assert_int_equal(feed_pieces(&r, &f2, 0, &rc, NULL), 0);
    assert_int_equal(rc.count, 1);
    assert_int_equal(feed_pieces(&r, &f3, 0, &rc, NULL), 0);
    assert_int_equal(rc.count, 2);
    ASSERT_EV(&rc, 1, false, WS_OP_TEXT, "oi, pessoal !");
    assert_null(r.msg);
    ws_reader_free(&r);
    rec_clear(&rc);
    bytes_free(&f1); bytes_free(&ping); bytes_free(&f2); bytes_free(&f3);
}

static void test_reader_utf8_char_split_across_fragments(void **state)
{
    /* U+1F600 split 1+3, and U+4E16 split 2+1 */
    bytes b = { 0 };
    cframe_str(&b, WS_OP_TEXT, "a\xF0");
    cframe_str(&b, WS_OP_CONT, "\x9F\x98\x80" "b\xE4\xB8");
    cframe_str(&b, F_FIN | WS_OP_CONT, "\x96");
    for (size_t piece = 0; piece <= 3; piece++) {
        rec rc = { 0 };
        assert_int_equal(run_stream(&b, 1 << 20, piece, &rc), 0);
        assert_int_equal(rc.count, 1);
        ASSERT_EV(&rc, 0, false, WS_OP_TEXT, "a\xF0\x9F\x98\x80" "b\xE4\xB8\x96");
        rec_clear(&rc);
    }
    bytes_free(&b);
}

static void test_reader_invalid_utf8_in_fragment_fails_before_fin(void **state)
{
    bytes b = { 0 };
    cframe_str(&b, WS_OP_TEXT, "ok");
    cframe_str(&b, WS_OP_CONT, "still ok \xC0\x80 bad");     /* overlong, no fin */
    rec rc = { 0 };
    /* the final fragment was never sent: the error comes from the bad byte */
    assert_int_equal(run_stream(&b, 1 << 20, 0, &rc), WS_CLOSE_BAD_DATA);
    assert_int_equal(rc.count, 0);
    rec_clear(&rc);
    bytes_free(&b);
}

static void test_reader_invalid_utf8_reported_at_the_bad_byte(void **state)
{
    /* one fin frame whose payload arrives in pieces */
    bytes b = { 0 };
    size_t n = cframe_str(&b, F_FIN | WS_OP_TEXT, "abcdef\xED\xA0\x80xyz");
    size_t hdr = n - 12;
    size_t bad = hdr + 7;       /* the A0 after ED: a surrogate */
    ws_reader r;
    ws_reader_init(&r, 1 << 20);
    rec rc = { 0 };
    uint8_t *copy = bytes_dup(&b);
    size_t used;
    assert_int_equal(ws_reader_feed(&r, copy, bad, &cbs, &rc, &used), 0);
    assert_int_equal(used, bad);
    assert_int_equal(ws_reader_feed(&r, copy + bad, 1, &cbs, &rc, &used), WS_CLOSE_BAD_DATA);
    assert_int_equal(rc.count, 0);
    free(copy);
    ws_reader_free(&r);
    rec_clear(&rc);
    bytes_free(&b);
}

static void test_reader_invalid_utf8_in_whole_frame(void **state)
{
    static const char *bad[] = { "\xff", "a\x80", "\xC0\xAF", "\xF4\x90\x80\x80" };
    for (size_t i = 0; i < 4; i++) {
        bytes b = { 0 };
        cframe_str(&b, F_FIN | WS_OP_TEXT, bad[i]);
        for (size_t piece = 0; piece <= 2; piece++) {
            rec rc = { 0 };
            assert_int_equal(run_stream(&b, 1 << 20, piece, &rc), WS_CLOSE_BAD_DATA);
            assert_int_equal(rc.count, 0);
            rec_clear(&rc);
        }
        bytes_free(&b);
    }
}

static void test_reader_text_ending_mid_sequence(void **state)
{
    for (size_t piece = 0; piece <= 2; piece++) {
        /* unfragmented */
        bytes b = { 0 };
        cframe_str(&b, F_FIN | WS_OP_TEXT, "abc\xE2\x82");
        rec rc = { 0 };
        assert_int_equal(run_stream(&b, 1 << 20, piece, &rc), WS_CLOSE_BAD_DATA);
        assert_int_equal(rc.count, 0);
        bytes_free(&b);
        /* fragmented: valid so far until the fin */
        cframe_str(&b, WS_OP_TEXT, "abc");
        cframe_str(&b, F_FIN | WS_OP_CONT, "\xC3");
        assert_int_equal(run_stream(&b, 1 << 20, piece, &rc), WS_CLOSE_BAD_DATA);
        assert_int_equal(rc.count, 0);
        bytes_free(&b);
        /* an empty final fragment after an open sequence */
        cframe_str(&b, WS_OP_TEXT, "\xF0\x9F");
        cframe(&b, F_FIN | WS_OP_CONT, "", 0);
        assert_int_equal(run_stream(&b, 1 << 20, piece, &rc), WS_CLOSE_BAD_DATA);
        assert_int_equal(rc.count, 0);
        bytes_free(&b);
        rec_clear(&rc);
    }
}

static void test_reader_binary_is_not_utf8_checked(void **state)
{
    bytes b = { 0 };
    cframe(&b, F_FIN | WS_OP_BINARY, "\xff\xfe\xC0\x80", 4);
    cframe(&b, WS_OP_BINARY, "\xED\xA0", 2);
    cframe(&b, F_FIN | WS_OP_CONT, "\x80\xF0", 2);
    for (size_t piece = 0; piece <= 3; piece++) {
        rec rc = { 0 };
        assert_int_equal(run_stream(&b, 1 << 20, piece, &rc), 0);
        assert_int_equal(rc.count, 2);
        ASSERT_EV(&rc, 0, false, WS_OP_BINARY, "\xff\xfe\xC0\x80");
        ASSERT_EV(&rc, 1, false, WS_OP_BINARY, "\xED\xA0\x80\xF0");
        rec_clear(&rc);
    }
    bytes_free(&b);
}

static void test_reader_max_message_exact_is_accepted(void **state)
{
    bytes b = { 0 };
    cframe_str(&b, F_FIN | WS_OP_TEXT, "0123456789");
    cframe_str(&b, WS_OP_TEXT, "01234");
    cframe_str(&b, F_FIN | WS_OP_CONT, "56789");
    cframe(&b, F_FIN | WS_OP_BINARY, "0123456789", 10);
    for (size_t piece = 0; piece <= 2; piece++) {
        rec rc = { 0 };
        assert_int_equal(run_stream(&b, 10, piece, &rc), 0);
        assert_int_equal(rc.count, 3);
        ASSERT_EV(&rc, 0, false, WS_OP_TEXT, "0123456789");
        ASSERT_EV(&rc, 1, false, WS_OP_TEXT, "0123456789");
        ASSERT_EV(&rc, 2, false, WS_OP_BINARY, "0123456789");
        rec_clear(&rc);
    }
    bytes_free(&b);
}

/* The limit is enforced from the header alone: the 1009 comes before any
 * of the payload is read. */
static void test_reader_max_plus_one_fails_at_the_header(void **state)
{
    static const uint8_t opcodes[] = { WS_OP_TEXT, WS_OP_BINARY };
    for (size_t i = 0; i < 2; i++) {
        bytes b = { 0 };
        cframe_str(&b, F_FIN | opcodes[i], "0123456789A");
        size_t hdr = b.len - 11;
        ws_reader r;
        ws_reader_init(&r, 10);
        rec rc = { 0 };
        uint8_t *copy = bytes_dup(&b);
        assert_int_equal(ws_reader_feed(&r, copy, hdr, &cbs, &rc, NULL), WS_CLOSE_TOO_BIG);
        assert_int_equal(rc.count, 0);
        free(copy);
        ws_reader_free(&r);
        bytes_free(&b);
    }
    /* a huge declared length with no payload at all */
    uint8_t h[14] = { 0x82, 0xff, 0, 0, 0, 0x10, 0, 0, 0, 0, 1, 2, 3, 4 };
    ws_reader r;
    ws_reader_init(&r, 1 << 20);
    rec rc = { 0 };
    assert_int_equal(ws_reader_feed(&r, h, sizeof h, &cbs, &rc, NULL), WS_CLOSE_TOO_BIG);
    ws_reader_free(&r);
}

static void test_reader_max_across_fragments(void **state)
{
    bytes b = { 0 };
    cframe_str(&b, WS_OP_TEXT, "012345");
    size_t first = b.len;
    cframe_str(&b, WS_OP_CONT, "6789");
    size_t second = b.len;
    cframe_str(&b, F_FIN | WS_OP_CONT, "X");        /* 11th byte */
    size_t third_hdr = second + (b.len - second - 1);
    ws_reader r;
    ws_reader_init(&r, 10);
    rec rc = { 0 };
    uint8_t *copy = bytes_dup(&b);
    assert_int_equal(ws_reader_feed(&r, copy, first, &cbs, &rc, NULL), 0);
    assert_int_equal(ws_reader_feed(&r, copy + first, second - first, &cbs, &rc, NULL), 0);
    /* the header of the third fragment is enough to know */
    assert_int_equal(ws_reader_feed(&r, copy + second, third_hdr - second, &cbs, &rc, NULL),
                     WS_CLOSE_TOO_BIG);
    assert_int_equal(rc.count, 0);
    free(copy);
    ws_reader_free(&r);         /* drops the partial message */
    bytes_free(&b);
}

static void test_reader_control_frames_do_not_count_toward_max(void **state)
{
    bytes b = { 0 };
    cframe_str(&b, WS_OP_TEXT, "01234");
    cframe_str(&b, F_FIN | WS_OP_PING, "a ping payload of some length");
    cframe_str(&b, F_FIN | WS_OP_CONT, "56789");
    rec rc = { 0 };
    assert_int_equal(run_stream(&b, 10, 0, &rc), 0);
    assert_int_equal(rc.count, 2);
    ASSERT_EV(&rc, 1, false, WS_OP_TEXT, "0123456789");
    rec_clear(&rc);
    bytes_free(&b);
}

static void test_reader_continuation_without_start_is_1002(void **state)
{
    bytes b = { 0 };
    cframe_str(&b, F_FIN | WS_OP_CONT, "x");
    rec rc = { 0 };
    assert_int_equal(run_stream(&b, 1 << 20, 0, &rc), WS_CLOSE_PROTOCOL);
    bytes_free(&b);
    /* after a complete message, a continuation is unexpected too */
    cframe_str(&b, F_FIN | WS_OP_TEXT, "done");
    cframe_str(&b, WS_OP_CONT, "x");
    assert_int_equal(run_stream(&b, 1 << 20, 0, &rc), WS_CLOSE_PROTOCOL);
    assert_int_equal(rc.count, 1);
    rec_clear(&rc);
    bytes_free(&b);
}

static void test_reader_new_message_during_fragmented_one_is_1002(void **state)
{
    bytes b = { 0 };
    cframe_str(&b, WS_OP_TEXT, "first");
    cframe_str(&b, F_FIN | WS_OP_TEXT, "second");
    rec rc = { 0 };
    assert_int_equal(run_stream(&b, 1 << 20, 0, &rc), WS_CLOSE_PROTOCOL);
    assert_int_equal(rc.count, 0);
    bytes_free(&b);
    cframe_str(&b, WS_OP_BINARY, "first");
    cframe_str(&b, WS_OP_BINARY, "second");
    assert_int_equal(run_stream(&b, 1 << 20, 1, &rc), WS_CLOSE_PROTOCOL);
    rec_clear(&rc);
    bytes_free(&b);
}

static void test_reader_header_rules_enforced(void **state)
{
    struct { const char *name; uint8_t b0; size_t n; bool masked; } cases[] = {
        { "unmasked text", F_FIN | WS_OP_TEXT, 3, false },
        { "rsv1 without deflate", F_FIN | F_RSV1 | WS_OP_TEXT, 3, true },
        { "rsv2", F_FIN | F_RSV2 | WS_OP_TEXT, 3, true },
        { "rsv3", F_FIN | F_RSV3 | WS_OP_BINARY, 3, true },
        { "opcode 3", F_FIN | 3, 3, true },
        { "opcode 0xB", F_FIN | 0xB, 3, true },
        { "opcode 0xF", F_FIN | 0xF, 0, true },
        { "ping of 126", F_FIN | WS_OP_PING, 126, true },
        { "fragmented ping", WS_OP_PING, 3, true },
        { "fragmented close", WS_OP_CLOSE, 2, true },
    };
    static uint8_t payload[200];
    memset(payload, 'x', sizeof payload);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bytes b = { 0 };
        frame_append(&b, cases[i].b0, payload, cases[i].n, cases[i].masked ? test_mask : NULL);
        rec rc = { 0 };
        int res = run_stream(&b, 1 << 20, 0, &rc);
        if (res != WS_CLOSE_PROTOCOL) fail_msg("%s: got %d", cases[i].name, res);
        assert_int_equal(rc.count, 0);
        bytes_free(&b);
    }
}

static void test_reader_64bit_length_top_bit_is_1002(void **state)
{
    uint8_t h[14] = { 0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4 };
    for (size_t piece = 1; piece <= 14; piece++) {
        ws_reader r;
        ws_reader_init(&r, UINT64_MAX);
        rec rc = { 0 };
        bytes b = { 0 };
        bytes_put(&b, h, sizeof h);
        assert_int_equal(feed_pieces(&r, &b, piece, &rc, NULL), WS_CLOSE_PROTOCOL);
        ws_reader_free(&r);
        bytes_free(&b);
    }
}

static void test_reader_close_frames_validated(void **state)
{
    struct { const char *payload; size_t n; int want; } cases[] = {
        { "", 0, 0 },
        { "\x03\xe8", 2, 0 },
        { "\x03\xe8" "normal \xC3\xA9", 11, 0 },
        { "\x0b\xb8", 2, 0 },                      /* 3000 */
        { "\x03", 1, WS_CLOSE_PROTOCOL },
        { "\x03\xed", 2, WS_CLOSE_PROTOCOL },      /* 1005 */
        { "\x03\xee", 2, WS_CLOSE_PROTOCOL },      /* 1006 */
        { "\x03\xf7", 2, WS_CLOSE_PROTOCOL },      /* 1015 */
        { "\x03\xe7", 2, WS_CLOSE_PROTOCOL },      /* 999 */
        { "\x07\xd0", 2, WS_CLOSE_PROTOCOL },      /* 2000 */
        { "\x03\xe8\xff", 3, WS_CLOSE_BAD_DATA },
        { "\x03\xe8\xC3", 3, WS_CLOSE_BAD_DATA },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (size_t piece = 0; piece <= 1; piece++) {
            bytes b = { 0 };
            cframe(&b, F_FIN | WS_OP_CLOSE, cases[i].payload, cases[i].n);
            rec rc = { 0 };
            int res = run_stream(&b, 1 << 20, piece, &rc);
            if (res != cases[i].want)
                fail_msg("close case %zu (piece %zu): got %d want %d", i, piece, res, cases[i].want);
            if (res == 0) assert_ev(&rc, 0, true, WS_OP_CLOSE, cases[i].payload, cases[i].n);
            else assert_int_equal(rc.count, 0);
            rec_clear(&rc);
            bytes_free(&b);
        }
}

static void test_reader_control_payload_split_across_reads(void **state)
{
    char p[126];
    for (int i = 0; i < 125; i++) p[i] = (char)('A' + i % 26);
    p[125] = '\0';
    bytes b = { 0 };
    cframe_str(&b, WS_OP_TEXT, "x");
    cframe(&b, F_FIN | WS_OP_PING, p, 125);
    cframe_str(&b, F_FIN | WS_OP_CONT, "y");
    for (size_t piece = 1; piece <= 9; piece++) {
        rec rc = { 0 };
        assert_int_equal(run_stream(&b, 1 << 20, piece, &rc), 0);
        assert_int_equal(rc.count, 2);
        assert_ev(&rc, 0, true, WS_OP_PING, p, 125);
        ASSERT_EV(&rc, 1, false, WS_OP_TEXT, "xy");
        rec_clear(&rc);
    }
    bytes_free(&b);
}

static void test_reader_zero_length_frames(void **state)
{
    bytes b = { 0 };
    cframe(&b, F_FIN | WS_OP_TEXT, "", 0);
    cframe(&b, F_FIN | WS_OP_BINARY, "", 0);
    cframe(&b, F_FIN | WS_OP_PING, "", 0);
    cframe(&b, WS_OP_TEXT, "", 0);
    cframe(&b, WS_OP_CONT, "", 0);
    cframe_str(&b, WS_OP_CONT, "mid");
    cframe(&b, F_FIN | WS_OP_CONT, "", 0);
    cframe(&b, WS_OP_BINARY, "", 0);
    cframe(&b, F_FIN | WS_OP_CONT, "", 0);
    cframe(&b, F_FIN | WS_OP_CLOSE, "", 0);
    for (size_t piece = 0; piece <= 3; piece++) {
        rec rc = { 0 };
        assert_int_equal(run_stream(&b, 1 << 20, piece, &rc), 0);
        assert_int_equal(rc.count, 6);
        ASSERT_EV(&rc, 0, false, WS_OP_TEXT, "");
        ASSERT_EV(&rc, 1, false, WS_OP_BINARY, "");
        ASSERT_EV(&rc, 2, true, WS_OP_PING, "");
        ASSERT_EV(&rc, 3, false, WS_OP_TEXT, "mid");
        ASSERT_EV(&rc, 4, false, WS_OP_BINARY, "");
        ASSERT_EV(&rc, 5, true, WS_OP_CLOSE, "");
        rec_clear(&rc);
    }
    bytes_free(&b);
}

static void test_reader_large_messages_both_length_forms(void **state)
{
    static const size_t sizes[] = { 125, 126, 65535, 65536, 200000 };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        uint8_t *payload = malloc(n);
        for (size_t k = 0; k < n; k++) payload[k] = (uint8_t)('a' + (k * 31) % 26);
        bytes b = { 0 };
        cframe(&b, F_FIN | WS_OP_TEXT, payload, n);
        /* and the same payload as three fragments of odd sizes */
        size_t a = n / 3, c = n / 5;
        cframe(&b, WS_OP_TEXT, payload, a);
        cframe(&b, WS_OP_CONT, payload + a, c);
        cframe(&b, F_FIN | WS_OP_CONT, payload + a + c, n - a - c);
        static const size_t pieces[] = { 0, 1000, 4093 };
        for (size_t p = 0; p < 3; p++) {
            rec rc = { 0 };
            assert_int_equal(run_stream(&b, 1 << 20, pieces[p], &rc), 0);
            assert_int_equal(rc.count, 2);
            assert_ev(&rc, 0, false, WS_OP_TEXT, payload, n);
            assert_ev(&rc, 1, false, WS_OP_TEXT, payload, n);
            rec_clear(&rc);
        }
        bytes_free(&b);
        free(payload);
    }
}

static void test_reader_stop_from_message_reports_used(void **state)
{
    bytes b = { 0 };
    size_t l1 = cframe_str(&b, F_FIN | WS_OP_TEXT, "first");
    cframe_str(&b, F_FIN | WS_OP_TEXT, "second");
    ws_reader r;
    ws_reader_init(&r, 1 << 20);
    rec rc = { 0 };
    rc.stop_at = 1;
    uint8_t *copy = bytes_dup(&b);
    size_t used = 0;
    assert_int_equal(ws_reader_feed(&r, copy, b.len, &cbs, &rc, &used), WS_READER_STOP);
    assert_int_equal(used, l1);
    assert_int_equal(rc.count, 1);
    /* the caller may go on with the rest */
    rc.stop_at = 0;
    assert_int_equal(ws_reader_feed(&r, copy + used, b.len - used, &cbs, &rc, &used), 0);
    assert_int_equal(rc.count, 2);
    ASSERT_EV(&rc, 1, false, WS_OP_TEXT, "second");
    free(copy);
    ws_reader_free(&r);
    rec_clear(&rc);
    bytes_free(&b);
}

static void test_reader_stop_from_control_reports_used(void **state)
{
    bytes b = { 0 };
    size_t l1 = cframe_str(&b, F_FIN | WS_OP_CLOSE, "\x03\xe8");
    cframe_str(&b, F_FIN | WS_OP_TEXT, "after close");
    rec rc = { 0 };
    rc.stop_at = 1;
    ws_reader r;
    ws_reader_init(&r, 1 << 20);
    size_t fed = 0;
    assert_int_equal(feed_pieces(&r, &b, 0, &rc, &fed), WS_READER_STOP);
    assert_int_equal(fed, l1);
    assert_int_equal(rc.count, 1);
    ASSERT_EV(&rc, 0, true, WS_OP_CLOSE, "\x03\xe8");
    ws_reader_free(&r);
    rec_clear(&rc);
    bytes_free(&b);
}

static void test_reader_stop_at_end_of_fragmented_message(void **state)
{
    bytes b = { 0 };
    cframe_str(&b, WS_OP_TEXT, "a");
    cframe_str(&b, F_FIN | WS_OP_CONT, "b");
    size_t end = b.len;
    cframe_str(&b, F_FIN | WS_OP_TEXT, "c");
    /* whole, and in pieces: the stop always lands right after the message */
    for (size_t piece = 0; piece <= 3; piece++) {
        rec rc = { 0 };
        rc.stop_at = 1;
        ws_reader r;
        ws_reader_init(&r, 1 << 20);
        size_t fed = 0;
        assert_int_equal(feed_pieces(&r, &b, piece, &rc, &fed), WS_READER_STOP);
        assert_int_equal(fed, end);
        assert_int_equal(rc.count, 1);
        ASSERT_EV(&rc, 0, false, WS_OP_TEXT, "ab");
        ws_reader_free(&r);
        rec_clear(&rc);
    }
    bytes_free(&b);
}

static void test_reader_free_mid_message_and_mid_control(void **state)
{
    bytes b = { 0 };
    cframe_str(&b, WS_OP_TEXT, "partial message");
    cframe_str(&b, F_FIN | WS_OP_PING, "partial ping");
    ws_reader r;
    ws_reader_init(&r, 1 << 20);
    rec rc = { 0 };
    uint8_t *copy = bytes_dup(&b);
    assert_int_equal(ws_reader_feed(&r, copy, b.len - 3, &cbs, &rc, NULL), 0);
    assert_non_null(r.msg);
    assert_non_null(r.ctl);
    ws_reader_free(&r);     /* ASan: nothing leaks */
    assert_null(r.msg);
    assert_null(r.ctl);
    ws_reader_free(&r);     /* and twice is harmless */
    free(copy);
    bytes_free(&b);
}

static void test_reader_idle_after_messages_holds_no_heap(void **state)
{
    bytes b = { 0 };
    build_mixed_stream(&b);
    for (size_t piece = 0; piece <= 5; piece++) {
        ws_reader r;
        ws_reader_init(&r, 1 << 20);
        rec rc = { 0 };
        assert_int_equal(feed_pieces(&r, &b, piece, &rc, NULL), 0);
        assert_null(r.msg);
        assert_null(r.ctl);
        assert_int_equal(r.msg_len, 0);
        assert_false(r.in_frame);
        assert_int_equal(r.hdr_len, 0);
        rec_clear(&rc);
        /* no ws_reader_free: an idle reader owns nothing (ASan checks) */
    }
    bytes_free(&b);
}

static void test_reader_empty_feed(void **state)
{
    ws_reader r;
    ws_reader_init(&r, 1 << 20);
    rec rc = { 0 };
    size_t used = 77;
    uint8_t dummy = 0;
    assert_int_equal(ws_reader_feed(&r, &dummy, 0, &cbs, &rc, &used), 0);
    assert_int_equal(used, 0);
    assert_int_equal(rc.count, 0);
    ws_reader_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_key_seed_vector),
        cmocka_unit_test(test_accept_key_rfc6455_vector),
        cmocka_unit_test(test_key_valid),
        cmocka_unit_test(test_key_wrong_length),
        cmocka_unit_test(test_key_bad_characters),
        cmocka_unit_test(test_key_missing_padding),
        cmocka_unit_test(test_header_every_length_form_round_trips),
        cmocka_unit_test(test_header_exact_bytes),
        cmocka_unit_test(test_header_parse_bits),
        cmocka_unit_test(test_header_partial_returns_zero),
        cmocka_unit_test(test_header_64bit_length_top_bit_rejected),
        cmocka_unit_test(test_check_accepts_normal_frames),
        cmocka_unit_test(test_check_unmasked_is_1002),
        cmocka_unit_test(test_check_reserved_bits),
        cmocka_unit_test(test_check_reserved_opcodes),
        cmocka_unit_test(test_check_control_frame_rules),
        cmocka_unit_test(test_check_continuation_without_message),
        cmocka_unit_test(test_check_new_message_during_message),
        cmocka_unit_test(test_unmask_matches_reference),
        cmocka_unit_test(test_unmask_in_pieces_equals_whole),
        cmocka_unit_test(test_close_codes_valid),
        cmocka_unit_test(test_close_codes_invalid),
        cmocka_unit_test(test_close_codes_whole_range),
        cmocka_unit_test(test_close_parse),
        cmocka_unit_test(test_frame_new_small_text),
        cmocka_unit_test(test_frame_new_empty_and_large),
        cmocka_unit_test(test_frame_close_encodings),
        cmocka_unit_test(test_frame_close_long_reason_truncated_to_control_limit),
        cmocka_unit_test(test_frame_close_truncation_keeps_reason_valid_utf8),
        cmocka_unit_test(test_frame_raw),
        cmocka_unit_test(test_reader_single_text_message),
        cmocka_unit_test(test_reader_several_messages_in_one_read),
        cmocka_unit_test(test_reader_fed_in_pieces_of_every_size),
        cmocka_unit_test(test_reader_split_at_every_point),
        cmocka_unit_test(test_reader_fragmented_text_with_ping_between),
        cmocka_unit_test(test_reader_utf8_char_split_across_fragments),
        cmocka_unit_test(test_reader_invalid_utf8_in_fragment_fails_before_fin),
        cmocka_unit_test(test_reader_invalid_utf8_reported_at_the_bad_byte),
        cmocka_unit_test(test_reader_invalid_utf8_in_whole_frame),
        cmocka_unit_test(test_reader_text_ending_mid_sequence),
        cmocka_unit_test(test_reader_binary_is_not_utf8_checked),
        cmocka_unit_test(test_reader_max_message_exact_is_accepted),
        cmocka_unit_test(test_reader_max_plus_one_fails_at_the_header),
        cmocka_unit_test(test_reader_max_across_fragments),
        cmocka_unit_test(test_reader_control_frames_do_not_count_toward_max),
        cmocka_unit_test(test_reader_continuation_without_start_is_1002),
        cmocka_unit_test(test_reader_new_message_during_fragmented_one_is_1002),
        cmocka_unit_test(test_reader_header_rules_enforced),
        cmocka_unit_test(test_reader_64bit_length_top_bit_is_1002),
        cmocka_unit_test(test_reader_close_frames_validated),
        cmocka_unit_test(test_reader_control_payload_split_across_reads),
        cmocka_unit_test(test_reader_zero_length_frames),
        cmocka_unit_test(test_reader_large_messages_both_length_forms),
        cmocka_unit_test(test_reader_stop_from_message_reports_used),
        cmocka_unit_test(test_reader_stop_from_control_reports_used),
        cmocka_unit_test(test_reader_stop_at_end_of_fragmented_message),
        cmocka_unit_test(test_reader_free_mid_message_and_mid_control),
        cmocka_unit_test(test_reader_idle_after_messages_holds_no_heap),
        cmocka_unit_test(test_reader_empty_feed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
