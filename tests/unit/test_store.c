/* test_store.c -- the SQLite history (store_sqlite.c) on real files in a
 * temporary directory: appends and ranges, windows, ids across a reopen,
 * the count, byte and age limits (with the rooms' byte counts kept true),
 * a failed append voiding its whole transaction (the write lock held by
 * another connection), the write-ahead log's bound under steady writes,
 * and the conversion of a version 1 file. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"

typedef struct fixture {
    char dir[64];
    char db[96];
    store st;
    bool open;
} fixture;

static int fx_setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/tagarela-test-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof f->db, "%s/tagarela.db", f->dir);
    *state = f;
    return 0;
}

static void fx_close(fixture *f)
{
    if (!f->open) return;
    f->st.ops->close(f->st.impl);
    f->open = false;
}

static int fx_teardown(void **state)
{
    fixture *f = *state;
    fx_close(f);
    const char *suffix[] = { "", "-wal", "-shm" };
    char path[128];
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s%s", f->db, suffix[i]);
        unlink(path);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static void fx_open(fixture *f, const store_limits *lim)
{
    store_limits l;
    store_limits_defaults(&l);
    char err[256];
    int rc = store_sqlite_open(&f->st, f->dir, lim ? lim : &l, err, sizeof err);
    if (rc != 0) fail_msg("open: %s", err);
    f->open = true;
}

/* The identity a name stands for in these tests (private rows are kept
 * with their parties' identities, and seen by them alone). */
static uint64_t ident_of(const char *name)
{
    return (uint64_t)(unsigned char)name[0] * 1000 + strlen(name);
}

static store_msg say(uint64_t id, const char *from, const char *to, const char *content)
{
    store_msg m = {0};
    m.id = id;
    m.ts = 1407865830 + (int64_t)id;
    m.from_uid = 100;
    m.to_uid = to ? 200 : 0;
    m.from_name = from;
    m.from_name_len = strlen(from);
    m.to_name = to;
    m.to_name_len = to ? strlen(to) : 0;
    m.content = content;
    m.content_len = strlen(content);
    if (to) {
        m.from_ident = ident_of(from);
        m.to_ident = ident_of(to);
    }
    return m;
}

static int append(fixture *f, const char *room, store_msg m)
{
    return f->st.ops->append(f->st.impl, room, strlen(room), &m);
}

/* What a range walk saw. */
typedef struct seen {
    uint64_t ids[64];
    char content[64][64];
    size_t n, stop_after;
} seen;

static int collect(void *arg, const store_msg *m)
{
    seen *s = arg;
    assert_true(s->n < 64);
    s->ids[s->n] = m->id;
    snprintf(s->content[s->n], sizeof s->content[0], "%.*s", (int)m->content_len, m->content);
    s->n++;
    return s->stop_after && s->n == s->stop_after;
}

static seen range(fixture *f, const char *room, uint64_t after, const char *viewer, size_t stop_after)
{
    seen s = { .stop_after = stop_after };
    assert_int_equal(f->st.ops->range(f->st.impl, room, strlen(room), after, ident_of(viewer),
                                      collect, &s), 0);
    return s;
}

static uint64_t window(fixture *f, const char *room, uint64_t after, unsigned limit, const char *viewer)
{
    uint64_t start = 99999;
    assert_int_equal(f->st.ops->window(f->st.impl, room, strlen(room), after, limit,
                                       ident_of(viewer), &start), 0);
    return start;
}

static uint64_t last_id(fixture *f, const char *room)
{
    uint64_t id = 99999;
    assert_int_equal(f->st.ops->last_id(f->st.impl, room, strlen(room), &id), 0);
    return id;
}

static int64_t query(fixture *f, const char *sql)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    int64_t v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* The rooms' byte counts are what their rows add up to. */
static void check_bytes(fixture *f)
{
    assert_int_equal(query(f, "SELECT count(*) FROM rooms WHERE bytes != "
                              "(SELECT coalesce(sum(size),0) FROM messages WHERE messages.room=rooms.room)"), 0);
}

