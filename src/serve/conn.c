/* networking.c -- a connection's life on the socket: reading, the HTTP
 * phase, the WebSocket phase, the output queue of shared buffers, flushing
 * once per loop turn, and the ways a connection ends. */
#include "serve_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_IOV 64

typedef struct write_req {
    uv_write_t req;
    uv_buf_t bufs[MAX_IOV];
} write_req;

static void on_close(uv_handle_t *h);

uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- output queue ----------------------------------------------------- */

static void mark_dirty(conn *c)
{
    if (c->dirty) return;
    c->dirty = true;
    c->dirty_next = c->srv->dirty;
    c->srv->dirty = c;
    c->srv->n_dirty++;
}

/* Queues f with the reference the caller hands over. */
static int queue_push(conn *c, ws_frame *f)
{
    if (c->q_len == c->q_cap) {
        uint32_t cap = c->q_cap ? c->q_cap * 2 : 8;
        ws_frame **q = malloc(cap * sizeof *q);
        if (!q) return -1;
        for (uint32_t i = 0; i < c->q_len; i++) q[i] = c->q[(c->q_head + i) & (c->q_cap - 1)];
        free(c->q);
        c->q = q;
        c->q_cap = cap;
        c->q_head = 0;
    }
    c->q[(c->q_head + c->q_len) & (c->q_cap - 1)] = f;
    c->q_len++;
    c->queued += f->len;
    mark_dirty(c);
    return 0;
}

/* Drops n written bytes from the front of the queue. */
static void queue_consume(conn *c, size_t n)
{
    uint64_t frames = 0;
    c->queued -= n;
    STAT_ADD(c->srv->stats.bytes_out, (uint64_t)n);
    while (n) {
        ws_frame *f = c->q[c->q_head];
        size_t left = f->len - c->q_off;
        if (n < left) {
            c->q_off += (uint32_t)n;
            break;
        }
        n -= left;
        ws_frame_unref(f);
        c->q_head = (c->q_head + 1) & (c->q_cap - 1);
        c->q_len--;
        c->q_off = 0;
        frames++;
    }
    STAT_ADD(c->srv->stats.frames_out, frames);
}

static void queue_free(conn *c)
{
    for (uint32_t i = 0; i < c->q_len; i++) ws_frame_unref(c->q[(c->q_head + i) & (c->q_cap - 1)]);
    free(c->q);
    c->q = NULL;
    c->q_len = c->q_cap = c->q_head = c->q_off = 0;
    c->queued = 0;
}

/* Queues f, taking the caller's reference; false when it was not queued
 * (the reference is still the caller's). */
static bool conn_take(conn *c, ws_frame *f)
{
    if (c->closed || c->overflow || c->state == CONN_CLOSING) return false;
    if (c->queued + f->len > c->srv->cfg->outbound_cap || queue_push(c, f) < 0) {
        /* Closed at the next flush, not here: the chat may be walking the
         * room this connection belongs to. */
        c->overflow = true;
        mark_dirty(c);
        return false;
    }
    return true;
}

void conn_send(conn *c, ws_frame *f)
{
    if (!conn_take(c, ws_frame_ref(f))) ws_frame_unref(f);
}

/* A delivery from the hub carries its own reference, which becomes the
 * queue's: no further atomic operation on the broadcast path. */
void conn_send_owned(conn *c, ws_frame *f)
{
    if (!conn_take(c, f)) ws_frame_unref(f);
}

void conn_send_forced(conn *c, ws_frame *f)
{
    if (c->closed) return;
    if (queue_push(c, ws_frame_ref(f)) < 0) {
        ws_frame_unref(f);
        conn_abort(c);
    }
}

/* ---- writing ---------------------------------------------------------- */

static uint32_t fill_iov(conn *c, uv_buf_t *iov, size_t *bytes)
{
    uint32_t n = c->q_len < MAX_IOV ? c->q_len : MAX_IOV;
    *bytes = 0;
    for (uint32_t i = 0; i < n; i++) {
        ws_frame *f = c->q[(c->q_head + i) & (c->q_cap - 1)];
        size_t off = i == 0 ? c->q_off : 0;
        iov[i] = uv_buf_init((char *)f->data + off, (unsigned)(f->len - off));
        *bytes += f->len - off;
    }
    return n;
}

static void conn_flush(conn *c);

static void after_shutdown(uv_shutdown_t *req, int status)
{
    free(req);
}

/* Our side is done: send FIN and wait (bounded) for the peer's. */
static void conn_finish(conn *c)
{
    if (c->shut || c->closed) return;
    c->shut = true;
    uv_shutdown_t *req = malloc(sizeof *req);
    if (!req || uv_shutdown(req, (uv_stream_t *)&c->tcp, after_shutdown) < 0) {
        free(req);
        conn_abort(c);
    }
}

