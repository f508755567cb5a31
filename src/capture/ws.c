/* ws.c -- WebSocket frames of one direction, after the 101: headers
 * parsed and payloads unmasked with the server's own codec (ws_codec.h),
 * fragments joined, permessage-deflate messages inflated, close codes read,
 * and holes in the stream turned into gap events.
 *
 * A frame that arrives whole in one segment (the usual chat message) is
 * unmasked in a scratch buffer shared by all flows and printed at once.
 * Others are assembled in the direction's own buffers; the mask offset
 * carries from one segment to the next. */
#include "capture_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

/* What a frame is to the decoder. */
enum { K_DATA, K_CTRL, K_ALONE };

#define KEEP_BUF 65536          /* message buffers above this are released */

static int frame_kind(const cap_ws *w, uint8_t op)
{
    if (op == WS_OP_CLOSE || op == WS_OP_PING || op == WS_OP_PONG) return K_CTRL;
    if (op == WS_OP_TEXT || op == WS_OP_BINARY) return K_DATA;
    if (op == WS_OP_CONT && w->msg_opcode) return K_DATA;
    return K_ALONE;             /* unknown opcode, or a continuation of nothing */
}

/* ---- permessage-deflate ---- */

static const char *param_end(const char *s)
{
    while (*s && *s != ';' && *s != ',') s++;
    return s;
}

/* Reads the parameters of the permessage-deflate offer the server accepted:
 * the server_* ones apply to what the server sends, client_* to the rest. */
void cap_ws_negotiate(cap_ws *w, const char *ext, bool server_side)
{
    w->deflate = false;
    w->no_context = false;
    w->wbits = 15;
    if (!ext) return;
    const char *pfx = server_side ? "server_" : "client_";
    const char *s = ext;
    while (*s) {
        while (*s == ' ' || *s == '\t' || *s == ',') s++;
        const char *e = param_end(s);
        bool pmd = (size_t)(e - s) >= 18 && !strncasecmp(s, "permessage-deflate", 18);
        s = e;
        while (*s == ';') {
            s++;
            while (*s == ' ' || *s == '\t') s++;
            const char *pe = param_end(s);
            if (pmd && !strncasecmp(s, pfx, 7)) {
                if (!strncasecmp(s + 7, "no_context_takeover", 19)) w->no_context = true;
                else if (!strncasecmp(s + 7, "max_window_bits", 15)) {
                    const char *v = s + 22;
                    while (*v == ' ' || *v == '=' || *v == '"') v++;
                    int b = atoi(v);
                    if (b >= 8 && b <= 15) w->wbits = (uint8_t)b;
                }
            }
            s = pe;
        }
        if (pmd) {
            w->deflate = true;
            return;             /* the first accepted one is the one in use */
        }
        if (*s) s++;
    }
}

/* zlib allocates through the capture's memory budget, from the slab when
 * the size fits it. A 16-byte header keeps the size, and where the block
 * came from in its lowest bit. */
static void *z_alloc(void *opaque, unsigned items, unsigned size)
{
    cap_ctx *c = opaque;
    size_t n = (size_t)items * size + 16, tag = n << 1;
    uint8_t *p = cap_slab_alloc(&c->zslab, n);
    if (p) {
        cap_mem_charge(&c->mem, n);
        tag |= 1;
    } else if (!(p = cap_mem_alloc(&c->mem, n))) {
        return NULL;
    }
    memcpy(p, &tag, sizeof tag);
    return p + 16;
}

static void z_free(void *opaque, void *q)
{
    cap_ctx *c = opaque;
    size_t tag;
    uint8_t *p = (uint8_t *)q - 16;
    memcpy(&tag, p, sizeof tag);
    if (tag & 1) {
        cap_slab_free(&c->zslab, p, tag >> 1);
        c->mem.used -= tag >> 1;
    } else {
        cap_mem_free(&c->mem, p, tag >> 1);
    }
}

/* The window a direction may need: zlib's deflate never uses an 8-bit
 * window (it turns 8 into 9), so a peer that negotiated 8 may send 9-bit
 * distances. */
