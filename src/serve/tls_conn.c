/* tls_conn.c -- TLS for both listeners with OpenSSL, on the connections'
 * own loops: the server context (certificate, key, protocol settings,
 * reload, key log) and each connection's session.
 *
 * A session has no socket: its BIO reads from the bytes conn.c has just
 * read (the loop's shared read buffer, nothing kept between reads) and
 * writes into a ciphertext buffer that exists only while there is
 * something to send. With SSL_MODE_RELEASE_BUFFERS OpenSSL gives its own
 * record buffers back while a connection is idle, so an idle TLS
 * connection holds its SSL object and nothing else. */
#include "tls_conn.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <uv.h>

#include "conn.h"
#include "log.h"
#include "web.h"
#include "worker.h"

/* Plaintext encrypted per flush before the ciphertext is written: bounds
 * the ciphertext a connection holds (the rest stays in its queue of shared
 * frames, where the outbound cap sees it). */
#define TLS_ENCRYPT_CHUNK (64 * 1024)
/* Small frames queued together are gathered into one record (a record
 * costs a header, a tag and a cipher call of its own). */
#define TLS_GATHER_BELOW 2048
#define TLS_RECORD_MAX 16384
#define TLS_FIRST_BYTE_HANDSHAKE 0x16
/* CPU a loop turn spends on handshakes before it defers the rest to the
 * next turn: a few ECDSA handshakes, or one or two RSA-2048 ones. */
#define TLS_HANDSHAKE_TURN_NS 2000000u

/* TLS 1.2 suites: forward secrecy and AEAD only; TLS 1.3 keeps OpenSSL's
 * three (AES-GCM and ChaCha20-Poly1305). */
