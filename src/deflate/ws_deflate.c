/* ws_deflate.c -- permessage-deflate (RFC 7692): the offer parser and the
 * answer, the per-message compressor, and the bounded inflater. */
#include "ws_deflate.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>


/* ---- the negotiation ------------------------------------------------------ */

/* A cursor over a header value (RFC 9110 lists of RFC 6455 9.1 extensions). */
typedef struct cur {
    const char *p, *end;
} cur;

static void ows(cur *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t')) c->p++;
}

static bool tchar(char ch)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
        return true;
    return ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static size_t token(cur *c, const char **start)
{
    *start = c->p;
    while (c->p < c->end && tchar(*c->p)) c->p++;
    return (size_t)(c->p - *start);
}

/* A parameter's value, a token or a quoted string, unescaped into
 * out[cap] (a longer one is cut: none this extension defines is long).
 * Returns its length, or -1 when malformed. */
static int param_value(cur *c, char *out, size_t cap)
{
    size_t k = 0;
    if (c->p < c->end && *c->p == '"') {
        c->p++;
        while (c->p < c->end && *c->p != '"') {
            if (*c->p == '\\' && ++c->p == c->end) return -1;
            if (k < cap) out[k] = *c->p;
            k++;
            c->p++;
        }
        if (c->p == c->end) return -1;
        c->p++;
    } else {
        const char *s;
        k = token(c, &s);
        if (k == 0) return -1;
        memcpy(out, s, k < cap ? k : cap);
    }
    return k > INT_MAX ? -1 : (int)k;
}

static bool word_is(const char *s, size_t n, const char *w)
{
    return strlen(w) == n && strncasecmp(s, w, n) == 0;
}

