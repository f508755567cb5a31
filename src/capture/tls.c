/* tls.c -- decrypting the TLS of a captured connection with a key log.
 *
 * Each direction is cut into records (5-byte header, then up to 2^14 + 2048
 * bytes). Plaintext handshake records give the ClientHello and ServerHello
 * (client and server randoms, version, suite); once a direction is
 * encrypted its records are opened with AES-GCM or ChaCha20-Poly1305 and
 * their application data handed to the HTTP/WebSocket decoders. TLS 1.3
 * directions switch from handshake to application keys after their
 * Finished, and to the next keys after a KeyUpdate; TLS 1.2 ones start at
 * their ChangeCipherSpec. A record that does not open is reported like a
 * gap: its bytes are never shown. */
#include "capture_int.h"
#include "keylog.h"
#include "tls.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REC_HDR 5
#define REC_MAX (16384 + 2048)  /* RFC 5246 6.2.3: the largest ciphertext */
#define HS_MAX 65536            /* a ClientHello or ServerHello collected whole */
#define TAG_LEN 16
/* Live, the client may write a session's secrets a little after the
 * capture sees its records: they wait this long, this much per direction. */
#define WAIT_SECONDS 10.0
#define WAIT_BYTES (256 * 1024)

enum { CT_CCS = 20, CT_ALERT = 21, CT_HANDSHAKE = 22, CT_APPDATA = 23 };
enum { HS_CLIENT_HELLO = 1, HS_SERVER_HELLO = 2, HS_FINISHED = 20, HS_KEY_UPDATE = 24 };
enum { EXT_SUPPORTED_VERSIONS = 43 };

typedef struct suite {
    uint16_t id;
    bool tls13;
    const char *name;
    const char *cipher;         /* EVP name */
    const char *md;
    uint8_t key_len, iv_len;    /* iv_len: the implicit part (TLS 1.2 GCM: 4) */
} suite;

static const suite suites[] = {
    {0x1301, true, "TLS_AES_128_GCM_SHA256", "AES-128-GCM", "SHA256", 16, 12},
    {0x1302, true, "TLS_AES_256_GCM_SHA384", "AES-256-GCM", "SHA384", 32, 12},
    {0x1303, true, "TLS_CHACHA20_POLY1305_SHA256", "ChaCha20-Poly1305", "SHA256", 32, 12},
    {0xC02B, false, "ECDHE-ECDSA-AES128-GCM-SHA256", "AES-128-GCM", "SHA256", 16, 4},
    {0xC02F, false, "ECDHE-RSA-AES128-GCM-SHA256", "AES-128-GCM", "SHA256", 16, 4},
    {0xC02C, false, "ECDHE-ECDSA-AES256-GCM-SHA384", "AES-256-GCM", "SHA384", 32, 4},
    {0xC030, false, "ECDHE-RSA-AES256-GCM-SHA384", "AES-256-GCM", "SHA384", 32, 4},
    {0xCCA9, false, "ECDHE-ECDSA-CHACHA20-POLY1305", "ChaCha20-Poly1305", "SHA256", 32, 12},
    {0xCCA8, false, "ECDHE-RSA-CHACHA20-POLY1305", "ChaCha20-Poly1305", "SHA256", 32, 12},
    {0x009E, false, "DHE-RSA-AES128-GCM-SHA256", "AES-128-GCM", "SHA256", 16, 4},
    {0x009F, false, "DHE-RSA-AES256-GCM-SHA384", "AES-256-GCM", "SHA384", 32, 4},
    {0xCCAA, false, "DHE-RSA-CHACHA20-POLY1305", "ChaCha20-Poly1305", "SHA256", 32, 12},
    {0x009C, false, "AES128-GCM-SHA256", "AES-128-GCM", "SHA256", 16, 4},
    {0x009D, false, "AES256-GCM-SHA384", "AES-256-GCM", "SHA384", 32, 4},
};

/* The ServerHello random that means HelloRetryRequest (RFC 8446 4.1.3). */
static const uint8_t hrr_random[32] = {
    0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
    0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
};

