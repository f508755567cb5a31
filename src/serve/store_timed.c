/* store_timed.c -- the timing wrapper around the history: append and
 * commit measured, the rest passed through. */
#include "store_timed.h"

#include <uv.h>

static int t_last_id(void *impl, const char *room, size_t room_len, uint64_t *out)
{
    store_timed *t = impl;
    return t->inner.ops->last_id(t->inner.impl, room, room_len, out);
}

static int t_append(void *impl, const char *room, size_t room_len, const store_msg *m)
{
    store_timed *t = impl;
    uint64_t start = uv_hrtime();
    int rc = t->inner.ops->append(t->inner.impl, room, room_len, m);
    hist_observe(&t->append, uv_hrtime() - start);
    t->dirty = true;
    return rc;
}

static int t_window(void *impl, const char *room, size_t room_len, uint64_t after_id, unsigned limit,
                    uint64_t viewer, uint64_t *start)
{
    store_timed *t = impl;
    return t->inner.ops->window(t->inner.impl, room, room_len, after_id, limit, viewer, start);
}

static int t_range(void *impl, const char *room, size_t room_len, uint64_t after_id, uint64_t viewer,
                   store_each_fn each, void *arg)
{
    store_timed *t = impl;
    return t->inner.ops->range(t->inner.impl, room, room_len, after_id, viewer, each, arg);
}

static int t_trim(void *impl, int64_t now)
{
    store_timed *t = impl;
    t->dirty = true;
    return t->inner.ops->trim(t->inner.impl, now);
}

/* Only a commit with writes behind it is timed: the empty ones of quiet
 * turns would drown the real ones. */
static int t_commit(void *impl)
{
    store_timed *t = impl;
    if (!t->dirty) return t->inner.ops->commit(t->inner.impl);
    uint64_t start = uv_hrtime();
    int rc = t->inner.ops->commit(t->inner.impl);
    hist_observe(&t->commit, uv_hrtime() - start);
    t->dirty = false;
    return rc;
}

static void t_close(void *impl)
{
    (void)impl;                 /* the real store is closed by its owner */
}

static int t_ident_find(void *impl, const uint8_t key[STORE_KEY_LEN], int64_t now, uint64_t *id)
{
    store_timed *t = impl;
    return t->inner.ops->identity_find(t->inner.impl, key, now, id);
}

static int t_ident_add(void *impl, const uint8_t key[STORE_KEY_LEN], int64_t now, uint64_t *id)
{
    store_timed *t = impl;
    t->dirty = true;
    return t->inner.ops->identity_add(t->inner.impl, key, now, id);
}

static int t_ident_touch(void *impl, uint64_t id, int64_t now)
{
    store_timed *t = impl;
    t->dirty = true;
    return t->inner.ops->identity_touch(t->inner.impl, id, now);
}

static int t_remove(void *impl, const char *room, size_t room_len, uint64_t id)
{
    store_timed *t = impl;
    if (!t->inner.ops->remove) return -1;
    t->dirty = true;
    return t->inner.ops->remove(t->inner.impl, room, room_len, id);
}

static const store_ops timed_ops = {
    t_last_id, t_append, t_window, t_range, t_trim, t_commit, t_close,
    t_ident_find, t_ident_add, t_ident_touch, t_remove,
};

store *store_timed_wrap(store_timed *t, const store *inner, store *out)
{
    t->inner = *inner;
    t->dirty = false;
    out->ops = &timed_ops;
    out->impl = t;
    return out;
}