/* ---- tests ------------------------------------------------------------------ */

static void test_append_range_in_order_raw(void **state)
{
    fixture *f = *state;
    fx_open(f, NULL);
    assert_int_equal(last_id(f, "1"), 0);
    assert_int_equal(append(f, "1", say(1, "ana", NULL, "<b>&\"x\"\n")), 0);
    assert_int_equal(append(f, "1", say(2, "ana", "bia", "secret")), 0);
    assert_int_equal(append(f, "1", say(3, "bia", NULL, "three")), 0);
    assert_int_equal(append(f, "two", say(1, "cid", NULL, "elsewhere")), 0);
    assert_int_equal(f->st.ops->commit(f->st.impl), 0);
    seen s = range(f, "1", 0, "cid", 0);
    assert_int_equal(s.n, 2);                   /* the private one is not cid's */
    assert_int_equal(s.ids[0], 1);
    assert_string_equal(s.content[0], "<b>&\"x\"\n");   /* kept raw */
    assert_int_equal(s.ids[1], 3);
    s = range(f, "1", 0, "bia", 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.content[1], "secret");
    s = range(f, "1", 1, "ana", 1);             /* stops when told */
    assert_int_equal(s.n, 1);
    assert_int_equal(s.ids[0], 2);
    assert_int_equal(last_id(f, "1"), 3);
    assert_int_equal(last_id(f, "two"), 1);
    /* the newest 2 for bia begin after 1; for cid after 0 (only 2 visible) */
    assert_int_equal(window(f, "1", 0, 2, "bia"), 1);
    assert_int_equal(window(f, "1", 0, 2, "cid"), 0);
    assert_int_equal(window(f, "1", 0, 1, "cid"), 1);
    assert_int_equal(window(f, "1", 2, 5, "ana"), 2);
    check_bytes(f);
    int64_t want = 0;
    const char *parts[][3] = { {"<b>&\"x\"\n", "ana", ""}, {"secret", "ana", "bia"}, {"three", "bia", ""} };
    for (size_t i = 0; i < 3; i++)
        want += STORE_ROW_BYTES + (int64_t)(strlen(parts[i][0]) + strlen(parts[i][1]) + strlen(parts[i][2]));
    assert_int_equal(query(f, "SELECT bytes FROM rooms WHERE room='1'"), want);
}

static void test_ids_survive_reopen(void **state)
{
    fixture *f = *state;
    fx_open(f, NULL);
    for (uint64_t i = 1; i <= 5; i++) assert_int_equal(append(f, "r", say(i, "a", NULL, "x")), 0);
    assert_int_equal(f->st.ops->commit(f->st.impl), 0);
    fx_close(f);
    fx_open(f, NULL);
    assert_int_equal(last_id(f, "r"), 5);
    /* last_id never goes back, even for an id given out of order */
    assert_int_equal(append(f, "r", say(9, "a", NULL, "x")), 0);
    assert_int_equal(append(f, "r", say(7, "a", NULL, "x")), 0);
    assert_int_equal(f->st.ops->commit(f->st.impl), 0);
    fx_close(f);
    fx_open(f, NULL);
    assert_int_equal(last_id(f, "r"), 9);
}

static void test_count_limit(void **state)
{
    fixture *f = *state;
    store_limits l = { .max_per_room = 3 };
    fx_open(f, &l);
    for (uint64_t i = 1; i <= 10; i++) assert_int_equal(append(f, "r", say(i, "a", NULL, "x")), 0);
    assert_int_equal(f->st.ops->commit(f->st.impl), 0);
    seen s = range(f, "r", 0, "a", 0);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.ids[0], 8);
    check_bytes(f);
}

