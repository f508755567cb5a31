/* jwt.c -- HS256 JWT verification: a strict reading of the three parts,
 * the signature checked before the payload is parsed, and the claims the chat
 * needs (sub, name, rooms, exp, nbf).
 *
 * Only HS256 is accepted whatever the header says: letting the token choose
 * its algorithm ("none", or RS256 with the secret as a public key) is how
 * JWT libraries have been fooled. */
#include "jwt.h"

#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

#include "b64url.h"

#define SIG_LEN 32

/* Splits tok into its three dot-separated parts. Returns 0 or -1. */
static int split(const char *tok, size_t n, size_t *dot1, size_t *dot2)
{
    const char *a = memchr(tok, '.', n);
    if (!a) return -1;
    const char *b = memchr(a + 1, '.', n - (size_t)(a + 1 - tok));
    if (!b || memchr(b + 1, '.', n - (size_t)(b + 1 - tok))) return -1;
    *dot1 = (size_t)(a - tok);
    *dot2 = (size_t)(b - tok);
    return 0;
}

static int signature_ok(const uint8_t *key, size_t key_len, const char *tok, size_t signed_len,
                        const char *sig, size_t sig_len)
{
    uint8_t given[SIG_LEN + 3], want[EVP_MAX_MD_SIZE];
    unsigned want_len = 0;
    if (b64url_decode(sig, sig_len, given, sizeof given) != SIG_LEN) return 0;
    if (!HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)tok, signed_len, want, &want_len) ||
        want_len != SIG_LEN)
        return 0;
    return CRYPTO_memcmp(given, want, SIG_LEN) == 0;
}

/* Decodes one base64url part holding a JSON object (duplicate keys refused:
 * two readers of one token must not see two different claims). */
static json_t *decode_part(const char *s, size_t n, size_t max)
{
    if (n == 0 || n > B64URL_LEN(max)) return NULL;
    uint8_t buf[JWT_MAX_LEN];
    long len = b64url_decode(s, n, buf, sizeof buf);
    if (len <= 0) return NULL;
    json_t *v = json_loadb((const char *)buf, (size_t)len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(v)) {
        json_decref(v);
        return NULL;
    }
    return v;
}

static const char *check_header(const char *s, size_t n)
{
    json_t *h = decode_part(s, n, JWT_MAX_HEADER);
    if (!h) return "the token's header is not base64url JSON";
    json_t *alg = json_object_get(h, "alg");
    const char *err = NULL;
    if (!json_is_string(alg) || strcmp(json_string_value(alg), "HS256") != 0 ||
        json_string_length(alg) != 5)
        err = "the token must be signed with HS256";
    else if (json_object_get(h, "crit"))
        err = "the token has critical header parameters this server does not know";
    json_decref(h);
    return err;
}

/* exp (required) and nbf (when present) against now, with some leeway. */
static const char *check_times(json_t *p, int64_t now)
{
    json_t *exp = json_object_get(p, "exp"), *nbf = json_object_get(p, "nbf");
    if (!json_is_number(exp) || !isfinite(json_number_value(exp))) return "the token has no exp claim";
    if ((double)now >= json_number_value(exp) + JWT_LEEWAY) return "the token has expired";
    if (nbf && (!json_is_number(nbf) || !isfinite(json_number_value(nbf))))
        return "the token's nbf claim is not a number";
    if (nbf && (double)now + JWT_LEEWAY < json_number_value(nbf)) return "the token is not valid yet";
    return NULL;
}

static const char *read_claims(jwt_claims *c)
{
    json_t *p = c->payload, *sub = json_object_get(p, "sub");
    if (json_is_string(sub)) {
        size_t n = json_string_length(sub);
        if (n == 0 || n > JWT_MAX_SUB) return "the token's sub claim must have 1 to 255 bytes";
        memcpy(c->sub, json_string_value(sub), n);
        c->sub_len = n;
    } else if (json_is_integer(sub)) {
        c->sub_len = (size_t)snprintf(c->sub, sizeof c->sub, "%" JSON_INTEGER_FORMAT, json_integer_value(sub));
    } else {
        return "the token has no sub claim";
    }
    c->sub[c->sub_len] = '\0';
    c->name = json_object_get(p, "name");
    if (c->name && !json_is_string(c->name)) return "the token's name claim is not a string";
    c->rooms = json_object_get(p, "rooms");
    if (!c->rooms) return NULL;
    if (!json_is_array(c->rooms)) return "the token's rooms claim is not an array";
    size_t i;
    json_t *r;
    json_array_foreach(c->rooms, i, r)
        if (!json_is_string(r) && !json_is_number(r)) return "the token's rooms hold something not a room id";
    return NULL;
}

const char *jwt_verify(const uint8_t *key, size_t key_len, const char *tok, size_t n,
                       int64_t now, jwt_claims *out)
{
    memset(out, 0, sizeof *out);
    size_t d1, d2;
    if (n > JWT_MAX_LEN) return "the token is too long";
    if (split(tok, n, &d1, &d2) < 0) return "the token is not a compact JWS";
    const char *err = check_header(tok, d1);
    if (err) return err;
    if (!signature_ok(key, key_len, tok, d2, tok + d2 + 1, n - d2 - 1))
        return "the token's signature is wrong";
    out->payload = decode_part(tok + d1 + 1, d2 - d1 - 1, JWT_MAX_LEN);
    if (!out->payload) return "the token's payload is not base64url JSON";
    err = check_times(out->payload, now);
    if (!err) err = read_claims(out);
    if (err) jwt_claims_free(out);
    return err;
}

void jwt_claims_free(jwt_claims *c)
{
    json_decref(c->payload);
    memset(c, 0, sizeof *c);
}
