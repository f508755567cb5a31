/* test_cluster.c -- the cluster module's pure parts: --redis URLs. (The
 * rest runs against a real redis-server: tests/integration/test_cluster.py.) */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "cluster.h"

static void test_url_host_port_db_password(void **state)
{
    cluster_url u;
    char err[256];
    assert_int_equal(cluster_url_parse("redis://10.0.0.5:6380/3", &u, err, sizeof err), 0);
    assert_string_equal(u.host, "10.0.0.5");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 3);
    assert_string_equal(u.password, "");
    assert_string_equal(u.path, "");
    assert_int_equal(cluster_url_parse("redis://:s3cr@t@redis.lan", &u, err, sizeof err), 0);
    assert_string_equal(u.password, "s3cr@t");
    assert_string_equal(u.host, "redis.lan");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);
    assert_int_equal(cluster_url_parse("redis://user:pw@h:1/", &u, err, sizeof err), 0);
    assert_string_equal(u.password, "pw");
    assert_int_equal(u.port, 1);
}

static void test_url_unix_socket(void **state)
{
    cluster_url u;
    char err[256];
    assert_int_equal(cluster_url_parse("unix:///run/redis/redis.sock", &u, err, sizeof err), 0);
    assert_string_equal(u.path, "/run/redis/redis.sock");
    assert_string_equal(u.host, "");
}

static void test_url_refusals_say_why(void **state)
{
    static const struct { const char *url, *why; } bad[] = {
        {"http://h:1", "unknown scheme"}, {"redis://", "no host"}, {"redis://:pw@", "no host"},
        {"redis://h:0", "bad port"}, {"redis://h:65536", "bad port"}, {"redis://h:x", "bad port"},
        {"redis://h:", "bad port"}, {"redis://h:+80", "bad port"}, {"redis://h: 80/1", "bad port"}, {"redis://h/x", "bad database"}, {"redis://h/-1", "bad database"},
        {"unix://relative", "absolute"}, {"", "unknown scheme"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cluster_url u;
        char err[256] = "";
        assert_int_equal(cluster_url_parse(bad[i].url, &u, err, sizeof err), -1);
        if (!strstr(err, bad[i].why)) fail_msg("'%s': %s (want %s)", bad[i].url, err, bad[i].why);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_host_port_db_password),
        cmocka_unit_test(test_url_unix_socket),
        cmocka_unit_test(test_url_refusals_say_why),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
