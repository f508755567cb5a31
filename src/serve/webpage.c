/* webpage.c -- what the web port answers to plain HTTP: the embedded page
 * (with ETag / 304), /config.json for the page, /stats, /metrics and
 * /healthz for operators. */
#include "web.h"
#include "ws_codec.h"

#include <stdlib.h>
#include <string.h>

#include "assets.h"

/* The page's own scripts and styles only; it talks to any ws: / wss: URL
 * because --ws-url may point it elsewhere. */
#define SECURITY_HEADERS \
    "X-Content-Type-Options: nosniff\r\n" \
    "Referrer-Policy: no-referrer\r\n" \
    "Content-Security-Policy: default-src 'self'; script-src 'self'; " \
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self' ws: wss:; " \
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'\r\n"

static void respond(sbuf *out, int status, const char *type, const char *etag,
                    const void *body, size_t n, bool head)
{
    sbuf_printf(out, "HTTP/1.1 %d %s\r\n", status, http_status_text(status));
    if (type) sbuf_printf(out, "Content-Type: %s\r\n", type);
    if (etag) sbuf_printf(out, "ETag: %s\r\nCache-Control: no-cache\r\n", etag);
    else sbuf_puts(out, "Cache-Control: no-store\r\n");
    sbuf_printf(out, "Content-Length: %zu\r\n" SECURITY_HEADERS "\r\n", status == 304 ? 0 : n);
    if (!head && status != 304) sbuf_put(out, body, n);
}

static bool etag_matches(const http_req *r, const char *etag)
{
    size_t n;
    const char *v = http_req_field(r, HF_IF_NONE_MATCH, &n);
    if (!v) return false;
    return http_token_list_has(v, n, etag) || http_token_list_has(v, n, "*");
}

static void config_json(const web_ctx *x, sbuf *body)
{
    sbuf_puts(body, "{\"ws_url\":");
    if (x->cfg->ws_url) sbuf_json_str(body, x->cfg->ws_url, strlen(x->cfg->ws_url));
    else sbuf_puts(body, "null");
    sbuf_puts(body, "}\n");
}

static void stats_json(const web_ctx *x, sbuf *body)
{
    serve_stats m;
    x->stats(x->arg, &m);
    sbuf_printf(body,
        "{\"connections\":%zu,\"users\":%zu,\"rooms\":%zu,\"threads\":%u,\"accepted\":%llu,"
        "\"handshakes\":%llu,\"messages_in\":%llu,\"bytes_out\":%llu,\"slow_closed\":%llu",
        m.conns, m.users, m.rooms, m.threads,
        (unsigned long long)m.accepted, (unsigned long long)m.handshakes,
        (unsigned long long)m.messages_in, (unsigned long long)m.bytes_out,
        (unsigned long long)m.slow_closed);
    sbuf_printf(body,
        ",\"deflate\":{\"handshakes\":%llu,\"compressions\":%llu,\"deliveries\":%llu,"
        "\"uncompressed_deliveries\":%llu,\"inflated\":%llu}",
        (unsigned long long)m.deflate_handshakes, (unsigned long long)m.deflate_compressions,
        (unsigned long long)m.deflate_deliveries, (unsigned long long)m.deflate_plain,
        (unsigned long long)m.inflated);
    /* Where the connections are: the balance of the loops. */
    if (m.per_thread) {
        sbuf_puts(body, ",\"connections_per_thread\":[");
        for (unsigned i = 0; i < m.threads; i++)
            sbuf_printf(body, "%s%zu", i ? "," : "", m.per_thread[i]);
        sbuf_putc(body, ']');
    }
    sbuf_puts(body, "}\n");
    free(m.per_thread);
}

static const unsigned close_codes[CLOSE_SLOTS - 1] = { 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011 };

unsigned close_slot(unsigned code)
{
    for (unsigned i = 0; i < CLOSE_SLOTS - 1; i++)
        if (close_codes[i] == code) return i;
    return CLOSE_SLOTS - 1;
}

