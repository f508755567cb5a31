/* test_options.c -- `tagarela serve` options: defaults that meet the
 * contract, --trusted-proxy lists, and the start-up check that refuses
 * settings a frame or a counter could not hold. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "options.h"
#include "ws_codec.h"

/* Parses "serve" followed by the NULL-terminated options. */
static int parse(server_config *cfg, ...)
{
    char *argv[32] = { "serve" };
    int argc = 1;
    va_list ap;
    va_start(ap, cfg);
    for (char *a; (a = va_arg(ap, char *)) != NULL && argc < 31;) argv[argc++] = a;
    va_end(ap);
    config_defaults(cfg);
    return config_parse(cfg, argc, argv);
}

static void test_defaults_are_valid_and_safe(void **state)
{
    server_config cfg;
    assert_int_equal(parse(&cfg, NULL), 0);
    assert_int_equal(cfg.max_message, 65536);
    assert_true(cfg.max_conns_per_ip >= 256);           /* the contract's floor */
    assert_true(cfg.max_conns_per_ip < 4096);
    assert_int_equal(cfg.n_trusted, 0);                 /* trust nobody by default */
    /* a maximum say, written with the longest JSON escapes, fits a message */
    assert_true((uint64_t)cfg.chat.max_content * 12 + 512 <= cfg.max_message);
    /* and escaped by the server it fits the outbound cap */
    assert_true(config_max_say_frame(&cfg.chat) <= cfg.outbound_cap);
}

/* 4096 line breaks: each one "<br />\n" in the content, 8 bytes in JSON. */
static void test_max_say_frame_bounds_the_worst_say(void **state)
{
    chat_limits l;
    chat_limits_defaults(&l);
    uint64_t worst_content = 4096 * 8;
    assert_true(config_max_say_frame(&l) >= worst_content + 100);
    assert_true(config_max_say_frame(&l) < worst_content + 1024);
}

