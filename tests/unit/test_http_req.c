/* test_http_req.c -- HTTP request parsing: the seed's handshake request,
 * piecewise feeding, repeated headers, limits, pipelining, upgrades. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_req.h"

/* The handshake request of the seed capture, byte for byte (715 bytes). */
static const char seed_req[] =
    "GET / HTTP/1.1\r\n"
    "Host: 127.0.0.1:7272\r\n"
    "User-Agent: Mozilla/5.0 (X11; Ubuntu; Linux i686; rv:31.0) Gecko/20100101 Firefox/31.0\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    "Accept-Language: zh-cn,zh;q=0.8,en-us;q=0.5,en;q=0.3\r\n"
    "Accept-Encoding: gzip, deflate\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Origin: http://127.0.0.1:55151\r\n"
    "Sec-WebSocket-Key: zPDr6m4czzUdOFnsxIUEAw==\r\n"
    "Cookie: Hm_lvt_abcf9330bef79b4aba5b24fa373506d9=1402048017; "
    "Hm_lvt_5fedb3bdce89499492c079ab4a8a0323=1403063068,1403141761; "
    "Hm_lvt_7b1919221e89d2aa5711e4deb935debd=1407836536; "
    "Hm_lpvt_7b1919221e89d2aa5711e4deb935debd=1407837000\r\n"
    "Connection: keep-alive, Upgrade\r\n"
    "Pragma: no-cache\r\n"
    "Cache-Control: no-cache\r\n"
    "Upgrade: websocket\r\n"
    "\r\n";
#define SEED_LEN (sizeof seed_req - 1)

static http_req *new_req(size_t max_header)
{
    http_req *r = malloc(sizeof *r);
    assert_non_null(r);
    http_req_init(r, max_header);
    return r;
}

static void assert_field(const http_req *r, enum http_field f, const char *want)
{
    size_t n = 999;
    const char *v = http_req_field(r, f, &n);
    if (!want) {
        assert_null(v);
        assert_int_equal(n, 0);
        return;
    }
    assert_non_null(v);
    if (n != strlen(want) || memcmp(v, want, n) != 0)
        fail_msg("field %d: got '%.*s', want '%s'", (int)f, (int)n, v, want);
}

static void assert_url(const http_req *r, const char *want)
{
    size_t n;
    const char *u = http_req_url(r, &n);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(u, want, n);
}

static void assert_seed_fields(const http_req *r)
{
    assert_int_equal(r->state, HTTP_REQ_DONE);
    assert_true(http_req_is_get(r));
    assert_string_equal(http_req_method(r), "GET");
    assert_url(r, "/");
    assert_true(r->upgrade);
    assert_field(r, HF_HOST, "127.0.0.1:7272");
    assert_field(r, HF_UPGRADE, "websocket");
    assert_field(r, HF_CONNECTION, "keep-alive, Upgrade");
    assert_field(r, HF_WS_KEY, "zPDr6m4czzUdOFnsxIUEAw==");
    assert_field(r, HF_WS_VERSION, "13");
    assert_field(r, HF_ORIGIN, "http://127.0.0.1:55151");
    assert_field(r, HF_WS_EXTENSIONS, NULL);
    assert_field(r, HF_WS_PROTOCOL, NULL);
    assert_field(r, HF_IF_NONE_MATCH, NULL);
}

/* ---- the seed request ------------------------------------------------- */

static void test_seed_request_parses(void **state)
{
    assert_int_equal(SEED_LEN, 715);    /* tcpdump: "length 715" */
    http_req *r = new_req(8192);
    assert_int_equal(r->state, HTTP_REQ_MORE);
    assert_int_equal(http_req_feed(r, seed_req, SEED_LEN), SEED_LEN);
    assert_seed_fields(r);
    free(r);
}

static void test_seed_request_split_at_every_byte(void **state)
{
    http_req *r = new_req(8192);
    for (size_t s = 1; s < SEED_LEN; s++) {
        http_req_init(r, 8192);
        assert_int_equal(http_req_feed(r, seed_req, s), s);
        assert_int_equal(r->state, HTTP_REQ_MORE);
        assert_int_equal(http_req_feed(r, seed_req + s, SEED_LEN - s), SEED_LEN - s);
        assert_seed_fields(r);
    }
    free(r);
}

static void test_seed_request_byte_by_byte(void **state)
{
    http_req *r = new_req(8192);
    for (size_t i = 0; i < SEED_LEN; i++) {
        assert_int_equal(r->state, HTTP_REQ_MORE);
        assert_int_equal(http_req_feed(r, seed_req + i, 1), 1);
    }
    assert_seed_fields(r);
    free(r);
}

