/* bench.c -- `tagarela bench`: options, the controller and the report.
 *
 * The controller (the main thread) starts the workers (worker.c),
 * moves the run through its phases -- connect and log in every client, then
 * send for T seconds (or hold, with --idle), then drain, then stop -- prints
 * a progress line once a second, reads the server's CPU time and memory
 * from /proc and prints the result as a table or as JSON. */
#include "bench.h"
#include "loadgen_int.h"
#include "sys.h"
#include "sbuf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define TICK_NS 50000000ull     /* the controller looks every 50 ms */

static void usage(FILE *out)
{
    fprintf(out,
        "usage: tagarela bench [options] [URL...]   URL default ws://127.0.0.1:7272/ (or wss://);\n"
        "                                           several (or a comma list): clients spread over them\n"
        "\n"
        "  -n, --clients N        clients to connect and log in (default 100)\n"
        "  -s, --senders S        how many of them send (default 10; ignored with --idle)\n"
        "  -r, --rate R           messages/s per sender; 0 = as fast as the window allows (default 0)\n"
        "  -w, --window W         messages per sender sent but not yet echoed back (default 16)\n"
        "  -d, --duration T       seconds of sending (or holding, with --idle) (default 10)\n"
        "  -t, --threads N        load-generator threads (default: the cores this process may use)\n"
        "      --src-addrs K      spread client source addresses over 127.0.0.1 .. 127.0.0.K when\n"
        "                         the server is on loopback (default 32), so ports never run out\n"
        "      --size B           content bytes per message (default 32; at least what the digits need)\n"
        "      --room NAME        room_id sent in login (default: none, the server's default room)\n"
        "      --rooms K          spread the clients over K rooms (NAME.0 .. NAME.K-1, NAME\n"
        "                         defaulting to \"bench\"); sender i talks in room i %% K (default 1)\n"
        "      --idle             log in, hold for T seconds, report the server's RSS; no senders\n"
        "      --deflate          offer permessage-deflate (RFC 7692) and inflate what comes\n"
        "      --connect-rate R   logins started per second (default 0: as fast as possible,\n"
        "                         bounded in flight)\n"
        "      --max-connecting N connects, handshakes and logins in flight (default 128)\n"
        "      --connect-timeout T  seconds for every client to log in (default 30)\n"
        "      --drain T          seconds to wait for the last deliveries after sending (default 2)\n"
        "      --server-pid PID   read the server's CPU seconds and RSS from /proc/PID\n"
        "      --ca FILE          wss://: check the server's certificate against the CA in FILE\n"
        "                         (default: not checked)\n"
        "      --tls12            wss://: TLS 1.2 only (default: 1.2 or 1.3, the server's choice)\n"
        "      --json             print one JSON object on stdout at the end (progress on stderr\n"
        "                         unless -q)\n"
        "  -q, --quiet            no live progress line\n"
        "  -h, --help             this text\n");
}

/* ---- failures ------------------------------------------------------------ */

void bench_fail(bench_run *r, const char *fmt, ...)
{
    pthread_mutex_lock(&r->lock);
    if (!r->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->error, sizeof r->error, fmt, ap);
        va_end(ap);
        COUNTER_SET(r->failed, 1);
    }
    pthread_mutex_unlock(&r->lock);
}

