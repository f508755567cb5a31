/* cluster.c -- the node: its bus (what the chat announces, what the
 * subscription brings back), catching up with a shard after (re)subscribing,
 * the heartbeat, and the reaping of nodes that died.
 *
 * Global keys live on the first shard: tg:uid:<uid> (the node that gave
 * it), tg:nodes, tg:hb:<node> (the heartbeat, with a TTL),
 * tg:node:<node>:users (uid -> room hex), tg:reap:<node> (the reaper's
 * lock). A room's presence lives on its shard: tg:{r<hex>}:m (members,
 * scored by join order), :u (uid -> name, identity, node), tg:rooms. */
#include "cluster_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "sys.h"

/* ---- keys ------------------------------------------------------------- */

int cluster_shard_of(const cluster *cl, const char *room, size_t len)
{
    uint32_t h = 2166136261u;               /* FNV-1a */
    for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)room[i]) * 16777619u;
    return (int)(h % (uint32_t)cl->n);
}

void cluster_room_hex(char *buf, const char *room, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len && i < 64; i++) {
        buf[2 * i] = digits[(uint8_t)room[i] >> 4];
        buf[2 * i + 1] = digits[(uint8_t)room[i] & 15];
    }
    buf[2 * (len < 64 ? len : 64)] = '\0';
}

void cluster_room_key(char *buf, const char *room, size_t len, const char *suffix)
{
    char hex[129];
    cluster_room_hex(hex, room, len);
    snprintf(buf, CLUSTER_KEY_MAX, "tg:{r%s}:%s", hex, suffix);
}

static int unhex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int cluster_unhex(const char *hex, size_t n, char *out, size_t cap)
{
    if (n % 2 || n / 2 > cap || n == 0) return -1;
    for (size_t i = 0; i < n / 2; i++) {
        int a = unhex_digit(hex[2 * i]), b = unhex_digit(hex[2 * i + 1]);
        if (a < 0 || b < 0) return -1;
        out[i] = (char)(a << 4 | b);
    }
    return (int)(n / 2);
}

/* ---- health ------------------------------------------------------------ */

static bool shard_ready(const shard *s)
{
    return s->cmd && s->sub_ready && s->says_up && !s->says_stalled;
}

void cluster_update_health(cluster *cl)
{
    int ok = 1;
    for (int i = 0; i < cl->n; i++) ok &= shard_ready(&cl->shards[i]);
    __atomic_store_n(&cl->healthy, ok, __ATOMIC_RELAXED);
}

bool cluster_healthy(const cluster *cl, char *why, size_t whylen)
{
    if (__atomic_load_n(&cl->healthy, __ATOMIC_RELAXED)) return true;
    snprintf(why, whylen, "degraded: Redis is unreachable or not caught up (%d shard%s); "
             "says are refused with unavailable until it is back", cl->n, cl->n > 1 ? "s" : "");
    return false;
}

int cluster_shards(const cluster *cl)
{
    return cl->n;
}

uint64_t cluster_reconnects(const cluster *cl)
{
    return __atomic_load_n(&cl->reconnects, __ATOMIC_RELAXED);
}

/* ---- small helpers ------------------------------------------------------ */

static void drop(redisReply *r)
{
    if (r) freeReplyObject(r);
}

/* A command whose reply only says whether it ran. */
static int run(shard *s, const char *fmt, ...)
{
    redisContext *c = shard_cmd(s);
    if (!c) return -1;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (!r) {
        shard_cmd_down(s);
        return -1;
    }
    int rc = r->type == REDIS_REPLY_ERROR ? -1 : 0;
    freeReplyObject(r);
    return rc;
}

static shard *room_shard(cluster *cl, const char *room, size_t len)
{
    return &cl->shards[cluster_shard_of(cl, room, len)];
}

