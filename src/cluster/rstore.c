/* rstore.c -- the chat's store in cluster mode: history read from each
 * room's Redis Stream (its says are appended by the say script, never
 * here), identities in keys of the first shard, retention by age.
 *
 * Key layout (docs/cluster.md): a room's keys carry the hex of its id in a
 * hash tag, tg:{r<hex>}:s (stream, entry ids "<id>-0"), :id (its last id);
 * the shard's tg:hist lists the rooms with a stream. Identities:
 * tg:ident:<hex of key> -> id, tg:identk:<id> -> hex of key, tg:identn. */
#include "cluster_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE 100                /* stream entries read at once */

static shard *room_shard(cluster *cl, const char *room, size_t len)
{
    return &cl->shards[cluster_shard_of(cl, room, len)];
}

static int reply_u64(redisReply *r, uint64_t *out)
{
    if (!r) return -1;
    int rc = 0;
    if (r->type == REDIS_REPLY_NIL) *out = 0;
    else if (r->type == REDIS_REPLY_INTEGER) *out = (uint64_t)r->integer;
    else if (r->type == REDIS_REPLY_STRING) *out = strtoull(r->str, NULL, 10);
    else if (r->type == REDIS_REPLY_STATUS) *out = 0;      /* OK */
    else rc = -1;
    freeReplyObject(r);
    return rc;
}

static int rs_last_id(void *impl, const char *room, size_t len, uint64_t *out)
{
    char key[CLUSTER_KEY_MAX];
    cluster_room_key(key, room, len, "id");
    return reply_u64(shard_command(room_shard(impl, room, len), "GET %s", key), out);
}

static int rs_append(void *impl, const char *room, size_t len, const store_msg *m)
{
    return -1;                  /* says are stored by the say script */
}

/* A stream entry as a store_msg (fields in the order the say script
 * writes them). Returns -1 for an entry of another shape. */
static int entry_msg(const redisReply *e, store_msg *m)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2) return -1;
    const redisReply *id = e->element[0], *f = e->element[1];
    if (id->type != REDIS_REPLY_STRING || f->type != REDIS_REPLY_ARRAY || f->elements != 16) return -1;
    for (size_t i = 0; i < 16; i++)
        if (f->element[i]->type != REDIS_REPLY_STRING) return -1;
    memset(m, 0, sizeof *m);
    m->id = strtoull(id->str, NULL, 10);
    m->ts = strtoll(f->element[1]->str, NULL, 10);
    m->from_uid = (uint32_t)strtoul(f->element[3]->str, NULL, 10);
    m->to_uid = (uint32_t)strtoul(f->element[5]->str, NULL, 10);
    m->from_ident = strtoull(f->element[7]->str, NULL, 10);
    m->to_ident = strtoull(f->element[9]->str, NULL, 10);
    m->from_name = f->element[11]->str;
    m->from_name_len = f->element[11]->len;
    if (m->to_uid) {
        m->to_name = f->element[13]->str;
        m->to_name_len = f->element[13]->len;
    }
    m->content = f->element[15]->str;
    m->content_len = f->element[15]->len;
    return 0;
}

/* What a viewer may see: public says, and the private ones of its identity. */
static bool visible(const store_msg *m, uint64_t viewer)
{
    return !m->to_uid || (viewer && (m->from_ident == viewer || m->to_ident == viewer));
}

/* One page of entries, forward from after+1 (or backward from before-1,
 * down to after+1). NULL when unavailable. */
static redisReply *page(cluster *cl, const char *room, size_t len, uint64_t after, uint64_t before)
{
    char key[CLUSTER_KEY_MAX], lo[32], hi[32];
    cluster_room_key(key, room, len, "s");
    snprintf(lo, sizeof lo, "%llu-0", (unsigned long long)after + 1);
    shard *s = room_shard(cl, room, len);
    redisReply *r;
    if (before) {
        snprintf(hi, sizeof hi, "%llu-0", (unsigned long long)before - 1);
        r = shard_command(s, "XREVRANGE %s %s %s COUNT %d", key, hi, lo, PAGE);
    } else {
        r = shard_command(s, "XRANGE %s %s + COUNT %d", key, lo, PAGE);
    }
    if (r && r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        r = NULL;
    }
    return r;
}

static int rs_window(void *impl, const char *room, size_t len, uint64_t after, unsigned limit,
                     uint64_t viewer, uint64_t *start)
{
    uint64_t before = UINT64_MAX;
    unsigned seen = 0;
    *start = after;
    for (;;) {
        redisReply *r = page(impl, room, len, after, before);
        if (!r) return -1;
        size_t n = r->elements;
        for (size_t i = 0; i < n; i++) {
            store_msg m;
            if (entry_msg(r->element[i], &m) < 0) continue;
            before = m.id;
            if (visible(&m, viewer) && ++seen == limit) {
                *start = m.id - 1;
                freeReplyObject(r);
                return 0;
            }
        }
        freeReplyObject(r);
        if (n < PAGE || before <= after + 1) return 0;
    }
}

/* Walks the says after `after` (up to `to`, 0: all), visible to viewer
 * (all of them with every_one). */
static int walk(cluster *cl, const char *room, size_t len, uint64_t after, uint64_t to,
                uint64_t viewer, bool every_one, store_each_fn each, void *arg)
{
    for (;;) {
        redisReply *r = page(cl, room, len, after, 0);
        if (!r) return -1;
        size_t n = r->elements;
        for (size_t i = 0; i < n; i++) {
            store_msg m;
            if (entry_msg(r->element[i], &m) < 0) continue;
            after = m.id;
            if (to && m.id >= to) n = 0;
            else if ((every_one || visible(&m, viewer)) && each(arg, &m)) n = 0;
            if (!n) break;
        }
        size_t got = r->elements;
        freeReplyObject(r);
        if (!n || got < PAGE) return 0;
    }
}

