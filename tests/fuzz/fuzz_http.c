/* fuzz_http.c -- libFuzzer target: bytes into the HTTP request parser
 * (http_req.c) and, once a request is whole, the WebSocket handshake answer
 * (handshake.c), as on the server's ports.
 *
 * Beyond "no crash": the parser never consumes more than it was given,
 * every answer is a complete HTTP/1.1 response with a known status, and a
 * 101 carries the accept value of the request's key. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"
#include "http_req.h"
#include "sbuf.h"
#include "web.h"
#include "ws_codec.h"

static void check_answer(const http_req *r, const server_config *cfg, bool web_port)
{
    sbuf out;
    sbuf_init(&out);
    ws_pmd_policy pol = { .client_bits = 12 };
    ws_pmd pmd;
    int status = handshake_answer(r, cfg, web_port, &pol, &pmd, &out);
    /* an accepted offer is answered, and only then */
    if ((status == 101 && pmd.on) != (memmem(out.p, out.len, "permessage-deflate", 18) != NULL))
        abort();
    if (out.len < 12 || memcmp(out.p, "HTTP/1.1 ", 9) != 0) abort();
    if (!memmem(out.p, out.len, "\r\n\r\n", 4)) abort();
    if (status == 101) {
        size_t klen;
        const char *key = http_req_field(r, HF_WS_KEY, &klen);
        if (!key || !ws_key_valid(key, klen)) abort();
        char accept[WS_ACCEPT_LEN + 1];
        ws_accept_key(key, klen, accept);
        if (!memmem(out.p, out.len, accept, WS_ACCEPT_LEN)) abort();
    } else if (status != 400 && status != 403 && status != 404 && status != 426) {
        abort();
    }
    sbuf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static server_config cfg;
    static bool ready;
    if (!ready) {
        config_defaults(&cfg);
        ready = true;
    }
    if (size < 1) return 0;
    size_t piece = data[0] ? data[0] : 65536;
    bool web_port = data[0] & 1;
    data++, size--;
    http_req *r = malloc(sizeof *r);
    if (!r) return 0;
    http_req_init(r, cfg.max_header);
    size_t off = 0;
    while (off < size) {
        size_t n = size - off < piece ? size - off : piece;
        size_t used = http_req_feed(r, (const char *)data + off, n);
        if (used > n) abort();
        off += used;
        if (r->state == HTTP_REQ_ERROR) break;
        if (r->state == HTTP_REQ_DONE) {
            check_answer(r, &cfg, web_port);
            if (r->upgrade) break;
            http_req_reset(r);          /* the next pipelined request */
        } else if (used < n) {
            abort();                    /* stalled without a verdict */
        }
    }
    free(r);
    return 0;
}