/* The logout script for a user of room (any node's). 0, or -1. */
static int publish_logout(cluster *cl, const char *room, size_t len, uint32_t uid)
{
    char members[CLUSTER_KEY_MAX], info[CLUSTER_KEY_MAX], hex[129], u[12];
    cluster_room_key(members, room, len, "m");
    cluster_room_key(info, room, len, "u");
    cluster_room_hex(hex, room, len);
    snprintf(u, sizeof u, "%u", uid);
    const char *argv[] = { members, info, "tg:rooms", cl->channel, room, hex, u };
    size_t lens[] = { strlen(members), strlen(info), 8, strlen(cl->channel), len, strlen(hex), strlen(u) };
    redisReply *r = shard_script(room_shard(cl, room, len), SCRIPT_LOGOUT, 3, 7, argv, lens);
    int rc = r && r->type == REDIS_REPLY_INTEGER ? 0 : -1;
    drop(r);
    return rc;
}

/* The login script: the user joins the room's members and the bus hears
 * of it (nothing when it is a member already). 0, or -1. */
static int publish_login(cluster *cl, const char *room, size_t len, uint32_t uid,
                         const char *name, size_t name_len, uint64_t ident)
{
    char members[CLUSTER_KEY_MAX], info[CLUSTER_KEY_MAX], hex[129], u[12], id[24];
    cluster_room_key(members, room, len, "m");
    cluster_room_key(info, room, len, "u");
    cluster_room_hex(hex, room, len);
    snprintf(u, sizeof u, "%u", uid);
    snprintf(id, sizeof id, "%llu", (unsigned long long)ident);
    const char *argv[] = { members, info, "tg:rooms", "tg:seq", cl->channel, room, hex, u, name,
                           id, cl->node };
    size_t lens[] = { strlen(members), strlen(info), 8, 6, strlen(cl->channel), len, strlen(hex),
                      strlen(u), name_len, strlen(id), strlen(cl->node) };
    redisReply *r = shard_script(room_shard(cl, room, len), SCRIPT_LOGIN, 4, 11, argv, lens);
    int rc = r && r->type == REDIS_REPLY_INTEGER ? 0 : -1;
    drop(r);
    return rc;
}

/* ---- the bus: what the chat announces ------------------------------------ */

static int bus_login(void *ctx, const char *room, size_t len, uint32_t uid, const char *name,
                     size_t name_len, uint64_t ident)
{
    cluster *cl = ctx;
    shard *g = &cl->shards[0];
    if (cl->leaving || !shard_ready(g) || !shard_ready(room_shard(cl, room, len))) return -1;
    char uid_key[32], users[64], u[12], hex[129];
    snprintf(uid_key, sizeof uid_key, "tg:uid:%u", uid);
    snprintf(users, sizeof users, "tg:node:%s:users", cl->node);
    snprintf(u, sizeof u, "%u", uid);
    cluster_room_hex(hex, room, len);
    const char *argv[] = { uid_key, users, cl->node, u, hex };
    redisReply *r = shard_script(g, SCRIPT_CLAIM_UID, 2, 5, argv, NULL);
    if (!r || r->type != REDIS_REPLY_INTEGER) {
        drop(r);
        return -1;
    }
    bool taken = r->integer == 0;
    freeReplyObject(r);
    if (taken) return 1;
    if (publish_login(cl, room, len, uid, name, name_len, ident) < 0) {
        run(g, "DEL tg:uid:%u", uid);
        run(g, "HDEL tg:node:%s:users %u", cl->node, uid);
        return -1;
    }
    /* the user list about to be made holds every login published before */
    shard_drain_sub(room_shard(cl, room, len));
    return 0;
}

/* A logout Redis cannot hear now is made when the node catches up. */
static void bus_logout(void *ctx, const char *room, size_t len, uint32_t uid)
{
    cluster *cl = ctx;
    if (cl->leaving) return;
    shard *g = &cl->shards[0];
    if (!shard_cmd(room_shard(cl, room, len)) || publish_logout(cl, room, len, uid) < 0) return;
    if (run(g, "DEL tg:uid:%u", uid) == 0) run(g, "HDEL tg:node:%s:users %u", cl->node, uid);
}

static void refuse(shard *s, pending_say *p)
{
    if (p->told || s->cl->closed || !s->cl->chat) return;
    p->told = true;
    chat_say_refused(s->cl->chat, p->uid);
}

