/* conn.c -- the cluster's connections to each shard: the URL, a command
 * connection (blocking, with a timeout, reconnected with backoff) and a
 * subscription on the chat's loop (hiredis async over libuv). */
#include "cluster_int.h"

#include <errno.h>
#include <hiredis/adapters/libuv.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "sys.h"

/* ---- URLs ---------------------------------------------------------------- */

static int url_error(char *err, size_t errlen, const char *s, const char *why)
{
    snprintf(err, errlen, "bad Redis URL '%s': %s (want redis://[:password@]host[:port][/db] "
             "or unix:///path)", s, why);
    return -1;
}

/* "host[:port][/db]" after the scheme and the password. */
static int parse_host(const char *s, const char *p, cluster_url *out, char *err, size_t errlen)
{
    const char *slash = strchr(p, '/');
    const char *end = slash ? slash : p + strlen(p);
    const char *colon = memchr(p, ':', (size_t)(end - p));
    const char *hend = colon ? colon : end;
    if (hend == p || (size_t)(hend - p) >= sizeof out->host) return url_error(err, errlen, s, "no host");
    memcpy(out->host, p, (size_t)(hend - p));
    out->host[hend - p] = '\0';
    out->port = 6379;
    if (colon && parse_port(colon + 1, (size_t)(end - colon - 1), 1, &out->port) < 0)
        return url_error(err, errlen, s, "bad port");
    if (slash && slash[1]) {
        char *e;
        errno = 0;
        long db = strtol(slash + 1, &e, 10);
        if (errno || *e || db < 0 || db > 100000) return url_error(err, errlen, s, "bad database number");
        out->db = (int)db;
    }
    return 0;
}

int cluster_url_parse(const char *s, cluster_url *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (strncmp(s, "unix://", 7) == 0) {
        const char *path = s + 7;
        if (path[0] != '/' || strlen(path) >= sizeof out->path)
            return url_error(err, errlen, s, "the socket path must be absolute");
        snprintf(out->path, sizeof out->path, "%s", path);
        return 0;
    }
    if (strncmp(s, "redis://", 8) != 0) return url_error(err, errlen, s, "unknown scheme");
    const char *p = s + 8;
    const char *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *pw = colon ? colon + 1 : p;     /* user:password or password */
        if ((size_t)(at - pw) >= sizeof out->password) return url_error(err, errlen, s, "password too long");
        memcpy(out->password, pw, (size_t)(at - pw));
        out->password[at - pw] = '\0';
        p = at + 1;
    }
    return parse_host(s, p, out, err, errlen);
}

/* ---- the command connection ------------------------------------------- */

static void backoff(unsigned *ms, uint64_t *at)
{
    *ms = *ms ? (*ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : *ms * 2) : BACKOFF_MIN_MS;
    *at = wall_ms() + *ms;
}

void shard_cmd_down(shard *s)
{
    if (s->cmd) redisFree(s->cmd);
    s->cmd = NULL;
    s->up_since = 0;
    backoff(&s->cmd_backoff, &s->cmd_retry_at);
    cluster_update_health(s->cl);
}

/* AUTH and SELECT on a new connection, then the scripts. */
static int shard_setup(shard *s)
{
    redisContext *c = s->cmd;
    if (s->url.password[0]) {
        redisReply *r = redisCommand(c, "AUTH %s", s->url.password);
        int ok = r && r->type != REDIS_REPLY_ERROR;
        if (r) freeReplyObject(r);
        if (!ok) return -1;
    }
    if (s->url.db) {
        redisReply *r = redisCommand(c, "SELECT %d", s->url.db);
        int ok = r && r->type != REDIS_REPLY_ERROR;
        if (r) freeReplyObject(r);
        if (!ok) return -1;
    }
    for (int i = 0; i < N_SCRIPTS; i++) {
        redisReply *r = redisCommand(c, "SCRIPT LOAD %s", cluster_scripts[i]);
        int ok = r && r->type == REDIS_REPLY_STRING && r->len == 40;
        if (ok) memcpy(s->sha[i], r->str, 41);
        if (r) freeReplyObject(r);
        if (!ok) return -1;
    }
    return 0;
}

