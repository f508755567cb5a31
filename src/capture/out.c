/* out.c -- the buffered writer, JSON string escaping and the
 * --json view: one object per line, keys in the order the contract lists.
 *
 * Output is hand-formatted into one large buffer that goes out with write(2)
 * when full (or after each packet of a live capture): no stdio, no jansson
 * on this path, because it runs once per frame of a multi-GB file. */
#include "capture_int.h"
#include "utf8.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

void cap_text_event(cap_ctx *c, cap_flow *f, int dir, const cap_event *ev);

int cap_wbuf_init(cap_wbuf *w, int fd, size_t cap)
{
    w->buf = malloc(cap);
    w->len = 0;
    w->cap = cap;
    w->fd = fd;
    w->failed = false;
    w->borrowed = false;
    return w->buf ? 0 : -1;
}

void cap_wbuf_free(cap_wbuf *w)
{
    cap_wbuf_flush(w);
    if (!w->borrowed) free(w->buf);
    w->buf = NULL;
}

void cap_wbuf_flush(cap_wbuf *w)
{
    if (w->fd < 0) return;      /* a memory buffer: its reader empties it */
    size_t off = 0;
    while (off < w->len && !w->failed) {
        ssize_t k = write(w->fd, w->buf + off, w->len - off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) w->failed = true;   /* EPIPE and friends: the reader left */
        else off += (size_t)k;
    }
    w->len = 0;
}

/* A memory buffer (fd < 0) grows to take n more bytes; false when it
 * cannot (it is then marked failed and what follows is dropped). */
static bool grow(cap_wbuf *w, size_t n)
{
    if (w->failed) return false;
    size_t cap = w->cap ? w->cap : 4096;
    while (cap - w->len < n) cap *= 2;
    char *b = w->borrowed ? malloc(cap) : realloc(w->buf, cap);
    if (!b) {
        w->failed = true;
        return false;
    }
    if (w->borrowed) memcpy(b, w->buf, w->len);
    w->borrowed = false;
    w->buf = b;
    w->cap = cap;
    return true;
}

/* Makes room: a file's buffer is written out, a memory buffer grows. */
void cap_wbuf_slow(cap_wbuf *w, size_t need)
{
    if (w->fd >= 0) cap_wbuf_flush(w);
    else if (!grow(w, need)) w->len = 0;    /* room for the caller, output lost */
}

void cap_put_slow(cap_wbuf *w, const void *p, size_t n)
{
    const char *s = p;
    if (w->fd < 0) {
        if (!grow(w, n)) return;
        memcpy(w->buf + w->len, s, n);
        w->len += n;
        return;
    }
    while (n > 0) {
        size_t room = w->cap - w->len;
        if (room == 0) {
            cap_wbuf_flush(w);
            room = w->cap;
        }
        size_t k = n < room ? n : room;
        memcpy(w->buf + w->len, s, k);
        w->len += k;
        s += k, n -= k;
    }
}

/* Two digits at a time: numbers are on every line of --json. */
static const char digit_pairs[] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

static size_t format_u64(char tmp[20], uint64_t v)
{
    int i = 20;
    while (v >= 100) {
        unsigned d = (unsigned)(v % 100) * 2;
        v /= 100;
        tmp[--i] = digit_pairs[d + 1];
        tmp[--i] = digit_pairs[d];
    }
    if (v >= 10) {
        tmp[--i] = digit_pairs[v * 2 + 1];
        tmp[--i] = digit_pairs[v * 2];
    } else {
        tmp[--i] = (char)('0' + v);
    }
    return (size_t)i;
}

void cap_put_u64(cap_wbuf *w, uint64_t v)
{
    char tmp[20];
    size_t i = format_u64(tmp, v);
    cap_put(w, tmp + i, 20 - i);
}

static const char hexd[] = "0123456789abcdef";