static int rs_range(void *impl, const char *room, size_t len, uint64_t after, uint64_t viewer,
                    store_each_fn each, void *arg)
{
    return walk(impl, room, len, after, 0, viewer, false, each, arg);
}

typedef struct catch_up {
    cluster *cl;
    const char *room;
    size_t len;
} catch_up;

static int deliver_late(void *arg, const store_msg *m)
{
    catch_up *cu = arg;
    chat_bus_say(cu->cl->chat, cu->room, cu->len, m);
    return 0;
}

int cluster_catch_up(cluster *cl, const char *room, size_t len, uint64_t from, uint64_t to)
{
    catch_up cu = { cl, room, len };
    return walk(cl, room, len, from, to, 0, true, deliver_late, &cu);
}

/* Age retention: every room with a stream, on every reachable shard. */
static int rs_trim(void *impl, int64_t now)
{
    cluster *cl = impl;
    if (!cl->limits.max_age) return 0;
    char cut[24];
    snprintf(cut, sizeof cut, "%lld", (long long)(now - cl->limits.max_age));
    int rc = 0;
    for (int i = 0; i < cl->n; i++) {
        shard *s = &cl->shards[i];
        redisReply *rooms = shard_command(s, "SMEMBERS tg:hist");
        if (!rooms || rooms->type != REDIS_REPLY_ARRAY) {
            if (rooms) freeReplyObject(rooms);
            rc = -1;
            continue;
        }
        for (size_t k = 0; k < rooms->elements; k++) {
            char key[CLUSTER_KEY_MAX];
            snprintf(key, sizeof key, "tg:{r%s}:s", rooms->element[k]->str);
            const char *argv[2] = { key, cut };
            redisReply *r = shard_script(s, SCRIPT_TRIM_AGE, 1, 2, argv, NULL);
            if (!r || r->type == REDIS_REPLY_ERROR) rc = -1;
            if (r) freeReplyObject(r);
        }
        freeReplyObject(rooms);
    }
    return rc;
}

static int rs_commit(void *impl)
{
    return 0;                   /* each say is durable once its script returns */
}

static void rs_close(void *impl)
{
}

static void key_hex(char *out, const uint8_t key[STORE_KEY_LEN])
{
    for (int i = 0; i < STORE_KEY_LEN; i++) sprintf(out + 2 * i, "%02x", key[i]);
}

/* An identity lives as long as the history it unlocks: its keys expire
 * max_age after their last use (never without an age limit). */
static void ident_keep(cluster *cl, const char *hex, uint64_t id)
{
    if (!cl->limits.max_age) return;
    shard *s = &cl->shards[0];
    redisReply *r = shard_command(s, "EXPIRE tg:ident:%s %lld", hex, (long long)cl->limits.max_age);
    if (r) freeReplyObject(r);
    r = shard_command(s, "EXPIRE tg:identk:%llu %lld", (unsigned long long)id, (long long)cl->limits.max_age);
    if (r) freeReplyObject(r);
}

/* An identity's key in Redis, its hash in hex, and its lifetime as text:
 * what the identity scripts take. */
typedef struct ident_args {
    char hex[2 * STORE_KEY_LEN + 1];
    char key[2 * STORE_KEY_LEN + 16];
    char ttl[24];
} ident_args;

static void ident_args_make(ident_args *a, const cluster *cl, const uint8_t key[STORE_KEY_LEN])
{
    key_hex(a->hex, key);
    snprintf(a->key, sizeof a->key, "tg:ident:%s", a->hex);
    snprintf(a->ttl, sizeof a->ttl, "%lld", (long long)cl->limits.max_age);
}

static int rs_identity_find(void *impl, const uint8_t key[STORE_KEY_LEN], int64_t now, uint64_t *id)
{
    cluster *cl = impl;
    ident_args a;
    ident_args_make(&a, cl, key);
    const char *argv[] = { a.key, a.ttl };
    redisReply *r = shard_script(&cl->shards[0], SCRIPT_IDENT_FIND, 1, 2, argv, NULL);
    if (!r || r->type != REDIS_REPLY_INTEGER) {
        if (r) freeReplyObject(r);
        return -1;
    }
    *id = (uint64_t)r->integer;
    freeReplyObject(r);
    return *id ? 1 : 0;
}

static int rs_identity_add(void *impl, const uint8_t key[STORE_KEY_LEN], int64_t now, uint64_t *id)
{
    cluster *cl = impl;
    ident_args a;
    ident_args_make(&a, cl, key);
    const char *argv[] = { a.key, "tg:identn", a.hex, a.ttl };
    redisReply *r = shard_script(&cl->shards[0], SCRIPT_IDENT_ADD, 2, 4, argv, NULL);
    int rc = r && r->type == REDIS_REPLY_INTEGER && r->integer > 0 ? 0 : -1;
    if (rc == 0) *id = (uint64_t)r->integer;
    if (r) freeReplyObject(r);
    return rc;
}

static int rs_identity_touch(void *impl, uint64_t id, int64_t now)
{
    cluster *cl = impl;
    redisReply *r = shard_command(&cl->shards[0], "GET tg:identk:%llu", (unsigned long long)id);
    if (!r) return -1;
    if (r->type == REDIS_REPLY_STRING && r->len == 2 * STORE_KEY_LEN) ident_keep(cl, r->str, id);
    freeReplyObject(r);
    return 0;
}

const store_ops cluster_store_ops = {
    rs_last_id, rs_append, rs_window, rs_range, rs_trim, rs_commit, rs_close,
    rs_identity_find, rs_identity_add, rs_identity_touch,
    NULL,                       /* remove: not in cluster mode yet (/admin's delete answers so) */
};
