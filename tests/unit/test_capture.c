/* test_capture.c -- pieces of `tagarela capture` tested alone: the key log
 * line parser, the TLS key schedules against published vectors, and the
 * slab that holds zlib's windows. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "keylog.h"
#include "slab.h"
#include "tls.h"

static void unhex(const char *s, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) assert_int_equal(sscanf(s + 2 * i, "%2hhx", &out[i]), 1);
}

#define RANDOM "a3f1c2d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
#define SECRET32 "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define SECRET48 SECRET32 "0123456789abcdef0123456789abcdef"

static void test_keylog_lines(void **state)
{
    (void)state;
    cap_kl_session s;
    bool bad;
    memset(&s, 0, sizeof s);
    assert_int_equal(cap_keylog_parse_line("CLIENT_RANDOM " RANDOM " " SECRET48 "\n", &s, &bad),
                     CAP_KL_MASTER);
    assert_false(bad);
    assert_int_equal(s.len[CAP_KL_MASTER], 48);
    uint8_t want[48];
    unhex(SECRET48, want, 48);
    assert_memory_equal(s.secret[CAP_KL_MASTER], want, 48);
    assert_int_equal(s.random[0], 0xa3);
    assert_int_equal(cap_keylog_parse_line("SERVER_TRAFFIC_SECRET_0 " RANDOM " " SECRET32 "\r\n",
                                           &s, &bad), CAP_KL_SERVER_AP);
    assert_int_equal(s.len[CAP_KL_SERVER_AP], 32);
    assert_int_equal(cap_keylog_parse_line("CLIENT_HANDSHAKE_TRAFFIC_SECRET " RANDOM " " SECRET48,
                                           &s, &bad), CAP_KL_CLIENT_HS);

    /* skipped quietly: comments, blank lines, labels not needed */
    assert_int_equal(cap_keylog_parse_line("# SSL/TLS secrets log file\n", &s, &bad), -1);
    assert_false(bad);
    assert_int_equal(cap_keylog_parse_line("\n", &s, &bad), -1);
    assert_false(bad);
    assert_int_equal(cap_keylog_parse_line("EXPORTER_SECRET " RANDOM " " SECRET32 "\n", &s, &bad),
                     -1);
    assert_false(bad);

    /* malformed: counted */
    static const char *const broken[] = {
        "CLIENT_RANDOM\n",
        "CLIENT_RANDOM " RANDOM "\n",
        "CLIENT_RANDOM " RANDOM " " SECRET32 "\n",              /* a master secret is 48 */
        "CLIENT_RANDOM a3f1 " SECRET48 "\n",                    /* a short random */
        "CLIENT_RANDOM " RANDOM " " SECRET48 "0\n",             /* odd digits */
        "CLIENT_RANDOM " RANDOM " " SECRET48 "zz\n",
        "CLIENT_RANDOM " RANDOM " " SECRET48 " trailing\n",
        "SERVER_TRAFFIC_SECRET_0 " RANDOM " 0011\n",
        "SERVER_TRAFFIC_SECRET_0 " RANDOM " " SECRET48 SECRET48 "\n",   /* too long */
        "NOT_A_LABEL " RANDOM " " SECRET32 "\n",
    };
    for (size_t i = 0; i < sizeof broken / sizeof *broken; i++) {
        assert_int_equal(cap_keylog_parse_line(broken[i], &s, &bad), -1);
        assert_true(bad);
    }
}

/* RFC 8448 section 3 (simple 1-RTT handshake): the server's handshake
 * traffic secret, and the write key and IV derived from it. */
static void test_tls13_expand_label_rfc8448(void **state)
{
    (void)state;
    uint8_t secret[32], key[16], iv[12], want_key[16], want_iv[12];
    unhex("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38", secret, 32);
    unhex("3fce516009c21727d0f2e4e86ee403bc", want_key, 16);
    unhex("5d313eb2671276ee13000b30", want_iv, 12);
    assert_int_equal(cap_tls13_expand_label("SHA256", secret, 32, "key", key, 16), 0);
    assert_int_equal(cap_tls13_expand_label("SHA256", secret, 32, "iv", iv, 12), 0);
    assert_memory_equal(key, want_key, 16);
    assert_memory_equal(iv, want_iv, 12);
}

/* The TLS 1.2 PRF with SHA-256: the test vector published on the IETF TLS
 * list (secret, "test label", seed; 100 bytes). */
static void test_tls12_prf_vector(void **state)
{
    (void)state;
    uint8_t secret[16], seed[16], out[100], want[100];
    unhex("9bbe436ba940f017b17652849a71db35", secret, 16);
    unhex("a0ba9f936cda311827a6f796ffd5198c", seed, 16);
    unhex("e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a6b301791e90d35c9"
          "c9a46b4e14baf9af0fa022f7077def17abfd3797c0564bab4fbc91666e9def9b97fce34f796789ba"
          "a48082d122ee42c5a72e5a5110fff70187347b66", want, 100);
    assert_int_equal(cap_tls12_prf("SHA256", secret, 16, "test label", seed, 16, out, 100), 0);
    assert_memory_equal(out, want, 100);
}

static void test_slab_blocks(void **state)
{
    (void)state;
    cap_slab s;
    memset(&s, 0, sizeof s);
    enum { N = 200, WIN = 32768 + 16 };
    uint8_t *b[N];
    /* more windows than one chunk holds: every block distinct, aligned,
     * writable whole */
    for (int i = 0; i < N; i++) {
        b[i] = cap_slab_alloc(&s, WIN);
        assert_non_null(b[i]);
        assert_int_equal((uintptr_t)b[i] % 16, 0);
        memset(b[i], i, WIN);
    }
    assert_true(s.nchunks >= (size_t)N * WIN / CAP_SLAB_CHUNK + 1);
    for (int i = 0; i < N; i++) assert_int_equal(b[i][WIN - 1], (uint8_t)i);
    /* a freed block is the next one of its size */
    cap_slab_free(&s, b[17], WIN);
    assert_ptr_equal(cap_slab_alloc(&s, WIN), b[17]);
    size_t chunks = s.nchunks;
    uint8_t *small = cap_slab_alloc(&s, 7160);
    assert_non_null(small);
    cap_slab_free(&s, small, 7160);
    assert_ptr_equal(cap_slab_alloc(&s, 7160), small);
    assert_true(s.nchunks <= chunks + 1);
    /* too large, or one size too many: the caller's malloc */
    assert_null(cap_slab_alloc(&s, CAP_SLAB_MAX_BLOCK + 16));
    for (int i = 0; i < CAP_SLAB_SIZES - 2; i++) assert_non_null(cap_slab_alloc(&s, 64 * (i + 1)));
    assert_null(cap_slab_alloc(&s, 4096));
    cap_slab_close(&s);
    assert_int_equal(s.nchunks, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keylog_lines),
        cmocka_unit_test(test_tls13_expand_label_rfc8448),
        cmocka_unit_test(test_tls12_prf_vector),
        cmocka_unit_test(test_slab_blocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
