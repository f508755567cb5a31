/* conn_addr.c -- whose connection it is: the peer's address, or, when a
 * trusted proxy speaks for the client, the PROXY protocol header at the
 * start of the connection or X-Forwarded-For on the upgrade request; and
 * counting the connection against that address. worker.c calls in at
 * accept, conn.c from its HTTP phase. */
#include "conn_addr.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>

#include "web.h"
#include "worker.h"

static void peer_addr(const conn *c, net_addr *a)
{
    a->len = c->addr_len;
    memcpy(a->bytes, c->addr, c->addr_len);
}

/* The header named the client (or, LOCAL / UNKNOWN, the proxy itself):
 * count the connection there. Its new address is trusted in turn only if
 * it is a --trusted-proxy itself (a chain of proxies). */
static bool proxy_header_done(conn *c, const proxy_info *info)
{
    const server_config *cfg = c->w->cfg;
    net_addr a;
    if (info->has_addr) a = info->src;
    else peer_addr(c, &a);
    c->proxy_peer = cidr_list_match(cfg->trusted, (size_t)cfg->n_trusted, &a);
    if (!conn_set_addr(c, &a)) {
        conn_refuse_busy(c);
        return false;
    }
    return true;
}

/* Keeps what has come of a header split across reads. Returns the bytes
 * held before this read, or -1 when out of memory. */
static int proxy_hold(conn *c, const uint8_t *data, size_t n)
{
    if (!c->proxy) {
        c->proxy = malloc(sizeof *c->proxy);
        if (!c->proxy) return -1;
        c->proxy->len = 0;
    }
    int before = c->proxy->len;
    size_t take = n < PROXY_MAX - (size_t)before ? n : PROXY_MAX - (size_t)before;
    memcpy(c->proxy->buf + before, data, take);
    c->proxy->len = (uint16_t)(before + take);
    return before;
}

enum conn_proxy_step conn_proxy_input(conn *c, uint8_t **data, size_t *n,
                                      uint8_t held[PROXY_SIG_MAX], size_t *held_n)
{
    if (!c->proxy_peer || c->proxy_checked) return CONN_PROXY_GO_ON;
    const uint8_t *p = *data;
    size_t avail = *n;
    int before = 0;
    if (c->proxy) {
        if ((before = proxy_hold(c, *data, *n)) < 0) goto fail;
        p = c->proxy->buf;
        avail = c->proxy->len;
    }
    proxy_info info;
    size_t used;
    enum conn_proxy_step step = CONN_PROXY_GO_ON;
    switch (proxy_parse(p, avail, &info, &used)) {
    case PROXY_MORE:
        if (!c->proxy && proxy_hold(c, *data, *n) < 0) goto fail;
        return CONN_PROXY_STOP;
    case PROXY_BAD:
        goto fail;
    case PROXY_ABSENT:
        /* Only a prefix of a signature is ever held: short, and HTTP. */
        if (before > PROXY_SIG_MAX) goto fail;
        *held_n = (size_t)before;
        if (before) memcpy(held, c->proxy->buf, (size_t)before);
        step = before ? CONN_PROXY_REPLAY : CONN_PROXY_GO_ON;
        break;
    case PROXY_DONE:
        *data += used - (size_t)before;
        *n -= used - (size_t)before;
        if (!proxy_header_done(c, &info)) step = CONN_PROXY_STOP;
        break;
    }
    c->proxy_checked = true;
    free(c->proxy);
    c->proxy = NULL;
    return step;
fail:
    /* A trusted peer that garbles the one thing it was trusted with. */
    conn_abort(c);
    return CONN_PROXY_STOP;
}

bool conn_count_forwarded(conn *c, const http_req *r)
{
    if (!c->proxy_peer) return true;
    const server_config *cfg = c->w->cfg;
    net_addr a;
    size_t n;
    const char *xff = http_req_field(r, HF_X_FORWARDED_FOR, &n);
    if (!xff || !xff_client(xff, n, cfg->trusted, (size_t)cfg->n_trusted, &a))
        peer_addr(c, &a);
    return conn_set_addr(c, &a);
}

/* One try to say why, then gone: a refused peer gets no queue. */
void conn_refuse_busy(conn *c)
{
    sbuf out;
    sbuf_init(&out);
    http_error_response(&out, 503, NULL, "Too many connections from your address\n");
    if (!out.oom && !c->w->cfg->tls) {  /* to a TLS client it would be garbage */
        uv_buf_t b = uv_buf_init(out.p, (unsigned)out.len);
        uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    }
    sbuf_free(&out);
    log_event(LOG_WARN, "limit", "name=%s addr=%s", "max-conns-per-ip", c->addr_text);
    conn_abort(c);
}

bool conn_set_addr(conn *c, const net_addr *a)
{
    memcpy(c->addr, a->bytes, a->len);
    c->addr_len = a->len;
    net_addr_format(a, c->addr_text);
    ip_release(c->w->ips, c->ip);
    unsigned count;
    c->ip = ip_acquire(c->w->ips, a, &count);
    return count <= c->w->cfg->max_conns_per_ip;
}

void conn_note_peer(conn *c)
{
    struct sockaddr_storage sa;
    int salen = sizeof sa;
    net_addr a = {0};
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &salen) == 0)
        net_addr_from_sockaddr(&a, (struct sockaddr *)&sa);
    memcpy(c->addr, a.bytes, a.len);
    c->addr_len = a.len;
    net_addr_format(&a, c->addr_text);
    c->proxy_peer = cidr_list_match(c->w->cfg->trusted, (size_t)c->w->cfg->n_trusted, &a);
}