/* One direction. */
typedef struct tls_dir {
    uint8_t hdr[REC_HDR];
    uint8_t hdr_len;
    size_t rec_len;             /* the current record's body length */
    cap_buf rec;                /* its body so far */
    /* handshake messages, across records */
    uint8_t hs_hdr[4];
    uint8_t hs_hdr_len;
    uint8_t hs_type;
    uint32_t hs_left;           /* body bytes of the message still to come */
    cap_buf hs;                 /* a hello's body, collected */
    bool hs_collect;
    bool finished_seen;         /* TLS 1.3: switch to application keys */
    bool key_update_seen;       /* TLS 1.3: switch to the next keys */
    /* decryption */
    bool encrypted;
    bool app_keys;              /* TLS 1.3: application (not handshake) keys */
    uint64_t seq;
    EVP_CIPHER_CTX *aead;
    uint8_t iv[12];
    uint8_t secret[CAP_SECRET_MAX];     /* TLS 1.3: the current traffic secret */
    uint8_t app_secret[CAP_SECRET_MAX]; /* TLS 1.3: application secret 0 */
    cap_buf held;               /* bytes waiting for the secrets (live) */
    bool stopped;
} tls_dir;

struct cap_tls {
    tls_dir d[2];
    uint8_t client_random[32], server_random[32];
    bool have_client_random, have_server_hello;
    uint16_t version;           /* 0x0303 or 0x0304, once the ServerHello is seen */
    const suite *cs;
    bool keyed;                 /* the secrets were found */
    bool waiting;               /* live: not in the key log yet */
    double wait_since;
    bool failed;                /* no key: both directions stopped */
};

/* ---- primitives ---- */

int cap_tls13_expand_label(const char *md, const uint8_t *secret, size_t slen,
                           const char *label, uint8_t *out, size_t outlen)
{
    /* struct { uint16 length; opaque label<7..255>; opaque context<0..255>; } */
    uint8_t info[2 + 1 + 255 + 1];
    size_t llen = strlen(label);
    if (llen > 255 - 6 || outlen > 0xFFFF) return -1;
    info[0] = (uint8_t)(outlen >> 8);
    info[1] = (uint8_t)outlen;
    info[2] = (uint8_t)(6 + llen);
    memcpy(info + 3, "tls13 ", 6);
    memcpy(info + 9, label, llen);
    info[9 + llen] = 0;     /* empty context */
    size_t ilen = 10 + llen;

    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *kc = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    EVP_KDF_free(kdf);
    if (!kc) return -1;
    int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)md, 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, slen),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, ilen),
        OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
        OSSL_PARAM_construct_end(),
    };
    int rc = EVP_KDF_derive(kc, out, outlen, params) > 0 ? 0 : -1;
    EVP_KDF_CTX_free(kc);
    return rc;
}

static int hmac(const char *md, const uint8_t *key, size_t klen, const uint8_t *a, size_t alen,
                const uint8_t *b, size_t blen, uint8_t *out, size_t *outlen)
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *mc = mac ? EVP_MAC_CTX_new(mac) : NULL;
    EVP_MAC_free(mac);
    if (!mc) return -1;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)md, 0),
        OSSL_PARAM_construct_end(),
    };
    int ok = EVP_MAC_init(mc, key, klen, params) > 0 && EVP_MAC_update(mc, a, alen) > 0 &&
             (!blen || EVP_MAC_update(mc, b, blen) > 0) &&
             EVP_MAC_final(mc, out, outlen, EVP_MAX_MD_SIZE) > 0;
    EVP_MAC_CTX_free(mc);
    return ok ? 0 : -1;
}

int cap_tls12_prf(const char *md, const uint8_t *secret, size_t slen, const char *label,
                  const uint8_t *seed, size_t seedlen, uint8_t *out, size_t outlen)
{
    /* P_hash(secret, label + seed): A(i) = HMAC(secret, A(i-1)), A(0) = the
     * seed; the output is HMAC(secret, A(i) + seed) for i = 1, 2, ... */
    uint8_t ls[128], a[EVP_MAX_MD_SIZE], block[EVP_MAX_MD_SIZE];
    size_t llen = strlen(label), alen, blen;
    if (llen + seedlen > sizeof ls) return -1;
    memcpy(ls, label, llen);
    memcpy(ls + llen, seed, seedlen);
    size_t lslen = llen + seedlen;
    if (hmac(md, secret, slen, ls, lslen, NULL, 0, a, &alen) < 0) return -1;
    size_t done = 0;
    while (done < outlen) {
        if (hmac(md, secret, slen, a, alen, ls, lslen, block, &blen) < 0) return -1;
        size_t k = outlen - done < blen ? outlen - done : blen;
        memcpy(out + done, block, k);
        done += k;
        if (hmac(md, secret, slen, a, alen, NULL, 0, a, &alen) < 0) return -1;
    }
    return 0;
}

