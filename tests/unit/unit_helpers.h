/* unit_helpers.h -- small helpers shared by the cmocka unit tests.
 *
 * Include after the cmocka prerequisites (stdarg.h, stddef.h, stdint.h,
 * setjmp.h) and cmocka.h. Everything here is static: each test is one
 * translation unit. */
#ifndef TAGARELA_UNIT_HELPERS_H
#define TAGARELA_UNIT_HELPERS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A growable byte string, for building client byte streams. */
typedef struct bytes {
    uint8_t *p;
    size_t len, cap;
} bytes;

static inline void bytes_put(bytes *b, const void *data, size_t n)
{
    /* Compared as n > cap - len (len <= cap, so no wrap): with len + n > cap,
     * gcc -O3 (CMake's Release) sees that a wrapped len + n skips the
     * realloc and warns that memcpy may get an n near SIZE_MAX. */
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap - b->len < n) cap *= 2;
        b->p = realloc(b->p, cap);
        assert_non_null(b->p);
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
}

static inline void bytes_free(bytes *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* A writable copy (the reader unmasks in place). */
static inline uint8_t *bytes_dup(const bytes *b)
{
    uint8_t *p = malloc(b->len ? b->len : 1);
    assert_non_null(p);
    if (b->len) memcpy(p, b->p, b->len);
    return p;
}

#define F_FIN 0x80
#define F_RSV1 0x40
#define F_RSV2 0x20
#define F_RSV3 0x10

static const uint8_t test_mask[4] = { 0x37, 0xfa, 0x21, 0x3d };

/* Appends one frame, written by hand (independently of ws_header_write):
 * b0 is the first header byte (F_FIN | rsv bits | opcode). The payload is
 * masked with mask unless mask is NULL. Returns the frame's size. */
static inline size_t frame_append(bytes *b, uint8_t b0, const void *payload, uint64_t n,
                                  const uint8_t *mask)
{
    uint8_t h[14];
    size_t hl = 0;
    uint8_t m = mask ? 0x80 : 0;
    h[hl++] = b0;
    if (n < 126) {
        h[hl++] = (uint8_t)(m | n);
    } else if (n < 65536) {
        h[hl++] = m | 126;
        h[hl++] = (uint8_t)(n >> 8);
        h[hl++] = (uint8_t)n;
    } else {
        h[hl++] = m | 127;
        for (int s = 56; s >= 0; s -= 8) h[hl++] = (uint8_t)(n >> s);
    }
    if (mask) {
        memcpy(h + hl, mask, 4);
        hl += 4;
    }
    bytes_put(b, h, hl);
    size_t start = b->len;
    bytes_put(b, payload, (size_t)n);
    if (mask)
        for (size_t i = 0; i < n; i++) b->p[start + i] ^= mask[i & 3];
    return hl + (size_t)n;
}

/* A masked client frame with the default test mask. */
static inline size_t cframe(bytes *b, uint8_t b0, const void *payload, size_t n)
{
    return frame_append(b, b0, payload, n, test_mask);
}

static inline size_t cframe_str(bytes *b, uint8_t b0, const char *s)
{
    return cframe(b, b0, s, strlen(s));
}

#endif
