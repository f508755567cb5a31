/* options.c -- the options of `tagarela serve` from the command line and
 * the --config file, their defaults, and the start-up check that no
 * combination of them can overflow a frame or a counter. */
#include "options.h"
#include "log.h"
#include "sys.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ws_codec.h"

/* The largest say a client may need to send: the contract's 4096 code
 * points of content, each written in JSON as the longest escape there is,
 * a surrogate pair "\ud83d\ude00" (12 bytes for one code point): 49,152
 * bytes. The rest of the object ({"type":"say","to_uid":...,"content":""},
 * or a login's name of 32 escaped code points, room id and token) is a few
 * hundred bytes. 64 KiB holds that with room to spare and caps what one
 * message may pin in memory at 1/16 of the old 1 MiB. */
#define DEFAULT_MAX_MESSAGE (64u << 10)

/* Bytes a say of the largest content needs once the server has escaped it:
 * a line break becomes "<br />\n" (8 bytes in JSON), a quote "&#039;" (6):
 * at most 8 bytes per code point. Names (in history with history_names)
 * escape to at most 6 per code point. The rest is keys, uids, time, id. */
#define SAY_ESCAPED_PER_CP 8u
#define NAME_ESCAPED_PER_CP 6u
#define SAY_ENVELOPE 256u

void config_defaults(server_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->ws.host, sizeof cfg->ws.host, "0.0.0.0");
    cfg->ws.port = 7272;
    snprintf(cfg->http.host, sizeof cfg->http.host, "0.0.0.0");
    cfg->http.port = 55151;
    cfg->data_dir = "./data";
    cfg->max_message = DEFAULT_MAX_MESSAGE;
    cfg->max_header = 8192;
    cfg->ping_interval_ms = 25000;
    cfg->idle_timeout_ms = 60000;
    cfg->handshake_timeout_ms = 10000;
    cfg->write_timeout_ms = 30000;
    cfg->message_timeout_ms = 10000;
    cfg->partial_budget = 64 << 20;
    cfg->outbound_cap = 4 << 20;
    cfg->max_conns_per_ip = DEFAULT_MAX_CONNS_PER_IP;
    chat_limits_defaults(&cfg->chat);
    store_limits_defaults(&cfg->retention);
    cfg->deflate = true;
    cfg->deflate_memory = 256u << 20;
    cfg->log_format = LOG_LOGFMT;
    cfg->log_level = LOG_INFO;
}

