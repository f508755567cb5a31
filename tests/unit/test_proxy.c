/* test_proxy.c -- client addresses: normalising, the per-address limit key
 * (IPv4 /32, IPv6 /64), CIDR matching, the PROXY protocol v1 and v2
 * parsers, and X-Forwarded-For. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "proxy.h"

static net_addr addr(const char *s)
{
    net_addr a;
    if (!net_addr_parse(&a, s, strlen(s))) fail_msg("not an address: %s", s);
    return a;
}

static void assert_addr(const net_addr *a, const char *want)
{
    char text[ADDR_TEXT_LEN];
    net_addr_format(a, text);
    assert_string_equal(text, want);
}

/* ---- addresses and limit keys ------------------------------------------ */

static void test_parse_and_format(void **state)
{
    net_addr a;
    assert_true(net_addr_parse(&a, "192.0.2.7", 9));
    assert_int_equal(a.len, 4);
    assert_addr(&a, "192.0.2.7");
    assert_true(net_addr_parse(&a, "2001:db8::1", 11));
    assert_int_equal(a.len, 16);
    assert_addr(&a, "2001:db8::1");
    /* an IPv4-mapped IPv6 address is its IPv4 address */
    assert_true(net_addr_parse(&a, "::ffff:192.0.2.7", 16));
    assert_int_equal(a.len, 4);
    assert_addr(&a, "192.0.2.7");
    const char *bad[] = { "", "1.2.3", "1.2.3.4.5", "256.1.1.1", "example.com", "1.2.3.4 ",
                          "::g", "[::1]", "1.2.3.4/8" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_false(net_addr_parse(&a, bad[i], strlen(bad[i])));
    assert_false(net_addr_parse(&a, "1.2.3.4\0", 8));       /* an embedded NUL */
    char longer[100];
    memset(longer, '1', sizeof longer);
    assert_false(net_addr_parse(&a, longer, sizeof longer));
    net_addr none = {0};
    char text[ADDR_TEXT_LEN];
    net_addr_format(&none, text);
    assert_string_equal(text, "-");
}

static void test_from_sockaddr(void **state)
{
    struct sockaddr_in6 s6 = { .sin6_family = AF_INET6 };
    inet_pton(AF_INET6, "::ffff:10.1.2.3", &s6.sin6_addr);
    net_addr a;
    assert_true(net_addr_from_sockaddr(&a, (struct sockaddr *)&s6));
    assert_int_equal(a.len, 4);
    assert_addr(&a, "10.1.2.3");
    inet_pton(AF_INET6, "2001:db8:1:2::5", &s6.sin6_addr);
    assert_true(net_addr_from_sockaddr(&a, (struct sockaddr *)&s6));
    assert_int_equal(a.len, 16);
    struct sockaddr_in s4 = { .sin_family = AF_INET };
    inet_pton(AF_INET, "10.9.8.7", &s4.sin_addr);
    assert_true(net_addr_from_sockaddr(&a, (struct sockaddr *)&s4));
    assert_addr(&a, "10.9.8.7");
    struct sockaddr su = { .sa_family = AF_UNIX };
    assert_false(net_addr_from_sockaddr(&a, &su));
    assert_int_equal(a.len, 0);
}

static size_t key_of(const char *s, uint8_t key[8])
{
    net_addr a = addr(s);
    return net_addr_limit_key(&a, key);
}

/* IPv6 counts by /64, IPv4 by the whole address, a mapped address as IPv4. */
static void test_limit_keys(void **state)
{
    uint8_t k1[8], k2[8];
    size_t n1 = key_of("2001:db8:aa:bb:1:2:3:4", k1);
    size_t n2 = key_of("2001:db8:aa:bb:ffff:ffff:ffff:ffff", k2);
    assert_int_equal(n1, 8);
    assert_int_equal(n2, 8);
    assert_memory_equal(k1, k2, 8);                     /* one /64 */
    n2 = key_of("2001:db8:aa:bc::1", k2);
    assert_memory_not_equal(k1, k2, 8);                 /* the next /64 */
    n1 = key_of("192.0.2.1", k1);
    n2 = key_of("192.0.2.2", k2);
    assert_int_equal(n1, 4);
    assert_memory_not_equal(k1, k2, 4);                 /* IPv4: each address */
    n2 = key_of("::ffff:192.0.2.1", k2);
    assert_int_equal(n2, 4);
    assert_memory_equal(k1, k2, 4);                     /* mapped = IPv4 */
    /* ::1 and ::2 share the /64 ::/64 */
    key_of("::1", k1);
    key_of("::2", k2);
    assert_memory_equal(k1, k2, 8);
}

/* ---- CIDR --------------------------------------------------------------- */

static bool in(const char *cidr_text, const char *a)
{
    cidr c;
    if (cidr_parse(&c, cidr_text) < 0) fail_msg("bad cidr %s", cidr_text);
    net_addr x = addr(a);
    return cidr_match(&c, &x);
}

static void test_cidr(void **state)
{
    assert_true(in("10.0.0.0/8", "10.255.1.2"));
    assert_false(in("10.0.0.0/8", "11.0.0.1"));
    assert_true(in("192.168.1.128/25", "192.168.1.200"));
    assert_false(in("192.168.1.128/25", "192.168.1.127"));
    assert_true(in("127.0.0.1", "127.0.0.1"));           /* alone: /32 */
    assert_false(in("127.0.0.1", "127.0.0.2"));
    assert_true(in("0.0.0.0/0", "203.0.113.9"));
    assert_false(in("0.0.0.0/0", "2001:db8::1"));         /* families never mix */
    assert_true(in("10.1.2.3/8", "10.9.9.9"));             /* host bits cleared */
    assert_true(in("2001:db8::/32", "2001:db8:ffff::1"));
    assert_false(in("2001:db8::/32", "2001:db9::1"));
    assert_true(in("2001:db8:0:1::/63", "2001:db8:0:0::1"));
    assert_false(in("2001:db8:0:2::/63", "2001:db8:0:1::1"));
    assert_true(in("::1", "::1"));
    assert_true(in("::/0", "2001:db8::1"));
    assert_true(in("::ffff:10.0.0.0/104", "10.3.3.3"));    /* mapped network = IPv4 /8 */
    assert_true(in("::ffff:10.0.0.0/104", "::ffff:10.3.3.3"));
    assert_false(in("::ffff:10.0.0.0/104", "11.3.3.3"));
    cidr c;
    const char *bad[] = { "", "/8", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0.0/-1",
                          "10.0.0.0/8x", "10.0.0.0/0008", "host.example/8", "10.0.0.0/8/8" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (cidr_parse(&c, bad[i]) == 0) fail_msg("accepted %s", bad[i]);
}

static void test_cidr_list(void **state)
{
    cidr list[2];
    assert_int_equal(cidr_parse(&list[0], "10.0.0.0/8"), 0);
    assert_int_equal(cidr_parse(&list[1], "fd00::/8"), 0);
    net_addr a = addr("fd12::1"), b = addr("192.0.2.1"), none = {0};
    assert_true(cidr_list_match(list, 2, &a));
    assert_false(cidr_list_match(list, 2, &b));
    assert_false(cidr_list_match(list, 0, &a));
    assert_false(cidr_list_match(list, 2, &none));
}

/* ---- PROXY v1 ------------------------------------------------------------ */

static enum proxy_status parse_text(const char *s, proxy_info *info, size_t *used)
{
    return proxy_parse((const uint8_t *)s, strlen(s), info, used);
}

static void test_v1_tcp4_and_tcp6(void **state)
{
    proxy_info info;
    size_t used;
    const char *h = "PROXY TCP4 198.51.100.22 203.0.113.7 35646 80\r\nGET / HTTP/1.1\r\n";
    assert_int_equal(parse_text(h, &info, &used), PROXY_DONE);
    assert_int_equal(used, strlen("PROXY TCP4 198.51.100.22 203.0.113.7 35646 80\r\n"));
    assert_true(info.has_addr);
    assert_int_equal(info.version, 1);
    assert_addr(&info.src, "198.51.100.22");
    assert_int_equal(info.src_port, 35646);
    h = "PROXY TCP6 2001:db8::22 2001:db8::1 65535 0\r\n";
    assert_int_equal(parse_text(h, &info, &used), PROXY_DONE);
    assert_int_equal(used, strlen(h));
    assert_addr(&info.src, "2001:db8::22");
    assert_int_equal(info.src_port, 65535);
    h = "PROXY TCP6 ::ffff:198.51.100.22 ::ffff:203.0.113.7 1 2\r\n";
    assert_int_equal(parse_text(h, &info, &used), PROXY_DONE);
    assert_int_equal(info.src.len, 4);
}

static void test_v1_unknown_keeps_the_peer(void **state)
{
    proxy_info info;
    size_t used;
    assert_int_equal(parse_text("PROXY UNKNOWN\r\n", &info, &used), PROXY_DONE);
    assert_false(info.has_addr);
    assert_int_equal(used, 15);
    assert_int_equal(parse_text("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nX", &info, &used), PROXY_DONE);
    assert_false(info.has_addr);
    assert_int_equal(used, 35);
}

static void test_v1_malformed(void **state)
{
    proxy_info info;
    size_t used;
    const char *bad[] = {
        "PROXY TCP4 198.51.100.22 203.0.113.7 35646\r\n",          /* a port missing */
        "PROXY TCP4 198.51.100.22 203.0.113.7 35646 80 9\r\n",     /* one word too many */
        "PROXY TCP4 198.51.100.22 203.0.113.7 35646 80 \r\n",      /* a trailing space */
        "PROXY TCP4  198.51.100.22 203.0.113.7 35646 80\r\n",      /* two spaces */
        "PROXY TCP4 2001:db8::1 2001:db8::2 1 2\r\n",              /* family mismatch */
        "PROXY TCP6 198.51.100.22 203.0.113.7 1 2\r\n",
        "PROXY TCP4 198.51.100.22 203.0.113.7 65536 80\r\n",       /* port too big */
        "PROXY TCP4 198.51.100.22 203.0.113.7 -1 80\r\n",
        "PROXY TCP4 198.51.100.22 203.0.113.7 123456 80\r\n",
        "PROXY TCP5 198.51.100.22 203.0.113.7 1 2\r\n",
        "PROXY UNKNOWNX\r\n",
        "PROXY \r\n",
        "PROXY TCP4 198.51.100.22 203.0.113.7 1 2\rX",             /* CR without LF */
        "PROXY TCP4 198.51.100.22 203.0.113.7 1 2\n",              /* LF alone */
        "PROXY TCP4 198.51.100.22\t203.0.113.7 1 2\r\n",           /* a control byte */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (parse_text(bad[i], &info, &used) != PROXY_BAD) fail_msg("not refused: %s", bad[i]);
}

/* The spec's bound: 107 bytes, CRLF included. */
static void test_v1_length_bound(void **state)
{
    proxy_info info;
    size_t used;
    char line[200];
    /* "PROXY UNKNOWN " + padding + CRLF = exactly 107 */
    size_t pad = 107 - 14 - 2;
    memcpy(line, "PROXY UNKNOWN ", 14);
    memset(line + 14, 'x', pad);
    memcpy(line + 14 + pad, "\r\n", 3);
    assert_int_equal(parse_text(line, &info, &used), PROXY_DONE);
    assert_int_equal(used, 107);
    /* one more byte: refused, whether the CRLF has come or not */
    memset(line + 14, 'x', pad + 1);
    memcpy(line + 14 + pad + 1, "\r\n", 3);
    assert_int_equal(parse_text(line, &info, &used), PROXY_BAD);
    memset(line, 'x', sizeof line);
    memcpy(line, "PROXY UNKNOWN ", 14);
    assert_int_equal(proxy_parse((uint8_t *)line, 107, &info, &used), PROXY_BAD);
    assert_int_equal(proxy_parse((uint8_t *)line, 106, &info, &used), PROXY_MORE);
}

static void test_v1_truncated_asks_for_more(void **state)
{
    const char *h = "PROXY TCP4 198.51.100.22 203.0.113.7 35646 80\r\n";
    proxy_info info;
    size_t used;
    for (size_t n = 0; n < strlen(h); n++)
        if (proxy_parse((const uint8_t *)h, n, &info, &used) != PROXY_MORE) fail_msg("at %zu", n);
    assert_int_equal(proxy_parse((const uint8_t *)h, strlen(h), &info, &used), PROXY_DONE);
}

static void test_not_a_header(void **state)
{
    proxy_info info;
    size_t used;
    const char *http[] = { "GET / HTTP/1.1\r\n", "POST /", "PROPFIND /", "PROXYX", "proxy tcp4",
                           "\r\n\r\n\x01", "\r\nGET" };
    for (size_t i = 0; i < sizeof http / sizeof *http; i++)
        if (parse_text(http[i], &info, &used) != PROXY_ABSENT) fail_msg("took %s", http[i]);
    /* a prefix of either signature is not decided yet */
    assert_int_equal(proxy_parse((const uint8_t *)"PROX", 4, &info, &used), PROXY_MORE);
    assert_int_equal(proxy_parse((const uint8_t *)"\r\n\r\n\0\r", 6, &info, &used), PROXY_MORE);
    assert_int_equal(proxy_parse((const uint8_t *)"", 0, &info, &used), PROXY_MORE);
}

/* ---- PROXY v2 ------------------------------------------------------------ */

static const uint8_t sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };

/* A v2 header: ver_cmd, fam, then body of len bytes (addresses as given). */
static size_t v2(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const uint8_t *body, uint16_t len)
{
    memcpy(out, sig, 12);
    out[12] = ver_cmd;
    out[13] = fam;
    out[14] = (uint8_t)(len >> 8);
    out[15] = (uint8_t)len;
    if (len) memcpy(out + 16, body, len);
    return 16u + len;
}

static void test_v2_inet(void **state)
{
    uint8_t buf[64], body[12] = { 198, 51, 100, 22, 203, 0, 113, 7, 0x8b, 0x3e, 0, 80 };
    size_t n = v2(buf, 0x21, 0x11, body, 12);
    buf[n] = 'G';
    proxy_info info;
    size_t used;
    assert_int_equal(proxy_parse(buf, n + 1, &info, &used), PROXY_DONE);
    assert_int_equal(used, 28);
    assert_true(info.has_addr);
    assert_int_equal(info.version, 2);
    assert_addr(&info.src, "198.51.100.22");
    assert_int_equal(info.src_port, 35646);
}

static void test_v2_inet6_with_tlvs(void **state)
{
    uint8_t buf[128], body[36 + 7] = {0};
    inet_pton(AF_INET6, "2001:db8::22", body);
    inet_pton(AF_INET6, "2001:db8::1", body + 16);
    body[32] = 0x01;
    body[33] = 0xbb;
    /* a TLV haproxy may add (PP2_TYPE_UNIQUE_ID, 4 bytes): skipped */
    body[36] = 0x05;
    body[37] = 0;
    body[38] = 4;
    size_t n = v2(buf, 0x21, 0x21, body, sizeof body);
    proxy_info info;
    size_t used;
    assert_int_equal(proxy_parse(buf, n, &info, &used), PROXY_DONE);
    assert_int_equal(used, n);
    assert_addr(&info.src, "2001:db8::22");
    assert_int_equal(info.src_port, 443);
    /* mapped source: IPv4 */
    inet_pton(AF_INET6, "::ffff:198.51.100.9", body);
    v2(buf, 0x21, 0x21, body, 36);
    assert_int_equal(proxy_parse(buf, 52, &info, &used), PROXY_DONE);
    assert_int_equal(info.src.len, 4);
}

/* LOCAL (health checks), UNSPEC and unix sockets keep the proxy's address. */
static void test_v2_local_unspec_unix(void **state)
{
    uint8_t buf[300], body[216] = { 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2 };
    proxy_info info;
    size_t used;
    size_t n = v2(buf, 0x20, 0x11, body, 12);              /* LOCAL with addresses */
    assert_int_equal(proxy_parse(buf, n, &info, &used), PROXY_DONE);
    assert_false(info.has_addr);
    assert_int_equal(used, 28);
    n = v2(buf, 0x20, 0x00, NULL, 0);                      /* LOCAL, nothing */
    assert_int_equal(proxy_parse(buf, n, &info, &used), PROXY_DONE);
    assert_false(info.has_addr);
    assert_int_equal(used, 16);
    n = v2(buf, 0x21, 0x00, NULL, 0);                      /* PROXY, UNSPEC */
    assert_int_equal(proxy_parse(buf, n, &info, &used), PROXY_DONE);
    assert_false(info.has_addr);
    n = v2(buf, 0x21, 0x31, body, 216);                    /* PROXY, unix */
    assert_int_equal(proxy_parse(buf, n, &info, &used), PROXY_DONE);
    assert_false(info.has_addr);
    assert_int_equal(used, 232);
}

static void test_v2_malformed(void **state)
{
    uint8_t buf[PROXY_MAX + 64], body[216] = {0};
    proxy_info info;
    size_t used;
    struct { uint8_t ver_cmd, fam; uint16_t len; } bad[] = {
        { 0x11, 0x11, 12 },         /* version 1 in a v2 header */
        { 0x31, 0x11, 12 },         /* version 3 */
        { 0x22, 0x11, 12 },         /* command 2 */
        { 0x21, 0x11, 11 },         /* INET too short for its addresses */
        { 0x21, 0x21, 35 },         /* INET6 too short */
        { 0x21, 0x31, 215 },        /* unix too short */
        { 0x21, 0x12, 12 },         /* INET over DGRAM: not a TCP client */
        { 0x21, 0x41, 12 },         /* family 4 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        size_t n = v2(buf, bad[i].ver_cmd, bad[i].fam, body, bad[i].len);
        if (proxy_parse(buf, n, &info, &used) != PROXY_BAD) fail_msg("case %zu", i);
    }
    /* a length past the bound is refused before its bytes come */
    v2(buf, 0x21, 0x11, body, 12);
    buf[14] = (PROXY_V2_MAX_BODY + 1) >> 8;
    buf[15] = (PROXY_V2_MAX_BODY + 1) & 0xff;
    assert_int_equal(proxy_parse(buf, 16, &info, &used), PROXY_BAD);
    buf[14] = buf[15] = 0xff;
    assert_int_equal(proxy_parse(buf, 16, &info, &used), PROXY_BAD);
    /* the longest accepted one */
    memset(buf + 16, 0, PROXY_V2_MAX_BODY);
    buf[14] = PROXY_V2_MAX_BODY >> 8;
    buf[15] = PROXY_V2_MAX_BODY & 0xff;
    assert_int_equal(proxy_parse(buf, PROXY_MAX, &info, &used), PROXY_DONE);
    assert_int_equal(used, PROXY_MAX);
    /* a damaged signature is not a header (HTTP will refuse it) */
    v2(buf, 0x21, 0x11, body, 12);
    buf[7] = 'X';
    assert_int_equal(proxy_parse(buf, 28, &info, &used), PROXY_ABSENT);
}

static void test_v2_truncated_asks_for_more(void **state)
{
    uint8_t buf[64], body[12] = { 198, 51, 100, 22, 203, 0, 113, 7, 0, 1, 0, 2 };
    size_t n = v2(buf, 0x21, 0x11, body, 12);
    proxy_info info;
    size_t used;
    for (size_t i = 0; i < n; i++)
        if (proxy_parse(buf, i, &info, &used) != PROXY_MORE) fail_msg("at %zu", i);
    assert_int_equal(proxy_parse(buf, n, &info, &used), PROXY_DONE);
}

/* ---- X-Forwarded-For ----------------------------------------------------- */

static bool xff(const char *v, const char *const *trusted, size_t nt, char out[ADDR_TEXT_LEN])
{
    cidr list[8];
    for (size_t i = 0; i < nt; i++)
        if (cidr_parse(&list[i], trusted[i]) < 0) fail_msg("bad cidr %s", trusted[i]);
    net_addr a;
    if (!xff_client(v, strlen(v), list, nt, &a)) return false;
    net_addr_format(&a, out);
    return true;
}

static void test_xff_rightmost_untrusted(void **state)
{
    const char *const t[] = { "10.0.0.0/8", "2001:db8:ffff::/48" };
    char out[ADDR_TEXT_LEN];
    assert_true(xff("203.0.113.5", t, 2, out));
    assert_string_equal(out, "203.0.113.5");
    /* the client spoofs the left part; the proxies appended the rest */
    assert_true(xff("1.1.1.1, 203.0.113.5, 10.0.0.2", t, 2, out));
    assert_string_equal(out, "203.0.113.5");
    assert_true(xff("1.1.1.1,203.0.113.5,10.0.0.2,10.0.0.3", t, 2, out));
    assert_string_equal(out, "203.0.113.5");
    assert_true(xff(" 2001:db8:1::5 ,\t2001:db8:ffff::1 ", t, 2, out));
    assert_string_equal(out, "2001:db8:1::5");
    /* all trusted: the left-most */
    assert_true(xff("10.1.1.1, 10.0.0.2", t, 2, out));
    assert_string_equal(out, "10.1.1.1");
    /* empty elements are allowed by the list syntax */
    assert_true(xff(",, 203.0.113.5 ,,", t, 2, out));
    assert_string_equal(out, "203.0.113.5");
    /* ports and brackets as some proxies write them */
    assert_true(xff("203.0.113.5:4711", t, 2, out));
    assert_string_equal(out, "203.0.113.5");
    assert_true(xff("[2001:db8:1::5]:4711, 10.0.0.1", t, 2, out));
    assert_string_equal(out, "2001:db8:1::5");
    assert_true(xff("[2001:db8:1::5]", t, 2, out));
    assert_string_equal(out, "2001:db8:1::5");
    assert_true(xff("::ffff:203.0.113.5", t, 2, out));
    assert_string_equal(out, "203.0.113.5");
}

static void test_xff_garbage(void **state)
{
    const char *const t[] = { "10.0.0.0/8" };
    char out[ADDR_TEXT_LEN];
    assert_false(xff("", t, 1, out));
    assert_false(xff(" , ,", t, 1, out));
    assert_false(xff("unknown", t, 1, out));
    assert_false(xff("203.0.113.5 junk", t, 1, out));
    assert_false(xff("[2001:db8::1", t, 1, out));
    assert_false(xff("[203.0.113.5]", t, 1, out));
    assert_false(xff("[2001:db8::1]:99999", t, 1, out));
    assert_false(xff("203.0.113.5:", t, 1, out));
    /* the walk stops at garbage: the last trusted hop passed is the answer */
    assert_true(xff("203.0.113.5, unknown, 10.0.0.7", t, 1, out));
    assert_string_equal(out, "10.0.0.7");
    /* garbage left of the answer does not matter */
    assert_true(xff("<script>, 203.0.113.5", t, 1, out));
    assert_string_equal(out, "203.0.113.5");
    /* no trusted list: the right-most address */
    assert_true(xff("1.1.1.1, 2.2.2.2", NULL, 0, out));
    assert_string_equal(out, "2.2.2.2");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_and_format),
        cmocka_unit_test(test_from_sockaddr),
        cmocka_unit_test(test_limit_keys),
        cmocka_unit_test(test_cidr),
        cmocka_unit_test(test_cidr_list),
        cmocka_unit_test(test_v1_tcp4_and_tcp6),
        cmocka_unit_test(test_v1_unknown_keeps_the_peer),
        cmocka_unit_test(test_v1_malformed),
        cmocka_unit_test(test_v1_length_bound),
        cmocka_unit_test(test_v1_truncated_asks_for_more),
        cmocka_unit_test(test_not_a_header),
        cmocka_unit_test(test_v2_inet),
        cmocka_unit_test(test_v2_inet6_with_tlvs),
        cmocka_unit_test(test_v2_local_unspec_unix),
        cmocka_unit_test(test_v2_malformed),
        cmocka_unit_test(test_v2_truncated_asks_for_more),
        cmocka_unit_test(test_xff_rightmost_untrusted),
        cmocka_unit_test(test_xff_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
