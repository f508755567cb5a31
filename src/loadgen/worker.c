/* worker.c -- a `tagarela bench` worker: one libuv loop over its share
 * of the clients. It connects them (spread over 127.0.0.x source addresses),
 * does the WebSocket handshake and the login, sends says (as fast as the
 * window allows or at a rate) and reads everything the server sends.
 *
 * Reads land in the loop's one read buffer and frames are parsed in place;
 * only the first BENCH_PREFIX bytes of a message are looked at (a frame that
 * spans reads keeps just that much). Output is appended to a per-client
 * buffer and written once per loop turn; no allocation per message. With
 * --deflate, compressed messages are inflated whole by the loop's one
 * inflater (the server keeps no context between them). */
#define _GNU_SOURCE             /* memmem */
#include "loadgen_int.h"
#include "ws_codec.h"

#include <errno.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>

#define RBUF_SIZE (256 * 1024)
#define HS_ACCEPT 32                /* hs[0..28]: the expected accept value */
#define HS_MAX 8192                 /* a handshake response larger: refused */

static void client_gone(bench_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void flush(bench_client *c);

static uint64_t rng_next(bench_worker *w)
{
    uint64_t x = w->rng;            /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    w->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

unsigned bench_room_members(const bench_opts *o, unsigned room)
{
    unsigned rooms = o->rooms ? o->rooms : 1;
    if (room >= rooms || room >= o->clients) return 0;
    return (o->clients - room + rooms - 1) / rooms;
}

/* ---- output ------------------------------------------------------------ */

int bench_out_reserve(bench_client *c, size_t extra)
{
    if (c->out_len + extra <= c->out_cap) return 0;
    size_t cap = c->out_cap ? c->out_cap : 512;
    while (cap < c->out_len + extra) cap *= 2;
    uint8_t *p = realloc(c->out, cap);
    if (!p) {
        bench_fail(c->w->run, "out of memory");
        return -1;
    }
    c->out = p;
    c->out_cap = (uint32_t)cap;
    return 0;
}

static void mark_dirty(bench_client *c)
{
    if (c->dirty) return;
    c->dirty = true;
    c->dirty_next = c->w->dirty;
    c->w->dirty = c;
}

static int send_raw(bench_client *c, const void *data, size_t n)
{
    if (c->state == CS_DEAD || bench_out_reserve(c, n)) return -1;
    memcpy(c->out + c->out_len, data, n);
    c->out_len += (uint32_t)n;
    mark_dirty(c);
    return 0;
}

/* Appends one frame, masked with a fresh random key as a client must. */
static int send_frame(bench_client *c, uint8_t op, const void *payload, size_t n)
{
    if (c->state == CS_DEAD || bench_out_reserve(c, WS_MAX_HEADER + n)) return -1;
    uint64_t r = rng_next(c->w);
    uint8_t mask[4];
    memcpy(mask, &r, 4);
    uint8_t *p = c->out + c->out_len;
    size_t h = ws_header_write(p, true, false, op, n, mask);
    memcpy(p + h, payload, n);
    ws_unmask(p + h, n, mask, 0);
    c->out_len += (uint32_t)(h + n);
    mark_dirty(c);
    return 0;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    /* nothing to do: the server's EOF (or the end of the run) closes it */
}

/* After a close frame: once ours is written, FIN, then read until EOF so
 * that no unread byte turns our close into a reset. */
static void shutdown_if_flushed(bench_client *c)
{
    if (c->state != CS_CLOSING || c->writing || c->out_len || c->closing) return;
    c->closing = true;
    c->sreq.data = c;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
        client_gone(c, "shutdown failed");
}

static void on_write(uv_write_t *req, int status)
{
    bench_client *c = req->data;
    c->writing = false;
    if (status < 0) {
        if (status != UV_ECANCELED) client_gone(c, "write failed: %s", uv_strerror(status));
        return;
    }
    if (c->out_len) flush(c);
    else shutdown_if_flushed(c);
}

/* Writes what is pending: at once if the socket takes it, else through
 * uv_write from the other buffer while new output goes on piling up. */
static void flush(bench_client *c)
{
    if (c->ssl && !c->writing && c->state != CS_DEAD && bench_tls_seal(c) < 0) {
        client_gone(c, "TLS: cannot encrypt");
        return;
    }
    if (c->writing || !c->out_len || c->state == CS_DEAD) return;
    uv_buf_t b = uv_buf_init((char *)c->out, c->out_len);
    int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (r == (int)c->out_len) {
        c->out_len = 0;
        shutdown_if_flushed(c);
        return;
    }
    if (r < 0 && r != UV_EAGAIN) {
        client_gone(c, "write failed: %s", uv_strerror(r));
        return;
    }
    size_t done = r > 0 ? (size_t)r : 0;
    uint8_t *t = c->wbuf;
    uint32_t tcap = c->wbuf_cap, len = c->out_len;
    c->wbuf = c->out;
    c->wbuf_cap = c->out_cap;
    c->out = t;
    c->out_cap = tcap;
    c->out_len = 0;
    b = uv_buf_init((char *)c->wbuf + done, (unsigned)(len - done));
    c->wreq.data = c;
    r = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (r) client_gone(c, "write failed: %s", uv_strerror(r));
    else c->writing = true;
}

static void on_check(uv_check_t *h)
{
    bench_worker *w = h->data;
    while (w->dirty) {
        bench_client *c = w->dirty;
        w->dirty = c->dirty_next;
        c->dirty = false;
        flush(c);
    }
}

/* ---- closing ----------------------------------------------------------- */

static void on_close(uv_handle_t *h)
{
    bench_client *c = h->data;
    c->handle_open = false;
}

static void close_client(bench_client *c)
{
    c->state = CS_DEAD;
    free(c->hs);
    c->hs = NULL;
    if (c->handle_open && !uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, on_close);
}

/* Counts a client's end. Before its login that fails the run; after it,
 * it is a disconnect (the first one's reason is kept). */
static void note_gone(bench_client *c, const char *why)
{
    bench_worker *w = c->w;
    if (w->phase == PHASE_STOP || c->state == CS_CLOSING || c->state == CS_DEAD) return;
    if (c->state < CS_READY) {
        w->connecting--;
        bench_fail(w->run, "client %u (%s): %s", c->idx,
                   c->state == CS_CONNECTING ? "connecting" :
                   c->state == CS_HANDSHAKE ? "during the handshake" :
                   "logging in", why);
    } else {
        COUNTER_ADD(w->disconnects, 1);
        bench_note_disconnect(w->run, "client %u: %s", c->idx, why);
    }
}

/* The connection ended (the server closed it, an error, a bad frame). */
static void client_gone(bench_client *c, const char *fmt, ...)
{
    if (c->state == CS_DEAD) return;
    char why[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    note_gone(c, why);
    close_client(c);
}

/* ---- connect and handshake -------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    bench_client *c = h->data;
    buf->base = (char *)c->w->rbuf;
    buf->len = c->w->rbuf_size;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void send_handshake(bench_client *c)
{
    const bench_opts *o = c->w->o;
    const bench_target *t = &o->targets[c->idx % o->n_targets];
    uint8_t raw[16];
    uint64_t a = rng_next(c->w), b = rng_next(c->w);
    memcpy(raw, &a, 8);
    memcpy(raw + 8, &b, 8);
    char key[32];
    EVP_EncodeBlock((unsigned char *)key, raw, 16);     /* 24 chars + NUL */
    c->hs = malloc(HS_MAX);
    if (!c->hs) {
        bench_fail(c->w->run, "out of memory");
        return;
    }
    ws_accept_key(key, 24, c->hs);
    c->hs_len = 0;
    char req[1300];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s\r\n", t->path, t->host, t->port, key,
                     o->deflate ? "Sec-WebSocket-Extensions: permessage-deflate; "
                                  "client_max_window_bits\r\n" : "");
    c->state = CS_HANDSHAKE;
    send_raw(c, req, (size_t)n);
}

static void on_connect(uv_connect_t *req, int status)
{
    bench_client *c = req->data;
    if (status == UV_ECANCELED || c->state == CS_DEAD) return;
    if (status < 0) {
        bench_fail(c->w->run, "cannot connect to %s: %s", c->w->o->url, uv_strerror(status));
        c->w->connecting--;
        close_client(c);
        return;
    }
    int r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (r) {
        client_gone(c, "read: %s", uv_strerror(r));
        return;
    }
    if (!c->w->o->tls) {
        send_handshake(c);
    } else if (bench_tls_start(c) < 0) {
        client_gone(c, "TLS: cannot start a session");
    } else {
        c->state = CS_HANDSHAKE;
        mark_dirty(c);              /* the ClientHello */
    }
}

static void bind_source(bench_client *c)
{
    const bench_opts *o = c->w->o;
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0) {
        /* the port is chosen at connect time, per destination: the same
         * source port can serve many connections */
        int one = 1;
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(0x7F000001u + c->idx % o->src_addrs);
    /* on failure the kernel picks the source itself */
    uv_tcp_bind(&c->tcp, (const struct sockaddr *)&sa, 0);
}

static void start_client(bench_worker *w, bench_client *c)
{
    c->state = CS_CONNECTING;
    c->t_start = bench_now_ns();
    w->connecting++;
    COUNTER_ADD(w->started_n, 1);
    if (!COUNTER_GET(w->first_connect_ns)) COUNTER_SET(w->first_connect_ns, c->t_start);
    int r = uv_tcp_init_ex(&w->loop, &c->tcp, AF_INET);
    if (r) {
        w->connecting--;
        c->state = CS_DEAD;
        bench_fail(w->run, "client %u: socket: %s%s", c->idx, uv_strerror(r),
                   r == UV_EMFILE ? " (raise the open files limit)" : "");
        return;
    }
    c->handle_open = true;
    c->tcp.data = c;
    if (w->o->loopback && w->o->src_addrs > 1) bind_source(c);
    uv_tcp_nodelay(&c->tcp, 1);
    c->creq.data = c;
    const bench_target *t = &w->o->targets[c->idx % w->o->n_targets];
    r = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&t->addr, on_connect);
    if (r) {
        w->connecting--;
        bench_fail(w->run, "cannot connect to %s: %s", w->o->url, uv_strerror(r));
        close_client(c);
    }
}

