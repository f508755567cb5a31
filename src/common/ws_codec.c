/* ws_codec.c -- RFC 6455 framing, close rules, the handshake key check, and
 * the inbound message reader. Pure functions and caller-owned state only,
 * on libc alone (the accept value's SHA-1 is in ws_accept.c). */
#include "ws_codec.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int ws_header_parse(const uint8_t *buf, size_t n, ws_header *h)
{
    if (n < 2) return 0;
    h->fin = buf[0] & 0x80;
    h->rsv1 = buf[0] & 0x40;
    h->rsv2 = buf[0] & 0x20;
    h->rsv3 = buf[0] & 0x10;
    h->opcode = buf[0] & 0x0F;
    h->masked = buf[1] & 0x80;
    uint64_t len = buf[1] & 0x7F;
    size_t size = 2;
    if (len == 126) {
        if (n < 4) return 0;
        len = ((uint64_t)buf[2] << 8) | buf[3];
        size = 4;
    } else if (len == 127) {
        if (n < 10) return 0;
        len = 0;
        for (int i = 0; i < 8; i++) len = (len << 8) | buf[2 + i];
        size = 10;
        if (len >> 63) return -1;
    }
    if (h->masked) {
        if (n < size + 4) return 0;
        memcpy(h->mask, buf + size, 4);
        size += 4;
    }
    h->len = len;
    h->size = (uint8_t)size;
    return (int)size;
}

int ws_header_check(const ws_header *h, bool in_message, bool allow_rsv1)
{
    if (!h->masked) return WS_CLOSE_PROTOCOL;
    if (h->rsv2 || h->rsv3 || (h->rsv1 && !allow_rsv1)) return WS_CLOSE_PROTOCOL;
    switch (h->opcode) {
    case WS_OP_CONT:
        if (!in_message || h->rsv1) return WS_CLOSE_PROTOCOL;
        return 0;
    case WS_OP_TEXT:
    case WS_OP_BINARY:
        return in_message ? WS_CLOSE_PROTOCOL : 0;
    case WS_OP_CLOSE:
    case WS_OP_PING:
    case WS_OP_PONG:
        if (!h->fin || h->len > WS_MAX_CONTROL || h->rsv1) return WS_CLOSE_PROTOCOL;
        return 0;
    default:
        return WS_CLOSE_PROTOCOL;
    }
}

size_t ws_header_write(uint8_t *out, bool fin, bool rsv1, uint8_t opcode,
                       uint64_t len, const uint8_t *mask)
{
    size_t i = 0;
    out[i++] = (uint8_t)((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | (opcode & 0x0F));
    uint8_t m = mask ? 0x80 : 0;
    if (len < 126) {
        out[i++] = m | (uint8_t)len;
    } else if (len <= 0xFFFF) {
        out[i++] = m | 126;
        out[i++] = (uint8_t)(len >> 8);
        out[i++] = (uint8_t)len;
    } else {
        out[i++] = m | 127;
        for (int s = 56; s >= 0; s -= 8) out[i++] = (uint8_t)(len >> s);
    }
    if (mask) {
        memcpy(out + i, mask, 4);
        i += 4;
    }
    return i;
}

void ws_unmask(uint8_t *data, size_t n, const uint8_t mask[4], uint64_t offset)
{
    uint8_t m[8];
    for (int i = 0; i < 8; i++) m[i] = mask[(offset + i) & 3];
    uint64_t w8;
    memcpy(&w8, m, 8);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, data + i, 8);
        v ^= w8;
        memcpy(data + i, &v, 8);
    }
    for (; i < n; i++) data[i] ^= m[i & 7];
}

bool ws_close_code_valid(unsigned code)
{
    /* 1004-1006 and 1015 are reserved and never sent; 1012-1014 are
     * registered with IANA (restart, try again later, bad gateway). */
    if (code >= 1000 && code <= 1014)
        return code != 1004 && code != 1005 && code != 1006;
    return code >= 3000 && code <= 4999;
}