static int set_key(tls_dir *t, const suite *cs, const uint8_t *key, const uint8_t *iv)
{
    if (!t->aead && !(t->aead = EVP_CIPHER_CTX_new())) return -1;
    EVP_CIPHER *ciph = EVP_CIPHER_fetch(NULL, cs->cipher, NULL);
    int ok = ciph && EVP_DecryptInit_ex2(t->aead, ciph, key, NULL, NULL) > 0;
    EVP_CIPHER_free(ciph);
    memcpy(t->iv, iv, cs->iv_len);
    t->seq = 0;
    return ok ? 0 : -1;
}

/* TLS 1.3: the direction's keys from a traffic secret. */
static int set_secret13(tls_dir *t, const suite *cs, const uint8_t *secret)
{
    size_t hlen = !strcmp(cs->md, "SHA384") ? 48 : 32;
    uint8_t key[32], iv[12];
    memcpy(t->secret, secret, hlen);
    if (cap_tls13_expand_label(cs->md, secret, hlen, "key", key, cs->key_len) < 0 ||
        cap_tls13_expand_label(cs->md, secret, hlen, "iv", iv, 12) < 0)
        return -1;
    return set_key(t, cs, key, iv);
}

/* Opens one AEAD record body into out; false when it does not open. */
static bool aead_open(tls_dir *t, const uint8_t nonce[12], const uint8_t *aad, size_t aadlen,
                      const uint8_t *in, size_t len, uint8_t *out, size_t *outlen)
{
    int ol = 0, fl = 0;
    if (len < TAG_LEN) return false;
    size_t ct = len - TAG_LEN;
    EVP_CIPHER_CTX *x = t->aead;
    if (EVP_DecryptInit_ex2(x, NULL, NULL, nonce, NULL) <= 0 ||
        EVP_DecryptUpdate(x, NULL, &ol, aad, (int)aadlen) <= 0 ||
        EVP_DecryptUpdate(x, out, &ol, in, (int)ct) <= 0 ||
        EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_SET_TAG, TAG_LEN, (void *)(in + ct)) <= 0 ||
        EVP_DecryptFinal_ex(x, out + ol, &fl) <= 0)
        return false;
    *outlen = (size_t)ol + (size_t)fl;
    return true;
}

static void seq_nonce(const uint8_t iv[12], uint64_t seq, uint8_t nonce[12])
{
    memcpy(nonce, iv, 12);
    for (int i = 0; i < 8; i++) nonce[11 - i] ^= (uint8_t)(seq >> (8 * i));
}

/* Decrypts the record in t->rec into out (REC_MAX bytes); stores the
 * content type (TLS 1.3: the inner one) and the plaintext length. */
static bool open_record(const cap_tls *s, tls_dir *t, uint8_t *out, size_t *outlen, uint8_t *type)
{
    const uint8_t *body = t->rec.p;
    size_t len = t->rec_len;
    uint8_t nonce[12];
    if (s->cs->tls13) {
        seq_nonce(t->iv, t->seq, nonce);
        if (!aead_open(t, nonce, t->hdr, REC_HDR, body, len, out, outlen)) return false;
        /* TLSInnerPlaintext: content, the real type, zero padding. */
        size_t n = *outlen;
        while (n > 0 && out[n - 1] == 0) n--;
        if (n == 0) return false;
        *type = out[n - 1];
        *outlen = n - 1;
        return true;
    }
    const uint8_t *ct = body;
    size_t ctlen = len;
    if (s->cs->iv_len == 4) {       /* GCM: salt, then the record's explicit nonce */
        if (len < 8 + TAG_LEN) return false;
        memcpy(nonce, t->iv, 4);
        memcpy(nonce + 4, body, 8);
        ct += 8;
        ctlen -= 8;
    } else {
        seq_nonce(t->iv, t->seq, nonce);
    }
    if (ctlen < TAG_LEN) return false;
    uint8_t aad[13];
    for (int i = 0; i < 8; i++) aad[i] = (uint8_t)(t->seq >> (56 - 8 * i));
    aad[8] = t->hdr[0];
    aad[9] = t->hdr[1];
    aad[10] = t->hdr[2];
    aad[11] = (uint8_t)((ctlen - TAG_LEN) >> 8);
    aad[12] = (uint8_t)(ctlen - TAG_LEN);
    *type = t->hdr[0];
    return aead_open(t, nonce, aad, sizeof aad, ct, ctlen, out, outlen);
}

