/* capture_int.h -- the state of one `tagarela capture` run, shared by the
 * files of src/capture: options, counters, the flow table and, per flow and
 * direction, the reassembler and the HTTP/WebSocket decoder.
 *
 * Everything the decoder changes lives in a cap_ctx, so two captures could
 * run side by side and unit tests can build one from scratch. */
#ifndef TAGARELA_CAPTURE_CTX_H
#define TAGARELA_CAPTURE_CTX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "out.h"
#include "pkt.h"
#include "slab.h"
#include "tcp.h"
#include "ws_codec.h"

typedef struct cap_opts {
    const char *iface;          /* -i */
    const char *read_file;      /* -r */
    const char *write_file;     /* -w */
    char *filter;               /* BPF expression (allocated) */
    long long count;            /* -c, 0 = no limit */
    int snaplen;                /* -s, 0 = default */
    uint16_t port;              /* -p: the server port, for flows joined midway */
    bool json, hex;
    int color;                  /* CAP_COLOR_* */
    size_t max_mem;             /* bytes held by the decoder, all flows */
    size_t max_stream;          /* out-of-order bytes held per direction */
    size_t max_message;         /* a message (or inflated message) shown whole */
    size_t max_flows;
    double idle;                /* seconds of capture time before eviction */
    bool quiet;                 /* no "listening on" line */
    bool any_port;              /* -r with no filter and no -p: other ports too, their
                                 * WebSocket found by its upgrade */
    const char *keylog;         /* --keylog FILE */
    int threads;                /* --threads: decoder threads (par.h) */
} cap_opts;

typedef struct cap_stats {
    uint64_t packets, bytes;            /* read from the capture */
    uint64_t not_tcp, fragments, short_pkts, bad_pkts;
    uint64_t flows, connections, websockets, closed, evicted;
    uint64_t frames[16];                /* by opcode */
    uint64_t messages, inflated;
    uint64_t payload[2];                /* TCP payload bytes, by direction */
    uint64_t gaps, gap_bytes, truncated, errors;
    uint64_t retrans, ooo, conflicts;
    uint64_t kernel_drops;
    uint64_t tls_sessions, tls_records, tls_bad_records;
} cap_stats;

typedef struct cap_buf {
    uint8_t *p;
    size_t len, cap;
} cap_buf;

enum { CAP_APP_HTTP, CAP_APP_WAIT_101, CAP_APP_WS, CAP_APP_STOPPED };

typedef struct cap_http cap_http;       /* http.c */

/* WebSocket decoding state of one direction. */
typedef struct cap_ws {
    ws_header h;                /* the current frame's */
    uint8_t hdr[WS_MAX_HEADER]; /* a header split across segments */
    uint8_t hdr_len;
    bool in_frame;
    bool skip;                  /* the frame was replaced by a gap */
    uint64_t remaining;         /* payload bytes still to come */
    uint64_t offset;            /* payload bytes already seen: the mask offset */
    size_t frame_start;         /* where its payload starts in msg */
    uint64_t frame_elided;      /* its bytes not kept (over max_message) */
    cap_buf msg;                /* data message: unmasked, still compressed */
    cap_buf ctl;                /* control frame payload */
    uint8_t msg_opcode;         /* first frame's opcode, 0 = none in progress */
    bool msg_rsv1;              /* the message is compressed */
    bool msg_partial;           /* a gap took part of it */
    uint64_t msg_elided;
    /* permessage-deflate, as negotiated for this direction */
    bool deflate, no_context;
    uint8_t wbits;
    uint8_t zbits;              /* the window zlib holds now: grows up to wbits */
    uint32_t zhave;             /* bytes of history in it (all sent, up to its size) */
    bool z_lost;                /* the shared window is gone (a gap, an error) */
    struct z_stream_s *z;
} cap_ws;

typedef struct cap_dir {
    cap_stream st;
    uint8_t app;                /* CAP_APP_* */
    bool truncated;             /* reported once */
    bool any_data;
    cap_http *http;             /* during the HTTP phase only */
    cap_buf pend;               /* client bytes waiting for the 101 */
    cap_ws ws;
    uint32_t isn;
    bool syn;
} cap_dir;

typedef struct cap_key {
    uint8_t a[16], b[16];       /* a <= b, so both directions find it */
    uint16_t pa, pb;
    uint8_t ipver, pad[3];
} cap_key;

#define CAP_ADDR_MAX 56         /* "[v6 address]:65535" */

/* Whether a flow's events are printed: with --keylog or on any port, a
 * flow waits for its first client bytes to say what it is. */
enum { CAP_SHOW_YES, CAP_SHOW_PENDING, CAP_SHOW_NO };

typedef struct cap_tls cap_tls;         /* tls.c */
typedef struct cap_keylog cap_keylog;   /* keylog.c */

