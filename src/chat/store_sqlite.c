/* store_sqlite.c -- chat history in SQLite: WAL journal, prepared
 * statements, appends grouped into one transaction per loop turn (the
 * server commits before it writes that turn's output to any socket), and
 * checkpoints on a thread of their own. */
#include "store.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* WAL pages (4 KiB) after which a checkpoint is asked for, as SQLite's
 * own automatic checkpoint would; ten times that and the writer does it
 * itself, so the WAL stays bounded even if the thread falls behind. */
#define CHECKPOINT_PAGES 1000
#define CHECKPOINT_FORCE_PAGES (10 * CHECKPOINT_PAGES)

/* A checkpoint writes the WAL back and fsyncs: tens of milliseconds the
 * event loop must not wait for. This thread does it on its own
 * connection while the loop goes on appending. */
typedef struct checkpointer {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool started, wanted, stop;
    char path[4096];
} checkpointer;

typedef struct sqlite_store {
    sqlite3 *db;
    store_limits limits;
    int in_tx;
    sqlite3_stmt *st_last_id, *st_set_last, *st_insert, *st_range;
    sqlite3_stmt *st_trim_count, *st_trim_age;
    sqlite3_stmt *st_ident_find, *st_ident_add, *st_ident_touch, *st_ident_expire, *st_ident_cap;
    checkpointer ck;
} sqlite_store;

static const char schema[] =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=NORMAL;"
    "CREATE TABLE IF NOT EXISTS rooms ("
    "  room TEXT PRIMARY KEY, last_id INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS messages ("
    "  room TEXT NOT NULL, id INTEGER NOT NULL, ts INTEGER NOT NULL,"
    "  from_uid INTEGER NOT NULL, to_uid INTEGER NOT NULL,"
    "  from_name TEXT, to_name TEXT, json TEXT NOT NULL,"
    "  PRIMARY KEY (room, id)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS messages_ts ON messages(ts);";

/* Identities, added to databases of earlier versions too: their private
 * rows get no parties' identities and so are replayed to no one (they were
 * matched by name, which anyone can take). AUTOINCREMENT: an id is never
 * given twice, or a new identity could inherit a forgotten one's history. */
static const char identity_schema[] =
    "CREATE TABLE IF NOT EXISTS identities ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT, key BLOB NOT NULL UNIQUE,"
    "  last_used INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS identities_last_used ON identities(last_used);"
    "CREATE INDEX IF NOT EXISTS messages_from_ident ON messages(from_ident)"
    "  WHERE from_ident IS NOT NULL;"
    "CREATE INDEX IF NOT EXISTS messages_to_ident ON messages(to_ident)"
    "  WHERE to_ident IS NOT NULL;";

static int has_column(sqlite3 *db, const char *table, const char *column)
{
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT 1 FROM pragma_table_info('%s') WHERE name='%s'", table, column);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return -1;
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* Brings the messages table to the identity schema, in one transaction. */
static int migrate_identities(sqlite3 *db)
{
    int has = has_column(db, "messages", "from_ident");
    if (has < 0) return -1;
    if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) return -1;
    if ((!has && sqlite3_exec(db, "ALTER TABLE messages ADD COLUMN from_ident INTEGER;"
                                  "ALTER TABLE messages ADD COLUMN to_ident INTEGER;",
                              NULL, NULL, NULL) != SQLITE_OK) ||
        sqlite3_exec(db, identity_schema, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    return 0;
}

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
        pthread_mutex_unlock(&ck->lock);
        /* PASSIVE: copies what it can without waiting for anyone. */
        if (db) sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        pthread_mutex_lock(&ck->lock);
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
    if (pages >= CHECKPOINT_FORCE_PAGES || !ck->started) {
        if (pages >= CHECKPOINT_PAGES)
            sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        return SQLITE_OK;
    }
    if (pages >= CHECKPOINT_PAGES) {
        pthread_mutex_lock(&ck->lock);
        ck->wanted = true;
        pthread_cond_signal(&ck->wake);
        pthread_mutex_unlock(&ck->lock);
    }
    return SQLITE_OK;
}

static void checkpointer_start(checkpointer *ck, sqlite3 *db, const char *path)
{
    pthread_mutex_init(&ck->lock, NULL);
    pthread_cond_init(&ck->wake, NULL);
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

static int sq_append(void *impl, const char *room, size_t room_len, const store_msg *m)
{
    sqlite_store *s = impl;
    if (begin(s) < 0) return -1;
    sqlite3_stmt *st = s->st_insert;
    sqlite3_bind_text(st, 1, room, (int)room_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)m->id);
    sqlite3_bind_int64(st, 3, m->ts);
    sqlite3_bind_int64(st, 4, m->from_uid);
    sqlite3_bind_int64(st, 5, m->to_uid);
    sqlite3_bind_text(st, 6, m->from_name, (int)m->from_name_len, SQLITE_STATIC);
    if (m->to_uid) sqlite3_bind_text(st, 7, m->to_name, (int)m->to_name_len, SQLITE_STATIC);
    else sqlite3_bind_null(st, 7);
    sqlite3_bind_text(st, 8, m->json, (int)m->json_len, SQLITE_STATIC);
    bind_ident(st, 9, m->to_uid ? m->from_ident : 0);
    bind_ident(st, 10, m->to_uid ? m->to_ident : 0);
    if (run(st) < 0) return -1;
    st = s->st_set_last;
    sqlite3_bind_text(st, 1, room, (int)room_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)m->id);
    if (run(st) < 0) return -1;
    /* The count limit is kept on every append: a range delete on the
     * primary key, usually of one row. */
    if (s->limits.max_per_room == 0 || m->id <= s->limits.max_per_room) return 0;
    st = s->st_trim_count;
    sqlite3_bind_text(st, 1, room, (int)room_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)(m->id - s->limits.max_per_room));
    return run(st);
}