/* ---- keys from the key log ---- */

static const suite *find_suite(uint16_t id, bool tls13)
{
    for (size_t i = 0; i < sizeof suites / sizeof *suites; i++)
        if (suites[i].id == id && suites[i].tls13 == tls13) return &suites[i];
    return NULL;
}

static void report_error(cap_ctx *c, cap_flow *f, int dir, const char *msg)
{
    cap_event ev = {.type = CAP_EV_ERROR, .error = msg};
    cap_emit(c, f, dir, &ev);
    c->st.errors++;
}

static void stop_dir(cap_ctx *c, cap_flow *f, int dir)
{
    f->tls->d[dir].stopped = true;
    cap_dir_stop(c, f, dir);
}

/* The session cannot be decrypted: said once per direction, both stop. */
static void fail_session(cap_ctx *c, cap_flow *f, const char *msg)
{
    cap_tls *s = f->tls;
    s->failed = true;
    for (int d = 0; d < 2; d++) {
        if (s->d[d].stopped) continue;
        report_error(c, f, d, msg);
        stop_dir(c, f, d);
        cap_stream_stop(&f->d[d].st, &c->mem);
    }
}

static int key13(cap_ctx *c, cap_flow *f)
{
    cap_tls *s = f->tls;
    unsigned need = 1u << CAP_KL_CLIENT_HS | 1u << CAP_KL_SERVER_HS | 1u << CAP_KL_CLIENT_AP |
                    1u << CAP_KL_SERVER_AP;
    const cap_kl_session *k = cap_keylog_find(c->keylog, s->client_random, need);
    size_t hlen = !strcmp(s->cs->md, "SHA384") ? 48 : 32;
    if (!k) return -1;
    if (k->len[CAP_KL_CLIENT_HS] != hlen || k->len[CAP_KL_CLIENT_AP] != hlen ||
        k->len[CAP_KL_SERVER_HS] != hlen || k->len[CAP_KL_SERVER_AP] != hlen)
        return -2;
    memcpy(s->d[0].app_secret, k->secret[CAP_KL_CLIENT_AP], hlen);
    memcpy(s->d[1].app_secret, k->secret[CAP_KL_SERVER_AP], hlen);
    if (set_secret13(&s->d[0], s->cs, k->secret[CAP_KL_CLIENT_HS]) < 0 ||
        set_secret13(&s->d[1], s->cs, k->secret[CAP_KL_SERVER_HS]) < 0)
        return -3;
    s->d[0].encrypted = s->d[1].encrypted = true;
    return 0;
}

static int key12(cap_ctx *c, cap_flow *f)
{
    cap_tls *s = f->tls;
    const cap_kl_session *k = cap_keylog_find(c->keylog, s->client_random, 1u << CAP_KL_MASTER);
    if (!k) return -1;
    /* key_block = PRF(master, "key expansion", server_random + client_random):
     * client key, server key, client IV, server IV (no MAC keys with AEAD). */
    uint8_t seed[64], block[2 * 32 + 2 * 12];
    memcpy(seed, s->server_random, 32);
    memcpy(seed + 32, s->client_random, 32);
    const suite *cs = s->cs;
    size_t need = 2u * cs->key_len + 2u * cs->iv_len;
    if (cap_tls12_prf(cs->md, k->secret[CAP_KL_MASTER], 48, "key expansion", seed, 64, block,
                      need) < 0)
        return -3;
    const uint8_t *ck = block, *sk = block + cs->key_len, *civ = sk + cs->key_len,
                  *siv = civ + cs->iv_len;
    if (set_key(&s->d[0], cs, ck, civ) < 0 || set_key(&s->d[1], cs, sk, siv) < 0) return -3;
    return 0;
}

static void announce(cap_ctx *c, cap_flow *f)
{
    cap_tls *s = f->tls;
    char msg[96];
    snprintf(msg, sizeof msg, "TLS 1.%d %s, decrypted with the key log",
             s->version == 0x0304 ? 3 : 2, s->cs->name);
    cap_event ev = {.type = CAP_EV_TLS, .why = msg};
    cap_emit(c, f, 1, &ev);
}

