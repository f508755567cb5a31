/* test_sys.c -- the numbers of options and addresses (common/sys.h): one
 * parser each for numbers, sizes and ports, shared by every command. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "sys.h"

static int port_of(const char *s, int min)
{
    int p = -2;
    return parse_port(s, strlen(s), min, &p) == 0 ? p : -1;
}

static void test_ports(void **state)
{
    assert_int_equal(port_of("7272", 1), 7272);
    assert_int_equal(port_of("65535", 1), 65535);
    assert_int_equal(port_of("0", 0), 0);           /* "any free port" where allowed */
    assert_int_equal(port_of("00080", 1), 80);
    static const char *const bad[] = {
        "", "0", "65536", "99999999999999999999", "+80", "-1", " 80", "80 ", "8O", "0x50", "80.0", "1e3",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (port_of(bad[i], 1) != -1) fail_msg("port '%s' accepted", bad[i]);
}

/* The length bounds the port: what follows (a path, a database) is not read. */
static void test_port_within_its_length(void **state)
{
    int p = 0;
    assert_int_equal(parse_port("6380/2", 4, 1, &p), 0);
    assert_int_equal(p, 6380);
    assert_int_equal(parse_port("6380/2", 6, 1, &p), -1);
}

static void test_numbers(void **state)
{
    double v = 0;
    assert_int_equal(parse_number("2.5", 0, 10, false, &v), 0);
    assert_true(v == 2.5);
    assert_int_equal(parse_number("2.5", 0, 10, true, &v), -1);
    assert_int_equal(parse_number("11", 0, 10, true, &v), -1);
    assert_int_equal(parse_number("nan", 0, 10, false, &v), -1);
    assert_int_equal(parse_number("", 0, 10, false, &v), -1);
    assert_int_equal(parse_number("3x", 0, 10, false, &v), -1);
}

static void test_sizes(void **state)
{
    uint64_t v = 0;
    assert_int_equal(parse_size("64k", UINT64_MAX, &v), 0);
    assert_int_equal(v, 65536);
    assert_int_equal(parse_size("2G", UINT64_MAX, &v), 0);
    assert_int_equal(v, 2ULL << 30);
    assert_int_equal(parse_size("0", UINT64_MAX, &v), -1);
    assert_int_equal(parse_size("-1", UINT64_MAX, &v), -1);
    assert_int_equal(parse_size("2m", 1 << 20, &v), -1);
    assert_int_equal(parse_size("1kb", UINT64_MAX, &v), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ports),
        cmocka_unit_test(test_port_within_its_length),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
