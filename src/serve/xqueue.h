/* xqueue.h -- messages between the hub's loop and the workers' loops.
 *
 * Each side collects a turn's messages in a plain vector (no lock) and
 * hands the whole batch over with one mutex and one wake-up; the reader
 * swaps the queue out whole. */
#ifndef TAGARELA_XQUEUE_H
#define TAGARELA_XQUEUE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct conn;

typedef struct xmsg {
    struct conn *c;
    void *p;                        /* a ws_frame, or a copy of a text */
    uint32_t n;
    int32_t fd;
    uint8_t kind, flag;
    uint64_t at;                    /* XM_TEXT: uv_hrtime() it was read */
} xmsg;

enum xmsg_kind {
    XM_CONNECT, XM_TEXT, XM_BINARY, XM_LEAVE,          /* worker -> hub */
    XM_LIMITED,                                         /* worker -> hub: refused unread */
    XM_SEND, XM_RELEASE, XM_NEWCONN, XM_STOP, XM_ABORT, /* hub -> worker */
    XM_RESUME,                                          /* hub -> worker: read it again */
    XM_DONE,                                             /* worker -> hub: its loop ended */
    XM_WANT_DRAIN,                                       /* hub -> worker: tell when written */
    XM_DRAINED,                                          /* worker -> hub: it is */
    XM_CONFIG,                                           /* hub -> worker: reloaded options */
    XM_ADMIN,                                            /* worker -> hub: an operator's command */
    XM_ADMIN_DONE,                                       /* hub -> worker: its HTTP answer */
    XM_KICK,                                             /* hub -> worker: close it (code n, reason p) */
};

typedef struct xvec {
    xmsg *v;
    size_t len, cap;
} xvec;

typedef struct xqueue {
    uv_mutex_t lock;
    xvec q;
} xqueue;

/* Running out of memory here would lose events with no one to tell: the
 * process stops with a message instead of running on inconsistent. */
void xvec_push(xvec *v, xmsg m);
void xvec_free(xvec *v);

void xqueue_init(xqueue *q);
void xqueue_free(xqueue *q);
/* Moves batch into q; batch is left empty (possibly with a new buffer). */
void xqueue_put(xqueue *q, xvec *batch);
/* Takes everything queued into into, which must be empty. */
void xqueue_take(xqueue *q, xvec *into);

#endif
