/* admin_req.h -- the operator's requests under /admin/ (docs/operating.md,
 * "Moderation"): from method, path and JSON body to a command, or to the
 * HTTP error that answers it. Pure: no sockets, no chat. */
#ifndef TAGARELA_ADMIN_REQ_H
#define TAGARELA_ADMIN_REQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bans.h"
#include "proxy.h"

#define ADMIN_PAGE_DEFAULT 100          /* rooms or users in one answer */
#define ADMIN_PAGE_MAX 1000
#define ADMIN_ROOM_MAX 64               /* the contract's longest room id */
#define ADMIN_BAN_SECONDS_MAX (3650.0 * 86400)

enum admin_op { ADM_ROOMS, ADM_USERS, ADM_KICK, ADM_BANS, ADM_BAN, ADM_UNBAN, ADM_DELETE };

typedef struct admin_cmd {
    uint8_t op;
    size_t offset, limit;               /* ROOMS, USERS */
    uint32_t uid;                       /* KICK */
    uint32_t ban_id;                    /* UNBAN */
    uint8_t ban_kind;                   /* BAN: enum ban_kind */
    cidr net;                           /* BAN of an address */
    uint64_t seconds;                   /* BAN */
    uint64_t msg_id;                    /* DELETE */
    char room[ADMIN_ROOM_MAX + 1];      /* DELETE */
    size_t room_len;
    char text[BAN_TEXT_MAX + 1];        /* BAN: the address as given, or the escaped name */
    char reason[BAN_TEXT_MAX + 1];      /* KICK, BAN */
    char admin_addr[ADDR_TEXT_LEN];     /* who asked, for the log */
} admin_cmd;

/* What a request is: ADMIN_OK (cmd filled), or an HTTP status with a short
 * message for the JSON error body (and, for 405, the methods allowed). */
typedef struct admin_parse_result {
    int status;                         /* 0: a command */
    const char *message;
    const char *allow;
} admin_parse_result;

/* path: the URL's path and query, starting with "/admin". */
admin_parse_result admin_parse(const char *method, const char *url, size_t url_len,
                               const char *body, size_t body_len, admin_cmd *cmd);

/* True when the URL's path is /admin or under /admin/. */
bool admin_path(const char *url, size_t n);

#endif
