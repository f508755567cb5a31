/* admin_req.c -- parsing the operator's requests: route, method, query and
 * JSON body (with jansson), each field checked. Pure functions. */
#include "admin_req.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "escape.h"
#include "sbuf.h"
#include "sys.h"
#include "utf8.h"

bool admin_path(const char *url, size_t n)
{
    return n >= 6 && memcmp(url, "/admin", 6) == 0 && (n == 6 || url[6] == '/' || url[6] == '?');
}

static admin_parse_result fail(int status, const char *message)
{
    return (admin_parse_result){ status, message, NULL };
}

/* A query parameter's whole number, within max; -1 when malformed. */
static int query_number(const char *q, size_t n, const char *key, size_t max, size_t *out)
{
    size_t kl = strlen(key);
    for (size_t i = 0; i < n;) {
        size_t end = i;
        while (end < n && q[end] != '&') end++;
        if (end - i > kl && memcmp(q + i, key, kl) == 0 && q[i + kl] == '=') {
            char buf[24];
            size_t vl = end - i - kl - 1;
            double v;
            if (vl == 0 || vl >= sizeof buf) return -1;
            memcpy(buf, q + i + kl + 1, vl);
            buf[vl] = '\0';
            if (parse_number(buf, 0, (double)max, true, &v) < 0) return -1;
            *out = (size_t)v;
        }
        i = end + 1;
    }
    return 0;
}

static admin_parse_result parse_page(const char *q, size_t n, admin_cmd *cmd)
{
    cmd->offset = 0;
    cmd->limit = ADMIN_PAGE_DEFAULT;
    if (query_number(q, n, "offset", 100000000, &cmd->offset) < 0)
        return fail(400, "offset must be a whole number");
    if (query_number(q, n, "limit", ADMIN_PAGE_MAX, &cmd->limit) < 0)
        return fail(400, "limit must be a whole number from 0 to 1000");
    return fail(0, NULL);
}

/* A JSON number that is a whole number in [1, max]; false otherwise. */
static bool whole(json_t *v, double max, uint64_t *out)
{
    double d;
    if (json_is_integer(v)) d = (double)json_integer_value(v);
    else if (json_is_real(v)) d = json_real_value(v);
    else return false;
    if (d != floor(d) || d < 1 || d > max) return false;
    *out = (uint64_t)d;
    return true;
}

/* An optional reason: a string of at most BAN_TEXT_MAX bytes. */
static bool take_reason(json_t *body, admin_cmd *cmd, const char *fallback)
{
    json_t *r = json_object_get(body, "reason");
    const char *s = r ? json_string_value(r) : fallback;
    size_t n = r ? json_string_length(r) : strlen(fallback);
    if (!s || n > BAN_TEXT_MAX || memchr(s, '\0', n)) return false;
    memcpy(cmd->reason, s, n);
    cmd->reason[n] = '\0';
    return true;
}

static admin_parse_result parse_kick(json_t *body, admin_cmd *cmd)
{
    uint64_t uid;
    if (!whole(json_object_get(body, "uid"), UINT32_MAX, &uid)) return fail(400, "uid must be a user's uid");
    if (!take_reason(body, cmd, "kicked by an operator"))
        return fail(400, "reason must be a string of at most 200 bytes");
    cmd->op = ADM_KICK;
    cmd->uid = (uint32_t)uid;
    return fail(0, NULL);
}

/* A name as the chat keeps it: trimmed and HTML-escaped. */
static bool take_name(json_t *v, admin_cmd *cmd)
{
    size_t n = json_string_length(v);
    const char *s = utf8_trim(json_string_value(v), &n);
    if (!s || n == 0 || memchr(s, '\0', n)) return false;
    sbuf e;
    sbuf_init(&e);
    html_escape(&e, s, n, false);
    bool ok = !e.oom && e.len <= BAN_TEXT_MAX;
    if (ok) {
        memcpy(cmd->text, e.p, e.len);
        cmd->text[e.len] = '\0';
    }
    sbuf_free(&e);
    return ok;
}

