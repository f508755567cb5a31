/* http_req.h -- one HTTP/1.1 request at a time, parsed with libhttp-parser.
 *
 * Keeps only what the server acts on (method, path, the handshake headers,
 * If-None-Match) in a small arena, caps the header size, and stops at the end
 * of each request so that pipelined requests and the first WebSocket frames
 * sent right behind an upgrade request are left for the caller. */
#ifndef TAGARELA_HTTP_REQ_H
#define TAGARELA_HTTP_REQ_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum http_field {
    HF_HOST, HF_UPGRADE, HF_CONNECTION, HF_WS_KEY, HF_WS_VERSION, HF_ORIGIN,
    HF_WS_EXTENSIONS, HF_WS_PROTOCOL, HF_IF_NONE_MATCH, HF_X_FORWARDED_FOR, HF_AUTHORIZATION,
    HF_COUNT
};

typedef struct http_span { uint16_t off, len; } http_span;

enum { HTTP_REQ_MORE = 0, HTTP_REQ_DONE = 1, HTTP_REQ_ERROR = -1 };

#define HTTP_REQ_ARENA 8192     /* the kept bytes: URL, the fields above and the body */
/* A request body is kept in the arena too, up to this many bytes (more:
 * 413): only the operator's small JSON requests (/admin/) have one. */
#define HTTP_REQ_BODY_MAX 4096

typedef struct http_req {
    http_parser parser;
    size_t max_header;          /* bytes before the end of the headers */
    size_t header_bytes;
    int state;                  /* HTTP_REQ_* */
    int error_status;           /* 400, 413, 431 when state is ERROR */
    bool headers_done;
    bool keep_alive;
    bool upgrade;               /* http_parser saw an upgrade request */
    http_span url;
    http_span body;
    http_span fields[HF_COUNT];
    int cur_field;              /* field whose value is being read, or -1 */
    char name[32];              /* header name being read (longer: ignored) */
    uint8_t name_len;
    bool name_long;
    bool in_value;
    uint16_t arena_len;
    char arena[HTTP_REQ_ARENA];
} http_req;

void http_req_init(http_req *r, size_t max_header);
/* Ready for the next request on the same connection. */
void http_req_reset(http_req *r);

/* Parses up to n bytes; returns how many were consumed. Check r->state:
 * DONE means a whole request (headers, for an upgrade) was read. */
size_t http_req_feed(http_req *r, const char *data, size_t n);

const char *http_req_method(const http_req *r);
bool http_req_is_get(const http_req *r);
/* Field value (not NUL-terminated) or NULL; *len is set. */
const char *http_req_field(const http_req *r, enum http_field f, size_t *len);
const char *http_req_url(const http_req *r, size_t *len);
/* The request's body (empty when none). */
const char *http_req_body(const http_req *r, size_t *len);

/* True when the comma-separated token list holds token (any case). */
bool http_token_list_has(const char *list, size_t n, const char *token);

#endif