static void test_seed_request_in_three_pieces(void **state)
{
    http_req *r = new_req(8192);
    for (size_t a = 1; a < SEED_LEN; a += 13)
        for (size_t b = a + 1; b < SEED_LEN; b += 17) {
            http_req_init(r, 8192);
            assert_int_equal(http_req_feed(r, seed_req, a), a);
            assert_int_equal(http_req_feed(r, seed_req + a, b - a), b - a);
            assert_int_equal(http_req_feed(r, seed_req + b, SEED_LEN - b), SEED_LEN - b);
            assert_seed_fields(r);
        }
    free(r);
}

/* ---- headers ------------------------------------------------------------ */

static const char repeated_req[] =
    "GET /chat HTTP/1.1\r\n"
    "Connection: keep-alive\r\n"
    "Host: example.com\r\n"
    "Upgrade: websocket\r\n"
    "connection: Upgrade\r\n"
    "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    "CONNECTION: x-third\r\n"
    "Sec-WebSocket-Extensions: x-other; a=1\r\n"
    "\r\n";

static void check_repeated(const http_req *r)
{
    assert_int_equal(r->state, HTTP_REQ_DONE);
    assert_url(r, "/chat");
    assert_field(r, HF_CONNECTION, "keep-alive, Upgrade, x-third");
    assert_field(r, HF_WS_EXTENSIONS, "permessage-deflate, x-other; a=1");
    assert_field(r, HF_HOST, "example.com");
    assert_field(r, HF_UPGRADE, "websocket");
}

static void test_repeated_headers_are_joined(void **state)
{
    size_t n = sizeof repeated_req - 1;
    http_req *r = new_req(8192);
    assert_int_equal(http_req_feed(r, repeated_req, n), n);
    check_repeated(r);
    for (size_t s = 1; s < n; s++) {
        http_req_init(r, 8192);
        assert_int_equal(http_req_feed(r, repeated_req, s), s);
        assert_int_equal(http_req_feed(r, repeated_req + s, n - s), n - s);
        check_repeated(r);
    }
    free(r);
}

static void test_header_names_any_case_and_untracked_ignored(void **state)
{
    static const char req[] =
        "GET /x?y=1 HTTP/1.1\r\n"
        "sEC-wEBsOCKET-kEY: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Key-Extra: nope\r\n"
        "X-A-Header-Name-Much-Longer-Than-Thirty-Two-Bytes: ignored\r\n"
        "Sec-WebSocket-Protocol: chat, superchat\r\n"
        "If-None-Match: \"abc123\"\r\n"
        "HOST: h\r\n"
        "\r\n";
    http_req *r = new_req(8192);
    assert_int_equal(http_req_feed(r, req, sizeof req - 1), sizeof req - 1);
    assert_int_equal(r->state, HTTP_REQ_DONE);
    assert_url(r, "/x?y=1");
    assert_field(r, HF_WS_KEY, "dGhlIHNhbXBsZSBub25jZQ==");
    assert_field(r, HF_WS_PROTOCOL, "chat, superchat");
    assert_field(r, HF_IF_NONE_MATCH, "\"abc123\"");
    assert_field(r, HF_HOST, "h");
    assert_field(r, HF_UPGRADE, NULL);
    assert_false(r->upgrade);
    assert_true(r->keep_alive);
    free(r);
}

static void test_method_and_keep_alive(void **state)
{
    http_req *r = new_req(8192);
    static const char post[] = "POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
    assert_int_equal(http_req_feed(r, post, sizeof post - 1), sizeof post - 1);
    assert_int_equal(r->state, HTTP_REQ_DONE);
    assert_string_equal(http_req_method(r), "POST");
    assert_false(http_req_is_get(r));

    http_req_init(r, 8192);
    static const char v10[] = "GET / HTTP/1.0\r\n\r\n";
    assert_int_equal(http_req_feed(r, v10, sizeof v10 - 1), sizeof v10 - 1);
    assert_int_equal(r->state, HTTP_REQ_DONE);
    assert_false(r->keep_alive);

    http_req_init(r, 8192);
    static const char close_[] = "GET / HTTP/1.1\r\nConnection: close\r\n\r\n";
    assert_int_equal(http_req_feed(r, close_, sizeof close_ - 1), sizeof close_ - 1);
    assert_false(r->keep_alive);
    free(r);
}

/* ---- limits and errors ---------------------------------------------------- */

