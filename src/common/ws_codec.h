/* ws_codec.h -- the WebSocket wire format (RFC 6455), with no I/O.
 *
 * Frame headers, masking, close codes, the handshake's accept value, shared
 * outgoing frames, and a reader that turns a server's inbound byte stream
 * into whole messages. It knows nothing of sockets or of the chat: the
 * server feeds it bytes, the capture decoder reuses its header parser. */
#ifndef TAGARELA_WS_CODEC_H
#define TAGARELA_WS_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "utf8.h"

enum {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
};

enum {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL = 1002,
    WS_CLOSE_UNSUPPORTED = 1003,
    WS_CLOSE_NO_STATUS = 1005,
    WS_CLOSE_BAD_DATA = 1007,
    WS_CLOSE_POLICY = 1008,
    WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_INTERNAL = 1011,
};

#define WS_MAX_HEADER 14        /* 2 + 8 (64-bit length) + 4 (mask) */
#define WS_MAX_CONTROL 125
#define WS_ACCEPT_LEN 28        /* base64 of a SHA-1 digest */

typedef struct ws_header {
    bool fin, rsv1, rsv2, rsv3, masked;
    uint8_t opcode;
    uint64_t len;               /* payload length */
    uint8_t mask[4];
    uint8_t size;               /* bytes taken by the header itself */
} ws_header;

static inline bool ws_is_control(uint8_t opcode) { return opcode & 0x8; }

/* Parses the header at buf. Returns its size, 0 when more bytes are needed,
 * -1 when the 64-bit length has its top bit set (forbidden by the RFC). No
 * role rules are applied here: see ws_header_check(). */
int ws_header_parse(const uint8_t *buf, size_t n, ws_header *h);

/* A header that may arrive split across reads: buf holds the *len bytes
 * seen so far. Returns how many bytes of data complete it (buf is then
 * empty again), 0 when more are needed (all of data kept in buf), or -1
 * when it is malformed. The server's reader and the capture decoder share
 * it. */
int ws_header_assemble(uint8_t buf[WS_MAX_HEADER], uint8_t *len,
                       const uint8_t *data, size_t n, ws_header *h);

/* Rules a server applies to a client frame's header. Returns 0 or the close
 * code to fail the connection with. in_message: a fragmented data message is
 * in progress. allow_rsv1: permessage-deflate was negotiated. */
int ws_header_check(const ws_header *h, bool in_message, bool allow_rsv1);

/* Writes a header (unmasked when mask is NULL). Returns its size. */
size_t ws_header_write(uint8_t *out, bool fin, bool rsv1, uint8_t opcode,
                       uint64_t len, const uint8_t *mask);

/* XORs data with the mask, starting at byte `offset` of the frame payload,
 * so a payload split across reads or segments unmasks piece by piece. */
void ws_unmask(uint8_t *data, size_t n, const uint8_t mask[4], uint64_t offset);

/* True for codes a peer may put in a close frame. */
bool ws_close_code_valid(unsigned code);

/* Checks a close frame's payload. Returns 0 (and the code, 1005 when there
 * is none, plus the reason) or the close code to fail with (1002, 1007). */
int ws_close_parse(const uint8_t *p, size_t n, unsigned *code,
                   const uint8_t **reason, size_t *reason_len);

/* Handshake: a valid Sec-WebSocket-Key is base64 of exactly 16 bytes. */
bool ws_key_valid(const char *key, size_t n);
void ws_accept_key(const char *key, size_t n, char out[WS_ACCEPT_LEN + 1]);

/* An encoded server frame, shared by every recipient: one allocation, one
 * encoding, a reference per queued recipient. The count is atomic because
 * the recipients of one broadcast may live on different threads. */
typedef struct ws_frame {
    uint32_t refs;
    uint32_t len;               /* bytes: header + payload */
    const uint8_t *bytes;       /* data, or bytes that outlive the frame */
    uint64_t born;              /* monotonic ns the message it answers arrived; 0: untimed */
    /* The same message compressed (permessage-deflate), made once by the
     * thread that builds the broadcast, before any other sees the frame;
     * NULL when not made or not worth it. The frame holds a reference. */
    struct ws_frame *twin;
    bool twin_made;
    uint8_t data[];
} ws_frame;