unsigned close_slot_code(unsigned slot)
{
    return slot < CLOSE_SLOTS - 1 ? close_codes[slot] : 0;
}

static void metric(sbuf *b, const char *name, const char *type, const char *help, unsigned long long v)
{
    sbuf_printf(b, "# HELP tagarela_%s %s\n# TYPE tagarela_%s %s\ntagarela_%s %llu\n",
                name, help, name, type, name, v);
}

/* Close handshakes by code, and the process's memory and descriptors
 * under the names Prometheus's own clients give them. */
static void health_metrics(sbuf *b, const serve_stats *m)
{
    sbuf_puts(b, "# HELP tagarela_closes_total WebSocket close handshakes, by close code (either side's).\n"
                 "# TYPE tagarela_closes_total counter\n");
    for (unsigned k = 0; k < CLOSE_SLOTS; k++) {
        unsigned code = close_slot_code(k);
        if (code) sbuf_printf(b, "tagarela_closes_total{code=\"%u\"} %llu\n", code, (unsigned long long)m->closes[k]);
        else sbuf_printf(b, "tagarela_closes_total{code=\"other\"} %llu\n", (unsigned long long)m->closes[k]);
    }
    if (m->proc.rss_bytes >= 0)
        metric(b, "process_resident_memory_bytes", "gauge", "Resident memory.", (unsigned long long)m->proc.rss_bytes);
    if (m->proc.open_fds >= 0)
        metric(b, "process_open_fds", "gauge", "Open file descriptors.", (unsigned long long)m->proc.open_fds);
    if (m->proc.max_fds >= 0)
        metric(b, "process_max_fds", "gauge", "The open file descriptor limit.", (unsigned long long)m->proc.max_fds);
}

/* The same counters in Prometheus's text format, for scrapers. */
static void metrics_text(const web_ctx *x, sbuf *b)
{
    serve_stats m;
    x->stats(x->arg, &m);
    metric(b, "connections", "gauge", "Open TCP connections, WebSocket or HTTP.", m.conns);
    metric(b, "users", "gauge", "Logged-in users.", m.users);
    metric(b, "rooms", "gauge", "Rooms with at least one user.", m.rooms);
    metric(b, "threads", "gauge", "Event loops serving connections.", m.threads);
    metric(b, "accepted_total", "counter", "Connections accepted.", m.accepted);
    metric(b, "handshakes_total", "counter", "WebSocket handshakes completed.", m.handshakes);
    metric(b, "messages_in_total", "counter", "Messages received from clients.", m.messages_in);
    metric(b, "frames_out_total", "counter", "Frames (and HTTP responses) written to clients.", m.frames_out);
    metric(b, "bytes_out_total", "counter", "Bytes written to clients.", m.bytes_out);
    metric(b, "slow_closed_total", "counter",
           "Clients closed with 1008 for not reading their messages.", m.slow_closed);
    metric(b, "deflate_handshakes_total", "counter",
           "WebSocket handshakes that agreed to permessage-deflate.", m.deflate_handshakes);
    metric(b, "deflate_compressions_total", "counter",
           "Broadcasts compressed (once each, whatever their audience).", m.deflate_compressions);
    metric(b, "deflate_deliveries_total", "counter",
           "Compressed frames queued to permessage-deflate clients.", m.deflate_deliveries);
    metric(b, "deflate_uncompressed_deliveries_total", "counter",
           "Frames queued uncompressed to permessage-deflate clients (short messages).", m.deflate_plain);
    metric(b, "deflate_inflated_total", "counter", "Compressed messages received from clients.", m.inflated);
    health_metrics(b, &m);
    if (m.redis_shards) {
        metric(b, "redis_shards", "gauge", "Redis servers of the cluster.", (unsigned long long)m.redis_shards);
        metric(b, "redis_up", "gauge", "1 when every Redis shard is reachable and caught up.", m.redis_up);
        metric(b, "redis_subscriptions_total", "counter",
               "Subscriptions made to the Redis shards (more than the shards: reconnections).", m.redis_resyncs);
    }
    hist_write(b, "delivery", "From a message's arrival (read) to its last write to a recipient, "
               "for the frames it caused (says, errors, logins).", &m.delivery);
    hist_write(b, "history_append", "One message's append to the history (SQLite, in the turn's transaction).",
               &m.append);
    hist_write(b, "history_commit", "The commit of a turn's history writes.", &m.commit);
    if (m.per_thread) {
        sbuf_puts(b, "# HELP tagarela_thread_connections Open connections per event loop.\n"
                     "# TYPE tagarela_thread_connections gauge\n");
        for (unsigned i = 0; i < m.threads; i++)
            sbuf_printf(b, "tagarela_thread_connections{thread=\"%u\"} %zu\n", i, m.per_thread[i]);
    }
    free(m.per_thread);
}