void bench_note_disconnect(bench_run *r, const char *fmt, ...)
{
    pthread_mutex_lock(&r->lock);
    if (!r->first_disconnect[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->first_disconnect, sizeof r->first_disconnect, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&r->lock);
}

/* ---- options ------------------------------------------------------------- */

static int number(const char *opt, const char *arg, double lo, double hi, bool whole, double *out)
{
    if (parse_number(arg, lo, hi, whole, out) == 0) return 0;
    fprintf(stderr, "tagarela bench: %s wants %s from %g to %g, not '%s'\n",
            opt, whole ? "a whole number" : "a number", lo, hi, arg);
    return -1;
}

/* One ws:// URL into a target. */
static int parse_target(bench_target *t, const char *url)
{
    t->tls = strncmp(url, "wss://", 6) == 0;
    if (!t->tls && strncmp(url, "ws://", 5) != 0) {
        fprintf(stderr, "tagarela bench: the URL must start with ws:// or wss://, not '%s'\n", url);
        return -1;
    }
    const char *h = url + (t->tls ? 6 : 5), *slash = strchr(h, '/');
    size_t hl = slash ? (size_t)(slash - h) : strlen(h);
    snprintf(t->path, sizeof t->path, "%s", slash ? slash : "/");
    const char *colon = memchr(h, ':', hl);
    size_t namelen = colon ? (size_t)(colon - h) : hl;
    t->port = t->tls ? 443 : 80;
    if (colon) {
        char ps[16];
        size_t pl = hl - namelen - 1;
        double v;
        if (pl == 0 || pl >= sizeof ps) {
            fprintf(stderr, "tagarela bench: bad port in '%s'\n", url);
            return -1;
        }
        memcpy(ps, colon + 1, pl);
        ps[pl] = 0;
        if (number("the URL's port", ps, 1, 65535, true, &v)) return -1;
        t->port = (int)v;
    }
    if (namelen == 0 || namelen >= sizeof t->host || h[0] == '[') {
        fprintf(stderr, "tagarela bench: bad host in '%s' (an IPv4 address or a name)\n", url);
        return -1;
    }
    memcpy(t->host, h, namelen);
    t->host[namelen] = 0;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(t->host, NULL, &hints, &res);
    if (rc || !res) {
        fprintf(stderr, "tagarela bench: cannot resolve '%s': %s\n", t->host, gai_strerror(rc));
        return -1;
    }
    memcpy(&t->addr, res->ai_addr, sizeof t->addr);
    freeaddrinfo(res);
    t->addr.sin_port = htons((uint16_t)t->port);
    return 0;
}

/* One URL argument: a URL or a comma list of them (a cluster's nodes,
 * over which the clients are spread in turn). */
static int parse_url(bench_opts *o, const char *arg)
{
    size_t used = strlen(o->url);
    if (used + strlen(arg) + 2 > sizeof o->url) {
        fprintf(stderr, "tagarela bench: URLs too long\n");
        return -1;
    }
    snprintf(o->url + used, sizeof o->url - used, "%s%s", used ? "," : "", arg);
    for (const char *p = arg; *p; ) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        char one[600];
        if (o->n_targets == BENCH_MAX_TARGETS || n >= sizeof one) {
            fprintf(stderr, "tagarela bench: at most %d URLs of %zu bytes\n", BENCH_MAX_TARGETS, sizeof one - 1);
            return -1;
        }
        memcpy(one, p, n);
        one[n] = 0;
        bench_target *t = &o->targets[o->n_targets];
        if (parse_target(t, one) < 0) return -1;
        if (o->n_targets && t->tls != o->tls) {
            fprintf(stderr, "tagarela bench: the URLs must all be ws:// or all wss://\n");
            return -1;
        }
        o->tls = t->tls;
        o->loopback = (o->n_targets == 0 || o->loopback) && (ntohl(t->addr.sin_addr.s_addr) >> 24) == 127;
        o->n_targets++;
        p = comma ? comma + 1 : p + n;
    }
    return 0;
}

enum {
    O_SRC = 256, O_SIZE, O_ROOM, O_ROOMS, O_IDLE, O_CRATE, O_MAXCONN, O_CTIMEOUT,
    O_DRAIN, O_PID, O_JSON, O_DEFLATE, O_CA, O_TLS12,
};

static const struct option long_opts[] = {
    {"clients", required_argument, 0, 'n'},
    {"senders", required_argument, 0, 's'},
    {"rate", required_argument, 0, 'r'},
    {"window", required_argument, 0, 'w'},
    {"duration", required_argument, 0, 'd'},
    {"threads", required_argument, 0, 't'},
    {"src-addrs", required_argument, 0, O_SRC},
    {"size", required_argument, 0, O_SIZE},
    {"room", required_argument, 0, O_ROOM},
    {"rooms", required_argument, 0, O_ROOMS},
    {"idle", no_argument, 0, O_IDLE},
    {"deflate", no_argument, 0, O_DEFLATE},
    {"connect-rate", required_argument, 0, O_CRATE},
    {"max-connecting", required_argument, 0, O_MAXCONN},
    {"connect-timeout", required_argument, 0, O_CTIMEOUT},
    {"drain", required_argument, 0, O_DRAIN},
    {"server-pid", required_argument, 0, O_PID},
    {"ca", required_argument, 0, O_CA},
    {"tls12", no_argument, 0, O_TLS12},
    {"json", no_argument, 0, O_JSON},
    {"quiet", no_argument, 0, 'q'},
    {"help", no_argument, 0, 'h'},
    {0, 0, 0, 0},
};