void config_usage(FILE *out)
{
    fprintf(out,
        "usage: tagarela serve [options]\n"
        "\n"
        "  --ws HOST:PORT             WebSocket listener (default 0.0.0.0:7272; port 0: any free port)\n"
        "  --http HOST:PORT           web page listener, also WebSocket on /ws (default 0.0.0.0:55151)\n"
        "  --data DIR                 data directory, created if missing (default ./data)\n"
        "  --max-message BYTES        largest message a client may send; larger: close 1009 (default 65536)\n"
        "  --max-header BYTES         largest HTTP request head; larger: 431 (default 8192)\n"
        "  --max-name N               longest name, in code points (default 32)\n"
        "  --max-content N            longest message content, in code points (default 4096)\n"
        "  --rate N                   messages per second a client may send, sustained (default 50)\n"
        "  --burst N                  messages a client may send at once (default 100)\n"
        "  --ping-interval SEC        ping connections idle this long (default 25)\n"
        "  --idle-timeout SEC         close connections silent this long, code 1008 (default 60)\n"
        "  --handshake-timeout SEC    close connections whose HTTP request is not done by then (default 10)\n"
        "  --write-timeout SEC        close a client whose output makes no progress this long (default 30)\n"
        "  --message-timeout SEC      close a client that has not finished a message this long after its\n"
        "                             first byte, code 1008 (default 10)\n"
        "  --partial-budget BYTES     memory for unfinished messages, all clients together; past it the\n"
        "                             client growing one is closed with 1008 (default 67108864)\n"
        "  --outbound-cap BYTES       bytes still unwritten to a client, after the server has tried to\n"
        "                             write, before it is closed with 1008 (default 4194304)\n"
        "  --max-conns-per-ip N       connections from one address, IPv6 counted by /64 (default 512)\n"
        "  --trusted-proxy CIDR       take the client address from the PROXY protocol or\n"
        "                             X-Forwarded-For of these peers only (repeatable; default: none)\n"
        "  --threads N                event loops serving connections (default: one per usable core)\n"
        "  --origin ORIGIN            allow only this Origin (repeatable; default: any)\n"
        "  --ws-url URL               WebSocket URL the page connects to (default: its own origin, /ws)\n"
        "  --history N                messages replayed to a client after it logs in (default 50)\n"
        "  --resume-cap N             most messages replayed after a login's last_id (default 1000)\n"
        "  --keep-messages N          messages kept per room, 0: no limit (default 10000)\n"
        "  --keep-days DAYS           days a message is kept, 0: no limit (default 30)\n"
        "  --keep-identities N        session identities kept beyond those named by kept\n"
        "                             messages, least recently used out first, 0: no limit (default 1000000)\n"
        "  --auth-key FILE            logins must carry a JWT signed (HS256) with the secret in FILE\n"
        "                             (see docs/identity.md)\n"
        "  --history-room-bytes BYTES history bytes kept per room, oldest dropped first,\n"
        "                             0: no limit (default 20971520)\n"
        "  --history-bytes BYTES      history bytes kept in all rooms, oldest dropped first,\n"
        "                             0: no limit (default 1073741824)\n"
        "  --rooms-per-minute N       rooms one address may bring up a minute, 0: no limit (default 30)\n"
        "  --redis URL                cluster mode: every server with the same Redis is one chat\n"
        "                             (redis://[:password@]host[:port][/db] or unix:///path; repeat\n"
        "                             it or give a comma list to shard rooms; see docs/cluster.md)\n"
        "  --admin-token FILE         serve the operator's API under /admin/ on the web port to\n"
        "                             requests bearing the token in FILE (default: off)\n"
        "  --deflate on|off           accept permessage-deflate (RFC 7692) offers (default on;\n"
        "                             see docs/deflate.md)\n"
        "  --no-deflate               the same as --deflate off\n"
        "  --deflate-memory BYTES     memory for clients' compression contexts (context takeover),\n"
        "                             all together; past it new clients are asked to keep none\n"
        "                             (default 268435456)\n"
        "  --tls-cert FILE            certificate chain (PEM, the server's first, as certbot's\n"
        "                             fullchain.pem): both listeners speak TLS (https, wss); SIGHUP\n"
        "                             reloads it (see docs/tls.md)\n"
        "  --tls-key FILE             the certificate's private key (PEM, not encrypted)\n"
        "  --tls-keylog FILE          append every TLS session's secrets to FILE (NSS key log, for\n"
        "                             tagarela capture --keylog); off by default: whoever reads it\n"
        "                             can decrypt the traffic\n"
        "  --config FILE              read these options from FILE first, one 'key value' a line\n"
        "                             (see tagarela.conf(5)); the command line overrides it\n"
        "  --no-config                read no config file, not even " CONFIG_DEFAULT_PATH "\n"
        "                             (read when it exists and no --config is given)\n"
        "  --check-config             check the options and the config file, then exit (0: valid, 2: not)\n"
        "  --log-format FORMAT        event lines on stderr as logfmt or json (default logfmt)\n"
        "  --log-level LEVEL          error, warn, info or debug (default info)\n"
        "  -h, --help                 this text\n"
        "  --version                  the version\n");
}

int config_parse_addr(const char *s, listen_addr *out)
{
    const char *colon = strrchr(s, ':');
    if (!colon) return -1;
    size_t hl = (size_t)(colon - s);
    const char *host = s;
    if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']') {
        host++;
        hl -= 2;
    }
    if (hl >= sizeof out->host) return -1;
    int port;
    if (parse_port(colon + 1, strlen(colon + 1), 0, &port) < 0) return -1;
    if (hl == 0) {
        snprintf(out->host, sizeof out->host, "0.0.0.0");
    } else {
        memcpy(out->host, host, hl);
        out->host[hl] = '\0';
    }
    out->port = port;
    return 0;
}

/* A number of an option, or a message saying what it wants. */
static int option_number(const char *opt, const char *arg, double min, double max, double *out)
{
    if (parse_number(arg, min, max, false, out) == 0) return 0;
    fprintf(stderr, "tagarela: %s wants a number from %.15g to %.15g, not '%s'\n", opt, min, max, arg);
    return -1;
}

