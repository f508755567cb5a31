/* test_escape.c -- HTML escaping, nl2br, trimming, control characters, and
 * the string builder's JSON string escaping. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "escape.h"
#include "sbuf.h"

/* html_escape into a fresh buffer, compared with want. */
static void check_escape(const char *in, size_t n, bool nl2br, const char *want)
{
    sbuf o;
    sbuf_init(&o);
    html_escape(&o, in, n, nl2br);
    assert_int_equal(o.len, strlen(want));
    if (o.len) assert_memory_equal(o.p, want, o.len);
    sbuf_free(&o);
}
#define ESC(in, nl2br, want) check_escape(in, sizeof(in) - 1, nl2br, want)

/* ---- html_escape ------------------------------------------------------ */

static void test_escape_the_five_characters(void **state)
{
    ESC("&", false, "&amp;");
    ESC("<", false, "&lt;");
    ESC(">", false, "&gt;");
    ESC("\"", false, "&quot;");
    ESC("'", false, "&#039;");
    ESC("a & b < c > d \" e ' f", false,
        "a &amp; b &lt; c &gt; d &quot; e &#039; f");
    ESC("<script>alert('x')</script>", true,
        "&lt;script&gt;alert(&#039;x&#039;)&lt;/script&gt;");
}

static void test_escape_leaves_other_text_alone(void **state)
{
    ESC("", false, "");
    ESC("", true, "");
    ESC("plain text 123", true, "plain text 123");
    ESC("caf\xC3\xA9 \xF0\x9F\x98\x80 / \\ ;", true, "caf\xC3\xA9 \xF0\x9F\x98\x80 / \\ ;");
    ESC("&amp;", false, "&amp;amp;");   /* no double-escape detection, as PHP */
}

static void test_escape_appends_to_existing_content(void **state)
{
    sbuf o;
    sbuf_init(&o);
    sbuf_puts(&o, "x=");
    html_escape(&o, "<a>", 3, false);
    assert_string_equal(o.p, "x=&lt;a&gt;");
    sbuf_free(&o);
}

static void test_without_nl2br_line_breaks_stay_as_they_are(void **state)
{
    ESC("a\r\nb\nc\rd", false, "a\r\nb\nc\rd");
}

static void test_nl2br_each_break_form(void **state)
{
    ESC("a\r\nb\nc\rd\n\re", true, "a<br />\r\nb<br />\nc<br />\rd<br />\n\re");
    ESC("\n", true, "<br />\n");
    ESC("\r", true, "<br />\r");
    ESC("\r\n", true, "<br />\r\n");
    ESC("\n\r", true, "<br />\n\r");
}

static void test_nl2br_repeated_breaks(void **state)
{
    ESC("a\n\nb", true, "a<br />\n<br />\nb");
    ESC("a\r\rb", true, "a<br />\r<br />\rb");
    /* \r\n\r\n is two pairs; \n\r\n is a pair then a lone \n */
    ESC("a\r\n\r\nb", true, "a<br />\r\n<br />\r\nb");
    ESC("a\n\r\nb", true, "a<br />\n\r<br />\nb");
    ESC("\n\n\n", true, "<br />\n<br />\n<br />\n");
}

static void test_nl2br_with_escapes_around(void **state)
{
    ESC("<b>\n&", true, "&lt;b&gt;<br />\n&amp;");
    ESC("'\r\n\"", true, "&#039;<br />\r\n&quot;");
}

/* ---- utf8_trim -------------------------------------------------------- */

static void check_trim(const char *in, size_t n, const char *want)
{
    size_t len = n;
    const char *s = utf8_trim(in, &len);
    assert_true(s >= in && s + len <= in + n);
    assert_int_equal(len, strlen(want));
    if (len) assert_memory_equal(s, want, len);
}
#define TRIM(in, want) check_trim(in, sizeof(in) - 1, want)