static void test_room_byte_limit_drops_oldest(void **state)
{
    fixture *f = *state;
    char big[1001];
    memset(big, 'x', 1000);
    big[1000] = '\0';
    /* a row costs 64 + 1000 + 1: three fit in 3300 */
    store_limits l = { .max_room_bytes = 3300 };
    fx_open(f, &l);
    for (uint64_t i = 1; i <= 7; i++) assert_int_equal(append(f, "r", say(i, "a", NULL, big)), 0);
    assert_int_equal(append(f, "other", say(1, "a", NULL, big)), 0);
    assert_int_equal(f->st.ops->commit(f->st.impl), 0);
    seen s = range(f, "r", 0, "a", 0);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.ids[0], 5);
    assert_int_equal(range(f, "other", 0, "a", 0).n, 1);    /* per room */
    assert_true(query(f, "SELECT bytes FROM rooms WHERE room='r'") <= 3300);
    check_bytes(f);
    /* ids go on although the rows went */
    assert_int_equal(last_id(f, "r"), 7);
}

/* The contract: a room keeps at least 1000 maximum-size messages, with the
 * default limits (4096 code points of 4 bytes, names escaped to 6 bytes
 * a code point, private). */
static void test_defaults_keep_1000_maximum_messages(void **state)
{
    fixture *f = *state;
    fx_open(f, NULL);
    char *content = malloc(4096 * 4 + 1);
    assert_non_null(content);
    for (size_t i = 0; i < 4096; i++) memcpy(content + 4 * i, "\xF0\x9F\x98\x80", 4);
    content[4096 * 4] = '\0';
    char name[32 * 6 + 1] = "";
    for (size_t i = 0; i < 32; i++) strcat(name, "&quot;");
    for (uint64_t i = 1; i <= 1001; i++) {
        assert_int_equal(append(f, "r", say(i, name, name, content)), 0);
        if (i % 100 == 0) assert_int_equal(f->st.ops->commit(f->st.impl), 0);
    }
    assert_int_equal(f->st.ops->commit(f->st.impl), 0);
    assert_true(query(f, "SELECT count(*) FROM messages") >= 1000);
    free(content);
}

static void test_total_byte_limit_drops_oldest_of_all(void **state)
{
    fixture *f = *state;
    char big[1001];
    memset(big, 'y', 1000);
    big[1000] = '\0';
    store_limits l = { .max_bytes = 4300 };    /* four rows of 1065 */
    fx_open(f, &l);
    /* ts follows id (say()): a's rows 1..3 are older than b's 10..13 */
    for (uint64_t i = 1; i <= 3; i++) assert_int_equal(append(f, "a", say(i, "a", NULL, big)), 0);
    for (uint64_t i = 10; i <= 13; i++) assert_int_equal(append(f, "b", say(i, "a", NULL, big)), 0);
    assert_int_equal(f->st.ops->commit(f->st.impl), 0);
    assert_int_equal(range(f, "a", 0, "a", 0).n, 0);
    assert_int_equal(range(f, "b", 0, "a", 0).n, 4);
    assert_true(query(f, "SELECT sum(bytes) FROM rooms") <= 4300);
    check_bytes(f);
    /* the total is counted again from the file when it opens */
    fx_close(f);
    fx_open(f, &l);
    assert_int_equal(append(f, "a", say(14, "a", NULL, big)), 0);  /* newest */
    assert_int_equal(f->st.ops->commit(f->st.impl), 0);
    seen s = range(f, "b", 0, "a", 0);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.ids[0], 11);
    check_bytes(f);
}

static void test_age_limit_keeps_counts(void **state)
{
    fixture *f = *state;
    store_limits l = { .max_age = 100 };
    fx_open(f, &l);
    for (uint64_t i = 1; i <= 6; i++) assert_int_equal(append(f, "r", say(i, "a", NULL, "old")), 0);
    assert_int_equal(f->st.ops->commit(f->st.impl), 0);
    /* say() dates id i at T+i: now T+104 keeps those of T+4 and later */
    assert_int_equal(f->st.ops->trim(f->st.impl, 1407865830 + 104), 0);
    assert_int_equal(f->st.ops->commit(f->st.impl), 0);
    seen s = range(f, "r", 0, "a", 0);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.ids[0], 4);
    check_bytes(f);
}

