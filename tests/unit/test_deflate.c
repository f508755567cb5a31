/* test_deflate.c -- permessage-deflate (src/deflate): the offer parser and
 * its answer, the per-message compressor, the bounded inflater, and the
 * ws_reader inflating compressed client messages through it. Client-side
 * streams are made with zlib directly, as a client would. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "ws_codec.h"
#include "ws_deflate.h"
#include "unit_helpers.h"

static const ws_pmd_policy pol15 = { .client_bits = 15 };

static bool nego(const char *offer, const ws_pmd_policy *pol, ws_pmd *p, char *answer)
{
    bool ok = ws_pmd_negotiate(offer, strlen(offer), pol, p);
    assert_int_equal(ok, p->on);
    if (ok && answer) ws_pmd_format(p, answer);
    return ok;
}

/* ===================================================================== */
/* Negotiation                                                            */
/* ===================================================================== */

static void test_nego_bare_offer(void **state)
{
    ws_pmd p;
    char a[WS_PMD_ANSWER_MAX];
    assert_true(nego("permessage-deflate", &pol15, &p, a));
    assert_string_equal(a, "permessage-deflate; server_no_context_takeover");
    assert_int_equal(p.client_bits, 15);
    assert_int_equal(p.server_bits, 15);
    assert_false(p.client_no_context_takeover);
}

/* What Chromium, Firefox and python3-websockets send. */
static void test_nego_browser_offer(void **state)
{
    ws_pmd p;
    char a[WS_PMD_ANSWER_MAX];
    assert_true(nego("permessage-deflate; client_max_window_bits", &pol15, &p, a));
    assert_string_equal(a, "permessage-deflate; server_no_context_takeover; client_max_window_bits=15");
    ws_pmd_policy small = { .client_bits = 10 };
    assert_true(nego("permessage-deflate; client_max_window_bits", &small, &p, a));
    assert_string_equal(a, "permessage-deflate; server_no_context_takeover; client_max_window_bits=10");
    assert_int_equal(p.client_bits, 10);
    /* the client's own smaller value is kept */
    assert_true(nego("permessage-deflate; client_max_window_bits=9", &small, &p, a));
    assert_int_equal(p.client_bits, 9);
}

static void test_nego_all_parameters(void **state)
{
    ws_pmd p;
    char a[WS_PMD_ANSWER_MAX];
    assert_true(nego("permessage-deflate; server_no_context_takeover; client_no_context_takeover;"
                     " server_max_window_bits=10; client_max_window_bits=12", &pol15, &p, a));
    assert_string_equal(a, "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
                           "server_max_window_bits=10; client_max_window_bits=12");
    assert_int_equal(p.server_bits, 10);
    assert_int_equal(p.client_bits, 12);
    assert_true(p.client_no_context_takeover);
    /* quoted values, odd spacing, any case of the names */
    assert_true(nego("PerMessage-Deflate ;Server_Max_Window_Bits = \"8\"\t; client_max_window_bits=\"15\"",
                     &pol15, &p, a));
    assert_int_equal(p.server_bits, 8);
    assert_int_equal(p.client_bits, 15);
}

