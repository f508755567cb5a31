/* store_sqlite.c -- chat history in SQLite: WAL journal, prepared
 * statements, appends grouped into one transaction per loop turn (the chat
 * commits before it delivers that turn's says to anyone), count, byte and
 * age limits, the conversion of older files, and checkpoints on a thread
 * of their own. */
#include "store.h"

#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sbuf.h"

/* WAL pages (4 KiB) after which a checkpoint is asked for, as SQLite's
 * own automatic checkpoint would. A writer that never pauses keeps the
 * thread one transaction behind, and a log that is never caught up with
 * never starts over: past twice that the writer waits for the thread and
 * catches up itself, so the next transaction restarts the log. Half of
 * STORE_WAL_BOUND is left for that transaction. */
#define CHECKPOINT_PAGES 1000
#define CHECKPOINT_FORCE_PAGES (2 * CHECKPOINT_PAGES)
_Static_assert((CHECKPOINT_FORCE_PAGES + 16) * (4096 + 24) <= STORE_WAL_BOUND / 2,
               "the forced checkpoint leaves room for a transaction");

/* A restarted log is cut back to this size (SQLite would keep the
 * biggest it ever was). */
#define WAL_KEEP_BYTES "4194304"

/* How long a write waits for a lock someone else holds. */
#define BUSY_TIMEOUT_MS 20

/* A checkpoint writes the WAL back and fsyncs: tens of milliseconds the
 * event loop must not wait for. This thread does it on its own
 * connection while the loop goes on appending. */
typedef struct checkpointer {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_cond_t idle;        /* the thread finished a checkpoint */
    bool started, wanted, busy, stop;
    char path[4096];
} checkpointer;

/* Rows to drop: sel lists their room and size, del deletes the same rows
 * (both take the same parameters). DELETE ... RETURNING would say it in
 * one statement, but costs some twenty times more. */
typedef struct deletion {
    sqlite3_stmt *sel, *del;
} deletion;

typedef struct sqlite_store {
    sqlite3 *db;
    store_limits limits;
    int in_tx;
    int tx_void;                /* an append failed: this transaction is lost */
    uint64_t total_bytes;       /* of every room, as committed or in this transaction */
    sqlite3_stmt *st_last_id, *st_set_last, *st_insert, *st_range, *st_window;
    sqlite3_stmt *st_room_bytes, *st_add_bytes, *st_total;
    sqlite3_stmt *st_ident_find, *st_ident_add, *st_ident_touch, *st_ident_expire, *st_ident_cap;
    deletion trim_count, trim_age, drop_room_oldest, drop_oldest, remove_one;
    checkpointer ck;
} sqlite_store;

/* Version 2 keeps a say's raw content and the fields to rebuild it (the
 * first kept the escaped JSON, up to 8 times the size), and each room's
 * bytes. A version 1 file is converted when it is opened. */
#define SCHEMA_VERSION 2