/* A count or a size: a number in range that is also whole. */
static int parse_whole(const char *opt, const char *arg, double min, double max, double *out)
{
    if (parse_number(arg, min, max, true, out) == 0) return 0;
    fprintf(stderr, "tagarela: %s wants a whole number from %.15g to %.15g, not '%s'\n", opt, min, max, arg);
    return -1;
}

enum {
    OPT_WS = 256, OPT_HTTP, OPT_DATA, OPT_MAX_MESSAGE, OPT_MAX_NAME, OPT_MAX_CONTENT,
    OPT_RATE, OPT_BURST, OPT_PING, OPT_IDLE, OPT_HANDSHAKE, OPT_OUTBOUND, OPT_PER_IP,
    OPT_ORIGIN, OPT_WS_URL, OPT_HISTORY, OPT_RESUME_CAP, OPT_KEEP_MESSAGES, OPT_KEEP_DAYS,
    OPT_THREADS, OPT_WRITE_TIMEOUT, OPT_MESSAGE_TIMEOUT, OPT_PARTIAL_BUDGET, OPT_MAX_HEADER,
    OPT_TRUSTED_PROXY, OPT_KEEP_IDENTITIES, OPT_AUTH_KEY,
    OPT_HISTORY_ROOM_BYTES, OPT_HISTORY_BYTES, OPT_ROOMS_PER_MINUTE,
    OPT_CONFIG, OPT_CHECK_CONFIG, OPT_LOG_FORMAT, OPT_LOG_LEVEL, OPT_ADMIN_TOKEN, OPT_NO_CONFIG,
    OPT_REDIS,
    OPT_DEFLATE, OPT_NO_DEFLATE,
    OPT_DEFLATE_MEMORY, OPT_TLS_CERT, OPT_TLS_KEY, OPT_TLS_KEYLOG,
};

static const struct option long_opts[] = {
    {"ws", required_argument, 0, OPT_WS},
    {"http", required_argument, 0, OPT_HTTP},
    {"data", required_argument, 0, OPT_DATA},
    {"max-message", required_argument, 0, OPT_MAX_MESSAGE},
    {"max-name", required_argument, 0, OPT_MAX_NAME},
    {"max-content", required_argument, 0, OPT_MAX_CONTENT},
    {"rate", required_argument, 0, OPT_RATE},
    {"burst", required_argument, 0, OPT_BURST},
    {"ping-interval", required_argument, 0, OPT_PING},
    {"idle-timeout", required_argument, 0, OPT_IDLE},
    {"handshake-timeout", required_argument, 0, OPT_HANDSHAKE},
    {"outbound-cap", required_argument, 0, OPT_OUTBOUND},
    {"max-conns-per-ip", required_argument, 0, OPT_PER_IP},
    {"origin", required_argument, 0, OPT_ORIGIN},
    {"ws-url", required_argument, 0, OPT_WS_URL},
    {"history", required_argument, 0, OPT_HISTORY},
    {"resume-cap", required_argument, 0, OPT_RESUME_CAP},
    {"keep-messages", required_argument, 0, OPT_KEEP_MESSAGES},
    {"keep-days", required_argument, 0, OPT_KEEP_DAYS},
    {"threads", required_argument, 0, OPT_THREADS},
    {"write-timeout", required_argument, 0, OPT_WRITE_TIMEOUT},
    {"message-timeout", required_argument, 0, OPT_MESSAGE_TIMEOUT},
    {"partial-budget", required_argument, 0, OPT_PARTIAL_BUDGET},
    {"max-header", required_argument, 0, OPT_MAX_HEADER},
    {"trusted-proxy", required_argument, 0, OPT_TRUSTED_PROXY},
    {"keep-identities", required_argument, 0, OPT_KEEP_IDENTITIES},
    {"auth-key", required_argument, 0, OPT_AUTH_KEY},
    {"history-room-bytes", required_argument, 0, OPT_HISTORY_ROOM_BYTES},
    {"history-bytes", required_argument, 0, OPT_HISTORY_BYTES},
    {"rooms-per-minute", required_argument, 0, OPT_ROOMS_PER_MINUTE},
    {"redis", required_argument, 0, OPT_REDIS},
    {"admin-token", required_argument, 0, OPT_ADMIN_TOKEN},
    {"deflate", required_argument, 0, OPT_DEFLATE},
    {"no-deflate", no_argument, 0, OPT_NO_DEFLATE},
    {"deflate-memory", required_argument, 0, OPT_DEFLATE_MEMORY},
    {"tls-cert", required_argument, 0, OPT_TLS_CERT},
    {"tls-key", required_argument, 0, OPT_TLS_KEY},
    {"tls-keylog", required_argument, 0, OPT_TLS_KEYLOG},
    {"config", required_argument, 0, OPT_CONFIG},
    {"check-config", no_argument, 0, OPT_CHECK_CONFIG},
    {"no-config", no_argument, 0, OPT_NO_CONFIG},
    {"log-format", required_argument, 0, OPT_LOG_FORMAT},
    {"log-level", required_argument, 0, OPT_LOG_LEVEL},
    {"help", no_argument, 0, 'h'},
    {"version", no_argument, 0, 'V'},
    {0, 0, 0, 0},
};