/* Returns 0, 1 for --help, -1 on a bad option (already reported). */
static int parse_opts(bench_opts *o, int argc, char **argv)
{
    memset(o, 0, sizeof *o);
    o->clients = 100;
    o->senders = 10;
    o->window = 16;
    o->duration = 10;
    o->threads = 0;
    o->src_addrs = 32;
    o->size = 32;
    o->rooms = 1;
    o->drain = 2;
    o->connect_timeout = 30;
    o->max_connecting = 128;
    bool senders_given = false;
    optind = 1;
    opterr = 0;
    int ch, li = -1;
    while ((ch = getopt_long(argc, argv, ":n:s:r:w:d:t:qh", long_opts, &li)) != -1) {
        double v = 0;
        char name[40];
        if (li >= 0) snprintf(name, sizeof name, "--%s", long_opts[li].name);
        else snprintf(name, sizeof name, "-%c", ch);
        li = -1;
        const char *arg0 = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
        int bad = 0;
        switch (ch) {
        case 'n': bad = number(name, optarg, 1, 1e7, true, &v); o->clients = (unsigned)v; break;
        case 's': bad = number(name, optarg, 0, 1e7, true, &v); o->senders = (unsigned)v;
                  senders_given = true; break;
        case 'r': bad = number(name, optarg, 0, 1e9, false, &v); o->rate = v; break;
        case 'w': bad = number(name, optarg, 1, 1e6, true, &v); o->window = (unsigned)v; break;
        case 'd': bad = number(name, optarg, 0.001, 1e6, false, &v); o->duration = v; break;
        case 't': bad = number(name, optarg, 1, 1024, true, &v); o->threads = (unsigned)v; break;
        case O_SRC: bad = number(name, optarg, 1, 254, true, &v); o->src_addrs = (unsigned)v; break;
        case O_SIZE: bad = number(name, optarg, 1, 4000, true, &v); o->size = (unsigned)v; break;
        case O_ROOM:
            if (!optarg[0] || strlen(optarg) > 60) {
                fprintf(stderr, "tagarela bench: --room wants a name of 1 to 60 bytes\n");
                bad = -1;
            }
            o->room = optarg;
            break;
        case O_ROOMS: bad = number(name, optarg, 1, 1e7, true, &v); o->rooms = (unsigned)v; break;
        case O_IDLE: o->idle = true; break;
        case O_DEFLATE: o->deflate = true; break;
        case O_CRATE: bad = number(name, optarg, 0, 1e9, false, &v); o->connect_rate = v; break;
        case O_MAXCONN: bad = number(name, optarg, 1, 1e6, true, &v);
                        o->max_connecting = (unsigned)v; break;
        case O_CTIMEOUT: bad = number(name, optarg, 0.1, 1e6, false, &v);
                         o->connect_timeout = v; break;
        case O_DRAIN: bad = number(name, optarg, 0, 1e6, false, &v); o->drain = v; break;
        case O_PID: bad = number(name, optarg, 1, 4194304, true, &v); o->server_pid = (int)v; break;
        case O_JSON: o->json = true; break;
        case O_CA: o->ca = optarg; break;
        case O_TLS12: o->tls_max12 = true; break;
        case 'q': o->quiet = true; break;
        case 'h': return 1;
        case ':':
            fprintf(stderr, "tagarela bench: %s needs a value\n", arg0);
            return -1;
        default:
            fprintf(stderr, "tagarela bench: unknown option '%s'\n", arg0);
            return -1;
        }
        if (bad) return -1;
    }
    for (int i = optind; i < argc; i++)
        if (parse_url(o, argv[i])) return -1;
    if (optind == argc && parse_url(o, "ws://127.0.0.1:7272/")) return -1;
    if (o->idle) o->senders = 0;
    else if (o->senders > o->clients) {
        if (senders_given) {
            fprintf(stderr, "tagarela bench: %u senders but only %u clients\n",
                    o->senders, o->clients);
            return -1;
        }
        o->senders = o->clients;
    }
    if (o->rooms > o->clients) {
        fprintf(stderr, "tagarela bench: %u rooms but only %u clients\n", o->rooms, o->clients);
        return -1;
    }
    if (o->threads == 0) o->threads = usable_cores();
    if (o->threads > o->clients) o->threads = o->clients;
    size_t need = bench_content_min(o->senders, bench_now_ns());
    if (o->size < need) o->size = (unsigned)need;
    return 0;
}

/* ---- the machine: limits, /proc ------------------------------------------ */

static int raise_nofile(unsigned clients, unsigned threads)
{
    uint64_t need = (uint64_t)clients + 16 + 8 * (uint64_t)threads;  /* loops, std streams */
    uint64_t have = raise_fd_limit(need);
    if (have >= need) return 0;
    fprintf(stderr, "tagarela bench: %u clients need %llu open files, the limit is %llu "
            "(raise it with ulimit -n)\n", clients, (unsigned long long)need,
            (unsigned long long)have);
    return -1;
}

