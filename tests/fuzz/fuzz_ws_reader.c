/* fuzz_ws_reader.c -- libFuzzer target: client bytes into the server's frame
 * reader (ws_codec.c), cut into pieces the input chooses. Each input is
 * read twice: plain, then with permessage-deflate agreed (src/deflate's
 * inflater; window and context takeover from the first byte), so RSV1
 * messages go through the bounded inflater.
 *
 * Beyond "no crash, no leak": every message handed up is within the size
 * limit, text is valid UTF-8, control payloads are at most 125 bytes, and a
 * close frame's payload is one ws_close_parse() accepts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"
#include "ws_codec.h"
#include "ws_deflate.h"

#define MAX_MESSAGE 4096

static int on_message(void *ud, uint8_t opcode, uint8_t *data, size_t n)
{
    if (n > MAX_MESSAGE) abort();
    if (opcode == WS_OP_TEXT && !utf8_valid(data, n)) abort();
    if (opcode != WS_OP_TEXT && opcode != WS_OP_BINARY) abort();
    return 0;
}

static int on_control(void *ud, uint8_t opcode, uint8_t *data, size_t n)
{
    if (n > 125 || !ws_is_control(opcode)) abort();
    if (opcode == WS_OP_CLOSE) {
        unsigned code;
        const uint8_t *reason;
        size_t rlen;
        if (ws_close_parse(data, n, &code, &reason, &rlen) != 0) abort();
        return 1;               /* the server stops reading after a close */
    }
    return 0;
}

/* One pass over the input; inf NULL: no extension agreed. */
static void run(const uint8_t *data, size_t size, size_t piece, ws_inflater *inf)
{
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return;
    memcpy(copy, data, size);   /* the reader unmasks in place */
    ws_reader r;
    ws_reader_init(&r, MAX_MESSAGE);
    if (inf) ws_reader_set_inflate(&r, ws_inflate, inf);
    ws_reader_cb cb = {on_message, on_control};
    for (size_t off = 0; off < size;) {
        size_t n = size - off < piece ? size - off : piece;
        size_t used = 0;
        int rc = ws_reader_feed(&r, copy + off, n, &cb, NULL, &used);
        if (rc != 0) {
            if (rc != WS_READER_STOP && rc != 1002 && rc != 1007 && rc != 1009) abort();
            if (rc == WS_READER_STOP && used > n) abort();
            break;
        }
        /* the inflated message never held more than the limit allows */
        if (ws_reader_held(&r) > MAX_MESSAGE + 1 && inf) abort();
        off += n;
    }
    ws_reader_free(&r);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    /* The first byte is the size of the pieces the rest arrives in. */
    size_t piece = data[0] ? data[0] : 65536;
    run(data + 1, size - 1, piece, NULL);
    ws_inflater inf;
    ws_inflater_init(&inf, (uint8_t)(9 + data[0] % 7), data[0] & 1);
    run(data + 1, size - 1, piece, &inf);
    ws_inflater_free(&inf);
    return 0;
}