static const char TLS12_CIPHERS[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

struct tls_server {
    uv_mutex_t lock;                /* ctx: swapped by a reload, read at each accept */
    SSL_CTX *ctx;
    char *cert, *key;
    int keylog_fd;                  /* -1: none */
};

/* This thread's loop (one worker per thread): its handshake time in the
 * current turn. */
static _Thread_local uint32_t hs_turn;
static _Thread_local uint64_t hs_spent_ns;
static _Thread_local bool hs_paused;

struct tls_conn {
    SSL *ssl;
    const uint8_t *in;              /* ciphertext being read (conn.c's buffer) */
    size_t in_len;
    uint8_t *out;                   /* ciphertext to send; NULL when none */
    size_t out_len, out_cap, out_off;
    bool seen_first;                /* the first byte was looked at */
    bool established;
    bool failed;                    /* no more TLS: an error, or a plain-text refusal */
    bool notified;                  /* our close_notify is queued */
};

typedef struct tls_write {
    uv_write_t req;
    uint8_t *buf;                   /* the ciphertext it owns until written */
} tls_write;

/* ---- the BIO between OpenSSL and the connection's bytes ------------------- */

static BIO_METHOD *bio_method;
static uv_once_t bio_once = UV_ONCE_INIT;

static int bio_read(BIO *b, char *dst, int len)
{
    tls_conn *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (t->in_len == 0) {
        BIO_set_retry_read(b);
        return -1;
    }
    size_t n = (size_t)len < t->in_len ? (size_t)len : t->in_len;
    memcpy(dst, t->in, n);
    t->in += n;
    t->in_len -= n;
    return (int)n;
}

static int out_append(tls_conn *t, const void *p, size_t n)
{
    if (t->out_len + n > t->out_cap) {
        size_t cap = t->out_cap ? t->out_cap : 4096;
        while (cap < t->out_len + n) cap *= 2;
        uint8_t *np = realloc(t->out, cap);
        if (!np) return -1;
        t->out = np;
        t->out_cap = cap;
    }
    memcpy(t->out + t->out_len, p, n);
    t->out_len += n;
    return 0;
}

static int bio_write(BIO *b, const char *src, int len)
{
    tls_conn *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    return out_append(t, src, (size_t)len) < 0 ? -1 : len;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void make_bio_method(void)
{
    bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "tagarela conn");
    if (!bio_method) return;
    BIO_meth_set_read(bio_method, bio_read);
    BIO_meth_set_write(bio_method, bio_write);
    BIO_meth_set_ctrl(bio_method, bio_ctrl);
    BIO_meth_set_create(bio_method, bio_create);
}

/* ---- the server's context ------------------------------------------------- */

/* The last OpenSSL error as text (the queue is emptied). */
static const char *ssl_error_text(char *buf, size_t n)
{
    unsigned long e = ERR_peek_last_error();
    if (!e) snprintf(buf, n, "unknown error");
    else ERR_error_string_n(e, buf, n);
    ERR_clear_error();
    return buf;
}

/* A key that asks for a passphrase is refused, never prompted for. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    return 0;
}

static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char ours[] = "\x08http/1.1";
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, ours, sizeof ours - 1, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;      /* RFC 7301: no protocol we speak */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* One NSS key log line per secret, appended with one write (O_APPEND:
 * lines from several loops do not mix). */
static void keylog_line(const SSL *ssl, const char *line)
{
    tls_server *s = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    char buf[512];
    int n = snprintf(buf, sizeof buf, "%s\n", line);
    if (!s || s->keylog_fd < 0 || n <= 0 || (size_t)n >= sizeof buf) return;
    if (write(s->keylog_fd, buf, (size_t)n) != n)
        log_event(LOG_WARN, "tls_keylog_failed", "error=%s", strerror(errno));
}

/* Refuses a certificate that is expired or not yet valid: a server that
 * starts with one fails every browser's handshake, silently for us. */
static int check_validity(SSL_CTX *ctx, char *why, size_t n)
{
    X509 *x = SSL_CTX_get0_certificate(ctx);
    if (!x) {
        snprintf(why, n, "no certificate in the file");
        return -1;
    }
    const ASN1_TIME *end = X509_get0_notAfter(x), *start = X509_get0_notBefore(x);
    struct tm tm;
    char when[64] = "?";
    if (X509_cmp_current_time(end) <= 0) {
        if (ASN1_TIME_to_tm(end, &tm)) strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
        snprintf(why, n, "the certificate expired on %s", when);
        return -1;
    }
    if (X509_cmp_current_time(start) > 0) {
        if (ASN1_TIME_to_tm(start, &tm)) strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
        snprintf(why, n, "the certificate is not valid before %s", when);
        return -1;
    }
    return 0;
}

static void set_protocol(SSL_CTX *ctx)
{
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    /* No renegotiation (TLS 1.2: a client could make us redo the handshake's
     * CPU work at will), no compression (CRIME). */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    /* Record buffers go back while a connection is idle. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* No server-side session cache (memory); TLS 1.3 resumes with one
     * stateless ticket. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 1);
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
}

/* A context with the files loaded, or NULL with why filled in. */
static SSL_CTX *load_ctx(tls_server *s, char *why, size_t n)
{
    char err[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(why, n, "cannot make a TLS context: %s", ssl_error_text(err, sizeof err));
        return NULL;
    }
    set_protocol(ctx);
    if (!SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS)) {
        snprintf(why, n, "cipher list: %s", ssl_error_text(err, sizeof err));
    } else if (SSL_CTX_use_certificate_chain_file(ctx, s->cert) != 1) {
        snprintf(why, n, "cannot load the certificate chain from %s: %s", s->cert, ssl_error_text(err, sizeof err));
    } else if (SSL_CTX_use_PrivateKey_file(ctx, s->key, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
            snprintf(why, n, "the key in %s does not match the certificate in %s", s->key, s->cert);
        else
            snprintf(why, n, "cannot load the private key from %s (PEM, not encrypted): %s", s->key,
                     ssl_error_text(err, sizeof err));
        ERR_clear_error();
    } else if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(why, n, "the key in %s does not match the certificate in %s", s->key, s->cert);
        ERR_clear_error();
    } else if (check_validity(ctx, why, n) == 0) {
        SSL_CTX_set_app_data(ctx, s);
        if (s->keylog_fd >= 0) SSL_CTX_set_keylog_callback(ctx, keylog_line);
        return ctx;
    }
    SSL_CTX_free(ctx);
    return NULL;
}

static int open_keylog(tls_server *s, const char *path)
{
    s->keylog_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (s->keylog_fd < 0) {
        fprintf(stderr, "tagarela: --tls-keylog: cannot open '%s': %s\n", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(s->keylog_fd, &st) == 0 && (st.st_mode & 077))
        fprintf(stderr, "tagarela: warning: --tls-keylog %s is readable by others (mode %03o)\n", path,
                (unsigned)(st.st_mode & 0777));
    fprintf(stderr, "tagarela: warning: --tls-keylog: the secrets of every TLS session are written to %s; "
                    "anyone who reads it can decrypt the traffic\n", path);
    log_event(LOG_WARN, "tls_keylog", "file=%s", path);
    return 0;
}

tls_server *tls_server_new(const char *cert, const char *key, const char *keylog)
{
    uv_once(&bio_once, make_bio_method);
    tls_server *s = calloc(1, sizeof *s);
    if (!s || !bio_method) {
        fprintf(stderr, "tagarela: out of memory\n");
        free(s);
        return NULL;
    }
    s->keylog_fd = -1;
    s->cert = strdup(cert);
    s->key = strdup(key);
    char why[600];
    if (!s->cert || !s->key) {
        snprintf(why, sizeof why, "out of memory");
    } else if (keylog && open_keylog(s, keylog) < 0) {
        why[0] = '\0';
    } else if ((s->ctx = load_ctx(s, why, sizeof why)) != NULL) {
        uv_mutex_init(&s->lock);
        return s;
    }
    if (why[0]) fprintf(stderr, "tagarela: TLS: %s\n", why);
    if (s->keylog_fd >= 0) close(s->keylog_fd);
    free(s->cert);
    free(s->key);
    free(s);
    return NULL;
}

int tls_server_reload(tls_server *s)
{
    char why[600];
    SSL_CTX *ctx = load_ctx(s, why, sizeof why);
    if (!ctx) {
        log_event(LOG_ERROR, "tls_reload_failed", "cert=%s key=%s error=%s kept=%s", s->cert, s->key, why,
                  "the certificate in use");
        return -1;
    }
    uv_mutex_lock(&s->lock);
    SSL_CTX *old = s->ctx;
    s->ctx = ctx;
    uv_mutex_unlock(&s->lock);
    SSL_CTX_free(old);              /* sessions made with it hold their own reference */
    log_event(LOG_INFO, "tls_reloaded", "cert=%s key=%s", s->cert, s->key);
    return 0;
}

void tls_server_free(tls_server *s)
{
    if (!s) return;
    SSL_CTX_free(s->ctx);
    uv_mutex_destroy(&s->lock);
    if (s->keylog_fd >= 0) close(s->keylog_fd);
    free(s->cert);
    free(s->key);
    free(s);
}

/* ---- a connection's session ----------------------------------------------- */

tls_conn *tls_conn_new(tls_server *s)
{
    tls_conn *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    uv_mutex_lock(&s->lock);
    t->ssl = SSL_new(s->ctx);
    uv_mutex_unlock(&s->lock);
    BIO *b = t->ssl ? BIO_new(bio_method) : NULL;
    if (!b) {
        SSL_free(t->ssl);
        free(t);
        ERR_clear_error();
        return NULL;
    }
    BIO_set_data(b, t);
    SSL_set_bio(t->ssl, b, b);      /* one reference for both directions */
    SSL_set_accept_state(t->ssl);
    return t;
}

void tls_conn_free(tls_conn *t)
{
    if (!t) return;
    SSL_free(t->ssl);
    free(t->out);
    free(t);
}

bool tls_conn_wants_write(const tls_conn *t)
{
    return t->out_len > t->out_off;
}

size_t tls_conn_unsent(const tls_conn *t)
{
    return t->out_len - t->out_off;
}

/* The session is over: say why (debug: scanners and closed tabs do this
 * all day), and let the alert OpenSSL queued go out with the FIN. */
static enum tls_input tls_failed(conn *c, const char *what)
{
    tls_conn *t = c->tls;
    char err[256];
    t->failed = true;
    log_event(LOG_DEBUG, "tls_failed", "addr=%s step=%s error=%s", c->addr_text, what,
              ssl_error_text(err, sizeof err));
    return TLS_IN_FAILED;
}

/* A client speaking plain HTTP to a TLS port gets one plain answer saying
 * so (as nginx does), then the end. */
static enum tls_input refuse_plain(tls_conn *t)
{
    sbuf answer;
    sbuf_init(&answer);
    http_error_response(&answer, 400, NULL, "This port speaks TLS: use https:// or wss:// here.\n");
    t->failed = true;
    int rc = answer.oom ? -1 : out_append(t, answer.p, answer.len);
    sbuf_free(&answer);
    return rc < 0 ? TLS_IN_FAILED : TLS_IN_REFUSED;
}

static bool looks_like_http(const uint8_t *p, size_t n)
{
    return n > 0 && p[0] >= 'A' && p[0] <= 'Z';
}

/* Plaintext comes in records of at most 16 KiB; one buffer per thread
 * serves every connection of the loop (conn.c consumes it before the
 * next SSL_read). */
static _Thread_local uint8_t plain_buf[TLS_RECORD_MAX];

enum tls_input tls_conn_input(conn *c, const uint8_t *data, size_t n, tls_plain_fn plain)
{
    tls_conn *t = c->tls;
    if (t->failed) return TLS_IN_FAILED;
    if (!t->seen_first && n) {
        t->seen_first = true;
        if (data[0] != TLS_FIRST_BYTE_HANDSHAKE)
            return looks_like_http(data, n) ? refuse_plain(t) : tls_failed(c, "not TLS");
    }
    t->in = data;
    t->in_len = n;
    enum tls_input rc = TLS_IN_OK;
    if (!t->established) {
        uint64_t t0 = uv_hrtime();
        int r = SSL_do_handshake(t->ssl);
        if (hs_turn != c->w->turns) {
            hs_turn = c->w->turns;
            hs_spent_ns = 0;
            hs_paused = false;
        }
        hs_spent_ns += uv_hrtime() - t0;
        if (r == 1) {
            t->established = true;
        } else if (SSL_get_error(t->ssl, r) != SSL_ERROR_WANT_READ) {
            rc = tls_failed(c, "handshake");
        }
    }
    while (rc == TLS_IN_OK && t->established) {
        /* An SSL_read with nothing to read would set up a 16 KiB record
         * buffer only to find the BIO empty, and keep it while idle. */
        if (t->in_len == 0 && !SSL_has_pending(t->ssl)) break;
        int r = SSL_read(t->ssl, plain_buf, sizeof plain_buf);
        if (r > 0) {
            if (!plain(c, plain_buf, (size_t)r)) break;
            continue;
        }
        int e = SSL_get_error(t->ssl, r);
        if (e == SSL_ERROR_WANT_READ) break;
        rc = e == SSL_ERROR_ZERO_RETURN ? TLS_IN_FAILED : tls_failed(c, "read");
        t->failed = true;
    }
    t->in = NULL;
    t->in_len = 0;
    return rc;
}

void tls_conn_pace(worker *w)
{
    if (hs_turn != w->turns || hs_paused || hs_spent_ns < TLS_HANDSHAKE_TURN_NS) return;
    hs_paused = true;
    for (conn *c = w->conns; c; c = c->next)
        if (c->tls && !c->tls->established && !c->tls->failed && c->reading) conn_pause_turn(c);
}

/* ---- writing --------------------------------------------------------------- */

static void out_reset(tls_conn *t)
{
    free(t->out);
    t->out = NULL;
    t->out_len = t->out_cap = t->out_off = 0;
}

static void after_write(uv_write_t *req, int status)
{
    tls_write *wr = (tls_write *)req;
    conn *c = req->data;
    free(wr->buf);
    free(wr);
    /* The queue was consumed when it was encrypted: the socket's progress
     * is this write's end. */
    if (status == 0) c->last_progress = uv_now(c->w->loop);
    conn_write_done(c, status);
}

/* What the kernel did not take goes to uv_write, which owns that buffer
 * until it is written; new ciphertext starts a buffer of its own. */
static bool start_write(conn *c, tls_conn *t)
{
    tls_write *wr = malloc(sizeof *wr);
    if (!wr) {
        conn_abort(c);
        return false;
    }
    uv_buf_t b = uv_buf_init((char *)t->out + t->out_off, (unsigned)(t->out_len - t->out_off));
    wr->buf = t->out;
    wr->req.data = c;
    if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, &b, 1, after_write) < 0) {
        free(wr);
        conn_abort(c);
        return false;
    }
    t->out = NULL;
    t->out_len = t->out_cap = t->out_off = 0;
    c->writing = true;
    conn_update_reading(c);
    return false;
}

