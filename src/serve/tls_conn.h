/* tls_conn.h -- TLS as a connection's transport (tls_conn.c): the server's
 * certificate and key (loaded at start, reloaded on SIGHUP), and one TLS
 * session per connection driven on the connection's own loop, with no
 * socket of its own: conn.c hands it the bytes it read and asks it to
 * write the queued frames.
 *
 * A tls_server is shared by every loop; a tls_conn belongs to its
 * connection's loop. */
#ifndef TAGARELA_TLS_CONN_H
#define TAGARELA_TLS_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tls_server tls_server;
typedef struct tls_conn tls_conn;
struct conn;

/* Loads the certificate chain and key (PEM), checks that they match and
 * that the certificate is valid now; keylog (NULL: none) is a file the
 * session secrets are appended to (NSS key log format). Returns NULL after
 * saying what is wrong on stderr. */
tls_server *tls_server_new(const char *cert, const char *key, const char *keylog);
/* Loads the same files again; new connections get the new certificate,
 * existing ones keep their sessions. Returns 0, or -1 (logged) with the
 * old certificate still in use. Any thread. */
int tls_server_reload(tls_server *s);
void tls_server_free(tls_server *s);

/* A session for a new connection; NULL when out of memory. */
tls_conn *tls_conn_new(tls_server *s);
void tls_conn_free(tls_conn *t);

enum tls_input {
    TLS_IN_OK,          /* plaintext handed on; more may come */
    TLS_IN_REFUSED,     /* plain HTTP on the TLS port: an answer is queued, close after it */
    TLS_IN_FAILED,      /* bad handshake, alert, bad record or the peer's close_notify */
};
/* Where plaintext goes: conn.c's reader. Returns false once the connection
 * wants no more (closed, closing). */
typedef bool (*tls_plain_fn)(struct conn *c, uint8_t *data, size_t n);
/* Decrypts the bytes c read, handing the plaintext to plain. */
enum tls_input tls_conn_input(struct conn *c, const uint8_t *data, size_t n, tls_plain_fn plain);
/* Handshakes are CPU work: once a loop turn has spent its share on them,
 * the connections still in their handshake are read no more in that turn
 * (the kernel keeps their bytes), so the others' messages go out first. */
struct worker;
void tls_conn_pace(struct worker *w);
/* True when the session has bytes to send (a handshake message, an alert). */
bool tls_conn_wants_write(const tls_conn *t);
/* Encrypts the connection's queue and writes it. Returns true when all is
 * written (the queue is empty), false when a write is still under way or
 * the connection was aborted. */
bool tls_conn_flush(struct conn *c);
/* Bytes encrypted and not yet taken by the socket. */
size_t tls_conn_unsent(const tls_conn *t);

#endif