static int max_bits(const cap_ws *w) { return w->wbits < 9 ? 9 : w->wbits; }

/* Windows start at 1 KiB and grow with what the direction has sent (see
 * inflate_msg): most directions of a chat never send 32 KiB in all, and a
 * full window for each is most of a compressed capture's memory. Three
 * sizes only (1, 4 and 32 KiB): the slab reuses a freed block for one of
 * its own size, and each size more would leave its own free blocks behind
 * as directions grow past it (intermediate sizes measured: 20 MB more
 * resident on the benchmark's file, for 6 MB less in use). */
#define FIRST_WINDOW_BITS 10
#define MIDDLE_WINDOW_BITS 12

static z_stream *z_make(cap_ctx *c, int bits)
{
    z_stream *z = cap_mem_alloc(&c->mem, sizeof *z);
    if (!z) return NULL;
    memset(z, 0, sizeof *z);
    z->zalloc = z_alloc;
    z->zfree = z_free;
    z->opaque = c;
    if (inflateInit2(z, -bits) != Z_OK) {
        cap_mem_free(&c->mem, z, sizeof *z);
        return NULL;
    }
    return z;
}

static void z_close(cap_ctx *c, struct z_stream_s **zp)
{
    if (!*zp) return;
    inflateEnd((z_stream *)*zp);
    cap_mem_free(&c->mem, *zp, sizeof(z_stream));
    *zp = NULL;
}

static bool z_ready(cap_ctx *c, cap_ws *w)
{
    if (w->z) return true;
    int bits = max_bits(w) < FIRST_WINDOW_BITS ? max_bits(w) : FIRST_WINDOW_BITS;
    if (!(w->z = (struct z_stream_s *)z_make(c, bits))) return false;
    w->zbits = (uint8_t)bits;
    w->zhave = 0;
    return true;
}

/* Without context takeover nothing carries from one message to the next,
 * so all such directions of a thread share one stream: they cost no
 * memory of their own (a server that compresses so, as ours does, has one
 * in every connection). */
static z_stream *z_shared(cap_ctx *c, int bits)
{
    if (!c->zshared) {
        if (!(c->zshared = (struct z_stream_s *)z_make(c, bits))) return NULL;
        c->zshared_bits = (uint8_t)bits;
    } else if (c->zshared_bits != bits) {
        if (inflateReset2((z_stream *)c->zshared, -bits) != Z_OK) return NULL;
        c->zshared_bits = (uint8_t)bits;
    }
    return (z_stream *)c->zshared;
}

void cap_ws_ctx_free(cap_ctx *c) { z_close(c, &c->zshared); }

/* Makes room in c->inflated; false at the size limit. */
static bool grow_out(cap_ctx *c)
{
    cap_buf *b = &c->inflated;
    if (b->cap - b->len > 0) return true;
    if (b->cap >= c->opt.max_message) return false;
    size_t cap = b->cap ? b->cap * 2 : 16384;
    if (cap > c->opt.max_message) cap = c->opt.max_message;
    uint8_t *q = cap_mem_realloc(&c->mem, b->p, b->cap, cap);
    if (!q) return false;
    b->p = q;
    b->cap = cap;
    return true;
}

/* Past max_message, output is inflated into a throwaway buffer so that the
 * shared window stays right for the next messages; past this much more,
 * the message is given up (a decompression bomb). */
#define MAX_DISCARD (256ULL << 20)

/* One run of inflate over a message. */
typedef struct z_run_state {
    bool end;                   /* the sender closed the deflate stream (BFINAL) */
    bool cut;                   /* stopped at limit with the message unfinished */
    uint64_t dropped;           /* bytes beyond max_message */
    uint64_t limit;             /* output allowed in this run */
} z_run_state;

