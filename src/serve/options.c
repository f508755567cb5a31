/* config.c -- command line options of `tagarela serve`. */
#include "options.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void config_defaults(server_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->ws.host, sizeof cfg->ws.host, "0.0.0.0");
    cfg->ws.port = 7272;
    snprintf(cfg->http.host, sizeof cfg->http.host, "0.0.0.0");
    cfg->http.port = 55151;
    cfg->data_dir = "./data";
    cfg->max_message = 1 << 20;
    cfg->max_header = 8192;
    cfg->ping_interval_ms = 25000;
    cfg->idle_timeout_ms = 60000;
    cfg->handshake_timeout_ms = 10000;
    cfg->outbound_cap = 4 << 20;
    cfg->max_conns_per_ip = 4096;
    chat_limits_defaults(&cfg->chat);
    store_limits_defaults(&cfg->retention);
}

void config_usage(FILE *out)
{
    fprintf(out,
        "usage: tagarela serve [options]\n"
        "\n"
        "  --ws HOST:PORT             WebSocket listener (default 0.0.0.0:7272; port 0: any free port)\n"
        "  --http HOST:PORT           web page listener, also WebSocket on /ws (default 0.0.0.0:55151)\n"
        "  --data DIR                 data directory, created if missing (default ./data)\n"
        "  --max-message BYTES        largest message a client may send; larger: close 1009 (default 1048576)\n"
        "  --max-name N               longest name, in code points (default 32)\n"
        "  --max-content N            longest message content, in code points (default 4096)\n"
        "  --rate N                   messages per second a client may send, sustained (default 50)\n"
        "  --burst N                  messages a client may send at once (default 100)\n"
        "  --ping-interval SEC        ping connections idle this long (default 25)\n"
        "  --idle-timeout SEC         close connections silent this long, code 1008 (default 60)\n"
        "  --handshake-timeout SEC    close connections whose HTTP request is not done by then (default 10)\n"
        "  --outbound-cap BYTES       bytes queued to a client that does not read before it is\n"
        "                             closed with 1008 (default 4194304)\n"
        "  --max-conns-per-ip N       connections from one address (default 4096)\n"
        "  --threads N                event loops serving connections (default: one per usable core)\n"
        "  --origin ORIGIN            allow only this Origin (repeatable; default: any)\n"
        "  --ws-url URL               WebSocket URL the page connects to (default: its own origin, /ws)\n"
        "  --history N                messages replayed to a client after it logs in (default 50)\n"
        "  --resume-cap N             most messages replayed after a login's last_id (default 1000)\n"
        "  --keep-messages N          messages kept per room, 0: no limit (default 10000)\n"
        "  --keep-days DAYS           days a message is kept, 0: no limit (default 30)\n"
        "  --history-room-bytes BYTES history bytes kept per room, oldest dropped first,\n"
        "                             0: no limit (default 20971520)\n"
        "  --history-bytes BYTES      history bytes kept in all rooms, oldest dropped first,\n"
        "                             0: no limit (default 1073741824)\n"
        "  --rooms-per-minute N       rooms one address may bring up a minute, 0: no limit (default 30)\n"
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
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno || *end || end == colon + 1 || port < 0 || port > 65535) return -1;
    if (hl == 0) {
        snprintf(out->host, sizeof out->host, "0.0.0.0");
    } else {
        memcpy(out->host, host, hl);
        out->host[hl] = '\0';
    }
    out->port = (int)port;
    return 0;
}

static int parse_number(const char *opt, const char *arg, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(arg, &end);
    if (errno || *end || end == arg || v < min || v > max) {
        fprintf(stderr, "tagarela: %s wants a number from %g to %g, not '%s'\n", opt, min, max, arg);
        return -1;
    }
    *out = v;
    return 0;
}

