/* b64url.h -- base64url (RFC 4648 section 5) without padding, as JWTs and
 * the session tokens use it. */
#ifndef TAGARELA_B64URL_H
#define TAGARELA_B64URL_H

#include <stddef.h>
#include <stdint.h>

/* Characters b64url_encode writes for n bytes (no terminator counted). */
#define B64URL_LEN(n) (((n) * 4 + 2) / 3)

/* Writes B64URL_LEN(n) characters and a NUL into out. */
void b64url_encode(const uint8_t *in, size_t n, char *out);

/* Decodes the canonical encoding only: no padding, no other characters,
 * no length of 1 mod 4, unused trailing bits zero (so every byte string has
 * exactly one accepted spelling). Returns the decoded length, or -1 when s
 * is not canonical or the result would not fit in cap. */
long b64url_decode(const char *s, size_t n, uint8_t *out, size_t cap);

#endif