/* Applies one numeric option. */
static int set_number(server_config *cfg, int opt, const char *name, const char *arg)
{
    double v;
    switch (opt) {
    case OPT_MAX_MESSAGE:
        if (parse_whole(name, arg, 126, 1u << 30, &v)) return -1;
        cfg->max_message = (uint64_t)v;
        return 0;
    case OPT_MAX_NAME:
        if (parse_whole(name, arg, 1, 1024, &v)) return -1;
        cfg->chat.max_name = (unsigned)v;
        return 0;
    case OPT_MAX_CONTENT:
        if (parse_whole(name, arg, 1, 1 << 20, &v)) return -1;
        cfg->chat.max_content = (unsigned)v;
        return 0;
    case OPT_RATE:
        return option_number(name, arg, 0.001, 1e9, &cfg->chat.rate);
    case OPT_BURST:
        return option_number(name, arg, 1, 1e9, &cfg->chat.burst);
    case OPT_PING:
    case OPT_IDLE:
    case OPT_HANDSHAKE:
    case OPT_WRITE_TIMEOUT:
    case OPT_MESSAGE_TIMEOUT:
        if (option_number(name, arg, 0.05, 86400, &v)) return -1;
        *(opt == OPT_PING ? &cfg->ping_interval_ms
          : opt == OPT_IDLE ? &cfg->idle_timeout_ms
          : opt == OPT_WRITE_TIMEOUT ? &cfg->write_timeout_ms
          : opt == OPT_MESSAGE_TIMEOUT ? &cfg->message_timeout_ms
                            : &cfg->handshake_timeout_ms) = (uint64_t)(v * 1000);
        return 0;
    case OPT_PARTIAL_BUDGET:
        if (option_number(name, arg, 1024, 1e12, &v)) return -1;
        cfg->partial_budget = (uint64_t)v;
        return 0;
    case OPT_DEFLATE_MEMORY:
        if (parse_whole(name, arg, 0, 1e12, &v)) return -1;
        cfg->deflate_memory = (uint64_t)v;
        return 0;
    case OPT_OUTBOUND:
        if (parse_whole(name, arg, 1024, 1u << 30, &v)) return -1;
        cfg->outbound_cap = (size_t)v;
        return 0;
    case OPT_MAX_HEADER:
        /* below 512 not even a browser's upgrade request fits */
        if (parse_whole(name, arg, 512, 65536, &v)) return -1;
        cfg->max_header = (size_t)v;
        return 0;
    case OPT_PER_IP:
        if (parse_whole(name, arg, 1, 1e7, &v)) return -1;
        cfg->max_conns_per_ip = (unsigned)v;
        return 0;
    case OPT_THREADS:
        if (parse_whole(name, arg, 0, 256, &v)) return -1;
        cfg->threads = (unsigned)v;
        return 0;
    case OPT_HISTORY:
    case OPT_RESUME_CAP:
        if (parse_whole(name, arg, 0, 100000, &v)) return -1;
        *(opt == OPT_HISTORY ? &cfg->chat.history : &cfg->chat.resume_cap) = (unsigned)v;
        return 0;
    case OPT_KEEP_MESSAGES:
        if (parse_whole(name, arg, 0, 4e9, &v)) return -1;
        cfg->retention.max_per_room = (unsigned)v;
        return 0;
    case OPT_HISTORY_ROOM_BYTES:
    case OPT_HISTORY_BYTES:
        if (parse_whole(name, arg, 0, 1e15, &v)) return -1;
        *(opt == OPT_HISTORY_BYTES ? &cfg->retention.max_bytes : &cfg->retention.max_room_bytes) = (uint64_t)v;
        return 0;
    case OPT_ROOMS_PER_MINUTE:
        if (parse_whole(name, arg, 0, 1e7, &v)) return -1;
        cfg->chat.rooms_per_minute = (unsigned)v;
        return 0;
    case OPT_KEEP_DAYS:
        if (option_number(name, arg, 0, 365000, &v)) return -1;
        cfg->retention.max_age = (int64_t)(v * 86400);
        if (v > 0 && cfg->retention.max_age == 0) cfg->retention.max_age = 1;
        return 0;
    case OPT_KEEP_IDENTITIES:
        if (parse_whole(name, arg, 0, 4e9, &v)) return -1;
        cfg->retention.max_identities = (unsigned)v;
        return 0;
    }
    return -1;
}

