/* chat.h -- the chat room logic of the contract (login, say, private say,
 * logout, rooms, errors), with no knowledge of sockets or frames.
 *
 * The server tells it what happened on a connection (a new one, a text or
 * binary message, a disconnect) and it answers through chat_io: it makes
 * one shareable message per JSON text and hands it to each recipient, so a
 * broadcast is encoded once whatever the size of the room. Output is held
 * until chat_end_turn, which makes the turn's says durable first. */
#ifndef TAGARELA_CHAT_H
#define TAGARELA_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

typedef struct chat chat;
typedef struct chat_user chat_user;

typedef struct chat_limits {
    unsigned max_name;          /* code points, after trimming */
    unsigned max_content;       /* code points */
    double rate;                /* messages per second, sustained */
    double burst;               /* messages allowed at once */
    unsigned history;           /* messages replayed after a login */
    unsigned resume_cap;        /* most messages replayed after last_id */
    /* --auth-key: every login must carry a JWT signed (HS256) with this
     * secret, which names the user. NULL: anyone picks a name. The chat
     * keeps a copy. */
    const uint8_t *auth_key;
    size_t auth_key_len;
    size_t chunk_bytes;         /* a history or user_list message stays under this (0: 64 KiB) */
    unsigned rooms_per_minute;  /* rooms one client key may bring up a minute (0: no limit) */
} chat_limits;

/* The contract's limits: names of 32, contents of 4096 code points, a
 * burst of 100 and 50 a second; history and user lists in 64 KiB pieces;
 * 30 new rooms a minute per client key. */
void chat_limits_defaults(chat_limits *l);

typedef struct chat_io {
    void *ctx;
    /* A shareable message holding this JSON text; NULL when out of memory. */
    void *(*message_new)(void *ctx, const char *json, size_t n);
    /* Queues the message to one connection (which takes its own reference). */
    void (*message_send)(void *ctx, void *conn, void *msg);
    /* Drops the reference message_new returned. */
    void (*message_release)(void *ctx, void *msg);
    /* Asks to be told (chat_drained) once everything queued to conn so far
     * has been written to its socket. NULL: the chat goes on at once. */
    void (*want_drain)(void *ctx, void *conn);
    /* True when an operator has banned this name (HTML-escaped, as sent
     * on the wire) from logging in. NULL: no bans. */
    int (*name_banned)(void *ctx, const char *name, size_t n);
} chat_io;

/* st may be NULL: no history and no identities (no session message). The
 * chat does not own it. */
chat *chat_new(const chat_limits *limits, const chat_io *io, uint32_t uid_seed, store *st);
void chat_free(chat *c);

/* A connection opened; conn is the server's handle, passed back to io.
 * key names the client for per-client limits (the server passes its
 * address; at most CHAT_KEY_MAX bytes count). */
#define CHAT_KEY_MAX 32
chat_user *chat_connect(chat *c, void *conn, const void *key, size_t key_len);
/* A text message arrived (valid UTF-8). now_ms: wall clock, milliseconds.
 * Every message but the heartbeat {"type":"pong"} takes a token of the
 * sender's rate limit, and a message longer than CHAT_FREE_MAX is refused
 * unparsed when there is none. */
void chat_text(chat *c, chat_user *u, const char *data, size_t n, uint64_t now_ms);
#define CHAT_FREE_MAX 64
/* True when data is the heartbeat answer {"type":"pong"}, which the chat
 * ignores and which costs no token. */
bool chat_is_heartbeat(const char *data, size_t n);
/* A message refused before it reached the chat (the server's own rate
 * check, made before copying it): the sender hears rate_limited. */
void chat_rate_limited(chat *c, chat_user *u);
/* A binary message arrived: the contract has none, so it is an error. */
void chat_binary(chat *c, chat_user *u);
/* The connection is gone: the room hears a logout; u is freed. With
 * quiet, no logout is sent (the whole server is shutting down). */
void chat_disconnect(chat *c, chat_user *u, uint64_t now_ms, int quiet);

/* The end of a turn: the turn's says are committed to the store, then
 * everything the turn produced is handed to io in order. When the commit
 * fails, no stored say of the turn reaches anyone: each sender gets an
 * "unavailable" error instead, and the rooms' ids are reloaded from the
 * store so that none is given twice. Returns how many says were refused
 * so (0 when the commit succeeded). */
