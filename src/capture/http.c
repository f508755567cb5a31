/* http.c -- the HTTP side of a WebSocket connection: the upgrade
 * request and its response, parsed with http_parser, the accept value
 * checked against the key, and the switch to frame decoding after a 101.
 *
 * Only the headers that matter are kept, in fixed-size slots, so an HTTP
 * message costs a bounded amount of memory whatever its size; http_parser
 * itself limits header size. Ordinary HTTP (the web page on the same port,
 * a 426) is followed through its bodies and shown in the text view only. */
#include "capture_int.h"

#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { H_NONE, H_UPGRADE, H_KEY, H_EXT, H_ACCEPT, H_COUNT };

typedef struct slot {
    char s[512];
    size_t n;
} slot;

struct cap_http {
    http_parser p;
    cap_ctx *c;
    cap_flow *f;
    int dir;
    bool in_value;
    bool switch_now;            /* the message ended with a protocol switch */
    int field;                  /* H_* of the header being read */
    char name[32];
    size_t name_len;
    slot url, status, h[H_COUNT];
};

static void slot_add(slot *s, const char *p, size_t n)
{
    size_t room = sizeof s->s - 1 - s->n;
    if (n > room) n = room;         /* longer values are cut, not kept */
    memcpy(s->s + s->n, p, n);
    s->n += n;
    s->s[s->n] = '\0';
}

static cap_http *H(http_parser *p) { return p->data; }

static int on_begin(http_parser *p)
{
    cap_http *h = H(p);
    h->url.n = h->status.n = 0;
    h->url.s[0] = h->status.s[0] = '\0';
    for (int i = 0; i < H_COUNT; i++) {
        h->h[i].n = 0;
        h->h[i].s[0] = '\0';
    }
    h->in_value = false;
    h->name_len = 0;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    slot_add(&H(p)->url, at, n);
    return 0;
}

static int on_status(http_parser *p, const char *at, size_t n)
{
    slot_add(&H(p)->status, at, n);
    return 0;
}

static int on_field(http_parser *p, const char *at, size_t n)
{
    cap_http *h = H(p);
    if (h->in_value) {
        h->in_value = false;
        h->name_len = 0;
    }
    size_t room = sizeof h->name - 1 - h->name_len;
    if (n > room) n = room;
    memcpy(h->name + h->name_len, at, n);
    h->name_len += n;
    h->name[h->name_len] = '\0';
    return 0;
}

static int field_of(const char *name)
{
    if (!strcasecmp(name, "upgrade")) return H_UPGRADE;
    if (!strcasecmp(name, "sec-websocket-key")) return H_KEY;
    if (!strcasecmp(name, "sec-websocket-extensions")) return H_EXT;
    if (!strcasecmp(name, "sec-websocket-accept")) return H_ACCEPT;
    return H_NONE;
}

static int on_value(http_parser *p, const char *at, size_t n)
{
    cap_http *h = H(p);
    if (!h->in_value) {
        h->in_value = true;
        h->field = field_of(h->name);
        /* A repeated header is the same as one with the values joined. */
        if (h->field != H_NONE && h->h[h->field].n) slot_add(&h->h[h->field], ", ", 2);
    }
    if (h->field != H_NONE) slot_add(&h->h[h->field], at, n);
    return 0;
}

static bool has_token_ci(const char *s, const char *tok)
{
    size_t n = strlen(tok);
    for (; *s; s++)
        if (!strncasecmp(s, tok, n)) return true;
    return false;
}

static const char *opt_slot(const slot *s) { return s->n ? s->s : NULL; }

static void request_headers(cap_http *h)
{
    cap_ctx *c = h->c;
    cap_flow *f = h->f;
    cap_event ev = {.method = http_method_str(h->p.method), .path = h->url.s};
    if (!has_token_ci(h->h[H_UPGRADE].s, "websocket")) {
        ev.type = CAP_EV_HTTP_REQUEST;
        cap_emit(c, f, h->dir, &ev);
        return;
    }
    ev.type = CAP_EV_HS_REQUEST;
    ev.key = opt_slot(&h->h[H_KEY]);
    ev.extensions = opt_slot(&h->h[H_EXT]);
    cap_emit(c, f, h->dir, &ev);
    f->upgrade_pending = true;
    size_t kn = h->h[H_KEY].n < sizeof f->ws_key - 1 ? h->h[H_KEY].n : sizeof f->ws_key - 1;
    memcpy(f->ws_key, h->h[H_KEY].s, kn);
    f->ws_key[kn] = '\0';
    h->switch_now = true;
}

