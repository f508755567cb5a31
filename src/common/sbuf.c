/* sbuf.c -- growable byte buffer and JSON string escaping. */
#include "sbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sbuf_init(sbuf *s)
{
    s->p = NULL;
    s->len = s->cap = 0;
    s->oom = 0;
}

void sbuf_free(sbuf *s)
{
    free(s->p);
    sbuf_init(s);
}

void sbuf_reset(sbuf *s)
{
    s->len = 0;
    s->oom = 0;
}

int sbuf_reserve(sbuf *s, size_t extra)
{
    if (s->oom) return -1;
    if (s->len + extra + 1 <= s->cap) return 0;
    size_t cap = s->cap ? s->cap : 128;
    while (cap < s->len + extra + 1) cap *= 2;
    char *p = realloc(s->p, cap);
    if (!p) {
        s->oom = 1;
        return -1;
    }
    s->p = p;
    s->cap = cap;
    return 0;
}

void sbuf_put(sbuf *s, const void *data, size_t n)
{
    if (sbuf_reserve(s, n) < 0) return;
    memcpy(s->p + s->len, data, n);
    s->len += n;
    s->p[s->len] = '\0';
}

void sbuf_puts(sbuf *s, const char *str)
{
    sbuf_put(s, str, strlen(str));
}

void sbuf_putc(sbuf *s, char c)
{
    sbuf_put(s, &c, 1);
}

void sbuf_u64(sbuf *s, uint64_t v)
{
    char tmp[24];
    int i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    sbuf_put(s, tmp + i, sizeof tmp - (size_t)i);
}

void sbuf_printf(sbuf *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || sbuf_reserve(s, (size_t)n) < 0) return;
    va_start(ap, fmt);
    vsnprintf(s->p + s->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    s->len += (size_t)n;
}

void sbuf_json_str(sbuf *s, const char *str, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    /* Worst case every byte becomes \u00XX. */
    if (sbuf_reserve(s, n * 6 + 2) < 0) return;
    char *o = s->p + s->len;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)str[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *o++ = (char)c;
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        default:
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o++ = '"';
    *o = '\0';
    s->len = (size_t)(o - s->p);
}