static void test_trim_ascii_spaces(void **state)
{
    TRIM("mynick", "mynick");
    TRIM("  mynick  ", "mynick");
    TRIM("\t\r\n mynick\f\v", "mynick");
    TRIM("my nick", "my nick");
    TRIM("  my  nick ", "my  nick");
    TRIM("", "");
}

static void test_trim_unicode_spaces(void **state)
{
    TRIM("\xC2\xA0nick\xC2\xA0", "nick");                       /* U+00A0 */
    TRIM("\xE3\x80\x80nick\xE3\x80\x80", "nick");               /* U+3000 */
    TRIM("\xE2\x80\x83 \xE2\x80\xAF" "nick\xE2\x81\x9F", "nick"); /* U+2003 U+202F U+205F */
    TRIM("\xE1\x9A\x80" "a\xE2\x80\xA8", "a");                  /* U+1680, U+2028 */
    /* inner Unicode spaces stay */
    TRIM(" a\xC2\xA0" "b ", "a\xC2\xA0" "b");
}

static void test_trim_keeps_non_space_multibyte_edges(void **state)
{
    TRIM("\xC3\xA9t\xC3\xA9", "\xC3\xA9t\xC3\xA9");
    TRIM(" \xE4\xB8\x96 ", "\xE4\xB8\x96");
    TRIM("\xF0\x9F\x98\x80", "\xF0\x9F\x98\x80");
    /* U+00E0 shares its last byte (0xA0) with U+00A0: not a space */
    TRIM("\xC3\xA0", "\xC3\xA0");
    /* U+3001 is punctuation, not a space */
    TRIM("\xE3\x80\x81", "\xE3\x80\x81");
}

static void test_trim_all_space_gives_empty(void **state)
{
    TRIM("   ", "");
    TRIM(" \t\r\n", "");
    TRIM("\xC2\xA0\xE3\x80\x80 \xE2\x80\x80", "");
}

/* ---- utf8_has_control ------------------------------------------------- */

#define HASCTL(s) utf8_has_control(s, sizeof(s) - 1)

static void test_control_characters_detected(void **state)
{
    assert_true(HASCTL("a\x01" "b"));
    assert_true(HASCTL("a\tb"));            /* tab */
    assert_true(HASCTL("a\nb"));
    assert_true(HASCTL("\x1F"));
    assert_true(HASCTL("a\x7F"));           /* DEL */
    assert_true(HASCTL("a\xC2\x80"));       /* U+0080, C1 */
    assert_true(HASCTL("a\xC2\x85z"));      /* U+0085 NEL */
    assert_true(HASCTL("\xC2\x9F"));        /* U+009F, last C1 */
    assert_true(utf8_has_control("a\0b", 3));
}

static void test_no_control_characters(void **state)
{
    assert_false(HASCTL(""));
    assert_false(HASCTL("mynick"));
    assert_false(HASCTL(" ~"));             /* 0x20 and 0x7E */
    assert_false(HASCTL("\xC2\xA0"));       /* U+00A0, right after C1 */
    assert_false(HASCTL("caf\xC3\xA9 \xE4\xB8\x96 \xF0\x9F\x98\x80"));
    /* a continuation byte in 0x80..0x9F is not a C1 control */
    assert_false(HASCTL("\xE2\x82\xAC"));   /* U+20AC: 0x82 */
    assert_false(HASCTL("\xC4\x80"));       /* U+0100: 0x80 */
}

/* ---- sbuf ------------------------------------------------------------- */

static void check_json(const char *in, size_t n, const char *want)
{
    sbuf o;
    sbuf_init(&o);
    sbuf_json_str(&o, in, n);
    assert_int_equal(o.len, strlen(want));
    assert_string_equal(o.p, want);
    sbuf_free(&o);
}
#define JSON(in, want) check_json(in, sizeof(in) - 1, want)

static void test_json_string_plain(void **state)
{
    JSON("", "\"\"");
    JSON("mynick", "\"mynick\"");
    JSON("a/b", "\"a/b\"");
}