/* 8..15, written without a leading zero (RFC 7692 7.1.2). */
static int window_bits(const char *v, int n)
{
    if (n == 1 && v[0] >= '8' && v[0] <= '9') return v[0] - '0';
    if (n == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5') return 10 + v[1] - '0';
    return -1;
}

/* One offer's parameters as the client wrote them. */
typedef struct offer {
    bool server_nct, client_nct, server_bits_set, client_bits_set;
    int server_bits, client_bits;       /* 0: client_max_window_bits without value */
    bool bad;
} offer;

enum { P_SERVER_NCT, P_CLIENT_NCT, P_SERVER_BITS, P_CLIENT_BITS, P_COUNT };

static void offer_param(offer *o, unsigned *seen, const char *name, size_t nn,
                        const char *v, int vn)
{
    static const char *const names[P_COUNT] = {
        "server_no_context_takeover", "client_no_context_takeover",
        "server_max_window_bits", "client_max_window_bits",
    };
    int which = -1;
    for (int i = 0; i < P_COUNT; i++)
        if (word_is(name, nn, names[i])) which = i;
    if (which < 0 || (*seen & (1u << which))) {
        o->bad = true;          /* unknown or repeated */
        return;
    }
    *seen |= 1u << which;
    switch (which) {
    case P_SERVER_NCT:
        o->server_nct = true;
        o->bad |= vn >= 0;
        break;
    case P_CLIENT_NCT:
        o->client_nct = true;
        o->bad |= vn >= 0;
        break;
    case P_SERVER_BITS:
        o->server_bits_set = true;
        o->server_bits = vn < 0 ? -1 : window_bits(v, vn);
        o->bad |= o->server_bits < 0;
        break;
    default:
        o->client_bits_set = true;
        o->client_bits = vn < 0 ? 0 : window_bits(v, vn);
        o->bad |= o->client_bits < 0;
        break;
    }
}

/* Reads one extension of the list, up to its comma. Returns true when it
 * is a well-formed permessage-deflate offer (*o then holds it). */
static bool read_extension(cur *c, offer *o)
{
    const char *name;
    memset(o, 0, sizeof *o);
    ows(c);
    size_t nn = token(c, &name);
    bool ours = nn > 0 && word_is(name, nn, WS_PMD_TOKEN);
    bool ok = nn > 0;
    unsigned seen = 0;
    for (;;) {
        ows(c);
        if (c->p == c->end || *c->p == ',') break;
        if (*c->p != ';') {
            ok = false;
            break;
        }
        c->p++;
        ows(c);
        const char *pn;
        size_t pl = token(c, &pn);
        if (pl == 0) {
            ok = false;
            break;
        }
        ows(c);
        char v[16];
        int vn = -1;
        if (c->p < c->end && *c->p == '=') {
            c->p++;
            ows(c);
            if ((vn = param_value(c, v, sizeof v)) < 0) {
                ok = false;
                break;
            }
        }
        if (ours) offer_param(o, &seen, pn, pl, v, vn);
    }
    if (!ok) {
        /* Malformed: skip to the next element, quoted commas and all. */
        bool q = false;
        for (; c->p < c->end && (q || *c->p != ','); c->p++) {
            if (*c->p == '\\' && q && c->p + 1 < c->end) c->p++;
            else if (*c->p == '"') q = !q;
        }
    }
    if (c->p < c->end) c->p++;      /* the comma */
    return ok && ours && !o->bad;
}

static bool accept_offer(const offer *o, const ws_pmd_policy *pol, ws_pmd *out)
{
    memset(out, 0, sizeof *out);
    out->on = true;
    /* Every server window the client may ask for is honoured: each
     * message is compressed alone, so its matches never reach further
     * back than its own length, and a longer message goes uncompressed
     * to a client that asked for a small window (see the hub). */
    out->server_bits = o->server_bits_set ? (uint8_t)o->server_bits : 15;
    out->server_bits_answered = o->server_bits_set;
    out->client_no_context_takeover = o->client_nct || pol->client_no_context_takeover;
    out->client_bits = 15;
    if (o->client_bits_set) {
        int want = o->client_bits ? o->client_bits : 15;
        if (want > pol->client_bits) want = pol->client_bits;
        out->client_bits = (uint8_t)want;
        out->client_bits_answered = true;
    }
    return true;
}

bool ws_pmd_negotiate(const char *v, size_t n, const ws_pmd_policy *pol, ws_pmd *out)
{
    memset(out, 0, sizeof *out);
    cur c = { v, v + n };
    while (c.p < c.end) {
        offer o;
        if (read_extension(&c, &o) && accept_offer(&o, pol, out)) return true;
    }
    return false;
}

size_t ws_pmd_format(const ws_pmd *p, char out[WS_PMD_ANSWER_MAX])
{
    size_t k = (size_t)snprintf(out, WS_PMD_ANSWER_MAX, "%s; server_no_context_takeover", WS_PMD_TOKEN);
    if (p->client_no_context_takeover)
        k += (size_t)snprintf(out + k, WS_PMD_ANSWER_MAX - k, "; client_no_context_takeover");
    if (p->server_bits_answered)
        k += (size_t)snprintf(out + k, WS_PMD_ANSWER_MAX - k, "; server_max_window_bits=%u", p->server_bits);
    if (p->client_bits_answered)
        k += (size_t)snprintf(out + k, WS_PMD_ANSWER_MAX - k, "; client_max_window_bits=%u", p->client_bits);
    return k;
}

/* ---- compressing ---------------------------------------------------------- */

int ws_deflater_init(ws_deflater *d, int level)
{
    d->z = calloc(1, sizeof *d->z);
    if (!d->z) return -1;
    /* Raw deflate, a full window: matches stay within each message anyway. */
    if (deflateInit2(d->z, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(d->z);
        d->z = NULL;
        return -1;
    }
    return 0;
}

void ws_deflater_free(ws_deflater *d)
{
    if (!d->z) return;
    deflateEnd(d->z);
    free(d->z);
    d->z = NULL;
}

/* The frame is made with room for the longest header in front of the
 * payload: once the compressed length is known, the header is written
 * right before it and bytes points there. */
ws_frame *ws_frame_deflate(ws_deflater *d, uint8_t opcode, const void *payload, size_t n)
{
    if (!d->z || n > UINT_MAX / 2) return NULL;
    size_t room = deflateBound(d->z, (uLong)n) + 16;    /* + the sync flush's empty block */
    if (room > WS_FRAME_MAX - WS_MAX_HEADER) return NULL;
    ws_frame *f = malloc(sizeof *f + WS_MAX_HEADER + room);
    if (!f) return NULL;
    z_stream *z = d->z;
    deflateReset(z);
    z->next_in = (Bytef *)payload;
    z->avail_in = (uInt)n;
    z->next_out = f->data + WS_MAX_HEADER;
    z->avail_out = (uInt)room;
    int rc = deflate(z, Z_SYNC_FLUSH);
    size_t clen = room - z->avail_out;
    /* The flush ends with 00 00 ff ff, which the RFC leaves off the wire. */
    if (rc != Z_OK || z->avail_in || z->avail_out == 0 || clen < 4 || clen - 4 >= n) {
        free(f);
        return NULL;
    }
    clen -= 4;
    uint8_t hdr[WS_MAX_HEADER];
    size_t hl = ws_header_write(hdr, true, true, opcode, clen, NULL);
    ws_frame *small = realloc(f, sizeof *f + WS_MAX_HEADER + clen);
    if (small) f = small;
    memcpy(f->data + WS_MAX_HEADER - hl, hdr, hl);
    f->refs = 1;
    f->len = (uint32_t)(hl + clen);
    f->bytes = f->data + WS_MAX_HEADER - hl;
    f->twin = NULL;
    f->born = 0;
    f->twin_made = true;
    return f;
}

/* ---- inflating ------------------------------------------------------------ */

void ws_inflater_init(ws_inflater *f, uint8_t bits, bool keep)
{
    memset(f, 0, sizeof *f);
    /* zlib's deflate turns an 8-bit window into 9: inflate with 9 so that
     * a zlib client held to 8 is still read. A larger window reads any
     * smaller one's output. */
    f->bits = bits < 9 ? 9 : bits > 15 ? 15 : bits;
    f->keep = keep;
}

static int start(ws_inflater *f)
{
    if (f->z) return 0;
    f->z = calloc(1, sizeof *f->z);
    if (!f->z) return WS_CLOSE_INTERNAL;
    if (inflateInit2(f->z, -(int)f->bits) != Z_OK) {
        free(f->z);
        f->z = NULL;
        return WS_CLOSE_INTERNAL;
    }
    return 0;
}

static int grow(ws_inflate_out *o)
{
    size_t cap = o->cap ? o->cap * 2 : 256;
    if (cap > o->max + 1 || cap < o->cap) cap = o->max + 1;
    if (cap <= o->cap) return WS_CLOSE_TOO_BIG;
    uint8_t *p = realloc(o->p, cap);
    if (!p) return WS_CLOSE_INTERNAL;
    o->p = p;
    o->cap = cap;
    return 0;
}

/* Runs zlib over one piece of input (at most UINT_MAX bytes). Output it
 * still holds when the input is used up is drained too. */
static int run(ws_inflater *f, const uint8_t *in, size_t n, ws_inflate_out *o)
{
    z_stream *z = f->z;
    z->next_in = (Bytef *)in;
    z->avail_in = (uInt)n;
    for (;;) {
        if (o->len == o->cap) {
            int rc = grow(o);
            if (rc) return rc;
        }
        z->next_out = o->p + o->len;
        z->avail_out = (uInt)(o->cap - o->len);
        int zr = inflate(z, Z_SYNC_FLUSH);
        o->len = o->cap - z->avail_out;
        if (o->len > o->max) return WS_CLOSE_TOO_BIG;
        if (zr == Z_STREAM_END) {
            /* A final block (BFINAL): what follows it is ignored. */
            f->ended = true;
            return 0;
        }
        if (zr == Z_MEM_ERROR) return WS_CLOSE_INTERNAL;
        if (zr != Z_OK && zr != Z_BUF_ERROR) return WS_CLOSE_BAD_DATA;
        if (z->avail_out > 0) return 0;     /* all input used, all output out */
    }
}

/* The message is over: without context takeover, the state goes. */
static void end_message(ws_inflater *f)
{
    if (!f->z) return;
    if (f->keep && !f->ended) return;
    if (f->keep) {
        /* After a final block a new stream begins: zlib starts it empty. */
        inflateReset(f->z);
        f->ended = false;
        return;
    }
    inflateEnd(f->z);
    free(f->z);
    f->z = NULL;
    f->ended = false;
}

int ws_inflate(void *inflater, const uint8_t *in, size_t n, bool last, ws_inflate_out *out)
{
    static const uint8_t tail[4] = { 0x00, 0x00, 0xff, 0xff };
    ws_inflater *f = inflater;
    int rc = start(f);
    while (!rc && n && !f->ended) {
        size_t k = n > UINT_MAX ? UINT_MAX : n;
        rc = run(f, in, k, out);
        in += k;
        n -= k;
    }
    if (!rc && last && !f->ended) rc = run(f, tail, sizeof tail, out);
    if (last) end_message(f);
    return rc;
}

void ws_inflater_free(ws_inflater *f)
{
    if (f->z) {
        inflateEnd(f->z);
        free(f->z);
    }
    f->z = NULL;
    f->ended = false;
}
