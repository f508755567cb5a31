/* fuzz_chat.c -- libFuzzer target: the chat module (chat.c) driven by up to
 * eight fake connections that connect, send text or binary messages and go,
 * in the order the input says, with history in a real SQLite store.
 *
 * Beyond "no crash, no leak": every message the chat makes is one valid
 * JSON object with a "type" string, nothing is sent to a connection that is
 * gone, and every message is released exactly once. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat.h"
#include "store.h"
#include "utf8.h"

#define SLOTS 8

typedef struct fmsg {
    size_t n;
    char json[];
} fmsg;

static int slot_alive[SLOTS];
static long live_msgs;

static void *msg_new(void *ctx, const char *json, size_t n)
{
    json_error_t err;
    /* "\u0000" is valid JSON and a valid code point of content */
    json_t *v = json_loadb(json, n, JSON_ALLOW_NUL, &err);
    if (!v || !json_is_object(v) || !json_is_string(json_object_get(v, "type"))) abort();
    json_decref(v);
    if (!utf8_valid((const uint8_t *)json, n)) abort();
    fmsg *m = malloc(sizeof *m + n);
    if (!m) abort();
    m->n = n;
    memcpy(m->json, json, n);
    live_msgs++;
    return m;
}

static void msg_send(void *ctx, void *conn, void *msg)
{
    int slot = (int)(intptr_t)conn;
    if (slot < 0 || slot >= SLOTS || !slot_alive[slot] || !msg) abort();
}

static void msg_release(void *ctx, void *msg)
{
    live_msgs--;
    free(msg);
}

static store *open_store(void)
{
    static store st;
    char dir[] = "/tmp/tagarela-fuzz-chat-XXXXXX";
    if (!mkdtemp(dir)) abort();
    store_limits lim = {.max_per_room = 200, .max_age = 0, .max_room_bytes = 4096, .max_bytes = 16384};
    char err[256];
    if (store_sqlite_open(&st, dir, &lim, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        abort();
    }
    return &st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static store *st;
    if (!st) st = open_store();
    chat_limits lim;
    chat_limits_defaults(&lim);
    lim.max_name = 8;
    lim.max_content = 64;
    lim.chunk_bytes = 400;     /* history and user lists in pieces */
    chat_io io = {NULL, msg_new, msg_send, msg_release, NULL};
    chat *c = chat_new(&lim, &io, 1000, st);
    if (!c) abort();
    chat_user *users[SLOTS] = {0};
    uint64_t now = 1407865830000ULL;
    size_t i = 0;
    /* Records: an op byte (low 3 bits: the slot; next 2: what), then for a
     * text message a length byte and that many bytes. */
    while (i < size) {
        uint8_t op = data[i++];
        int slot = op & 7;
        now += 250;
        switch ((op >> 3) & 3) {
        case 0:
            if (users[slot]) break;
            slot_alive[slot] = 1;
            users[slot] = chat_connect(c, (void *)(intptr_t)slot, &op, 1);
            if (!users[slot]) abort();
            break;
        case 1: {
            if (i >= size) break;
            size_t n = data[i++];
            if (n > size - i) n = size - i;
            const char *text = (const char *)data + i;
            i += n;
            /* The server hands the chat valid UTF-8 only. */
            if (users[slot] && utf8_valid((const uint8_t *)text, n)) chat_text(c, users[slot], text, n, now);
            break;
        }
        case 2:
            if (users[slot]) chat_binary(c, users[slot]);
            break;
        case 3:
            if (!users[slot]) break;
            chat_disconnect(c, users[slot], now, 0);
            users[slot] = NULL;
            slot_alive[slot] = 0;
            break;
        }
        /* The turn's end: its says committed, its output handed over. */
        chat_end_turn(c);
    }
    for (int s = 0; s < SLOTS; s++)
        if (users[s]) {
            chat_disconnect(c, users[s], now, 1);
            slot_alive[s] = 0;
        }
    chat_free(c);
    if (live_msgs != 0) abort();
    return 0;
}