redisContext *shard_cmd(shard *s)
{
    if (s->cmd) return s->cmd;
    if (wall_ms() < s->cmd_retry_at) return NULL;
    struct timeval tv = { COMMAND_TIMEOUT_MS / 1000, (COMMAND_TIMEOUT_MS % 1000) * 1000 };
    s->cmd = s->url.path[0] ? redisConnectUnixWithTimeout(s->url.path, tv)
                            : redisConnectWithTimeout(s->url.host, s->url.port, tv);
    if (!s->cmd || s->cmd->err || redisSetTimeout(s->cmd, tv) != REDIS_OK || shard_setup(s) < 0) {
        shard_cmd_down(s);
        return NULL;
    }
    s->cmd->reader->maxbuf = READER_MAX_BUF;
    s->cmd_backoff = 0;
    if (!s->up_since) s->up_since = wall_ms();
    return s->cmd;
}

/* An I/O error or a timeout leaves the connection unusable: it goes. */
static redisReply *checked(shard *s, redisReply *r)
{
    if (!r) shard_cmd_down(s);
    return r;
}

redisReply *shard_command(shard *s, const char *fmt, ...)
{
    redisContext *c = shard_cmd(s);
    if (!c) return NULL;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    return checked(s, r);
}

redisReply *shard_argv(shard *s, int argc, const char **argv, const size_t *lens)
{
    redisContext *c = shard_cmd(s);
    if (!c) return NULL;
    return checked(s, redisCommandArgv(c, argc, argv, lens));
}

#define MAX_SCRIPT_ARGS 24

redisReply *shard_script(shard *s, int script, int nkeys, int argc, const char **argv,
                         const size_t *lens)
{
    const char *a[MAX_SCRIPT_ARGS + 3];
    size_t l[MAX_SCRIPT_ARGS + 3];
    char nk[8];
    if (argc > MAX_SCRIPT_ARGS || !shard_cmd(s)) return NULL;
    snprintf(nk, sizeof nk, "%d", nkeys);
    a[0] = "EVALSHA";
    a[1] = s->sha[script];
    a[2] = nk;
    l[0] = 7;
    l[1] = 40;
    l[2] = strlen(nk);
    for (int i = 0; i < argc; i++) {
        a[i + 3] = argv[i];
        l[i + 3] = lens ? lens[i] : strlen(argv[i]);
    }
    redisReply *r = shard_argv(s, argc + 3, a, l);
    if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        /* a Redis that lost its script cache (restarted): load and retry */
        freeReplyObject(r);
        if (shard_setup(s) < 0) {
            shard_cmd_down(s);
            return NULL;
        }
        r = shard_argv(s, argc + 3, a, l);
    }
    return r;
}

/* ---- the async connections: the subscription and the says ------------- */

static void sub_down(shard *s)
{
    s->sub = NULL;
    s->sub_ready = false;
    s->resync_due = false;
    backoff(&s->sub_backoff, &s->sub_retry_at);
    cluster_update_health(s->cl);
}

static void says_down(shard *s)
{
    s->says = NULL;
    s->says_up = false;
    backoff(&s->says_backoff, &s->says_retry_at);
    cluster_update_health(s->cl);
}

/* One of the shard's async connections is gone (hiredis frees it). */
static void async_gone(const redisAsyncContext *ac)
{
    shard *s = ac->data;
    if (ac == s->sub) sub_down(s);
    else if (ac == s->says) says_down(s);
}

static void on_async_connect(const redisAsyncContext *ac, int status)
{
    shard *s = ac->data;
    if (status != REDIS_OK) async_gone(ac);
    else if (ac == s->says) {
        s->says_up = true;
        s->says_backoff = 0;
        cluster_update_health(s->cl);
    }
}

static void on_async_disconnect(const redisAsyncContext *ac, int status)
{
    async_gone(ac);
}

