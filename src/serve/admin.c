/* admin.c -- the operator's controls: the worker's side (the token, the
 * request, the hand-over to the hub) and the hub's (each command against
 * the chat and the bans, logged with the operator's address, never the
 * token). */
#include "admin.h"
#include "hub.h"
#include "log.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sys.h"
#include "web.h"
#include "worker.h"

/* ---- answers ------------------------------------------------------------ */

static void respond_json(sbuf *out, int status, const char *extra, const char *json, size_t n)
{
    sbuf_printf(out,
        "HTTP/1.1 %d %s\r\n"
        "Content-Type: application/json\r\n"
        "Content-Length: %zu\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n"
        "%s\r\n",
        status, http_status_text(status), n, extra ? extra : "");
    sbuf_put(out, json, n);
}

static void respond_error(sbuf *out, int status, const char *extra, const char *message)
{
    sbuf b;
    sbuf_init(&b);
    sbuf_puts(&b, "{\"error\":");
    sbuf_json_str(&b, message, strlen(message));
    sbuf_puts(&b, "}\n");
    respond_json(out, status, extra, b.p, b.len);
    sbuf_free(&b);
}

/* ---- the worker's side -------------------------------------------------- */

/* The bearer token, compared in constant time: the digests of both, so
 * that not even the length of the right one leaks. */
static bool token_ok(const http_req *r, const server_config *cfg)
{
    size_t n;
    const char *v = http_req_field(r, HF_AUTHORIZATION, &n);
    if (!v || n < 7 || strncasecmp(v, "Bearer ", 7) != 0) return false;
    v += 7;
    n -= 7;
    while (n && *v == ' ') v++, n--;
    uint8_t given[SHA256_DIGEST_LENGTH], want[SHA256_DIGEST_LENGTH];
    SHA256((const uint8_t *)v, n, given);
    SHA256(cfg->admin_token.bytes, cfg->admin_token.len, want);
    return CRYPTO_memcmp(given, want, sizeof given) == 0;
}

/* Who the operator is, for the log: the client a trusted proxy names in
 * X-Forwarded-For (a WebSocket's address is taken so at its upgrade; a
 * plain request's is not), else the connection's own address. */
static void operator_address(const conn *c, char out[ADDR_TEXT_LEN])
{
    const server_config *cfg = c->w->cfg;
    net_addr a;
    size_t n;
    const char *xff = http_req_field(c->req, HF_X_FORWARDED_FOR, &n);
    if (c->proxy_peer && xff && xff_client(xff, n, cfg->trusted, (size_t)cfg->n_trusted, &a))
        net_addr_format(&a, out);
    else
        snprintf(out, ADDR_TEXT_LEN, "%s", c->addr_text);
}

admin_cmd *admin_http(conn *c, sbuf *out)
{
    const server_config *cfg = c->w->cfg;
    char who[ADDR_TEXT_LEN];
    operator_address(c, who);
    if (!cfg->admin_token.len) {
        http_error_response(out, 404, NULL, "Not found.\n");
        return NULL;
    }
    if (!token_ok(c->req, cfg)) {
        log_event(LOG_WARN, "admin_denied", "addr=%s", who);
        respond_error(out, 401, "WWW-Authenticate: Bearer realm=\"tagarela admin\"\r\n",
                      "a valid bearer token is required");
        return NULL;
    }
    size_t url_len, body_len;
    const char *url = http_req_url(c->req, &url_len);
    const char *body = http_req_body(c->req, &body_len);
    admin_cmd *cmd = malloc(sizeof *cmd);
    if (!cmd) {
        respond_error(out, 503, NULL, "out of memory");
        return NULL;
    }
    admin_parse_result r = admin_parse(http_req_method(c->req), url, url_len, body, body_len, cmd);
    if (r.status) {
        char allow[64] = "";
        if (r.allow) snprintf(allow, sizeof allow, "Allow: %s\r\n", r.allow);
        respond_error(out, r.status, allow, r.message);
        char st[8];
        snprintf(st, sizeof st, "%d", r.status);
        log_event(LOG_INFO, "admin_refused", "addr=%s status=%s error=%s", who, st, r.message);
        free(cmd);
        return NULL;
    }
    memcpy(cmd->admin_addr, who, sizeof who);
    return cmd;
}

/* ---- the hub's side ------------------------------------------------------ */

static const char *const op_names[] = {
    [ADM_ROOMS] = "list_rooms", [ADM_USERS] = "list_users", [ADM_KICK] = "kick",
    [ADM_BANS] = "list_bans", [ADM_BAN] = "ban", [ADM_UNBAN] = "unban", [ADM_DELETE] = "delete",
};

static void log_action(const admin_cmd *cmd, const char *target, int status)
{
    char st[8];
    snprintf(st, sizeof st, "%d", status);
    log_event(LOG_INFO, "admin", "action=%s admin=%s target=%s reason=%s status=%s", op_names[cmd->op],
              cmd->admin_addr, target, cmd->reason[0] ? cmd->reason : NULL, st);
}

