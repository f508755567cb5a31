/* conn.c -- a connection's life on the socket: reading, the HTTP phase,
 * the WebSocket phase, its output queue of shared buffers, flushing once
 * per loop turn, and the ways a connection ends. */
#include "conn.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin.h"
#include "bans.h"
#include "conn_addr.h"
#include "counters.h"
#include "sys.h"
#include "tls_conn.h"
#include "web.h"
#include "worker.h"

#define MAX_IOV 64

typedef struct write_req {
    uv_write_t req;
    uv_buf_t bufs[MAX_IOV];
} write_req;

/* What one connection may read in a loop turn before the others have
 * had theirs and the turn's output has been written. */
#define READ_TURN_SHARE (256 * 1024)

/* Past --outbound-cap, a client that took nothing for this long goes. What
 * it holds is mostly the room's frames, shared with every reader: a reader
 * may fall far behind a burst of many senders' maximum-size says (ten
 * senders' bursts are 33 MB) and still catch up, so only sixteen times the
 * cap at once drops a client that is making progress. */
#define OVER_CAP_GRACE_MS 1000
#define OVER_CAP_HARD 16

/* Bytes read from a closing connection, in a turn, before it is read no more. */
#define WS_CLOSING_READ (64 * 1024)

/* Pings and pongs a client may send: no client needs more than a few a
 * minute, and each costs a read and (for a ping) an answer. */
#define CONTROL_BURST 100
#define CONTROL_PER_SEC 10

static void on_close(uv_handle_t *h);
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);
static void http_resume(conn *c);

/* ---- reading, paused and resumed ---------------------------------------- */

/* --message-timeout is for clients that send slowly: while we do not read
 * (the hub is behind, the turn's share is used) the clock of an unfinished
 * message stops, so an honest sender is never closed for our slowness. A
 * client that leaves its pongs unread is the one stalling: its clock runs. */
static void hold_message_clock(conn *c, bool reading, bool its_fault)
{
    uint64_t now = uv_now(c->w->loop);
    if (!reading) {
        c->unread_since = c->partial_since && !its_fault ? now : 0;
    } else if (c->unread_since) {
        if (c->partial_since) c->partial_since += now - c->unread_since;
        c->unread_since = 0;
    }
}

/* Reading stops while the connection has read its share of the turn,
 * while an HTTP answer of its is unsent, while too much of its input is on
 * the way to the hub, while our pong to it waits for a
 * socket it does not empty (pings are read no faster than pongs), and for
 * good once it is dropped for not reading. */
void conn_update_reading(conn *c)
{
    bool pong_stuck = c->writing && c->q.done < c->pong_end;
    bool want = !c->closed && !c->deaf && !c->turn_full && !c->http_waiting && !pong_stuck &&
                !__atomic_load_n(&c->hub_full, __ATOMIC_SEQ_CST);
    if (want == c->reading) return;
    c->reading = want;
    hold_message_clock(c, want, pong_stuck);
    if (!want) {
        uv_read_stop((uv_stream_t *)&c->tcp);
    } else if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
        c->reading = false;
        conn_abort(c);
    }
}

static void count_read(conn *c, size_t n)
{
    worker *w = c->w;
    if (c->turn != w->turns) {
        c->turn = w->turns;
        c->turn_read = 0;
    }
    c->turn_read += (uint32_t)n;
    if (c->turn_read < READ_TURN_SHARE) return;
    conn_pause_turn(c);
}

void conn_pause_turn(conn *c)
{
    worker *w = c->w;
    if (c->turn_full || c->closed) return;
    c->turn_full = true;
    c->turn_full_next = w->turn_full;
    w->turn_full = c;
    conn_update_reading(c);
}

/* Runs in the loop's check phase, before any handle closed in this turn
 * has had its close callback: every connection on the list is alive. */
void conn_turn_end(worker *w)
{
    w->turns++;
    while (w->turn_full) {
        conn *c = w->turn_full;
        w->turn_full = c->turn_full_next;
        c->turn_full_next = NULL;
        c->turn_full = false;
        conn_update_reading(c);
    }
}


/* ---- output queue ----------------------------------------------------- */