static char *big_header_request(size_t value_len, size_t *len)
{
    char *p = malloc(value_len + 100);
    assert_non_null(p);
    size_t n = (size_t)sprintf(p, "GET / HTTP/1.1\r\nX-Big: ");
    memset(p + n, 'v', value_len);
    n += value_len;
    n += (size_t)sprintf(p + n, "\r\nHost: h\r\n\r\n");
    *len = n;
    return p;
}

static void test_header_cap_gives_431(void **state)
{
    size_t n;
    char *req = big_header_request(300, &n);
    http_req *r = new_req(256);
    size_t used = http_req_feed(r, req, n);
    assert_true(used <= 256);
    assert_int_equal(r->state, HTTP_REQ_ERROR);
    assert_int_equal(r->error_status, 431);
    /* byte by byte, the same */
    http_req_init(r, 256);
    for (size_t i = 0; i < n && r->state == HTTP_REQ_MORE; i++) http_req_feed(r, req + i, 1);
    assert_int_equal(r->state, HTTP_REQ_ERROR);
    assert_int_equal(r->error_status, 431);
    free(r);
    free(req);
}

static void test_headers_exactly_at_cap_are_accepted(void **state)
{
    http_req *r = new_req(SEED_LEN);
    assert_int_equal(http_req_feed(r, seed_req, SEED_LEN), SEED_LEN);
    assert_seed_fields(r);
    http_req_init(r, SEED_LEN - 1);
    http_req_feed(r, seed_req, SEED_LEN);
    assert_int_equal(r->state, HTTP_REQ_ERROR);
    assert_int_equal(r->error_status, 431);
    free(r);
}

/* A read that ends exactly at the cap, with the headers still going: the
 * next read must be refused with 431 like any other oversized header. */
static void test_header_cap_reached_at_a_read_boundary_gives_431(void **state)
{
    size_t n;
    char *req = big_header_request(300, &n);
    http_req *r = new_req(256);
    assert_int_equal(http_req_feed(r, req, 256), 256);
    assert_int_equal(r->state, HTTP_REQ_MORE);
    size_t used = http_req_feed(r, req + 256, n - 256);
    assert_int_equal(r->state, HTTP_REQ_ERROR);
    assert_int_equal(r->error_status, 431);
    assert_int_equal(used, 0);
    free(r);
    free(req);
}

static void test_arena_overflow_gives_431(void **state)
{
    /* a URL longer than the arena, under a large header cap */
    size_t n = HTTP_REQ_ARENA + 100;
    char *req = malloc(n + 64);
    size_t k = (size_t)sprintf(req, "GET /");
    memset(req + k, 'u', HTTP_REQ_ARENA);
    k += HTTP_REQ_ARENA;
    k += (size_t)sprintf(req + k, " HTTP/1.1\r\n\r\n");
    http_req *r = new_req(1 << 20);
    http_req_feed(r, req, k);
    assert_int_equal(r->state, HTTP_REQ_ERROR);
    assert_int_equal(r->error_status, 431);
    free(r);
    free(req);
}

static void test_garbage_gives_400(void **state)
{
    static const char *bad[] = {
        "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",     /* a TLS ClientHello */
        "HELLO WORLD\r\n\r\n",
        "GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
        "GET / HTTP/9\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
    };
    http_req *r = new_req(8192);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        http_req_init(r, 8192);
        http_req_feed(r, bad[i], strlen(bad[i]));
        if (r->state != HTTP_REQ_ERROR || r->error_status != 400)
            fail_msg("case %zu: state %d status %d", i, r->state, r->error_status);
        /* an errored request consumes nothing more */
        assert_int_equal(http_req_feed(r, "GET", 3), 0);
    }
    free(r);
}

/* ---- one request at a time --------------------------------------------- */

