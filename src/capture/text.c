/* text.c -- the readable view (the default), in the spirit of the
 * annotated tcpdump capture the project started from: one line per event,
 * client frames shown unmasked, a short chat-aware summary of each message
 * ("login mynick", "say to all: oi, pessoal !"), colours on a terminal,
 * hex and ASCII with -X, and the end-of-capture summary.
 *
 * Speed matters less here than in the JSON view, so the chat messages are
 * parsed with jansson. */
#include "capture_int.h"
#include "utf8.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SHOW_MAX 1024           /* message bytes shown on a line */

enum { C_RESET, C_DIM, C_BOLD, C_CLIENT, C_SERVER, C_NOTE, C_BAD };
static const char *const colors[] = {"\033[0m", "\033[2m", "\033[1m", "\033[36m",
                                     "\033[33m", "\033[32m", "\033[31m"};

static void color(cap_ctx *c, int which)
{
    if (c->out.color) cap_put(&c->out.w, colors[which], strlen(colors[which]));
}

static void puts_(cap_ctx *c, const char *s) { cap_put(&c->out.w, s, strlen(s)); }

static void wprintf_(cap_wbuf *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void wprintf_(cap_wbuf *w, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0) cap_put(w, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

#define printf_(c, ...) wprintf_(&(c)->out.w, __VA_ARGS__)

/* Shows bytes as text on one line: escapes for control characters, \xNN
 * for what is not UTF-8, cut after max bytes. */
static void show_text(cap_ctx *c, const uint8_t *p, size_t n, size_t max)
{
    size_t shown = n < max ? n : max;
    for (size_t i = 0; i < shown;) {
        uint8_t ch = p[i];
        char esc[8];
        if (ch == '\n' || ch == '\r' || ch == '\t') {
            puts_(c, ch == '\n' ? "\\n" : ch == '\r' ? "\\r" : "\\t");
            i++;
        } else if (ch < 0x20 || ch == 0x7F) {
            snprintf(esc, sizeof esc, "\\x%02x", ch);
            puts_(c, esc);
            i++;
        } else if (ch < 0x80) {
            cap_put(&c->out.w, &ch, 1);
            i++;
        } else {
            size_t k = utf8_sequence_len(p + i, n - i);
            if (k) {
                cap_put(&c->out.w, p + i, k);
                i += k;
            } else {
                snprintf(esc, sizeof esc, "\\x%02x", ch);
                puts_(c, esc);
                i++;
            }
        }
    }
    if (shown < n) printf_(c, "... (%zu more bytes)", n - shown);
}

static void show_hex(cap_ctx *c, const uint8_t *p, size_t n, size_t max)
{
    size_t shown = n < max ? n : max;
    cap_put_hex(&c->out.w, p, shown);
    if (shown < n) printf_(c, "... (%zu more bytes)", n - shown);
}

/* tcpdump -X style: offset, 16 bytes in hex, then ASCII. */
static void hexdump(cap_ctx *c, const uint8_t *p, size_t n)
{
    for (size_t off = 0; off < n; off += 16) {
        size_t k = n - off < 16 ? n - off : 16;
        char line[100];
        int m = snprintf(line, sizeof line, "\t0x%04zx:  ", off);
        for (size_t i = 0; i < 16; i++) {
            if (i < k) m += snprintf(line + m, sizeof line - (size_t)m, "%02x", p[off + i]);
            else m += snprintf(line + m, sizeof line - (size_t)m, "  ");
            if (i & 1) line[m++] = ' ';
        }
        line[m++] = ' ';
        for (size_t i = 0; i < k; i++) {
            uint8_t ch = p[off + i];
            line[m++] = ch >= 0x20 && ch < 0x7F ? (char)ch : '.';
        }
        line[m++] = '\n';
        cap_put(&c->out.w, line, (size_t)m);
    }
}

/* ---- chat summaries ---- */

static cap_name *name_slot(cap_ctx *c, uint64_t uid)
{
    if (!c->names && !(c->names = calloc(CAP_NAMES, sizeof *c->names))) return NULL;
    return &c->names[uid % CAP_NAMES];
}

static void remember(cap_ctx *c, json_t *uid, json_t *name)
{
    if (!json_is_integer(uid) || !json_is_string(name)) return;
    cap_name *s = name_slot(c, (uint64_t)json_integer_value(uid));
    if (!s) return;
    s->uid = (uint64_t)json_integer_value(uid);
    snprintf(s->name, sizeof s->name, "%s", json_string_value(name));
}

/* "mynick" when the uid's name is known, else "uid 783700053". */
static void who(cap_ctx *c, json_t *uid, char *out, size_t n)
{
    json_int_t v = json_is_integer(uid) ? json_integer_value(uid)
                   : json_is_string(uid) ? strtoll(json_string_value(uid), NULL, 10) : -1;
    if (json_is_string(uid) && !strcmp(json_string_value(uid), "all")) {
        snprintf(out, n, "all");
        return;
    }
    cap_name *s = v >= 0 ? name_slot(c, (uint64_t)v) : NULL;
    if (s && s->uid == (uint64_t)v && s->name[0]) snprintf(out, n, "%s", s->name);
    else snprintf(out, n, "uid %lld", (long long)v);
}

static const char *jstr(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : "";
}

static void summary_from_client(cap_ctx *c, json_t *m, const char *type)
{
    char to[64];
    if (!strcmp(type, "login")) {
        printf_(c, "login %s", jstr(m, "name"));
        json_t *room = json_object_get(m, "room_id");
        if (json_is_string(room)) printf_(c, " in room %s", json_string_value(room));
        else if (json_is_integer(room)) printf_(c, " in room %lld", (long long)json_integer_value(room));
    } else if (!strcmp(type, "say")) {
        json_t *t = json_object_get(m, "to_uid");
        if (t) who(c, t, to, sizeof to);
        else snprintf(to, sizeof to, "all");
        printf_(c, "say to %s: ", to);
        const char *s = jstr(m, "content");
        show_text(c, (const uint8_t *)s, strlen(s), 200);
    } else {
        puts_(c, type);
    }
}

static void summary_from_server(cap_ctx *c, json_t *m, const char *type)
{
    char from[64], to[64];
    if (!strcmp(type, "user_list")) {
        json_t *l = json_object_get(m, "user_list"), *u;
        size_t i;
        puts_(c, "users:");
        json_array_foreach(l, i, u) {
            remember(c, json_object_get(u, "uid"), json_object_get(u, "name"));
            printf_(c, "%s %s", i ? "," : "", jstr(u, "name"));
        }
    } else if (!strcmp(type, "login")) {
        remember(c, json_object_get(m, "uid"), json_object_get(m, "name"));
        printf_(c, "%s joined (uid %lld)", jstr(m, "name"),
                (long long)json_integer_value(json_object_get(m, "uid")));
    } else if (!strcmp(type, "say")) {
        who(c, json_object_get(m, "from_uid"), from, sizeof from);
        who(c, json_object_get(m, "to_uid"), to, sizeof to);
        printf_(c, "%s says to %s: ", from, to);
        const char *s = jstr(m, "content");
        show_text(c, (const uint8_t *)s, strlen(s), 200);
    } else if (!strcmp(type, "logout")) {
        who(c, json_object_get(m, "uid"), from, sizeof from);
        printf_(c, "%s left", from);
    } else if (!strcmp(type, "error")) {
        printf_(c, "error %s: %s", jstr(m, "code"), jstr(m, "message"));
    } else {
        puts_(c, type);
    }
}

static void chat_summary(cap_ctx *c, int dir, const uint8_t *p, size_t n)
{
    if (n == 0 || p[0] != '{') return;
    json_t *m = json_loadb((const char *)p, n, 0, NULL);
    json_t *t = json_object_get(m, "type");
    if (json_is_string(t)) {
        color(c, C_NOTE);
        puts_(c, "  # ");
        if (dir == 0) summary_from_client(c, m, json_string_value(t));
        else summary_from_server(c, m, json_string_value(t));
        color(c, C_RESET);
    }
    json_decref(m);
}

/* ---- events ---- */

static void line_start(cap_ctx *c, cap_flow *f, int dir)
{
    char ts[32];
    time_t t = (time_t)c->now_sec;
    struct tm tm;
    localtime_r(&t, &tm);
    size_t k = strftime(ts, sizeof ts, "%H:%M:%S", &tm);
    snprintf(ts + k, sizeof ts - k, ".%06u ", c->now_usec);
    color(c, C_DIM);
    puts_(c, ts);
    color(c, dir == 0 ? C_CLIENT : C_SERVER);
    cap_put(&c->out.w, f->addr[dir], f->addr_len[dir]);
    puts_(c, " > ");
    cap_put(&c->out.w, f->addr[!dir], f->addr_len[!dir]);
    color(c, C_RESET);
    puts_(c, "  ");
}

static void keyword(cap_ctx *c, const char *s)
{
    color(c, C_BOLD);
    puts_(c, s);
    color(c, C_RESET);
}

static void bad(cap_ctx *c, const char *fmt, const char *arg)
{
    color(c, C_BAD);
    printf_(c, fmt, arg);
    color(c, C_RESET);
}

static const char *op_name(uint8_t op)
{
    static const char *const n[16] = {"continuation", "text", "binary", "opcode 3", "opcode 4",
                                      "opcode 5", "opcode 6", "opcode 7", "close", "ping",
                                      "pong", "opcode 11", "opcode 12", "opcode 13",
                                      "opcode 14", "opcode 15"};
    return n[op & 15];
}

static void frame_body(cap_ctx *c, int dir, const cap_event *e)
{
    keyword(c, op_name(e->opcode));
    if (e->opcode == WS_OP_CLOSE) {
        if (e->code >= 0) printf_(c, " %d \"", e->code);
        else puts_(c, " (no code) \"");
        show_text(c, e->reason, e->reason_len, 200);
        puts_(c, "\"");
    } else if (ws_is_control(e->opcode) || !e->fin || e->partial || e->msg_opcode == 0) {
        printf_(c, "%s%s (%zu bytes) ", e->fin ? "" : ", not final", e->partial ? ", partial" : "",
                e->len);
        show_hex(c, e->data, e->len, 64);
    } else {
        if (e->opcode == WS_OP_CONT)
            printf_(c, ", final: %s", op_name(e->msg_opcode));
        if (e->compressed) printf_(c, " (deflate %zu > %zu bytes)", e->wire_len, e->len);
        puts_(c, " ");
        if (e->as_text) show_text(c, e->data, e->len, SHOW_MAX);
        else {
            printf_(c, "%zu bytes ", e->len);
            show_hex(c, e->data, e->len, 64);
        }
    }
    if (e->elided) printf_(c, " [%llu bytes over the limit not kept]", (unsigned long long)e->elided);
    if (e->error) bad(c, "  [%s]", e->error);
    if (e->as_text && e->fin && !e->error) chat_summary(c, dir, e->data, e->len);
}

static void handshake_body(cap_ctx *c, const cap_event *e)
{
    if (e->type == CAP_EV_HS_REQUEST) {
        keyword(c, "WebSocket upgrade ");
        show_text(c, (const uint8_t *)e->path, strlen(e->path), 200);
        printf_(c, "  key %s", e->key ? e->key : "(none)");
    } else {
        keyword(c, "HTTP ");
        printf_(c, "%d %s", e->status, e->why ? e->why : "");
        if (e->accept) {
            printf_(c, "  accept %s", e->accept);
            if (e->accept_ok == 0) bad(c, " %s", "(does NOT match the key)");
            else if (e->accept_ok == 1) puts_(c, " (matches the key)");
        }
    }
    if (e->extensions) printf_(c, "  extensions: %s", e->extensions);
}

void cap_text_event(cap_ctx *c, cap_flow *f, int dir, const cap_event *e)
{
    line_start(c, f, dir);
    switch (e->type) {
    case CAP_EV_TCP_OPEN: keyword(c, f->is_tls ? "TCP open (TLS)" : "TCP open"); break;
    case CAP_EV_TLS: keyword(c, e->why); break;
    case CAP_EV_TCP_CLOSE:
        keyword(c, !strcmp(e->why, "rst") ? "TCP reset" : "TCP close");
        break;
    case CAP_EV_HS_REQUEST:
    case CAP_EV_HS_RESPONSE: handshake_body(c, e); break;
    case CAP_EV_HTTP_REQUEST:
        printf_(c, "HTTP %s ", e->method);
        show_text(c, (const uint8_t *)e->path, strlen(e->path), 200);
        break;
    case CAP_EV_HTTP_RESPONSE: printf_(c, "HTTP %d %s", e->status, e->why ? e->why : ""); break;
    case CAP_EV_FRAME: frame_body(c, dir, e); break;
    case CAP_EV_GAP:
        color(c, C_BAD);
        printf_(c, "GAP: %llu bytes never captured", (unsigned long long)e->missing);
        color(c, C_RESET);
        break;
    case CAP_EV_TRUNCATED:
        bad(c, "%s", "TRUNCATED by the snaplen: this direction is not decoded further");
        break;
    case CAP_EV_ERROR: bad(c, "error: %s", e->error); break;
    case CAP_EV_EVICT: printf_(c, "flow evicted (%s)", e->why); break;
    }
    puts_(c, "\n");
    if (c->out.hex && e->type == CAP_EV_FRAME) {
        if (e->masked) printf_(c, "\tmask %02x%02x%02x%02x\n", e->mask[0], e->mask[1], e->mask[2], e->mask[3]);
        hexdump(c, e->data, e->len);
    }
}

/* ---- the end-of-capture summary ---- */

void cap_summary(cap_ctx *c, cap_wbuf *w)
{
    const cap_stats *s = &c->st;
    typedef unsigned long long ull;
    uint64_t other = 0;
    for (int i = 0; i < 16; i++)
        if (i > 2 && i < 8) other += s->frames[i];
    for (int i = 11; i < 16; i++) other += s->frames[i];
    wprintf_(w, "--- capture summary ---\n");
    wprintf_(w, "packets: %llu (%llu bytes); skipped: %llu not TCP, %llu IP fragments, "
             "%llu too short, %llu malformed\n", (ull)s->packets, (ull)s->bytes,
             (ull)s->not_tcp, (ull)s->fragments, (ull)s->short_pkts, (ull)s->bad_pkts);
    wprintf_(w, "connections: %llu opened, %llu flows, %llu WebSocket, %llu closed, "
             "%llu evicted\n", (ull)s->connections, (ull)s->flows, (ull)s->websockets,
             (ull)s->closed, (ull)s->evicted);
    wprintf_(w, "frames: text %llu, binary %llu, continuation %llu, close %llu, ping %llu, "
             "pong %llu, other %llu; messages %llu (%llu inflated)\n",
             (ull)s->frames[1], (ull)s->frames[2], (ull)s->frames[0], (ull)s->frames[8],
             (ull)s->frames[9], (ull)s->frames[10], (ull)other, (ull)s->messages,
             (ull)s->inflated);
    wprintf_(w, "bytes: client > server %llu, server > client %llu\n", (ull)s->payload[0],
             (ull)s->payload[1]);
    wprintf_(w, "gaps: %llu (%llu bytes missing); truncated: %llu; errors: %llu\n",
             (ull)s->gaps, (ull)s->gap_bytes, (ull)s->truncated, (ull)s->errors);
    if (c->opt.keylog)
        wprintf_(w, "tls: %llu sessions, %llu records decrypted, %llu did not decrypt\n",
                 (ull)s->tls_sessions, (ull)s->tls_records, (ull)s->tls_bad_records);
    wprintf_(w, "tcp: %llu retransmitted, %llu out of order, %llu overlaps with "
             "different data\n", (ull)s->retrans, (ull)s->ooo, (ull)s->conflicts);
    if (!c->opt.read_file) wprintf_(w, "dropped by the kernel: %llu\n", (ull)s->kernel_drops);
    wprintf_(w, "decoder memory: peak %llu KiB\n", (ull)(c->mem.peak / 1024));
}
