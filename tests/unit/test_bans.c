/* test_bans.c -- the operator's ban table (bans.c): address and name
 * matches, expiry, removal, the cap, and the file kept across restarts,
 * a damaged one refused. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bans.h"
#include "sys.h"

static net_addr addr(const char *s)
{
    net_addr a;
    assert_true(net_addr_parse(&a, s, strlen(s)));
    return a;
}

static uint32_t ban_address(ban_table *t, const char *s, uint64_t until)
{
    cidr c;
    assert_int_equal(ban_parse_address(s, &c), 0);
    return bans_add(t, BAN_ADDRESS, &c, s, "why", until);
}

static void test_matches_and_expiry(void **state)
{
    ban_table t;
    assert_int_equal(bans_init(&t, NULL), 0);
    uint64_t now = wall_ms();
    net_addr in = addr("192.0.2.77"), out = addr("192.0.3.1");
    assert_false(bans_address(&t, &in, now));
    uint32_t id = ban_address(&t, "192.0.2.0/24", now + 1000);
    assert_true(id > 0);
    assert_true(bans_address(&t, &in, now));
    assert_false(bans_address(&t, &out, now));
    assert_false(bans_address(&t, &in, now + 1000));          /* over at its time */
    /* an IPv6 address alone: its /64 */
    ban_address(&t, "2001:db8:1:2::5", now + 1000);
    net_addr same64 = addr("2001:db8:1:2:ffff::1"), other64 = addr("2001:db8:1:3::5");
    assert_true(bans_address(&t, &same64, now));
    assert_false(bans_address(&t, &other64, now));
    /* names: any ASCII case, whole names only */
    bans_add(&t, BAN_NAME, NULL, "Troll", "", now + 1000);
    assert_true(bans_name(&t, "troll", 5, now));
    assert_true(bans_name(&t, "TROLL", 5, now));
    assert_false(bans_name(&t, "trol", 4, now));
    assert_false(bans_name(&t, "trolls", 6, now));
    assert_true(bans_remove(&t, id));
    assert_false(bans_remove(&t, id));
    assert_false(bans_address(&t, &in, now));
    bans_free(&t);
}

static void test_the_table_is_bounded(void **state)
{
    ban_table t;
    assert_int_equal(bans_init(&t, NULL), 0);
    uint64_t later = wall_ms() + 60000;
    for (int i = 0; i < BANS_MAX; i++) assert_true(bans_add(&t, BAN_NAME, NULL, "n", "", later) > 0);
    assert_int_equal(bans_add(&t, BAN_NAME, NULL, "n", "", later), 0);
    /* long texts are cut, not overrun */
    char big[1000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    bans_free(&t);
    assert_int_equal(bans_init(&t, NULL), 0);
    bans_add(&t, BAN_NAME, NULL, big, big, later);
    assert_int_equal(strlen(t.v[0].text), BAN_TEXT_MAX);
    assert_int_equal(strlen(t.v[0].reason), BAN_TEXT_MAX);
    bans_free(&t);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_kept_in_the_data_directory(void **state)
{
    char dir[] = "/tmp/tagarela-bans-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char file[64];
    snprintf(file, sizeof file, "%s/bans.json", dir);
    ban_table t;
    assert_int_equal(bans_init(&t, dir), 0);                  /* no file yet: none */
    uint64_t now = wall_ms();
    uint32_t a = ban_address(&t, "10.0.0.0/8", now + 60000);
    bans_add(&t, BAN_NAME, NULL, "mallory", "spam", now + 60000);
    bans_add(&t, BAN_NAME, NULL, "gone", "", now + 1);      /* expired by the next start */
    assert_int_equal(bans_save(&t), 0);
    bans_free(&t);
    usleep(5000);
    assert_int_equal(bans_init(&t, dir), 0);
    assert_int_equal(t.len, 2);
    net_addr in = addr("10.1.2.3");
    assert_true(bans_address(&t, &in, wall_ms()));
    assert_true(bans_name(&t, "Mallory", 7, wall_ms()));
    assert_int_equal(t.v[0].id, a);
    assert_true(bans_add(&t, BAN_NAME, NULL, "x", "", now + 60000) > a + 1);   /* ids never reused */
    bans_free(&t);
    /* a damaged file stops the start rather than dropping the bans */
    const char *bad[] = { "{", "{}", "[{\"id\":1}]", "[{\"id\":1,\"kind\":\"address\",\"address\":\"x\",\"until\":1}]",
                          "[{\"id\":0,\"kind\":\"name\",\"name\":\"a\",\"until\":1}]" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file(file, bad[i]);
        assert_int_equal(bans_init(&t, dir), -1);
        bans_free(&t);
    }
    unlink(file);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_and_expiry),
        cmocka_unit_test(test_the_table_is_bounded),
        cmocka_unit_test(test_kept_in_the_data_directory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
