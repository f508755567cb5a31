/* proxy.c -- client addresses: normalising, limit keys, CIDR matching, and
 * the PROXY protocol and X-Forwarded-For parsers. Everything here reads
 * bytes a peer chose, so every length is checked before it is used. */
#include "proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

/* ---- addresses -------------------------------------------------------- */

static const uint8_t v4_mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is its IPv4 address: a
 * dual-stack listener sees IPv4 clients that way. */
static void set_v6(net_addr *a, const uint8_t b[16])
{
    if (memcmp(b, v4_mapped_prefix, sizeof v4_mapped_prefix) == 0) {
        memcpy(a->bytes, b + 12, 4);
        a->len = 4;
    } else {
        memcpy(a->bytes, b, 16);
        a->len = 16;
    }
}

static void set_v4(net_addr *a, const uint8_t b[4])
{
    memcpy(a->bytes, b, 4);
    a->len = 4;
}

bool net_addr_from_sockaddr(net_addr *a, const struct sockaddr *sa)
{
    memset(a, 0, sizeof *a);
    if (sa->sa_family == AF_INET) {
        set_v4(a, (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        set_v6(a, (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr);
        return true;
    }
    return false;
}

bool net_addr_parse(net_addr *a, const char *s, size_t n)
{
    char buf[ADDR_TEXT_LEN];
    uint8_t b[16];
    memset(a, 0, sizeof *a);
    if (n == 0 || n >= sizeof buf || memchr(s, '\0', n)) return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (inet_pton(AF_INET, buf, b) == 1) {
        set_v4(a, b);
        return true;
    }
    if (inet_pton(AF_INET6, buf, b) == 1) {
        set_v6(a, b);
        return true;
    }
    return false;
}

void net_addr_format(const net_addr *a, char out[ADDR_TEXT_LEN])
{
    if (a->len == 4 ? !inet_ntop(AF_INET, a->bytes, out, ADDR_TEXT_LEN)
        : a->len == 16 ? !inet_ntop(AF_INET6, a->bytes, out, ADDR_TEXT_LEN)
                       : true)
        strcpy(out, "-");
}

size_t net_addr_limit_key(const net_addr *a, uint8_t key[8])
{
    size_t n = a->len == 16 ? 8 : 4;
    memcpy(key, a->bytes, n);
    return n;
}

/* ---- CIDR ------------------------------------------------------------- */

static void clear_host_bits(net_addr *a, unsigned prefix)
{
    for (unsigned i = 0; i < a->len; i++) {
        unsigned keep = prefix > 8 * i ? prefix - 8 * i : 0;
        if (keep < 8) a->bytes[i] &= (uint8_t)(0xff00 >> keep);
    }
}

static int parse_prefix(const char *s, unsigned max, unsigned *out)
{
    unsigned v = 0;
    size_t i = 0;
    for (; s[i] >= '0' && s[i] <= '9' && i < 3; i++) v = v * 10 + (unsigned)(s[i] - '0');
    if (i == 0 || s[i] != '\0' || v > max) return -1;
    *out = v;
    return 0;
}

int cidr_parse(cidr *c, const char *s)
{
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    char buf[ADDR_TEXT_LEN];
    uint8_t b[16];
    memset(c, 0, sizeof *c);
    if (n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    unsigned prefix, max;
    if (inet_pton(AF_INET, buf, b) == 1) {
        set_v4(&c->net, b);
        max = 32;
    } else if (inet_pton(AF_INET6, buf, b) == 1) {
        memcpy(c->net.bytes, b, 16);
        c->net.len = 16;
        max = 128;
    } else {
        return -1;
    }
    if (!slash) prefix = max;
    else if (parse_prefix(slash + 1, max, &prefix) < 0) return -1;
    /* ::ffff:a.b.c.d/n with n >= 96 is an IPv4 network: peers are
     * normalised to IPv4 the same way. */
    if (max == 128 && prefix >= 96 && memcmp(b, v4_mapped_prefix, 12) == 0) {
        set_v4(&c->net, b + 12);
        prefix -= 96;
    }
    c->prefix = (uint8_t)prefix;
    clear_host_bits(&c->net, prefix);
    return 0;
}

bool cidr_match(const cidr *c, const net_addr *a)
{
    if (a->len != c->net.len || a->len == 0) return false;
    unsigned whole = c->prefix / 8, rest = c->prefix % 8;
    if (memcmp(a->bytes, c->net.bytes, whole) != 0) return false;
    if (rest == 0) return true;
    uint8_t mask = (uint8_t)(0xff00 >> rest);
    return (a->bytes[whole] & mask) == c->net.bytes[whole];
}

bool cidr_list_match(const cidr *list, size_t n, const net_addr *a)
{
    for (size_t i = 0; i < n; i++)
        if (cidr_match(&list[i], a)) return true;
    return false;
}

/* ---- PROXY protocol v1 ------------------------------------------------ */

static const char v1_sig[] = "PROXY ";
static const uint8_t v2_sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };

/* 0..65535 in decimal, at most 5 digits. */
static bool parse_port(const char *s, size_t n, uint16_t *out)
{
    if (n == 0 || n > 5) return false;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535) return false;
    *out = (uint16_t)v;
    return true;
}

/* The next space-separated word of [*p, end); false when there is none. */
static bool next_word(const char **p, const char *end, const char **w, size_t *wn)
{
    if (*p >= end) return false;
    const char *sp = memchr(*p, ' ', (size_t)(end - *p));
    const char *stop = sp ? sp : end;
    *w = *p;
    *wn = (size_t)(stop - *p);
    *p = sp ? sp + 1 : end;
    return *wn > 0;
}

/* "TCP4 SRC DST SPORT DPORT" or "TCP6 ..." (after "PROXY "), the addresses
 * of the family named. */
static bool parse_v1_tcp(const char *p, const char *end, int family, proxy_info *info)
{
    const char *w[4];
    size_t wn[4];
    for (int i = 0; i < 4; i++)
        if (!next_word(&p, end, &w[i], &wn[i])) return false;
    if (p != end || w[3] + wn[3] != end) return false;     /* nothing after DPORT */
    char buf[ADDR_TEXT_LEN];
    uint8_t b[16];
    for (int i = 0; i < 2; i++) {
        if (wn[i] >= sizeof buf) return false;
        memcpy(buf, w[i], wn[i]);
        buf[wn[i]] = '\0';
        if (inet_pton(family, buf, b) != 1) return false;
        if (i == 0) {
            if (family == AF_INET) set_v4(&info->src, b);
            else set_v6(&info->src, b);
        }
    }
    uint16_t dport;
    if (!parse_port(w[2], wn[2], &info->src_port) || !parse_port(w[3], wn[3], &dport)) return false;
    info->has_addr = true;
    return true;
}

static enum proxy_status parse_v1(const uint8_t *p, size_t n, proxy_info *info, size_t *used)
{
    size_t scan = n < PROXY_V1_MAX ? n : PROXY_V1_MAX;
    const uint8_t *cr = NULL;
    for (size_t i = 0; i < scan; i++) {
        if (p[i] == '\r') {
            cr = p + i;
            break;
        }
        if (p[i] < 0x20 || p[i] > 0x7e) return PROXY_BAD;
    }
    if (!cr) return n >= PROXY_V1_MAX ? PROXY_BAD : PROXY_MORE;
    size_t line = (size_t)(cr - p);
    if (line + 2 > PROXY_V1_MAX) return PROXY_BAD;
    if (line + 1 >= n) return PROXY_MORE;
    if (cr[1] != '\n') return PROXY_BAD;
    const char *s = (const char *)p + sizeof v1_sig - 1, *end = (const char *)cr;
    const char *proto;
    size_t pn;
    if (!next_word(&s, end, &proto, &pn)) return PROXY_BAD;
    info->version = 1;
    if (pn == 7 && memcmp(proto, "UNKNOWN", 7) == 0) {
        info->has_addr = false;             /* the rest of the line is ignored */
    } else if (pn == 4 && (memcmp(proto, "TCP4", 4) == 0 || memcmp(proto, "TCP6", 4) == 0)) {
        if (!parse_v1_tcp(s, end, proto[3] == '4' ? AF_INET : AF_INET6, info)) return PROXY_BAD;
    } else {
        return PROXY_BAD;
    }
    *used = line + 2;
    return PROXY_DONE;
}

/* ---- PROXY protocol v2 ------------------------------------------------ */

enum { V2_LOCAL = 0, V2_PROXY = 1 };
enum { V2_AF_UNSPEC = 0, V2_AF_INET = 1, V2_AF_INET6 = 2, V2_AF_UNIX = 3 };
enum { V2_STREAM = 1 };

static enum proxy_status parse_v2(const uint8_t *p, size_t n, proxy_info *info, size_t *used)
{
    if (n < PROXY_V2_HEADER) return PROXY_MORE;
    unsigned version = p[12] >> 4, command = p[12] & 0x0f;
    unsigned family = p[13] >> 4, transport = p[13] & 0x0f;
    size_t len = (size_t)p[14] << 8 | p[15];
    if (version != 2 || command > V2_PROXY || len > PROXY_V2_MAX_BODY) return PROXY_BAD;
    if (n < PROXY_V2_HEADER + len) return PROXY_MORE;
    const uint8_t *body = p + PROXY_V2_HEADER;
    info->version = 2;
    info->has_addr = false;
    /* LOCAL: the proxy speaking for itself (health checks); the addresses,
     * if any, are to be ignored. */
    if (command == V2_PROXY) {
        switch (family) {
        case V2_AF_UNSPEC:
            break;
        case V2_AF_INET:
            if (transport != V2_STREAM || len < 12) return PROXY_BAD;
            set_v4(&info->src, body);
            info->src_port = (uint16_t)(body[8] << 8 | body[9]);
            info->has_addr = true;
            break;
        case V2_AF_INET6:
            if (transport != V2_STREAM || len < 36) return PROXY_BAD;
            set_v6(&info->src, body);
            info->src_port = (uint16_t)(body[32] << 8 | body[33]);
            info->has_addr = true;
            break;
        case V2_AF_UNIX:
            if (len < 216) return PROXY_BAD;        /* two 108-byte paths */
            break;
        default:
            return PROXY_BAD;
        }
    }
    *used = PROXY_V2_HEADER + len;
    return PROXY_DONE;
}

enum proxy_status proxy_parse(const uint8_t *p, size_t n, proxy_info *info, size_t *used)
{
    memset(info, 0, sizeof *info);
    *used = 0;
    size_t k1 = sizeof v1_sig - 1;
    if (n > 0 && p[0] == (uint8_t)v1_sig[0]) {
        if (memcmp(p, v1_sig, n < k1 ? n : k1) != 0) return PROXY_ABSENT;
        return n < k1 ? PROXY_MORE : parse_v1(p, n, info, used);
    }
    if (n > 0 && p[0] == v2_sig[0]) {
        size_t k2 = sizeof v2_sig;
        if (memcmp(p, v2_sig, n < k2 ? n : k2) != 0) return PROXY_ABSENT;
        return n < k2 ? PROXY_MORE : parse_v2(p, n, info, used);
    }
    return n == 0 ? PROXY_MORE : PROXY_ABSENT;
}

/* ---- X-Forwarded-For -------------------------------------------------- */

/* One list entry: an address, "[v6]" with an optional ":port", or
 * "v4:port" (some proxies add the port). */
static bool xff_entry(const char *s, size_t n, net_addr *a)
{
    uint16_t port;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close) return false;
        size_t after = n - (size_t)(close - s) - 1;
        if (after && (close[1] != ':' || !parse_port(close + 2, after - 1, &port))) return false;
        return net_addr_parse(a, s + 1, (size_t)(close - s) - 1) && a->len == 16;
    }
    const char *colon = memchr(s, ':', n);
    if (colon && !memchr(colon + 1, ':', n - (size_t)(colon - s) - 1)) {
        size_t an = (size_t)(colon - s);
        return parse_port(colon + 1, n - an - 1, &port) && net_addr_parse(a, s, an) && a->len == 4;
    }
    return net_addr_parse(a, s, n);
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

bool xff_client(const char *v, size_t n, const cidr *trusted, size_t ntrusted, net_addr *out)
{
    bool have = false;
    net_addr last = {0};
    size_t end = n;
    for (;;) {
        size_t start = end;
        while (start > 0 && v[start - 1] != ',') start--;
        size_t s = start, e = end;
        while (s < e && is_ows(v[s])) s++;
        while (e > s && is_ows(v[e - 1])) e--;
        if (e > s) {                        /* empty list elements are allowed */
            net_addr a;
            if (!xff_entry(v + s, e - s, &a)) break;
            if (!cidr_list_match(trusted, ntrusted, &a)) {
                *out = a;
                return true;
            }
            last = a;
            have = true;
        }
        if (start == 0) break;
        end = start - 1;
    }
    if (have) *out = last;
    return have;
}
