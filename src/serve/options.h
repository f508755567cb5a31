/* options.h -- the options of `tagarela serve`, their defaults, parsing
 * and validation. */
#ifndef TAGARELA_CONFIG_H
#define TAGARELA_CONFIG_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include "chat.h"
#include "cluster.h"
#include "proxy.h"

#define CONFIG_MAX_ORIGINS 32
#define CONFIG_MAX_TRUSTED 64

/* docs/proxy.md has the why: twice the contract's 256, so that an office
 * behind one NAT address or a page reconnecting while its old socket
 * closes has headroom, and an eighth of the old 4096 that one host could
 * hold open. */
#define DEFAULT_MAX_CONNS_PER_IP 512
#define CONFIG_MAX_AUTH_KEY 4096        /* bytes of the --auth-key secret */

#define CONFIG_MAX_ADMIN_TOKEN 1024     /* bytes of the --admin-token */

/* The operator's bearer token (--admin-token); len 0: /admin/ is off. */
typedef struct admin_token {
    uint8_t bytes[CONFIG_MAX_ADMIN_TOKEN];
    size_t len;
} admin_token;

typedef struct listen_addr {
    char host[64];
    int port;
} listen_addr;

typedef struct server_config {
    listen_addr ws;
    listen_addr http;
    const char *data_dir;
    uint64_t max_message;           /* bytes; larger messages: close 1009 */
    size_t max_header;              /* bytes of HTTP request headers */
    uint64_t ping_interval_ms;
    uint64_t idle_timeout_ms;
    uint64_t handshake_timeout_ms;
    uint64_t write_timeout_ms;      /* output that makes no progress this long: closed */
    uint64_t message_timeout_ms;    /* a message must be finished this long after it began */
    uint64_t partial_budget;        /* bytes of unfinished messages, all connections */
    size_t outbound_cap;            /* bytes left unwritten after a write before a slow reader is dropped */
    unsigned max_conns_per_ip;      /* per IPv4 address, per IPv6 /64 */
    cidr trusted[CONFIG_MAX_TRUSTED];   /* peers whose PROXY / X-Forwarded-For count */
    int n_trusted;
    unsigned threads;               /* event loops; 0: one per usable core */
    const char *origins[CONFIG_MAX_ORIGINS];
    int n_origins;
    const char *ws_url;             /* announced to the page; NULL: same origin /ws */
    chat_limits chat;               /* chat.auth_key points to auth_key when set */
    store_limits retention;
    uint8_t auth_key[CONFIG_MAX_AUTH_KEY];
    size_t auth_key_len;
    admin_token admin_token;        /* read again on SIGHUP */
    bool deflate;                   /* permessage-deflate offers accepted */
    uint64_t deflate_memory;        /* bytes of clients' kept inflate contexts, all together */
    int log_format;                 /* enum log_format */
    int log_level;                  /* enum log_level */
    cluster_url redis[CLUSTER_MAX_SHARDS];  /* --redis: cluster mode (n_redis 0: none) */
    int n_redis;
    const char *tls_cert, *tls_key; /* PEM files; both set: every listener speaks TLS */
    const char *tls_keylog;         /* NSS key log file; NULL: none */
    struct tls_server *tls;         /* loaded from them at start (serve.c); NULL: plain */
    const char *config_path;        /* --config, or the default file found; NULL: none */
    char *file_text;                /* the config file's text, values point into it */
    int argc;                       /* the command line, kept to parse again on reload */
    char **argv;
} server_config;

#define CONFIG_MAX_FILE (1u << 20)   /* bytes of a config file */
/* Read without --config when it exists ($TAGARELA_CONFIG overrides). */
#define CONFIG_DEFAULT_PATH "/etc/tagarela/tagarela.conf"

void config_defaults(server_config *cfg);
/* Frees what config_parse allocated (the config file's text). */
void config_free(server_config *cfg);

/* Parses the options after "serve": the --config file's first, then the
 * command line over it. Returns 0, 1 when --help, --version or
 * --check-config said all there was to say, or -1 after printing what is
 * wrong to stderr. */
int config_parse(server_config *cfg, int argc, char **argv);

/* "HOST:PORT", "[V6]:PORT" or ":PORT". Returns 0 or -1. */
int config_parse_addr(const char *s, listen_addr *out);

void config_usage(FILE *out);

/* Checks that no combination of the options can overflow a frame or a
 * counter; returns 0, or -1 after saying what is wrong on stderr. */
int config_validate(const server_config *cfg);
/* The longest say frame the server can send under these limits. */
uint64_t config_max_say_frame(const chat_limits *l);

#endif