int ws_close_parse(const uint8_t *p, size_t n, unsigned *code,
                   const uint8_t **reason, size_t *reason_len)
{
    *reason = p;
    *reason_len = 0;
    if (n == 0) {
        *code = WS_CLOSE_NO_STATUS;
        return 0;
    }
    if (n == 1) return WS_CLOSE_PROTOCOL;
    *code = ((unsigned)p[0] << 8) | p[1];
    if (!ws_close_code_valid(*code)) return WS_CLOSE_PROTOCOL;
    if (!utf8_valid(p + 2, n - 2)) return WS_CLOSE_BAD_DATA;
    *reason = p + 2;
    *reason_len = n - 2;
    return 0;
}

static int b64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '+' || c == '/';
}

bool ws_key_valid(const char *key, size_t n)
{
    /* 16 bytes encode to 22 characters and two '=' of padding. */
    if (n != 24 || key[22] != '=' || key[23] != '=') return false;
    for (size_t i = 0; i < 22; i++)
        if (!b64_char(key[i])) return false;
    return true;
}

ws_frame *ws_frame_new(uint8_t opcode, const void *payload, size_t n)
{
    uint8_t hdr[WS_MAX_HEADER];
    if (n > WS_FRAME_MAX - WS_MAX_HEADER) return NULL;
    size_t hl = ws_header_write(hdr, true, false, opcode, n, NULL);
    ws_frame *f = malloc(sizeof *f + hl + n);
    if (!f) return NULL;
    f->refs = 1;
    f->born = 0;
    f->len = (uint32_t)(hl + n);
    f->bytes = f->data;
    f->twin = NULL;
    f->twin_made = false;
    memcpy(f->data, hdr, hl);
    if (n) memcpy(f->data + hl, payload, n);
    return f;
}

ws_frame *ws_frame_close(unsigned code, const char *reason)
{
    uint8_t p[WS_MAX_CONTROL];
    size_t rl = reason ? strlen(reason) : 0;
    if (rl > WS_MAX_CONTROL - 2) {
        /* Cut on a character boundary: a split UTF-8 sequence would make
         * the peer fail the connection with 1007 (RFC 6455 5.5.1). */
        rl = WS_MAX_CONTROL - 2;
        while (rl > 0 && ((uint8_t)reason[rl] & 0xC0) == 0x80) rl--;
    }
    p[0] = (uint8_t)(code >> 8);
    p[1] = (uint8_t)code;
    if (rl) memcpy(p + 2, reason, rl);
    return ws_frame_new(WS_OP_CLOSE, p, 2 + rl);
}

ws_frame *ws_frame_raw(const void *data, size_t n)
{
    if (n > WS_FRAME_MAX) return NULL;
    ws_frame *f = malloc(sizeof *f + n);
    if (!f) return NULL;
    f->refs = 1;
    f->born = 0;
    f->len = (uint32_t)n;
    f->bytes = f->data;
    f->twin = NULL;
    f->twin_made = true;        /* raw bytes are never compressed */
    memcpy(f->data, data, n);
    return f;
}

ws_frame *ws_frame_borrow(const void *data, size_t n)
{
    if (n > WS_FRAME_MAX) return NULL;
    ws_frame *f = malloc(sizeof *f);
    if (!f) return NULL;
    f->refs = 1;
    f->born = 0;
    f->len = (uint32_t)n;
    f->bytes = data;
    f->twin = NULL;
    f->twin_made = true;
    return f;
}

/* One way to let go of a frame, so the twin is never forgotten. */
uint64_t ws_frame_unref_born(ws_frame *f)
{
    if (!f) return 0;
    uint64_t born = f->born;
    if (__atomic_sub_fetch(&f->refs, 1, __ATOMIC_ACQ_REL) != 0) return 0;
    ws_frame_unref_born(f->twin);
    free(f);
    return born;
}

void ws_frame_unref(ws_frame *f)
{
    ws_frame_unref_born(f);
}

void ws_reader_init(ws_reader *r, uint64_t max_message)
{
    memset(r, 0, sizeof *r);
    r->max_message = max_message;
    utf8_init(&r->utf8);
}

void ws_reader_free(ws_reader *r)
{
    free(r->msg);
    free(r->ctl);
    r->msg = r->ctl = NULL;
    r->msg_len = r->msg_cap = 0;
    r->ctl_len = 0;
}

void ws_reader_set_inflate(ws_reader *r, ws_inflate_fn fn, void *inflater)
{
    r->inflate = fn;
    r->inflater = inflater;
}

