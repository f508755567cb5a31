/* tls.h -- TLS inside a captured connection, decrypted with the secrets of
 * an NSS key log: the record layer, the handshake messages that say which
 * version, suite and randoms are in use, the TLS 1.3 key schedule (RFC 8446
 * section 7) and the TLS 1.2 one (RFC 5246 PRF, AEAD suites of RFC 5288
 * and 7905). What comes out of the records is fed to the same decoders as
 * plain TCP (cap_dir_feed). Crypto primitives are OpenSSL's EVP. */
#ifndef TAGARELA_CAPTURE_TLS_H
#define TAGARELA_CAPTURE_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cap_ctx cap_ctx;
typedef struct cap_flow cap_flow;
typedef struct cap_tls cap_tls;

/* Whether a packet's payload starts like a TLS ClientHello record. */
bool cap_tls_client_hello(const uint8_t *p, size_t n);

/* In-order bytes of one direction of a TLS connection; nonzero: stopped. */
int cap_tls_feed(cap_ctx *c, cap_flow *f, int dir, const uint8_t *p, size_t n);

/* Bytes of the direction never captured: reported, and since the record
 * boundaries are lost with them, the direction stops. Returns 1. */
int cap_tls_gap(cap_ctx *c, cap_flow *f, int dir, uint64_t missing);

/* The direction's stream ended: a record cut short is reported as a gap. */
void cap_tls_end(cap_ctx *c, cap_flow *f, int dir);

void cap_tls_free(cap_ctx *c, cap_flow *f);

/* TLS 1.3's HKDF-Expand-Label (RFC 8446 7.1) with an empty context, and
 * TLS 1.2's PRF (RFC 5246 section 5) over label and seed; md is "SHA256"
 * or "SHA384". Return 0, or -1 when OpenSSL failed. */
int cap_tls13_expand_label(const char *md, const uint8_t *secret, size_t slen,
                           const char *label, uint8_t *out, size_t outlen);
int cap_tls12_prf(const char *md, const uint8_t *secret, size_t slen, const char *label,
                  const uint8_t *seed, size_t seedlen, uint8_t *out, size_t outlen);

#endif