void cap_put_hex(cap_wbuf *w, const uint8_t *p, size_t n)
{
    while (n > 0) {
        size_t k = (w->cap - w->len) / 2;
        if (k == 0) {
            cap_wbuf_slow(w, 2 * (n < 65536 ? n : 65536));
            continue;
        }
        if (k > n) k = n;
        char *o = w->buf + w->len;
        for (size_t i = 0; i < k; i++) {
            o[2 * i] = hexd[p[i] >> 4];
            o[2 * i + 1] = hexd[p[i] & 15];
        }
        w->len += 2 * k;
        p += k, n -= k;
    }
}

/* Nonzero when one of the 8 bytes needs attention: < 0x20, '"', '\\' or
 * >= 0x80. Exact as a yes/no answer and for the lowest byte it flags (a
 * borrow only ever flags bytes above a flagged one). */
static inline uint64_t word_special(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
    return (((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b) | x) & high;
}

#ifdef __SSE2__
/* Copies 16 bytes from p to o and returns how many come before the first
 * byte that needs escaping or checking (16: none). Signed, bytes >= 0x80
 * are below 0x20 too. */
static inline size_t special16(const uint8_t *p, char *o)
{
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i sp = _mm_or_si128(_mm_cmplt_epi8(v, _mm_set1_epi8(0x20)),
                              _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
                                           _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))));
    unsigned m = (unsigned)_mm_movemask_epi8(sp);
    _mm_storeu_si128((__m128i *)(void *)o, v);
    return m ? (size_t)__builtin_ctz(m) : 16;
}
#endif

/* Escapes a control character, or copies a valid UTF-8 sequence (U+FFFD
 * for an invalid one); returns input bytes consumed. Quotes and
 * backslashes are escaped inline by the caller. */
static size_t escape_one(char **po, const uint8_t *p, size_t n, bool *clean)
{
    char *o = *po;
    uint8_t ch = p[0];
    size_t used = 1;
    if (ch >= 0x80) {
        size_t k = utf8_sequence_len(p, n);
        if (k) {
            memcpy(o, p, k);
            *po = o + k;
            return k;
        }
        memcpy(o, "\\ufffd", 6);
        *po = o + 6;
        *clean = false;
        return used;
    }
    const char *two = NULL;
    switch (ch) {
    case '\n': two = "\\n"; break;
    case '\r': two = "\\r"; break;
    case '\t': two = "\\t"; break;
    case '\b': two = "\\b"; break;
    case '\f': two = "\\f"; break;
    }
    if (two) {
        memcpy(o, two, 2);
        *po = o + 2;
    } else {
        memcpy(o, "\\u00", 4);
        o[4] = hexd[ch >> 4];
        o[5] = hexd[ch & 15];
        *po = o + 6;
    }
    return used;
}

bool cap_put_json_str(cap_wbuf *w, const uint8_t *p, size_t n)
{
    bool clean = true;
    while (n > 0) {
        /* Every input byte becomes at most 6 output bytes. */
        size_t free_bytes = w->cap - w->len;
        size_t room = free_bytes > 16 ? (free_bytes - 8) / 6 : 0;
        if (room < 8) {
            cap_wbuf_slow(w, 64 + 6 * (n < 65536 ? n : 65536));   /* room >= 8 */
            continue;
        }
        size_t chunk = n < room ? n : room;
        const uint8_t *end = p + chunk;
        char *o = w->buf + w->len;
        while (p < end) {
#ifdef __SSE2__
            if (end - p >= 16) {
                size_t k = special16(p, o);
                o += k, p += k;
                if (k == 16) continue;
            } else
#endif
            if (end - p >= 8) {
                uint64_t x;
                memcpy(&x, p, 8);
                uint64_t sp = word_special(x);
                /* Copy all 8, keep those before the first special byte:
                 * the lowest flag of word_special() is always exact. */
                memcpy(o, p, 8);
                if (!sp) {
                    o += 8, p += 8;
                    continue;
                }
#if defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
                size_t k = (size_t)__builtin_ctzll(sp) / 8;
                o += k, p += k;
#endif
            }
            uint8_t ch = *p;
            if (ch >= 0x20 && ch != '"' && ch != '\\' && ch < 0x80) {
                *o++ = (char)ch;
                p++;
            } else if (ch == '"' || ch == '\\') {
                /* JSON inside JSON: the common escape, kept inline. */
                o[0] = '\\';
                o[1] = (char)ch;
                o += 2, p++;
            } else {
                /* A sequence is validated against all that is left, so one
                 * split by the chunk border is still seen whole. */
                p += escape_one(&o, p, (size_t)(end - p) + (n - chunk), &clean);
            }
        }
        size_t used = chunk + (size_t)(p - end);
        w->len = (size_t)(o - w->buf);
        n -= used;
    }
    return clean;
}

