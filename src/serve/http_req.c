/* http_req.c -- request parsing on top of libhttp-parser's callbacks. */
#include "http_req.h"

#include <string.h>
#include <strings.h>

static const char *const field_names[HF_COUNT] = {
    [HF_HOST] = "host",
    [HF_UPGRADE] = "upgrade",
    [HF_CONNECTION] = "connection",
    [HF_WS_KEY] = "sec-websocket-key",
    [HF_WS_VERSION] = "sec-websocket-version",
    [HF_ORIGIN] = "origin",
    [HF_WS_EXTENSIONS] = "sec-websocket-extensions",
    [HF_WS_PROTOCOL] = "sec-websocket-protocol",
    [HF_IF_NONE_MATCH] = "if-none-match",
    [HF_X_FORWARDED_FOR] = "x-forwarded-for",
    [HF_AUTHORIZATION] = "authorization",
};

static int fail(http_req *r, int status)
{
    r->state = HTTP_REQ_ERROR;
    r->error_status = status;
    return -1;
}

/* Appends to the arena, growing span s (which must be the last one). */
static int arena_add(http_req *r, http_span *s, const char *at, size_t n)
{
    if (r->arena_len + n > HTTP_REQ_ARENA) return fail(r, 431);
    if (s->len == 0) s->off = r->arena_len;
    memcpy(r->arena + r->arena_len, at, n);
    r->arena_len += (uint16_t)n;
    s->len += (uint16_t)n;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    http_req *r = p->data;
    return arena_add(r, &r->url, at, n);
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    http_req *r = p->data;
    if (r->in_value) {          /* a new header starts */
        r->in_value = false;
        r->name_len = 0;
        r->name_long = false;
    }
    if (r->name_len + n > sizeof r->name) {
        r->name_long = true;
        return 0;
    }
    memcpy(r->name + r->name_len, at, n);
    r->name_len += (uint8_t)n;
    return 0;
}

static int field_index(const http_req *r)
{
    if (r->name_long) return -1;
    for (int i = 0; i < HF_COUNT; i++)
        if (strlen(field_names[i]) == r->name_len &&
            strncasecmp(field_names[i], r->name, r->name_len) == 0)
            return i;
    return -1;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    http_req *r = p->data;
    if (!r->in_value) {
        r->in_value = true;
        r->cur_field = field_index(r);
        if (r->cur_field >= 0 && r->fields[r->cur_field].len > 0) {
            /* A repeated header: join the values as one list (RFC 9110 5.3).
             * The value must end the arena to grow, so move it there. */
            http_span *s = &r->fields[r->cur_field];
            if (s->off + s->len != r->arena_len) {
                http_span old = *s;
                if (r->arena_len + old.len > HTTP_REQ_ARENA) return fail(r, 431);
                memmove(r->arena + r->arena_len, r->arena + old.off, old.len);
                s->off = r->arena_len;
                r->arena_len += old.len;
            }
            if (arena_add(r, s, ", ", 2) < 0) return -1;
        }
    }
    if (r->cur_field < 0) return 0;
    return arena_add(r, &r->fields[r->cur_field], at, n);
}

static int on_headers_complete(http_parser *p)
{
    http_req *r = p->data;
    r->headers_done = true;
    r->keep_alive = http_should_keep_alive(p);
    return 0;
}

/* The body follows every field in the arena, so it grows at its end. */
static int on_body(http_parser *p, const char *at, size_t n)
{
    http_req *r = p->data;
    if (r->body.len + n > HTTP_REQ_BODY_MAX || r->arena_len + n > HTTP_REQ_ARENA) return fail(r, 413);
    return arena_add(r, &r->body, at, n);
}

static int on_message_complete(http_parser *p)
{
    http_req *r = p->data;
    r->state = HTTP_REQ_DONE;
    r->upgrade = p->upgrade;
    http_parser_pause(p, 1);    /* one request per feed: the rest is the caller's */
    return 0;
}

static const http_parser_settings settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void http_req_init(http_req *r, size_t max_header)
{
    r->max_header = max_header;
    http_req_reset(r);
}

void http_req_reset(http_req *r)
{
    size_t max = r->max_header;
    memset(r, 0, offsetof(http_req, arena));
    r->max_header = max;
    r->cur_field = -1;
    http_parser_init(&r->parser, HTTP_REQUEST);
    r->parser.data = r;
}

size_t http_req_feed(http_req *r, const char *data, size_t n)
{
    if (r->state != HTTP_REQ_MORE) return 0;
    size_t limit = n;
    if (!r->headers_done && r->header_bytes + n > r->max_header) {
        /* Feed only what the cap allows; if the headers are still not over
         * by then, the request is refused. */
        limit = r->max_header - r->header_bytes;
        /* http_parser_execute() reads a zero length as end of stream. */
        if (limit == 0) {
            fail(r, 431);
            return 0;
        }
    }
    size_t used = http_parser_execute(&r->parser, &settings, data, limit);
    if (!r->headers_done) r->header_bytes += used;
    enum http_errno err = HTTP_PARSER_ERRNO(&r->parser);
    if (r->state == HTTP_REQ_ERROR) return used;
    if (err == HPE_PAUSED) {
        http_parser_pause(&r->parser, 0);
        return used;
    }
    if (err != HPE_OK) {
        fail(r, 400);
        return used;
    }
    if (!r->headers_done && limit < n) fail(r, 431);
    return used;
}

const char *http_req_method(const http_req *r)
{
    return http_method_str((enum http_method)r->parser.method);
}

bool http_req_is_get(const http_req *r)
{
    return r->parser.method == HTTP_GET;
}

const char *http_req_field(const http_req *r, enum http_field f, size_t *len)
{
    /* libhttp-parser keeps trailing whitespace; OWS is not part of a
     * value (RFC 9110 5.5). */
    const char *v = r->arena + r->fields[f].off;
    size_t n = r->fields[f].len;
    while (n && (v[0] == ' ' || v[0] == '\t')) v++, n--;
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
    *len = n;
    return n ? v : NULL;
}

const char *http_req_url(const http_req *r, size_t *len)
{
    *len = r->url.len;
    return r->arena + r->url.off;
}

const char *http_req_body(const http_req *r, size_t *len)
{
    *len = r->body.len;
    return r->arena + r->body.off;
}

bool http_token_list_has(const char *list, size_t n, const char *token)
{
    size_t tl = strlen(token);
    size_t i = 0;
    while (i < n) {
        while (i < n && (list[i] == ' ' || list[i] == '\t' || list[i] == ',')) i++;
        size_t start = i;
        while (i < n && list[i] != ',') i++;
        size_t end = i;
        while (end > start && (list[end - 1] == ' ' || list[end - 1] == '\t')) end--;
        if (end - start == tl && strncasecmp(list + start, token, tl) == 0) return true;
    }
    return false;
}
