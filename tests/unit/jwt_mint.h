/* jwt_mint.h -- signs test JWTs the way an operator's site would: written
 * here with OpenSSL's HMAC and base64 directly, not with the server's own
 * jwt.c or b64url.c, so that the tests check them against something else.
 * Include after cmocka.h. */
#ifndef TAGARELA_JWT_MINT_H
#define TAGARELA_JWT_MINT_H

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

/* base64url of n bytes, without padding, appended at out (NUL-terminated). */
static inline void mint_b64url(const void *in, size_t n, char *out)
{
    int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    for (int i = 0; i < len; i++) {
        if (out[i] == '+') out[i] = '-';
        else if (out[i] == '/') out[i] = '_';
        else if (out[i] == '=') {
            out[i] = '\0';
            return;
        }
    }
    out[len] = '\0';
}

/* header.payload.signature with HS256 over the given JSON texts; a
 * malloc'ed string to free. */
static inline char *mint_jwt(const char *key, const char *header, const char *payload)
{
    size_t hl = strlen(header), pl = strlen(payload);
    char *t = malloc((hl + pl) * 2 + 128);
    assert_non_null(t);
    mint_b64url(header, hl, t);
    strcat(t, ".");
    mint_b64url(payload, pl, t + strlen(t));
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned mac_len = 0;
    assert_non_null(HMAC(EVP_sha256(), key, (int)strlen(key), (unsigned char *)t, strlen(t), mac, &mac_len));
    strcat(t, ".");
    mint_b64url(mac, mac_len, t + strlen(t));
    return t;
}

static inline char *mint_hs256(const char *key, const char *payload)
{
    return mint_jwt(key, "{\"alg\":\"HS256\",\"typ\":\"JWT\"}", payload);
}

#endif
