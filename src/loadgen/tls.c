/* tls.c -- `tagarela bench` over wss://: the client side of TLS for the
 * load generator, with OpenSSL memory BIOs under each client's socket.
 *
 * The worker keeps its shape: what a client sends is appended to its
 * output buffer as plaintext, and bench_tls_seal() turns it into
 * ciphertext right before the write; what it reads goes through
 * bench_tls_open() and the plaintext on to the frame reader. The
 * certificate is not checked unless --ca names the CA to check it with: a
 * benchmark measures the server, not the PKI. */
#include "loadgen_int.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int bench_tls_init(bench_opts *o)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) return -1;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (o->tls_max12) SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    if (o->ca) {
        if (SSL_CTX_load_verify_locations(ctx, o->ca, NULL) != 1) {
            fprintf(stderr, "tagarela bench: --ca: cannot load '%s'\n", o->ca);
            SSL_CTX_free(ctx);
            return -1;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn - 1);
    o->tls_ctx = ctx;
    return 0;
}

void bench_tls_free(bench_opts *o)
{
    SSL_CTX_free(o->tls_ctx);
    o->tls_ctx = NULL;
}

int bench_tls_start(bench_client *c)
{
    const bench_opts *o = c->w->o;
    SSL *ssl = SSL_new(o->tls_ctx);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    if (!ssl || !rb || !wb) {
        SSL_free(ssl);
        BIO_free(rb);
        BIO_free(wb);
        return -1;
    }
    SSL_set_bio(ssl, rb, wb);
    SSL_set_connect_state(ssl);
    const bench_target *t = &o->targets[c->idx % o->n_targets];
    SSL_set_tlsext_host_name(ssl, t->host);
    if (o->ca) SSL_set1_host(ssl, t->host);
    c->ssl = ssl;
    SSL_do_handshake(ssl);          /* the ClientHello, into the write BIO */
    return 0;
}

void bench_tls_end(bench_client *c)
{
    SSL_free(c->ssl);
    c->ssl = NULL;
}

/* Ciphertext waiting in the write BIO goes to the output buffer. */
static int drain(bench_client *c)
{
    BIO *wb = SSL_get_wbio(c->ssl);
    size_t pending = BIO_ctrl_pending(wb);
    if (!pending) return 0;
    if (bench_out_reserve(c, pending) < 0) return -1;
    int n = BIO_read(wb, c->out + c->out_len, (int)pending);
    if (n > 0) c->out_len += (uint32_t)n;
    return 0;
}

int bench_tls_seal(bench_client *c)
{
    if (c->tls_done && c->out_len) {
        if (SSL_write(c->ssl, c->out, (int)c->out_len) != (int)c->out_len) return -1;
        c->out_len = 0;
    }
    return drain(c);
}

bool bench_tls_wants_write(const bench_client *c)
{
    return BIO_ctrl_pending(SSL_get_wbio(c->ssl)) > 0;
}

int bench_tls_open(bench_client *c, const uint8_t *p, size_t n, uint8_t *plain, size_t cap,
                   void (*deliver)(bench_client *c, uint8_t *p, size_t n))
{
    if (n && BIO_write(SSL_get_rbio(c->ssl), p, (int)n) != (int)n) return -1;
    if (!c->tls_done) {
        int r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            if (SSL_get_error(c->ssl, r) != SSL_ERROR_WANT_READ) return -1;
            return 0;
        }
        c->tls_done = true;
        deliver(c, NULL, 0);        /* the TLS session is up: the WebSocket handshake */
    }
    for (;;) {
        int r = SSL_read(c->ssl, plain, (int)cap);
        if (r > 0) {
            deliver(c, plain, (size_t)r);
            if (c->state == CS_DEAD || c->state == CS_CLOSING) return 0;
            continue;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ) return 0;
        ERR_clear_error();
        return -1;
    }
}