static void test_failed_append_voids_the_transaction(void **state)
{
    fixture *f = *state;
    fx_open(f, NULL);
    assert_int_equal(append(f, "r", say(1, "a", NULL, "kept")), 0);
    assert_int_equal(f->st.ops->commit(f->st.impl), 0);
    /* this transaction's first append is in; then someone holds the lock */
    assert_int_equal(append(f, "r", say(2, "a", NULL, "lost")), 0);
    sqlite3 *other;
    assert_int_equal(sqlite3_open(f->db, &other), SQLITE_OK);
    /* our transaction holds the write lock: the other one cannot start... */
    assert_int_equal(f->st.ops->commit(f->st.impl), 0);
    assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    /* ...and now it is ours that cannot: busy fails fast */
    assert_int_equal(append(f, "r", say(3, "a", NULL, "lost")), -1);
    assert_int_equal(append(f, "r", say(4, "a", NULL, "lost too")), -1);
    assert_int_equal(f->st.ops->commit(f->st.impl), -1);
    assert_int_equal(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    /* afterwards all is well again, and what failed is not there */
    assert_int_equal(append(f, "r", say(3, "a", NULL, "again")), 0);
    assert_int_equal(f->st.ops->commit(f->st.impl), 0);
    seen s = range(f, "r", 0, "a", 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.content[2], "again");
    assert_int_equal(last_id(f, "r"), 3);
    check_bytes(f);
}

static void test_failed_append_loses_its_earlier_siblings(void **state)
{
    fixture *f = *state;
    fx_open(f, NULL);
    assert_int_equal(append(f, "r", say(1, "a", NULL, "in a lost turn")), 0);
    /* a duplicate id: the insert fails, the turn is gone whole */
    assert_int_equal(append(f, "r", say(1, "a", NULL, "dup")), -1);
    assert_int_equal(append(f, "r", say(2, "a", NULL, "after")), -1);
    assert_int_equal(f->st.ops->commit(f->st.impl), -1);
    assert_int_equal(last_id(f, "r"), 0);
    assert_int_equal(range(f, "r", 0, "a", 0).n, 0);
    assert_int_equal(append(f, "r", say(1, "a", NULL, "next turn")), 0);
    assert_int_equal(f->st.ops->commit(f->st.impl), 0);
    assert_int_equal(last_id(f, "r"), 1);
    check_bytes(f);
}

static void exec_on(const char *path, const char *sql)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) fail_msg("%s", err);
    sqlite3_close(db);
}

