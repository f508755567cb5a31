/* store_timed.h -- the history as the chat sees it, with the time of each
 * append and of each commit that had something to commit measured into
 * histograms for /metrics. Every call goes through to the real store. */
#ifndef TAGARELA_STORE_TIMED_H
#define TAGARELA_STORE_TIMED_H

#include <stdbool.h>

#include "hist.h"
#include "store.h"

typedef struct store_timed {
    store inner;                /* the real one (not owned) */
    bool dirty;                 /* written since the last commit */
    hist append, commit;        /* written on the hub's thread only */
} store_timed;

/* Wraps inner; returns the store to hand the chat. */
store *store_timed_wrap(store_timed *t, const store *inner, store *out);

#endif
