/* keylog.c -- reading the NSS key log: line parsing, the sessions by
 * client random, and re-reading the lines appended since the last read. */
#include "keylog.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LINE_MAX_LEN 512    /* the longest useful line is under 240 bytes */

static const struct {
    const char *label;
    int index;
} labels[] = {
    {"CLIENT_HANDSHAKE_TRAFFIC_SECRET", CAP_KL_CLIENT_HS},
    {"SERVER_HANDSHAKE_TRAFFIC_SECRET", CAP_KL_SERVER_HS},
    {"CLIENT_TRAFFIC_SECRET_0", CAP_KL_CLIENT_AP},
    {"SERVER_TRAFFIC_SECRET_0", CAP_KL_SERVER_AP},
    {"CLIENT_RANDOM", CAP_KL_MASTER},
};

/* Labels of the format that decryption here does not need. */
static const char *const ignored[] = {
    "CLIENT_EARLY_TRAFFIC_SECRET", "EARLY_EXPORTER_SECRET", "EXPORTER_SECRET", "RSA",
};

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* Hex digits up to a space or the end, exactly n bytes of them. */
static const char *parse_hex(const char *s, uint8_t *out, size_t n, size_t max, size_t *got)
{
    size_t i = 0;
    while (s[0] && s[0] != ' ' && s[0] != '\n' && s[0] != '\r') {
        int hi = hexval(s[0]), lo = s[1] ? hexval(s[1]) : -1;
        if (hi < 0 || lo < 0 || i >= max) return NULL;
        out[i++] = (uint8_t)(hi << 4 | lo);
        s += 2;
    }
    if (n && i != n) return NULL;
    *got = i;
    return s;
}

int cap_keylog_parse_line(const char *line, cap_kl_session *s, bool *bad)
{
    *bad = false;
    if (line[0] == '#' || line[0] == '\n' || line[0] == '\r' || line[0] == '\0') return -1;
    const char *sp = strchr(line, ' ');
    if (!sp) {
        *bad = true;
        return -1;
    }
    size_t llen = (size_t)(sp - line);
    int index = -1;
    for (size_t i = 0; i < sizeof labels / sizeof *labels; i++)
        if (strlen(labels[i].label) == llen && !memcmp(line, labels[i].label, llen))
            index = labels[i].index;
    if (index < 0) {
        for (size_t i = 0; i < sizeof ignored / sizeof *ignored; i++)
            if (strlen(ignored[i]) == llen && !memcmp(line, ignored[i], llen)) return -1;
        *bad = true;
        return -1;
    }
    size_t got;
    const char *p = parse_hex(sp + 1, s->random, 32, 32, &got);
    if (!p || *p != ' ') {
        *bad = true;
        return -1;
    }
    p = parse_hex(p + 1, s->secret[index], 0, CAP_SECRET_MAX, &got);
    /* 48 bytes for a master secret; 32 or 48 (SHA-256, SHA-384) else. */
    bool len_ok = index == CAP_KL_MASTER ? got == 48 : (got == 32 || got == 48);
    if (!p || (*p && *p != '\n' && *p != '\r') || !len_ok) {
        *bad = true;
        return -1;
    }
    s->len[index] = (uint8_t)got;
    return index;
}

static int add_secret(cap_keylog *k, const cap_kl_session *line, int index)
{
    cap_kl_session *s = dict_get(&k->by_random, line->random, 32);
    if (!s) {
        if (k->n >= CAP_KEYLOG_MAX_SESSIONS) {
            k->full = true;
            return 0;
        }
        if (k->n == k->cap) {
            size_t cap = k->cap ? k->cap * 2 : 64;
            cap_kl_session **a = realloc(k->all, cap * sizeof *a);
            if (!a) return -1;
            k->all = a;
            k->cap = cap;
        }
        if (!(s = calloc(1, sizeof *s))) return -1;
        memcpy(s->random, line->random, 32);
        if (dict_put(&k->by_random, s->random, 32, s) < 0) {
            free(s);
            return -1;
        }
        k->all[k->n++] = s;
    }
    memcpy(s->secret[index], line->secret[index], line->len[index]);
    s->len[index] = line->len[index];
    return 0;
}

/* Reads whole lines from where the last read stopped. A last line without
 * its newline may still be being written: it is read again next time. */
static int read_more(cap_keylog *k)
{
    char line[LINE_MAX_LEN];
    for (;;) {
        long at = ftell(k->f);
        if (!fgets(line, sizeof line, k->f)) break;
        size_t n = strlen(line);
        if (n == 0 || line[n - 1] != '\n') {
            if (n == sizeof line - 1) {
                /* Too long for any secret: skip to its end. */
                int ch;
                while ((ch = fgetc(k->f)) != EOF && ch != '\n') {}
                k->lines++;
                k->bad_lines++;
                continue;
            }
            if (at >= 0) fseek(k->f, at, SEEK_SET);
            break;
        }
        k->lines++;
        cap_kl_session s;
        bool bad;
        int index = cap_keylog_parse_line(line, &s, &bad);
        if (bad) k->bad_lines++;
        if (index >= 0 && add_secret(k, &s, index) < 0) return -1;
    }
    clearerr(k->f);     /* at the end now, perhaps not later */
    return 0;
}

int cap_keylog_open(cap_keylog *k, const char *path, char *err, size_t errlen)
{
    memset(k, 0, sizeof *k);
    dict_init(&k->by_random);
    k->path = path;
    if (!(k->f = fopen(path, "r"))) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (read_more(k) < 0) {
        snprintf(err, errlen, "%s: out of memory", path);
        cap_keylog_close(k);
        return -1;
    }
    return 0;
}

void cap_keylog_close(cap_keylog *k)
{
    if (k->f) fclose(k->f);
    k->f = NULL;
    dict_free(&k->by_random);
    for (size_t i = 0; i < k->n; i++) free(k->all[i]);
    free(k->all);
    k->all = NULL;
    k->n = k->cap = 0;
}

static bool has_all(const cap_kl_session *s, unsigned need)
{
    if (!s) return false;
    for (int i = 0; i < CAP_KL_COUNT; i++)
        if ((need & (1u << i)) && !s->len[i]) return false;
    return true;
}

const cap_kl_session *cap_keylog_find(cap_keylog *k, const uint8_t random[32], unsigned need)
{
    cap_kl_session *s = dict_get(&k->by_random, random, 32);
    if (has_all(s, need)) return s;
    if (!k->f || read_more(k) < 0) return NULL;
    s = dict_get(&k->by_random, random, 32);
    return has_all(s, need) ? s : NULL;
}