/* Starts connections while under the in-flight bound and the rate. */
static void start_more(bench_worker *w)
{
    const bench_opts *o = w->o;
    if (w->phase != PHASE_CONNECT || COUNTER_GET(w->run->failed)) return;
    if (o->connect_rate > 0) {
        uint64_t now = bench_now_ns();
        double per = o->connect_rate / o->threads;
        w->conn_tokens += (double)(now - w->conn_last) * per / 1e9;
        double cap = per / 100 > 1 ? per / 100 : 1;   /* 10 ms worth */
        if (w->conn_tokens > cap) w->conn_tokens = cap;
        w->conn_last = now;
    }
    while (w->next_connect < w->nclients && w->connecting < w->max_connecting) {
        if (o->connect_rate > 0) {
            if (w->conn_tokens < 1) break;
            w->conn_tokens -= 1;
        }
        start_client(w, w->clients[w->next_connect++]);
    }
}

static bool header_is(const char *line, size_t n, const char *name, const char **val, size_t *vlen)
{
    size_t k = strlen(name);
    if (n <= k || strncasecmp(line, name, k) != 0 || line[k] != ':') return false;
    const char *v = line + k + 1, *e = line + n;
    while (v < e && (*v == ' ' || *v == '\t')) v++;
    while (e > v && (e[-1] == ' ' || e[-1] == '\t')) e--;
    *val = v;
    *vlen = (size_t)(e - v);
    return true;
}