static const char no_key[] = "TLS: this session is not in the key log: not decrypted";

/* The keys of the session, once its ServerHello says what they are. Live,
 * a session not in the key log yet waits for it (see hold()). */
static void setup_keys(cap_ctx *c, cap_flow *f)
{
    cap_tls *s = f->tls;
    if (s->keyed || s->failed) return;
    int rc = s->cs->tls13 ? key13(c, f) : key12(c, f);
    if (rc == -1 && c->out.live) {
        if (!s->waiting) s->wait_since = c->now;
        s->waiting = true;
        return;
    }
    s->waiting = false;
    if (rc == -1) {
        fail_session(c, f, no_key);
        return;
    }
    if (rc < 0) {
        fail_session(c, f, rc == -2 ? "TLS: the key log's secrets do not fit the cipher suite"
                                    : "TLS: key derivation failed");
        return;
    }
    s->keyed = true;
    announce(c, f);
}

/* ---- handshake messages ---- */

static void parse_client_hello(cap_tls *s, const uint8_t *p, size_t n)
{
    if (n < 34) return;
    memcpy(s->client_random, p + 2, 32);
    s->have_client_random = true;
}

/* Version, suite and random; a HelloRetryRequest is skipped (the second
 * ClientHello keeps the random). Returns -1 when it is not usable. */
static int parse_server_hello(cap_tls *s, const uint8_t *p, size_t n, uint16_t *suite_id)
{
    if (n < 38) return -1;
    if (!memcmp(p + 2, hrr_random, 32)) return 1;
    memcpy(s->server_random, p + 2, 32);
    uint16_t version = (uint16_t)(p[0] << 8 | p[1]);
    size_t off = 34;
    size_t sid = p[off++];
    if (off + sid + 3 > n) return -1;
    off += sid;
    *suite_id = (uint16_t)(p[off] << 8 | p[off + 1]);
    off += 3;                   /* the suite, the compression method */
    if (off + 2 <= n) {
        size_t end = off + 2 + (size_t)(p[off] << 8 | p[off + 1]);
        if (end > n) return -1;
        off += 2;
        while (off + 4 <= end) {
            uint16_t type = (uint16_t)(p[off] << 8 | p[off + 1]);
            size_t len = (size_t)(p[off + 2] << 8 | p[off + 3]);
            off += 4;
            if (off + len > end) return -1;
            if (type == EXT_SUPPORTED_VERSIONS && len == 2)
                version = (uint16_t)(p[off] << 8 | p[off + 1]);
            off += len;
        }
    }
    s->version = version;
    return 0;
}

static void server_hello(cap_ctx *c, cap_flow *f, const uint8_t *p, size_t n)
{
    cap_tls *s = f->tls;
    uint16_t id = 0;
    int rc = parse_server_hello(s, p, n, &id);
    if (rc > 0) return;
    char msg[96];
    if (rc < 0 || !s->have_client_random) {
        fail_session(c, f, "TLS: malformed or missing hello: not decrypted");
        return;
    }
    if (s->version != 0x0303 && s->version != 0x0304) {
        snprintf(msg, sizeof msg, "TLS: version 0x%04x not decrypted (1.2 and 1.3 are)",
                 s->version);
        fail_session(c, f, msg);
        return;
    }
    if (!(s->cs = find_suite(id, s->version == 0x0304))) {
        snprintf(msg, sizeof msg, "TLS: cipher suite 0x%04x not decrypted (AEAD suites are)", id);
        fail_session(c, f, msg);
        return;
    }
    s->have_server_hello = true;
    if (s->cs->tls13) setup_keys(c, f);     /* what follows is encrypted */
}

/* Hellos after the ServerHello (a renegotiation, or bytes made up to
 * confuse) are not followed: the session keeps the keys it has. */
static void hello_done(cap_ctx *c, cap_flow *f, int dir, tls_dir *t)
{
    cap_tls *s = f->tls;
    if (!s->have_server_hello) {
        if (t->hs_type == HS_CLIENT_HELLO && dir == 0) parse_client_hello(s, t->hs.p, t->hs.len);
        else if (t->hs_type == HS_SERVER_HELLO && dir == 1) server_hello(c, f, t->hs.p, t->hs.len);
    }
    cap_buf_free(c, &t->hs);
}

