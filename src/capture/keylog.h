/* keylog.h -- the NSS key log (SSLKEYLOGFILE) that `capture --keylog` reads:
 * one line per secret, "LABEL <client random, hex> <secret, hex>", written
 * by browsers, OpenSSL's keylog callback and Python's keylog_filename.
 *
 * Sessions are found by their ClientHello random. The file is read at
 * start and again, from where it stopped, when a session is not found: a
 * live capture can follow a key log that is still being written. */
#ifndef TAGARELA_CAPTURE_KEYLOG_H
#define TAGARELA_CAPTURE_KEYLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dict.h"

#define CAP_KEYLOG_MAX_SESSIONS 262144  /* about 70 MB of secrets */
#define CAP_SECRET_MAX 48               /* SHA-384 */

/* The secrets of a session the key log names. */
enum {
    CAP_KL_CLIENT_HS,   /* TLS 1.3 CLIENT_HANDSHAKE_TRAFFIC_SECRET */
    CAP_KL_SERVER_HS,   /* SERVER_HANDSHAKE_TRAFFIC_SECRET */
    CAP_KL_CLIENT_AP,   /* CLIENT_TRAFFIC_SECRET_0 */
    CAP_KL_SERVER_AP,   /* SERVER_TRAFFIC_SECRET_0 */
    CAP_KL_MASTER,      /* TLS 1.2 CLIENT_RANDOM: the master secret */
    CAP_KL_COUNT
};

typedef struct cap_kl_session {
    uint8_t random[32];
    uint8_t len[CAP_KL_COUNT];          /* 0: not in the log */
    uint8_t secret[CAP_KL_COUNT][CAP_SECRET_MAX];
} cap_kl_session;

typedef struct cap_keylog {
    FILE *f;
    const char *path;
    dict by_random;                     /* random -> cap_kl_session */
    cap_kl_session **all;               /* for freeing */
    size_t n, cap;
    uint64_t lines, bad_lines;          /* read, and not understood */
    bool full;                          /* CAP_KEYLOG_MAX_SESSIONS reached */
} cap_keylog;

/* Opens and reads the file. Returns 0, or -1 with a message in err. */
int cap_keylog_open(cap_keylog *k, const char *path, char *err, size_t errlen);
void cap_keylog_close(cap_keylog *k);

/* The session of that ClientHello random with every secret of the mask
 * (bits 1 << CAP_KL_*), reading the lines appended since the last read if
 * it lacks some; NULL when the log does not have them. */
const cap_kl_session *cap_keylog_find(cap_keylog *k, const uint8_t random[32], unsigned need);

/* Parses one line into *s (random and one secret); returns the CAP_KL_*
 * index of the secret, or -1 for a line to skip (comment, blank, a label
 * of no use here, malformed: *bad tells the last). */
int cap_keylog_parse_line(const char *line, cap_kl_session *s, bool *bad);

#endif