/* Checks a complete response head: 101 and the right accept value. */
static int check_response(bench_client *c, const char *resp, size_t n)
{
    const char *eol = memchr(resp, '\r', n);
    size_t l0 = eol ? (size_t)(eol - resp) : n;
    if (l0 < 12 || memcmp(resp, "HTTP/1.1 101", 12) != 0) {
        client_gone(c, "the server answered the upgrade with '%.*s'", (int)(l0 > 80 ? 80 : l0), resp);
        return -1;
    }
    bool accept_ok = false, upgrade_ok = false;
    const char *p = resp + l0 + 2, *end = resp + n;
    while (p < end) {
        const char *e = memchr(p, '\r', (size_t)(end - p));
        if (!e) e = end;
        const char *v;
        size_t vl;
        if (header_is(p, (size_t)(e - p), "Sec-WebSocket-Accept", &v, &vl))
            accept_ok = vl == WS_ACCEPT_LEN && memcmp(v, c->hs, WS_ACCEPT_LEN) == 0;
        else if (header_is(p, (size_t)(e - p), "Upgrade", &v, &vl))
            upgrade_ok = vl == 9 && strncasecmp(v, "websocket", 9) == 0;
        else if (c->w->o->deflate && header_is(p, (size_t)(e - p), "Sec-WebSocket-Extensions", &v, &vl))
            c->deflate = vl >= 18 && strncasecmp(v, "permessage-deflate", 18) == 0;
        p = e + 2;
    }
    if (!accept_ok || !upgrade_ok) {
        client_gone(c, "handshake: %s", !accept_ok ? "missing or wrong Sec-WebSocket-Accept"
                                                  : "no Upgrade: websocket");
        return -1;
    }
    if (c->deflate) COUNTER_ADD(c->w->deflate_clients, 1);
    return 0;
}