static const char *conn_address(void *cp)
{
    return ((conn *)cp)->addr_text;
}

static void list_page(hub *h, const admin_cmd *cmd, sbuf *b)
{
    bool rooms = cmd->op == ADM_ROOMS;
    sbuf_puts(b, rooms ? "{\"rooms\":" : "{\"users\":");
    if (rooms) chat_admin_rooms(h->chat, b, cmd->offset, cmd->limit);
    else chat_admin_users(h->chat, b, cmd->offset, cmd->limit, conn_address);
    sbuf_printf(b, ",\"total\":%zu,\"offset\":%zu,\"limit\":%zu}\n",
                rooms ? chat_room_count(h->chat) : chat_user_count(h->chat), cmd->offset, cmd->limit);
}

static int kick(hub *h, const admin_cmd *cmd, sbuf *b)
{
    conn *c = chat_admin_kick(h->chat, cmd->uid, cmd->reason, strlen(cmd->reason));
    if (!c) {
        sbuf_puts(b, "{\"error\":\"no such user\"}\n");
        return 404;
    }
    hub_close_after_chat(h, c, WS_CLOSE_POLICY, "kicked by an operator");
    sbuf_printf(b, "{\"kicked\":%u}\n", cmd->uid);
    return 200;
}

static int add_ban(hub *h, const admin_cmd *cmd, sbuf *b)
{
    uint64_t until = wall_ms() + cmd->seconds * 1000;
    uint32_t id = bans_add(&h->bans, cmd->ban_kind, &cmd->net, cmd->text, cmd->reason, until);
    if (!id) {
        sbuf_printf(b, "{\"error\":\"at most %d bans at once\"}\n", BANS_MAX);
        return 409;
    }
    bans_save(&h->bans);
    sbuf_printf(b, "{\"id\":%u,\"until\":", id);
    sbuf_u64(b, until);
    sbuf_puts(b, "}\n");
    return 200;
}

static int unban(hub *h, const admin_cmd *cmd, sbuf *b)
{
    if (!bans_remove(&h->bans, cmd->ban_id)) {
        sbuf_puts(b, "{\"error\":\"no such ban\"}\n");
        return 404;
    }
    bans_save(&h->bans);
    sbuf_printf(b, "{\"removed\":%u}\n", cmd->ban_id);
    return 200;
}

static int delete_message(hub *h, const admin_cmd *cmd, sbuf *b)
{
    int rc = chat_admin_delete(h->chat, cmd->room, cmd->room_len, cmd->msg_id);
    if (rc < 0) {
        sbuf_puts(b, "{\"error\":\"the history is unavailable; nothing was deleted\"}\n");
        return 503;
    }
    if (rc == 0) {
        sbuf_puts(b, "{\"error\":\"no such message in that room\"}\n");
        return 404;
    }
    sbuf_puts(b, "{\"deleted\":");
    sbuf_u64(b, cmd->msg_id);
    sbuf_puts(b, "}\n");
    return 200;
}

/* What the log names as the target of the command. */
static void describe_target(const admin_cmd *cmd, char *t, size_t n)
{
    switch (cmd->op) {
    case ADM_KICK: snprintf(t, n, "uid:%u", cmd->uid); break;
    /* names are never logged: a name ban shows as such */
    case ADM_BAN: snprintf(t, n, "%s%s", cmd->ban_kind == BAN_NAME ? "name" : "address:", cmd->ban_kind == BAN_NAME ? "" : cmd->text); break;
    case ADM_UNBAN: snprintf(t, n, "ban:%u", cmd->ban_id); break;
    case ADM_DELETE: snprintf(t, n, "room:%.*s/id:%llu", (int)cmd->room_len, cmd->room,
                              (unsigned long long)cmd->msg_id); break;
    default: snprintf(t, n, "-"); break;
    }
}

void admin_run(hub *h, const admin_cmd *cmd, sbuf *out)
{
    sbuf b;
    sbuf_init(&b);
    int status = 200;
    switch (cmd->op) {
    case ADM_ROOMS:
    case ADM_USERS: list_page(h, cmd, &b); break;
    case ADM_KICK: status = kick(h, cmd, &b); break;
    case ADM_BANS:
        sbuf_puts(&b, "{\"bans\":");
        bans_list(&h->bans, &b, wall_ms());
        sbuf_puts(&b, "}\n");
        break;
    case ADM_BAN: status = add_ban(h, cmd, &b); break;
    case ADM_UNBAN: status = unban(h, cmd, &b); break;
    case ADM_DELETE: status = delete_message(h, cmd, &b); break;
    }
    char target[300];
    describe_target(cmd, target, sizeof target);
    log_action(cmd, target, status);
    if (b.oom) respond_error(out, 503, NULL, "out of memory");
    else respond_json(out, status, NULL, b.p, b.len);
    sbuf_free(&b);
}