/* Encrypts one frame, or several small ones gathered into one record. */
static size_t encrypt_some(conn *c, tls_conn *t, const uv_buf_t *iov, uint32_t n, bool *bad)
{
    static _Thread_local uint8_t gather[TLS_RECORD_MAX];
    size_t len = 0;
    uint32_t k = 0;
    while (k < n && iov[k].len < TLS_GATHER_BELOW && len + iov[k].len <= sizeof gather) len += iov[k++].len;
    const void *p = iov[0].base;
    if (k > 1) {
        len = 0;
        for (uint32_t i = 0; i < k; i++) {
            memcpy(gather + len, iov[i].base, iov[i].len);
            len += iov[i].len;
        }
        p = gather;
    } else {                        /* nothing to gather: straight from the shared frame */
        len = iov[0].len;
    }
    if (len && SSL_write(t->ssl, p, (int)len) != (int)len) *bad = true;
    return len;
}

/* Encrypts from the queue until TLS_ENCRYPT_CHUNK of ciphertext waits. */
static bool encrypt_queue(conn *c, tls_conn *t)
{
    uv_buf_t iov[64];
    size_t bytes;
    uint32_t n = outq_fill_iov(&c->q, iov, 64, &bytes);
    size_t done = 0;
    uint32_t at = 0;
    bool bad = false;
    while (at < n && !bad && t->out_len < TLS_ENCRYPT_CHUNK) {
        size_t before = done, took = encrypt_some(c, t, iov + at, n - at, &bad);
        if (took == 0) break;
        done += took;
        while (at < n && before < done) before += iov[at++].len;
    }
    if (bad) {
        tls_failed(c, "write");
        conn_abort(c);
        return false;
    }
    conn_consumed(c, done);
    return true;
}

/* After our last frame (the close frame's answer, a refusal): close_notify. */
static void queue_close_notify(tls_conn *t)
{
    t->notified = true;
    if (SSL_shutdown(t->ssl) < 0) ERR_clear_error();
}

bool tls_conn_flush(conn *c)
{
    tls_conn *t = c->tls;
    for (;;) {
        if (t->out_len > t->out_off) {
            uv_buf_t b = uv_buf_init((char *)t->out + t->out_off, (unsigned)(t->out_len - t->out_off));
            int w = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
            if (w == UV_EAGAIN) w = 0;
            if (w < 0) {
                conn_abort(c);
                return false;
            }
            t->out_off += (size_t)w;
            if (t->out_off < t->out_len) return start_write(c, t);
            out_reset(t);
        }
        if (t->failed || !t->established) return c->q.len == 0;
        if (c->q.len) {
            if (!encrypt_queue(c, t)) return false;
        } else if (c->close_after_flush && !t->notified) {
            queue_close_notify(t);
        } else {
            return true;
        }
    }
}