static void after_write(uv_write_t *req, int status)
{
    conn *c = req->data;
    free(req);
    if (status == UV_ECANCELED) return;     /* closing: the queue goes with it */
    c->writing = false;
    if (status < 0) {           /* nothing counted as sent; the queue goes at close */
        c->inflight = 0;
        conn_abort(c);
        return;
    }
    queue_consume(c, c->inflight);
    c->inflight = 0;
    conn_flush(c);
}

/* Hands what the kernel did not take to libuv, which waits for POLLOUT. */
static void start_write(conn *c)
{
    write_req *w = malloc(sizeof *w);
    if (!w) {
        conn_abort(c);
        return;
    }
    size_t bytes;
    uint32_t n = fill_iov(c, w->bufs, &bytes);
    w->req.data = c;
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, w->bufs, n, after_write) < 0) {
        free(w);
        conn_abort(c);
        return;
    }
    c->writing = true;
    c->inflight = bytes;
}

/* Writes everything queued with as few system calls as the kernel allows. */
static void conn_flush(conn *c)
{
    if (c->closed || c->writing) return;
    while (c->q_len) {
        uv_buf_t iov[MAX_IOV];
        size_t bytes;
        uint32_t n = fill_iov(c, iov, &bytes);
        int w = uv_try_write((uv_stream_t *)&c->tcp, iov, n);
        if (w == UV_EAGAIN) w = 0;
        if (w < 0) {
            conn_abort(c);
            return;
        }
        queue_consume(c, (size_t)w);
        if ((size_t)w < bytes) {
            start_write(c);
            return;
        }
    }
    if (c->want_drain) {
        c->want_drain = false;
        chat_link_drained(c);
    }
    if (c->close_after_flush) conn_finish(c);
}

void conn_flush_all(server *s)
{
    s->n_dirty = 0;
    while (s->dirty) {
        conn *c = s->dirty;
        s->dirty = c->dirty_next;
        c->dirty = false;
        c->dirty_next = NULL;
        if (c->overflow && c->state != CONN_CLOSING) {
            STAT_ADD(s->stats.slow_closed, 1);
            /* A peer that reads nothing gets nothing more read either:
             * otherwise it could keep us busy for the whole grace period. */
            uv_read_stop((uv_stream_t *)&c->tcp);
            conn_close_ws(c, WS_CLOSE_POLICY, "outbound queue full: client too slow");
        }
        conn_flush(c);
    }
}

/* ---- closing ---------------------------------------------------------- */

static void leave_chat(conn *c)
{
    c->held = chat_link_leave(c);
}

void conn_close_ws(conn *c, unsigned code, const char *reason)
{
    if (c->closed || c->state == CONN_CLOSING) return;
    c->state = CONN_CLOSING;
    c->deadline = uv_now(c->srv->loop) + CLOSE_GRACE_MS;
    leave_chat(c);
    ws_frame *f = ws_frame_close(code, reason);
    if (!f) {
        conn_abort(c);
        return;
    }
    conn_send_forced(c, f);
    ws_frame_unref(f);
    c->close_after_flush = true;
}

void conn_abort(conn *c)
{
    if (c->closed) return;
    c->closed = true;
    leave_chat(c);
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

/* The memory goes when both the handle and the hub are done with it. */
static void on_close(uv_handle_t *h)
{
    conn *c = (conn *)h;
    queue_free(c);
    ws_reader_free(&c->rd);
    free(c->req);
    c->req = NULL;
    c->handle_closed = true;
    if (!c->held) {
        server_forget(c->srv, c);
        free(c);
    }
}

void conn_release(conn *c)
{
    c->held = false;
    if (c->handle_closed) {
        server_forget(c->srv, c);
        free(c);
    }
}

/* ---- reading ---------------------------------------------------------- */

/* One buffer serves every read of the loop: a read is consumed before the
 * next starts, so idle connections hold no read memory at all. */
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    server *s = ((conn *)h)->srv;
    if (s->readbuf_busy) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    s->readbuf_busy = true;
    *buf = uv_buf_init((char *)s->readbuf, READ_BUFFER_SIZE);
}

static int on_ws_message(void *ud, uint8_t opcode, uint8_t *data, size_t n)
{
    conn *c = ud;
    if (c->state != CONN_WS) return 1;
    STAT_ADD(c->srv->stats.messages_in, 1);
    if (opcode == WS_OP_TEXT)
        chat_link_text(c, data, n);
    else
        chat_link_binary(c);
    return c->state != CONN_WS;
}

static int on_ws_control(void *ud, uint8_t opcode, uint8_t *data, size_t n)
{
    conn *c = ud;
    if (opcode == WS_OP_PING) {
        ws_frame *f = ws_frame_new(WS_OP_PONG, data, n);
        if (f) {
            conn_send(c, f);
            ws_frame_unref(f);
        }
        return 0;
    }
    if (opcode == WS_OP_PONG) return 0;
    /* A close: answer with the peer's code (1000 when it gave none). */
    unsigned code = n >= 2 ? ((unsigned)data[0] << 8 | data[1]) : WS_CLOSE_NORMAL;
    conn_close_ws(c, code, NULL);
    return 1;
}