typedef struct cap_flow cap_flow;
struct cap_flow {
    cap_flow *hnext;            /* hash chain */
    cap_flow *prev, *next;      /* LRU (open) or FIFO (closed) list */
    cap_key key;
    uint64_t hash;
    double last;                /* capture time of the last packet */
    double lru;                 /* when it last moved to the LRU list's head */
    uint64_t lru_seq;           /* the packet (number in the capture) that moved it
                                 * there: the list's order, whichever thread has it */
    uint8_t client;             /* which key side (0: a, 1: b) is the client */
    bool closed, midstream, fin[2];
    bool upgrade_pending;       /* a WebSocket upgrade request awaits its response */
    bool websocket;             /* a 101 was seen */
    char ws_key[32];            /* the request's Sec-WebSocket-Key */
    char addr[2][CAP_ADDR_MAX]; /* "ip:port": [0] client, [1] server */
    uint8_t addr_len[2];
    cap_dir d[2];               /* [0] client -> server, [1] server -> client */
    uint8_t show;               /* CAP_SHOW_* */
    bool on_server_port;        /* -p's port (7272 by default) is one of its ends */
    bool open_pending;          /* its tcp_open waits for the flow to be shown */
    bool is_tls;                /* decrypted with the key log (tls.c) */
    int64_t open_sec;           /* the SYN's time, for a tcp_open that waited */
    uint32_t open_usec;
    cap_tls *tls;
};

typedef struct cap_list {
    cap_flow *head, *tail;
    size_t n;
} cap_list;

/* A uid -> name map for the text view's chat summaries. */
#define CAP_NAMES 1024
typedef struct cap_name {
    uint64_t uid;
    char name[40];
} cap_name;

typedef struct cap_ctx {
    cap_opts opt;
    cap_mem mem;
    cap_stats st;
    cap_out out;
    int64_t now_sec;            /* current packet's time */
    uint32_t now_usec;
    double now;
    cap_flow **buckets;
    size_t nbuckets;
    cap_list open, done;        /* open: LRU, most recent first; done: closed */
    cap_buf scratch;            /* one frame unmasked in place */
    cap_buf inflated;           /* one message inflated */
    cap_name *names;            /* text view only */
    char *file_buf;             /* stdio buffer of a -r file libpcap reads */
    cap_keylog *keylog;         /* --keylog, or NULL */
    cap_buf tls_plain;          /* one TLS record decrypted */
    cap_slab zslab;             /* zlib's states and windows */
    struct z_stream_s *zshared; /* directions without context takeover */
    uint8_t zshared_bits;
    /* With --threads (par.c): the packet's number in the capture and in
     * its batch, and where the output is marked for the merge. */
    uint64_t pkt_seq;
    uint32_t pkt_idx;
    struct cap_part *part;      /* NULL: one thread, output straight out */
} cap_ctx;

/* flow.c */
int cap_ctx_init(cap_ctx *c);
void cap_ctx_free(cap_ctx *c);
void cap_packet(cap_ctx *c, const cap_pkt *p);
/* The same, its flow's hash (cap_pkt_flow_hash) already known. */
void cap_packet_hash(cap_ctx *c, const cap_pkt *p, uint64_t hash);
/* Output from here on belongs to the packet being processed (key 0) or to
 * the flow evicted or flushed after it (its key): a no-op on one thread. */
void cap_mark(cap_ctx *c, uint32_t pkt, uint64_t key);
/* The hash of the packet's flow, the same both ways. */
uint64_t cap_pkt_flow_hash(const cap_pkt *p);
/* Starts loading from memory what cap_packet() will need for a packet a
 * little ahead: its hash bucket (flow false), then its flow (flow true). */
void cap_prefetch(cap_ctx *c, const cap_pkt *p, bool flow);
void cap_prefetch_hash(cap_ctx *c, uint64_t hash, bool flow);
void cap_sweep(cap_ctx *c, cap_flow *keep);
/* Whether cap_sweep(c, NULL) would evict or free anything now. */
bool cap_sweep_due(const cap_ctx *c);
void cap_finish(cap_ctx *c);
void cap_dir_stop(cap_ctx *c, cap_flow *f, int dir);
/* In-order bytes of one direction to its decoder; nonzero: it stopped. */
int cap_dir_feed(cap_ctx *c, cap_flow *f, int dir, const uint8_t *p, size_t n);
/* Bytes of one direction never captured (or a record that did not
 * decrypt): counted, reported, and the decoder resumes or stops (nonzero). */
int cap_dir_gap(cap_ctx *c, cap_flow *f, int dir, uint64_t missing);
/* The flow's events are printed from now on, its tcp_open first. */
void cap_flow_show(cap_ctx *c, cap_flow *f);
/* The client bytes held back until the handshake response, fed again. */
void cap_dir_replay(cap_ctx *c, cap_flow *f, int dir);
void cap_buf_free(cap_ctx *c, cap_buf *b);
int cap_buf_append(cap_ctx *c, cap_buf *b, const uint8_t *p, size_t n);

/* http.c: returns bytes consumed; the caller re-dispatches the rest
 * when the direction switched to another state. */
size_t cap_http_feed(cap_ctx *c, cap_flow *f, int dir, const uint8_t *p, size_t n);
void cap_http_free(cap_ctx *c, cap_dir *d);

/* ws.c */
void cap_ws_feed(cap_ctx *c, cap_flow *f, int dir, const uint8_t *p, size_t n);
int cap_ws_gap(cap_ctx *c, cap_flow *f, int dir, uint64_t missing);
void cap_ws_negotiate(cap_ws *w, const char *ext, bool server_side);
void cap_ws_free(cap_ctx *c, cap_ws *w);
/* The decoder's own inflate stream, shared by its directions. */
void cap_ws_ctx_free(cap_ctx *c);

/* out.c and text.c */
void cap_emit(cap_ctx *c, cap_flow *f, int dir, const cap_event *ev);
void cap_text_event(cap_ctx *c, cap_flow *f, int dir, const cap_event *ev);
void cap_summary(cap_ctx *c, cap_wbuf *w);

#endif