static int sq_range(void *impl, const char *room, size_t room_len, uint64_t after_id,
                    unsigned limit, uint64_t viewer, store_each_fn each, void *arg)
{
    sqlite_store *s = impl;
    sqlite3_stmt *st = s->st_range;
    sqlite3_bind_text(st, 1, room, (int)room_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)after_id);
    bind_ident(st, 3, viewer);
    sqlite3_bind_int64(st, 4, limit);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        store_msg m = {0};
        m.json = (const char *)sqlite3_column_text(st, 0);
        m.json_len = (size_t)sqlite3_column_bytes(st, 0);
        m.from_name = (const char *)sqlite3_column_text(st, 1);
        m.from_name_len = (size_t)sqlite3_column_bytes(st, 1);
        m.to_name = (const char *)sqlite3_column_text(st, 2);
        m.to_name_len = (size_t)sqlite3_column_bytes(st, 2);
        each(arg, &m);
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
    if (begin(s) < 0) return -1;
    if (s->limits.max_age > 0) {
        sqlite3_bind_int64(s->st_trim_age, 1, now - s->limits.max_age);
        if (run(s->st_trim_age) < 0) return -1;
    }
    return trim_identities(s, now);
}

static int sq_commit(void *impl)
{
    sqlite_store *s = impl;
    if (!s->in_tx) return 0;
    s->in_tx = 0;
    if (exec(s, "COMMIT") == 0) return 0;
    exec(s, "ROLLBACK");
    return -1;
}

static void sq_close(void *impl)
{
    sqlite_store *s = impl;
    if (!s) return;
    sq_commit(s);
    checkpointer_stop(&s->ck);
    sqlite3_stmt *all[] = { s->st_last_id, s->st_set_last, s->st_insert, s->st_range,
                            s->st_trim_count, s->st_trim_age, s->st_ident_find,
                            s->st_ident_add, s->st_ident_touch, s->st_ident_expire, s->st_ident_cap };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) sqlite3_finalize(all[i]);
    sqlite3_close(s->db);
    free(s);
}

static const store_ops sqlite_ops = {
    sq_last_id, sq_append, sq_range, sq_trim, sq_commit, sq_close,
    sq_ident_find, sq_ident_add, sq_ident_touch,
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

static int prepare_all(sqlite_store *s)
{
    return prepare(s, &s->st_last_id, "SELECT last_id FROM rooms WHERE room=?1") ||
        prepare(s, &s->st_set_last,
                "INSERT INTO rooms(room,last_id) VALUES(?1,?2) "
                "ON CONFLICT(room) DO UPDATE SET last_id=max(last_id,excluded.last_id)") ||
        prepare(s, &s->st_insert,
                "INSERT INTO messages(room,id,ts,from_uid,to_uid,from_name,to_name,json,"
                "from_ident,to_ident) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)") ||
        prepare(s, &s->st_range,
                "SELECT json, from_name, to_name FROM (SELECT id, json, from_name, to_name "
                "FROM messages WHERE room=?1 AND id>?2 "
                "AND (to_uid=0 OR from_ident=?3 OR to_ident=?3) ORDER BY id DESC LIMIT ?4) ORDER BY id") ||
        prepare(s, &s->st_trim_age, "DELETE FROM messages WHERE ts<?1") ||
        prepare(s, &s->st_trim_count, "DELETE FROM messages WHERE room=?1 AND id<=?2") ||
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

void store_limits_defaults(store_limits *l)
{
    l->max_per_room = 10000;
    l->max_age = 30 * 86400;
    l->max_identities = 1000000;
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
    sqlite3_busy_timeout(s->db, 2000);
    if (check_integrity(s, err, errlen) < 0) {
        sq_close(s);
        return -1;
    }
    if (sqlite3_exec(s->db, schema, NULL, NULL, NULL) != SQLITE_OK || migrate_identities(s->db) < 0 ||
        prepare_all(s) < 0) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(s->db));
        sq_close(s);
        return -1;
    }
    checkpointer_start(&s->ck, s->db, path);
    out->ops = &sqlite_ops;
    out->impl = s;
    return 0;
}
