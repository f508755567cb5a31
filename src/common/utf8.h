/* utf8.h -- incremental UTF-8 validation and code point counting.
 *
 * The validator keeps its state between calls so that a text message split
 * over several WebSocket fragments (or TCP reads) is checked as it arrives,
 * and fails at the first byte that can never be part of valid UTF-8. */
#ifndef TAGARELA_UTF8_H
#define TAGARELA_UTF8_H

#include <stddef.h>
#include <stdint.h>

typedef struct utf8_state {
    uint32_t cp;      /* code point being assembled */
    uint8_t need;     /* continuation bytes still expected */
    uint8_t lo, hi;   /* allowed range of the next continuation byte */
} utf8_state;

void utf8_init(utf8_state *s);

/* Feeds bytes. Returns 0 while the input can still be valid, -1 as soon as
 * it cannot (overlong forms, surrogates, code points above U+10FFFF, stray
 * continuation bytes, 0xC0/0xC1/0xF5..0xFF). */
int utf8_feed(utf8_state *s, const uint8_t *p, size_t n);

/* True when no multi-byte sequence is left open. */
int utf8_at_boundary(const utf8_state *s);

/* Whole-buffer check: 1 if valid and complete. */
int utf8_valid(const uint8_t *p, size_t n);

/* Number of code points in valid UTF-8. */
size_t utf8_count(const uint8_t *p, size_t n);

/* Length of the valid sequence that starts at p (1 for ASCII), or 0 when
 * the bytes there are not valid UTF-8 or the sequence is cut short by n. */
size_t utf8_sequence_len(const uint8_t *p, size_t n);

/* Decodes the code point at p (valid UTF-8, n > 0); stores its byte length. */
uint32_t utf8_decode(const uint8_t *p, size_t n, size_t *len);

#endif