/* The say script's answer (answers come in the order of the says): an
 * id, or the say is refused — its sender hears unavailable, unless it has
 * already (past its deadline, the script refuses it too). A connection
 * lost before the answer refuses every say on it. */
static void on_say_reply(redisAsyncContext *ac, void *reply, void *arg)
{
    shard *s = ac->data;
    redisReply *r = reply;
    pending_say *p = &s->pending[s->pending_head];
    s->pending_head = (s->pending_head + 1) % MAX_PENDING_SAYS;
    s->says_pending--;
    if (r && r->type == REDIS_REPLY_INTEGER) return;
    if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0)
        shard_cmd_down(s);              /* the scripts are loaded again on reconnect */
    refuse(s, p);
}

/* Says unanswered past SAY_REFUSE_MS: their senders hear unavailable now,
 * and the shard is degraded while Redis does not answer. */
static void check_pending_says(shard *s)
{
    uint64_t now = wall_ms();
    bool stalled = false;
    for (unsigned i = 0; i < s->says_pending; i++) {
        pending_say *p = &s->pending[(s->pending_head + i) % MAX_PENDING_SAYS];
        if (now - p->sent < SAY_REFUSE_MS) break;
        refuse(s, p);
        stalled = true;
    }
    s->says_stalled = stalled;
    /* a connection that answers nothing while Redis answers the other one
     * died unseen: made again */
    if (stalled && s->cmd && now - s->pending[s->pending_head].sent >= SAY_REFUSE_MS + ASYNC_TIMEOUT_MS) {
        shard_drop_says(s);
        s->says_stalled = false;
    }
}

/* Every TICK_MS: a ping to ourselves through the shard's bus; a
 * subscription silent too long is made again. */
static void check_subscription(shard *s)
{
    cluster *cl = s->cl;
    uint64_t now = wall_ms();
    if (!s->sub_ready) return;
    if (now - s->sub_heard >= SUB_SILENT_MS && s->cmd) {
        shard_drop_sub(s);
        return;
    }
    if (now - s->last_ping < TICK_MS) return;
    s->last_ping = now;
    run(s, "PUBLISH %s P%d:%s", cl->channel, (int)strlen(cl->node), cl->node);
}

/* The say script, sent on the shard's async connection: the hub goes on
 * while Redis works; the say comes back through the subscription. */
static int bus_say(void *ctx, const char *room, size_t len, const store_msg *m)
{
    cluster *cl = ctx;
    shard *s = room_shard(cl, room, len);
    if (!shard_ready(s) || s->says_pending >= MAX_PENDING_SAYS) return -1;
    uint64_t now = wall_ms();
    char stream[CLUSTER_KEY_MAX], counter[CLUSTER_KEY_MAX], hex[129];
    char ts[24], from[12], to[12], fi[24], ti[24], maxlen[16], deadline[24];
    cluster_room_key(stream, room, len, "s");
    cluster_room_key(counter, room, len, "id");
    cluster_room_hex(hex, room, len);
    snprintf(ts, sizeof ts, "%lld", (long long)m->ts);
    snprintf(from, sizeof from, "%u", m->from_uid);
    snprintf(to, sizeof to, "%u", m->to_uid);
    snprintf(fi, sizeof fi, "%llu", (unsigned long long)m->from_ident);
    snprintf(ti, sizeof ti, "%llu", (unsigned long long)m->to_ident);
    snprintf(maxlen, sizeof maxlen, "%u", cl->limits.max_per_room);
    snprintf(deadline, sizeof deadline, "%llu", (unsigned long long)(now + SAY_DEADLINE_MS));
    const char *argv[] = { "EVALSHA", s->sha[SCRIPT_SAY], "3", stream, counter, "tg:hist",
                           cl->channel, room, hex, ts, from, to, fi, ti,
                           m->from_name ? m->from_name : "", m->to_name ? m->to_name : "",
                           m->content, maxlen, deadline };
    size_t lens[] = { 7, 40, 1, strlen(stream), strlen(counter), 7, strlen(cl->channel), len,
                      strlen(hex), strlen(ts), strlen(from), strlen(to), strlen(fi), strlen(ti),
                      m->from_name ? m->from_name_len : 0, m->to_name ? m->to_name_len : 0,
                      m->content_len, strlen(maxlen), strlen(deadline) };
    if (redisAsyncCommandArgv(s->says, on_say_reply, NULL, 19, argv, lens) != REDIS_OK) return -1;
    s->pending[(s->pending_head + s->says_pending++) % MAX_PENDING_SAYS] =
        (pending_say){ now, m->from_uid, false };
    return 0;
}