/* Inflates input into c->inflated. Returns NULL or what went wrong. */
static const char *z_run(cap_ctx *c, z_stream *z, const uint8_t *in, size_t n, z_run_state *r)
{
    uint8_t sink[16384];
    z->next_in = (Bytef *)in;
    z->avail_in = (uInt)n;
    while (!r->end) {
        cap_buf *b = &c->inflated;
        uint64_t left = r->limit - (b->len + r->dropped);
        if (left == 0) {
            r->cut = true;
            break;
        }
        bool discard = !grow_out(c);
        if (discard && r->dropped > MAX_DISCARD) return "inflated message far over the size limit";
        uInt room = discard ? (uInt)sizeof sink : (uInt)(b->cap - b->len);
        if (room > left) room = (uInt)left;
        z->next_out = discard ? sink : b->p + b->len;
        z->avail_out = room;
        int rc = inflate(z, Z_SYNC_FLUSH);
        if (discard) r->dropped += room - z->avail_out;
        else b->len += room - z->avail_out;
        if (rc == Z_STREAM_END) r->end = true;
        else if (rc == Z_BUF_ERROR) break;      /* no progress: input used up */
        else if (rc != Z_OK) return z->msg ? z->msg : "inflate failed";
        if (z->avail_in == 0 && z->avail_out > 0) break;
    }
    return NULL;
}

/* Inflates one message, with its RFC 7692 tail, in as few inflate() calls
 * as the output buffer allows. */
static const char *z_message(cap_ctx *c, z_stream *z, const uint8_t *p, size_t n,
                             z_run_state *r)
{
    static const uint8_t tail[4] = {0x00, 0x00, 0xFF, 0xFF};    /* RFC 7692 7.2.2 */
    uint8_t small[2048];
    if (n <= sizeof small - sizeof tail) {
        /* A chat message: one inflate() call for it and its tail. If the
         * sender ended the deflate stream, the tail is left unread. */
        memcpy(small, p, n);
        memcpy(small + n, tail, sizeof tail);
        return z_run(c, z, small, n + sizeof tail, r);
    }
    const char *err = z_run(c, z, p, n, r);
    if (!err && !r->end && !r->cut) err = z_run(c, z, tail, sizeof tail, r);
    return err;
}

/* The window is remade at the next size, the history (the first zhave
 * bytes of the old one) copied in. Every distance a valid stream can use
 * stays inside the window, since the window always holds all the
 * direction has sent, up to its size. */
static bool grow_window(cap_ws *w)
{
    z_stream *z = (z_stream *)w->z;
    int bits = w->zbits < MIDDLE_WINDOW_BITS && MIDDLE_WINDOW_BITS < max_bits(w)
                   ? MIDDLE_WINDOW_BITS : max_bits(w);
    uint8_t hist[1u << 15];
    uInt len = 0;
    if (inflateGetDictionary(z, hist, &len) != Z_OK || len < w->zhave) return false;
    if (inflateReset2(z, -bits) != Z_OK) return false;
    if (w->zhave && inflateSetDictionary(z, hist, w->zhave) != Z_OK) return false;
    w->zbits = (uint8_t)bits;
    return true;
}

/* Whether the window is nearly full of history: grown before the message
 * rather than after it failed to fit, which costs inflating it again, and
 * with room for zlib's fast loop (which wants 258 bytes of output space). */
static bool short_of_room(const cap_ws *w)
{
    uint32_t size = 1u << w->zbits, room = size - w->zhave;
    return room < size / 4 || room < 512;
}

static const char *inflate_msg(cap_ctx *c, cap_ws *w, const uint8_t *p, size_t n,
                               uint64_t *dropped)
{
    *dropped = 0;
    c->inflated.len = 0;
    if (w->z_lost) return "deflate context lost earlier (gap or error): not inflated";
    z_stream *z;
    if (w->no_context) {
        if (!(z = z_shared(c, max_bits(w)))) return "out of memory for inflate";
    } else {
        if (!z_ready(c, w)) return "out of memory for inflate";
        z = (z_stream *)w->z;
        if (w->zbits < max_bits(w) && short_of_room(w) && !grow_window(w)) {
            w->z_lost = true;   /* the window may be reset already */
            return "out of memory for inflate";
        }
    }
    z_run_state r;
    const char *err;
    for (;;) {
        bool full = w->no_context || w->zbits == max_bits(w);
        r = (z_run_state){.limit = full ? UINT64_MAX : ((uint64_t)1 << w->zbits) - w->zhave};
        err = z_message(c, z, p, n, &r);
        if (err || !r.cut) break;
        /* The message did not fit beside the history: inflated again
         * from its start in a larger window. */
        if (!grow_window(w)) {
            err = "out of memory for inflate";
            break;
        }
        c->inflated.len = 0;
    }
    *dropped = r.dropped;
    uint64_t out = c->inflated.len + r.dropped, cap = (uint64_t)1 << max_bits(w);
    w->zhave = (uint32_t)(w->zhave + out < cap ? w->zhave + out : cap);
    if (err && !w->no_context) w->z_lost = true;
    if (w->no_context || r.end || err) {
        inflateReset(z);
        w->zhave = 0;
    }
    return err;
}

