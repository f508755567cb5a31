/* identity.h -- who a login is, across connections: the session tokens the
 * server hands out (random, kept only as SHA-256 hashes in the store) and
 * the signed users of --auth-key, both mapped to a store identity id. */
#ifndef TAGARELA_IDENTITY_H
#define TAGARELA_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "b64url.h"
#include "store.h"

#define IDENTITY_TOKEN_BYTES 32         /* of randomness: 256 bits */
#define IDENTITY_TOKEN_LEN B64URL_LEN(IDENTITY_TOKEN_BYTES)
#define IDENTITY_MAX_SUBJECT 255        /* bytes of a signed user's id */

/* True when s could be a token this server made (its length and alphabet);
 * anything else is unknown without a look at the store. */
bool identity_token_wellformed(const char *s, size_t n);

/* Continues the identity of token (NULL or not well-formed: none) or starts
 * a new one, whose token is written into new_token (IDENTITY_TOKEN_LEN + 1
 * bytes; left "" when the identity was continued). Returns 0 with *id set,
 * or -1 when the store failed or no randomness could be had. */
int identity_of_token(store *st, const char *token, size_t n, int64_t now, uint64_t *id,
                      char *new_token);

/* The identity of a signed user (a JWT's sub, at most IDENTITY_MAX_SUBJECT
 * bytes), created on first sight. Returns 0 with *id set, or -1. */
int identity_of_subject(store *st, const char *sub, size_t n, int64_t now, uint64_t *id);

#endif