static void send_login(bench_client *c)
{
    char msg[600];
    int n = snprintf(msg, sizeof msg, "{\"type\":\"login\",\"name\":\"bench%u\"%s",
                     c->idx, c->w->run->login_msg[c->room]);
    c->state = CS_LOGIN;
    send_frame(c, WS_OP_TEXT, msg, (size_t)n);
}

/* Takes response bytes; returns how many belong to it (the rest are
 * frames), or -1 when not finished yet or failed. */
static ssize_t handshake_feed(bench_client *c, const uint8_t *p, size_t n)
{
    char *resp = c->hs + HS_ACCEPT;
    size_t room = HS_MAX - HS_ACCEPT - c->hs_len;
    size_t k = n < room ? n : room;
    memcpy(resp + c->hs_len, p, k);
    size_t old = c->hs_len;
    c->hs_len += (uint32_t)k;
    size_t from = old >= 3 ? old - 3 : 0;
    for (size_t i = from; i + 4 <= c->hs_len; i++) {
        if (memcmp(resp + i, "\r\n\r\n", 4) == 0) {
            if (check_response(c, resp, i + 2) < 0) return -1;
            free(c->hs);
            c->hs = NULL;
            send_login(c);
            return (ssize_t)(i + 4 - old);
        }
    }
    if (c->hs_len == HS_MAX - HS_ACCEPT)
        client_gone(c, "handshake response too long");
    return -1;
}

/* ---- the sending side --------------------------------------------------- */

static const char say_head[] = "{\"type\":\"say\",\"to_uid\":\"all\",\"content\":\"";

static void send_say(bench_client *c, bench_sender *s)
{
    const bench_opts *o = c->w->o;
    char msg[sizeof say_head + 128 + 4096];
    size_t n = sizeof say_head - 1;
    memcpy(msg, say_head, n);
    n += bench_content_write(msg + n, bench_now_ns(), c->idx, s->sent, o->nonce, o->size);
    msg[n++] = '"';
    msg[n++] = '}';
    if (send_frame(c, WS_OP_TEXT, msg, n) == 0) COUNTER_ADD(s->sent, 1);
}

/* Sends what the window (and the rate) allow. */
static void pump(bench_client *c)
{
    bench_worker *w = c->w;
    if (w->phase != PHASE_SEND || c->state != CS_READY) return;
    bench_sender *s = &w->run->snd[c->idx];
    const bench_opts *o = w->o;
    if (o->rate <= 0) {
        while (s->sent - s->echoed - s->rejected < o->window && c->state == CS_READY)
            send_say(c, s);
        return;
    }
    uint64_t now = bench_now_ns(), period = (uint64_t)(1e9 / o->rate);
    while (s->next_due <= now && s->sent - s->echoed - s->rejected < o->window
           && c->state == CS_READY) {
        send_say(c, s);
        s->next_due += period ? period : 1;
    }
}

/* ---- the receiving side ------------------------------------------------- */

/* The string value of "key" among the first n bytes (whitespace around the
 * colon allowed): its start and length, cut at n. */