/* Follows the handshake messages of a direction: the hellos (plaintext)
 * are collected and parsed; for encrypted ones only Finished and KeyUpdate
 * matter. */
static void handshake_bytes(cap_ctx *c, cap_flow *f, int dir, const uint8_t *p, size_t n)
{
    tls_dir *t = &f->tls->d[dir];
    while (n > 0 && !f->tls->failed) {
        if (t->hs_hdr_len < 4) {
            t->hs_hdr[t->hs_hdr_len++] = *p++;
            n--;
            if (t->hs_hdr_len < 4) continue;
            t->hs_type = t->hs_hdr[0];
            t->hs_left = (uint32_t)t->hs_hdr[1] << 16 | (uint32_t)t->hs_hdr[2] << 8 | t->hs_hdr[3];
            t->hs_collect = !t->encrypted && (t->hs_type == HS_CLIENT_HELLO ||
                                              t->hs_type == HS_SERVER_HELLO);
            if (t->hs_collect && t->hs_left > HS_MAX) {
                fail_session(c, f, "TLS: hello message too long: not decrypted");
                return;
            }
            if (t->hs_left > 0) continue;
        }
        size_t k = n < t->hs_left ? n : t->hs_left;
        if (t->hs_collect && k && cap_buf_append(c, &t->hs, p, k) < 0) {
            fail_session(c, f, "TLS: out of memory (--max-mem)");
            return;
        }
        p += k, n -= k;
        t->hs_left -= (uint32_t)k;
        if (t->hs_left > 0) continue;
        t->hs_hdr_len = 0;
        if (t->hs_collect) hello_done(c, f, dir, t);
        else if (t->hs_type == HS_FINISHED && t->encrypted) t->finished_seen = true;
        else if (t->hs_type == HS_KEY_UPDATE && t->encrypted) t->key_update_seen = true;
    }
}

/* ---- records ---- */

/* TLS 1.3: Finished or KeyUpdate ended the record; the next one uses the
 * next keys. */
static int next_keys13(cap_tls *s, tls_dir *t)
{
    if (t->finished_seen && !t->app_keys) {
        t->app_keys = true;
        t->finished_seen = false;
        return set_secret13(t, s->cs, t->app_secret);
    }
    if (t->key_update_seen && t->app_keys) {
        uint8_t next[CAP_SECRET_MAX];
        size_t hlen = !strcmp(s->cs->md, "SHA384") ? 48 : 32;
        t->key_update_seen = false;
        if (cap_tls13_expand_label(s->cs->md, t->secret, hlen, "traffic upd", next, hlen) < 0)
            return -1;
        return set_secret13(t, s->cs, next);
    }
    t->finished_seen = t->key_update_seen = false;
    return 0;
}

/* A record that did not open, reported as the gap it leaves. A TLS 1.2
 * record's plaintext length is known, so frame decoding can resume after
 * it as after a TCP gap; a TLS 1.3 one may have been padded, and decoding
 * the direction further could take padding for frames: it stops. */
static int record_lost(cap_ctx *c, cap_flow *f, int dir, const cap_tls *s, size_t len)
{
    c->st.tls_bad_records++;
    size_t overhead = TAG_LEN + (s->cs->tls13 ? 1 : s->cs->iv_len == 4 ? 8 : 0);
    uint64_t missing = len > overhead ? len - overhead : 1;
    if (!s->cs->tls13) return cap_dir_gap(c, f, dir, missing);
    c->st.gaps++;
    c->st.gap_bytes += missing;
    cap_event ev = {.type = CAP_EV_GAP, .missing = missing};
    cap_emit(c, f, dir, &ev);
    report_error(c, f, dir, "TLS 1.3: a record did not decrypt: not decoded further");
    stop_dir(c, f, dir);
    return 1;
}

/* TLS 1.3: a handshake-key record that does not open may be the first one
 * under application keys (its Finished was in a record that did not open). */