static void test_json_string_quotes_and_backslash(void **state)
{
    JSON("say \"hi\"", "\"say \\\"hi\\\"\"");
    JSON("a\\b", "\"a\\\\b\"");
    JSON("\\\"", "\"\\\\\\\"\"");
}

static void test_json_string_control_characters(void **state)
{
    JSON("\n\r\t\b\f", "\"\\n\\r\\t\\b\\f\"");
    JSON("\x01", "\"\\u0001\"");
    JSON("\x1f", "\"\\u001f\"");
    JSON("a\x0b" "b", "\"a\\u000bb\"");
    check_json("\0", 1, "\"\\u0000\"");
    /* DEL is valid unescaped in JSON */
    JSON("\x7f", "\"\x7f\"");
}

static void test_json_string_utf8_passed_through(void **state)
{
    JSON("caf\xC3\xA9 \xE4\xB8\x96 \xF0\x9F\x98\x80 \xC2\x85",
         "\"caf\xC3\xA9 \xE4\xB8\x96 \xF0\x9F\x98\x80 \xC2\x85\"");
}

static void test_json_string_appends_and_grows(void **state)
{
    sbuf o;
    sbuf_init(&o);
    sbuf_puts(&o, "{\"k\":");
    char big[3000];
    memset(big, '"', sizeof big);
    sbuf_json_str(&o, big, sizeof big);
    sbuf_putc(&o, '}');
    assert_int_equal(o.len, 5 + 2 + 2 * sizeof big + 1);
    assert_memory_equal(o.p, "{\"k\":\"\\\"\\\"", 10);
    assert_int_equal(o.p[o.len - 2], '"');
    assert_int_equal(o.p[o.len - 1], '}');
    assert_int_equal(o.p[o.len], '\0');
    sbuf_free(&o);
}

static void test_sbuf_numbers_printf_reset(void **state)
{
    sbuf o;
    sbuf_init(&o);
    sbuf_u64(&o, 0);
    sbuf_putc(&o, ' ');
    sbuf_u64(&o, 783700053);
    sbuf_putc(&o, ' ');
    sbuf_u64(&o, UINT64_MAX);
    assert_string_equal(o.p, "0 783700053 18446744073709551615");
    sbuf_reset(&o);
    assert_int_equal(o.len, 0);
    sbuf_printf(&o, "%s-%d", "x", 42);
    sbuf_printf(&o, "%05d", 7);
    assert_string_equal(o.p, "x-4200007");
    assert_int_equal(o.len, 9);
    for (int i = 0; i < 1000; i++) sbuf_puts(&o, "0123456789");
    assert_int_equal(o.len, 10009);
    assert_int_equal(o.p[10008], '9');
    assert_int_equal(o.p[10009], '\0');
    assert_int_equal(o.oom, 0);
    sbuf_free(&o);
    assert_null(o.p);
    assert_int_equal(o.len, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_the_five_characters),
        cmocka_unit_test(test_escape_leaves_other_text_alone),
        cmocka_unit_test(test_escape_appends_to_existing_content),
        cmocka_unit_test(test_without_nl2br_line_breaks_stay_as_they_are),
        cmocka_unit_test(test_nl2br_each_break_form),
        cmocka_unit_test(test_nl2br_repeated_breaks),
        cmocka_unit_test(test_nl2br_with_escapes_around),
        cmocka_unit_test(test_trim_ascii_spaces),
        cmocka_unit_test(test_trim_unicode_spaces),
        cmocka_unit_test(test_trim_keeps_non_space_multibyte_edges),
        cmocka_unit_test(test_trim_all_space_gives_empty),
        cmocka_unit_test(test_control_characters_detected),
        cmocka_unit_test(test_no_control_characters),
        cmocka_unit_test(test_json_string_plain),
        cmocka_unit_test(test_json_string_quotes_and_backslash),
        cmocka_unit_test(test_json_string_control_characters),
        cmocka_unit_test(test_json_string_utf8_passed_through),
        cmocka_unit_test(test_json_string_appends_and_grows),
        cmocka_unit_test(test_sbuf_numbers_printf_reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