static void test_nego_policy_asks_no_context(void **state)
{
    ws_pmd_policy pol = { .client_bits = 15, .client_no_context_takeover = true };
    ws_pmd p;
    char a[WS_PMD_ANSWER_MAX];
    assert_true(nego("permessage-deflate", &pol, &p, a));
    assert_string_equal(a, "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    assert_true(p.client_no_context_takeover);
}

/* RFC 7692 section 5: such an offer is declined (and the next one tried). */
static void test_nego_bad_offers_declined(void **state)
{
    static const char *const bad[] = {
        "permessage-deflate; server_max_window_bits",           /* needs a value */
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=08",
        "permessage-deflate; client_max_window_bits=1x",
        "permessage-deflate; client_max_window_bits=",
        "permessage-deflate; client_max_window_bits=\"\"",
        "permessage-deflate; client_max_window_bits=\"10",       /* unterminated */
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover=\"\"",
        "permessage-deflate; x-unknown",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
        "permessage-deflate; ;",
        "permessage-deflate;",
        "permessage-deflate x",
        "x-webkit-deflate-frame",
        "permessage-deflatex",
        "",
        ",,, ,",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ws_pmd p;
        memset(&p, 0xAA, sizeof p);
        if (nego(bad[i], &pol15, &p, NULL)) fail_msg("accepted: %s", bad[i]);
        assert_false(p.on);
    }
}

static void test_nego_first_acceptable_of_several(void **state)
{
    ws_pmd p;
    char a[WS_PMD_ANSWER_MAX];
    assert_true(nego("x-webkit-deflate-frame, permessage-deflate; foo=bar, "
                     "permessage-deflate; client_max_window_bits=\"1,0\", "
                     "permessage-deflate; client_no_context_takeover, permessage-deflate",
                     &pol15, &p, a));
    assert_true(p.client_no_context_takeover);
    assert_string_equal(a, "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    /* the answer is to the first acceptable one, not the best */
    assert_true(nego("permessage-deflate; server_max_window_bits=9, permessage-deflate", &pol15, &p, a));
    assert_int_equal(p.server_bits, 9);
}

/* ===================================================================== */
/* Compressing and inflating                                              */
/* ===================================================================== */

/* Raw deflate as a client makes it: the sync flush's tail left off. A
 * stream z given: context kept across calls. */
static size_t client_deflate(z_stream *z, const void *in, size_t n, uint8_t *out, size_t cap, int flush)
{
    z->next_in = (Bytef *)in;
    z->avail_in = (uInt)n;
    z->next_out = out;
    z->avail_out = (uInt)cap;
    int rc = deflate(z, flush);
    assert_true(rc == Z_OK || rc == Z_STREAM_END);
    assert_int_equal(z->avail_in, 0);
    size_t k = cap - z->avail_out;
    if (flush == Z_SYNC_FLUSH) {
        assert_true(k >= 4);
        assert_memory_equal(out + k - 4, "\x00\x00\xff\xff", 4);
        k -= 4;
    }
    return k;
}

static void client_z(z_stream *z, int bits)
{
    memset(z, 0, sizeof *z);
    assert_int_equal(deflateInit2(z, 6, Z_DEFLATED, -bits, 8, Z_DEFAULT_STRATEGY), Z_OK);
}

static int inflate_all(ws_inflater *f, const uint8_t *in, size_t n, size_t max, ws_inflate_out *o)
{
    memset(o, 0, sizeof *o);
    o->max = max;
    return ws_inflate(f, in, n, true, o);
}

static void test_frame_deflate_round_trip(void **state)
{
    char msg[2000];
    for (size_t i = 0; i < sizeof msg; i++) msg[i] = "{\"type\":\"say\",\"content\":\"hello\"}"[i % 33];
    ws_deflater d;
    assert_int_equal(ws_deflater_init(&d, 6), 0);
    for (int round = 0; round < 2; round++) {           /* no context kept between messages */
        ws_frame *f = ws_frame_deflate(&d, WS_OP_TEXT, msg, sizeof msg);
        assert_non_null(f);
        ws_header h;
        int hs = ws_header_parse(f->bytes, f->len, &h);
        assert_true(hs > 0);
        assert_true(h.fin && h.rsv1 && !h.rsv2 && !h.rsv3 && !h.masked);
        assert_int_equal(h.opcode, WS_OP_TEXT);
        assert_int_equal(hs + h.len, f->len);
        assert_true(h.len < sizeof msg / 4);
        ws_inflater inf;
        ws_inflater_init(&inf, 15, false);
        ws_inflate_out o;
        assert_int_equal(inflate_all(&inf, f->bytes + hs, (size_t)h.len, 1 << 20, &o), 0);
        assert_int_equal(o.len, sizeof msg);
        assert_memory_equal(o.p, msg, sizeof msg);
        assert_null(inf.z);             /* no context takeover: nothing held */
        free(o.p);
        ws_frame_unref(f);
    }
    /* no gain, no frame: the plain one serves */
    assert_null(ws_frame_deflate(&d, WS_OP_TEXT, "q7#Zk", 5));
    ws_deflater_free(&d);
}

/* A twin is released with the frame that holds it. */
static void test_frame_twin_released_with_frame(void **state)
{
    char msg[500];
    memset(msg, 'a', sizeof msg);
    ws_deflater d;
    assert_int_equal(ws_deflater_init(&d, 1), 0);
    ws_frame *f = ws_frame_new(WS_OP_TEXT, msg, sizeof msg);
    assert_false(f->twin_made);
    f->twin = ws_frame_deflate(&d, WS_OP_TEXT, msg, sizeof msg);
    f->twin_made = true;
    ws_frame *t = ws_frame_ref(f->twin);        /* a recipient's */
    ws_frame_unref(f);
    assert_int_equal(t->refs, 1);
    ws_frame_unref(t);                          /* ASan: no leak, no double free */
    ws_deflater_free(&d);
}

static void test_inflate_bounded(void **state)
{
    /* 1 MiB of zeros deflates to about a kilobyte */
    size_t n = 1 << 20;
    uint8_t *zeros = calloc(1, n), out[8192];
    z_stream z;
    client_z(&z, 15);
    size_t k = client_deflate(&z, zeros, n, out, sizeof out, Z_SYNC_FLUSH);
    deflateEnd(&z);
    ws_inflater inf;
    ws_inflater_init(&inf, 15, true);
    ws_inflate_out o;
    assert_int_equal(inflate_all(&inf, out, k, 4096, &o), WS_CLOSE_TOO_BIG);
    assert_true(o.cap <= 4097);         /* never more than the limit held */
    free(o.p);
    ws_inflater_free(&inf);
    /* the limit itself is allowed, one byte more is not */
    client_z(&z, 15);
    k = client_deflate(&z, zeros, 5000, out, sizeof out, Z_SYNC_FLUSH);
    deflateEnd(&z);
    ws_inflater_init(&inf, 15, false);
    assert_int_equal(inflate_all(&inf, out, k, 5000, &o), 0);
    assert_int_equal(o.len, 5000);
    free(o.p);
    assert_int_equal(inflate_all(&inf, out, k, 4999, &o), WS_CLOSE_TOO_BIG);
    free(o.p);
    ws_inflater_free(&inf);
    free(zeros);
}

static void test_inflate_bad_data(void **state)
{
    static const uint8_t junk[] = { 0xff, 0xff, 0xff, 0xff, 0x12, 0x34 };
    ws_inflater inf;
    ws_inflater_init(&inf, 15, false);
    ws_inflate_out o;
    assert_int_equal(inflate_all(&inf, junk, sizeof junk, 1000, &o), WS_CLOSE_BAD_DATA);
    free(o.p);
    ws_inflater_free(&inf);
}

/* Two messages, the second made of back-references into the first: read
 * with the context kept, refused (1007) without it. */
static void test_inflate_context_takeover(void **state)
{
    const char *m1 = "the quick brown fox jumps over the lazy dog, again and again";
    uint8_t c1[256], c2[256];
    z_stream z;
    client_z(&z, 15);
    size_t k1 = client_deflate(&z, m1, strlen(m1), c1, sizeof c1, Z_SYNC_FLUSH);
    size_t k2 = client_deflate(&z, m1, strlen(m1), c2, sizeof c2, Z_SYNC_FLUSH);
    deflateEnd(&z);
    assert_true(k2 < k1);
    for (int keep = 0; keep < 2; keep++) {
        ws_inflater inf;
        ws_inflater_init(&inf, 15, keep);
        ws_inflate_out o;
        assert_int_equal(inflate_all(&inf, c1, k1, 1000, &o), 0);
        assert_int_equal(o.len, strlen(m1));
        free(o.p);
        assert_int_equal(keep ? inf.z != NULL : inf.z == NULL, true);
        int rc = inflate_all(&inf, c2, k2, 1000, &o);
        if (keep) {
            assert_int_equal(rc, 0);
            assert_memory_equal(o.p, m1, strlen(m1));
        } else {
            assert_int_equal(rc, WS_CLOSE_BAD_DATA);
        }
        free(o.p);
        ws_inflater_free(&inf);
    }
}

/* A client that ends each message with a final block (BFINAL) is read. */
static void test_inflate_final_block(void **state)
{
    uint8_t c[256];
    ws_inflater inf;
    ws_inflater_init(&inf, 15, true);
    for (int i = 0; i < 2; i++) {
        z_stream z;
        client_z(&z, 15);
        size_t k = client_deflate(&z, "hello hello hello", 17, c, sizeof c, Z_FINISH);
        deflateEnd(&z);
        ws_inflate_out o;
        assert_int_equal(inflate_all(&inf, c, k, 100, &o), 0);
        assert_int_equal(o.len, 17);
        free(o.p);
    }
    ws_inflater_free(&inf);
}

/* ===================================================================== */
/* ws_reader with an inflater                                             */
/* ===================================================================== */

typedef struct got {
    int messages, controls;
    uint8_t opcode;
    uint8_t data[4096];
    size_t n;
} got;

static int on_msg(void *ud, uint8_t opcode, uint8_t *data, size_t n)
{
    got *g = ud;
    g->messages++;
    g->opcode = opcode;
    g->n = n < sizeof g->data ? n : sizeof g->data;
    memcpy(g->data, data, g->n);
    return 0;
}

static int on_ctl(void *ud, uint8_t opcode, uint8_t *data, size_t n)
{
    ((got *)ud)->controls++;
    return 0;
}

static const ws_reader_cb cb = { on_msg, on_ctl };

/* Feeds the stream in pieces of `piece` bytes to a reader with an
 * inflater; returns the reader's result. */
static int feed(const bytes *b, size_t piece, uint64_t max, bool keep, got *g, size_t *held)
{
    ws_reader r;
    ws_inflater inf;
    ws_reader_init(&r, max);
    ws_inflater_init(&inf, 15, keep);
    ws_reader_set_inflate(&r, ws_inflate, &inf);
    memset(g, 0, sizeof *g);
    uint8_t *copy = bytes_dup(b);
    int rc = 0;
    for (size_t off = 0; off < b->len && !rc; off += piece) {
        size_t k = b->len - off < piece ? b->len - off : piece;
        rc = ws_reader_feed(&r, copy + off, k, &cb, g, NULL);
    }
    if (held) *held = ws_reader_held(&r);
    free(copy);
    ws_reader_free(&r);
    ws_inflater_free(&inf);
    return rc;
}

static size_t squeeze(const char *s, uint8_t *out, size_t cap)
{
    z_stream z;
    client_z(&z, 15);
    size_t k = client_deflate(&z, s, strlen(s), out, cap, Z_SYNC_FLUSH);
    deflateEnd(&z);
    return k;
}

static void test_reader_compressed_message(void **state)
{
    const char *text = "{\"type\":\"say\",\"content\":\"ol\xc3\xa1 ol\xc3\xa1 ol\xc3\xa1 ol\xc3\xa1\"}";
    uint8_t c[256];
    size_t k = squeeze(text, c, sizeof c);
    bytes b = { 0 };
    cframe(&b, F_FIN | F_RSV1 | WS_OP_TEXT, c, k);
    cframe_str(&b, F_FIN | WS_OP_TEXT, "plain too");        /* RSV1 clear: as is */
    cframe(&b, F_FIN | F_RSV1 | WS_OP_TEXT, c, k);
    for (size_t piece = 1; piece <= b.len; piece = piece * 3 + 1) {
        got g;
        assert_int_equal(feed(&b, piece, 1 << 20, false, &g, NULL), 0);
        assert_int_equal(g.messages, 3);
        assert_int_equal(g.n, strlen(text));
        assert_memory_equal(g.data, text, g.n);
    }
    bytes_free(&b);
    /* an empty message, compressed: nothing inflated, still a message */
    k = squeeze("", c, sizeof c);
    cframe(&b, F_FIN | F_RSV1 | WS_OP_TEXT, c, k);
    got g;
    assert_int_equal(feed(&b, 1, 1 << 20, false, &g, NULL), 0);
    assert_int_equal(g.messages, 1);
    assert_int_equal(g.n, 0);
    bytes_free(&b);
}

/* A compressed message in three fragments, a ping between them; RSV1 on
 * the first only. */
static void test_reader_fragmented_compressed(void **state)
{
    char text[1000];
    for (size_t i = 0; i < sizeof text - 1; i++) text[i] = 'a' + (char)(i * 7 % 26);
    text[sizeof text - 1] = '\0';
    uint8_t c[2048];
    size_t k = squeeze(text, c, sizeof c);
    bytes b = { 0 };
    cframe(&b, F_RSV1 | WS_OP_TEXT, c, k / 3);
    cframe_str(&b, F_FIN | WS_OP_PING, "p");
    cframe(&b, WS_OP_CONT, c + k / 3, k / 3);
    cframe(&b, F_FIN | WS_OP_CONT, c + 2 * (k / 3), k - 2 * (k / 3));
    cframe(&b, F_FIN | WS_OP_CONT | 0, "", 0);              /* stray: a protocol error after */
    got g;
    assert_int_equal(feed(&b, 5, 1 << 20, true, &g, NULL), WS_CLOSE_PROTOCOL);
    assert_int_equal(g.messages, 1);
    assert_int_equal(g.controls, 1);
    assert_int_equal(g.n, strlen(text));
    assert_memory_equal(g.data, text, g.n);
    bytes_free(&b);
}

static void test_reader_rsv1_misuse(void **state)
{
    uint8_t c[64];
    size_t k = squeeze("hi there", c, sizeof c);
    got g;
    bytes b = { 0 };
    cframe(&b, F_FIN | F_RSV1 | WS_OP_PING, c, k);          /* control frame */
    assert_int_equal(feed(&b, 1000, 1 << 20, false, &g, NULL), WS_CLOSE_PROTOCOL);
    bytes_free(&b);
    cframe(&b, F_RSV1 | WS_OP_TEXT, c, k);                  /* on a continuation */
    cframe(&b, F_FIN | F_RSV1 | WS_OP_CONT, "", 0);
    assert_int_equal(feed(&b, 1000, 1 << 20, false, &g, NULL), WS_CLOSE_PROTOCOL);
    bytes_free(&b);
    cframe(&b, F_FIN | F_RSV2 | WS_OP_TEXT, "x", 1);        /* RSV2 */
    assert_int_equal(feed(&b, 1000, 1 << 20, false, &g, NULL), WS_CLOSE_PROTOCOL);
    bytes_free(&b);
    /* without an inflater (not negotiated), RSV1 is a protocol error */
    cframe(&b, F_FIN | F_RSV1 | WS_OP_TEXT, c, k);
    ws_reader r;
    ws_reader_init(&r, 1 << 20);
    uint8_t *copy = bytes_dup(&b);
    assert_int_equal(ws_reader_feed(&r, copy, b.len, &cb, &g, NULL), WS_CLOSE_PROTOCOL);
    free(copy);
    ws_reader_free(&r);
    bytes_free(&b);
}

static void test_reader_compressed_bad_utf8_and_data(void **state)
{
    uint8_t c[64];
    size_t k = squeeze("caf\xc3", c, sizeof c);             /* cut in a character */
    got g;
    bytes b = { 0 };
    cframe(&b, F_FIN | F_RSV1 | WS_OP_TEXT, c, k);
    assert_int_equal(feed(&b, 1000, 1 << 20, false, &g, NULL), WS_CLOSE_BAD_DATA);
    bytes_free(&b);
    cframe(&b, F_FIN | F_RSV1 | WS_OP_BINARY, c, k);        /* binary: bytes are bytes */
    assert_int_equal(feed(&b, 1000, 1 << 20, false, &g, NULL), 0);
    assert_int_equal(g.n, 4);
    bytes_free(&b);
    cframe(&b, F_FIN | F_RSV1 | WS_OP_TEXT, "\xff\xfe\xfd", 3);
    assert_int_equal(feed(&b, 1000, 1 << 20, false, &g, NULL), WS_CLOSE_BAD_DATA);
    bytes_free(&b);
}

/* A zip bomb: 1009 with no more than the limit held, whole or in pieces. */
static void test_reader_zip_bomb(void **state)
{
    size_t n = 4 << 20;
    char *big = malloc(n + 1);
    memset(big, 'a', n);
    big[n] = '\0';
    uint8_t *c = malloc(n / 100);
    size_t k = squeeze(big, c, n / 100);
    bytes b = { 0 };
    cframe(&b, F_FIN | F_RSV1 | WS_OP_TEXT, c, k);
    for (size_t piece = 7; piece < 100000; piece *= 50) {
        got g;
        size_t held = 0;
        assert_int_equal(feed(&b, piece, 65536, false, &g, &held), WS_CLOSE_TOO_BIG);
        assert_int_equal(g.messages, 0);
        assert_true(held <= 65537);
    }
    bytes_free(&b);
    /* compressed bytes are bounded too: a frame far longer than the limit */
    uint8_t hdr[] = { F_FIN | F_RSV1 | WS_OP_TEXT, 0x80 | 127, 0, 0, 0, 0, 0, 0x10, 0, 0, 1, 2, 3, 4 };
    bytes_put(&b, hdr, sizeof hdr);
    got g;
    assert_int_equal(feed(&b, 100, 65536, false, &g, NULL), WS_CLOSE_TOO_BIG);
    bytes_free(&b);
    free(c);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nego_bare_offer),
        cmocka_unit_test(test_nego_browser_offer),
        cmocka_unit_test(test_nego_all_parameters),
        cmocka_unit_test(test_nego_policy_asks_no_context),
        cmocka_unit_test(test_nego_bad_offers_declined),
        cmocka_unit_test(test_nego_first_acceptable_of_several),
        cmocka_unit_test(test_frame_deflate_round_trip),
        cmocka_unit_test(test_frame_twin_released_with_frame),
        cmocka_unit_test(test_inflate_bounded),
        cmocka_unit_test(test_inflate_bad_data),
        cmocka_unit_test(test_inflate_context_takeover),
        cmocka_unit_test(test_inflate_final_block),
        cmocka_unit_test(test_reader_compressed_message),
        cmocka_unit_test(test_reader_fragmented_compressed),
        cmocka_unit_test(test_reader_rsv1_misuse),
        cmocka_unit_test(test_reader_compressed_bad_utf8_and_data),
        cmocka_unit_test(test_reader_zip_bomb),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
