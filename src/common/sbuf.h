/* sbuf.h -- a growable byte buffer for building outgoing text (JSON, HTTP). */
#ifndef TAGARELA_SBUF_H
#define TAGARELA_SBUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;            /* set once an allocation failed; later writes are dropped */
} sbuf;

void sbuf_init(sbuf *s);
void sbuf_free(sbuf *s);
void sbuf_reset(sbuf *s);               /* len = 0, keeps the memory */
int sbuf_reserve(sbuf *s, size_t extra);
void sbuf_put(sbuf *s, const void *data, size_t n);
void sbuf_puts(sbuf *s, const char *str);
void sbuf_putc(sbuf *s, char c);
void sbuf_u64(sbuf *s, uint64_t v);
void sbuf_printf(sbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends a JSON string literal (quotes included) of UTF-8 text. */
void sbuf_json_str(sbuf *s, const char *str, size_t n);

#endif