static bool open_or_skip_ahead(cap_tls *s, tls_dir *t, uint8_t *out, size_t *len, uint8_t *type)
{
    if (open_record(s, t, out, len, type)) return true;
    if (!s->cs->tls13 || t->app_keys) return false;
    uint8_t saved[CAP_SECRET_MAX];
    size_t hlen = !strcmp(s->cs->md, "SHA384") ? 48 : 32;
    memcpy(saved, t->secret, hlen);
    uint64_t seq = t->seq;
    if (set_secret13(t, s->cs, t->app_secret) == 0 && open_record(s, t, out, len, type)) {
        t->app_keys = true;
        return true;
    }
    set_secret13(t, s->cs, saved);
    t->seq = seq;
    return false;
}

/* Plaintext goes to one buffer of the context, reused for every record. */
static int plain_buffer(cap_ctx *c)
{
    cap_buf *b = &c->tls_plain;
    if (b->cap >= REC_MAX) return 0;
    uint8_t *q = cap_mem_realloc(&c->mem, b->p, b->cap, REC_MAX);
    if (!q) return -1;
    b->p = q;
    b->cap = REC_MAX;
    return 0;
}

static int encrypted_record(cap_ctx *c, cap_flow *f, int dir, tls_dir *t)
{
    cap_tls *s = f->tls;
    if (plain_buffer(c) < 0) {
        fail_session(c, f, "TLS: out of memory (--max-mem)");
        return 1;
    }
    uint8_t *out = c->tls_plain.p, type = 0;
    size_t len = 0;
    if (!open_or_skip_ahead(s, t, out, &len, &type)) {
        t->seq++;
        return record_lost(c, f, dir, s, t->rec_len);
    }
    t->seq++;
    switch (type) {
    case CT_APPDATA:
        c->st.tls_records++;
        return len ? cap_dir_feed(c, f, dir, out, len) : 0;
    case CT_HANDSHAKE:
        handshake_bytes(c, f, dir, out, len);
        if (s->cs->tls13 && next_keys13(s, t) < 0) {
            fail_session(c, f, "TLS: key derivation failed");
            return 1;
        }
        return t->stopped;
    default:                    /* alerts: close_notify and the like */
        return 0;
    }
}

static int record(cap_ctx *c, cap_flow *f, int dir, tls_dir *t)
{
    cap_tls *s = f->tls;
    uint8_t type = t->hdr[0];
    if (t->encrypted && (type == CT_APPDATA || !s->cs->tls13) && type != CT_CCS)
        return encrypted_record(c, f, dir, t);
    switch (type) {
    case CT_HANDSHAKE:
        handshake_bytes(c, f, dir, t->rec.p, t->rec_len);
        return t->stopped;
    case CT_CCS:
        /* TLS 1.2: this direction's next records are encrypted. In 1.3
         * it only pleases middleboxes. */
        if (!s->have_server_hello || s->cs->tls13 || t->encrypted) return 0;
        setup_keys(c, f);
        if (s->failed) return 1;
        t->encrypted = true;
        t->seq = 0;
        return 0;
    case CT_APPDATA:
        if (!s->have_server_hello)
            fail_session(c, f, "TLS: data before the ServerHello (0-RTT?): not decrypted");
        return s->failed;
    default:
        return 0;
    }
}

static bool header_ok(const uint8_t h[REC_HDR], size_t *len)
{
    *len = (size_t)(h[3] << 8 | h[4]);
    return h[0] >= CT_CCS && h[0] <= CT_APPDATA + 1 && h[1] == 3 && *len <= REC_MAX;
}

bool cap_tls_client_hello(const uint8_t *p, size_t n)
{
    return n >= 6 && p[0] == CT_HANDSHAKE && p[1] == 3 && p[2] <= 4 && p[5] == HS_CLIENT_HELLO;
}

static cap_tls *tls_of(cap_ctx *c, cap_flow *f)
{
    if (!f->tls && (f->tls = cap_mem_alloc(&c->mem, sizeof *f->tls)))
        memset(f->tls, 0, sizeof *f->tls);
    return f->tls;
}

/* The secrets came: what each direction held goes through. */
static void release(cap_ctx *c, cap_flow *f)
{
    for (int d = 0; d < 2; d++) {
        cap_buf held = f->tls->d[d].held;
        memset(&f->tls->d[d].held, 0, sizeof held);
        if (held.len && cap_tls_feed(c, f, d, held.p, held.len))
            cap_stream_stop(&f->d[d].st, &c->mem);
        cap_buf_free(c, &held);
    }
}

/* Live: bytes that come while the session waits for its secrets are held
 * (bounded in time and size), and the key log read again. */