/* One --redis: a URL or a comma list of them, each one more shard. */
static int add_redis(server_config *cfg, const char *name, const char *arg)
{
    const char *p = arg;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        char url[CLUSTER_MAX_URL], err[CLUSTER_MAX_URL + 160];
        if (cfg->n_redis == CLUSTER_MAX_SHARDS) {
            fprintf(stderr, "tagarela: %s: at most %d Redis servers\n", name, CLUSTER_MAX_SHARDS);
            return -1;
        }
        if (n >= sizeof url) {
            fprintf(stderr, "tagarela: %s: a URL longer than %d bytes\n", name, CLUSTER_MAX_URL - 1);
            return -1;
        }
        memcpy(url, p, n);
        url[n] = '\0';
        if (cluster_url_parse(url, &cfg->redis[cfg->n_redis], err, sizeof err) < 0) {
            fprintf(stderr, "tagarela: %s: %s\n", name, err);
            return -1;
        }
        cfg->n_redis++;
        if (!comma) return 0;
        p = comma + 1;
    }
}

static int add_trusted_proxy(server_config *cfg, const char *name, const char *arg)
{
    if (cfg->n_trusted == CONFIG_MAX_TRUSTED) {
        fprintf(stderr, "tagarela: at most %d %s\n", CONFIG_MAX_TRUSTED, name);
        return -1;
    }
    if (cidr_parse(&cfg->trusted[cfg->n_trusted], arg) < 0) {
        fprintf(stderr, "tagarela: %s wants an address or CIDR (10.0.0.0/8, 2001:db8::/32), not '%s'\n",
                name, arg);
        return -1;
    }
    cfg->n_trusted++;
    return 0;
}

uint64_t config_max_say_frame(const chat_limits *l)
{
    return (uint64_t)SAY_ESCAPED_PER_CP * l->max_content +
           2 * ((uint64_t)NAME_ESCAPED_PER_CP * l->max_name + 16) + SAY_ENVELOPE + WS_MAX_HEADER;
}

/* Sizes that options multiply into: a frame's length is a uint32_t, and
 * a say that cannot fit the outbound cap would drop every recipient. */
int config_validate(const server_config *cfg)
{
    uint64_t say = config_max_say_frame(&cfg->chat);
    if (cfg->max_message + WS_MAX_HEADER > UINT32_MAX) {
        fprintf(stderr, "tagarela: --max-message %" PRIu64 " is more than a frame can hold\n",
                cfg->max_message);
        return -1;
    }
    if (say > cfg->outbound_cap) {
        fprintf(stderr,
            "tagarela: a say of --max-content %u code points takes up to %" PRIu64 " bytes once\n"
            "  escaped (8 per code point), more than --outbound-cap %zu: every client it\n"
            "  went to would be dropped. Raise --outbound-cap or lower --max-content.\n",
            cfg->chat.max_content, say, cfg->outbound_cap);
        return -1;
    }
    unsigned most = cfg->chat.history > cfg->chat.resume_cap ? cfg->chat.history : cfg->chat.resume_cap;
    if (say * most + SAY_ENVELOPE > UINT32_MAX) {
        fprintf(stderr,
            "tagarela: %u messages of up to %" PRIu64 " bytes (--history / --resume-cap times\n"
            "  --max-content escaped) do not fit in a frame's 4 GiB. Lower one of them.\n",
            most, say);
        return -1;
    }
    return 0;
}

/* A secret's file, whole, less one final line break (editors add one),
 * into buf. Returns its length, or -1 after saying why (unreadable, or
 * more than cap bytes). */