/* Shared buffers that grew for one large message are not kept. */
static void shrink(cap_ctx *c, cap_buf *b)
{
    if (b->cap > (1u << 20)) cap_buf_free(c, b);
}

/* ---- emitting frames ---- */

static void count_frame(cap_ctx *c, uint8_t op) { c->st.frames[op & 15]++; }

/* Problems with a header that do not stop decoding. */
static const char *header_problem(const cap_flow *f, int dir, const ws_header *h, const cap_ws *w)
{
    if (h->rsv2 || h->rsv3) return "rsv2/rsv3 set";
    if (dir == 0 && !h->masked) return "client frame not masked";
    if (dir == 1 && h->masked) return "server frame masked";
    if (ws_is_control(h->opcode) && (!h->fin || h->len > WS_MAX_CONTROL))
        return "control frame fragmented or over 125 bytes";
    if (h->rsv1 && (ws_is_control(h->opcode) || h->opcode == WS_OP_CONT))
        return "rsv1 on a control or continuation frame";
    if (h->rsv1 && !w->deflate) return "rsv1 set without permessage-deflate";
    (void)f;
    return NULL;
}

static void emit_control(cap_ctx *c, cap_flow *f, int dir, const ws_header *h,
                         const uint8_t *p, size_t n, uint64_t elided, const char *err)
{
    cap_event ev = {.type = CAP_EV_FRAME, .fin = h->fin, .rsv1 = h->rsv1, .masked = h->masked,
                    .opcode = h->opcode, .length = h->len, .mask = h->mask, .data = p,
                    .len = n, .code = -1, .reason = p, .elided = elided, .error = err};
    if (h->opcode == WS_OP_CLOSE && n >= 2) {
        unsigned code;
        const uint8_t *reason;
        size_t rl;
        int bad = ws_close_parse(p, n, &code, &reason, &rl);
        ev.code = (int)((unsigned)p[0] << 8 | p[1]);
        ev.reason = p + 2;
        ev.reason_len = n - 2;
        if (bad && !err)
            ev.error = bad == WS_CLOSE_BAD_DATA ? "close reason not UTF-8" : "invalid close code";
    } else if (h->opcode == WS_OP_CLOSE && n == 1 && !err) {
        ev.error = "close payload of one byte";
    }
    if (!ws_is_control(h->opcode) && !err)
        ev.error = h->opcode == WS_OP_CONT ? "continuation frame without a message"
                                           : "unknown opcode";
    count_frame(c, h->opcode);
    cap_emit(c, f, dir, &ev);
}