/* Compressed bytes a message may take: a little more than the limit, as
 * incompressible data grows a little when deflated. */
static uint64_t wire_max(const ws_reader *r)
{
    uint64_t slack = r->max_message / 64 + 64;
    return r->max_message > UINT64_MAX - slack ? UINT64_MAX : r->max_message + slack;
}

static int begin_frame(ws_reader *r, const ws_header *h)
{
    int err = ws_header_check(h, r->msg_opcode != 0, r->inflate != NULL);
    if (err) return err;
    if (!ws_is_control(h->opcode)) {
        if (h->opcode != WS_OP_CONT) {
            r->msg_opcode = h->opcode;
            r->compressed = h->rsv1;
            r->wire_len = 0;
            utf8_init(&r->utf8);
        }
        if (r->compressed ? h->len > wire_max(r) - r->wire_len
                          : h->len > r->max_message - r->msg_len)
            return WS_CLOSE_TOO_BIG;
    }
    r->opcode = h->opcode;
    r->fin = h->fin;
    memcpy(r->mask, h->mask, 4);
    r->remaining = h->len;
    r->offset = 0;
    r->in_frame = true;
    return 0;
}

/* Inflates a piece of a compressed message onto r->msg (the limit is the
 * inflated size), checking text as it comes out. */
static int inflate_piece(ws_reader *r, const uint8_t *p, size_t k, bool last)
{
    ws_inflate_out o = { r->msg, r->msg_len, r->msg_cap,
                         r->max_message >= SIZE_MAX ? SIZE_MAX - 1 : (size_t)r->max_message };
    size_t before = o.len;
    int rc = r->inflate(r->inflater, p, k, last, &o);
    r->msg = o.p;
    r->msg_len = o.len;
    r->msg_cap = o.cap;
    if (rc) return rc;
    if (o.len > before && r->msg_opcode == WS_OP_TEXT &&
        utf8_feed(&r->utf8, r->msg + before, o.len - before) < 0)
        return WS_CLOSE_BAD_DATA;
    return 0;
}

static int append_message(ws_reader *r, const uint8_t *p, size_t k)
{
    if (r->msg_len + k > r->msg_cap) {
        size_t cap = r->msg_cap ? r->msg_cap * 2 : 256;
        while (cap < r->msg_len + k) cap *= 2;
        uint8_t *m = realloc(r->msg, cap);
        if (!m) return WS_CLOSE_INTERNAL;
        r->msg = m;
        r->msg_cap = cap;
    }
    memcpy(r->msg + r->msg_len, p, k);
    r->msg_len += k;
    return 0;
}

static int take_payload(ws_reader *r, uint8_t *p, size_t k)
{
    ws_unmask(p, k, r->mask, r->offset);
    r->offset += k;
    r->remaining -= k;
    if (ws_is_control(r->opcode)) {
        if (!r->ctl && !(r->ctl = malloc(WS_MAX_CONTROL))) return WS_CLOSE_INTERNAL;
        memcpy(r->ctl + r->ctl_len, p, k);
        r->ctl_len += (uint8_t)k;
        return 0;
    }
    if (r->compressed) {
        r->wire_len += k;
        return inflate_piece(r, p, k, false);
    }
    if (r->msg_opcode == WS_OP_TEXT && utf8_feed(&r->utf8, p, k) < 0)
        return WS_CLOSE_BAD_DATA;
    return append_message(r, p, k);
}

/* Hands a finished control frame or data message to the callbacks. Returns
 * 0, WS_READER_STOP or a close code. */
static int deliver(uint8_t opcode, uint8_t *p, size_t k,
                   const ws_reader_cb *cb, void *ud)
{
    if (opcode == WS_OP_CLOSE) {
        unsigned code;
        const uint8_t *reason;
        size_t rl;
        int err = ws_close_parse(p, k, &code, &reason, &rl);
        if (err) return err;
    }
    int stop = ws_is_control(opcode) ? cb->control(ud, opcode, p, k)
                                     : cb->message(ud, opcode, p, k);
    return stop ? WS_READER_STOP : 0;
}

static int end_message(ws_reader *r, const ws_reader_cb *cb, void *ud);