static long read_secret(const char *opt, const char *path, uint8_t *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "tagarela: %s: cannot read '%s': %s\n", opt, path, strerror(errno));
        return -1;
    }
    size_t n = fread(buf, 1, cap, f);
    int bad = ferror(f), more = !bad && n == cap && fgetc(f) != EOF;
    fclose(f);
    if (bad || more) {
        fprintf(stderr, "tagarela: %s: %s '%s' (at most %zu bytes)\n", opt,
                bad ? "cannot read" : "too long a secret in", path, cap);
        return -1;
    }
    if (n && buf[n - 1] == '\n') n--;
    if (n && buf[n - 1] == '\r') n--;
    return (long)n;
}

/* Reads the --auth-key secret. An empty file is an error: a server meant
 * to check signatures must not start without a key. */
static int read_auth_key(server_config *cfg, const char *path)
{
    long n = read_secret("--auth-key", path, cfg->auth_key, sizeof cfg->auth_key);
    if (n < 0) return -1;
    if (n == 0) {
        fprintf(stderr, "tagarela: --auth-key: '%s' is empty\n", path);
        return -1;
    }
    if (n < 32)
        fprintf(stderr, "tagarela: warning: the --auth-key secret has %ld bytes; 32 random bytes or more "
                        "keep its signatures from being forged\n", n);
    cfg->auth_key_len = (size_t)n;
    cfg->chat.auth_key = cfg->auth_key;
    cfg->chat.auth_key_len = (size_t)n;
    return 0;
}

/* Reads the --admin-token: at least 16 bytes (a short token is guessed),
 * no blanks or control bytes (it travels in a header). */
static int read_admin_token(server_config *cfg, const char *path)
{
    admin_token *t = &cfg->admin_token;
    t->len = 0;
    long n = read_secret("--admin-token", path, t->bytes, sizeof t->bytes);
    if (n < 0) return -1;
    bool ctl = false;
    for (long i = 0; i < n; i++) ctl |= t->bytes[i] <= ' ' || t->bytes[i] == 0x7f;
    if (n < 16 || ctl) {
        fprintf(stderr, "tagarela: --admin-token: %s '%s'\n",
                ctl ? "blanks or control characters in the token of" : "fewer than 16 bytes of token in", path);
        return -1;
    }
    t->len = (size_t)n;
    return 0;
}

/* Where the options come from: a repeatable option of the command line
 * replaces the file's list instead of adding to it. */
typedef struct parse_state {
    bool from_cmdline;
    bool cmd_origins, cmd_trusted;
    bool check_only;
    bool cmd_redis;             /* --redis seen on the command line */
} parse_state;

static int set_log_option(server_config *cfg, int opt, const char *name, const char *arg)
{
    int v = opt == OPT_LOG_LEVEL ? log_level_parse(arg) : log_format_parse(arg);
    if (v < 0) {
        fprintf(stderr, "tagarela: %s wants %s, not '%s'\n", name,
                opt == OPT_LOG_LEVEL ? "error, warn, info or debug" : "logfmt or json", arg);
        return -1;
    }
    *(opt == OPT_LOG_LEVEL ? &cfg->log_level : &cfg->log_format) = v;
    return 0;
}