static int hold(cap_ctx *c, cap_flow *f, int dir, const uint8_t *p, size_t n)
{
    cap_tls *s = f->tls;
    tls_dir *t = &s->d[dir];
    if (t->held.len + n > WAIT_BYTES || c->now - s->wait_since > WAIT_SECONDS ||
        cap_buf_append(c, &t->held, p, n) < 0) {
        s->waiting = false;
        fail_session(c, f, no_key);
        return 1;
    }
    setup_keys(c, f);
    if (s->keyed) release(c, f);
    return t->stopped || f->d[dir].app == CAP_APP_STOPPED;
}

int cap_tls_feed(cap_ctx *c, cap_flow *f, int dir, const uint8_t *p, size_t n)
{
    cap_tls *s = tls_of(c, f);
    if (!s) {
        report_error(c, f, dir, "TLS: out of memory (--max-mem)");
        cap_dir_stop(c, f, dir);
        return 1;
    }
    if (s->waiting) return hold(c, f, dir, p, n);
    tls_dir *t = &s->d[dir];
    while (n > 0 && !t->stopped) {
        if (t->hdr_len < REC_HDR) {
            size_t want = (size_t)(REC_HDR - t->hdr_len);
            size_t k = want < n ? want : n;
            memcpy(t->hdr + t->hdr_len, p, k);
            t->hdr_len = (uint8_t)(t->hdr_len + k);
            p += k, n -= k;
            if (t->hdr_len < REC_HDR) break;
            if (!header_ok(t->hdr, &t->rec_len)) {
                report_error(c, f, dir, "not TLS: bad record header: not decoded further");
                stop_dir(c, f, dir);
                break;
            }
            t->rec.len = 0;
        }
        size_t k = t->rec_len - t->rec.len < n ? t->rec_len - t->rec.len : n;
        if (k && cap_buf_append(c, &t->rec, p, k) < 0) {
            report_error(c, f, dir, "TLS: out of memory (--max-mem)");
            stop_dir(c, f, dir);
            break;
        }
        p += k, n -= k;
        if (t->rec.len < t->rec_len) break;
        t->hdr_len = 0;
        if (record(c, f, dir, t)) break;
        if (s->waiting) return n ? hold(c, f, dir, p, n) : 0;
    }
    return t->stopped || f->d[dir].app == CAP_APP_STOPPED;
}

int cap_tls_gap(cap_ctx *c, cap_flow *f, int dir, uint64_t missing)
{
    cap_tls *s = tls_of(c, f);
    if (s && !s->d[dir].stopped) {
        cap_event ev = {.type = CAP_EV_GAP, .missing = missing};
        cap_emit(c, f, dir, &ev);
        report_error(c, f, dir, "TLS: record boundaries lost in the gap: not decoded further");
        stop_dir(c, f, dir);
    }
    return 1;
}

void cap_tls_end(cap_ctx *c, cap_flow *f, int dir)
{
    cap_tls *s = f->tls;
    if (s && s->waiting) {      /* the last chance for the secrets */
        setup_keys(c, f);
        if (s->keyed) {
            release(c, f);
        } else {
            s->waiting = false;
            fail_session(c, f, no_key);
        }
    }
    if (!s || s->d[dir].stopped || f->d[dir].app == CAP_APP_STOPPED) return;
    tls_dir *t = &s->d[dir];
    if (t->hdr_len == 0) return;
    uint64_t missing = REC_HDR - t->hdr_len;
    if (t->hdr_len == REC_HDR) missing = t->rec_len - t->rec.len;
    t->hdr_len = 0;
    c->st.gaps++;
    c->st.gap_bytes += missing;
    cap_event ev = {.type = CAP_EV_GAP, .missing = missing};
    cap_emit(c, f, dir, &ev);
    stop_dir(c, f, dir);
}

void cap_tls_free(cap_ctx *c, cap_flow *f)
{
    cap_tls *s = f->tls;
    if (!s) return;
    for (int d = 0; d < 2; d++) {
        cap_buf_free(c, &s->d[d].rec);
        cap_buf_free(c, &s->d[d].hs);
        cap_buf_free(c, &s->d[d].held);
        EVP_CIPHER_CTX_free(s->d[d].aead);
    }
    OPENSSL_cleanse(s, sizeof *s);
    cap_mem_free(&c->mem, s, sizeof *s);
    f->tls = NULL;
}