static void test_version_1_file_is_converted(void **state)
{
    fixture *f = *state;
    exec_on(f->db,
        "PRAGMA journal_mode=WAL;"
        "CREATE TABLE rooms (room TEXT PRIMARY KEY, last_id INTEGER NOT NULL) WITHOUT ROWID;"
        "CREATE TABLE messages (room TEXT NOT NULL, id INTEGER NOT NULL, ts INTEGER NOT NULL,"
        "  from_uid INTEGER NOT NULL, to_uid INTEGER NOT NULL, from_name TEXT, to_name TEXT,"
        "  json TEXT NOT NULL, PRIMARY KEY (room, id)) WITHOUT ROWID;"
        "CREATE INDEX messages_ts ON messages(ts);"
        "INSERT INTO rooms VALUES ('1', 12);"
        "INSERT INTO messages VALUES ('1', 10, 1407865830, 5, 0, 'ana', NULL,"
        "  '{\"type\":\"say\",\"from_uid\":5,\"to_uid\":\"all\",\"content\":\"&lt;br /&gt; a&amp;b &quot;&#039;<br />\\n"
        "x<br />\\r\\n\",\"time\":\"2014-08-12 17:50:30\",\"id\":10}');"
        "INSERT INTO messages VALUES ('1', 11, 1407865831, 5, 6, 'ana', 'bia',"
        "  '{\"type\":\"say\",\"from_uid\":5,\"to_uid\":6,\"content\":\"p\",\"time\":\"2014-08-12 17:50:31\",\"id\":11}');"
        "INSERT INTO messages VALUES ('1', 12, 1407865832, 5, 0, NULL, NULL, 'not json');");
    fx_open(f, NULL);
    assert_int_equal(query(f, "PRAGMA user_version"), 2);
    seen s = range(f, "1", 0, "bia", 0);
    /* the broken row is left out; the private one kept no identities in
     * version 1 (it was matched by name) and is replayed to no one */
    assert_int_equal(s.n, 1);
    assert_string_equal(s.content[0], "<br /> a&b \"'\nx\r\n");
    assert_int_equal(range(f, "1", 0, "cid", 0).n, 1);
    assert_int_equal(query(f, "SELECT count(*) FROM messages WHERE to_uid<>0 AND content='p'"), 1);
    assert_int_equal(last_id(f, "1"), 12);
    check_bytes(f);
    /* the old table is gone, the ts index is the new table's */
    assert_int_equal(query(f, "SELECT count(*) FROM sqlite_master WHERE name='messages_v1'"), 0);
    assert_int_equal(query(f, "SELECT count(*) FROM sqlite_master WHERE name='messages_ts' "
                              "AND tbl_name='messages'"), 1);
    /* and a second open leaves it as it is */
    fx_close(f);
    fx_open(f, NULL);
    assert_int_equal(range(f, "1", 0, "bia", 0).n, 1);
}

static long file_size(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return 0;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fclose(fp);
    return n;
}

/* A writer that never pauses leaves the checkpoint thread always one
 * transaction behind, so the log never starts over on its own: the
 * writer must then catch up itself, or the log grows without end (CI
 * saw 19 MB after 24 MB of says). */
static void test_the_log_stays_bounded_under_steady_writes(void **state)
{
    fixture *f = *state;
    store_limits l = {0};
    fx_open(f, &l);
    static char body[4001];
    memset(body, 'x', sizeof body - 1);
    char wal[128];
    snprintf(wal, sizeof wal, "%s-wal", f->db);
    long biggest = 0;
    uint64_t id = 0;
    for (int tx = 0; tx < 150; tx++) {          /* 30 MB, 200 KB a turn */
        for (int i = 0; i < 50; i++) assert_int_equal(append(f, "r", say(++id, "a", NULL, body)), 0);
        assert_int_equal(f->st.ops->commit(f->st.impl), 0);
        long n = file_size(wal);
        if (n > biggest) biggest = n;
    }
    if (biggest >= STORE_WAL_BOUND) fail_msg("the log grew to %ld bytes", biggest);
    assert_int_equal(last_id(f, "r"), id);
}

static void test_newer_file_is_refused(void **state)
{
    fixture *f = *state;
    exec_on(f->db, "CREATE TABLE x (a); PRAGMA user_version=99;");
    store_limits l;
    store_limits_defaults(&l);
    char err[256];
    assert_int_equal(store_sqlite_open(&f->st, f->dir, &l, err, sizeof err), -1);
    assert_non_null(strstr(err, "newer"));
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_append_range_in_order_raw),
        T(test_ids_survive_reopen),
        T(test_count_limit),
        T(test_room_byte_limit_drops_oldest),
        T(test_defaults_keep_1000_maximum_messages),
        T(test_total_byte_limit_drops_oldest_of_all),
        T(test_age_limit_keeps_counts),
        T(test_failed_append_voids_the_transaction),
        T(test_failed_append_loses_its_earlier_siblings),
        T(test_version_1_file_is_converted),
        T(test_the_log_stays_bounded_under_steady_writes),
        T(test_newer_file_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