static void test_pipelined_requests_one_at_a_time(void **state)
{
    static const char two[] =
        "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
        "GET /b HTTP/1.1\r\nHost: y\r\nIf-None-Match: \"e\"\r\n\r\n";
    size_t first = strlen("GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    size_t n = sizeof two - 1;
    http_req *r = new_req(8192);
    assert_int_equal(http_req_feed(r, two, n), first);
    assert_int_equal(r->state, HTTP_REQ_DONE);
    assert_url(r, "/a");
    assert_field(r, HF_HOST, "x");
    assert_field(r, HF_IF_NONE_MATCH, NULL);
    /* a finished request takes no more bytes until it is reset */
    assert_int_equal(http_req_feed(r, two + first, n - first), 0);
    http_req_reset(r);
    assert_int_equal(r->state, HTTP_REQ_MORE);
    assert_int_equal(http_req_feed(r, two + first, n - first), n - first);
    assert_int_equal(r->state, HTTP_REQ_DONE);
    assert_url(r, "/b");
    assert_field(r, HF_HOST, "y");
    assert_field(r, HF_IF_NONE_MATCH, "\"e\"");
    free(r);
}

static void test_bytes_after_upgrade_request_not_consumed(void **state)
{
    /* the seed request followed at once by a masked text frame */
    static const char frame[] = "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
    size_t n = SEED_LEN + sizeof frame - 1;
    char *buf = malloc(n);
    memcpy(buf, seed_req, SEED_LEN);
    memcpy(buf + SEED_LEN, frame, sizeof frame - 1);
    http_req *r = new_req(8192);
    assert_int_equal(http_req_feed(r, buf, n), SEED_LEN);
    assert_seed_fields(r);
    /* also when the request arrived in two pieces */
    http_req_init(r, 8192);
    assert_int_equal(http_req_feed(r, buf, 100), 100);
    assert_int_equal(http_req_feed(r, buf + 100, n - 100), SEED_LEN - 100);
    assert_seed_fields(r);
    free(r);
    free(buf);
}

static void test_header_cap_ignores_bytes_after_headers(void **state)
{
    /* a cap equal to the request: the frame behind it must not count */
    static const char frame[] = "\x81\x80\x01\x02\x03\x04";
    size_t n = SEED_LEN + sizeof frame - 1;
    char *buf = malloc(n);
    memcpy(buf, seed_req, SEED_LEN);
    memcpy(buf + SEED_LEN, frame, sizeof frame - 1);
    http_req *r = new_req(SEED_LEN);
    assert_int_equal(http_req_feed(r, buf, n), SEED_LEN);
    assert_seed_fields(r);
    free(r);
    free(buf);
}

/* ---- token lists ---------------------------------------------------------- */

#define HAS(list, tok) http_token_list_has(list, strlen(list), tok)

static void test_token_list_has(void **state)
{
    assert_true(HAS("keep-alive, Upgrade", "upgrade"));
    assert_true(HAS("keep-alive, Upgrade", "keep-alive"));
    assert_true(HAS("Upgrade", "upgrade"));
    assert_true(HAS("UPGRADE", "Upgrade"));
    assert_true(HAS(" ,, upgrade ,", "upgrade"));
    assert_true(HAS("a,\tupgrade\t,b", "upgrade"));
    assert_true(HAS("websocket", "websocket"));
    assert_true(HAS("x, y, websocket", "websocket"));
}

static void test_token_list_has_not(void **state)
{
    assert_false(HAS("", "upgrade"));
    assert_false(HAS(" , ,", "upgrade"));
    assert_false(HAS("keep-alive", "upgrade"));
    assert_false(HAS("upgrade2", "upgrade"));
    assert_false(HAS("xupgrade", "upgrade"));
    assert_false(HAS("up grade", "upgrade"));
    assert_false(HAS("upgrade", "up"));
    assert_false(HAS("keep-alive, Upgrade", "keep"));
    /* the length bounds the list */
    assert_false(http_token_list_has("keep-alive, Upgrade", 12, "upgrade"));
    assert_true(http_token_list_has("keep-alive, Upgrade", 10, "keep-alive"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_request_parses),
        cmocka_unit_test(test_seed_request_split_at_every_byte),
        cmocka_unit_test(test_seed_request_byte_by_byte),
        cmocka_unit_test(test_seed_request_in_three_pieces),
        cmocka_unit_test(test_repeated_headers_are_joined),
        cmocka_unit_test(test_header_names_any_case_and_untracked_ignored),
        cmocka_unit_test(test_method_and_keep_alive),
        cmocka_unit_test(test_header_cap_gives_431),
        cmocka_unit_test(test_headers_exactly_at_cap_are_accepted),
        cmocka_unit_test(test_header_cap_reached_at_a_read_boundary_gives_431),
        cmocka_unit_test(test_arena_overflow_gives_431),
        cmocka_unit_test(test_garbage_gives_400),
        cmocka_unit_test(test_pipelined_requests_one_at_a_time),
        cmocka_unit_test(test_bytes_after_upgrade_request_not_consumed),
        cmocka_unit_test(test_header_cap_ignores_bytes_after_headers),
        cmocka_unit_test(test_token_list_has),
        cmocka_unit_test(test_token_list_has_not),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
