/* store.h -- where chat history lives: a small interface (append, range by
 * id, trim, commit) that the chat calls without knowing the backend.
 * store_sqlite.c is the backend tagarela ships. */
#ifndef TAGARELA_STORE_H
#define TAGARELA_STORE_H

#include <stddef.h>
#include <stdint.h>

typedef struct store_msg {
    uint64_t id;                /* increasing per room, never reused */
    int64_t ts;                 /* unix seconds */
    uint32_t from_uid;
    uint32_t to_uid;            /* 0: the whole room */
    const char *from_name;      /* the sender, and the target of a private message, as sent */
    size_t from_name_len;
    const char *to_name;
    size_t to_name_len;
    const char *content;        /* as the client wrote it: not escaped */
    size_t content_len;
} store_msg;

/* Called per message, oldest first, with the fields the chat rebuilds the
 * say from (from_name may be NULL for a message migrated from a version
 * that did not keep it; to_name is NULL for a public message). Returns
 * nonzero to stop the walk. */
typedef int (*store_each_fn)(void *arg, const store_msg *m);

typedef struct store_ops {
    /* Highest id ever given in the room (0 for a new room). */
    int (*last_id)(void *impl, const char *room, size_t room_len, uint64_t *out);
    /* Adds a message; durable once commit() returns 0. A failed append
     * voids the whole transaction: later appends fail too and the next
     * commit() returns -1. */
    int (*append)(void *impl, const char *room, size_t room_len, const store_msg *m);
    /* Where the newest `limit` messages with id > after_id that the viewer
     * may see begin: *start is the id right before them (after_id when
     * there are no more than limit). */
    int (*window)(void *impl, const char *room, size_t room_len, uint64_t after_id,
                  unsigned limit, const char *viewer, size_t viewer_len, uint64_t *start);
    /* The messages with id > after_id that the viewer may see (public
     * ones, and private ones whose sender or target bore the viewer's name:
     * uids last one connection, names are what carries over), oldest first,
     * until each() returns nonzero. */
    int (*range)(void *impl, const char *room, size_t room_len, uint64_t after_id,
                 const char *viewer, size_t viewer_len, store_each_fn each, void *arg);
    /* Applies the age limit; the count and byte limits are kept by append. */
    int (*trim)(void *impl, int64_t now);
    /* Makes the appends since the last commit durable; -1 when they are
     * lost (the transaction is rolled back). */
    int (*commit)(void *impl);
    void (*close)(void *impl);
} store_ops;

typedef struct store {
    const store_ops *ops;
    void *impl;
} store;

typedef struct store_limits {
    unsigned max_per_room;      /* messages kept per room (0: no limit) */
    int64_t max_age;            /* seconds a message is kept (0: no limit) */
    uint64_t max_room_bytes;    /* bytes kept per room, oldest dropped first (0: no limit) */
    uint64_t max_bytes;         /* bytes kept in all rooms (0: no limit) */
} store_limits;

/* What a message costs against the byte limits: its content and names,
 * plus a fixed charge for the row. */
#define STORE_ROW_BYTES 64
uint64_t store_msg_bytes(const store_msg *m);

/* 10000 messages, 20 MiB a room, 1 GiB in all, 30 days. */
void store_limits_defaults(store_limits *l);

/* Opens (creating if needed) <dir>/tagarela.db, checking that an existing
 * file is sound. On failure returns -1 and writes the reason into err. */
int store_sqlite_open(store *s, const char *dir, const store_limits *limits,
                      char *err, size_t errlen);

#endif
