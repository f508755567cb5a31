/* ws_deflate.h -- permessage-deflate (RFC 7692) with no I/O: the
 * negotiation of its parameters, one message compressed on its own (the
 * server keeps no context, so one compression serves every recipient), and
 * a bounded inflater for what clients send. */
#ifndef TAGARELA_WS_DEFLATE_H
#define TAGARELA_WS_DEFLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ws_codec.h"

#define WS_PMD_TOKEN "permessage-deflate"
#define WS_PMD_ANSWER_MAX 160   /* the longest answer ws_pmd_format writes */

/* What was agreed with one client. */
typedef struct ws_pmd {
    bool on;                            /* an offer was accepted */
    bool client_no_context_takeover;    /* its inflater is freed after each message */
    uint8_t client_bits;                /* its compressor's window: ours to inflate with */
    bool client_bits_answered;          /* the answer names client_max_window_bits */
    uint8_t server_bits;                /* 15, or the window the client asked us to keep to */
    bool server_bits_answered;
} ws_pmd;

/* How the server answers offers. */
typedef struct ws_pmd_policy {
    /* The client window to ask for when the offer lets us choose (it holds
     * client_max_window_bits): 9..15. */
    uint8_t client_bits;
    /* Ask every client to keep no context (its inflater then holds no
     * memory between messages). */
    bool client_no_context_takeover;
} ws_pmd_policy;

/* Looks through a Sec-WebSocket-Extensions value for the first acceptable
 * permessage-deflate offer (RFC 7692 section 5: an offer with an unknown
 * parameter, a repeated one or a bad value is declined, and the next one
 * considered). Returns true with *out filled when one is accepted. */
bool ws_pmd_negotiate(const char *v, size_t n, const ws_pmd_policy *pol, ws_pmd *out);

/* The answer's Sec-WebSocket-Extensions value, always with
 * server_no_context_takeover. Returns its length. */
size_t ws_pmd_format(const ws_pmd *p, char out[WS_PMD_ANSWER_MAX]);

/* ---- compressing: one message at a time, no context kept ---------------- */

typedef struct ws_deflater {
    struct z_stream_s *z;
} ws_deflater;

int ws_deflater_init(ws_deflater *d, int level);
void ws_deflater_free(ws_deflater *d);
/* A final frame with RSV1 set holding payload compressed on its own, or
 * NULL when out of memory or when compression would not make it shorter. */
ws_frame *ws_frame_deflate(ws_deflater *d, uint8_t opcode, const void *payload, size_t n);

/* ---- inflating: a client's messages ------------------------------------- */

typedef struct ws_inflater {
    struct z_stream_s *z;       /* NULL while no message needs it */
    uint8_t bits;               /* the window (9..15) */
    bool keep;                  /* context takeover: z lives between messages */
    bool ended;                 /* the message's deflate stream has ended */
} ws_inflater;

void ws_inflater_init(ws_inflater *f, uint8_t bits, bool keep);
/* Inflates n bytes of a compressed message into out; last: they end the
 * message (the RFC's empty-block tail is added, and without context
 * takeover the state goes). Returns 0, or the close code: 1009 when out
 * would pass out->max, 1007 for bad deflate data, 1011 when out of memory.
 * A ws_inflate_fn, with f as its inflater. */
int ws_inflate(void *f, const uint8_t *in, size_t n, bool last, ws_inflate_out *out);
void ws_inflater_free(ws_inflater *f);

#endif
