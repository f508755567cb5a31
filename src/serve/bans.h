/* bans.h -- the operator's bans: addresses (an address or a CIDR, checked
 * at each WebSocket handshake) and names (checked by the chat at login),
 * each until a time. Kept in <data>/bans.json across restarts. */
#ifndef TAGARELA_BANS_H
#define TAGARELA_BANS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "proxy.h"
#include "sbuf.h"

#define BANS_MAX 1024               /* bans in force at once */
#define BAN_TEXT_MAX 200            /* bytes of a name (escaped) or of a reason */

enum ban_kind { BAN_ADDRESS, BAN_NAME };

typedef struct ban {
    uint32_t id;
    uint8_t kind;
    cidr net;                       /* BAN_ADDRESS */
    char text[BAN_TEXT_MAX + 1];    /* the CIDR as given, or the name as sent on the wire */
    char reason[BAN_TEXT_MAX + 1];
    uint64_t until_ms;              /* wall clock */
} ban;

/* Changed on the hub's thread only; read by every worker at handshakes,
 * under the lock. */
typedef struct ban_table {
    uv_mutex_t lock;
    ban *v;
    size_t len;
    uint32_t next_id;
    char *path;                     /* the file they are kept in; NULL: none */
} ban_table;

/* Loads dir/bans.json when there is one (dir NULL: kept in memory only).
 * Returns 0, or -1 after saying on stderr what is wrong with the file. */
int bans_init(ban_table *t, const char *dir);
void bans_free(ban_table *t);

/* Parses a ban's target: an address or CIDR ("192.0.2.7", "2001:db8::/48")
 * for BAN_ADDRESS. An IPv6 address alone bans its /64, as
 * --max-conns-per-ip counts it. Returns 0 or -1. */
int ban_parse_address(const char *s, cidr *out);

/* Adds a ban; its id, or 0 when the table is full. text is a CIDR's text
 * or an escaped name. */
uint32_t bans_add(ban_table *t, uint8_t kind, const cidr *net, const char *text, const char *reason,
                  uint64_t until_ms);
bool bans_remove(ban_table *t, uint32_t id);
/* True when a ban in force at now_ms covers the address a. */
bool bans_address(ban_table *t, const net_addr *a, uint64_t now_ms);
/* A name ban in force: names compare ignoring ASCII case. */
bool bans_name(ban_table *t, const char *name, size_t n, uint64_t now_ms);
/* A JSON array of the bans in force. */
void bans_list(ban_table *t, sbuf *o, uint64_t now_ms);
/* Writes the table to its file (atomically: a temporary file renamed).
 * Returns 0 or -1 (logged). */
int bans_save(ban_table *t);

#endif
