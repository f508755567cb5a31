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
    const char *json;           /* the say message exactly as sent */
    size_t json_len;
} store_msg;

/* Called per message, oldest first, with its json and the names of its
 * parties (from_name is NULL for a public message stored by an older
 * version; to_name is NULL for a public message). */
typedef void (*store_each_fn)(void *arg, const store_msg *m);

typedef struct store_ops {
    /* Highest id ever given in the room (0 for a new room). */
    int (*last_id)(void *impl, const char *room, size_t room_len, uint64_t *out);
    /* Adds a message; durable once commit() returns. */
    int (*append)(void *impl, const char *room, size_t room_len, const store_msg *m);
    /* The newest `limit` messages with id > after_id that the viewer may see
     * (public ones, and private ones whose sender or target bore the viewer's
     * name: uids last one connection, names are what carries over), oldest
     * first. */
    int (*range)(void *impl, const char *room, size_t room_len, uint64_t after_id,
                 unsigned limit, const char *viewer, size_t viewer_len,
                 store_each_fn each, void *arg);
    /* Applies the age limit; the count limit is kept by append. */
    int (*trim)(void *impl, int64_t now);
    /* Makes the appends since the last commit durable. */
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
} store_limits;

void store_limits_defaults(store_limits *l);   /* 10000 a room, 30 days */

/* Opens (creating if needed) <dir>/tagarela.db, checking that an existing
 * file is sound. On failure returns -1 and writes the reason into err. */
int store_sqlite_open(store *s, const char *dir, const store_limits *limits,
                      char *err, size_t errlen);

#endif