static void mark_dirty(conn *c)
{
    if (c->dirty) return;
    c->dirty = true;
    c->dirty_next = c->w->dirty;
    c->w->dirty = c;
    c->w->n_dirty++;
}




static int queue_push(conn *c, ws_frame *f)
{
    bool was_empty = c->q.len == 0;
    if (outq_push(&c->q, f) < 0) return -1;
    if (was_empty) c->last_progress = uv_now(c->w->loop);
    mark_dirty(c);
    return 0;
}

static void queue_consume(conn *c, size_t n)
{
    if (n == 0) return;
    c->last_progress = uv_now(c->w->loop);
    COUNTER_ADD(c->w->stats.bytes_out, (uint64_t)n);
    COUNTER_ADD(c->w->stats.frames_out, outq_consume(&c->q, n, &c->w->stats.delivery));
}

void conn_consumed(conn *c, size_t n)
{
    queue_consume(c, n);
}

/* Queues f, taking the caller's reference; false when it was not queued
 * (the reference is still the caller's). */
static bool conn_take(conn *c, ws_frame *f)
{
    if (c->closed || c->overflow || c->state == CONN_CLOSING) return false;
    /* The outbound cap is applied after this turn's write (conn_flush_dirty):
     * a reader that keeps up is never dropped for what one turn queued. */
    if (queue_push(c, f) < 0) {
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


static void conn_flush(conn *c);
static void answer_latest_ping(conn *c);
static void answer_ping(conn *c, const uint8_t *data, size_t n);

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
    conn_write_done(c, status);
}

void conn_write_done(conn *c, int status)
{
    if (status == UV_ECANCELED) return;     /* closing: the queue goes with it */
    c->writing = false;
    if (status < 0) {           /* nothing counted as sent; the queue goes at close */
        c->inflight = 0;
        conn_abort(c);
        return;
    }
    queue_consume(c, c->inflight);
    c->inflight = 0;
    conn_update_reading(c);
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
    uint32_t n = outq_fill_iov(&c->q, w->bufs, MAX_IOV, &bytes);
    w->req.data = c;
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, w->bufs, n, after_write) < 0) {
        free(w);
        conn_abort(c);
        return;
    }
    c->writing = true;
    c->inflight = bytes;
    conn_update_reading(c);
}

