/* test_jwt.c -- the --auth-key JWT check (jwt.c), its base64url (b64url.c)
 * and the shape of session tokens (identity.c): good tokens, every way a
 * token can be wrong, and inputs of absurd sizes. Tokens are minted by
 * jwt_mint.h (OpenSSL directly) and one comes from RFC 7515 itself. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "b64url.h"
#include "identity.h"
#include "jwt.h"
#include "jwt_mint.h"

#define KEY "a shared secret of thirty-two bytes!"
#define NOW 1700000000

static const char *verify(const char *key, const char *tok, int64_t now, jwt_claims *c)
{
    return jwt_verify((const uint8_t *)key, strlen(key), tok, strlen(tok), now, c);
}

/* The token is refused with a reason containing want. */
static void refused(const char *tok, int64_t now, const char *want)
{
    jwt_claims c;
    const char *err = verify(KEY, tok, now, &c);
    if (!err) fail_msg("accepted: %.200s", tok);
    if (!strstr(err, want)) fail_msg("refused with '%s', want '%s': %.200s", err, want, tok);
    assert_null(c.payload);
}

static void refused_payload(const char *payload, const char *want)
{
    char *t = mint_hs256(KEY, payload);
    refused(t, NOW, want);
    free(t);
}

static void test_b64url_round_trip(void **state)
{
    uint8_t in[64], out[64];
    char enc[B64URL_LEN(64) + 1];
    for (size_t i = 0; i < sizeof in; i++) in[i] = (uint8_t)(i * 37 + 250);
    for (size_t n = 0; n <= sizeof in; n++) {
        b64url_encode(in, n, enc);
        assert_int_equal(strlen(enc), B64URL_LEN(n));
        char ref[B64URL_LEN(64) + 8];
        mint_b64url(in, n, ref);
        assert_string_equal(enc, ref);
        assert_int_equal(b64url_decode(enc, strlen(enc), out, sizeof out), n);
        assert_memory_equal(in, out, n);
        /* one byte less room than needed: refused, nothing written past it */
        if (n) assert_int_equal(b64url_decode(enc, strlen(enc), out, n - 1), -1);
    }
}