/* ---- the bus: what the subscription brings ------------------------------ */

/* The next <length>:<bytes> field; -1 when there is none. */
static int field(const char **p, const char *end, const char **s, size_t *n)
{
    size_t len = 0;
    const char *q = *p;
    while (q < end && *q >= '0' && *q <= '9' && len < (1u << 30)) len = len * 10 + (size_t)(*q++ - '0');
    if (q == *p || q >= end || *q != ':' || (size_t)(end - q - 1) < len) return -1;
    *s = q + 1;
    *n = len;
    *p = q + 1 + len;
    return 0;
}

static uint64_t num(const char *s, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n && s[i] >= '0' && s[i] <= '9'; i++) v = v * 10 + (uint64_t)(s[i] - '0');
    return v;
}

#define MAX_FIELDS 10

/* A say in its room's order: what this node missed before it (a gap in
 * the ids: a subscription that broke) comes from the stream first. */
static void apply_say(cluster *cl, const char **f, const size_t *n)
{
    store_msg m = { .id = num(f[1], n[1]), .ts = (int64_t)num(f[2], n[2]),
                    .from_uid = (uint32_t)num(f[3], n[3]), .to_uid = (uint32_t)num(f[4], n[4]),
                    .from_ident = num(f[5], n[5]), .to_ident = num(f[6], n[6]),
                    .from_name = f[7], .from_name_len = n[7], .to_name = f[8], .to_name_len = n[8],
                    .content = f[9], .content_len = n[9] };
    uint64_t last;
    if (chat_room_last_id(cl->chat, f[0], n[0], &last) < 0) return;    /* no one here */
    if (m.id > last + 1) cluster_catch_up(cl, f[0], n[0], last, m.id);
    chat_bus_say(cl->chat, f[0], n[0], &m);
}

void cluster_on_message(shard *s, const char *msg, size_t len)
{
    cluster *cl = s->cl;
    s->sub_heard = wall_ms();
    if (!s->sub_ready || len < 1) return;   /* before catching up: the catch-up has it */
    const char *p = msg + 1, *end = msg + len, *f[MAX_FIELDS];
    size_t n[MAX_FIELDS];
    int k = 0;
    while (k < MAX_FIELDS && field(&p, end, &f[k], &n[k]) == 0) k++;
    if (msg[0] == 'S' && k == 10) {
        apply_say(cl, f, n);
    } else if (msg[0] == 'L' && k == 5) {
        if (n[4] == strlen(cl->node) && memcmp(f[4], cl->node, n[4]) == 0) return;     /* ours */
        chat_bus_login(cl->chat, f[0], n[0], (uint32_t)num(f[1], n[1]), f[2], n[2],
                       num(f[3], n[3]), wall_ms());
    } else if (msg[0] == 'P') {
        /* a node's ping of its own subscription */
    } else if (msg[0] == 'O' && k == 2) {
        chat_bus_logout(cl->chat, (uint32_t)num(f[1], n[1]), wall_ms());
    }
}

/* ---- catching up with a shard ------------------------------------------ */

/* The chat's users, copied (the chat changes while they are worked on). */
typedef struct known_user {
    char room[64];
    size_t room_len;
    uint32_t uid;
    char *name;
    size_t name_len;
    uint64_t ident;
    bool remote;
} known_user;

typedef struct user_list {
    known_user *v;
    size_t len, cap;
    bool oom;
} user_list;