/* Who may see a message: the one place that says it. ?3 is the viewer. */
#define VISIBLE_TO_VIEWER "(to_uid=0 OR from_ident=?3 OR to_ident=?3)"

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS rooms ("
    "  room TEXT PRIMARY KEY, last_id INTEGER NOT NULL,"
    "  bytes INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS messages ("
    "  room TEXT NOT NULL, id INTEGER NOT NULL, ts INTEGER NOT NULL,"
    "  from_uid INTEGER NOT NULL, to_uid INTEGER NOT NULL,"
    "  from_name TEXT, to_name TEXT, content TEXT NOT NULL, size INTEGER NOT NULL,"
    "  from_ident INTEGER, to_ident INTEGER,"
    "  PRIMARY KEY (room, id)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS messages_ts ON messages(ts);"
    /* Identities: a private row names its parties' (a row converted from
     * version 1 names none, and is replayed to no one: it was matched by
     * name, which anyone can take). AUTOINCREMENT: an id is never given
     * twice, or a new identity could inherit a forgotten one's history. */
    "CREATE TABLE IF NOT EXISTS identities ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT, key BLOB NOT NULL UNIQUE,"
    "  last_used INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS identities_last_used ON identities(last_used);"
    "CREATE INDEX IF NOT EXISTS messages_from_ident ON messages(from_ident)"
    "  WHERE from_ident IS NOT NULL;"
    "CREATE INDEX IF NOT EXISTS messages_to_ident ON messages(to_ident)"
    "  WHERE to_ident IS NOT NULL;"
    "PRAGMA user_version=2;";





static void *checkpoint_main(void *arg)
{
    checkpointer *ck = arg;
    sqlite3 *db = NULL;
    /* A connection sees the WAL only once it has read the database. */
    if (sqlite3_open_v2(ck->path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
        sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        db = NULL;
    }
    pthread_mutex_lock(&ck->lock);
    for (;;) {
        while (!ck->wanted && !ck->stop) pthread_cond_wait(&ck->wake, &ck->lock);
        if (ck->stop) break;
        ck->wanted = false;
        ck->busy = true;
        pthread_mutex_unlock(&ck->lock);
        /* PASSIVE: copies what it can without waiting for anyone. */
        if (db) sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        pthread_mutex_lock(&ck->lock);
        ck->busy = false;
        pthread_cond_broadcast(&ck->idle);
    }
    pthread_mutex_unlock(&ck->lock);
    sqlite3_close(db);
    return NULL;
}

/* Runs after each commit on the loop's connection (it replaces SQLite's
 * automatic checkpoint). */
static int on_wal_commit(void *arg, sqlite3 *db, const char *name, int pages)
{
    checkpointer *ck = arg;
    if (pages < CHECKPOINT_PAGES) return SQLITE_OK;
    if (!ck->started) {
        sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        return SQLITE_OK;
    }
    pthread_mutex_lock(&ck->lock);
    if (pages >= CHECKPOINT_FORCE_PAGES) {
        /* Two checkpoints at once: the second does nothing. The lock held
         * keeps the thread from starting another meanwhile. */
        while (ck->busy) pthread_cond_wait(&ck->idle, &ck->lock);
        ck->wanted = false;
        sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    } else {
        ck->wanted = true;
        pthread_cond_signal(&ck->wake);
    }
    pthread_mutex_unlock(&ck->lock);
    return SQLITE_OK;
}

static void checkpointer_start(checkpointer *ck, sqlite3 *db, const char *path)
{
    pthread_mutex_init(&ck->lock, NULL);
    pthread_cond_init(&ck->wake, NULL);
    pthread_cond_init(&ck->idle, NULL);
    snprintf(ck->path, sizeof ck->path, "%s", path);
    ck->started = pthread_create(&ck->thread, NULL, checkpoint_main, ck) == 0;
    sqlite3_wal_hook(db, on_wal_commit, ck);
}

static void checkpointer_stop(checkpointer *ck)
{
    if (!ck->started) return;
    pthread_mutex_lock(&ck->lock);
    ck->stop = true;
    pthread_cond_signal(&ck->wake);
    pthread_mutex_unlock(&ck->lock);
    pthread_join(ck->thread, NULL);
    pthread_cond_destroy(&ck->wake);
    pthread_cond_destroy(&ck->idle);
    pthread_mutex_destroy(&ck->lock);
    ck->started = false;
}

static int exec(sqlite_store *s, const char *sql)
{
    return sqlite3_exec(s->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

static int begin(sqlite_store *s)
{
    if (s->in_tx) return 0;
    if (exec(s, "BEGIN") < 0) return -1;
    s->in_tx = 1;
    return 0;
}

static int run(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -1;
}

uint64_t store_msg_bytes(const store_msg *m)
{
    return STORE_ROW_BYTES + m->content_len + m->from_name_len + (m->to_name ? m->to_name_len : 0);
}

/* The byte count of every room, as the file has it. */
static int load_total(sqlite_store *s)
{
    int rc = sqlite3_step(s->st_total);
    s->total_bytes = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(s->st_total, 0) : 0;
    sqlite3_reset(s->st_total);
    return rc == SQLITE_ROW ? 0 : -1;
}

static int add_room_bytes(sqlite_store *s, const char *room, int room_len, int64_t delta)
{
    sqlite3_bind_text(s->st_add_bytes, 1, room, room_len, SQLITE_STATIC);
    sqlite3_bind_int64(s->st_add_bytes, 2, delta);
    if (run(s->st_add_bytes) < 0) return -1;
    s->total_bytes += (uint64_t)delta;
    return 0;
}

static void bind_room(deletion *d, const char *room, size_t room_len)
{
    sqlite3_bind_text(d->sel, 1, room, (int)room_len, SQLITE_STATIC);
    sqlite3_bind_text(d->del, 1, room, (int)room_len, SQLITE_STATIC);
}

static void bind_int(deletion *d, int i, int64_t v)
{
    sqlite3_bind_int64(d->sel, i, v);
    sqlite3_bind_int64(d->del, i, v);
}

/* Takes the rows' sizes off their rooms' counts, then deletes them.
 * Returns the rows deleted, or -1. */
static int64_t delete_rows(sqlite_store *s, deletion *d)
{
    int64_t rows = 0;
    int rc;
    while ((rc = sqlite3_step(d->sel)) == SQLITE_ROW) {
        int64_t size = sqlite3_column_int64(d->sel, 1);
        if (add_room_bytes(s, (const char *)sqlite3_column_text(d->sel, 0),
                           sqlite3_column_bytes(d->sel, 0), -size) < 0) {
            rc = SQLITE_ERROR;
            break;
        }
        rows++;
    }
    sqlite3_reset(d->sel);
    if (rc != SQLITE_DONE) return -1;
    return rows == 0 || run(d->del) == 0 ? rows : -1;
}

static int room_bytes(sqlite_store *s, const char *room, size_t room_len, uint64_t *out)
{
    sqlite3_bind_text(s->st_room_bytes, 1, room, (int)room_len, SQLITE_STATIC);
    int rc = sqlite3_step(s->st_room_bytes);
    *out = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(s->st_room_bytes, 0) : 0;
    sqlite3_reset(s->st_room_bytes);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

/* The count and byte limits, kept on every append: usually one row goes. */
static int apply_limits(sqlite_store *s, const char *room, size_t room_len, uint64_t id)
{
    const store_limits *l = &s->limits;
    if (l->max_per_room && id > l->max_per_room) {
        bind_room(&s->trim_count, room, room_len);
        bind_int(&s->trim_count, 2, (int64_t)(id - l->max_per_room));
        if (delete_rows(s, &s->trim_count) < 0) return -1;
    }
    uint64_t bytes;
    if (l->max_room_bytes) {
        if (room_bytes(s, room, room_len, &bytes) < 0) return -1;
        bind_room(&s->drop_room_oldest, room, room_len);
        while (bytes > l->max_room_bytes) {
            int64_t n = delete_rows(s, &s->drop_room_oldest);
            if (n < 0 || room_bytes(s, room, room_len, &bytes) < 0) return -1;
            if (n == 0) break;      /* nothing left to drop */
        }
    }
    while (l->max_bytes && s->total_bytes > l->max_bytes) {
        int64_t n = delete_rows(s, &s->drop_oldest);
        if (n < 0) return -1;
        if (n == 0) break;
    }
    return 0;
}

static int sq_last_id(void *impl, const char *room, size_t room_len, uint64_t *out)
{
    sqlite_store *s = impl;
    sqlite3_bind_text(s->st_last_id, 1, room, (int)room_len, SQLITE_STATIC);
    int rc = sqlite3_step(s->st_last_id);
    *out = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(s->st_last_id, 0) : 0;
    sqlite3_reset(s->st_last_id);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

/* Identity 0 is none: NULL, which matches no viewer. */
static void bind_ident(sqlite3_stmt *st, int col, uint64_t id)
{
    if (id) sqlite3_bind_int64(st, col, (sqlite3_int64)id);
    else sqlite3_bind_null(st, col);
}

static int insert_row(sqlite_store *s, const char *room, size_t room_len, const store_msg *m)
{
    sqlite3_stmt *st = s->st_insert;
    sqlite3_bind_text(st, 1, room, (int)room_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)m->id);
    sqlite3_bind_int64(st, 3, m->ts);
    sqlite3_bind_int64(st, 4, m->from_uid);
    sqlite3_bind_int64(st, 5, m->to_uid);
    sqlite3_bind_text(st, 6, m->from_name, (int)m->from_name_len, SQLITE_STATIC);
    if (m->to_uid) sqlite3_bind_text(st, 7, m->to_name, (int)m->to_name_len, SQLITE_STATIC);
    else sqlite3_bind_null(st, 7);
    sqlite3_bind_text(st, 8, m->content, (int)m->content_len, SQLITE_STATIC);
    int64_t size = (int64_t)store_msg_bytes(m);
    sqlite3_bind_int64(st, 9, size);
    bind_ident(st, 10, m->to_uid ? m->from_ident : 0);
    bind_ident(st, 11, m->to_uid ? m->to_ident : 0);
    if (run(st) < 0) return -1;
    st = s->st_set_last;
    sqlite3_bind_text(st, 1, room, (int)room_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)m->id);
    sqlite3_bind_int64(st, 3, size);
    if (run(st) < 0) return -1;
    s->total_bytes += (uint64_t)size;
    return 0;
}

/* Whatever went wrong, the transaction's appends are gone together: a
 * half-applied turn would store says nobody was told about. */
static void void_tx(sqlite_store *s)
{
    if (s->in_tx) exec(s, "ROLLBACK");
    s->in_tx = 0;
    s->tx_void = 1;
    load_total(s);
}

static int sq_append(void *impl, const char *room, size_t room_len, const store_msg *m)
{
    sqlite_store *s = impl;
    if (s->tx_void) return -1;
    if (begin(s) < 0 || insert_row(s, room, room_len, m) < 0 ||
        apply_limits(s, room, room_len, m->id) < 0) {
        void_tx(s);
        return -1;
    }
    return 0;
}

static int sq_window(void *impl, const char *room, size_t room_len, uint64_t after_id,
                     unsigned limit, uint64_t viewer, uint64_t *start)
{
    sqlite_store *s = impl;
    sqlite3_stmt *st = s->st_window;
    sqlite3_bind_text(st, 1, room, (int)room_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)after_id);
    bind_ident(st, 3, viewer);
    sqlite3_bind_int64(st, 4, limit);
    int rc = sqlite3_step(st);
    *start = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 0) : after_id;
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

/* id, ts, from_uid, to_uid, from_name, to_name: the columns from `first`
 * on (both versions of the table keep them alike). */
static void read_fields(sqlite3_stmt *st, int first, store_msg *m)
{
    memset(m, 0, sizeof *m);
    m->id = (uint64_t)sqlite3_column_int64(st, first);
    m->ts = sqlite3_column_int64(st, first + 1);
    m->from_uid = (uint32_t)sqlite3_column_int64(st, first + 2);
    m->to_uid = (uint32_t)sqlite3_column_int64(st, first + 3);
    m->from_name = (const char *)sqlite3_column_text(st, first + 4);
    m->from_name_len = (size_t)sqlite3_column_bytes(st, first + 4);
    m->to_name = (const char *)sqlite3_column_text(st, first + 5);
    m->to_name_len = (size_t)sqlite3_column_bytes(st, first + 5);
}

static int sq_range(void *impl, const char *room, size_t room_len, uint64_t after_id,
                    uint64_t viewer, store_each_fn each, void *arg)
{
    sqlite_store *s = impl;
    sqlite3_stmt *st = s->st_range;
    sqlite3_bind_text(st, 1, room, (int)room_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)after_id);
    bind_ident(st, 3, viewer);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        store_msg m;
        read_fields(st, 0, &m);
        m.content = (const char *)sqlite3_column_text(st, 6);
        m.content_len = (size_t)sqlite3_column_bytes(st, 6);
        if (!m.content) m.content = "";
        if (each(arg, &m)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* Forgets identities unused for max_age that no kept message names (their
 * history is gone, so their tokens unlock nothing), then, past
 * max_identities, the least recently used of those without messages: every
 * login without a token makes one, and the table must stay bounded. */
static int trim_identities(sqlite_store *s, int64_t now)
{
    if (s->limits.max_age > 0) {
        sqlite3_bind_int64(s->st_ident_expire, 1, now - s->limits.max_age);
        if (run(s->st_ident_expire) < 0) return -1;
    }
    if (s->limits.max_identities == 0) return 0;
    sqlite3_bind_int64(s->st_ident_cap, 1, s->limits.max_identities);
    return run(s->st_ident_cap);
}

static int sq_ident_find(void *impl, const uint8_t key[STORE_KEY_LEN], int64_t now, uint64_t *id)
{
    sqlite_store *s = impl;
    if (begin(s) < 0) return -1;
    sqlite3_stmt *st = s->st_ident_find;
    sqlite3_bind_blob(st, 1, key, STORE_KEY_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now);
    int rc = sqlite3_step(st), found = rc == SQLITE_ROW;
    if (found) *id = (uint64_t)sqlite3_column_int64(st, 0);
    /* RETURNING's update is done once the statement has run to its end. */
    while (rc == SQLITE_ROW) rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? found : -1;
}

static int sq_ident_add(void *impl, const uint8_t key[STORE_KEY_LEN], int64_t now, uint64_t *id)
{
    sqlite_store *s = impl;
    if (begin(s) < 0) return -1;
    sqlite3_stmt *st = s->st_ident_add;
    sqlite3_bind_blob(st, 1, key, STORE_KEY_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now);
    if (run(st) < 0) return -1;
    *id = (uint64_t)sqlite3_last_insert_rowid(s->db);
    return 0;
}

static int sq_ident_touch(void *impl, uint64_t id, int64_t now)
{
    sqlite_store *s = impl;
    if (begin(s) < 0) return -1;
    sqlite3_bind_int64(s->st_ident_touch, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(s->st_ident_touch, 2, now);
    return run(s->st_ident_touch);
}

static int sq_trim(void *impl, int64_t now)
{
    sqlite_store *s = impl;
    if (s->limits.max_age <= 0 || s->tx_void) return 0;
    if (begin(s) < 0) return -1;
    bind_int(&s->trim_age, 1, now - s->limits.max_age);
    if (delete_rows(s, &s->trim_age) < 0) {
        void_tx(s);
        return -1;
    }
    return trim_identities(s, now);
}

static int sq_remove(void *impl, const char *room, size_t room_len, uint64_t id)
{
    sqlite_store *s = impl;
    if (s->tx_void || id > INT64_MAX || begin(s) < 0) return -1;
    bind_room(&s->remove_one, room, room_len);
    bind_int(&s->remove_one, 2, (int64_t)id);
    int64_t n = delete_rows(s, &s->remove_one);
    if (n < 0) {
        void_tx(s);
        return -1;
    }
    return n > 0;
}

static int sq_commit(void *impl)
{
    sqlite_store *s = impl;
    if (s->tx_void) {
        s->tx_void = 0;
        return -1;
    }
    if (!s->in_tx) return 0;
    if (exec(s, "COMMIT") == 0) {
        s->in_tx = 0;
        return 0;
    }
    void_tx(s);
    s->tx_void = 0;
    return -1;
}

static void sq_close(void *impl)
{
    sqlite_store *s = impl;
    if (!s) return;
    if (s->in_tx) sq_commit(s);
    checkpointer_stop(&s->ck);
    sqlite3_stmt *all[] = { s->st_last_id, s->st_set_last, s->st_insert, s->st_range,
                            s->st_window, s->st_room_bytes, s->st_add_bytes, s->st_total,
                            s->trim_count.sel, s->trim_count.del, s->trim_age.sel, s->trim_age.del,
                            s->drop_room_oldest.sel, s->drop_room_oldest.del,
                            s->drop_oldest.sel, s->drop_oldest.del,
                            s->remove_one.sel, s->remove_one.del,
                            s->st_ident_find, s->st_ident_add, s->st_ident_touch,
                            s->st_ident_expire, s->st_ident_cap };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) sqlite3_finalize(all[i]);
    sqlite3_close(s->db);
    free(s);
}

static const store_ops sqlite_ops = {
    sq_last_id, sq_append, sq_window, sq_range, sq_trim, sq_commit, sq_close,
    sq_ident_find, sq_ident_add, sq_ident_touch, sq_remove,
};

static int prepare(sqlite_store *s, sqlite3_stmt **st, const char *sql)
{
    return sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) == SQLITE_OK ? 0 : -1;
}

static int prepare_identities(sqlite_store *s)
{
    return prepare(s, &s->st_ident_find,
                   "UPDATE identities SET last_used=max(last_used,?2) WHERE key=?1 RETURNING id") ||
        prepare(s, &s->st_ident_add, "INSERT INTO identities(key,last_used) VALUES(?1,?2)") ||
        prepare(s, &s->st_ident_touch, "UPDATE identities SET last_used=max(last_used,?2) WHERE id=?1") ||
        prepare(s, &s->st_ident_expire,
                "DELETE FROM identities WHERE last_used<?1 "
                "AND NOT EXISTS (SELECT 1 FROM messages WHERE from_ident=identities.id) "
                "AND NOT EXISTS (SELECT 1 FROM messages WHERE to_ident=identities.id)") ||
        prepare(s, &s->st_ident_cap,
                "DELETE FROM identities WHERE id IN (SELECT id FROM identities "
                "WHERE NOT EXISTS (SELECT 1 FROM messages WHERE from_ident=identities.id) "
                "AND NOT EXISTS (SELECT 1 FROM messages WHERE to_ident=identities.id) "
                "ORDER BY last_used LIMIT max(0, (SELECT count(*) FROM identities) - ?1))")
        ? -1 : 0;
}

/* The two statements of a deletion, from their common "FROM ... WHERE ...". */
static int prepare_deletion(sqlite_store *s, deletion *d, const char *from_where)
{
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT room, size %s", from_where);
    if (prepare(s, &d->sel, sql) < 0) return -1;
    snprintf(sql, sizeof sql, "DELETE %s", from_where);
    return prepare(s, &d->del, sql);
}

static int prepare_all(sqlite_store *s)
{
    return prepare(s, &s->st_last_id, "SELECT last_id FROM rooms WHERE room=?1") ||
        prepare(s, &s->st_set_last,
                "INSERT INTO rooms(room,last_id,bytes) VALUES(?1,?2,?3) "
                "ON CONFLICT(room) DO UPDATE SET last_id=max(last_id,excluded.last_id),"
                "bytes=bytes+excluded.bytes") ||
        prepare(s, &s->st_insert,
                "INSERT INTO messages(room,id,ts,from_uid,to_uid,from_name,to_name,content,size,"
                "from_ident,to_ident) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)") ||
        prepare(s, &s->st_window,
                "SELECT id FROM messages WHERE room=?1 AND id>?2 AND " VISIBLE_TO_VIEWER
                " ORDER BY id DESC LIMIT 1 OFFSET ?4") ||
        prepare(s, &s->st_range,
                "SELECT id, ts, from_uid, to_uid, from_name, to_name, content FROM messages "
                "WHERE room=?1 AND id>?2 AND " VISIBLE_TO_VIEWER " ORDER BY id") ||
        prepare_deletion(s, &s->trim_age, "FROM messages WHERE ts<?1") ||
        prepare_deletion(s, &s->trim_count, "FROM messages WHERE room=?1 AND id<=?2") ||
        prepare(s, &s->st_room_bytes, "SELECT bytes FROM rooms WHERE room=?1") ||
        prepare(s, &s->st_add_bytes, "UPDATE rooms SET bytes=bytes+?2 WHERE room=?1") ||
        prepare_deletion(s, &s->drop_room_oldest,
                         "FROM messages WHERE room=?1 AND id=(SELECT min(id) FROM messages WHERE room=?1)") ||
        /* the oldest row of all: the first of the ts index */
        prepare_deletion(s, &s->drop_oldest,
                         "FROM messages WHERE (room,id)=(SELECT room,id FROM messages ORDER BY ts LIMIT 1)") ||
        prepare(s, &s->st_total, "SELECT coalesce(sum(bytes),0) FROM rooms") ||
        prepare_deletion(s, &s->remove_one, "FROM messages WHERE room=?1 AND id=?2") ||
        prepare_identities(s)
        ? -1 : 0;
}

/* A damaged file must stop the server, not open as an empty room. */
static int check_integrity(sqlite_store *s, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "PRAGMA quick_check", -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(s->db));
        return -1;
    }
    int rc = sqlite3_step(st);
    int ok = rc == SQLITE_ROW && strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0;
    if (!ok) snprintf(err, errlen, "integrity check failed: %s",
                      rc == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : sqlite3_errmsg(s->db));
    sqlite3_finalize(st);
    return ok ? 0 : -1;
}

static int query_int(sqlite3 *db, const char *sql, int64_t *out)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return -1;
    int rc = sqlite3_step(st);
    *out = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

/* ---- version 1 files ------------------------------------------------------- */

/* Version 1 kept the content as sent: HTML-escaped, with "<br />" before
 * each line break. Escaping turned every '<' of the text into "&lt;", so
 * every "<br />" is one the escaper added: dropping them and decoding the
 * five entities gives the text back exactly. */
static size_t entity_at(const char *s, size_t n, char *ch)
{
    static const struct { const char *from; char to; } ents[] = {
        {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&#039;", '\''},
    };
    for (size_t k = 0; k < sizeof ents / sizeof *ents; k++) {
        size_t el = strlen(ents[k].from);
        if (n >= el && memcmp(s, ents[k].from, el) == 0) {
            *ch = ents[k].to;
            return el;
        }
    }
    return 0;
}

static void unescape_content(const char *s, size_t n, sbuf *out)
{
    for (size_t i = 0; i < n;) {
        if (n - i >= 6 && memcmp(s + i, "<br />", 6) == 0) {
            i += 6;
            continue;
        }
        char ch;
        size_t el = s[i] == '&' ? entity_at(s + i, n - i, &ch) : 0;
        if (el) {
            sbuf_putc(out, ch);
            i += el;
        } else {
            sbuf_putc(out, s[i++]);
        }
    }
}

/* Converts one version 1 row (its content only lives in its JSON). */
static int migrate_row(sqlite_store *s, sqlite3_stmt *old, sbuf *content)
{
    const char *js = (const char *)sqlite3_column_text(old, 7);
    json_t *say = js ? json_loadb(js, (size_t)sqlite3_column_bytes(old, 7), 0, NULL) : NULL;
    json_t *text = json_object_get(say, "content");
    if (!json_is_string(text)) {        /* nothing a client could be shown: left out */
        json_decref(say);
        return 0;
    }
    sbuf_reset(content);
    unescape_content(json_string_value(text), json_string_length(text), content);
    json_decref(say);
    if (content->oom) return -1;
    store_msg m;
    read_fields(old, 1, &m);
    m.content = content->p ? content->p : "";
    m.content_len = content->len;
    return insert_row(s, (const char *)sqlite3_column_text(old, 0),
                      (size_t)sqlite3_column_bytes(old, 0), &m);
}

/* Version 1 to 2, in one transaction: the old messages table is set aside,
 * its rows converted into the new one, the rooms' bytes counted. */
static int migrate_v1(sqlite_store *s, char *err, size_t errlen)
{
    sqlite3_stmt *old = NULL;
    sbuf content;
    sbuf_init(&content);
    int rc = -1;
    if (exec(s, "BEGIN IMMEDIATE;"
                "DROP INDEX IF EXISTS messages_ts;"
                "ALTER TABLE messages RENAME TO messages_v1;"
                "ALTER TABLE rooms ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;") < 0 ||
        exec(s, schema) < 0 || prepare_all(s) < 0 ||
        sqlite3_prepare_v2(s->db, "SELECT room, id, ts, from_uid, to_uid, from_name, to_name, json "
                                  "FROM messages_v1 ORDER BY room, id", -1, &old, NULL) != SQLITE_OK)
        goto out;
    int step;
    while ((step = sqlite3_step(old)) == SQLITE_ROW)
        if (migrate_row(s, old, &content) < 0) goto out;
    if (step != SQLITE_DONE) goto out;
    sqlite3_finalize(old);
    old = NULL;
    /* insert_row counted every row into its room already. */
    if (exec(s, "DROP TABLE messages_v1; COMMIT") == 0) rc = 0;
out:
    if (rc < 0) {
        snprintf(err, errlen, "cannot convert the version 1 history: %s", sqlite3_errmsg(s->db));
        sqlite3_finalize(old);
        exec(s, "ROLLBACK");
    }
    sbuf_free(&content);
    return rc;
}

/* Creates the tables of a new file, or converts an old one. */
static int setup_schema(sqlite_store *s, char *err, size_t errlen)
{
    int64_t version = 0, v1 = 0;
    if (query_int(s->db, "PRAGMA user_version", &version) < 0 ||
        query_int(s->db, "SELECT count(*) FROM pragma_table_info('messages') WHERE name='json'", &v1) < 0) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(s->db));
        return -1;
    }
    if (version > SCHEMA_VERSION) {
        snprintf(err, errlen, "the file was written by a newer tagarela (schema %lld)", (long long)version);
        return -1;
    }
    if (version < SCHEMA_VERSION && v1) return migrate_v1(s, err, errlen);
    if (exec(s, schema) < 0 || prepare_all(s) < 0) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(s->db));
        return -1;
    }
    return 0;
}

void store_limits_defaults(store_limits *l)
{
    l->max_per_room = 10000;
    l->max_age = 30 * 86400;
    l->max_identities = 1000000;
    l->max_room_bytes = 20u << 20;     /* 1000 maximum-size says and then some */
    l->max_bytes = 1u << 30;
}

int store_sqlite_open(store *out, const char *dir, const store_limits *limits,
                      char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tagarela.db", dir);
    if (errlen) *err = '\0';
    sqlite_store *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->limits = *limits;
    int rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s", s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        sq_close(s);
        return -1;
    }
    /* The loop must not wait on a lock held by someone else: fail fast,
     * the says of that turn get "unavailable" and their senders retry. */
    sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
    if (check_integrity(s, err, errlen) < 0 ||
        exec(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                "PRAGMA journal_size_limit=" WAL_KEEP_BYTES) < 0 ||
        setup_schema(s, err, errlen) < 0 || load_total(s) < 0) {
        if (!*err) snprintf(err, errlen, "%s", sqlite3_errmsg(s->db));
        sq_close(s);
        return -1;
    }
    checkpointer_start(&s->ck, s->db, path);
    out->ops = &sqlite_ops;
    out->impl = s;
    return 0;
}