/* One option and its value, from the file or the command line. */
static int apply_option(server_config *cfg, parse_state *st, int opt, const char *name, const char *arg)
{
    switch (opt) {
    case OPT_WS:
    case OPT_HTTP:
        if (config_parse_addr(arg, opt == OPT_WS ? &cfg->ws : &cfg->http) < 0) {
            fprintf(stderr, "tagarela: %s wants HOST:PORT, not '%s'\n", name, arg);
            return -1;
        }
        return 0;
    case OPT_DATA:
        cfg->data_dir = arg;
        return 0;
    case OPT_ORIGIN:
        if (st->from_cmdline && !st->cmd_origins) cfg->n_origins = 0;
        st->cmd_origins = st->from_cmdline;
        if (cfg->n_origins == CONFIG_MAX_ORIGINS) {
            fprintf(stderr, "tagarela: at most %d --origin\n", CONFIG_MAX_ORIGINS);
            return -1;
        }
        cfg->origins[cfg->n_origins++] = arg;
        return 0;
    case OPT_WS_URL:
        cfg->ws_url = arg;
        return 0;
    case OPT_TLS_CERT:
    case OPT_TLS_KEY:
    case OPT_TLS_KEYLOG:
        *(opt == OPT_TLS_CERT ? &cfg->tls_cert : opt == OPT_TLS_KEY ? &cfg->tls_key : &cfg->tls_keylog) = arg;
        return 0;
    case OPT_TRUSTED_PROXY:
        if (st->from_cmdline && !st->cmd_trusted) cfg->n_trusted = 0;
        st->cmd_trusted = st->from_cmdline;
        return add_trusted_proxy(cfg, name, arg);
    case OPT_AUTH_KEY:
        return read_auth_key(cfg, arg);
    case OPT_REDIS:
        if (st->from_cmdline && !st->cmd_redis) cfg->n_redis = 0;
        st->cmd_redis = st->from_cmdline;
        return add_redis(cfg, name, arg);
    case OPT_ADMIN_TOKEN:
        return read_admin_token(cfg, arg);
    case OPT_LOG_FORMAT:
    case OPT_LOG_LEVEL:
        return set_log_option(cfg, opt, name, arg);
    case OPT_CHECK_CONFIG:
        st->check_only = true;
        return 0;
    case OPT_DEFLATE:
        if (strcmp(arg, "on") != 0 && strcmp(arg, "off") != 0) {
            fprintf(stderr, "tagarela: %s wants on or off, not '%s'\n", name, arg);
            return -1;
        }
        cfg->deflate = strcmp(arg, "on") == 0;
        return 0;
    case OPT_NO_DEFLATE:
        cfg->deflate = false;
        return 0;
    case OPT_CONFIG:
    case OPT_NO_CONFIG:
        return 0;                       /* read before everything else */
    }
    return set_number(cfg, opt, name, arg);
}

static const struct option *find_key(const char *key)
{
    for (const struct option *o = long_opts; o->name; o++)
        if (strcmp(o->name, key) == 0) return o;
    return NULL;
}

/* The whole file, NUL-terminated, or NULL after saying why. */
static char *read_config_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "tagarela: --config: cannot read '%s': %s\n", path, strerror(errno));
        return NULL;
    }
    char *text = malloc(CONFIG_MAX_FILE + 1);
    size_t n = text ? fread(text, 1, CONFIG_MAX_FILE + 1, f) : 0;
    int bad = !text || ferror(f);
    fclose(f);
    const char *why = bad ? "cannot read" : n > CONFIG_MAX_FILE ? "more than 1 MiB in"
                    : memchr(text, '\0', n) ? "a NUL byte in" : NULL;
    if (why) {
        fprintf(stderr, "tagarela: --config: %s '%s'\n", why, path);
        free(text);
        return NULL;
    }
    text[n] = '\0';
    return text;
}

/* Cuts a line at its comment (a '#' first or after a blank) and its
 * trailing blanks. */
static void strip_line(char *s)
{
    for (char *p = s; *p; p++)
        if (*p == '#' && (p == s || p[-1] == ' ' || p[-1] == '\t')) {
            *p = '\0';
            break;
        }
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) s[--n] = '\0';
}

/* One "key value" or "key = value" line; 0, or -1 after saying why. */
static int apply_line(server_config *cfg, parse_state *st, char *s, const char *path, int lineno)
{
    char *key = s + strspn(s, " \t");
    if (!*key) return 0;
    char *v = key + strcspn(key, " \t=");
    char sep = *v;
    *v = '\0';
    if (sep) v++;
    v += strspn(v, " \t");
    if (sep != '=' && *v == '=') v += 1 + strspn(v + 1, " \t");
    const struct option *o = find_key(key);
    if (!o || o->has_arg != required_argument || o->val == OPT_CONFIG) {
        fprintf(stderr, "tagarela: %s:%d: '%s' is not a setting (the long options of "
                        "tagarela serve --help, less --config, are)\n", path, lineno, key);
        return -1;
    }
    if (!*v) {
        fprintf(stderr, "tagarela: %s:%d: %s needs a value\n", path, lineno, key);
        return -1;
    }
    char name[40];
    snprintf(name, sizeof name, "%s", key);
    if (apply_option(cfg, st, o->val, name, v) < 0) {
        fprintf(stderr, "tagarela: (in %s, line %d)\n", path, lineno);
        return -1;
    }
    return 0;
}

