/* fuzz_jwt.c -- libFuzzer target: bytes into the --auth-key JWT check
 * (jwt.c) and its base64url decoder (b64url.c).
 *
 * The first byte picks what the rest is: a whole token as a client would
 * send it, or "header.payload" that this target signs with the key first,
 * so that the claims are reached, not only the signature check.
 *
 * Beyond "no crash, no leak": a token is accepted only if it is within the
 * size bound and its sub is 1..255 bytes; the same input always gets the
 * same answer; base64url accepts only canonical text (decoding then
 * encoding gives the input back). */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "b64url.h"
#include "jwt.h"

static const uint8_t key[] = "fuzzing key, thirty-two bytes ok";
#define NOW 1700000000

static void check_b64url(const uint8_t *data, size_t size)
{
    uint8_t out[1024];
    char back[B64URL_LEN(sizeof out) + 1];
    if (size > B64URL_LEN(sizeof out)) return;
    long n = b64url_decode((const char *)data, size, out, sizeof out);
    if (n < 0) return;
    b64url_encode(out, (size_t)n, back);
    if (strlen(back) != size || memcmp(back, data, size) != 0) abort();
}

static void check_token(const char *tok, size_t n)
{
    jwt_claims c, again;
    const char *err = jwt_verify(key, sizeof key - 1, tok, n, NOW, &c);
    const char *err2 = jwt_verify(key, sizeof key - 1, tok, n, NOW, &again);
    if ((err == NULL) != (err2 == NULL)) abort();
    if (err) {
        if (c.payload || !*err) abort();
        return;
    }
    if (n > JWT_MAX_LEN || c.sub_len == 0 || c.sub_len > JWT_MAX_SUB || strlen(c.sub) != c.sub_len) abort();
    if (!c.payload || strcmp(c.sub, again.sub) != 0) abort();
    jwt_claims_free(&c);
    jwt_claims_free(&again);
}

/* data is "header.payload" (any bytes): appends a valid signature. */
static void check_signed(const uint8_t *data, size_t size)
{
    if (size > JWT_MAX_LEN) return;
    char *tok = malloc(size + 64);
    if (!tok) return;
    memcpy(tok, data, size);
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned mac_len = 0;
    if (HMAC(EVP_sha256(), key, (int)sizeof key - 1, data, size, mac, &mac_len)) {
        tok[size] = '.';
        b64url_encode(mac, mac_len, tok + size + 1);
        check_token(tok, strlen(tok + size + 1) + size + 1);
    }
    free(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    const uint8_t *rest = data + 1;
    size_t n = size - 1;
    switch (data[0] % 3) {
    case 0: check_token((const char *)rest, n); break;
    case 1: check_signed(rest, n); break;
    default: check_b64url(rest, n); break;
    }
    return 0;
}