static void collect_user(void *arg, const chat_user_info *u)
{
    user_list *l = arg;
    if (l->oom) return;
    if (l->len == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        known_user *v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            l->oom = true;
            return;
        }
        l->v = v;
        l->cap = cap;
    }
    known_user *k = &l->v[l->len];
    k->name = malloc(u->name_len + 1);
    if (!k->name) {
        l->oom = true;
        return;
    }
    memcpy(k->name, u->name, u->name_len);
    k->name_len = u->name_len;
    k->room_len = u->room_len < sizeof k->room ? u->room_len : sizeof k->room;
    memcpy(k->room, u->room, k->room_len);
    k->uid = u->uid;
    k->ident = u->ident;
    k->remote = u->remote;
    l->len++;
}

static void free_users(user_list *l)
{
    for (size_t i = 0; i < l->len; i++) free(l->v[i].name);
    free(l->v);
}

static known_user *find_user(user_list *l, uint32_t uid)
{
    for (size_t i = 0; i < l->len; i++)
        if (l->v[i].uid == uid) return &l->v[i];
    return NULL;
}

/* A snapshot's members, by uid. */
typedef struct member {
    uint32_t uid;
    bool ours;
} member;

static int cmp_member(const void *a, const void *b)
{
    uint32_t x = ((const member *)a)->uid, y = ((const member *)b)->uid;
    return x < y ? -1 : x > y;
}

static bool in_snapshot(const member *v, size_t n, uint32_t uid)
{
    member key = { uid, false };
    return n && bsearch(&key, v, n, sizeof *v, cmp_member) != NULL;
}

/* The first shard: this node is registered, its users' uids are its own
 * again, and users it had that are gone (their logouts unheard while Redis
 * was away) leave now. */
static void reclaim_node(cluster *cl, user_list *users)
{
    shard *g = &cl->shards[0];
    run(g, "SADD tg:nodes %s", cl->node);
    run(g, "SET tg:hb:%s 1 PX %d", cl->node, HEARTBEAT_TTL_MS);
    for (size_t i = 0; i < users->len; i++) {
        known_user *u = &users->v[i];
        if (u->remote) continue;
        char hex[129];
        cluster_room_hex(hex, u->room, u->room_len);
        run(g, "SET tg:uid:%u %s", u->uid, cl->node);
        run(g, "HSET tg:node:%s:users %u %s", cl->node, u->uid, hex);
    }
    redisReply *r = shard_command(g, "HGETALL tg:node:%s:users", cl->node);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        drop(r);
        return;
    }
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        uint32_t uid = (uint32_t)strtoul(r->element[i]->str, NULL, 10);
        known_user *u = find_user(users, uid);
        if (u && !u->remote) continue;
        char room[64];
        int len = cluster_unhex(r->element[i + 1]->str, r->element[i + 1]->len, room, sizeof room);
        if (len > 0) publish_logout(cl, room, (size_t)len, uid);
        run(g, "DEL tg:uid:%u", uid);
        run(g, "HDEL tg:node:%s:users %u", cl->node, uid);
    }
    freeReplyObject(r);
}

/* One member of the snapshot: another node's user the chat lacks joins;
 * one of ours this node has not (a logout Redis missed) leaves. */
static void snapshot_member(cluster *cl, const char *room, size_t room_len, uint32_t uid,
                            const redisReply *info, user_list *users, member *m)
{
    const char *p = info->str, *end = info->str + info->len, *f[3];
    size_t n[3];
    m->uid = uid;
    m->ours = false;
    if (info->type != REDIS_REPLY_STRING || field(&p, end, &f[0], &n[0]) < 0 ||
        field(&p, end, &f[1], &n[1]) < 0 || field(&p, end, &f[2], &n[2]) < 0)
        return;
    m->ours = n[2] == strlen(cl->node) && memcmp(f[2], cl->node, n[2]) == 0;
    known_user *u = find_user(users, uid);
    if (m->ours) {
        if (!u || u->remote) publish_logout(cl, room, room_len, uid);
        return;
    }
    if (!u) chat_bus_login(cl->chat, room, room_len, uid, f[0], n[0], num(f[1], n[1]), wall_ms());
}

