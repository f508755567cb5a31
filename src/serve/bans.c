/* bans.c -- the operator's address and name bans: the table, its checks,
 * and its file. Expired bans are dropped as the table is read or changed. */
#include "bans.h"
#include "log.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "sys.h"

int ban_parse_address(const char *s, cidr *out)
{
    if (cidr_parse(out, s) < 0) return -1;
    /* one IPv6 host is counted by its /64: banning less would let it
     * come back from the next address of its own network */
    if (!strchr(s, '/') && out->net.len == 16 && out->prefix > 64) {
        out->prefix = 64;
        memset(out->net.bytes + 8, 0, 8);
    }
    return 0;
}

static void copy_text(char *dst, const char *src)
{
    size_t n = src ? strlen(src) : 0;
    if (n > BAN_TEXT_MAX) n = BAN_TEXT_MAX;
    if (n) memcpy(dst, src, n);
    dst[n] = '\0';
}

/* Under the lock. */
static void drop_expired(ban_table *t, uint64_t now_ms)
{
    size_t k = 0;
    for (size_t i = 0; i < t->len; i++)
        if (t->v[i].until_ms > now_ms) t->v[k++] = t->v[i];
    t->len = k;
}

static uint32_t add_locked(ban_table *t, uint8_t kind, const cidr *net, const char *text,
                           const char *reason, uint64_t until_ms, uint32_t id)
{
    if (t->len == BANS_MAX) return 0;
    ban *b = &t->v[t->len++];
    memset(b, 0, sizeof *b);
    b->id = id ? id : t->next_id++;
    if (b->id >= t->next_id) t->next_id = b->id + 1;
    b->kind = kind;
    if (net) b->net = *net;
    copy_text(b->text, text);
    copy_text(b->reason, reason);
    b->until_ms = until_ms;
    return b->id;
}

uint32_t bans_add(ban_table *t, uint8_t kind, const cidr *net, const char *text, const char *reason,
                  uint64_t until_ms)
{
    uv_mutex_lock(&t->lock);
    drop_expired(t, wall_ms());
    uint32_t id = add_locked(t, kind, net, text, reason, until_ms, 0);
    uv_mutex_unlock(&t->lock);
    return id;
}

bool bans_remove(ban_table *t, uint32_t id)
{
    bool found = false;
    uv_mutex_lock(&t->lock);
    for (size_t i = 0; i < t->len && !found; i++) {
        if (t->v[i].id != id) continue;
        t->v[i] = t->v[--t->len];
        found = true;
    }
    uv_mutex_unlock(&t->lock);
    return found;
}

bool bans_address(ban_table *t, const net_addr *a, uint64_t now_ms)
{
    bool hit = false;
    uv_mutex_lock(&t->lock);
    for (size_t i = 0; i < t->len && !hit; i++)
        hit = t->v[i].kind == BAN_ADDRESS && t->v[i].until_ms > now_ms && cidr_match(&t->v[i].net, a);
    uv_mutex_unlock(&t->lock);
    return hit;
}

bool bans_name(ban_table *t, const char *name, size_t n, uint64_t now_ms)
{
    bool hit = false;
    uv_mutex_lock(&t->lock);
    for (size_t i = 0; i < t->len && !hit; i++) {
        const ban *b = &t->v[i];
        hit = b->kind == BAN_NAME && b->until_ms > now_ms && strlen(b->text) == n &&
              strncasecmp(b->text, name, n) == 0;
    }
    uv_mutex_unlock(&t->lock);
    return hit;
}

static void write_ban(sbuf *o, const ban *b)
{
    sbuf_printf(o, "{\"id\":%u,\"kind\":\"%s\",\"%s\":", b->id, b->kind == BAN_NAME ? "name" : "address",
                b->kind == BAN_NAME ? "name" : "address");
    sbuf_json_str(o, b->text, strlen(b->text));
    sbuf_puts(o, ",\"reason\":");
    sbuf_json_str(o, b->reason, strlen(b->reason));
    sbuf_puts(o, ",\"until\":");
    sbuf_u64(o, b->until_ms);
    sbuf_putc(o, '}');
}

