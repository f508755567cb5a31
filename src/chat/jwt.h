/* jwt.h -- verifying the JWTs an operator's site signs for its users
 * (`tagarela serve --auth-key FILE`): compact JWS, HS256 only. */
#ifndef TAGARELA_JWT_H
#define TAGARELA_JWT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define JWT_MAX_LEN 8192        /* bytes of a whole token */
#define JWT_MAX_HEADER 1024     /* bytes of its decoded header */
#define JWT_MAX_SUB 255         /* bytes of the sub claim */
#define JWT_LEEWAY 30           /* seconds of clock skew allowed on exp and nbf */

typedef struct jwt_claims {
    json_t *payload;            /* owned; the fields below point into it */
    char sub[JWT_MAX_SUB + 1];  /* the identity: a string, or an integer written out */
    size_t sub_len;
    json_t *name;               /* the display name, or NULL (then sub is the name) */
    json_t *rooms;              /* array of allowed room ids, or NULL: any room */
} jwt_claims;

/* Checks tok (n bytes) against key at time now (unix seconds). Returns NULL
 * and fills out (release it with jwt_claims_free) when the token is good;
 * otherwise a short reason, and out holds nothing to release. */
const char *jwt_verify(const uint8_t *key, size_t key_len, const char *tok, size_t n,
                       int64_t now, jwt_claims *out);

void jwt_claims_free(jwt_claims *c);

#endif