/* A data frame that ends its message: the whole message, inflated. */
static void emit_message(cap_ctx *c, cap_flow *f, int dir, const ws_header *h,
                         const uint8_t *p, size_t n, uint64_t elided, const char *err)
{
    cap_ws *w = &f->d[dir].ws;
    uint8_t op = w->msg_opcode ? w->msg_opcode : h->opcode;
    bool rsv1 = w->msg_opcode ? w->msg_rsv1 : h->rsv1;
    cap_event ev = {.type = CAP_EV_FRAME, .fin = true, .rsv1 = h->rsv1, .masked = h->masked,
                    .opcode = h->opcode, .length = h->len, .mask = h->mask, .data = p,
                    .len = n, .as_text = op == WS_OP_TEXT, .msg_opcode = op,
                    .elided = elided, .error = err, .wire_len = n};
    if (rsv1 && w->deflate) {
        uint64_t dropped = 0;
        const char *zerr = elided ? "message over the size limit: not inflated"
                                  : inflate_msg(c, w, p, n, &dropped);
        if (elided && !w->no_context) w->z_lost = true;
        if (zerr) {
            ev.as_text = false;
            if (!ev.error) ev.error = zerr;
        } else {
            ev.data = c->inflated.p ? c->inflated.p : (const uint8_t *)"";
            ev.len = c->inflated.len;
            ev.compressed = true;
            c->st.inflated++;
            if (dropped) {
                ev.elided = dropped;
                if (!ev.error) ev.error = "inflated message over the size limit: cut";
            }
        }
    } else if (rsv1) {
        ev.as_text = false;     /* compressed bytes that cannot be inflated */
    }
    count_frame(c, h->opcode);
    c->st.messages++;
    cap_emit(c, f, dir, &ev);
    shrink(c, &c->inflated);
}

static void reset_message(cap_ctx *c, cap_ws *w)
{
    w->msg_opcode = 0;
    w->msg_rsv1 = w->msg_partial = false;
    w->msg_elided = 0;
    w->msg.len = 0;
    if (w->msg.cap > KEEP_BUF) cap_buf_free(c, &w->msg);
}

/* ---- frame assembly ---- */

static void begin_frame(cap_ctx *c, cap_ws *w, const ws_header *h)
{
    w->h = *h;
    w->in_frame = true;
    w->skip = false;
    w->remaining = h->len;
    w->offset = 0;
    w->frame_elided = 0;
    if (frame_kind(w, h->opcode) != K_DATA) {
        w->ctl.len = 0;
        return;
    }
    if (h->opcode != WS_OP_CONT) {
        /* A new message while one was in progress: the old one is lost
         * (the sender broke the protocol; its fragments were shown). */
        reset_message(c, w);
        w->msg_opcode = h->opcode;
        w->msg_rsv1 = h->rsv1;
    }
    w->frame_start = w->msg.len;
}

static void take_payload(cap_ctx *c, cap_ws *w, const uint8_t *p, size_t n)
{
    uint64_t off = w->offset;
    w->offset += n;
    w->remaining -= n;
    if (w->skip) return;
    cap_buf *b = frame_kind(w, w->h.opcode) == K_DATA ? &w->msg : &w->ctl;
    size_t room = c->opt.max_message > b->len ? c->opt.max_message - b->len : 0;
    size_t keep = n < room ? n : room;
    if (keep && cap_buf_append(c, b, p, keep)) keep = 0;
    w->frame_elided += n - keep;
    if (keep && w->h.masked) ws_unmask(b->p + b->len - keep, keep, w->h.mask, off);
}

static void end_frame(cap_ctx *c, cap_flow *f, int dir)
{
    cap_ws *w = &f->d[dir].ws;
    const ws_header *h = &w->h;
    int kind = frame_kind(w, h->opcode);
    const char *err = header_problem(f, dir, h, w);
    w->in_frame = false;
    if (kind != K_DATA) {
        if (!w->skip) emit_control(c, f, dir, h, w->ctl.p, w->ctl.len, w->frame_elided, err);
        w->ctl.len = 0;
        if (w->ctl.cap > KEEP_BUF) cap_buf_free(c, &w->ctl);
        return;
    }
    w->msg_elided += w->frame_elided;
    if (w->skip) {              /* replaced by a gap: nothing to show */
        if (h->fin) reset_message(c, w);
        return;
    }
    /* No buffer yet when every fragment so far was empty. */
    const uint8_t *msg = w->msg.p ? w->msg.p : (const uint8_t *)"";
    const uint8_t *own = msg + w->frame_start;
    size_t own_len = w->msg.len - w->frame_start;
    if (!h->fin || w->msg_partial) {
        cap_event ev = {.type = CAP_EV_FRAME, .fin = h->fin, .rsv1 = h->rsv1,
                        .masked = h->masked, .opcode = h->opcode, .length = h->len,
                        .mask = h->mask, .data = own, .len = own_len,
                        .elided = w->frame_elided, .partial = w->msg_partial, .error = err,
                        .msg_opcode = w->msg_opcode};
        count_frame(c, h->opcode);
        cap_emit(c, f, dir, &ev);
        if (h->fin) reset_message(c, w);
        return;
    }
    emit_message(c, f, dir, h, msg, w->msg.len,
                 w->msg_elided, err);
    reset_message(c, w);
}

