/* admin.h -- the operator's controls on the web port, under /admin/: off
 * unless --admin-token is given. A worker checks the token and parses the
 * request; the command then runs on the hub, where the chat is, and the
 * answer comes back to the connection (docs/operating.md, "Moderation"). */
#ifndef TAGARELA_ADMIN_H
#define TAGARELA_ADMIN_H

#include <stdbool.h>

#include "admin_req.h"
#include "conn.h"
#include "sbuf.h"

struct hub;

/* A complete request under /admin/ on c (its worker's thread): the command
 * to run on the hub (the caller's to hand over, through worker_link's
 * admin), or NULL when out holds the answer (an error). */
admin_cmd *admin_http(conn *c, sbuf *out);

/* Runs cmd on the hub (its thread) and writes the whole HTTP answer. */
void admin_run(struct hub *h, const admin_cmd *cmd, sbuf *out);

#endif
