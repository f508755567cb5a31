/* out.h -- what the capture decoder reports, and the buffered
 * writer both views print through.
 *
 * Decoders describe what they saw as a cap_event; out.c prints it
 * as one JSON object per line (--json), text.c as the readable view.
 * The writer and its JSON string escaping are hand-written because the
 * --json path must keep up with pcap files read at hundreds of MB/s. */
#ifndef TAGARELA_CAPTURE_OUT_H
#define TAGARELA_CAPTURE_OUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum { CAP_COLOR_NEVER, CAP_COLOR_ALWAYS, CAP_COLOR_AUTO };

typedef struct cap_wbuf {
    char *buf;
    size_t len, cap;
    int fd;
    bool failed;                /* a write failed (EPIPE...): stop */
    bool borrowed;              /* buf is someone else's: never freed, left when it grows */
} cap_wbuf;

typedef struct cap_out {
    cap_wbuf w;                 /* stdout */
    bool json, hex, color;
    bool live;                  /* flush after every packet */
    uint64_t sec;               /* the last "ts" seconds written, and their digits */
    char sec_str[20];
    uint8_t sec_len;
} cap_out;

typedef enum cap_ev_type {
    CAP_EV_TCP_OPEN,
    CAP_EV_TCP_CLOSE,
    CAP_EV_HS_REQUEST,          /* an HTTP request with Upgrade: websocket */
    CAP_EV_HS_RESPONSE,         /* the response to it */
    CAP_EV_HTTP_REQUEST,        /* other HTTP: text view only */
    CAP_EV_HTTP_RESPONSE,
    CAP_EV_FRAME,
    CAP_EV_GAP,
    CAP_EV_TRUNCATED,
    CAP_EV_ERROR,
    CAP_EV_EVICT,
    CAP_EV_TLS,                 /* version and suite of a decrypted session: text view only */
} cap_ev_type;

typedef struct cap_event {
    cap_ev_type type;
    /* frames */
    bool fin, rsv1, masked;
    uint8_t opcode;
    uint64_t length;            /* from the header */
    const uint8_t *mask;
    const uint8_t *data;        /* payload shown: text or hex */
    size_t len;
    bool as_text;
    uint8_t msg_opcode;         /* the message's (fin data frames) */
    bool compressed;            /* inflated from wire_len bytes */
    size_t wire_len;
    int code;                   /* close: -1 = none */
    const uint8_t *reason;
    size_t reason_len;
    uint64_t elided;            /* payload bytes not kept */
    bool partial;               /* a gap took part of the message */
    const char *error;          /* frames and CAP_EV_ERROR */
    /* HTTP */
    const char *method, *path, *key, *extensions, *accept, *why;
    int status;
    int accept_ok;              /* -1: unknown (no key seen) */
    /* gaps */
    uint64_t missing;
} cap_event;

int cap_wbuf_init(cap_wbuf *w, int fd, size_t cap);
void cap_wbuf_free(cap_wbuf *w);
void cap_wbuf_flush(cap_wbuf *w);
void cap_wbuf_slow(cap_wbuf *w, size_t need);

/* Room for n more bytes (n <= w->cap). */
static inline char *cap_wbuf_room(cap_wbuf *w, size_t n)
{
    if (w->cap - w->len < n) cap_wbuf_slow(w, n);
    return w->buf + w->len;
}

void cap_put_slow(cap_wbuf *w, const void *p, size_t n);

/* Appends n bytes (any n: the buffer is flushed as often as needed). */
static inline void cap_put(cap_wbuf *w, const void *p, size_t n)
{
    if (w->cap - w->len >= n) {
        memcpy(w->buf + w->len, p, n);
        w->len += n;
    } else {
        cap_put_slow(w, p, n);
    }
}
static inline void cap_puts(cap_wbuf *w, const char *s, size_t n) { cap_put(w, s, n); }
#define CAP_PUTL(w, lit) cap_put((w), (lit), sizeof(lit) - 1)
void cap_put_u64(cap_wbuf *w, uint64_t v);
void cap_put_hex(cap_wbuf *w, const uint8_t *p, size_t n);

/* A JSON string's contents (no quotes): escapes what JSON requires and
 * replaces bytes that are not valid UTF-8 with U+FFFD, so the output is
 * always valid JSON whatever the capture holds. Returns false when it
 * replaced something. */
bool cap_put_json_str(cap_wbuf *w, const uint8_t *p, size_t n);

#endif
