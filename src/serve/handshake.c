/* handshake.c -- the server side of the WebSocket opening handshake
 * (RFC 6455 section 4.2) and the HTTP error responses. */
#include "web.h"
#include "ws_codec.h"

#include <stdio.h>
#include <string.h>

const char *http_status_text(int status)
{
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 426: return "Upgrade Required";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

void http_error_response(sbuf *out, int status, const char *extra_headers, const char *body)
{
    sbuf_printf(out,
        "HTTP/1.1 %d %s\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Length: %zu\r\n"
        "Connection: close\r\n"
        "%s\r\n%s",
        status, http_status_text(status), strlen(body), extra_headers ? extra_headers : "", body);
}

static bool origin_allowed(const http_req *r, const server_config *cfg)
{
    if (cfg->n_origins == 0) return true;
    size_t n;
    const char *o = http_req_field(r, HF_ORIGIN, &n);
    if (!o) return false;
    for (int i = 0; i < cfg->n_origins; i++)
        if (strlen(cfg->origins[i]) == n && memcmp(cfg->origins[i], o, n) == 0) return true;
    return false;
}

/* The web port takes upgrades on /ws only (a query string is allowed). */
static bool path_allowed(const http_req *r, bool web_port)
{
    if (!web_port) return true;
    size_t n;
    const char *url = http_req_url(r, &n);
    return (n == 3 || (n > 3 && url[3] == '?')) && memcmp(url, "/ws", 3) == 0;
}

static int refuse(sbuf *out, int status, const char *headers, const char *why)
{
    http_error_response(out, status, headers, why);
    return status;
}

/* The Sec-WebSocket-Extensions line of the answer, or "" (subprotocols
 * and every other extension are declined by not answering them). */
static void negotiate_deflate(const http_req *r, const ws_pmd_policy *pol, ws_pmd *pmd,
                              char line[WS_PMD_ANSWER_MAX + 40])
{
    size_t n;
    const char *v = http_req_field(r, HF_WS_EXTENSIONS, &n);
    line[0] = '\0';
    pmd->on = false;
    if (!pol || !v || !ws_pmd_negotiate(v, n, pol, pmd)) return;
    char ext[WS_PMD_ANSWER_MAX];
    ws_pmd_format(pmd, ext);
    snprintf(line, WS_PMD_ANSWER_MAX + 40, "Sec-WebSocket-Extensions: %s\r\n", ext);
}

int handshake_answer(const http_req *r, const server_config *cfg, bool web_port,
                     const ws_pmd_policy *pol, ws_pmd *pmd, sbuf *out)
{
    size_t n, kn;
    const char *v;
    if (!http_req_is_get(r)) return refuse(out, 400, NULL, "A WebSocket handshake is a GET.\n");
    if (r->parser.http_major < 1 || (r->parser.http_major == 1 && r->parser.http_minor < 1))
        return refuse(out, 400, NULL, "A WebSocket handshake needs HTTP/1.1.\n");
    if (!http_req_field(r, HF_HOST, &n)) return refuse(out, 400, NULL, "Host header missing.\n");
    v = http_req_field(r, HF_CONNECTION, &n);
    if (!v || !http_token_list_has(v, n, "upgrade"))
        return refuse(out, 400, NULL, "Connection header must include Upgrade.\n");
    v = http_req_field(r, HF_WS_VERSION, &n);
    if (!v) return refuse(out, 400, NULL, "Sec-WebSocket-Version header missing.\n");
    if (n != 2 || memcmp(v, "13", 2) != 0)
        return refuse(out, 426, "Sec-WebSocket-Version: 13\r\n", "Only WebSocket version 13 is supported.\n");
    const char *key = http_req_field(r, HF_WS_KEY, &kn);
    if (!key || !ws_key_valid(key, kn))
        return refuse(out, 400, NULL, "Sec-WebSocket-Key must be the base64 of 16 bytes.\n");
    if (!path_allowed(r, web_port)) return refuse(out, 404, NULL, "WebSocket is on /ws on this port.\n");
    if (!origin_allowed(r, cfg)) return refuse(out, 403, NULL, "Origin not allowed.\n");

    char accept[WS_ACCEPT_LEN + 1], ext[WS_PMD_ANSWER_MAX + 40];
    ws_accept_key(key, kn, accept);
    negotiate_deflate(r, cfg->deflate ? pol : NULL, pmd, ext);
    sbuf_printf(out,
        "HTTP/1.1 101 Switching Protocols\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        "Sec-WebSocket-Accept: %s\r\n"
        "%s"
        "\r\n", accept, ext);
    return 101;
}