/* ---- the --json view ---- */

/* {"event":"...","ts":...,"src":"...","dst":"..." -- the keys every object
 * has, the event first as the contract writes them. */
static void put_head(cap_ctx *c, cap_flow *f, int dir, const char *event, size_t elen)
{
    cap_wbuf *w = &c->out.w;
    CAP_PUTL(w, "{\"event\":\"");
    cap_put(w, event, elen);
    CAP_PUTL(w, "\",\"ts\":");
    /* Packets come many to a second: its digits are kept. */
    cap_out *out = &c->out;
    if (!out->sec_len || out->sec != (uint64_t)c->now_sec) {
        out->sec = (uint64_t)c->now_sec;
        char tmp[20];
        size_t i = format_u64(tmp, out->sec);
        out->sec_len = (uint8_t)(20 - i);
        memcpy(out->sec_str, tmp + i, out->sec_len);
    }
    cap_put(w, out->sec_str, out->sec_len);
    char frac[7];
    uint32_t u = c->now_usec;
    for (int i = 6; i >= 1; i--) {
        frac[i] = (char)('0' + u % 10);
        u /= 10;
    }
    frac[0] = '.';
    cap_put(w, frac, 7);
    CAP_PUTL(w, ",\"src\":\"");
    cap_put(w, f->addr[dir], f->addr_len[dir]);
    CAP_PUTL(w, "\",\"dst\":\"");
    cap_put(w, f->addr[!dir], f->addr_len[!dir]);
    cap_put(w, "\"", 1);
}

static void put_key_str(cap_wbuf *w, const char *key, size_t klen, const char *v)
{
    cap_put(w, key, klen);
    if (!v) {
        CAP_PUTL(w, "null");
        return;
    }
    cap_put(w, "\"", 1);
    cap_put_json_str(w, (const uint8_t *)v, strlen(v));
    cap_put(w, "\"", 1);
}
#define PUT_KEY_STR(w, lit, v) put_key_str((w), (lit), sizeof(lit) - 1, (v))

static void put_bool(cap_wbuf *w, bool b)
{
    if (b) CAP_PUTL(w, "true");
    else CAP_PUTL(w, "false");
}

static const char *const opnames[16] = {
    "continuation", "text", "binary", "3", "4", "5", "6", "7",
    "close", "ping", "pong", "11", "12", "13", "14", "15",
};

