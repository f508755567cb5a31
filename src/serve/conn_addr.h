/* conn_addr.h -- whose connection it is (conn_addr.c): the peer, or the
 * client a trusted proxy names, and the count against its address. */
#ifndef TAGARELA_CONN_ADDR_H
#define TAGARELA_CONN_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "http_req.h"
#include "proxy.h"

/* The client's address is a (known at accept, or told by a trusted proxy):
 * keep it on c and count c against it instead of any earlier address.
 * False when that address has too many connections already. */
bool conn_set_addr(conn *c, const net_addr *a);
/* The peer's address and whether it is a trusted proxy. */
void conn_note_peer(conn *c);
/* A 503 for a connection over its address's limit, then the end. */
void conn_refuse_busy(conn *c);

#define PROXY_SIG_MAX 12
enum conn_proxy_step {
    CONN_PROXY_GO_ON,               /* *data, *n: what follows, HTTP */
    CONN_PROXY_STOP,                /* wait for more, or the connection ended */
    CONN_PROXY_REPLAY,              /* held[0..*held_n) is HTTP, then *data */
};
/* The start of a trusted peer's connection: a PROXY header or not. */
enum conn_proxy_step conn_proxy_input(conn *c, uint8_t **data, size_t *n,
                                      uint8_t held[PROXY_SIG_MAX], size_t *held_n);
/* An upgrade request from a trusted peer: count the connection against
 * the client its X-Forwarded-For names (or the peer). False: over the limit. */
bool conn_count_forwarded(conn *c, const http_req *r);

#endif
