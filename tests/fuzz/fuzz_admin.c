/* fuzz_admin.c -- libFuzzer target: bytes into the operator's request
 * parser (admin_req.c). The first byte picks a method and a route; the
 * rest is the body (or, for the lists, the query string).
 *
 * Beyond "no crash": every answer is a command or one of 400, 404, 405;
 * a command's fields stay within the bounds the hub relies on. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "admin_req.h"

static const struct { const char *method, *path; } routes[] = {
    {"GET", "/admin/rooms?"}, {"GET", "/admin/users?"}, {"POST", "/admin/kick"},
    {"POST", "/admin/bans"}, {"POST", "/admin/delete"}, {"DELETE", "/admin/bans/"},
    {"GET", "/admin/bans"}, {"PUT", "/admin/kick"},
};

static void check(const admin_cmd *cmd)
{
    if (cmd->limit > ADMIN_PAGE_MAX || cmd->room_len > ADMIN_ROOM_MAX) abort();
    if (strlen(cmd->text) > BAN_TEXT_MAX || strlen(cmd->reason) > BAN_TEXT_MAX) abort();
    if (cmd->op == ADM_KICK && cmd->uid == 0) abort();
    if (cmd->op == ADM_BAN && (cmd->seconds < 1 || cmd->seconds > ADMIN_BAN_SECONDS_MAX || !cmd->text[0])) abort();
    if (cmd->op == ADM_DELETE && (cmd->msg_id == 0 || cmd->room_len == 0)) abort();
    if (cmd->op == ADM_UNBAN && cmd->ban_id == 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    unsigned r = data[0] % (sizeof routes / sizeof routes[0]);
    const char *rest = (const char *)data + 1;
    size_t n = size - 1;
    admin_cmd cmd;
    admin_parse_result res;
    bool in_url = routes[r].path[strlen(routes[r].path) - 1] == '?' || routes[r].path[strlen(routes[r].path) - 1] == '/';
    if (in_url) {
        char url[512];
        size_t pl = strlen(routes[r].path);
        if (n > sizeof url - pl) n = sizeof url - pl;
        memcpy(url, routes[r].path, pl);
        memcpy(url + pl, rest, n);
        res = admin_parse(routes[r].method, url, pl + n, "", 0, &cmd);
    } else {
        res = admin_parse(routes[r].method, routes[r].path, strlen(routes[r].path), rest, n, &cmd);
    }
    if (res.status == 0) check(&cmd);
    else if (res.status != 400 && res.status != 404 && res.status != 405) abort();
    else if (!res.message) abort();
    return 0;
}