void bans_list(ban_table *t, sbuf *o, uint64_t now_ms)
{
    uv_mutex_lock(&t->lock);
    drop_expired(t, now_ms);
    sbuf_putc(o, '[');
    for (size_t i = 0; i < t->len; i++) {
        if (i) sbuf_putc(o, ',');
        write_ban(o, &t->v[i]);
    }
    sbuf_putc(o, ']');
    uv_mutex_unlock(&t->lock);
}

int bans_save(ban_table *t)
{
    if (!t->path) return 0;
    sbuf o;
    sbuf_init(&o);
    bans_list(t, &o, wall_ms());
    sbuf_putc(&o, '\n');
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", t->path);
    FILE *f = o.oom ? NULL : fopen(tmp, "wb");
    bool ok = f && fwrite(o.p, 1, o.len, f) == o.len;
    if (f && fclose(f) != 0) ok = false;
    if (ok && rename(tmp, t->path) < 0) ok = false;
    if (!ok) {
        log_event(LOG_ERROR, "bans_save_failed", "file=%s error=%s", t->path, strerror(errno));
        if (f) unlink(tmp);
    }
    sbuf_free(&o);
    return ok ? 0 : -1;
}

/* One ban of the file; false when it is not one. */
static bool load_one(ban_table *t, json_t *j, uint64_t now_ms)
{
    json_t *id = json_object_get(j, "id"), *until = json_object_get(j, "until");
    const char *kind = json_string_value(json_object_get(j, "kind"));
    const char *reason = json_string_value(json_object_get(j, "reason"));
    if (!json_is_integer(id) || json_integer_value(id) <= 0 || json_integer_value(id) > UINT32_MAX ||
        !json_is_integer(until) || json_integer_value(until) < 0 || !kind)
        return false;
    bool name = strcmp(kind, "name") == 0;
    const char *text = json_string_value(json_object_get(j, name ? "name" : "address"));
    cidr net;
    memset(&net, 0, sizeof net);
    if (!text || (!name && (strcmp(kind, "address") != 0 || ban_parse_address(text, &net) < 0)))
        return false;
    if ((uint64_t)json_integer_value(until) <= now_ms) return true;     /* expired meanwhile */
    add_locked(t, name ? BAN_NAME : BAN_ADDRESS, &net, text, reason, (uint64_t)json_integer_value(until),
               (uint32_t)json_integer_value(id));
    return true;
}

static int load_file(ban_table *t)
{
    json_error_t err;
    json_t *all = json_load_file(t->path, 0, &err);
    if (!all && access(t->path, F_OK) < 0 && errno == ENOENT) return 0;
    if (!json_is_array(all)) {
        fprintf(stderr, "tagarela: %s: not a list of bans (%s); move it away to start without them\n",
                t->path, all ? "not an array" : err.text);
        json_decref(all);
        return -1;
    }
    uint64_t now = wall_ms();
    size_t i;
    json_t *j;
    json_array_foreach(all, i, j) {
        if (load_one(t, j, now)) continue;
        fprintf(stderr, "tagarela: %s: ban %zu is not one; move the file away to start without it\n", t->path, i);
        json_decref(all);
        return -1;
    }
    json_decref(all);
    return 0;
}

int bans_init(ban_table *t, const char *dir)
{
    memset(t, 0, sizeof *t);
    t->next_id = 1;
    t->v = malloc(BANS_MAX * sizeof *t->v);
    if (!t->v || uv_mutex_init(&t->lock) < 0) {
        free(t->v);
        t->v = NULL;
        fprintf(stderr, "tagarela: out of memory\n");
        return -1;
    }
    if (!dir) return 0;
    size_t n = strlen(dir) + sizeof "/bans.json";
    t->path = malloc(n);
    if (!t->path) {
        bans_free(t);
        return -1;
    }
    snprintf(t->path, n, "%s/bans.json", dir);
    return load_file(t);
}

void bans_free(ban_table *t)
{
    if (!t->v) return;
    uv_mutex_destroy(&t->lock);
    free(t->v);
    free(t->path);
    t->v = NULL;
    t->path = NULL;
}
