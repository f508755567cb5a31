/* identity.c -- session tokens and the identities they stand for.
 *
 * The store sees only SHA-256 hashes of tokens: a copy of the database
 * does not let anyone log in as its users. Tokens carry 256 random bits,
 * so a fast unsalted hash is enough (nothing to guess from a dictionary).
 * A signed user's key is the hash of "sub:" and its sub claim; a token
 * never holds ':', so the two kinds of keys cannot meet. */
#include "identity.h"

#include <errno.h>
#include <openssl/sha.h>
#include <string.h>
#include <sys/random.h>

bool identity_token_wellformed(const char *s, size_t n)
{
    if (!s || n != IDENTITY_TOKEN_LEN) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

static int random_bytes(uint8_t *p, size_t n)
{
    while (n) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

static int find_or_add(store *st, const uint8_t key[STORE_KEY_LEN], int64_t now, bool add, uint64_t *id)
{
    int found = st->ops->identity_find(st->impl, key, now, id);
    if (found != 0 || !add) return found < 0 ? -1 : found;
    return st->ops->identity_add(st->impl, key, now, id) < 0 ? -1 : 1;
}

int identity_of_token(store *st, const char *token, size_t n, int64_t now, uint64_t *id,
                      char *new_token)
{
    uint8_t key[STORE_KEY_LEN];
    new_token[0] = '\0';
    if (identity_token_wellformed(token, n)) {
        SHA256((const unsigned char *)token, n, key);
        int found = find_or_add(st, key, now, false, id);
        if (found != 0) return found < 0 ? -1 : 0;
    }
    uint8_t raw[IDENTITY_TOKEN_BYTES];
    if (random_bytes(raw, sizeof raw) < 0) return -1;
    b64url_encode(raw, sizeof raw, new_token);
    SHA256((const unsigned char *)new_token, IDENTITY_TOKEN_LEN, key);
    if (st->ops->identity_add(st->impl, key, now, id) < 0) {
        new_token[0] = '\0';
        return -1;
    }
    return 0;
}

int identity_of_subject(store *st, const char *sub, size_t n, int64_t now, uint64_t *id)
{
    uint8_t key[STORE_KEY_LEN];
    char buf[4 + IDENTITY_MAX_SUBJECT];
    if (n > IDENTITY_MAX_SUBJECT) return -1;
    memcpy(buf, "sub:", 4);
    memcpy(buf + 4, sub, n);
    SHA256((const unsigned char *)buf, 4 + n, key);
    return find_or_add(st, key, now, true, id) < 0 ? -1 : 0;
}