static bool json_str(const uint8_t *p, size_t n, const char *key, size_t klen,
                     const uint8_t **v, size_t *vlen)
{
    const uint8_t *end = p + n;
    while (p < end) {
        const uint8_t *k = memmem(p, (size_t)(end - p), key, klen);
        if (!k) return false;
        const uint8_t *s = k + klen;
        while (s < end && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')) s++;
        if (s < end && *s == ':') {
            s++;
            while (s < end && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')) s++;
            if (s < end && *s == '"') {
                s++;
                const uint8_t *q = memchr(s, '"', (size_t)(end - s));
                *v = s;
                *vlen = q ? (size_t)(q - s) : (size_t)(end - s);
                return true;
            }
        }
        p = k + 1;
    }
    return false;
}

static size_t skip_digits(const uint8_t *p, size_t i, size_t n)
{
    while (i < n && p[i] >= '0' && p[i] <= '9') i++;
    return i;
}

/* Where the content of a say starts when its keys come in the contract's
 * order, {"type":"say","from_uid":N,"to_uid":"all"|N,"content":" -- the
 * common case, without searching; NULL otherwise. */
static const uint8_t *say_content(const uint8_t *p, size_t n)
{
    static const char head[] = "{\"type\":\"say\",\"from_uid\":";
    static const char to[] = ",\"to_uid\":";
    static const char content[] = ",\"content\":\"";
    size_t i = sizeof head - 1;
    if (n < 64 || memcmp(p, head, i) != 0) return NULL;
    i = skip_digits(p, i, n);
    if (i + sizeof to - 1 > n || memcmp(p + i, to, sizeof to - 1) != 0) return NULL;
    i += sizeof to - 1;
    if (i + 5 <= n && memcmp(p + i, "\"all\"", 5) == 0) i += 5;
    else i = skip_digits(p, i, n);
    if (i + sizeof content - 1 > n || memcmp(p + i, content, sizeof content - 1) != 0)
        return NULL;
    return p + i + sizeof content - 1;
}

static void on_say(bench_client *c, const uint8_t *p, size_t n)
{
    bench_worker *w = c->w;
    const bench_opts *o = w->o;
    const uint8_t *v;
    size_t vl;
    uint64_t ns, seq;
    unsigned s;
    v = say_content(p, n);
    if ((!v && !json_str(p, n, "\"content\"", 9, &v, &vl)) ||
        !bench_content_parse(v, (size_t)(p + n - v), o->nonce, &ns, &s, &seq) ||
        s >= o->senders || o->idle) {
        COUNTER_ADD(w->foreign, 1);
        return;
    }
    /* the sender's index among its room's senders (no division in one room) */
    unsigned si = s;
    if (o->rooms > 1) {
        if (s % o->rooms != c->room) {
            COUNTER_ADD(w->foreign, 1);
            return;
        }
        si = s / o->rooms;
    }
    COUNTER_ADD(w->deliveries, 1);
    bench_hist_add(&w->lat, w->now > ns ? w->now - ns : 0);
    bench_seen *sn = &c->seen[si];
    bool fresh;
    if (seq >= sn->next) {
        uint64_t shift = seq - sn->next + 1;
        if (seq > sn->next) COUNTER_ADD(w->gaps, seq - sn->next);
        sn->mask = shift >= 64 ? 0 : sn->mask << shift;
        sn->mask |= 1;
        sn->next = (uint32_t)seq + 1;
        fresh = true;
    } else {
        uint64_t d = sn->next - 1 - seq;
        fresh = d < 64 && !(sn->mask & ((uint64_t)1 << d));
        if (fresh) sn->mask |= (uint64_t)1 << d;
    }
    if (!fresh) {
        COUNTER_ADD(w->dups, 1);
        return;
    }
    COUNTER_ADD(w->unique, 1);
    if (s == c->idx) {                  /* our own echo frees a slot */
        bench_sender *sd = &w->run->snd[s];
        if (sd->sent - sd->echoed - sd->rejected > 0) COUNTER_ADD(sd->echoed, 1);
        pump(c);
    }
}

static void on_login(bench_client *c, const uint8_t *p, size_t n)
{
    bench_worker *w = c->w;
    if (c->state != CS_LOGIN) return;
    const uint8_t *v;
    size_t vl;
    char name[24];
    int nl = snprintf(name, sizeof name, "bench%u", c->idx);
    /* the first login a new member hears is its own; the name confirms it */
    if (json_str(p, n, "\"name\"", 6, &v, &vl) && (vl != (size_t)nl || memcmp(v, name, vl)))
        return;
    c->state = CS_READY;
    w->connecting--;
    bench_hist_add(&w->login, w->now - c->t_start);
    COUNTER_SET(w->last_login_ns, w->now);
    COUNTER_ADD(w->logged_in, 1);
    start_more(w);
}

static void on_error_msg(bench_client *c, const uint8_t *p, size_t n)
{
    bench_worker *w = c->w;
    const uint8_t *v;
    size_t vl;
    bool known = json_str(p, n, "\"code\"", 6, &v, &vl);
    if (known && vl == 12 && memcmp(v, "rate_limited", 12) == 0)
        COUNTER_ADD(w->err_rate_limited, 1);
    else
        COUNTER_ADD(w->err_other, 1);
    if (c->state == CS_LOGIN) {
        client_gone(c, "login refused: %.*s", (int)n, (const char *)p);
        return;
    }
    /* the server answers each say with its echo or an error, in order */
    if (c->idx < w->o->senders && !w->o->idle) {
        bench_sender *s = &w->run->snd[c->idx];
        if (s->sent - s->echoed - s->rejected > 0) {
            COUNTER_ADD(s->rejected, 1);
            pump(c);
        }
    }
}

static void on_text(bench_client *c, const uint8_t *p, size_t n)
{
    const uint8_t *t;
    size_t tl;
    if (n > 9 && memcmp(p, "{\"type\":\"", 9) == 0) {
        t = p + 9;
        const uint8_t *q = memchr(t, '"', n - 9);
        tl = q ? (size_t)(q - t) : 0;
    } else if (!json_str(p, n, "\"type\"", 6, &t, &tl)) {
        return;
    }
    if (tl == 3 && memcmp(t, "say", 3) == 0) on_say(c, p, n);
    else if (tl == 5 && memcmp(t, "login", 5) == 0) on_login(c, p, n);
    else if (tl == 5 && memcmp(t, "error", 5) == 0) on_error_msg(c, p, n);
    else if (tl == 4 && memcmp(t, "ping", 4) == 0) send_frame(c, WS_OP_TEXT, "{\"type\":\"pong\"}", 15);
}

/* A whole frame: p holds its first n bytes (all of a control frame). */
static void on_frame(bench_client *c, uint8_t op, uint8_t *p, size_t n)
{
    switch (op) {
    case WS_OP_TEXT:
        on_text(c, p, n);
        break;
    case WS_OP_PING:
        COUNTER_ADD(c->w->pings, 1);
        send_frame(c, WS_OP_PONG, p, n);
        break;
    case WS_OP_CLOSE: {
        if (c->state == CS_CLOSING) break;
        unsigned code = n >= 2 ? ((unsigned)p[0] << 8 | p[1]) : 1005;
        char why[200];
        snprintf(why, sizeof why, "close frame from the server, code %u%s%.*s", code,
                 n > 2 ? ": " : "", n > 2 ? (int)(n - 2) : 0, (const char *)p + 2);
        note_gone(c, why);
        /* answer with the same code, as the RFC asks */
        send_frame(c, WS_OP_CLOSE, p, n >= 2 ? 2 : 0);
        c->state = CS_CLOSING;
        flush(c);
        break;
    }
    case WS_OP_CONT:
    case WS_OP_BINARY:
    case WS_OP_PONG:
        break;
    default:
        client_gone(c, "frame with reserved opcode %u from the server", op);
    }
}

static void bad_frame(bench_client *c, const char *why)
{
    client_gone(c, "protocol error from the server: %s", why);
}

/* A compressed message, whole: inflated (all of it, as a browser would)
 * and handed on by its first bytes. */
#define ZOUT_MAX (64u << 20)
static void on_compressed(bench_client *c, uint8_t op, const uint8_t *p, size_t n)
{
    bench_worker *w = c->w;
    w->zout.len = 0;
    w->zout.max = ZOUT_MAX;
    int rc = ws_inflate(&w->inf, p, n, true, &w->zout);
    if (rc) {
        ws_inflater_free(&w->inf);      /* a broken stream starts over */
        bad_frame(c, rc == WS_CLOSE_TOO_BIG ? "compressed message over 64 MiB" : "bad compressed data");
        return;
    }
    COUNTER_ADD(w->compressed_in, 1);
    size_t k = w->zout.len < BENCH_PREFIX ? w->zout.len : BENCH_PREFIX;
    on_frame(c, op, w->zout.p ? w->zout.p : (uint8_t *)"", k);
}

/* RSV1 is allowed on the final frame of a data message once agreed (the
 * server never fragments what it compresses). */
static const char *header_problem(const bench_client *c, const ws_header *h)
{
    if (h->masked) return "masked frame";
    if (h->rsv2 || h->rsv3) return "reserved bits set";
    if (h->rsv1 && (!c->deflate || ws_is_control(h->opcode) || h->opcode == WS_OP_CONT || !h->fin))
        return "RSV1 where permessage-deflate allows none";
    if (h->rsv1 && h->len > ZOUT_MAX) return "compressed frame over 64 MiB";
    if (ws_is_control(h->opcode) && h->len > WS_MAX_CONTROL) return "control frame over 125 bytes";
    return NULL;
}

/* The part of a frame spanning reads that this read holds. */
static void frame_piece(bench_client *c, const uint8_t *p, size_t take)
{
    if (c->f_rsv1) {
        memcpy(c->zbuf + (c->f_len - c->f_left), p, take);
    } else if (c->pre_len < BENCH_PREFIX) {
        size_t k = BENCH_PREFIX - c->pre_len;
        if (k > take) k = take;
        memcpy(c->pre + c->pre_len, p, k);
        c->pre_len = (uint16_t)(c->pre_len + k);
    }
    c->f_left -= take;
    if (c->f_left) return;
    c->in_frame = false;
    if (!c->f_rsv1) {
        on_frame(c, c->f_op, c->pre, c->pre_len);
        return;
    }
    uint8_t *z = c->zbuf;
    c->zbuf = NULL;
    on_compressed(c, c->f_op, z, (size_t)c->f_len);
    free(z);
}

/* Frames in place; a frame that does not end in this read keeps its
 * prefix in the client until its last byte arrives. */
static void feed(bench_client *c, uint8_t *p, size_t n)
{
    while (n > 0 && c->state != CS_DEAD && c->state != CS_CLOSING) {
        if (c->in_frame) {
            size_t take = c->f_left < n ? (size_t)c->f_left : n;
            frame_piece(c, p, take);
            p += take;
            n -= take;
            continue;
        }
        ws_header h;
        int hs = ws_header_assemble(c->hdr, &c->hdr_len, p, n, &h);
        if (hs == 0) return;            /* the rest of the header is still to come */
        if (hs > 0) {
            p += hs;
            n -= (size_t)hs;
        }
        const char *bad = hs < 0 ? "64-bit length with the top bit set" : header_problem(c, &h);
        if (bad) {
            bad_frame(c, bad);
            return;
        }
        if (h.len <= n) {
            size_t len = (size_t)h.len;
            if (h.rsv1) on_compressed(c, h.opcode, p, len);
            else on_frame(c, h.opcode, p, len < BENCH_PREFIX ? len : BENCH_PREFIX);
            p += len;
            n -= len;
        } else {
            c->in_frame = true;
            c->f_op = h.opcode;
            c->f_len = c->f_left = h.len;
            c->pre_len = 0;
            c->f_rsv1 = h.rsv1;
            if (h.rsv1 && !(c->zbuf = malloc((size_t)h.len))) {
                bench_fail(c->w->run, "out of memory");
                return;
            }
        }
    }
}

/* What the server said, in the clear. */
static void plain_input(bench_client *c, uint8_t *p, size_t n)
{
    if (c->state == CS_HANDSHAKE) {
        ssize_t used = handshake_feed(c, p, n);
        if (used < 0) return;
        p += used;
        n -= (size_t)used;
    }
    feed(c, p, n);
}

static void tls_deliver(bench_client *c, uint8_t *p, size_t n)
{
    if (p) plain_input(c, p, n);
    else send_handshake(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    bench_client *c = s->data;
    if (nread < 0) {
        if (nread == UV_EOF) client_gone(c, "the server closed the connection");
        else client_gone(c, "read: %s", uv_strerror((int)nread));
        return;
    }
    if (nread == 0 || c->state == CS_DEAD || c->state == CS_CLOSING) return;
    c->w->now = bench_now_ns();
    COUNTER_ADD(c->w->bytes_in, (uint64_t)nread);
    uint8_t *p = (uint8_t *)buf->base;
    if (!c->ssl) {
        plain_input(c, p, (size_t)nread);
        return;
    }
    if (bench_tls_open(c, p, (size_t)nread, c->w->pbuf, BENCH_TLS_RECORD, tls_deliver) < 0) {
        client_gone(c, "TLS: handshake or record failed");
        return;
    }
    if (c->state != CS_DEAD && bench_tls_wants_write(c)) mark_dirty(c);
}

/* ---- phases and the loop ------------------------------------------------ */

static void stop_all(bench_worker *w)
{
    for (unsigned i = 0; i < w->nclients; i++) {
        bench_client *c = w->clients[i];
        close_client(c);
    }
    uv_timer_stop(&w->tick);
    uv_close((uv_handle_t *)&w->tick, NULL);
    uv_check_stop(&w->check);
    uv_close((uv_handle_t *)&w->check, NULL);
    uv_close((uv_handle_t *)&w->wake, NULL);
}

static void on_tick(uv_timer_t *t);

static void enter_phase(bench_worker *w, int phase)
{
    const bench_opts *o = w->o;
    w->phase = phase;
    if (phase == PHASE_SEND) {
        uint64_t now = bench_now_ns();
        uint64_t period = o->rate > 0 ? (uint64_t)(1e9 / o->rate) : 0;
        for (unsigned i = 0; i < w->nsenders; i++) {
            bench_client *c = w->senders[i];
            /* spread the senders' first messages over one period */
            w->run->snd[c->idx].next_due = now + (period ? rng_next(w) % period : 0);
            pump(c);
        }
        if (o->rate > 0) uv_timer_start(&w->tick, on_tick, 1, 1);
    }
    COUNTER_SET(w->phase_seen, phase);
    if (phase == PHASE_STOP) stop_all(w);
}

static void check_phase(bench_worker *w)
{
    int p = COUNTER_GET(w->run->phase);
    if (p != w->phase && w->phase != PHASE_STOP) enter_phase(w, p);
}

static void on_tick(uv_timer_t *t)
{
    bench_worker *w = t->data;
    check_phase(w);
    if (w->phase == PHASE_CONNECT) start_more(w);
    else if (w->phase == PHASE_SEND && w->o->rate > 0)
        for (unsigned i = 0; i < w->nsenders; i++) pump(w->senders[i]);
}

static void on_wake(uv_async_t *a)
{
    check_phase(a->data);
}

static void *worker_main(void *arg)
{
    bench_worker *w = arg;
    w->conn_last = bench_now_ns();
    start_more(w);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    return NULL;
}

int bench_worker_start(bench_worker *w)
{
    int r = pthread_create(&w->th, NULL, worker_main, w);
    if (r) return -r;
    w->started = true;
    return 0;
}

void bench_worker_join(bench_worker *w)
{
    if (w->started) pthread_join(w->th, NULL);
    w->started = false;
}

void bench_set_phase(bench_run *r, int phase)
{
    COUNTER_SET(r->phase, phase);
    for (unsigned i = 0; i < r->o.threads; i++) uv_async_send(&r->w[i].wake);
}

static int worker_init(bench_run *r, bench_worker *w, int id)
{
    const bench_opts *o = &r->o;
    w->id = id;
    w->run = r;
    w->phase = PHASE_CONNECT;
    bench_hist_init(&w->lat);
    bench_hist_init(&w->login);
    if (getrandom(&w->rng, sizeof w->rng, 0) != sizeof w->rng) w->rng = bench_now_ns();
    w->rng |= 1;
    w->rbuf_size = RBUF_SIZE;
    w->rbuf = malloc(RBUF_SIZE);
    ws_inflater_init(&w->inf, 15, true);
    if (o->tls && !(w->pbuf = malloc(BENCH_TLS_RECORD))) return -1;
    unsigned share = (o->clients + o->threads - 1 - (unsigned)id) / o->threads;
    w->clients = calloc(share ? share : 1, sizeof *w->clients);
    w->senders = calloc(share ? share : 1, sizeof *w->senders);
    if (!w->rbuf || !w->clients || !w->senders) return -1;
    w->max_connecting = o->max_connecting / o->threads;
    if (w->max_connecting == 0) w->max_connecting = 1;
    if (uv_loop_init(&w->loop)) return -1;
    w->o = o;                       /* from here on the loop needs closing */
    uv_timer_init(&w->loop, &w->tick);
    uv_check_init(&w->loop, &w->check);
    uv_async_init(&w->loop, &w->wake, on_wake);
    w->tick.data = w->check.data = w->wake.data = w;
    uv_check_start(&w->check, on_check);
    uv_timer_start(&w->tick, on_tick, 10, 10);
    return 0;
}

int bench_workers_init(bench_run *r)
{
    const bench_opts *o = &r->o;
    r->w = calloc(o->threads, sizeof *r->w);
    r->all = calloc(o->clients, sizeof *r->all);
    r->snd = calloc(o->senders ? o->senders : 1, sizeof *r->snd);
    if (!r->w || !r->all || !r->snd) return -1;
    for (unsigned i = 0; i < o->threads; i++)
        if (worker_init(r, &r->w[i], (int)i)) return -1;
    for (unsigned i = 0; i < o->clients; i++) {
        bench_client *c = &r->all[i];
        bench_worker *w = &r->w[i % o->threads];
        c->w = w;
        c->idx = i;
        c->room = i % o->rooms;
        c->tcp.data = c;
        w->clients[w->nclients++] = c;
        if (i < o->senders && !o->idle) w->senders[w->nsenders++] = c;
        if (!o->idle && o->senders > c->room) {
            c->nseen = (o->senders - c->room + o->rooms - 1) / o->rooms;
            c->seen = calloc(c->nseen, sizeof *c->seen);
            if (!c->seen) return -1;
        }
    }
    return 0;
}

static void close_any(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* A loop that never ran (a failed start) still holds its handles. */
static void close_loop(uv_loop_t *loop)
{
    uv_walk(loop, close_any, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
}

void bench_workers_free(bench_run *r)
{
    const bench_opts *o = &r->o;
    if (r->all) {
        for (unsigned i = 0; i < o->clients; i++) {
            bench_client *c = &r->all[i];
            free(c->seen);
            free(c->out);
            free(c->wbuf);
            free(c->hs);
            free(c->zbuf);
            bench_tls_end(c);
        }
    }
    if (r->w) {
        for (unsigned i = 0; i < o->threads; i++) {
            bench_worker *w = &r->w[i];
            if (w->o) close_loop(&w->loop);  /* set once the loop exists */
            free(w->rbuf);
            ws_inflater_free(&w->inf);
            free(w->zout.p);
            free(w->pbuf);
            free(w->clients);
            free(w->senders);
        }
    }
    free(r->w);
    free(r->all);
    free(r->snd);
    r->w = NULL;
    r->all = NULL;
    r->snd = NULL;
}