static int accept_check(const cap_flow *f, const char *accept)
{
    if (!f->ws_key[0]) return -1;
    char want[WS_ACCEPT_LEN + 1];
    ws_accept_key(f->ws_key, strlen(f->ws_key), want);
    return accept && !strcmp(accept, want);
}

static void response_headers(cap_http *h)
{
    cap_ctx *c = h->c;
    cap_flow *f = h->f;
    int status = h->p.status_code;
    cap_event ev = {.status = status, .why = h->status.s};
    if (!f->upgrade_pending && status != 101) {
        ev.type = CAP_EV_HTTP_RESPONSE;
        cap_emit(c, f, h->dir, &ev);
        return;
    }
    ev.type = CAP_EV_HS_RESPONSE;
    ev.accept = opt_slot(&h->h[H_ACCEPT]);
    ev.extensions = opt_slot(&h->h[H_EXT]);
    ev.accept_ok = accept_check(f, ev.accept);
    cap_emit(c, f, h->dir, &ev);
    f->upgrade_pending = false;
    if (status == 101) {
        h->switch_now = true;
        f->websocket = true;
        c->st.websockets++;
        cap_ws_negotiate(&f->d[1].ws, ev.extensions, true);
        cap_ws_negotiate(&f->d[0].ws, ev.extensions, false);
    } else if (f->d[0].app == CAP_APP_WAIT_101) {
        /* Refused: the client's bytes are HTTP again. */
        f->d[0].app = CAP_APP_HTTP;
        cap_dir_replay(c, f, 0);
    }
}

static int on_headers(http_parser *p)
{
    cap_http *h = H(p);
    if (h->dir == 0) request_headers(h);
    else response_headers(h);
    return 0;
}

static int on_complete(http_parser *p)
{
    /* Stop right after this message: what follows is another protocol. */
    if (H(p)->switch_now) http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_begin,
    .on_url = on_url,
    .on_status = on_status,
    .on_header_field = on_field,
    .on_header_value = on_value,
    .on_headers_complete = on_headers,
    .on_message_complete = on_complete,
};

void cap_http_free(cap_ctx *c, cap_dir *d)
{
    cap_mem_free(&c->mem, d->http, sizeof *d->http);
    d->http = NULL;
}

static void http_failed(cap_ctx *c, cap_flow *f, int dir, cap_http *h)
{
    char msg[160];
    enum http_errno e = HTTP_PARSER_ERRNO(&h->p);
    if (e == HPE_OK)    /* http_parser stopped at an upgrade we do not follow */
        snprintf(msg, sizeof msg, "upgrade to a protocol other than WebSocket: not decoded");
    else
        snprintf(msg, sizeof msg, "not HTTP%s: %s", dir == 0 ? " (request)" : " (response)",
                 http_errno_description(e));
    cap_event ev = {.type = CAP_EV_ERROR, .error = msg};
    cap_emit(c, f, dir, &ev);
    c->st.errors++;
    cap_dir_stop(c, f, dir);
}

/* The direction leaves HTTP: the client waits for the 101, the server
 * starts sending frames and releases the client's held-back bytes. */
static void switch_protocol(cap_ctx *c, cap_flow *f, int dir)
{
    cap_http_free(c, &f->d[dir]);
    if (dir == 0) {
        f->d[0].app = CAP_APP_WAIT_101;
        return;
    }
    f->d[1].app = CAP_APP_WS;
    cap_dir *cl = &f->d[0];
    if (cl->app == CAP_APP_WAIT_101 || (cl->app == CAP_APP_HTTP && !cl->any_data)) {
        cl->app = CAP_APP_WS;
        cap_http_free(c, cl);
        cap_dir_replay(c, f, 0);
    }
}

size_t cap_http_feed(cap_ctx *c, cap_flow *f, int dir, const uint8_t *p, size_t n)
{
    cap_dir *d = &f->d[dir];
    if (!d->http) {
        d->http = cap_mem_alloc(&c->mem, sizeof *d->http);
        if (!d->http) {
            cap_dir_stop(c, f, dir);
            return n;
        }
        memset(d->http, 0, sizeof *d->http);
        http_parser_init(&d->http->p, dir == 0 ? HTTP_REQUEST : HTTP_RESPONSE);
    }
    cap_http *h = d->http;
    h->p.data = h;
    h->c = c, h->f = f, h->dir = dir;
    size_t k = http_parser_execute(&h->p, &settings, (const char *)p, n);
    if (d->app != CAP_APP_HTTP) return n;   /* stopped from a callback */
    if (h->switch_now) {
        switch_protocol(c, f, dir);
        return k;
    }
    if (HTTP_PARSER_ERRNO(&h->p) != HPE_OK || h->p.upgrade) {
        http_failed(c, f, dir, h);
        return n;
    }
    return n;
}