/* A connection on the chat's loop, logged in; NULL when it cannot be made.
 * Made only to a Redis that answers now: hiredis 0.14's libuv adapter
 * never reports a connection refused after the fact. */
static redisAsyncContext *async_open(shard *s)
{
    if (!shard_cmd(s)) return NULL;
    redisAsyncContext *ac = s->url.path[0] ? redisAsyncConnectUnix(s->url.path)
                                           : redisAsyncConnect(s->url.host, s->url.port);
    if (!ac || ac->err) {
        if (ac) redisAsyncFree(ac);
        return NULL;
    }
    ac->data = s;
    if (redisLibuvAttach(ac, s->cl->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        return NULL;
    }
    ac->c.reader->maxbuf = READER_MAX_BUF;
    redisAsyncSetConnectCallback(ac, on_async_connect);
    redisAsyncSetDisconnectCallback(ac, on_async_disconnect);
    if (s->url.password[0]) redisAsyncCommand(ac, NULL, NULL, "AUTH %s", s->url.password);
    return ac;
}

static void on_sub_message(redisAsyncContext *ac, void *reply, void *arg)
{
    shard *s = arg;
    redisReply *r = reply;
    if (!r || s->cl->closed) return;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3) return;
    redisReply *kind = r->element[0], *body = r->element[2];
    if (kind->type != REDIS_REPLY_STRING) return;
    if (strcmp(kind->str, "subscribe") == 0) {
        s->sub_backoff = 0;
        s->resync_due = true;
        cluster_on_subscribed(s);
    } else if (strcmp(kind->str, "message") == 0 && body->type == REDIS_REPLY_STRING) {
        cluster_on_message(s, body->str, body->len);
    }
}

/* The subscription and the says' connection, when down and due. */
void shard_async_connect(shard *s)
{
    uint64_t now = wall_ms();
    if (s->cl->closed) return;
    if (!s->sub && now >= s->sub_retry_at) {
        s->sub = async_open(s);
        if (!s->sub) {
            sub_down(s);
        } else {
            s->sub_started = now;
            redisAsyncCommand(s->sub, on_sub_message, s, "SUBSCRIBE %s", s->cl->channel);
        }
    }
    if (!s->says && now >= s->says_retry_at) {
        s->says = async_open(s);
        if (!s->says) says_down(s);
        else s->says_started = now;
        if (s->says && s->url.db) redisAsyncCommand(s->says, NULL, NULL, "SELECT %d", s->url.db);
    }
}

/* A connection not up in time (one that failed unseen, a Redis that
 * hangs) is dropped and made again. */
void shard_async_check(shard *s)
{
    uint64_t now = wall_ms();
    if (s->sub && !s->sub_ready && !s->resync_due && now - s->sub_started >= ASYNC_TIMEOUT_MS)
        shard_drop_sub(s);
    if (s->says && !s->says_up && now - s->says_started >= ASYNC_TIMEOUT_MS) shard_drop_says(s);
}

/* What the subscription has received so far, handled now (up to a bound):
 * after a command's answer on this shard, that is everything the bus
 * carried before the command ran (Redis writes a publish to subscribers
 * before it answers the commands that come after it). */
void shard_drain_sub(shard *s)
{
    for (int i = 0; i < 64 && s->sub && s->sub_ready; i++) {
        int avail = 0;
        if (ioctl(s->sub->c.fd, FIONREAD, &avail) < 0 || avail <= 0) return;
        redisAsyncHandleRead(s->sub);
    }
}

void shard_drop_sub(shard *s)
{
    redisAsyncContext *ac = s->sub;
    if (!ac) return;
    redisAsyncFree(ac);
    if (s->sub == ac) sub_down(s);
}

void shard_drop_says(shard *s)
{
    redisAsyncContext *ac = s->says;
    if (!ac) return;
    redisAsyncFree(ac);             /* its pending says are refused */
    if (s->says == ac) says_down(s);
}

void shard_async_close(shard *s)
{
    if (s->sub) redisAsyncDisconnect(s->sub);
    if (s->says) redisAsyncDisconnect(s->says);
}