static const ws_reader_cb reader_cb = { on_ws_message, on_ws_control };

static void ws_input(conn *c, uint8_t *data, size_t n)
{
    int rc = ws_reader_feed(&c->rd, data, n, &reader_cb, c, NULL);
    if (rc > 0) {
        const char *why = rc == WS_CLOSE_BAD_DATA ? "invalid UTF-8"
                        : rc == WS_CLOSE_TOO_BIG ? "message too big"
                        : rc == WS_CLOSE_INTERNAL ? "out of memory"
                                                  : "protocol error";
        conn_close_ws(c, (unsigned)rc, why);
    }
}

static void send_bytes(conn *c, const sbuf *out)
{
    ws_frame *f = out->oom ? NULL : ws_frame_raw(out->p, out->len);
    if (!f) {
        conn_abort(c);
        return;
    }
    conn_send_forced(c, f);
    ws_frame_unref(f);
}

static void refuse(conn *c, sbuf *out)
{
    send_bytes(c, out);
    c->state = CONN_CLOSING;
    c->deadline = uv_now(c->srv->loop) + CLOSE_GRACE_MS;
    c->close_after_flush = true;
}

/* The request is an upgrade: become a WebSocket or refuse. */
static void upgrade(conn *c, sbuf *out)
{
    server *s = c->srv;
    int status = handshake_answer(c->req, s->cfg, c->port == PORT_HTTP, out);
    if (status != 101) {
        refuse(c, out);
        return;
    }
    send_bytes(c, out);
    free(c->req);
    c->req = NULL;
    c->state = CONN_WS;
    ws_reader_init(&c->rd, s->cfg->max_message);
    STAT_ADD(s->stats.handshakes, 1);
    chat_link_connect(c);
}

static bool wants_websocket(const http_req *r)
{
    size_t n;
    const char *up = http_req_field(r, HF_UPGRADE, &n);
    return up && http_token_list_has(up, n, "websocket");
}

/* Answers one complete request. Returns false when the connection stops
 * speaking HTTP (upgraded or closing). */
static bool http_answer(conn *c)
{
    sbuf out;
    sbuf_init(&out);
    bool go_on = false;
    if (wants_websocket(c->req)) {
        upgrade(c, &out);
    } else if (c->port == PORT_HTTP) {
        bool close_after = false;
        webpage_answer(c->req, c->srv, &out, &close_after);
        if (close_after) {
            refuse(c, &out);
        } else {
            send_bytes(c, &out);
            http_req_reset(c->req);
            c->deadline = uv_now(c->srv->loop) + c->srv->cfg->handshake_timeout_ms;
            go_on = true;
        }
    } else {
        http_error_response(&out, 400, NULL,
            "This port speaks WebSocket only: send an Upgrade: websocket request.\n");
        refuse(c, &out);
    }
    sbuf_free(&out);
    return go_on;
}

static void http_input(conn *c, uint8_t *data, size_t n)
{
    while (n && c->state == CONN_HTTP && !c->closed) {
        if (!c->req) {
            c->req = malloc(sizeof *c->req);
            if (!c->req) {
                conn_abort(c);
                return;
            }
            http_req_init(c->req, c->srv->cfg->max_header);
        }
        size_t used = http_req_feed(c->req, (const char *)data, n);
        data += used;
        n -= used;
        if (c->req->state == HTTP_REQ_ERROR) {
            sbuf out;
            sbuf_init(&out);
            http_error_response(&out, c->req->error_status, NULL, "Malformed or oversized request.\n");
            refuse(c, &out);
            sbuf_free(&out);
            return;
        }
        if (c->req->state != HTTP_REQ_DONE) {
            if (used == 0) conn_abort(c);   /* no progress: never spin */
            return;
        }
        if (!http_answer(c)) break;
    }
    /* Bytes right behind the upgrade request are the first frames. */
    if (n && c->state == CONN_WS) ws_input(c, data, n);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = (conn *)st;
    server *s = c->srv;
    if (buf->base == (char *)s->readbuf) s->readbuf_busy = false;
    if (nread == 0 || c->closed) return;
    if (nread < 0) {
        /* EOF or reset: a peer that left without a close frame is gone too. */
        conn_abort(c);
        return;
    }
    c->last_active = uv_now(s->loop);
    uint8_t *data = (uint8_t *)buf->base;
    switch (c->state) {
    case CONN_HTTP:
        http_input(c, data, (size_t)nread);
        break;
    case CONN_WS:
        ws_input(c, data, (size_t)nread);
        break;
    default:
        break;                  /* closing: the rest is not read */
    }
}

void conn_start(server *s, conn *c)
{
    c->srv = s;
    c->state = CONN_HTTP;
    c->last_active = c->last_ping = uv_now(s->loop);
    c->deadline = c->last_active + s->cfg->handshake_timeout_ms;
    uv_tcp_nodelay(&c->tcp, 1);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) conn_abort(c);
}