/* The common case: a whole unfragmented frame inside one segment. */
static bool whole_frame(cap_ctx *c, cap_flow *f, int dir, const ws_header *h,
                        const uint8_t *p)
{
    cap_ws *w = &f->d[dir].ws;
    int kind = frame_kind(w, h->opcode);
    if (h->len > c->opt.max_message) return false;
    if (kind == K_DATA && (!h->fin || h->opcode == WS_OP_CONT)) return false;
    size_t n = (size_t)h->len;
    const uint8_t *data = n ? p : (const uint8_t *)"";
    cap_buf *s = &c->scratch;
    if (h->masked && n) {
        /* Unmasked in a copy: the packet buffer is read-only. */
        s->len = 0;
        if (cap_buf_append(c, s, p, n)) return false;
        ws_unmask(s->p, n, h->mask, 0);
        data = s->p;
    }
    const char *err = header_problem(f, dir, h, w);
    if (kind == K_DATA) {
        reset_message(c, w);    /* one in progress was abandoned */
        emit_message(c, f, dir, h, data, n, 0, err);
    } else {
        emit_control(c, f, dir, h, data, n, 0, err);
    }
    shrink(c, s);
    return true;
}

static void protocol_stop(cap_ctx *c, cap_flow *f, int dir, const char *why)
{
    cap_event ev = {.type = CAP_EV_ERROR, .error = why};
    cap_emit(c, f, dir, &ev);
    c->st.errors++;
    cap_dir_stop(c, f, dir);
}

void cap_ws_feed(cap_ctx *c, cap_flow *f, int dir, const uint8_t *p, size_t n)
{
    cap_dir *d = &f->d[dir];
    cap_ws *w = &d->ws;
    while (n > 0 && d->app == CAP_APP_WS) {
        if (!w->in_frame) {
            ws_header h;
            long used = ws_header_assemble(w->hdr, &w->hdr_len, p, n, &h);
            if (used == 0) return;
            if (used < 0) {
                protocol_stop(c, f, dir, "invalid frame header (64-bit length)");
                return;
            }
            p += used, n -= (size_t)used;
            if (h.len <= n && whole_frame(c, f, dir, &h, p)) {
                p += h.len, n -= (size_t)h.len;
                continue;
            }
            begin_frame(c, w, &h);
        }
        size_t k = w->remaining < n ? (size_t)w->remaining : n;
        take_payload(c, w, p, k);
        p += k, n -= k;
        if (w->remaining == 0) end_frame(c, f, dir);
    }
}

int cap_ws_gap(cap_ctx *c, cap_flow *f, int dir, uint64_t missing)
{
    cap_ws *w = &f->d[dir].ws;
    cap_event ev = {.type = CAP_EV_GAP, .missing = missing};
    cap_emit(c, f, dir, &ev);
    if (!w->in_frame || w->remaining < missing) {
        /* The next header was in the hole: no way to find the frames. */
        cap_dir_stop(c, f, dir);
        return 1;
    }
    w->skip = true;
    w->offset += missing;
    w->remaining -= missing;
    if (frame_kind(w, w->h.opcode) == K_DATA) {
        w->msg_partial = true;
        if (w->msg_rsv1 && w->deflate && !w->no_context) w->z_lost = true;
    }
    if (w->remaining == 0) end_frame(c, f, dir);
    return 0;
}

void cap_ws_free(cap_ctx *c, cap_ws *w)
{
    cap_buf_free(c, &w->msg);
    cap_buf_free(c, &w->ctl);
    z_close(c, &w->z);
}