/* The answers made on request: the page's config and the operators'
 * counters. False when path is none of them. */
static bool answer_generated(const web_ctx *x, const char *path, size_t plen, sbuf *out, bool head)
{
    static const struct {
        const char *path, *type;
        void (*make)(const web_ctx *, sbuf *);
    } generated[] = {
        {"/config.json", "application/json", config_json},
        {"/stats", "application/json", stats_json},
        {"/metrics", "text/plain; version=0.0.4; charset=utf-8", metrics_text},
    };
    for (size_t i = 0; i < sizeof generated / sizeof generated[0]; i++) {
        if (plen != strlen(generated[i].path) || memcmp(path, generated[i].path, plen) != 0) continue;
        sbuf body;
        sbuf_init(&body);
        generated[i].make(x, &body);
        respond(out, 200, generated[i].type, NULL, body.p, body.len, head);
        sbuf_free(&body);
        return true;
    }
    return false;
}

void webpage_answer(const http_req *r, const web_ctx *x, sbuf *out, bool *close_after,
                    ws_frame **body)
{
    *body = NULL;
    bool head = r->parser.method == HTTP_HEAD;
    *close_after = !r->keep_alive;
    if (!http_req_is_get(r) && !head) {
        http_error_response(out, 405, "Allow: GET, HEAD\r\n", "Only GET and HEAD are served here.\n");
        *close_after = true;
        return;
    }
    size_t n;
    const char *url = http_req_url(r, &n);
    const char *q = memchr(url, '?', n);
    size_t plen = q ? (size_t)(q - url) : n;

    if (answer_generated(x, url, plen, out, head)) return;
    /* Liveness for orchestrators and proxies: the web loop answered and,
     * in a cluster, Redis is there (a node without it refuses says). */
    if (plen == 8 && memcmp(url, "/healthz", 8) == 0) {
        serve_stats m;
        x->stats(x->arg, &m);
        free(m.per_thread);
        if (m.redis_shards && !m.redis_up) {
            char why[sizeof m.redis_why + 1];
            int len = snprintf(why, sizeof why, "%s\n", m.redis_why);
            respond(out, 503, "text/plain; charset=utf-8", NULL, why, (size_t)len, head);
            return;
        }
        respond(out, 200, "text/plain; charset=utf-8", NULL, "ok\n", 3, head);
        return;
    }
    /* An exact lookup in the embedded table: "..", "%2e" or a NUL can
     * name nothing but a 404. */
    const asset *a = asset_find(url, plen);
    if (!a) {
        static const char msg[] = "Not found.\n";
        respond(out, 404, "text/plain; charset=utf-8", NULL, msg, sizeof msg - 1, head);
        return;
    }
    int status = etag_matches(r, a->etag) ? 304 : 200;
    /* The headers here, the page's bytes from the binary itself: no copy
     * of the page per request. */
    respond(out, status, a->content_type, a->etag, NULL, a->len, true);
    if (status == 200 && !head) {
        *body = ws_frame_borrow(a->data, a->len);
        if (!*body) out->oom = 1;
    }
}