/* Writes everything queued with as few system calls as the kernel allows. */
static void conn_flush(conn *c)
{
    if (c->closed || c->writing) return;
    if (c->tls) {
        if (!tls_conn_flush(c)) return;
    } else while (c->q.len) {
        uv_buf_t iov[MAX_IOV];
        size_t bytes;
        uint32_t n = outq_fill_iov(&c->q, iov, MAX_IOV, &bytes);
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
    if (c->close_after_flush) {
        conn_finish(c);
        return;
    }
    if (c->want_drain) {
        c->want_drain = false;
        c->w->link->drained(c);
    }
    if (c->next_ping) answer_latest_ping(c);
    if (c->http_waiting && !c->http_later) http_resume(c);
}

/* Past --outbound-cap unwritten after a write, with nothing written for
 * OVER_CAP_GRACE_MS, or past OVER_CAP_HARD times it at once: a reader
 * that keeps reading drains a busy room's burst however far behind it is
 * for a moment, one that does not read is dropped within the grace. */
static bool over_cap(conn *c)
{
    size_t cap = c->w->cfg->outbound_cap;
    if (c->q.bytes <= cap) return false;
    return c->q.bytes > OVER_CAP_HARD * cap ||
           uv_now(c->w->loop) - c->last_progress >= OVER_CAP_GRACE_MS;
}

void conn_flush_dirty(worker *w)
{
    w->n_dirty = 0;
    while (w->dirty) {
        conn *c = w->dirty;
        w->dirty = c->dirty_next;
        c->dirty = false;
        c->dirty_next = NULL;
        conn_flush(c);
        if (!c->overflow && over_cap(c)) c->overflow = true;
        if (c->overflow && !c->closed && c->state != CONN_CLOSING) {
            COUNTER_ADD(w->stats.slow_closed, 1);
            /* A peer that reads nothing gets nothing more read either:
             * otherwise it could keep us busy for the whole grace period. */
            c->deaf = true;
            conn_update_reading(c);
            conn_close_ws(c, WS_CLOSE_POLICY, "outbound queue full: client too slow");
            conn_flush(c);
        }
    }
}

/* ---- closing ---------------------------------------------------------- */

static void leave_chat(conn *c)
{
    c->held = c->w->link->leave(c);
}

/* Every close handshake, either side's: the server gives a reason, the
 * client's close carries none we keep. 1000 and 1001 are the usual ends;
 * the others mean a limit or a broken client. */
static void log_close(const conn *c, unsigned code, const char *reason)
{
    bool usual = code == WS_CLOSE_NORMAL || code == WS_CLOSE_GOING_AWAY || !reason;
    log_event(usual ? LOG_INFO : LOG_WARN, "close", "code=%u reason=%s by=%s addr=%s", code, reason,
              reason ? "server" : "client", c->addr_text);
}

void conn_close_ws(conn *c, unsigned code, const char *reason)
{
    if (c->closed || c->state == CONN_CLOSING) return;
    log_close(c, code, reason);
    COUNTER_ADD(c->w->stats.closes[close_slot(code)], 1);
    c->state = CONN_CLOSING;
    c->deadline = uv_now(c->w->loop) + CLOSE_GRACE_MS;
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
    /* The socket closes here: its address may connect again at once, also
     * to another loop, while this one or the hub still holds the memory. */
    ip_release(c->w->ips, c->ip);
    c->ip = NULL;
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

/* The memory goes when both the handle and the hub are done with it. */
static void on_close(uv_handle_t *h)
{
    conn *c = (conn *)h;
    outq_free(&c->q);
    if (c->partial_held) __atomic_fetch_sub(c->w->partial_bytes, c->partial_held, __ATOMIC_RELAXED);
    c->partial_held = 0;
    ws_reader_free(&c->rd);
    ws_inflater_free(&c->inf);
    if (c->deflate_held) __atomic_fetch_sub(c->w->deflate_bytes, c->deflate_held, __ATOMIC_RELAXED);
    c->deflate_held = 0;
    free(c->req);
    c->req = NULL;
    free(c->next_ping);
    c->next_ping = NULL;
    free(c->stash);
    c->stash = NULL;
    free(c->proxy);
    c->proxy = NULL;
    tls_conn_free(c->tls);
    c->tls = NULL;
    c->handle_closed = true;
    if (!c->held) {
        worker_forget(c->w, c);
        free(c);
    }
}

void conn_release(conn *c)
{
    c->held = false;
    if (c->handle_closed) {
        worker_forget(c->w, c);
        free(c);
    }
}

/* ---- reading ---------------------------------------------------------- */

/* One buffer serves every read of the loop: a read is consumed before the
 * next starts, so idle connections hold no read memory at all. */
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    worker *w = ((conn *)h)->w;
    if (w->readbuf_busy) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    w->readbuf_busy = true;
    *buf = uv_buf_init((char *)w->readbuf, READ_BUFFER_SIZE);
}

static int on_ws_message(void *ud, uint8_t opcode, uint8_t *data, size_t n)
{
    conn *c = ud;
    if (c->state != CONN_WS) return 1;
    c->last_active = uv_now(c->w->loop);
    COUNTER_ADD(c->w->stats.messages_in, 1);
    if (opcode == WS_OP_TEXT)
        c->w->link->text(c, data, n);
    else
        c->w->link->binary(c);
    return c->state != CONN_WS;
}

static bool control_allowed(conn *c)
{
    uint64_t now = uv_now(c->w->loop);
    float t = c->ctl_tokens + (float)(now - c->ctl_at) * CONTROL_PER_SEC / 1000.0f;
    c->ctl_at = now;
    c->ctl_tokens = t > CONTROL_BURST ? CONTROL_BURST : t;
    if (c->ctl_tokens < 1) return false;
    c->ctl_tokens -= 1;
    return true;
}

static int on_ws_control(void *ud, uint8_t opcode, uint8_t *data, size_t n)
{
    conn *c = ud;
    if (opcode != WS_OP_CLOSE && !control_allowed(c)) {
        conn_close_ws(c, WS_CLOSE_POLICY, "too many pings");
        return 1;
    }
    if (opcode == WS_OP_PING) {
        answer_ping(c, data, n);
        return 0;
    }
    /* A ping is not activity: a client that never reads what we send
     * could otherwise keep itself alive by pinging. */
    c->last_active = uv_now(c->w->loop);
    if (opcode == WS_OP_PONG) return 0;
    /* A close: answer with the peer's code (1000 when it gave none). */
    unsigned code = n >= 2 ? ((unsigned)data[0] << 8 | data[1]) : WS_CLOSE_NORMAL;
    conn_close_ws(c, code, NULL);
    return 1;
}

static const ws_reader_cb reader_cb = { on_ws_message, on_ws_control };

/* Unfinished messages: counted against the process's budget, and given a
 * deadline (conn_sweep) from their first byte. */
static void track_partial(conn *c)
{
    size_t held = ws_reader_held(&c->rd);
    if (held != c->partial_held) {
        size_t total = __atomic_add_fetch(c->w->partial_bytes, held - c->partial_held, __ATOMIC_RELAXED);
        bool grew = held > c->partial_held;
        c->partial_held = held;
        if (grew && total > c->w->cfg->partial_budget) {
            conn_close_ws(c, WS_CLOSE_POLICY, "server busy: too many unfinished messages");
            return;
        }
    }
    if (!ws_reader_in_message(&c->rd)) c->partial_since = 0;
    else if (!c->partial_since) c->partial_since = uv_now(c->w->loop) | 1;
}

static void ws_input(conn *c, uint8_t *data, size_t n)
{
    int rc = ws_reader_feed(&c->rd, data, n, &reader_cb, c, NULL);
    if (rc > 0) {
        const char *why = rc == WS_CLOSE_BAD_DATA ? (c->deflate ? "invalid UTF-8 or compressed data"
                                                               : "invalid UTF-8")
                        : rc == WS_CLOSE_TOO_BIG ? "message too big"
                        : rc == WS_CLOSE_INTERNAL ? "out of memory"
                                                  : "protocol error";
        conn_close_ws(c, (unsigned)rc, why);
    }
    if (c->state == CONN_WS) track_partial(c);
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

/* What is queued is the last thing it gets. */
static void close_after_output(conn *c)
{
    c->state = CONN_CLOSING;
    c->deadline = uv_now(c->w->loop) + CLOSE_GRACE_MS;
    c->close_after_flush = true;
}

/* How offers of permessage-deflate are answered (docs/deflate.md has the
 * measurements): a client that lets us choose its window gets 4 KiB, which
 * compresses chat nearly as well as 32 KiB; its inflate context (zlib's
 * state and that window) stays between messages while the contexts of all
 * clients fit --deflate-memory, and past that new clients are asked to
 * keep no context (then they hold nothing between messages). */
#define DEFLATE_CLIENT_BITS 12
#define INFLATE_STATE_BYTES 7400       /* zlib's inflate_state and z_stream */

static ws_pmd_policy deflate_policy(const worker *w)
{
    size_t worst = INFLATE_STATE_BYTES + (1u << 15);
    size_t held = __atomic_load_n(w->deflate_bytes, __ATOMIC_RELAXED);
    return (ws_pmd_policy){ .client_bits = DEFLATE_CLIENT_BITS,
                            .client_no_context_takeover = held + worst > w->cfg->deflate_memory };
}

/* The reader's inflater: the connection's, with the messages counted. */
static int conn_inflate(void *cp, const uint8_t *in, size_t n, bool last, ws_inflate_out *out)
{
    conn *c = cp;
    int rc = ws_inflate(&c->inf, in, n, last, out);
    if (last && rc == 0) COUNTER_ADD(c->w->stats.inflated, 1);
    return rc;
}

/* permessage-deflate agreed: the client's messages are inflated, and a
 * kept context is counted. */
static void start_deflate(conn *c, const ws_pmd *pmd)
{
    bool keep = !pmd->client_no_context_takeover;
    c->deflate = true;
    c->deflate_bits = pmd->server_bits;
    ws_inflater_init(&c->inf, pmd->client_bits, keep);
    ws_reader_set_inflate(&c->rd, conn_inflate, c);
    if (keep) {
        c->deflate_held = INFLATE_STATE_BYTES + (1u << c->inf.bits);
        __atomic_fetch_add(c->w->deflate_bytes, c->deflate_held, __ATOMIC_RELAXED);
    }
    COUNTER_ADD(c->w->stats.deflate_handshakes, 1);
}

static void refuse(conn *c, sbuf *out)
{
    send_bytes(c, out);
    close_after_output(c);
}

/* The request is an upgrade: become a WebSocket or refuse. */
static void upgrade(conn *c, sbuf *out)
{
    worker *w = c->w;
    net_addr a = { .len = c->addr_len };
    memcpy(a.bytes, c->addr, sizeof a.bytes);
    if (w->bans && a.len && bans_address(w->bans, &a, wall_ms())) {
        log_event(LOG_INFO, "banned", "addr=%s", c->addr_text);
        http_error_response(out, 403, NULL, "Your address is banned from this server.\n");
        refuse(c, out);
        return;
    }
    ws_pmd pmd;
    ws_pmd_policy pol = deflate_policy(w);
    int status = handshake_answer(c->req, w->cfg, c->port == PORT_HTTP, &pol, &pmd, out);
    if (status != 101) {
        refuse(c, out);
        return;
    }
    send_bytes(c, out);
    if (c->closed) return;          /* never reaches the chat: no ghost user */
    free(c->req);
    c->req = NULL;
    c->state = CONN_WS;
    c->last_active = c->ctl_at = uv_now(w->loop);
    c->ctl_tokens = CONTROL_BURST;
    bucket_init(&c->in_rate, w->cfg->chat.burst, c->last_active);
    ws_reader_init(&c->rd, w->cfg->max_message);
    if (pmd.on) start_deflate(c, &pmd);
    COUNTER_ADD(w->stats.handshakes, 1);
    w->link->connect(c);
}

/* An operator's request: answered now (an error) or, once the hub has
 * run it, by conn_http_answered; either way the connection then closes.
 * Nothing more is read meanwhile, and the memory stays until the answer. */
static void admin_request(conn *c, sbuf *out)
{
    admin_cmd *cmd = admin_http(c, out);
    if (!cmd) {
        refuse(c, out);
        return;
    }
    c->http_later = true;
    c->http_waiting = true;
    c->held = true;
    conn_update_reading(c);
    c->w->link->admin(c, cmd);      /* with one thread, answered right here */
}

void conn_http_answered(conn *c, ws_frame *answer)
{
    c->http_later = false;
    if (!c->closed && answer) {
        conn_send_forced(c, answer);
        c->state = CONN_CLOSING;
        c->deadline = uv_now(c->w->loop) + CLOSE_GRACE_MS;
        c->close_after_flush = true;
    } else if (!c->closed) {
        conn_abort(c);
    }
    if (answer) ws_frame_unref(answer);
    conn_release(c);
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
    if (wants_websocket(c->req) && !conn_count_forwarded(c, c->req)) {
        conn_refuse_busy(c);
    } else if (wants_websocket(c->req)) {
        upgrade(c, &out);
    } else if (c->port == PORT_HTTP && admin_path(c->req->arena + c->req->url.off, c->req->url.len)) {
        admin_request(c, &out);
    } else if (c->port == PORT_HTTP) {
        bool close_after = false;
        ws_frame *body = NULL;
        webpage_answer(c->req, &c->w->web, &out, &close_after, &body);
        if (close_after) {
            refuse(c, &out);
            if (body) conn_send_forced(c, body);
        } else {
            send_bytes(c, &out);
            if (body) conn_send_forced(c, body);
            http_req_reset(c->req);
            c->deadline = uv_now(c->w->loop) + c->w->cfg->handshake_timeout_ms;
            go_on = true;
        }
        if (body) ws_frame_unref(body);
    } else {
        http_error_response(&out, 400, NULL,
            "This port speaks WebSocket only: send an Upgrade: websocket request.\n");
        refuse(c, &out);
    }
    sbuf_free(&out);
    return go_on;
}

/* One request at a time: while an answer is unsent, the bytes behind its
 * request wait here (at most one read) and nothing more is read, so a
 * client that pipelines requests and never reads holds one answer. */
static void http_wait(conn *c, const uint8_t *data, size_t n)
{
    c->http_waiting = true;
    if (n) {
        /* Appended: out of TLS one read can bring several records. The
         * reading stops here, so that is one read's worth at most. */
        uint8_t *p = realloc(c->stash, c->stash_len + n);
        if (!p) {
            conn_abort(c);
            return;
        }
        memcpy(p + c->stash_len, data, n);
        c->stash = p;
        c->stash_len += (uint32_t)n;
    }
    conn_update_reading(c);
}

/* The start of a trusted proxy's connection: its PROXY header is taken
 * off, and what it held back goes to next (HTTP, or the TLS handshake).
 * False when the rest must wait (or the connection ended). */
static bool strip_proxy(conn *c, uint8_t **data, size_t *n, void (*next)(conn *, uint8_t *, size_t))
{
    uint8_t held[PROXY_SIG_MAX];
    size_t held_n = 0;
    switch (conn_proxy_input(c, data, n, held, &held_n)) {
    case CONN_PROXY_STOP:
        return false;
    case CONN_PROXY_REPLAY:
        next(c, held, held_n);
        return !c->closed;
    case CONN_PROXY_GO_ON:
        break;
    }
    return true;
}

static void http_input(conn *c, uint8_t *data, size_t n)
{
    if (!strip_proxy(c, &data, &n, http_input)) return;
    while (n && c->state == CONN_HTTP && !c->closed) {
        if (!c->req) {
            c->req = malloc(sizeof *c->req);
            if (!c->req) {
                conn_abort(c);
                return;
            }
            http_req_init(c->req, c->w->cfg->max_header);
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
        http_wait(c, data, n);
        return;
    }
    /* Bytes right behind the upgrade request are the first frames. */
    if (n && c->state == CONN_WS) ws_input(c, data, n);
}

/* The answer is out: the next request may be read. */
static void http_resume(conn *c)
{
    uint8_t *stash = c->stash;
    uint32_t n = c->stash_len;
    c->stash = NULL;
    c->stash_len = 0;
    c->http_waiting = false;
    if (stash) http_input(c, stash, n);
    free(stash);
    conn_update_reading(c);
}

/* Plaintext, from the socket or out of TLS. Returns false once the
 * connection wants no more of it. */
static bool conn_input(conn *c, uint8_t *data, size_t n)
{
    if (c->http_waiting) {
        http_wait(c, data, n);      /* TLS: the next record of the same read */
    } else if (c->state == CONN_HTTP) {
        http_input(c, data, n);
    } else if (c->state == CONN_WS) {
        ws_input(c, data, n);
    }
    return !c->closed && c->state != CONN_CLOSING;
}

/* ---- TLS: the transport under the plaintext (tls_conn.c) ------------------ */

static void tls_feed(conn *c, uint8_t *data, size_t n)
{
    switch (tls_conn_input(c, data, n, conn_input)) {
    case TLS_IN_OK:
        tls_conn_pace(c->w);
        break;
    case TLS_IN_REFUSED:
        close_after_output(c);
        break;
    case TLS_IN_FAILED:
        if (c->closed) return;
        tls_conn_flush(c);              /* the alert, if the kernel takes it now */
        conn_abort(c);
        return;
    }
    if (!c->closed && tls_conn_wants_write(c->tls)) mark_dirty(c);
}

/* A trusted proxy's PROXY header comes before the TLS handshake. */
static void tls_input(conn *c, uint8_t *data, size_t n)
{
    if (strip_proxy(c, &data, &n, tls_feed) && n) tls_feed(c, data, n);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = (conn *)st;
    worker *w = c->w;
    if (buf->base == (char *)w->readbuf) w->readbuf_busy = false;
    if (nread == 0 || c->closed) return;
    if (nread < 0) {
        /* EOF or reset: a peer that left without a close frame is gone too. */
        conn_abort(c);
        return;
    }
    uint8_t *data = (uint8_t *)buf->base;
    if (c->state == CONN_CLOSING) {
        /* Closing: read only to see the peer's end, and not for long (a
         * flooder closed for flooding would keep us busy to the deadline). */
        if (c->turn_read + (size_t)nread > WS_CLOSING_READ) {
            c->deaf = true;
            conn_update_reading(c);
        }
    } else if (c->tls) {
        tls_input(c, data, (size_t)nread);
    } else {
        conn_input(c, data, (size_t)nread);
    }
    count_read(c, (size_t)nread);
}

void conn_start(worker *w, conn *c)
{
    c->w = w;
    c->state = CONN_HTTP;
    c->last_active = c->last_ping = uv_now(w->loop);
    c->deadline = c->last_active + w->cfg->handshake_timeout_ms;
    if (w->cfg->tls && !(c->tls = tls_conn_new(w->cfg->tls))) {
        conn_abort(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    conn_update_reading(c);
}

/* ---- pings and pongs ---------------------------------------------------- */

/* A pong answers each ping, but while our last pong is still queued only
 * the latest ping is remembered (RFC 6455 5.5.3 allows answering just
 * the most recent one): a client that pings and never reads holds one. */
static void answer_ping(conn *c, const uint8_t *data, size_t n)
{
    if (c->q.done < c->pong_end) {
        if (!c->next_ping && !(c->next_ping = malloc(1 + WS_MAX_CONTROL))) return;
        c->next_ping[0] = (uint8_t)n;
        memcpy(c->next_ping + 1, data, n);
        return;
    }
    ws_frame *f = ws_frame_new(WS_OP_PONG, data, n);
    if (!f) return;
    if (conn_take(c, f)) c->pong_end = c->q.done + c->q.bytes;
    else ws_frame_unref(f);
}

static void answer_latest_ping(conn *c)
{
    if (c->q.done < c->pong_end) return;
    uint8_t *p = c->next_ping;
    c->next_ping = NULL;
    answer_ping(c, p + 1, p[0]);
    free(p);
}

static void send_ping(conn *c, uint64_t now)
{
    ws_frame *f = ws_frame_new(WS_OP_PING, NULL, 0);
    if (!f) return;
    conn_send(c, f);
    ws_frame_unref(f);
    c->last_ping = now;
}

/* ---- deadlines ------------------------------------------------------------ */

void conn_sweep(conn *c, uint64_t now)
{
    const server_config *cfg = c->w->cfg;
    /* (c->writing: with TLS the bytes under way are no longer in the queue) */
    if ((c->q.len || c->writing) && now - c->last_progress >= cfg->write_timeout_ms) {
        /* Nothing it was sent has moved for that long: not even a close
         * frame would reach it. */
        COUNTER_ADD(c->w->stats.slow_closed, 1);
        log_event(LOG_WARN, "write_timeout", "addr=%s unwritten=%zu", c->addr_text, c->q.bytes);
        conn_abort(c);
        return;
    }
    if (c->state != CONN_CLOSING && !c->overflow && over_cap(c)) {
        c->overflow = true;
        mark_dirty(c);              /* closed at the turn's flush */
        return;
    }
    switch (c->state) {
    case CONN_HTTP:
        if (now >= c->deadline) conn_abort(c);
        break;
    case CONN_WS:
        if (c->partial_since && !c->unread_since &&
            now - c->partial_since >= cfg->message_timeout_ms)
            conn_close_ws(c, WS_CLOSE_POLICY, "message not finished in time");
        else if (now - c->last_active >= cfg->idle_timeout_ms)
            conn_close_ws(c, WS_CLOSE_POLICY, "idle timeout");
        else if (now - c->last_active >= cfg->ping_interval_ms &&
                 now - c->last_ping >= cfg->ping_interval_ms)
            send_ping(c, now);
        else
            outq_shrink(&c->q);         /* idle: give the ring back */
        break;
    default:
        if (now >= c->deadline) conn_abort(c);
    }
}