/* Applies the shard's presence snapshot; fills the members seen. */
static int apply_snapshot(shard *s, user_list *users, member **out, size_t *n_out)
{
    cluster *cl = s->cl;
    const char *argv[] = { "tg:rooms" };
    redisReply *r = shard_script(s, SCRIPT_SNAPSHOT, 1, 1, argv, NULL);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        drop(r);
        return -1;
    }
    size_t total = 0;
    for (size_t i = 0; i + 1 < r->elements; i += 2) total += r->element[i + 1]->elements / 2;
    member *v = calloc(total + 1, sizeof *v);
    if (!v) {
        freeReplyObject(r);
        return -1;
    }
    size_t n = 0;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        char room[64];
        int len = cluster_unhex(r->element[i]->str, r->element[i]->len, room, sizeof room);
        redisReply *list = r->element[i + 1];
        for (size_t k = 0; len > 0 && k + 1 < list->elements; k += 2)
            snapshot_member(s->cl, room, (size_t)len, (uint32_t)strtoul(list->element[k]->str, NULL, 10),
                            list->element[k + 1], users, &v[n++]);
    }
    freeReplyObject(r);
    (void)cl;
    qsort(v, n, sizeof *v, cmp_member);
    *out = v;
    *n_out = n;
    return 0;
}

/* A Redis that came back without its data (no AOF) would give ids again:
 * the room's counter goes back up to the last id this node has seen. */
static void keep_counter(shard *s, const char *key, uint64_t last)
{
    redisReply *r = shard_command(s, "EVAL %s 1 %s %llu",
        "if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then "
        "redis.call('SET', KEYS[1], ARGV[1]) end", key, (unsigned long long)last);
    drop(r);
}

/* Says this node missed in its rooms of the shard come from the streams. */
static void catch_up_rooms(shard *s, user_list *users)
{
    cluster *cl = s->cl;
    dict done;                          /* rooms seen: once each */
    dict_init(&done);
    for (size_t i = 0; i < users->len; i++) {
        known_user *u = &users->v[i];
        if (cluster_shard_of(cl, u->room, u->room_len) != s->index || dict_get(&done, u->room, u->room_len))
            continue;
        if (dict_put(&done, u->room, u->room_len, u) < 0) break;
        uint64_t last, stored;
        if (chat_room_last_id(cl->chat, u->room, u->room_len, &last) < 0) continue;
        char key[CLUSTER_KEY_MAX];
        cluster_room_key(key, u->room, u->room_len, "id");
        redisReply *r = shard_command(s, "GET %s", key);
        stored = !r ? last : r->type == REDIS_REPLY_STRING ? strtoull(r->str, NULL, 10)
               : r->type == REDIS_REPLY_NIL ? 0 : last;
        drop(r);
        if (stored > last) cluster_catch_up(cl, u->room, u->room_len, last, 0);
        else if (stored < last) keep_counter(s, key, last);
    }
    dict_free(&done);
}

/* After (re)subscribing: the chat and the shard agree again on who is in
 * its rooms and on their says. Until this is done the shard is not ready
 * (its says and logins are refused; its messages wait in the snapshot). */
static void resync(shard *s)
{
    cluster *cl = s->cl;
    if (!cl->chat || !shard_cmd(s) || (s->index && !shard_cmd(&cl->shards[0]))) return;
    user_list users = {0};
    chat_each_user(cl->chat, collect_user, &users);
    member *seen = NULL;
    size_t n_seen = 0;
    if (users.oom || apply_snapshot(s, &users, &seen, &n_seen) < 0) {
        free_users(&users);
        return;
    }
    if (s->index == 0) reclaim_node(cl, &users);
    for (size_t i = 0; i < users.len; i++) {
        known_user *u = &users.v[i];
        if (cluster_shard_of(cl, u->room, u->room_len) != s->index) continue;
        if (in_snapshot(seen, n_seen, u->uid)) continue;
        if (u->remote) chat_bus_logout(cl->chat, u->uid, wall_ms());
        else publish_login(cl, u->room, u->room_len, u->uid, u->name, u->name_len, u->ident);
    }
    catch_up_rooms(s, &users);
    free(seen);
    free_users(&users);
    if (!s->cmd) return;                /* lost on the way: again at the next tick */
    s->resync_due = false;
    s->sub_ready = true;
    s->sub_heard = wall_ms();
    cluster_update_health(cl);
}