/* --ws and --http: HOST:PORT, [IPv6]:PORT or :PORT; port 0 asks for any. */
static void test_listen_addresses(void **state)
{
    listen_addr a;
    assert_int_equal(config_parse_addr("127.0.0.1:9000", &a), 0);
    assert_string_equal(a.host, "127.0.0.1");
    assert_int_equal(a.port, 9000);
    assert_int_equal(config_parse_addr("[::1]:0", &a), 0);
    assert_string_equal(a.host, "::1");
    assert_int_equal(a.port, 0);
    assert_int_equal(config_parse_addr(":7272", &a), 0);
    assert_string_equal(a.host, "0.0.0.0");
    static const char *const bad[] = { "127.0.0.1", "h:", "h:65536", "h:-1", "h:+80", "h: 80", "h:80x" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (config_parse_addr(bad[i], &a) == 0) fail_msg("address '%s' accepted", bad[i]);
}

static void test_trusted_proxies(void **state)
{
    server_config cfg;
    assert_int_equal(parse(&cfg, "--trusted-proxy", "10.0.0.0/8", "--trusted-proxy", "::1", NULL), 0);
    assert_int_equal(cfg.n_trusted, 2);
    assert_int_equal(cfg.trusted[0].prefix, 8);
    assert_int_equal(cfg.trusted[1].prefix, 128);
    assert_int_equal(parse(&cfg, "--trusted-proxy", "10.0.0.0/33", NULL), -1);
    assert_int_equal(parse(&cfg, "--trusted-proxy", "proxy.example", NULL), -1);
    assert_int_equal(parse(&cfg, "--trusted-proxy", "", NULL), -1);
    /* the list is bounded */
    char *argv[2 * CONFIG_MAX_TRUSTED + 3] = { "serve" };
    int argc = 1;
    for (int i = 0; i <= CONFIG_MAX_TRUSTED; i++) {
        argv[argc++] = "--trusted-proxy";
        argv[argc++] = "127.0.0.1";
    }
    config_defaults(&cfg);
    assert_int_equal(config_parse(&cfg, argc, argv), -1);
}

/* --redis: repeatable and comma lists, each URL one shard; bounded;
 * the command line's list replaces a config file's. */
static void test_redis_shards(void **state)
{
    server_config cfg;
    assert_int_equal(parse(&cfg, NULL), 0);
    assert_int_equal(cfg.n_redis, 0);                   /* one server: no cluster */
    assert_int_equal(parse(&cfg, "--redis", "redis://a:1,redis://b:2", "--redis", "unix:///r.sock", NULL), 0);
    assert_int_equal(cfg.n_redis, 3);
    assert_string_equal(cfg.redis[1].host, "b");
    assert_string_equal(cfg.redis[2].path, "/r.sock");
    assert_int_equal(parse(&cfg, "--redis", "redis://a:1,", NULL), -1);
    assert_int_equal(parse(&cfg, "--redis", "localhost:6379", NULL), -1);
    char list[CLUSTER_MAX_SHARDS * 12 + 16] = "";
    for (int i = 0; i <= CLUSTER_MAX_SHARDS; i++) strcat(list, i ? ",redis://h" : "redis://h");
    assert_int_equal(parse(&cfg, "--redis", list, NULL), -1);
    char path[] = "/tmp/tagarela-test-options-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char text[] = "redis redis://file1\nredis redis://file2\n";
    assert_int_equal(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
    close(fd);
    assert_int_equal(parse(&cfg, "--config", path, NULL), 0);
    assert_int_equal(cfg.n_redis, 2);
    config_free(&cfg);
    assert_int_equal(parse(&cfg, "--config", path, "--redis", "redis://cmd", NULL), 0);
    assert_int_equal(cfg.n_redis, 1);
    assert_string_equal(cfg.redis[0].host, "cmd");
    config_free(&cfg);
    unlink(path);
}

/* TLS is off by default; its certificate and key go together, and a key
 * log needs them. (Loading the files is serve's: tests/integration/test_tls.py.) */
static void test_tls_options(void **state)
{
    server_config cfg;
    assert_int_equal(parse(&cfg, NULL), 0);
    assert_null(cfg.tls_cert);
    assert_null(cfg.tls_keylog);
    assert_null(cfg.tls);
    assert_int_equal(parse(&cfg, "--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-keylog", "l", NULL), 0);
    assert_string_equal(cfg.tls_cert, "c.pem");
    assert_string_equal(cfg.tls_key, "k.pem");
    assert_string_equal(cfg.tls_keylog, "l");
    assert_int_equal(parse(&cfg, "--tls-cert", "c.pem", NULL), -1);
    assert_int_equal(parse(&cfg, "--tls-key", "k.pem", NULL), -1);
    assert_int_equal(parse(&cfg, "--tls-keylog", "l", NULL), -1);
}

static void test_nonsense_numbers_refused(void **state)
{
    server_config cfg;
    const char *bad[][2] = {
        { "--max-message", "0" }, { "--max-message", "nan" }, { "--max-message", "1e12" },
        { "--max-message", "1000.5" }, { "--max-message", "inf" }, { "--max-content", "0" },
        { "--max-content", "nan" }, { "--max-name", "0" }, { "--max-name", "2.5" },
        { "--outbound-cap", "0" }, { "--outbound-cap", "5e9" }, { "--max-header", "0" },
        { "--max-header", "100" }, { "--max-header", "1e6" }, { "--max-conns-per-ip", "0" },
        { "--max-conns-per-ip", "1.5" }, { "--rate", "nan" }, { "--rate", "0" },
        { "--burst", "nan" }, { "--history", "-1" }, { "--keep-days", "nan" },
        { "--idle-timeout", "nan" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (parse(&cfg, bad[i][0], bad[i][1], NULL) != -1) fail_msg("took %s %s", bad[i][0], bad[i][1]);
    assert_int_equal(parse(&cfg, "--max-header", "16384", NULL), 0);
    assert_int_equal(cfg.max_header, 16384);
    assert_int_equal(parse(&cfg, "--max-message", "1048576", NULL), 0);
    assert_int_equal(cfg.max_message, 1048576);
}

/* Combinations: content that escapes past the outbound cap, histories
 * that would not fit a frame's 32-bit length. */
static void test_combinations_refused(void **state)
{
    server_config cfg;
    /* 8 * 600000 bytes escaped > the 4 MiB default cap */
    assert_int_equal(parse(&cfg, "--max-content", "600000", NULL), -1);
    assert_int_equal(parse(&cfg, "--max-content", "400000", "--outbound-cap", "8000000", NULL), 0);
    /* a 1000-message resume of 8 MiB says is 8 GB: no frame holds it */
    assert_int_equal(parse(&cfg, "--max-content", "1048576", "--outbound-cap", "1073741824", NULL), -1);
    assert_int_equal(parse(&cfg, "--max-content", "1048576", "--outbound-cap", "1073741824",
                           "--resume-cap", "100", NULL), 0);
    assert_int_equal(parse(&cfg, "--max-content", "1048576", "--outbound-cap", "1073741824",
                           "--resume-cap", "100", "--history", "1000", NULL), -1);
    /* the default say, even at the smallest cap allowed when content is short */
    assert_int_equal(parse(&cfg, "--max-content", "10", "--outbound-cap", "1024", NULL), 0);
    assert_int_equal(parse(&cfg, "--outbound-cap", "1024", NULL), -1);
}

/* ws_frame's length is a uint32_t: a payload past it is refused, not cut. */
static void test_frame_length_cannot_wrap(void **state)
{
    assert_null(ws_frame_new(WS_OP_TEXT, NULL, (size_t)UINT32_MAX));
    assert_null(ws_frame_new(WS_OP_TEXT, NULL, (size_t)UINT32_MAX - 5));
    assert_null(ws_frame_raw(NULL, (size_t)UINT32_MAX + 1));
    ws_frame *f = ws_frame_new(WS_OP_TEXT, "x", 1);
    assert_non_null(f);
    assert_int_equal(f->len, 3);
    ws_frame_unref(f);
}

/* Writes text to a new temporary file; its path in path. */
static void temp_file(char *path, size_t n, const char *text)
{
    snprintf(path, n, "/tmp/tagarela-test-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

/* Without --config the default file is read when it exists; the test
 * names its own default through $TAGARELA_CONFIG, never /etc's. */
static void test_default_config_file(void **state)
{
    char conf[64];
    temp_file(conf, sizeof conf, "history 7\n");
    server_config cfg;
    setenv("TAGARELA_CONFIG", conf, 1);
    assert_int_equal(parse(&cfg, NULL), 0);
    assert_string_equal(cfg.config_path, conf);
    assert_int_equal(cfg.chat.history, 7);
    config_free(&cfg);
    assert_int_equal(parse(&cfg, "--no-config", NULL), 0);         /* skipped */
    assert_null(cfg.config_path);
    assert_int_equal(cfg.chat.history, 50);
    assert_int_equal(parse(&cfg, "--history", "9", NULL), 0);       /* the command line wins */
    assert_int_equal(cfg.chat.history, 9);
    config_free(&cfg);
    setenv("TAGARELA_CONFIG", "/nonexistent/tagarela.conf", 1);     /* none there: none read */
    assert_int_equal(parse(&cfg, NULL), 0);
    assert_null(cfg.config_path);
    setenv("TAGARELA_CONFIG", "", 1);                               /* empty: none */
    assert_int_equal(parse(&cfg, NULL), 0);
    assert_null(cfg.config_path);
    unlink(conf);
}

static void test_admin_token_file(void **state)
{
    char tok[64], shortf[64], blank[64];
    temp_file(tok, sizeof tok, "0123456789abcdef-token\n");
    temp_file(shortf, sizeof shortf, "short\n");
    temp_file(blank, sizeof blank, "0123456789 abcdef-token\n");
    server_config cfg;
    assert_int_equal(parse(&cfg, "--admin-token", tok, NULL), 0);
    assert_int_equal(cfg.admin_token.len, 22);
    assert_memory_equal(cfg.admin_token.bytes, "0123456789abcdef-token", 22);
    assert_int_equal(parse(&cfg, "--admin-token", shortf, NULL), -1);
    assert_int_equal(parse(&cfg, "--admin-token", blank, NULL), -1);
    assert_int_equal(parse(&cfg, "--admin-token", "/nonexistent", NULL), -1);
    assert_int_equal(parse(&cfg, NULL), 0);
    assert_int_equal(cfg.admin_token.len, 0);                       /* off by default */
    unlink(tok);
    unlink(shortf);
    unlink(blank);
}

int main(void)
{
    setenv("TAGARELA_CONFIG", "", 1);       /* never the machine's /etc */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_are_valid_and_safe),
        cmocka_unit_test(test_max_say_frame_bounds_the_worst_say),
        cmocka_unit_test(test_listen_addresses),
        cmocka_unit_test(test_trusted_proxies),
        cmocka_unit_test(test_redis_shards),
        cmocka_unit_test(test_tls_options),
        cmocka_unit_test(test_nonsense_numbers_refused),
        cmocka_unit_test(test_combinations_refused),
        cmocka_unit_test(test_frame_length_cannot_wrap),
        cmocka_unit_test(test_default_config_file),
        cmocka_unit_test(test_admin_token_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