static int end_frame(ws_reader *r, const ws_reader_cb *cb, void *ud)
{
    r->in_frame = false;
    if (ws_is_control(r->opcode)) {
        uint8_t copy[WS_MAX_CONTROL];
        size_t k = r->ctl_len;
        if (k) memcpy(copy, r->ctl, k);
        free(r->ctl);
        r->ctl = NULL;
        r->ctl_len = 0;
        return deliver(r->opcode, copy, k, cb, ud);
    }
    if (!r->fin) return 0;
    return end_message(r, cb, ud);
}

/* The last frame of a data message is in: its compressed form's end is
 * inflated, and it goes to the callback. */
static int end_message(ws_reader *r, const ws_reader_cb *cb, void *ud)
{
    if (r->compressed) {
        int rc = inflate_piece(r, NULL, 0, true);
        r->compressed = false;
        if (rc) return rc;
    }
    if (r->msg_opcode == WS_OP_TEXT && !utf8_at_boundary(&r->utf8))
        return WS_CLOSE_BAD_DATA;
    uint8_t *msg = r->msg;
    size_t len = r->msg_len;
    uint8_t op = r->msg_opcode;
    /* Idle connections keep no message buffer. */
    r->msg = NULL;
    r->msg_len = r->msg_cap = 0;
    r->msg_opcode = 0;
    int rc = deliver(op, msg ? msg : (uint8_t *)"", len, cb, ud);
    free(msg);
    return rc;
}

/* A whole unfragmented frame already in the input is delivered from there,
 * without copying: the common case for chat-sized messages. */
static bool whole_in_input(const ws_header *h, size_t avail)
{
    if (h->len > avail) return false;
    return ws_is_control(h->opcode) || (h->fin && h->opcode != WS_OP_CONT);
}

static int deliver_in_place(ws_reader *r, const ws_header *h, uint8_t *p,
                            const ws_reader_cb *cb, void *ud)
{
    size_t k = (size_t)h->len;
    r->in_frame = false;
    ws_unmask(p, k, h->mask, 0);
    if (r->compressed && !ws_is_control(h->opcode)) {
        int rc = inflate_piece(r, p, k, false);
        return rc ? rc : end_message(r, cb, ud);
    }
    if (!ws_is_control(h->opcode)) {
        r->msg_opcode = 0;
        if (h->opcode == WS_OP_TEXT && !utf8_valid(p, k)) return WS_CLOSE_BAD_DATA;
    }
    return deliver(h->opcode, p, k, cb, ud);
}

int ws_header_assemble(uint8_t buf[WS_MAX_HEADER], uint8_t *len,
                       const uint8_t *data, size_t n, ws_header *h)
{
    if (*len == 0) {
        int hs = ws_header_parse(data, n, h);
        if (hs == 0) {
            memcpy(buf, data, n);       /* n < WS_MAX_HEADER here */
            *len = (uint8_t)n;
        }
        return hs;
    }
    size_t take = WS_MAX_HEADER - *len;
    if (take > n) take = n;
    memcpy(buf + *len, data, take);
    int hs = ws_header_parse(buf, *len + take, h);
    if (hs <= 0) {
        if (hs == 0) *len += (uint8_t)take;
        return hs;
    }
    int from_input = hs - *len;
    *len = 0;
    return from_input;
}

int ws_reader_feed(ws_reader *r, uint8_t *data, size_t n,
                   const ws_reader_cb *cb, void *ud, size_t *used)
{
    size_t i = 0;
    int rc = 0;
    while (i < n && rc == 0) {
        if (!r->in_frame) {
            ws_header h;
            int hs = ws_header_assemble(r->hdr, &r->hdr_len, data + i, n - i, &h);
            if (hs < 0) return WS_CLOSE_PROTOCOL;
            if (hs == 0) {
                i = n;
                break;
            }
            i += (size_t)hs;
            if ((rc = begin_frame(r, &h))) return rc;
            if (whole_in_input(&h, n - i)) {
                rc = deliver_in_place(r, &h, data + i, cb, ud);
                i += (size_t)h.len;
                continue;
            }
        } else {
            size_t k = r->remaining < n - i ? (size_t)r->remaining : n - i;
            if ((rc = take_payload(r, data + i, k))) return rc;
            i += k;
        }
        if (r->in_frame && r->remaining == 0) rc = end_frame(r, cb, ud);
    }
    if (used) *used = i;
    return rc;
}