void cluster_on_subscribed(shard *s)
{
    __atomic_fetch_add(&s->cl->reconnects, 1, __ATOMIC_RELAXED);
    resync(s);
}

/* ---- the heartbeat and the reaper ----------------------------------- */

/* A node whose heartbeat expired: its users leave their rooms (one node
 * does it, under a lock). */
static void reap(cluster *cl, const char *node)
{
    shard *g = &cl->shards[0];
    redisReply *r = shard_command(g, "HGETALL tg:node:%s:users", node);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        drop(r);
        return;
    }
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        uint32_t uid = (uint32_t)strtoul(r->element[i]->str, NULL, 10);
        char room[64];
        int len = cluster_unhex(r->element[i + 1]->str, r->element[i + 1]->len, room, sizeof room);
        if (len > 0 && publish_logout(cl, room, (size_t)len, uid) < 0) {
            freeReplyObject(r);
            return;                     /* again once the lock expires */
        }
        run(g, "DEL tg:uid:%u", uid);
    }
    freeReplyObject(r);
    run(g, "DEL tg:node:%s:users", node);
    run(g, "SREM tg:nodes %s", node);
}

/* Nodes whose heartbeat expired are reaped. A node reaps only after
 * REAP_GRACE_MS connected (others coming back with Redis refresh theirs
 * first), except at its start: a node that died before it came leaves no
 * ghosts in the first user lists it gives. */
static void reap_dead_nodes(cluster *cl, bool at_start)
{
    shard *g = &cl->shards[0];
    if (!at_start && (!g->up_since || wall_ms() - g->up_since < REAP_GRACE_MS)) return;
    redisReply *nodes = shard_command(g, "SMEMBERS tg:nodes");
    if (!nodes || nodes->type != REDIS_REPLY_ARRAY) {
        drop(nodes);
        return;
    }
    for (size_t i = 0; i < nodes->elements; i++) {
        const char *node = nodes->element[i]->str;
        if (strcmp(node, cl->node) == 0) continue;
        redisReply *alive = shard_command(g, "EXISTS tg:hb:%s", node);
        bool dead = alive && alive->type == REDIS_REPLY_INTEGER && alive->integer == 0;
        drop(alive);
        if (!dead) continue;
        redisReply *lock = shard_command(g, "SET tg:reap:%s %s NX PX %d", node, cl->node, REAP_LOCK_MS);
        bool mine = lock && lock->type == REDIS_REPLY_STATUS;
        drop(lock);
        if (mine) reap(cl, node);
    }
    freeReplyObject(nodes);
}

static void on_tick(uv_timer_t *t)
{
    cluster *cl = t->data;
    if (cl->closed) return;
    for (int i = 0; i < cl->n; i++) {
        shard *s = &cl->shards[i];
        shard_cmd(s);
        check_pending_says(s);
        check_subscription(s);
        shard_async_check(s);
        shard_async_connect(s);
        if (s->sub && s->resync_due) resync(s);
    }
    if (cl->leaving) return;
    if (run(&cl->shards[0], "SET tg:hb:%s 1 PX %d", cl->node, HEARTBEAT_TTL_MS) == 0)
        reap_dead_nodes(cl, false);
    cluster_update_health(cl);
}

/* ---- life ------------------------------------------------------------ */

/* Redis 6.2 or later (its INFO's redis_version). */
static bool recent_enough(shard *s)
{
    redisReply *r = shard_command(s, "INFO server");
    const char *v = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, "redis_version:") : NULL;
    int major = 0, minor = 0;
    bool ok = v && sscanf(v + 14, "%d.%d", &major, &minor) == 2 && (major > 6 || (major == 6 && minor >= 2));
    drop(r);
    return ok;
}

