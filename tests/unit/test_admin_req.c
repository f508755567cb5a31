/* test_admin_req.c -- the operator's requests (admin_req.c): routes,
 * methods, paging, and each body's fields checked; the bans' address
 * parsing. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "admin_req.h"

static admin_cmd cmd;

static int run(const char *method, const char *url, const char *body)
{
    admin_parse_result r = admin_parse(method, url, strlen(url), body ? body : "", body ? strlen(body) : 0, &cmd);
    return r.status;
}

/* Each body, sent to method url, is answered with status. */
static void expect_all(const char *method, const char *url, int status, const char *const *bodies)
{
    for (; *bodies; bodies++) {
        if (run(method, url, *bodies) != status) fail_msg("%s %s %s: not %d", method, url, *bodies, status);
    }
}

static void test_paths(void **state)
{
    assert_true(admin_path("/admin", 6));
    assert_true(admin_path("/admin/", 7));
    assert_true(admin_path("/admin/rooms?x", 14));
    assert_true(admin_path("/admin?x", 8));
    assert_false(admin_path("/administrator", 14));
    assert_false(admin_path("/adm", 4));
    assert_false(admin_path("/", 1));
}

static void test_lists_and_paging(void **state)
{
    assert_int_equal(run("GET", "/admin/rooms", NULL), 0);
    assert_int_equal(cmd.op, ADM_ROOMS);
    assert_int_equal(cmd.offset, 0);
    assert_int_equal(cmd.limit, ADMIN_PAGE_DEFAULT);
    assert_int_equal(run("GET", "/admin/users?offset=20&limit=5", NULL), 0);
    assert_int_equal(cmd.op, ADM_USERS);
    assert_int_equal(cmd.offset, 20);
    assert_int_equal(cmd.limit, 5);
    assert_int_equal(run("GET", "/admin/users?limit=1001", NULL), 400);
    assert_int_equal(run("GET", "/admin/users?limit=-1", NULL), 400);
    assert_int_equal(run("GET", "/admin/users?offset=x", NULL), 400);
    assert_int_equal(run("GET", "/admin/users?offset=", NULL), 400);
    assert_int_equal(run("GET", "/admin/users?other=1", NULL), 0);  /* unknown keys are ignored */
    assert_int_equal(run("GET", "/admin/bans", NULL), 0);
    assert_int_equal(cmd.op, ADM_BANS);
}

static void test_methods(void **state)
{
    admin_parse_result r = admin_parse("POST", "/admin/rooms", 12, "", 0, &cmd);
    assert_int_equal(r.status, 405);
    assert_string_equal(r.allow, "GET");
    assert_int_equal(run("GET", "/admin/kick", NULL), 405);
    assert_int_equal(run("GET", "/admin/delete", NULL), 405);
    assert_int_equal(run("PUT", "/admin/bans", NULL), 405);
    assert_int_equal(run("GET", "/admin/bans/3", NULL), 405);
    assert_int_equal(run("GET", "/admin/", NULL), 404);
    assert_int_equal(run("GET", "/admin/rooms/x", NULL), 404);
}

static void test_kick(void **state)
{
    assert_int_equal(run("POST", "/admin/kick", "{\"uid\":42,\"reason\":\"spam\"}"), 0);
    assert_int_equal(cmd.op, ADM_KICK);
    assert_int_equal(cmd.uid, 42);
    assert_string_equal(cmd.reason, "spam");
    assert_int_equal(run("POST", "/admin/kick", "{\"uid\":42}"), 0);
    assert_string_equal(cmd.reason, "kicked by an operator");
    expect_all("POST", "/admin/kick", 400, (const char *const[]){
        "{\"uid\":0}",
        "{\"uid\":4294967296}",
        "{\"uid\":1.5}",
        "{\"uid\":\"42\"}",
        "{\"uid\":1,\"reason\":7}",
        "{\"uid\":1,\"reason\":\"a\\u0000b\"}",
        NULL,
    });
    char big[400];
    snprintf(big, sizeof big, "{\"uid\":1,\"reason\":\"%0250d\"}", 0);
    expect_all("POST", "/admin/kick", 400, (const char *const[]){
        big,
        "",
        "[]",
        "{\"uid\":1",
        NULL,
    });
}