size_t chat_end_turn(chat *c);
/* True when output waits for chat_end_turn. */
int chat_turn_pending(const chat *c);
/* What want_drain asked for: u's connection has written all it had; the
 * next piece of its history or user list is made. */
void chat_drained(chat *c, chat_user *u);

/* ---- cluster mode: the shared bus ------------------------------------
 * With a bus (chat_set_bus), the chat shares its rooms with other servers:
 * a login is announced on the bus before it is answered, a say is handed
 * to the bus (which gives it its id, stores it and publishes it) and is
 * delivered to no one here until it comes back through chat_bus_say, like
 * the says of every other server. Without a bus nothing of this runs. */
typedef struct chat_bus {
    void *ctx;
    /* A local user joins room under uid (a proposal): 0 when announced, 1
     * when the uid is taken elsewhere (the chat proposes another), -1 when
     * the bus is unreachable (the login is refused with unavailable).
     * name is HTML-escaped, as sent on the wire. */
    int (*login)(void *ctx, const char *room, size_t room_len, uint32_t uid,
                 const char *name, size_t name_len, uint64_t ident);
    /* A local user left (announced when the bus can be reached). */
    void (*logout)(void *ctx, const char *room, size_t room_len, uint32_t uid);
    /* Stores and publishes a say (m->id is the bus's to give); -1: refused. */
    int (*say)(void *ctx, const char *room, size_t room_len, const store_msg *m);
} chat_bus;

/* The chat keeps a copy of the bus's callbacks. */
void chat_set_bus(chat *c, const chat_bus *bus);
/* What the bus brings from the other servers (and a server's own says):
 * a user of another server joined (ignored when uid is known), left
 * (ignored unless it is another server's), a stored say (ignored when its
 * id is not past the room's last one; delivered to this server's members). */
void chat_bus_login(chat *c, const char *room, size_t room_len, uint32_t uid,
                    const char *name, size_t name_len, uint64_t ident, uint64_t now_ms);
void chat_bus_logout(chat *c, uint32_t uid, uint64_t now_ms);
void chat_bus_say(chat *c, const char *room, size_t room_len, const store_msg *m);
/* The bus could not store a say of this server's user uid after all (it
 * answers later than bus.say returns): the sender hears unavailable. */
void chat_say_refused(chat *c, uint32_t uid);
/* The last id the room's says reached here with; -1 when no one is in it. */
int chat_room_last_id(const chat *c, const char *room, size_t room_len, uint64_t *out);

/* A user as the bus needs to see it (name HTML-escaped). */
typedef struct chat_user_info {
    const char *room;
    size_t room_len;
    uint32_t uid;
    const char *name;
    size_t name_len;
    uint64_t ident;
    int remote;                 /* another server's */
} chat_user_info;
/* Calls fn for every logged-in user; fn must not change the chat. */
void chat_each_user(const chat *c, void (*fn)(void *arg, const chat_user_info *u), void *arg);

uint32_t chat_user_uid(const chat_user *u);     /* 0 before login */
size_t chat_user_count(const chat *c);          /* logged in */
size_t chat_room_count(const chat *c);

/* ---- the operator's controls (chat_admin.c has the HTTP side's why) ---- */

struct sbuf;
/* Writes a JSON array of the rooms, [offset, offset + limit) of them in
 * no particular order, each {"id","members","last_id"}. */
void chat_admin_rooms(chat *c, struct sbuf *o, size_t offset, size_t limit);
/* The same for the logged-in users, each {"uid","name","room","address",
 * "since"} (since: the login, unix ms); addr names a connection's client. */
typedef const char *(*chat_conn_addr_fn)(void *conn);
void chat_admin_users(chat *c, struct sbuf *o, size_t offset, size_t limit, chat_conn_addr_fn addr);
/* The user uid hears {"type":"error","code":"kicked","message":reason}
 * and its further messages are ignored. Returns its connection, for the
 * server to close once that is written, or NULL when no such user. */
void *chat_admin_kick(chat *c, uint32_t uid, const char *reason, size_t n);
/* Drops message id of the room from the history and commits; the room's
 * members then get {"type":"delete","id":id}. 1: deleted, 0: no such
 * message, -1: no history or an error (nothing deleted). */
int chat_admin_delete(chat *c, const char *room, size_t room_len, uint64_t id);

#endif