cluster *cluster_new(const cluster_url *urls, int n, const store_limits *limits,
                     uv_loop_t *loop, char *err, size_t errlen)
{
    cluster *cl = calloc(1, sizeof *cl);
    uint8_t rnd[8];
    if (!cl || getrandom(rnd, sizeof rnd, 0) != sizeof rnd) {
        free(cl);
        snprintf(err, errlen, "out of memory or no randomness");
        return NULL;
    }
    for (int i = 0; i < 8; i++) sprintf(cl->node + 2 * i, "%02x", rnd[i]);
    snprintf(cl->channel, sizeof cl->channel, "tg:bus:%d", urls[0].db);
    cl->n = n;
    cl->limits = *limits;
    cl->loop = loop;
    cl->st = (store){ &cluster_store_ops, cl };
    sbuf_init(&cl->tmp);
    for (int i = 0; i < n; i++) {
        shard *s = &cl->shards[i];
        s->cl = cl;
        s->index = i;
        s->url = urls[i];
        s->pending = calloc(MAX_PENDING_SAYS, sizeof *s->pending);
        if (!s->pending) {
            snprintf(err, errlen, "out of memory");
            cluster_free(cl);
            return NULL;
        }
        if (!shard_cmd(s)) {
            char where[300];
            if (urls[i].path[0]) snprintf(where, sizeof where, "unix://%s", urls[i].path);
            else snprintf(where, sizeof where, "%s:%d", urls[i].host, urls[i].port);
            snprintf(err, errlen, "cannot reach Redis at %s (or it refused the password, the "
                     "database or the scripts)", where);
            cluster_free(cl);
            return NULL;
        }
        if (!recent_enough(s)) {
            snprintf(err, errlen, "Redis at %s:%d is older than 6.2 (tagarela needs XTRIM MINID "
                     "and exclusive XRANGE)", urls[i].path[0] ? urls[i].path : urls[i].host, urls[i].port);
            cluster_free(cl);
            return NULL;
        }
    }
    return cl;
}

store *cluster_store(cluster *cl)
{
    return &cl->st;
}

void cluster_start(cluster *cl, chat *c)
{
    cl->chat = c;
    chat_bus bus = { cl, bus_login, bus_logout, bus_say };
    chat_set_bus(c, &bus);
    uv_timer_init(cl->loop, &cl->tick);
    cl->tick.data = cl;
    cl->timer_on = true;
    uv_timer_start(&cl->tick, on_tick, TICK_MS / 4, TICK_MS / 4);
    reap_dead_nodes(cl, true);
    for (int i = 0; i < cl->n; i++) shard_async_connect(&cl->shards[i]);
}

bool cluster_wait_ready(cluster *cl, uint64_t ms)
{
    uint64_t until = wall_ms() + ms;
    while (!__atomic_load_n(&cl->healthy, __ATOMIC_RELAXED) && wall_ms() < until)
        uv_run(cl->loop, UV_RUN_ONCE);
    return __atomic_load_n(&cl->healthy, __ATOMIC_RELAXED);
}

/* Every user of this node leaves its room now; the node is forgotten. */
void cluster_leave(cluster *cl)
{
    if (cl->leaving || !cl->chat) return;
    user_list users = {0};
    chat_each_user(cl->chat, collect_user, &users);
    shard *g = &cl->shards[0];
    for (size_t i = 0; i < users.len; i++) {
        known_user *u = &users.v[i];
        if (u->remote || publish_logout(cl, u->room, u->room_len, u->uid) < 0) continue;
        run(g, "DEL tg:uid:%u", u->uid);
    }
    free_users(&users);
    run(g, "DEL tg:node:%s:users", cl->node);
    run(g, "DEL tg:hb:%s", cl->node);
    run(g, "SREM tg:nodes %s", cl->node);
    cl->leaving = true;
}

void cluster_close(cluster *cl)
{
    if (cl->closed) return;
    cl->closed = true;
    if (cl->timer_on) uv_close((uv_handle_t *)&cl->tick, NULL);
    for (int i = 0; i < cl->n; i++) shard_async_close(&cl->shards[i]);
}

void cluster_free(cluster *cl)
{
    if (!cl) return;
    for (int i = 0; i < cl->n; i++) {
        if (cl->shards[i].cmd) redisFree(cl->shards[i].cmd);
        free(cl->shards[i].pending);
    }
    sbuf_free(&cl->tmp);
    free(cl);
}
