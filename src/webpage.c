/* webpage.c -- what the web port answers to plain HTTP: the embedded page
 * (with ETag / 304), /config.json for the page, /stats for operators. */
#include "server.h"

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

static void config_json(const server *s, sbuf *body)
{
    sbuf_puts(body, "{\"ws_url\":");
    if (s->cfg->ws_url) sbuf_json_str(body, s->cfg->ws_url, strlen(s->cfg->ws_url));
    else sbuf_puts(body, "null");
    sbuf_puts(body, "}\n");
}

/* Sums every loop's counters; each is read as a whole, the sum is a
 * moment's picture. */
static void stats_json(const server *s, sbuf *body)
{
    hub *h = s->hub;
    server_stats t = {0};
    size_t conns = 0;
    for (unsigned i = 0; i < h->n_servers; i++) {
        server_stats *st = &h->servers[i].stats;
        conns += STAT_GET(h->servers[i].n_conns);
        t.accepted += STAT_GET(st->accepted);
        t.handshakes += STAT_GET(st->handshakes);
        t.messages_in += STAT_GET(st->messages_in);
        t.bytes_out += STAT_GET(st->bytes_out);
        t.slow_closed += STAT_GET(st->slow_closed);
    }
    sbuf_printf(body,
        "{\"connections\":%zu,\"users\":%zu,\"rooms\":%zu,\"threads\":%u,\"accepted\":%llu,"
        "\"handshakes\":%llu,\"messages_in\":%llu,\"bytes_out\":%llu,\"slow_closed\":%llu",
        conns, STAT_GET(h->users), STAT_GET(h->rooms), h->n_servers,
        (unsigned long long)t.accepted, (unsigned long long)t.handshakes,
        (unsigned long long)t.messages_in, (unsigned long long)t.bytes_out,
        (unsigned long long)t.slow_closed);
    /* Where the connections are: the balance of the loops. */
    sbuf_puts(body, ",\"connections_per_thread\":[");
    for (unsigned i = 0; i < h->n_servers; i++)
        sbuf_printf(body, "%s%zu", i ? "," : "", STAT_GET(h->servers[i].n_conns));
    sbuf_puts(body, "]}\n");
}

void webpage_answer(const http_req *r, const server *s, sbuf *out, bool *close_after)
{
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

    if (plen == 12 && memcmp(url, "/config.json", 12) == 0) {
        sbuf body;
        sbuf_init(&body);
        config_json(s, &body);
        respond(out, 200, "application/json", NULL, body.p, body.len, head);
        sbuf_free(&body);
        return;
    }
    if (plen == 6 && memcmp(url, "/stats", 6) == 0) {
        sbuf body;
        sbuf_init(&body);
        stats_json(s, &body);
        respond(out, 200, "application/json", NULL, body.p, body.len, head);
        sbuf_free(&body);
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
    respond(out, status, a->content_type, a->etag, a->data, a->len, head);
}