static void test_bans(void **state)
{
    assert_int_equal(run("POST", "/admin/bans", "{\"address\":\"192.0.2.0/24\",\"seconds\":60}"), 0);
    assert_int_equal(cmd.op, ADM_BAN);
    assert_int_equal(cmd.ban_kind, BAN_ADDRESS);
    assert_int_equal(cmd.net.prefix, 24);
    assert_int_equal(cmd.seconds, 60);
    assert_string_equal(cmd.text, "192.0.2.0/24");
    /* one IPv6 address: its /64, as --max-conns-per-ip counts it */
    assert_int_equal(run("POST", "/admin/bans", "{\"address\":\"2001:db8::1:2:3:4\",\"seconds\":1}"), 0);
    assert_int_equal(cmd.net.prefix, 64);
    assert_int_equal(cmd.net.net.bytes[15], 0);
    assert_int_equal(run("POST", "/admin/bans", "{\"address\":\"2001:db8::1/128\",\"seconds\":1}"), 0);
    assert_int_equal(cmd.net.prefix, 128);
    assert_int_equal(run("POST", "/admin/bans", "{\"name\":\"  <b>Bob \",\"seconds\":5,\"reason\":\"r\"}"), 0);
    assert_int_equal(cmd.ban_kind, BAN_NAME);
    assert_string_equal(cmd.text, "&lt;b&gt;Bob");        /* trimmed, escaped as the chat keeps it */
    assert_string_equal(cmd.reason, "r");
    expect_all("POST", "/admin/bans", 400, (const char *const[]){
        "{\"name\":\"a\",\"address\":\"10.0.0.1\",\"seconds\":5}",
        "{\"seconds\":5}",
        "{\"name\":\"   \",\"seconds\":5}",
        "{\"name\":\"x\"}",
        "{\"name\":\"x\",\"seconds\":0}",
        "{\"name\":\"x\",\"seconds\":1e12}",
        "{\"address\":\"10.0.0.0/33\",\"seconds\":5}",
        "{\"address\":\"host.example\",\"seconds\":5}",
        NULL,
    });
    assert_int_equal(run("DELETE", "/admin/bans/17", NULL), 0);
    assert_int_equal(cmd.op, ADM_UNBAN);
    assert_int_equal(cmd.ban_id, 17);
    assert_int_equal(run("DELETE", "/admin/bans/0", NULL), 404);
    assert_int_equal(run("DELETE", "/admin/bans/x", NULL), 404);
    assert_int_equal(run("DELETE", "/admin/bans/99999999999999999", NULL), 404);
}

static void test_delete(void **state)
{
    assert_int_equal(run("POST", "/admin/delete", "{\"room\":\"lobby\",\"id\":3}"), 0);
    assert_int_equal(cmd.op, ADM_DELETE);
    assert_int_equal(cmd.room_len, 5);
    assert_memory_equal(cmd.room, "lobby", 5);
    assert_int_equal(cmd.msg_id, 3);
    assert_int_equal(run("POST", "/admin/delete", "{\"room\":12,\"id\":3}"), 0);
    assert_memory_equal(cmd.room, "12", 2);
    assert_int_equal(run("POST", "/admin/delete", "{\"room\":\"\",\"id\":3}"), 400);
    char big[200];
    snprintf(big, sizeof big, "{\"room\":\"%065d\",\"id\":3}", 0);
    expect_all("POST", "/admin/delete", 400, (const char *const[]){
        big,
        "{\"room\":\"a\",\"id\":0}",
        "{\"room\":\"a\"}",
        "{\"room\":true,\"id\":1}",
        NULL,
    });
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_lists_and_paging),
        cmocka_unit_test(test_methods),
        cmocka_unit_test(test_kick),
        cmocka_unit_test(test_bans),
        cmocka_unit_test(test_delete),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