static int parse_config_file(server_config *cfg, parse_state *st, const char *path)
{
    char *text = read_config_file(path);
    if (!text) return -1;
    free(cfg->file_text);
    cfg->file_text = text;
    int lineno = 0;
    for (char *s = text; s; ) {
        char *nl = strchr(s, '\n');
        if (nl) *nl = '\0';
        lineno++;
        strip_line(s);
        if (apply_line(cfg, st, s, path, lineno) < 0) return -1;
        s = nl ? nl + 1 : NULL;
    }
    return 0;
}

/* Without --config (or --no-config) an installed server reads the
 * default file when there is one: $TAGARELA_CONFIG names another (empty:
 * none), so that tests never read the machine's. */
static const char *default_config(void)
{
    const char *env = getenv("TAGARELA_CONFIG");
    const char *path = env ? env : CONFIG_DEFAULT_PATH;
    return *path && access(path, F_OK) == 0 ? path : NULL;
}

/* The first pass over the command line: --help, --version and --config
 * only, so that the file can be read before the options it yields to. */
static int first_pass(server_config *cfg, int argc, char **argv)
{
    int opt, idx;
    bool no_config = false;
    optind = 0;                         /* glibc: start over (a reload parses again) */
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", long_opts, &idx)) != -1) {
        if (opt == 'h') {
            config_usage(stdout);
            return 1;
        }
        if (opt == 'V') {
            printf("tagarela %s\n", TAGARELA_VERSION);
            return 1;
        }
        if (opt == OPT_CONFIG) cfg->config_path = optarg;
        if (opt == OPT_NO_CONFIG) no_config = true;
    }
    if (no_config) cfg->config_path = NULL;
    else if (!cfg->config_path) cfg->config_path = default_config();
    return 0;
}

static int parse_command_line(server_config *cfg, parse_state *st, int argc, char **argv)
{
    int opt, idx;
    optind = 0;
    opterr = 0;
    st->from_cmdline = true;
    while ((opt = getopt_long(argc, argv, ":h", long_opts, &idx)) != -1) {
        char name[40];
        snprintf(name, sizeof name, "--%s", opt >= OPT_WS ? long_opts[idx].name : "?");
        if (opt == ':') {
            fprintf(stderr, "tagarela: %s needs a value\n", argv[optind - 1]);
            return -1;
        }
        if (opt == '?') {
            fprintf(stderr, "tagarela: unknown option '%s' (see tagarela serve --help)\n", argv[optind - 1]);
            return -1;
        }
        if (apply_option(cfg, st, opt, name, optarg) < 0) return -1;
    }
    if (optind < argc) {
        fprintf(stderr, "tagarela: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    return 0;
}

int config_parse(server_config *cfg, int argc, char **argv)
{
    parse_state st = {0};
    cfg->argc = argc;
    cfg->argv = argv;
    int rc = first_pass(cfg, argc, argv);
    if (rc != 0) return rc;
    if (cfg->config_path && parse_config_file(cfg, &st, cfg->config_path) < 0) return -1;
    if (parse_command_line(cfg, &st, argc, argv) < 0) return -1;
    /* A piece of history or of a user list must fit the queue it goes
     * into, with room to spare for live messages. */
    if (cfg->chat.chunk_bytes > cfg->outbound_cap / 4) cfg->chat.chunk_bytes = cfg->outbound_cap / 4;
    if (cfg->ws.port != 0 && cfg->ws.port == cfg->http.port && strcmp(cfg->ws.host, cfg->http.host) == 0) {
        fprintf(stderr, "tagarela: --ws and --http cannot share a port\n");
        return -1;
    }
    if (config_validate(cfg) < 0) return -1;
    if (!cfg->tls_cert != !cfg->tls_key || (cfg->tls_keylog && !cfg->tls_cert)) {
        fprintf(stderr, "tagarela: %s\n", cfg->tls_cert || cfg->tls_key
                ? "--tls-cert and --tls-key go together: give both, or neither"
                : "--tls-keylog needs --tls-cert and --tls-key");
        return -1;
    }
    if (st.check_only) {
        printf("tagarela: the configuration%s%s is valid\n",
               cfg->config_path ? " in " : "", cfg->config_path ? cfg->config_path : "");
        return 1;
    }
    return 0;
}

void config_free(server_config *cfg)
{
    free(cfg->file_text);
    cfg->file_text = NULL;
}