static void json_frame(cap_ctx *c, const cap_event *e)
{
    cap_wbuf *w = &c->out.w;
    CAP_PUTL(w, ",\"fin\":");
    put_bool(w, e->fin);
    CAP_PUTL(w, ",\"rsv1\":");
    put_bool(w, e->rsv1);
    CAP_PUTL(w, ",\"opcode\":\"");
    cap_put(w, opnames[e->opcode & 15], strlen(opnames[e->opcode & 15]));
    CAP_PUTL(w, "\",\"masked\":");
    put_bool(w, e->masked);
    CAP_PUTL(w, ",\"length\":");
    cap_put_u64(w, e->length);
    bool clean = true;
    if (e->as_text) {
        CAP_PUTL(w, ",\"text\":\"");
        clean = cap_put_json_str(w, e->data, e->len);
    } else {
        CAP_PUTL(w, ",\"hex\":\"");
        cap_put_hex(w, e->data, e->len);
    }
    cap_put(w, "\"", 1);
    if (e->opcode == WS_OP_CLOSE) {
        CAP_PUTL(w, ",\"code\":");
        if (e->code < 0) CAP_PUTL(w, "null");
        else cap_put_u64(w, (uint64_t)e->code);
        CAP_PUTL(w, ",\"reason\":\"");
        if (!cap_put_json_str(w, e->reason, e->reason_len)) clean = false;
        cap_put(w, "\"", 1);
    }
    if (e->compressed) CAP_PUTL(w, ",\"compressed\":true");
    if (e->partial) CAP_PUTL(w, ",\"partial\":true");
    if (e->elided) {
        CAP_PUTL(w, ",\"elided\":");
        cap_put_u64(w, e->elided);
    }
    const char *err = e->error ? e->error : clean ? NULL : "invalid UTF-8";
    if (err) PUT_KEY_STR(w, ",\"error\":", err);
}

static void json_event(cap_ctx *c, cap_flow *f, int dir, const cap_event *e)
{
    cap_wbuf *w = &c->out.w;
    switch (e->type) {
    case CAP_EV_FRAME:
        put_head(c, f, dir, "frame", 5);
        json_frame(c, e);
        break;
    case CAP_EV_TCP_OPEN:
        put_head(c, f, dir, "tcp_open", 8);
        break;
    case CAP_EV_TCP_CLOSE:
        put_head(c, f, dir, "tcp_close", 9);
        PUT_KEY_STR(w, ",\"reason\":", e->why);
        break;
    case CAP_EV_HS_REQUEST:
        put_head(c, f, dir, "handshake_request", 17);
        PUT_KEY_STR(w, ",\"path\":", e->path);
        PUT_KEY_STR(w, ",\"key\":", e->key);
        PUT_KEY_STR(w, ",\"extensions\":", e->extensions);
        break;
    case CAP_EV_HS_RESPONSE:
        put_head(c, f, dir, "handshake_response", 18);
        CAP_PUTL(w, ",\"status\":");
        cap_put_u64(w, (uint64_t)e->status);
        PUT_KEY_STR(w, ",\"accept\":", e->accept);
        PUT_KEY_STR(w, ",\"extensions\":", e->extensions);
        CAP_PUTL(w, ",\"accept_ok\":");
        if (e->accept_ok < 0) CAP_PUTL(w, "null");
        else put_bool(w, e->accept_ok);
        break;
    case CAP_EV_GAP:
        put_head(c, f, dir, "gap", 3);
        CAP_PUTL(w, ",\"missing\":");
        cap_put_u64(w, e->missing);
        break;
    case CAP_EV_TRUNCATED:
        put_head(c, f, dir, "truncated", 9);
        break;
    case CAP_EV_ERROR:
        put_head(c, f, dir, "error", 5);
        PUT_KEY_STR(w, ",\"error\":", e->error);
        break;
    case CAP_EV_EVICT:
        put_head(c, f, dir, "tcp_evict", 9);
        PUT_KEY_STR(w, ",\"reason\":", e->why);
        break;
    case CAP_EV_HTTP_REQUEST:
    case CAP_EV_HTTP_RESPONSE:
    case CAP_EV_TLS:
        return;                 /* not part of the JSON contract */
    }
    if (f->is_tls) CAP_PUTL(w, ",\"tls\":true");
    CAP_PUTL(w, "}\n");
}

void cap_emit(cap_ctx *c, cap_flow *f, int dir, const cap_event *ev)
{
    if (f->show == CAP_SHOW_PENDING) {
        /* On other ports, a flow is shown only once it turns out to be
         * HTTP (or TLS with a key log); on the server port, as soon as it
         * says something. */
        if (!f->on_server_port) return;
        cap_flow_show(c, f);
    }
    if (f->show == CAP_SHOW_NO) return;
    if (c->out.json) json_event(c, f, dir, ev);
    else cap_text_event(c, f, dir, ev);
}