/* utime + stime of a process, in seconds; -1 when unreadable. */
static double proc_cpu(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');        /* the name may hold spaces */
    if (!p) return -1;
    unsigned long long ut, st;
    /* after ")": state, ppid, pgrp, session, tty, tpgid, flags, minflt,
     * cminflt, majflt, cmajflt, utime, stime */
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* VmRSS in bytes; -1 when unreadable. */
static long long proc_rss(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %lld kB", &kb) == 1) break;
    fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

static double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* ---- reading the workers ----------------------------------------------- */

typedef struct totals {
    uint64_t started, logged_in, first_connect, last_login;
    uint64_t deliveries, unique, dups, gaps, foreign;
    uint64_t rate_limited, other, disconnects;
    uint64_t sent, echoed, rejected, expected;
    uint64_t bytes_in, deflate_clients, compressed_in;
    bool all_in_phase;
} totals;

static void sum(bench_run *r, totals *t, int phase)
{
    const bench_opts *o = &r->o;
    memset(t, 0, sizeof *t);
    t->all_in_phase = true;
    /* senders first: their counts only grow before the receivers' do */
    for (unsigned s = 0; s < o->senders && !o->idle; s++) {
        uint64_t sent = COUNTER_GET(r->snd[s].sent), rej = COUNTER_GET(r->snd[s].rejected);
        t->sent += sent;
        t->echoed += COUNTER_GET(r->snd[s].echoed);
        t->rejected += rej;
        t->expected += (sent - rej) * bench_room_members(o, s % o->rooms);
    }
    for (unsigned i = 0; i < o->threads; i++) {
        bench_worker *w = &r->w[i];
        t->started += COUNTER_GET(w->started_n);
        t->logged_in += COUNTER_GET(w->logged_in);
        uint64_t fc = COUNTER_GET(w->first_connect_ns), ll = COUNTER_GET(w->last_login_ns);
        if (fc && (!t->first_connect || fc < t->first_connect)) t->first_connect = fc;
        if (ll > t->last_login) t->last_login = ll;
        t->deliveries += COUNTER_GET(w->deliveries);
        t->unique += COUNTER_GET(w->unique);
        t->dups += COUNTER_GET(w->dups);
        t->gaps += COUNTER_GET(w->gaps);
        t->foreign += COUNTER_GET(w->foreign);
        t->rate_limited += COUNTER_GET(w->err_rate_limited);
        t->other += COUNTER_GET(w->err_other);
        t->disconnects += COUNTER_GET(w->disconnects);
        t->bytes_in += COUNTER_GET(w->bytes_in);
        t->deflate_clients += COUNTER_GET(w->deflate_clients);
        t->compressed_in += COUNTER_GET(w->compressed_in);
        if (COUNTER_GET(w->phase_seen) != phase) t->all_in_phase = false;
    }
}

static void merge_hist(bench_run *r, bench_hist *h, bool login)
{
    bench_hist_init(h);
    for (unsigned i = 0; i < r->o.threads; i++)
        bench_hist_merge(h, login ? &r->w[i].login : &r->w[i].lat);
}

/* ---- progress ------------------------------------------------------------ */

typedef struct progress {
    bool on, tty;
    uint64_t t_begin, last_print;
    totals last;
    double last_bench_cpu, last_server_cpu;
    bench_hist prev;            /* latency as of the last line */
    bench_hist cur;
} progress;

static void progress_line(bench_run *r, progress *pg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void progress_line(bench_run *r, progress *pg, const char *fmt, ...)
{
    char line[400];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    double secs = (double)(bench_now_ns() - pg->t_begin) / 1e9;
    if (pg->tty) fprintf(stderr, "\r[%6.1fs] %-100s", secs, line);
    else fprintf(stderr, "[%6.1fs] %s\n", secs, line);
    fflush(stderr);
}

static void progress_end(progress *pg)
{
    if (pg->on && pg->tty) fputc('\n', stderr);
}

/* Once a second: what happened since the last line. */
static void progress_tick(bench_run *r, progress *pg, int phase)
{
    uint64_t now = bench_now_ns();
    if (!pg->on || now - pg->last_print < 1000000000ull) return;
    double dt = (double)(now - pg->last_print) / 1e9;
    const bench_opts *o = &r->o;
    totals t;
    sum(r, &t, phase);
    double bcpu = self_cpu(), scpu = o->server_pid ? proc_cpu(o->server_pid) : -1;
    char srv[96] = "";
    if (scpu >= 0 && pg->last_server_cpu >= 0)
        snprintf(srv, sizeof srv, "  server cpu %3.0f%%", 100 * (scpu - pg->last_server_cpu) / dt);
    double bench_pct = 100 * (bcpu - pg->last_bench_cpu) / dt;
    if (phase == PHASE_CONNECT) {
        progress_line(r, pg, "login %llu/%u (%.0f/s)  bench cpu %3.0f%%%s",
                      (unsigned long long)t.logged_in, o->clients,
                      (double)(t.logged_in - pg->last.logged_in) / dt, bench_pct, srv);
    } else if (phase == PHASE_HOLD) {
        long long rss = o->server_pid ? proc_rss(o->server_pid) : -1;
        char rs[48] = "";
        if (rss >= 0) snprintf(rs, sizeof rs, "  server rss %.1f MiB", rss / 1048576.0);
        progress_line(r, pg, "holding %llu clients, disconnects %llu%s%s",
                      (unsigned long long)t.logged_in, (unsigned long long)t.disconnects,
                      rs, srv);
    } else {
        merge_hist(r, &pg->cur, false);
        bench_hist d = pg->cur;         /* this second's latencies */
        d.count = 0;
        for (unsigned i = 0; i < BENCH_HIST_N; i++) {
            d.b[i] -= pg->prev.b[i];
            d.count += d.b[i];
        }
        d.min = 0;
        pg->prev = pg->cur;
        progress_line(r, pg, "%s %.0f deliveries/s  %.0f msg/s  p99 %.2f ms  err %llu  "
                      "disc %llu  bench cpu %3.0f%%%s",
                      phase == PHASE_SEND ? "send" : "drain",
                      (double)(t.deliveries - pg->last.deliveries) / dt,
                      (double)(t.sent - pg->last.sent) / dt,
                      (double)bench_hist_quantile(&d, 0.99) / 1e6,
                      (unsigned long long)(t.rate_limited + t.other),
                      (unsigned long long)t.disconnects, bench_pct, srv);
    }
    pg->last = t;
    pg->last_print = now;
    pg->last_bench_cpu = bcpu;
    pg->last_server_cpu = scpu;
}

/* ---- the result ------------------------------------------------------------ */

typedef struct result {
    totals t;                   /* at the end of the drain */
    uint64_t deliveries_t1, sent_t1;
    double duration, login_s;
    double bench_cpu, server_cpu;   /* over the measured phase; -1: unknown */
    double bench_cpu_login, server_cpu_login;   /* over the logins */
    long long rss_base, rss;        /* -1: unknown */
    bench_hist lat, login;
    bool settled;
} result;

static void json_num(sbuf *b, double v, const char *fmt)
{
    if (!isfinite(v)) sbuf_puts(b, "null");
    else sbuf_printf(b, fmt, v);
}

static double ms(uint64_t ns) { return (double)ns / 1e6; }

static void print_json(bench_run *r, result *res)
{
    const bench_opts *o = &r->o;
    const totals *t = &res->t;
    sbuf b;
    sbuf_init(&b);
    sbuf_puts(&b, "{\"server_url\":");
    sbuf_json_str(&b, o->url, strlen(o->url));
    sbuf_printf(&b, ",\"clients\":%u,\"logged_in\":%llu,\"senders\":%u,\"rate\":",
                o->clients, (unsigned long long)t->logged_in, o->senders);
    json_num(&b, o->rate, "%g");
    sbuf_printf(&b, ",\"window\":%u,\"size\":%u,\"duration_s\":", o->window, o->size);
    json_num(&b, res->duration, "%.3f");
    sbuf_puts(&b, ",\"login\":{\"seconds\":");
    json_num(&b, res->login_s, "%.3f");
    sbuf_puts(&b, ",\"per_s\":");
    json_num(&b, res->login_s > 0 ? (double)t->logged_in / res->login_s : NAN, "%.1f");
    sbuf_puts(&b, ",\"p50_ms\":");
    json_num(&b, ms(bench_hist_quantile(&res->login, 0.5)), "%.3f");
    sbuf_puts(&b, ",\"p99_ms\":");
    json_num(&b, ms(bench_hist_quantile(&res->login, 0.99)), "%.3f");
    sbuf_puts(&b, ",\"max_ms\":");
    json_num(&b, ms(res->login.count ? res->login.max : 0), "%.3f");
    uint64_t lost = t->expected > t->unique ? t->expected - t->unique : 0;
    sbuf_printf(&b, "},\"sent\":%llu,\"deliveries\":%llu,\"expected_deliveries\":%llu,"
                "\"lost\":%llu,\"dups\":%llu,\"messages_per_s\":",
                (unsigned long long)t->sent, (unsigned long long)t->deliveries,
                (unsigned long long)t->expected, (unsigned long long)lost,
                (unsigned long long)t->dups);
    bool idle = o->idle;
    json_num(&b, idle ? 0 : (double)res->sent_t1 / res->duration, "%.1f");
    sbuf_puts(&b, ",\"deliveries_per_s\":");
    json_num(&b, idle ? 0 : (double)res->deliveries_t1 / res->duration, "%.1f");
    bool none = idle || res->lat.count == 0;
    sbuf_puts(&b, ",\"latency_ms\":{\"p50\":");
    json_num(&b, none ? NAN : ms(bench_hist_quantile(&res->lat, 0.5)), "%.3f");
    sbuf_puts(&b, ",\"p99\":");
    json_num(&b, none ? NAN : ms(bench_hist_quantile(&res->lat, 0.99)), "%.3f");
    sbuf_puts(&b, ",\"p999\":");
    json_num(&b, none ? NAN : ms(bench_hist_quantile(&res->lat, 0.999)), "%.3f");
    sbuf_puts(&b, ",\"max\":");
    json_num(&b, none ? NAN : ms(res->lat.max), "%.3f");
    sbuf_printf(&b, "},\"errors\":{\"rate_limited\":%llu,\"other\":%llu,\"disconnects\":%llu}",
                (unsigned long long)t->rate_limited, (unsigned long long)t->other,
                (unsigned long long)t->disconnects);
    sbuf_printf(&b, ",\"bytes_in\":%llu,\"deflate\":{\"offered\":%s,\"clients\":%llu,"
                "\"compressed_messages\":%llu}",
                (unsigned long long)t->bytes_in, o->deflate ? "true" : "false",
                (unsigned long long)t->deflate_clients, (unsigned long long)t->compressed_in);
    sbuf_printf(&b, ",\"bench\":{\"threads\":%u,\"cpu_s\":", o->threads);
    json_num(&b, res->bench_cpu, "%.3f");
    sbuf_puts(&b, "},\"server\":");
    if (!o->server_pid) {
        sbuf_puts(&b, "null");
    } else {
        sbuf_printf(&b, "{\"pid\":%d,\"cpu_s\":", o->server_pid);
        json_num(&b, res->server_cpu >= 0 ? res->server_cpu : NAN, "%.3f");
        sbuf_puts(&b, ",\"rss_bytes\":");
        json_num(&b, res->rss >= 0 ? (double)res->rss : NAN, "%.0f");
        sbuf_puts(&b, ",\"rss_bytes_per_client\":");
        json_num(&b, res->rss >= 0 && res->rss_base >= 0 && t->logged_in
                 ? (double)(res->rss - res->rss_base) / (double)t->logged_in : NAN, "%.1f");
        sbuf_putc(&b, '}');
    }
    sbuf_puts(&b, "}\n");
    fwrite(b.p, 1, b.len, stdout);
    sbuf_free(&b);
}

static void print_human(bench_run *r, result *res)
{
    const bench_opts *o = &r->o;
    const totals *t = &res->t;
    char rate[32];
    if (o->rate > 0) snprintf(rate, sizeof rate, "%g msg/s each", o->rate);
    else snprintf(rate, sizeof rate, "window %u", o->window);
    printf("tagarela bench  %s\n", o->url);
    printf("  %u clients in %u room%s, ", o->clients, o->rooms, o->rooms == 1 ? "" : "s");
    if (o->idle) printf("idle");
    else printf("%u senders, %s, %u-byte content", o->senders, rate, o->size);
    printf(", %u thread%s\n\n", o->threads, o->threads == 1 ? "" : "s");
    printf("  login        %llu in %.3f s = %.0f/s   latency p50 %.2f ms  p99 %.2f ms  "
           "max %.2f ms\n", (unsigned long long)t->logged_in, res->login_s,
           res->login_s > 0 ? (double)t->logged_in / res->login_s : 0,
           ms(bench_hist_quantile(&res->login, 0.5)), ms(bench_hist_quantile(&res->login, 0.99)),
           ms(res->login.count ? res->login.max : 0));
    printf("               cpu: bench %.2f s", res->bench_cpu_login);
    if (res->server_cpu_login >= 0) printf(", server %.2f s", res->server_cpu_login);
    printf("\n");
    if (o->idle) {
        printf("  held         %.2f s\n", res->duration);
    } else {
        uint64_t lost = t->expected > t->unique ? t->expected - t->unique : 0;
        printf("  sending      %.2f s\n", res->duration);
        printf("  messages     %llu sent = %.0f/s\n", (unsigned long long)t->sent,
               (double)res->sent_t1 / res->duration);
        printf("  deliveries   %llu = %.0f/s   expected %llu, lost %llu, dups %llu%s\n",
               (unsigned long long)t->deliveries, (double)res->deliveries_t1 / res->duration,
               (unsigned long long)t->expected, (unsigned long long)lost,
               (unsigned long long)t->dups, res->settled ? "" : " (drain timed out)");
        printf("  latency      p50 %.3f ms  p99 %.3f ms  p99.9 %.3f ms  max %.3f ms\n",
               ms(bench_hist_quantile(&res->lat, 0.5)), ms(bench_hist_quantile(&res->lat, 0.99)),
               ms(bench_hist_quantile(&res->lat, 0.999)), ms(res->lat.max));
    }
    printf("  errors       rate_limited %llu, other %llu, disconnects %llu\n",
           (unsigned long long)t->rate_limited, (unsigned long long)t->other,
           (unsigned long long)t->disconnects);
    if (r->first_disconnect[0]) printf("  first disconnect: %s\n", r->first_disconnect);
    printf("  wire         %llu bytes received", (unsigned long long)t->bytes_in);
    if (t->deliveries) printf(" = %.1f per delivery", (double)t->bytes_in / (double)t->deliveries);
    if (o->deflate)
        printf("; permessage-deflate agreed by %llu of %llu clients, %llu messages inflated",
               (unsigned long long)t->deflate_clients, (unsigned long long)t->logged_in,
               (unsigned long long)t->compressed_in);
    printf("\n");
    if (t->foreign) printf("  (%llu say messages from elsewhere ignored)\n",
                           (unsigned long long)t->foreign);
    if (o->idle)
        printf("  bench        cpu %.2f s over the logins and the hold\n", res->bench_cpu);
    else
        printf("  bench        cpu %.2f s = %.0f%% of a core over the sending\n", res->bench_cpu,
               100 * res->bench_cpu / res->duration);
    if (o->server_pid) {
        printf("  server       pid %d", o->server_pid);
        if (res->server_cpu >= 0 && o->idle)
            printf(", cpu %.2f s", res->server_cpu);
        else if (res->server_cpu >= 0)
            printf(", cpu %.2f s = %.0f%% of a core, %.3f us per delivery", res->server_cpu,
                   100 * res->server_cpu / res->duration,
                   res->deliveries_t1 ? 1e6 * res->server_cpu / (double)res->deliveries_t1 : 0.0);
        if (res->rss >= 0) printf(", rss %.1f MiB", res->rss / 1048576.0);
        if (res->rss >= 0 && res->rss_base >= 0 && t->logged_in)
            printf(" (%+.0f bytes per client over %.1f MiB before)",
                   (double)(res->rss - res->rss_base) / (double)t->logged_in,
                   res->rss_base / 1048576.0);
        printf("\n");
    }
}

/* ---- the run ------------------------------------------------------------- */

/* Waits until `until` (ns) or a failure, printing progress. */
static bool wait_until(bench_run *r, progress *pg, int phase, uint64_t until,
                       bool (*done)(bench_run *, void *), void *arg)
{
    for (;;) {
        if (COUNTER_GET(r->failed)) return false;
        if (done && done(r, arg)) return true;
        uint64_t now = bench_now_ns();
        if (now >= until) return false;
        progress_tick(r, pg, phase);
        uint64_t left = until - now;
        sleep_ns(left < TICK_NS ? left : TICK_NS);
    }
}

static bool all_logged_in(bench_run *r, void *arg)
{
    totals t;
    sum(r, &t, PHASE_CONNECT);
    return t.logged_in == r->o.clients;
}

static bool settled(bench_run *r, void *arg)
{
    totals t;
    sum(r, &t, PHASE_DRAIN);
    return t.all_in_phase && t.echoed + t.rejected == t.sent && t.unique >= t.expected;
}

static int build_login_tails(bench_run *r)
{
    const bench_opts *o = &r->o;
    r->login_msg = calloc(o->rooms, sizeof *r->login_msg);
    if (!r->login_msg) return -1;
    for (unsigned i = 0; i < o->rooms; i++) {
        sbuf b;
        sbuf_init(&b);
        if (o->rooms > 1) {
            char id[96];
            int n = snprintf(id, sizeof id, "%s.%u", o->room ? o->room : "bench", i);
            sbuf_puts(&b, ",\"room_id\":");
            sbuf_json_str(&b, id, (size_t)n);
        } else if (o->room) {
            sbuf_puts(&b, ",\"room_id\":");
            sbuf_json_str(&b, o->room, strlen(o->room));
        }
        sbuf_putc(&b, '}');
        if (b.oom) return -1;
        r->login_msg[i] = b.p;
    }
    return 0;
}

static void make_nonce(char *out)
{
    uint8_t raw[BENCH_NONCE_LEN];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) {
        uint64_t t = bench_now_ns();
        memcpy(raw, &t, sizeof raw);
    }
    for (int i = 0; i < BENCH_NONCE_LEN; i++) out[i] = (char)('a' + raw[i] % 26);
    out[BENCH_NONCE_LEN] = 0;
}

/* Connect, send or hold, drain. Returns 0 or -1 (r->error says why). */
static int run_phases(bench_run *r, result *res, progress *pg)
{
    const bench_opts *o = &r->o;
    res->rss_base = o->server_pid ? proc_rss(o->server_pid) : -1;
    if (o->server_pid && res->rss_base < 0) {
        bench_fail(r, "cannot read /proc/%d: is the server's pid right?", o->server_pid);
        return -1;
    }
    pg->t_begin = pg->last_print = bench_now_ns();
    pg->last_bench_cpu = self_cpu();
    pg->last_server_cpu = o->server_pid ? proc_cpu(o->server_pid) : -1;
    double bstart = pg->last_bench_cpu, sstart = pg->last_server_cpu;
    for (unsigned i = 0; i < o->threads; i++) {
        if (bench_worker_start(&r->w[i]) != 0) {
            bench_fail(r, "cannot start a thread");
            return -1;
        }
    }
    uint64_t deadline = pg->t_begin + (uint64_t)(o->connect_timeout * 1e9);
    if (!wait_until(r, pg, PHASE_CONNECT, deadline, all_logged_in, NULL)) {
        if (!COUNTER_GET(r->failed)) {
            totals t;
            sum(r, &t, PHASE_CONNECT);
            bench_fail(r, "only %llu of %u clients logged in within %g s",
                       (unsigned long long)t.logged_in, o->clients, o->connect_timeout);
        }
        return -1;
    }
    totals t;
    sum(r, &t, PHASE_CONNECT);
    res->login_s = (double)(t.last_login - t.first_connect) / 1e9;
    merge_hist(r, &res->login, true);

    int phase = o->idle ? PHASE_HOLD : PHASE_SEND;
    uint64_t t0 = bench_now_ns();
    double b0 = self_cpu(), s0 = o->server_pid ? proc_cpu(o->server_pid) : -1;
    res->bench_cpu_login = b0 - bstart;
    res->server_cpu_login = s0 >= 0 && sstart >= 0 ? s0 - sstart : -1;
    if (o->idle) {
        /* an idle run's cost is its logins: count them in */
        b0 = bstart;
        s0 = sstart;
    }
    bench_set_phase(r, phase);
    pg->last = t;
    wait_until(r, pg, phase, t0 + (uint64_t)(o->duration * 1e9), NULL, NULL);
    if (COUNTER_GET(r->failed)) return -1;
    uint64_t t1 = bench_now_ns();
    double b1 = self_cpu(), s1 = o->server_pid ? proc_cpu(o->server_pid) : -1;
    res->rss = o->server_pid ? proc_rss(o->server_pid) : -1;
    sum(r, &t, phase);
    res->deliveries_t1 = t.deliveries;
    res->sent_t1 = t.sent;
    res->duration = (double)(t1 - t0) / 1e9;
    res->bench_cpu = b1 - b0;
    res->server_cpu = s0 >= 0 && s1 >= 0 ? s1 - s0 : -1;
    res->settled = true;
    if (!o->idle) {
        bench_set_phase(r, PHASE_DRAIN);
        res->settled = wait_until(r, pg, PHASE_DRAIN, t1 + (uint64_t)(o->drain * 1e9),
                                  settled, NULL);
        if (COUNTER_GET(r->failed)) return -1;
    }
    sum(r, &res->t, PHASE_DRAIN);
    merge_hist(r, &res->lat, false);
    return 0;
}

static void run_free(bench_run *r)
{
    bench_workers_free(r);
    bench_tls_free(&r->o);
    for (unsigned i = 0; r->login_msg && i < r->o.rooms; i++) free(r->login_msg[i]);
    free(r->login_msg);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

int bench_main(int argc, char **argv)
{
    bench_run *r = calloc(1, sizeof *r);
    progress *pg = calloc(1, sizeof *pg);     /* both hold histograms */
    result *res = calloc(1, sizeof *res);
    if (!r || !pg || !res) {
        fprintf(stderr, "tagarela bench: out of memory\n");
        return 1;
    }
    pthread_mutex_init(&r->lock, NULL);
    int rc = parse_opts(&r->o, argc, argv);
    if (rc != 0) {
        usage(rc > 0 ? stdout : stderr);
        free(pg);
        free(res);
        run_free(r);
        return rc > 0 ? 0 : 2;
    }
    bench_opts *o = &r->o;
    make_nonce(o->nonce);
    signal(SIGPIPE, SIG_IGN);
    pg->on = !o->quiet;
    pg->tty = isatty(2);
    int ok = -1;
    if (raise_nofile(o->clients, o->threads)) {
        /* said why */
    } else if (o->tls && bench_tls_init(o) < 0) {
        fprintf(stderr, "tagarela bench: cannot set up TLS\n");
    } else if (build_login_tails(r) || bench_workers_init(r)) {
        fprintf(stderr, "tagarela bench: out of memory\n");
    } else {
        ok = run_phases(r, res, pg);
        bench_set_phase(r, PHASE_STOP);
        for (unsigned i = 0; i < o->threads; i++) bench_worker_join(&r->w[i]);
        progress_end(pg);
        if (ok == 0) {
            if (o->json) print_json(r, res);
            else print_human(r, res);
            fflush(stdout);
        } else {
            fprintf(stderr, "tagarela bench: %s\n", r->error);
        }
    }
    free(pg);
    free(res);
    run_free(r);
    return ok == 0 ? 0 : 1;
}
