/* fuzz_proxy.c -- libFuzzer target: bytes into the client-address parsers
 * (proxy.c): the PROXY protocol header, X-Forwarded-For, CIDR and address
 * text. The first byte picks the parser.
 *
 * Beyond "no crash": a header never claims more bytes than it was given or
 * than the spec's bounds; a header that is whole at some length is read the
 * same from any longer input and asks for more at any shorter one; every
 * address found is 4 or 16 bytes and formats back to itself; a parsed CIDR
 * matches its own network. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

static void check_addr(const net_addr *a)
{
    if (a->len != 4 && a->len != 16) abort();
    char text[ADDR_TEXT_LEN];
    net_addr_format(a, text);
    net_addr back;
    if (!net_addr_parse(&back, text, strlen(text))) abort();
    if (back.len != a->len || memcmp(back.bytes, a->bytes, a->len) != 0) abort();
}

static void fuzz_header(const uint8_t *p, size_t n)
{
    proxy_info info;
    size_t used;
    enum proxy_status st = proxy_parse(p, n, &info, &used);
    if (st != PROXY_DONE) return;
    if (used == 0 || used > n || used > PROXY_MAX) abort();
    if (info.version == 1 && used > PROXY_V1_MAX) abort();
    if (info.has_addr) check_addr(&info.src);
    /* shorter: more wanted; cut right after it: the same header */
    proxy_info again;
    size_t whole = used, used2;
    for (size_t k = 0; k < whole; k++)
        if (proxy_parse(p, k, &again, &used2) != PROXY_MORE) abort();
    if (proxy_parse(p, whole, &again, &used2) != PROXY_DONE || used2 != whole) abort();
    if (again.has_addr != info.has_addr || memcmp(&again.src, &info.src, sizeof info.src)) abort();
}

static void fuzz_xff(const uint8_t *p, size_t n)
{
    cidr trusted[2];
    if (cidr_parse(&trusted[0], "10.0.0.0/8") < 0 || cidr_parse(&trusted[1], "fd00::/8") < 0) abort();
    net_addr a;
    if (xff_client((const char *)p, n, trusted, 2, &a)) check_addr(&a);
}

static void fuzz_text(const uint8_t *p, size_t n)
{
    char s[128];
    if (n >= sizeof s) n = sizeof s - 1;
    memcpy(s, p, n);
    s[n] = '\0';
    cidr c;
    if (cidr_parse(&c, s) == 0) {
        if (c.prefix > 8 * c.net.len) abort();
        if (!cidr_match(&c, &c.net)) abort();
    }
    net_addr a;
    if (net_addr_parse(&a, (const char *)p, n)) check_addr(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    switch (data[0] % 3) {
    case 0: fuzz_header(data + 1, size - 1); break;
    case 1: fuzz_xff(data + 1, size - 1); break;
    default: fuzz_text(data + 1, size - 1); break;
    }
    return 0;
}