#define WS_FRAME_MAX UINT32_MAX /* the longest frame (a larger one: NULL) */

ws_frame *ws_frame_new(uint8_t opcode, const void *payload, size_t n);
ws_frame *ws_frame_close(unsigned code, const char *reason);
/* The same shared buffer holding raw bytes (an HTTP response). */
ws_frame *ws_frame_raw(const void *data, size_t n);
/* Raw bytes that live as long as the process (an embedded page): queued
 * without a copy. */
ws_frame *ws_frame_borrow(const void *data, size_t n);
static inline ws_frame *ws_frame_ref(ws_frame *f)
{
    __atomic_fetch_add(&f->refs, 1, __ATOMIC_RELAXED);
    return f;
}
void ws_frame_unref(ws_frame *f);
/* The same, returning the frame's born time when this was its last
 * reference (the last recipient's write), 0 otherwise. */
uint64_t ws_frame_unref_born(ws_frame *f);

/* A growing output buffer that never holds more than max + 1 bytes. */
typedef struct ws_inflate_out {
    uint8_t *p;
    size_t len, cap, max;
} ws_inflate_out;

/* permessage-deflate's decompressor, supplied by the caller so that the
 * codec needs no zlib: inflates n bytes of a compressed message onto out
 * (last: they end it). Returns 0 or a close code (1007 bad data, 1009 past
 * out->max, 1011 out of memory). */
typedef int (*ws_inflate_fn)(void *inflater, const uint8_t *in, size_t n, bool last,
                             ws_inflate_out *out);

/* The server's inbound side: frames in, whole messages out. Handles
 * fragmentation, control frames between fragments, masking, incremental
 * UTF-8 validation and the message size limit. Idle readers hold no heap. */
typedef struct ws_reader_cb {
    /* A whole data message, unmasked; text is valid UTF-8. The buffer is
     * writable and valid only during the call. Return nonzero to stop. */
    int (*message)(void *ud, uint8_t opcode, uint8_t *data, size_t n);
    /* A ping, pong or (validated) close frame. Return nonzero to stop. */
    int (*control)(void *ud, uint8_t opcode, uint8_t *data, size_t n);
} ws_reader_cb;

typedef struct ws_reader {
    uint64_t max_message;
    uint64_t remaining;         /* payload bytes left in the current frame */
    uint64_t offset;            /* payload bytes of it already read */
    uint8_t *msg;               /* data message being assembled, or NULL */
    size_t msg_len, msg_cap;
    uint8_t *ctl;               /* control payload being assembled, or NULL */
    uint8_t ctl_len;
    uint8_t hdr[WS_MAX_HEADER]; /* a header split across reads */
    uint8_t hdr_len;
    uint8_t mask[4];
    uint8_t opcode;             /* current frame's */
    bool fin;
    bool in_frame;
    bool compressed;            /* the message in progress has RSV1 */
    uint8_t msg_opcode;         /* fragmented message in progress, or 0 */
    uint64_t wire_len;          /* compressed bytes of it so far */
    utf8_state utf8;
    ws_inflate_fn inflate;      /* NULL: RSV1 is a protocol error */
    void *inflater;             /* the caller's; the reader never frees it */
} ws_reader;

#define WS_READER_STOP (-1)

void ws_reader_init(ws_reader *r, uint64_t max_message);
/* permessage-deflate was agreed: messages with RSV1 go through fn. */
void ws_reader_set_inflate(ws_reader *r, ws_inflate_fn fn, void *inflater);
/* Heap the reader holds for a message not yet complete. */
static inline size_t ws_reader_held(const ws_reader *r) { return r->msg_cap; }
/* True while a message (or a frame of one) has begun and not ended. */
static inline bool ws_reader_in_message(const ws_reader *r)
{
    return r->in_frame || r->hdr_len || r->msg_opcode || r->msg_len;
}
void ws_reader_free(ws_reader *r);

/* Consumes n bytes (which it may modify in place). Returns 0 when all were
 * consumed, WS_READER_STOP when a callback stopped it (*used says how far),
 * or a close code (1002, 1007, 1009) when the peer broke the protocol. */
int ws_reader_feed(ws_reader *r, uint8_t *data, size_t n,
                   const ws_reader_cb *cb, void *ud, size_t *used);

#endif
