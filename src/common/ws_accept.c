/* ws_accept.c -- the handshake's Sec-WebSocket-Accept value (ws_codec.h).
 * Apart so that the codec needs nothing but libc: this SHA-1 is the one use
 * of libcrypto in common. */
#include "ws_codec.h"

#include <openssl/evp.h>
#include <string.h>

void ws_accept_key(const char *key, size_t n, char out[WS_ACCEPT_LEN + 1])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char buf[64 + sizeof guid];
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    if (n > 64) n = 64;             /* valid keys are 24 bytes */
    memcpy(buf, key, n);
    memcpy(buf + n, guid, sizeof guid - 1);
    EVP_Digest(buf, n + sizeof guid - 1, digest, &dlen, EVP_sha1(), NULL);
    EVP_EncodeBlock((unsigned char *)out, digest, (int)dlen);
    out[WS_ACCEPT_LEN] = '\0';
}