enum {
    OPT_WS = 256, OPT_HTTP, OPT_DATA, OPT_MAX_MESSAGE, OPT_MAX_NAME, OPT_MAX_CONTENT,
    OPT_RATE, OPT_BURST, OPT_PING, OPT_IDLE, OPT_HANDSHAKE, OPT_OUTBOUND, OPT_PER_IP,
    OPT_ORIGIN, OPT_WS_URL, OPT_HISTORY, OPT_RESUME_CAP, OPT_KEEP_MESSAGES, OPT_KEEP_DAYS,
    OPT_THREADS, OPT_HISTORY_ROOM_BYTES, OPT_HISTORY_BYTES, OPT_ROOMS_PER_MINUTE,
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
    {"history-room-bytes", required_argument, 0, OPT_HISTORY_ROOM_BYTES},
    {"history-bytes", required_argument, 0, OPT_HISTORY_BYTES},
    {"rooms-per-minute", required_argument, 0, OPT_ROOMS_PER_MINUTE},
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
        if (parse_number(name, arg, 126, 1u << 30, &v)) return -1;
        cfg->max_message = (uint64_t)v;
        return 0;
    case OPT_MAX_NAME:
        if (parse_number(name, arg, 1, 1024, &v)) return -1;
        cfg->chat.max_name = (unsigned)v;
        return 0;
    case OPT_MAX_CONTENT:
        if (parse_number(name, arg, 1, 1 << 20, &v)) return -1;
        cfg->chat.max_content = (unsigned)v;
        return 0;
    case OPT_RATE:
        return parse_number(name, arg, 0.001, 1e9, &cfg->chat.rate);
    case OPT_BURST:
        return parse_number(name, arg, 1, 1e9, &cfg->chat.burst);
    case OPT_PING:
    case OPT_IDLE:
    case OPT_HANDSHAKE:
        if (parse_number(name, arg, 0.05, 86400, &v)) return -1;
        *(opt == OPT_PING ? &cfg->ping_interval_ms
          : opt == OPT_IDLE ? &cfg->idle_timeout_ms
                            : &cfg->handshake_timeout_ms) = (uint64_t)(v * 1000);
        return 0;
    case OPT_OUTBOUND:
        if (parse_number(name, arg, 1024, 1u << 30, &v)) return -1;
        cfg->outbound_cap = (size_t)v;
        return 0;
    case OPT_PER_IP:
        if (parse_number(name, arg, 1, 1e7, &v)) return -1;
        cfg->max_conns_per_ip = (unsigned)v;
        return 0;
    case OPT_THREADS:
        if (parse_number(name, arg, 0, 256, &v)) return -1;
        if (v != (double)(unsigned)v) {
            fprintf(stderr, "tagarela: %s wants a whole number, not '%s'\n", name, arg);
            return -1;
        }
        cfg->threads = (unsigned)v;
        return 0;
    case OPT_HISTORY:
    case OPT_RESUME_CAP:
        if (parse_number(name, arg, 0, 100000, &v)) return -1;
        *(opt == OPT_HISTORY ? &cfg->chat.history : &cfg->chat.resume_cap) = (unsigned)v;
        return 0;
    case OPT_KEEP_MESSAGES:
        if (parse_number(name, arg, 0, 4e9, &v)) return -1;
        cfg->retention.max_per_room = (unsigned)v;
        return 0;
    case OPT_HISTORY_ROOM_BYTES:
    case OPT_HISTORY_BYTES:
        if (parse_number(name, arg, 0, 1e15, &v)) return -1;
        *(opt == OPT_HISTORY_BYTES ? &cfg->retention.max_bytes : &cfg->retention.max_room_bytes) = (uint64_t)v;
        return 0;
    case OPT_ROOMS_PER_MINUTE:
        if (parse_number(name, arg, 0, 1e7, &v)) return -1;
        cfg->chat.rooms_per_minute = (unsigned)v;
        return 0;
    case OPT_KEEP_DAYS:
        if (parse_number(name, arg, 0, 365000, &v)) return -1;
        cfg->retention.max_age = (int64_t)(v * 86400);
        if (v > 0 && cfg->retention.max_age == 0) cfg->retention.max_age = 1;
        return 0;
    }
    return -1;
}

int config_parse(server_config *cfg, int argc, char **argv)
{
    int opt, idx;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", long_opts, &idx)) != -1) {
        char name[40];
        snprintf(name, sizeof name, "--%s", opt >= OPT_WS ? long_opts[idx].name : "?");
        switch (opt) {
        case 'h':
            config_usage(stdout);
            return 1;
        case 'V':
            printf("tagarela %s\n", TAGARELA_VERSION);
            return 1;
        case OPT_WS:
        case OPT_HTTP:
            if (config_parse_addr(optarg, opt == OPT_WS ? &cfg->ws : &cfg->http) < 0) {
                fprintf(stderr, "tagarela: %s wants HOST:PORT, not '%s'\n", name, optarg);
                return -1;
            }
            break;
        case OPT_DATA:
            cfg->data_dir = optarg;
            break;
        case OPT_ORIGIN:
            if (cfg->n_origins == CONFIG_MAX_ORIGINS) {
                fprintf(stderr, "tagarela: at most %d --origin\n", CONFIG_MAX_ORIGINS);
                return -1;
            }
            cfg->origins[cfg->n_origins++] = optarg;
            break;
        case OPT_WS_URL:
            cfg->ws_url = optarg;
            break;
        case ':':
            fprintf(stderr, "tagarela: %s needs a value\n", argv[optind - 1]);
            return -1;
        case '?':
            fprintf(stderr, "tagarela: unknown option '%s' (see tagarela serve --help)\n", argv[optind - 1]);
            return -1;
        default:
            if (set_number(cfg, opt, name, optarg) < 0) return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tagarela: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    /* A piece of history or of a user list must fit the queue it goes
     * into, with room to spare for live messages. */
    if (cfg->chat.chunk_bytes > cfg->outbound_cap / 4) cfg->chat.chunk_bytes = cfg->outbound_cap / 4;
    if (cfg->ws.port != 0 && cfg->ws.port == cfg->http.port && strcmp(cfg->ws.host, cfg->http.host) == 0) {
        fprintf(stderr, "tagarela: --ws and --http cannot share a port\n");
        return -1;
    }
    return 0;
}
