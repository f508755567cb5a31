/* test_log.c -- the event log's lines: logfmt and JSON quoting, fields
 * left out, levels, and lines cut at 2 KiB that still parse. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* Runs the logging of one test with stderr in a file; returns its text. */
static char captured[8192];

static int saved_stderr = -1;
static FILE *sink;

static void capture_start(int format, int level)
{
    setenv("JOURNAL_STREAM", "8:1", 1);     /* no timestamps: lines compare exactly */
    log_setup(format, level);
    fflush(stderr);
    sink = tmpfile();
    assert_non_null(sink);
    saved_stderr = dup(STDERR_FILENO);
    assert_true(dup2(fileno(sink), STDERR_FILENO) >= 0);
}

static const char *capture_end(void)
{
    assert_true(dup2(saved_stderr, STDERR_FILENO) >= 0);
    close(saved_stderr);
    rewind(sink);
    size_t n = fread(captured, 1, sizeof captured - 1, sink);
    captured[n] = '\0';
    fclose(sink);
    return captured;
}

static void test_logfmt_quotes_what_needs_it(void **state)
{
    capture_start(LOG_LOGFMT, LOG_INFO);
    log_event(LOG_WARN, "close", "code=%u reason=%s by=%s addr=%s", 1009u, "message \"too\" big\n=", "server",
              (const char *)NULL);
    log_event(LOG_INFO, "n", "a=%d b=%zu c=%llu empty=%s ctl=%s", -3, (size_t)7, 1ull << 40, "", "a\x01");
    assert_string_equal(capture_end(),
        "level=warn event=close code=1009 reason=\"message \\\"too\\\" big\\n=\" by=server\n"
        "level=info event=n a=-3 b=7 c=1099511627776 empty=\"\" ctl=\"a\\x01\"\n");
}

static void test_json_lines(void **state)
{
    capture_start(LOG_JSON, LOG_DEBUG);
    log_event(LOG_DEBUG, "x", "n=%u s=%s gone=%s", 5u, "q\"\x01\\", (const char *)NULL);
    log_event(LOG_ERROR, "history_trim_failed", "");
    assert_string_equal(capture_end(),
        "{\"level\":\"debug\",\"event\":\"x\",\"n\":5,\"s\":\"q\\\"\\u0001\\\\\"}\n"
        "{\"level\":\"error\",\"event\":\"history_trim_failed\"}\n");
}

static void test_levels_filter_and_change(void **state)
{
    capture_start(LOG_LOGFMT, LOG_WARN);
    log_event(LOG_INFO, "hidden", "");
    log_event(LOG_ERROR, "shown", "");
    log_set_level(LOG_INFO);
    log_event(LOG_INFO, "now", "");
    log_event(LOG_DEBUG, "hidden", "");
    assert_string_equal(capture_end(), "level=error event=shown\nlevel=info event=now\n");
    assert_int_equal(log_level_parse("debug"), LOG_DEBUG);
    assert_int_equal(log_level_parse("verbose"), -1);
    assert_int_equal(log_format_parse("json"), LOG_JSON);
    assert_int_equal(log_format_parse("JSON"), -1);
}

/* A field that would cross 2 KiB is left out whole: the line still parses. */
static void test_long_fields_are_left_out(void **state)
{
    static char big[3000];
    memset(big, 'a', sizeof big - 1);
    capture_start(LOG_JSON, LOG_INFO);
    log_event(LOG_INFO, "x", "first=%s big=%s after=%s", "1", big, "2");
    const char *out = capture_end();
    assert_string_equal(out, "{\"level\":\"info\",\"event\":\"x\",\"first\":\"1\"}\n");
    capture_start(LOG_LOGFMT, LOG_INFO);
    log_event(LOG_INFO, "x", "big=%s", big);
    assert_string_equal(capture_end(), "level=info event=x\n");
}

static void test_timestamps_unless_journald(void **state)
{
    capture_start(LOG_LOGFMT, LOG_INFO);
    unsetenv("JOURNAL_STREAM");
    log_setup(LOG_LOGFMT, LOG_INFO);
    log_event(LOG_INFO, "x", "");
    const char *out = capture_end();
    assert_true(strncmp(out, "level=info time=20", 18) == 0);
    assert_non_null(strstr(out, "Z event=x\n"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logfmt_quotes_what_needs_it),
        cmocka_unit_test(test_json_lines),
        cmocka_unit_test(test_levels_filter_and_change),
        cmocka_unit_test(test_long_fields_are_left_out),
        cmocka_unit_test(test_timestamps_unless_journald),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
