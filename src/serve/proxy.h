/* proxy.h -- who the client is: addresses in one normalised form, the key
 * that per-address limits count by (IPv4 /32, IPv6 /64), CIDR lists of
 * trusted proxies, and the two ways a trusted proxy names the client: the
 * PROXY protocol (v1 text, v2 binary, as haproxy's send-proxy[-v2] sends
 * it) and the X-Forwarded-For header. Pure functions: no sockets, no libuv. */
#ifndef TAGARELA_PROXY_H
#define TAGARELA_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define ADDR_TEXT_LEN 46            /* INET6_ADDRSTRLEN */

/* An address, normalised: IPv4 (an IPv4-mapped IPv6 one included) is its 4
 * bytes, IPv6 its 16. len 0: none known (a unix socket, say). */
typedef struct net_addr {
    uint8_t bytes[16];
    uint8_t len;
} net_addr;

/* From a socket address; false for a family that is neither. */
bool net_addr_from_sockaddr(net_addr *a, const struct sockaddr *sa);
/* From text ("192.0.2.1", "2001:db8::1"); false when it is neither. */
bool net_addr_parse(net_addr *a, const char *s, size_t n);
/* Printable form for logs, always NUL-terminated ("-" when none). */
void net_addr_format(const net_addr *a, char out[ADDR_TEXT_LEN]);

/* What per-address limits count by: an IPv4 address whole, an IPv6 one by
 * its /64 (one site's or one host's share: a single machine commonly has a
 * whole /64 to pick addresses from). Returns the key length (4 or 8). */
size_t net_addr_limit_key(const net_addr *a, uint8_t key[8]);

typedef struct cidr {
    net_addr net;                   /* host bits cleared */
    uint8_t prefix;                 /* 0..32 or 0..128 */
} cidr;

/* "10.0.0.0/8", "2001:db8::/32", or an address alone (/32, /128).
 * Returns 0 or -1. */
int cidr_parse(cidr *c, const char *s);
bool cidr_match(const cidr *c, const net_addr *a);
bool cidr_list_match(const cidr *list, size_t n, const net_addr *a);

/* ---- PROXY protocol --------------------------------------------------- */

#define PROXY_V1_MAX 107            /* the spec's longest v1 line, CRLF included */
#define PROXY_V2_HEADER 16
#define PROXY_V2_MAX_BODY 1024      /* addresses and TLVs we accept after it */
#define PROXY_MAX (PROXY_V2_HEADER + PROXY_V2_MAX_BODY)

enum proxy_status {
    PROXY_ABSENT = 0,               /* the bytes do not start a PROXY header */
    PROXY_MORE,                     /* a header has started: need more bytes */
    PROXY_DONE,                     /* a whole header, *used bytes long */
    PROXY_BAD,                      /* a malformed or oversized header */
};

typedef struct proxy_info {
    bool has_addr;                  /* false: LOCAL, UNKNOWN, UNSPEC or unix:
                                     * keep the connection's own address */
    net_addr src;
    uint16_t src_port;
    uint8_t version;                /* 1 or 2 */
} proxy_info;

/* Looks at the first n bytes of a connection. With PROXY_DONE, *used is the
 * header's length and info is filled. */
enum proxy_status proxy_parse(const uint8_t *p, size_t n, proxy_info *info, size_t *used);

/* ---- X-Forwarded-For -------------------------------------------------- */

/* The client named by a comma-separated X-Forwarded-For value, as seen by
 * a server whose peer is trusted: the right-most address that is not itself
 * a trusted proxy (each one appends the address it got the request from).
 * When all are trusted, the left-most; when an entry is not an address, the
 * walk stops there and the last trusted one passed is the answer. Returns
 * false when the value names no usable address. */
bool xff_client(const char *v, size_t n, const cidr *trusted, size_t ntrusted, net_addr *out);

#endif
