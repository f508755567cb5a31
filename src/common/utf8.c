/* utf8.c -- incremental UTF-8 validation (RFC 3629) and counting. */
#include "utf8.h"

void utf8_init(utf8_state *s)
{
    s->cp = 0;
    s->need = 0;
    s->lo = 0x80;
    s->hi = 0xBF;
}

/* The second byte of E0, ED, F0 and F4 sequences has a narrower range: that
 * is what rules out overlong forms, surrogates and values above U+10FFFF. */
static int start_sequence(utf8_state *s, uint8_t b)
{
    s->lo = 0x80;
    s->hi = 0xBF;
    if (b < 0x80) {
        s->need = 0;
    } else if (b >= 0xC2 && b <= 0xDF) {
        s->need = 1;
        s->cp = b & 0x1F;
    } else if (b >= 0xE0 && b <= 0xEF) {
        s->need = 2;
        s->cp = b & 0x0F;
        if (b == 0xE0) s->lo = 0xA0;
        if (b == 0xED) s->hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        s->need = 3;
        s->cp = b & 0x07;
        if (b == 0xF0) s->lo = 0x90;
        if (b == 0xF4) s->hi = 0x8F;
    } else {
        return -1;
    }
    return 0;
}

int utf8_feed(utf8_state *s, const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (s->need == 0) {
            /* Fast path over ASCII runs, eight bytes at a time. */
            while (i + 8 <= n) {
                uint64_t w;
                __builtin_memcpy(&w, p + i, 8);
                if (w & 0x8080808080808080ULL) break;
                i += 8;
            }
            if (i >= n) break;
            if (start_sequence(s, p[i++]) < 0) return -1;
            continue;
        }
        uint8_t b = p[i++];
        if (b < s->lo || b > s->hi) return -1;
        s->cp = (s->cp << 6) | (b & 0x3F);
        s->lo = 0x80;
        s->hi = 0xBF;
        s->need--;
    }
    return 0;
}

int utf8_at_boundary(const utf8_state *s)
{
    return s->need == 0;
}

int utf8_valid(const uint8_t *p, size_t n)
{
    utf8_state s;
    utf8_init(&s);
    return utf8_feed(&s, p, n) == 0 && utf8_at_boundary(&s);
}

size_t utf8_sequence_len(const uint8_t *p, size_t n)
{
    utf8_state s;
    if (n == 0 || start_sequence(&s, p[0]) < 0) return 0;
    size_t len = (size_t)s.need + 1;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if (p[i] < s.lo || p[i] > s.hi) return 0;
        s.lo = 0x80;
        s.hi = 0xBF;
    }
    return len;
}

size_t utf8_count(const uint8_t *p, size_t n)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        if ((p[i] & 0xC0) != 0x80) count++;
    return count;
}

uint32_t utf8_decode(const uint8_t *p, size_t n, size_t *len)
{
    uint8_t b = p[0];
    size_t l = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    if (l > n) l = n;
    uint32_t cp = l == 1 ? b : l == 2 ? (b & 0x1F) : l == 3 ? (b & 0x0F) : (b & 0x07);
    for (size_t i = 1; i < l; i++) cp = (cp << 6) | (p[i] & 0x3F);
    *len = l;
    return cp;
}
