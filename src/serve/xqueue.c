/* xqueue.c -- batches of messages between loops (xqueue.h). */
#include "xqueue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Running out of memory here would lose events with no one to tell: the
 * process stops with a message instead of running on inconsistent. */
void xvec_push(xvec *v, xmsg m)
{
    if (v->len == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        xmsg *p = realloc(v->v, cap * sizeof *p);
        if (!p) {
            fprintf(stderr, "tagarela: out of memory between threads\n");
            abort();
        }
        v->v = p;
        v->cap = cap;
    }
    v->v[v->len++] = m;
}

void xvec_free(xvec *v)
{
    free(v->v);
    memset(v, 0, sizeof *v);
}

void xqueue_init(xqueue *q)
{
    uv_mutex_init(&q->lock);
    memset(&q->q, 0, sizeof q->q);
}

void xqueue_free(xqueue *q)
{
    uv_mutex_destroy(&q->lock);
    xvec_free(&q->q);
}

/* Moves batch into q; batch is left empty (possibly with a new buffer). */
void xqueue_put(xqueue *q, xvec *batch)
{
    uv_mutex_lock(&q->lock);
    if (q->q.len == 0) {
        xvec t = q->q;          /* hand the whole buffer over, take the empty one */
        q->q = *batch;
        *batch = t;
    } else {
        for (size_t i = 0; i < batch->len; i++) xvec_push(&q->q, batch->v[i]);
    }
    uv_mutex_unlock(&q->lock);
    batch->len = 0;
}

/* Takes everything queued into into, which must be empty. */
void xqueue_take(xqueue *q, xvec *into)
{
    uv_mutex_lock(&q->lock);
    xvec t = q->q;
    q->q = *into;
    *into = t;
    uv_mutex_unlock(&q->lock);
}