static admin_parse_result parse_ban(json_t *body, admin_cmd *cmd)
{
    json_t *addr = json_object_get(body, "address"), *name = json_object_get(body, "name");
    if (!addr == !name) return fail(400, "a ban names either an \"address\" or a \"name\"");
    if (addr) {
        const char *s = json_string_value(addr);
        if (!s || json_string_length(addr) > 64 || ban_parse_address(s, &cmd->net) < 0)
            return fail(400, "address must be an IPv4 or IPv6 address or CIDR");
        snprintf(cmd->text, sizeof cmd->text, "%s", s);
        cmd->ban_kind = BAN_ADDRESS;
    } else {
        if (!json_is_string(name) || !take_name(name, cmd))
            return fail(400, "name must be a non-empty string of at most 200 bytes once escaped");
        cmd->ban_kind = BAN_NAME;
    }
    if (!whole(json_object_get(body, "seconds"), ADMIN_BAN_SECONDS_MAX, &cmd->seconds))
        return fail(400, "seconds must be a whole number from 1 to 315360000");
    if (!take_reason(body, cmd, "")) return fail(400, "reason must be a string of at most 200 bytes");
    cmd->op = ADM_BAN;
    return fail(0, NULL);
}

static admin_parse_result parse_delete(json_t *body, admin_cmd *cmd)
{
    json_t *room = json_object_get(body, "room");
    int n = -1;
    if (json_is_string(room) && json_string_length(room) >= 1 && json_string_length(room) <= ADMIN_ROOM_MAX) {
        n = (int)json_string_length(room);
        memcpy(cmd->room, json_string_value(room), (size_t)n);
    } else if (json_is_integer(room)) {
        n = snprintf(cmd->room, sizeof cmd->room, "%" JSON_INTEGER_FORMAT, json_integer_value(room));
    }
    if (n < 1) return fail(400, "room must be a room id (a string of 1 to 64 bytes, or a number)");
    cmd->room_len = (size_t)n;
    if (!whole(json_object_get(body, "id"), 9007199254740991.0, &cmd->msg_id))
        return fail(400, "id must be a message id");
    cmd->op = ADM_DELETE;
    return fail(0, NULL);
}

/* The JSON object a POST carries. */
static admin_parse_result with_body(const char *body, size_t n, admin_cmd *cmd,
                                    admin_parse_result (*parse)(json_t *, admin_cmd *))
{
    json_error_t err;
    json_t *j = json_loadb(body, n, 0, &err);
    if (!json_is_object(j)) {
        json_decref(j);
        return fail(400, j ? "the body must be a JSON object" : "the body is not valid JSON");
    }
    admin_parse_result r = parse(j, cmd);
    json_decref(j);
    return r;
}

static bool is(const char *method, const char *m)
{
    return strcmp(method, m) == 0;
}

static admin_parse_result wrong_method(const char *allow)
{
    admin_parse_result r = fail(405, "method not allowed here");
    r.allow = allow;
    return r;
}

admin_parse_result admin_parse(const char *method, const char *url, size_t url_len,
                               const char *body, size_t body_len, admin_cmd *cmd)
{
    memset(cmd, 0, sizeof *cmd);
    const char *q = memchr(url, '?', url_len);
    size_t plen = q ? (size_t)(q - url) : url_len;
    size_t qlen = q ? url_len - plen - 1 : 0;
    q = q ? q + 1 : "";
#define PATH(s) (plen == sizeof(s) - 1 && memcmp(url, s, plen) == 0)
    if (PATH("/admin/rooms") || PATH("/admin/users")) {
        if (!is(method, "GET")) return wrong_method("GET");
        cmd->op = url[7] == 'r' ? ADM_ROOMS : ADM_USERS;
        return parse_page(q, qlen, cmd);
    }
    if (PATH("/admin/kick")) {
        if (!is(method, "POST")) return wrong_method("POST");
        return with_body(body, body_len, cmd, parse_kick);
    }
    if (PATH("/admin/delete")) {
        if (!is(method, "POST")) return wrong_method("POST");
        return with_body(body, body_len, cmd, parse_delete);
    }
    if (PATH("/admin/bans")) {
        if (is(method, "GET")) {
            cmd->op = ADM_BANS;
            return fail(0, NULL);
        }
        if (!is(method, "POST")) return wrong_method("GET, POST");
        return with_body(body, body_len, cmd, parse_ban);
    }
#undef PATH
    if (plen > 12 && memcmp(url, "/admin/bans/", 12) == 0) {
        if (!is(method, "DELETE")) return wrong_method("DELETE");
        char buf[16];
        double v;
        size_t n = plen - 12;
        if (n >= sizeof buf) return fail(404, "no such ban");
        memcpy(buf, url + 12, n);
        buf[n] = '\0';
        if (parse_number(buf, 1, UINT32_MAX, true, &v) < 0) return fail(404, "no such ban");
        cmd->op = ADM_UNBAN;
        cmd->ban_id = (uint32_t)v;
        return fail(0, NULL);
    }
    return fail(404, "no such operator's endpoint (see docs/operating.md)");
}
