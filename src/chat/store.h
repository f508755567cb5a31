/* store.h -- where chat history and identities live: a small interface
 * (append, range by id, trim, commit, identities) that the chat calls
 * without knowing the backend.
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
    uint64_t from_ident;        /* a private message's parties' identities (0: */
    uint64_t to_ident;          /* none, and always 0 for a public message) */
} store_msg;

#define STORE_KEY_LEN 32        /* an identity's key: a SHA-256 hash */

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
     * (public ones, and private ones of which the viewer's identity is a
     * party; viewer 0: public ones only), oldest first. Never by name: any
     * client may take any name. */
    int (*range)(void *impl, const char *room, size_t room_len, uint64_t after_id,
                 unsigned limit, uint64_t viewer, store_each_fn each, void *arg);
    /* Applies the age limit; the count limit is kept by append. */
    int (*trim)(void *impl, int64_t now);
    /* Makes the appends since the last commit durable. */
    int (*commit)(void *impl);
    void (*close)(void *impl);
    /* The identity with this key, its last use set to now: 1 and *id when
     * known, 0 when not, -1 on error. */
    int (*identity_find)(void *impl, const uint8_t key[STORE_KEY_LEN], int64_t now, uint64_t *id);
    /* A new identity (ids are never reused); durable once commit() returns.
     * trim() forgets identities unused for max_age that no kept message
     * names, so an identity lives at least as long as its history. */
    int (*identity_add)(void *impl, const uint8_t key[STORE_KEY_LEN], int64_t now, uint64_t *id);
    /* Marks the identity used now (an unknown id is no error). */
    int (*identity_touch)(void *impl, uint64_t id, int64_t now);
} store_ops;

typedef struct store {
    const store_ops *ops;
    void *impl;
} store;

typedef struct store_limits {
    unsigned max_per_room;      /* messages kept per room (0: no limit) */
    int64_t max_age;            /* seconds a message is kept (0: no limit) */
    unsigned max_identities;    /* identities kept beyond those a kept message
                                 * names, least recently used out first (0: no limit) */
} store_limits;

void store_limits_defaults(store_limits *l);   /* 10000 a room, 30 days, 1000000 identities */

/* Opens (creating if needed) <dir>/tagarela.db, checking that an existing
 * file is sound. On failure returns -1 and writes the reason into err. */
int store_sqlite_open(store *s, const char *dir, const store_limits *limits,
                      char *err, size_t errlen);

#endif
