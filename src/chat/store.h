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
    const char *content;        /* as the client wrote it: not escaped */
    size_t content_len;
    uint64_t from_ident;        /* a private message's parties' identities (0: */
    uint64_t to_ident;          /* none, and always 0 for a public message) */
} store_msg;

#define STORE_KEY_LEN 32        /* an identity's key: a SHA-256 hash */

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
     * there are no more than limit). The viewer sees public messages and
     * the private ones of which its identity is a party (viewer 0: public
     * ones only); never by name: any client may take any name. */
    int (*window)(void *impl, const char *room, size_t room_len, uint64_t after_id,
                  unsigned limit, uint64_t viewer, uint64_t *start);
    /* The messages with id > after_id that the viewer may see, oldest
     * first, until each() returns nonzero. */
    int (*range)(void *impl, const char *room, size_t room_len, uint64_t after_id,
                 uint64_t viewer, store_each_fn each, void *arg);
    /* Applies the age limit; the count and byte limits are kept by append. */
    int (*trim)(void *impl, int64_t now);
    /* Makes the appends since the last commit durable; -1 when they are
     * lost (the transaction is rolled back). */
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
    /* Drops the room's message with this id (an operator's delete), in the
     * open transaction: 1 when it was there, 0 when not, -1 on error. */
    int (*remove)(void *impl, const char *room, size_t room_len, uint64_t id);
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
    uint64_t max_room_bytes;    /* bytes kept per room, oldest dropped first (0: no limit) */
    uint64_t max_bytes;         /* bytes kept in all rooms (0: no limit) */
} store_limits;

/* What a message costs against the byte limits: its content and names,
 * plus a fixed charge for the row. */
#define STORE_ROW_BYTES 64
uint64_t store_msg_bytes(const store_msg *m);

/* 10000 messages, 20 MiB a room, 1 GiB in all, 30 days, 1000000 identities. */
void store_limits_defaults(store_limits *l);

/* The most the SQLite backend lets its write-ahead log (tagarela.db-wal)
 * grow to, however steadily it is written, for transactions of up to a
 * few MiB: checkpoints run on a thread of their own, and when that thread
 * falls this far behind the writer catches up itself. */
#define STORE_WAL_BOUND (16u << 20)

/* Opens (creating if needed) <dir>/tagarela.db, checking that an existing
 * file is sound. On failure returns -1 and writes the reason into err. */
int store_sqlite_open(store *s, const char *dir, const store_limits *limits,
                      char *err, size_t errlen);

#endif