static void test_b64url_strict(void **state)
{
    uint8_t out[16];
    assert_int_equal(b64url_decode("QQ", 2, out, sizeof out), 1);
    assert_int_equal(out[0], 'A');
    const char *bad[] = { "QR", "QQ==", "Q", "QUJD=", "Q+==", "ab/c", "ab c", "QQ\n", "ab.c" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (b64url_decode(bad[i], strlen(bad[i]), out, sizeof out) != -1) fail_msg("'%s' decoded", bad[i]);
    assert_int_equal(b64url_decode("-_-_", 4, out, sizeof out), 3);
    assert_int_equal(out[0], 0xfb);
}

/* RFC 7515, appendix A.1: an HS256 JWS and its key, byte for byte. It has
 * no sub, so it passes the signature and stops at the claims. */
static void test_rfc7515_example(void **state)
{
    static const char tok[] =
        "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
        ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
        ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    static const char k64[] =
        "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
    uint8_t key[64];
    assert_int_equal(b64url_decode(k64, strlen(k64), key, sizeof key), 64);
    jwt_claims c;
    const char *err = jwt_verify(key, 64, tok, strlen(tok), 1300819380 - 100, &c);
    assert_non_null(err);
    assert_non_null(strstr(err, "sub"));
    err = jwt_verify(key, 64, tok, strlen(tok), 1300819380 + 100, &c);
    assert_non_null(strstr(err, "expired"));
    key[0] ^= 1;
    err = jwt_verify(key, 64, tok, strlen(tok), 1300819380 - 100, &c);
    assert_non_null(strstr(err, "signature"));
}

static void test_good_token_and_claims(void **state)
{
    char *t = mint_hs256(KEY, "{\"sub\":\"u-42\",\"name\":\"Ana\",\"rooms\":[\"1\",7],\"exp\":1700000600}");
    jwt_claims c;
    assert_null(verify(KEY, t, NOW, &c));
    assert_string_equal(c.sub, "u-42");
    assert_int_equal(c.sub_len, 4);
    assert_string_equal(json_string_value(c.name), "Ana");
    assert_int_equal(json_array_size(c.rooms), 2);
    jwt_claims_free(&c);
    assert_null(c.payload);
    free(t);
    /* a numeric sub, no name, no rooms, a fractional exp */
    t = mint_hs256(KEY, "{\"exp\":1700000000.5,\"sub\":12345}");
    assert_null(verify(KEY, t, NOW, &c));
    assert_string_equal(c.sub, "12345");
    assert_null(c.name);
    assert_null(c.rooms);
    jwt_claims_free(&c);
    free(t);
}

static void test_bad_signature(void **state)
{
    char *t = mint_hs256("another secret", "{\"sub\":\"a\",\"exp\":1700000600}");
    refused(t, NOW, "signature");
    free(t);
    t = mint_hs256(KEY, "{\"sub\":\"a\",\"exp\":1700000600}");
    size_t n = strlen(t);
    t[n - 2] = t[n - 2] == 'A' ? 'B' : 'A';     /* a flipped bit in the MAC */
    refused(t, NOW, "signature");
    t[n - 2] = '\0';                              /* a short MAC */
    refused(t, NOW, "signature");
    free(t);
    /* a changed payload under the old signature */
    t = mint_hs256(KEY, "{\"sub\":\"a\",\"exp\":1700000600}");
    char *other = mint_hs256(KEY, "{\"sub\":\"b\",\"exp\":1700000600}");
    char *dot = strrchr(other, '.');
    strcpy(dot, strrchr(t, '.'));
    refused(other, NOW, "signature");
    free(other);
    free(t);
}

static void test_alg_none_and_others(void **state)
{
    const char *payload = "{\"sub\":\"root\",\"exp\":1700000600}";
    static const char *headers[] = {
        "{\"alg\":\"none\"}", "{\"alg\":\"None\"}", "{\"alg\":\"HS512\"}", "{\"alg\":\"hs256\"}",
        "{\"alg\":\"RS256\"}", "{\"typ\":\"JWT\"}", "{\"alg\":null}", "{\"alg\":[\"HS256\"]}",
    };
    for (size_t i = 0; i < sizeof headers / sizeof *headers; i++) {
        char *t = mint_jwt(KEY, headers[i], payload);
        refused(t, NOW, "HS256");
        /* and the unsigned form an alg none token takes */
        *(strrchr(t, '.') + 1) = '\0';
        refused(t, NOW, "HS256");
        free(t);
    }
    char *t = mint_jwt(KEY, "{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", payload);
    refused(t, NOW, "critical");
    free(t);
    t = mint_jwt(KEY, "{\"alg\":\"HS256\\u0000\"}", payload);     /* NUL: not even read */
    refused(t, NOW, "header");
    free(t);
}

static void test_exp_and_nbf(void **state)
{
    char p[160];
    /* exp is required, a number; the leeway is 30 s either way */
    refused_payload("{\"sub\":\"a\"}", "exp");
    refused_payload("{\"sub\":\"a\",\"exp\":\"1800000000\"}", "exp");
    refused_payload("{\"sub\":\"a\",\"exp\":null}", "exp");
    snprintf(p, sizeof p, "{\"sub\":\"a\",\"exp\":%d}", NOW - JWT_LEEWAY);
    refused_payload(p, "expired");
    refused_payload("{\"sub\":\"a\",\"exp\":0}", "expired");
    snprintf(p, sizeof p, "{\"sub\":\"a\",\"exp\":%d}", NOW - JWT_LEEWAY + 1);
    char *t = mint_hs256(KEY, p);
    jwt_claims c;
    assert_null(verify(KEY, t, NOW, &c));
    jwt_claims_free(&c);
    free(t);
    /* nbf, when present, is honoured */
    snprintf(p, sizeof p, "{\"sub\":\"a\",\"exp\":%d,\"nbf\":%d}", NOW + 600, NOW + JWT_LEEWAY + 1);
    refused_payload(p, "not valid yet");
    snprintf(p, sizeof p, "{\"sub\":\"a\",\"exp\":%d,\"nbf\":\"soon\"}", NOW + 600);
    refused_payload(p, "nbf");
    snprintf(p, sizeof p, "{\"sub\":\"a\",\"exp\":%d,\"nbf\":%d}", NOW + 600, NOW + JWT_LEEWAY);
    t = mint_hs256(KEY, p);
    assert_null(verify(KEY, t, NOW, &c));
    jwt_claims_free(&c);
    free(t);
}

static void test_bad_claims(void **state)
{
    refused_payload("{\"exp\":1800000000}", "sub");
    refused_payload("{\"sub\":\"\",\"exp\":1800000000}", "sub");
    refused_payload("{\"sub\":true,\"exp\":1800000000}", "sub");
    refused_payload("{\"sub\":1.5,\"exp\":1800000000}", "sub");
    char p[600];
    snprintf(p, sizeof p, "{\"sub\":\"%0256d\",\"exp\":1800000000}", 7);
    refused_payload(p, "sub");
    snprintf(p, sizeof p, "{\"sub\":\"%0255d\",\"exp\":1800000000}", 7);
    char *t = mint_hs256(KEY, p);
    jwt_claims c;
    assert_null(verify(KEY, t, NOW, &c));
    assert_int_equal(c.sub_len, 255);
    jwt_claims_free(&c);
    free(t);
    refused_payload("{\"sub\":\"a\",\"exp\":1800000000,\"name\":7}", "name");
    refused_payload("{\"sub\":\"a\",\"exp\":1800000000,\"rooms\":\"1\"}", "rooms");
    refused_payload("{\"sub\":\"a\",\"exp\":1800000000,\"rooms\":[{}]}", "rooms");
    refused_payload("{\"sub\":\"a\",\"sub\":\"b\",\"exp\":1800000000}", "payload");  /* duplicate keys */
}

static void test_malformed(void **state)
{
    refused("", NOW, "compact");
    refused("abc", NOW, "compact");
    refused("a.b", NOW, "compact");
    refused("a.b.c.d", NOW, "compact");
    refused("..", NOW, "header");
    char *t = mint_hs256(KEY, "{\"sub\":\"a\",\"exp\":1800000000}");
    /* padding, or a '+' in the header: not base64url */
    char *padded = malloc(strlen(t) + 4);
    assert_non_null(padded);
    char *dot = strchr(t, '.');
    sprintf(padded, "%.*s=%s", (int)(dot - t), t, dot);
    refused(padded, NOW, "header");
    strcpy(padded, t);
    padded[3] = '+';
    refused(padded, NOW, "header");
    free(padded);
    free(t);
    /* signed, but the payload is not JSON, or not an object */
    static const char *payloads[] = { "{\"sub\":\"a\",", "[1,2]", "\"str\"", "", "{\"sub\":\"a\"}x" };
    for (size_t i = 0; i < sizeof payloads / sizeof *payloads; i++) refused_payload(payloads[i], "payload");
    t = mint_jwt(KEY, "{\"alg\":\"HS256\"", "{\"sub\":\"a\",\"exp\":1800000000}");
    refused(t, NOW, "header");
    free(t);
}

static void test_huge_inputs(void **state)
{
    /* a token over the bound is refused before anything is decoded */
    char *big = malloc(1 << 20);
    assert_non_null(big);
    memset(big, 'A', (1 << 20) - 1);
    big[(1 << 20) - 1] = '\0';
    big[10] = '.';
    big[20] = '.';
    refused(big, NOW, "too long");
    big[JWT_MAX_LEN + 1] = '\0';
    refused(big, NOW, "too long");
    free(big);
    /* a header over its own bound, inside a token that is not */
    char h[2048];
    snprintf(h, sizeof h, "{\"alg\":\"HS256\",\"x\":\"%01200d\"}", 0);
    char *t = mint_jwt(KEY, h, "{\"sub\":\"a\",\"exp\":1800000000}");
    refused(t, NOW, "header");
    free(t);
    /* a payload near the whole bound still works */
    char *p = malloc(JWT_MAX_LEN);
    assert_non_null(p);
    snprintf(p, JWT_MAX_LEN, "{\"sub\":\"a\",\"exp\":1800000000,\"pad\":\"%05500d\"}", 0);
    t = mint_hs256(KEY, p);
    assert_true(strlen(t) <= JWT_MAX_LEN);
    jwt_claims c;
    assert_null(verify(KEY, t, NOW, &c));
    jwt_claims_free(&c);
    free(t);
    snprintf(p, JWT_MAX_LEN, "{\"sub\":\"a\",\"exp\":1800000000,\"pad\":\"%06200d\"}", 0);
    t = mint_hs256(KEY, p);
    assert_true(strlen(t) > JWT_MAX_LEN);
    refused(t, NOW, "too long");
    free(t);
    free(p);
}

static void test_session_token_shape(void **state)
{
    assert_int_equal(IDENTITY_TOKEN_LEN, 43);
    assert_true(identity_token_wellformed("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123-_Z", 43));
    assert_false(identity_token_wellformed("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123-_", 42));
    assert_false(identity_token_wellformed("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123-_ZZ", 44));
    assert_false(identity_token_wellformed("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123-_=", 43));
    assert_false(identity_token_wellformed("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123:_Z", 43));
    assert_false(identity_token_wellformed(NULL, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64url_round_trip),
        cmocka_unit_test(test_b64url_strict),
        cmocka_unit_test(test_rfc7515_example),
        cmocka_unit_test(test_good_token_and_claims),
        cmocka_unit_test(test_bad_signature),
        cmocka_unit_test(test_alg_none_and_others),
        cmocka_unit_test(test_exp_and_nbf),
        cmocka_unit_test(test_bad_claims),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_huge_inputs),
        cmocka_unit_test(test_session_token_shape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
