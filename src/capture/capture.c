/* capture.c -- `tagarela capture`: options, opening the live interface or
 * the file (with its BPF filter and the optional -w copy), the packet loop,
 * Ctrl-C, and the summary at exit. The decoding itself lives in the other
 * files of src/capture, all of it in one cap_ctx. */
#include "capture.h"
#include "sys.h"
#include "capture_int.h"
#include "file.h"
#include "keylog.h"
#include "par.h"

#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <pcap/pcap.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_PORT 7272
#define DEFAULT_SNAPLEN 262144
#define DEFAULT_THREADS_MAX 4
#define OUT_BUF (256 * 1024)
#define FILE_BUF (1024 * 1024)

/* Set by SIGINT/SIGTERM and polled by the packet loop, and the handle
 * whose wait the signal must interrupt: the one piece of process-wide
 * state, since a signal handler can reach nothing else. */
static volatile sig_atomic_t stop_requested;
static pcap_t *volatile signal_handle;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
    /* A live read waits in poll(), which libpcap restarts after EINTR:
     * pcap_breakloop() (safe in a signal handler) makes it return. */
    if (signal_handle) pcap_breakloop(signal_handle);
}

static const char usage[] =
    "usage: tagarela capture [options] [BPF filter expression]\n"
    "  -i IFACE        capture live on IFACE (default: any)\n"
    "  -r FILE         read packets from a pcap or pcapng file (- for stdin)\n"
    "  -w FILE         also save the packets read to FILE (pcap)\n"
    "  -c N            stop after N packets\n"
    "  -s SNAPLEN      bytes kept per packet (default 262144); with -r, packets\n"
    "                  are cut as if they had been captured with it\n"
    "  -p PORT         the WebSocket server port (default 7272); live, the filter\n"
    "                  is 'tcp port PORT' (VLAN-tagged too) unless an expression\n"
    "                  is given. With -r and neither -p nor an expression, every\n"
    "                  TCP port is read: connections on other ports are shown\n"
    "                  once they start with an HTTP request (or TLS, --keylog)\n"
    "  --keylog=FILE   decrypt TLS (wss://) with this NSS key log (SSLKEYLOGFILE):\n"
    "                  TLS 1.3, and TLS 1.2 with AES-GCM or ChaCha20-Poly1305\n"
    "  -X              show payloads in hex and ASCII too\n"
    "  --json          one JSON object per line on stdout (summary on stderr)\n"
    "  --color=WHEN    never, always or auto (default: auto, when stdout is a tty)\n"
    "  --max-mem=SIZE  memory the decoder may hold, all flows (default 256M)\n"
    "  --max-message=SIZE  largest message shown whole (default 16M)\n"
    "  --idle=SECONDS  evict flows idle that long in capture time (default 300)\n"
    "  --threads=N     decoder threads for -r with --json (default: the usable\n"
    "                  cores, at most 4); the output is the same, in capture order\n"
    "  -q              no 'listening on' line\n";

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "tagarela capture: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n%s", usage);
    return 2;
}



static char *join_args(int argc, char **argv)
{
    size_t n = 1;
    for (int i = 0; i < argc; i++) n += strlen(argv[i]) + 1;
    char *s = malloc(n), *o = s;
    if (!s) return NULL;
    for (int i = 0; i < argc; i++) o += sprintf(o, "%s%s", i ? " " : "", argv[i]);
    *o = '\0';
    return s;
}

enum { OPT_JSON = 256, OPT_COLOR, OPT_MAXMEM, OPT_MAXMSG, OPT_IDLE, OPT_KEYLOG, OPT_THREADS, OPT_HELP };

/* "64M", "1g", "4096": bytes (sys.h's reading, here for a size_t). */
static bool size_option(const char *s, size_t *out)
{
    uint64_t v;
    if (parse_size(s, 1ULL << 40, &v) < 0) return false;
    *out = (size_t)v;
    return true;
}

static bool whole_option(const char *s, double lo, double hi, long long *out)
{
    double v;
    if (parse_number(s, lo, hi, true, &v) < 0) return false;
    *out = (long long)v;
    return true;
}

static int parse_options(int argc, char **argv, cap_opts *o)
{
    static const struct option longs[] = {
        {"json", no_argument, NULL, OPT_JSON},
        {"color", required_argument, NULL, OPT_COLOR},
        {"colour", required_argument, NULL, OPT_COLOR},
        {"max-mem", required_argument, NULL, OPT_MAXMEM},
        {"max-message", required_argument, NULL, OPT_MAXMSG},
        {"idle", required_argument, NULL, OPT_IDLE},
        {"keylog", required_argument, NULL, OPT_KEYLOG},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    long long v;
    int ch;
    optind = 1;     /* the caller may have used getopt already */
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "+i:r:w:c:s:p:Xqh", longs, NULL)) != -1) {
        switch (ch) {
        case 'i': o->iface = optarg; break;
        case 'r': o->read_file = optarg; break;
        case 'w': o->write_file = optarg; break;
        case 'c':
            if (!whole_option(optarg, 1, 1e15, &v)) return usage_error("bad -c: %s", optarg);
            o->count = v;
            break;
        case 's':
            if (!whole_option(optarg, 1, DEFAULT_SNAPLEN, &v))
                return usage_error("bad -s (1..262144): %s", optarg);
            o->snaplen = (int)v;
            break;
        case 'p':
            if (!whole_option(optarg, 1, 65535, &v)) return usage_error("bad -p: %s", optarg);
            o->port = (uint16_t)v;
            break;
        case 'X': o->hex = true; break;
        case 'q': o->quiet = true; break;
        case OPT_JSON: o->json = true; break;
        case OPT_COLOR:
            if (!strcmp(optarg, "never")) o->color = CAP_COLOR_NEVER;
            else if (!strcmp(optarg, "always")) o->color = CAP_COLOR_ALWAYS;
            else if (!strcmp(optarg, "auto")) o->color = CAP_COLOR_AUTO;
            else return usage_error("bad --color (never, always, auto): %s", optarg);
            break;
        case OPT_MAXMEM:
            if (!size_option(optarg, &o->max_mem) || o->max_mem < (1u << 20))
                return usage_error("bad --max-mem (at least 1M): %s", optarg);
            break;
        case OPT_MAXMSG:
            if (!size_option(optarg, &o->max_message))
                return usage_error("bad --max-message: %s", optarg);
            break;
        case OPT_IDLE:
            if (!whole_option(optarg, 1, 1000000000, &v)) return usage_error("bad --idle: %s", optarg);
            o->idle = (double)v;
            break;
        case OPT_KEYLOG: o->keylog = optarg; break;
        case OPT_THREADS:
            if (!whole_option(optarg, 1, CAP_MAX_THREADS, &v))
                return usage_error("bad --threads (1..64): %s", optarg);
            o->threads = (int)v;
            break;
        case 'h':
        case OPT_HELP:
            fputs(usage, stdout);
            return -1;
        case ':':
            return usage_error("option %s needs a value", argv[optind - 1]);
        default:
            return usage_error("unknown option %s", argv[optind - 1]);
        }
    }
    if (o->iface && o->read_file) return usage_error("%s", "use -i or -r, not both");
    if (optind < argc) {
        o->filter = join_args(argc - optind, argv + optind);
        if (!o->filter) return usage_error("%s", "out of memory");
    }
    if (!o->port && optind >= argc) {
        o->port = DEFAULT_PORT;
        o->any_port = o->read_file != NULL;
    }
    return 0;
}

static void set_defaults(cap_opts *o)
{
    memset(o, 0, sizeof *o);
    o->color = CAP_COLOR_AUTO;
    o->max_mem = 256u << 20;
    o->max_stream = 1u << 20;
    o->max_message = 16u << 20;
    o->max_flows = 65536;
    o->idle = 300;
    /* Past a few threads the main thread's reading is the limit, and
     * each thread's share of --max-mem shrinks. */
    unsigned cores = usable_cores();
    o->threads = cores < DEFAULT_THREADS_MAX ? (int)cores : DEFAULT_THREADS_MAX;
}

/* ---- opening ---- */

static pcap_t *open_live(const cap_opts *o, char *err)
{
    const char *dev = o->iface ? o->iface : "any";
    pcap_t *p = pcap_create(dev, err);
    if (!p) return NULL;
    pcap_set_snaplen(p, o->snaplen ? o->snaplen : DEFAULT_SNAPLEN);
    pcap_set_promisc(p, 0);
    pcap_set_timeout(p, 100);           /* wake up to notice Ctrl-C */
    pcap_set_immediate_mode(p, 1);      /* print each packet as it comes */
    pcap_set_buffer_size(p, 16 << 20);
    int rc = pcap_activate(p);
    if (rc < 0) {
        snprintf(err, PCAP_ERRBUF_SIZE, "%s: %s", dev,
                 rc == PCAP_ERROR ? pcap_geterr(p) : pcap_statustostr(rc));
        if (rc == PCAP_ERROR_NO_SUCH_DEVICE || rc == PCAP_ERROR_PERM_DENIED) {
            const char *extra = pcap_geterr(p);
            if (extra && *extra)
                snprintf(err, PCAP_ERRBUF_SIZE, "%s: %s (%s)", dev, pcap_statustostr(rc), extra);
        }
        pcap_close(p);
        return NULL;
    }
    if (rc > 0) fprintf(stderr, "tagarela capture: warning: %s: %s\n", dev, pcap_statustostr(rc));
    return p;
}

/* Where the packets come from: libpcap (live, pcapng, stdin), or our own
 * reader for classic pcap files (file.h), which libpcap then only
 * serves with a "dead" handle to compile the filter and write -w. */
typedef struct cap_input {
    pcap_t *p;
    pcap_dumper_t *dp;
    bool own;
    cap_file file;
    struct bpf_program prog;    /* the filter, applied here when own */
    int lt;
    cap_run *run;               /* decoder threads, or NULL: decoded here */
} cap_input;

/* A file libpcap reads (pcapng, stdin): opened here so that stdio reads it
 * in large blocks rather than 4 KiB ones. */
static pcap_t *open_libpcap_file(cap_ctx *c, const char *path, char *err)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) {
        snprintf(err, PCAP_ERRBUF_SIZE, "%s", strerror(errno));
        return NULL;
    }
    c->file_buf = malloc(FILE_BUF);
    if (c->file_buf) setvbuf(f, c->file_buf, _IOFBF, FILE_BUF);
    pcap_t *p = pcap_fopen_offline(f, err);
    if (!p) fclose(f);
    return p;
}

static pcap_t *open_source(cap_ctx *c, cap_input *in, char *err)
{
    const char *path = c->opt.read_file;
    if (!path) return open_live(&c->opt, err);
    if (strcmp(path, "-")) {
        int r = cap_file_open(&in->file, path, err, PCAP_ERRBUF_SIZE);
        if (r < 0) return NULL;
        if (r > 0 && (in->file.dlt == DLT_NULL || in->file.dlt == DLT_LOOP)) {
            /* BPF code for these tests the address family of every OS when
             * libpcap knows it reads a file, of this one only otherwise. */
            cap_file_close(&in->file);
            r = 0;
        }
        if (r > 0) {
            pcap_t *p = pcap_open_dead_with_tstamp_precision(
                in->file.dlt, in->file.snaplen ? (int)in->file.snaplen : DEFAULT_SNAPLEN,
                PCAP_TSTAMP_PRECISION_MICRO);
            if (!p) {
                cap_file_close(&in->file);
                snprintf(err, PCAP_ERRBUF_SIZE, "out of memory");
                return NULL;
            }
            in->own = true;
            return p;
        }
    }
    return open_libpcap_file(c, path, err);
}

static int set_filter(cap_ctx *c, cap_input *in)
{
    cap_opts *o = &c->opt;
    if (!o->filter) {
        /* 'tcp port 7272' alone misses frames with VLAN tags (one, or two
         * for QinQ), which only Ethernet has. */
        char buf[128];
        unsigned port = o->port;
        if (o->any_port)
            snprintf(buf, sizeof buf, in->lt == DLT_EN10MB ?
                     "tcp or (vlan and (tcp or (vlan and tcp)))" : "tcp");
        else if (in->lt == DLT_EN10MB)
            snprintf(buf, sizeof buf, "tcp port %u or (vlan and (tcp port %u or "
                     "(vlan and tcp port %u)))", port, port, port);
        else
            snprintf(buf, sizeof buf, "tcp port %u", port);
        if (!(o->filter = strdup(buf))) {
            fprintf(stderr, "tagarela capture: out of memory\n");
            return 1;
        }
    }
    if (pcap_compile(in->p, &in->prog, o->filter, 1, PCAP_NETMASK_UNKNOWN) < 0) {
        fprintf(stderr, "tagarela capture: bad filter '%s': %s\n", o->filter,
                pcap_geterr(in->p));
        return 2;
    }
    if (in->own) return 0;      /* applied packet by packet */
    int rc = pcap_setfilter(in->p, &in->prog);
    pcap_freecode(&in->prog);
    if (rc < 0) {
        fprintf(stderr, "tagarela capture: cannot set the filter: %s\n", pcap_geterr(in->p));
        return 1;
    }
    return 0;
}

static int open_capture(cap_ctx *c, cap_input *in)
{
    char err[PCAP_ERRBUF_SIZE] = "";
    cap_opts *o = &c->opt;
    in->p = open_source(c, in, err);
    if (!in->p) {
        fprintf(stderr, "tagarela capture: %s%s%s\n", o->read_file ? o->read_file : "",
                o->read_file ? ": " : "", err);
        return 1;
    }
    int lt = in->lt = pcap_datalink(in->p);
    if (!cap_pkt_linktype_ok(lt)) {
        fprintf(stderr, "tagarela capture: unsupported link type %s (%d)\n",
                pcap_datalink_val_to_name(lt) ? pcap_datalink_val_to_name(lt) : "?", lt);
        return 1;
    }
    int rc = set_filter(c, in);
    if (rc) return rc;
    if (o->write_file && !(in->dp = pcap_dump_open(in->p, o->write_file))) {
        fprintf(stderr, "tagarela capture: %s\n", pcap_geterr(in->p));
        return 1;
    }
    if (!o->quiet) {
        const char *ltn = pcap_datalink_val_to_name(lt);
        if (o->read_file)
            fprintf(stderr, "reading from file %s, link-type %s, filter: %s\n", o->read_file,
                    ltn ? ltn : "?", o->filter);
        else
            fprintf(stderr, "listening on %s, link-type %s, snapshot length %d bytes, filter: %s\n",
                    o->iface ? o->iface : "any", ltn ? ltn : "?", pcap_snapshot(in->p), o->filter);
    }
    return 0;
}

static void close_capture(cap_input *in)
{
    if (in->dp) pcap_dump_close(in->dp);
    if (in->own) {
        pcap_freecode(&in->prog);
        cap_file_close(&in->file);
    }
    if (in->p) pcap_close(in->p);   /* closes a file libpcap read */
}

/* ---- the loop ---- */

/* What -s does to a packet read from a file. */
static uint32_t cut(const cap_ctx *c, uint32_t caplen)
{
    uint32_t s = (uint32_t)c->opt.snaplen;
    return c->opt.read_file && s && caplen > s ? s : caplen;
}

static void one_packet(cap_ctx *c, cap_input *in, const struct pcap_pkthdr *h,
                       const uint8_t *data)
{
    int lt = in->lt;
    uint32_t caplen = cut(c, h->caplen);
    c->st.packets++;
    c->st.bytes += caplen;
    c->now_sec = h->ts.tv_sec;
    c->now_usec = (uint32_t)h->ts.tv_usec;
    c->now = (double)h->ts.tv_sec + h->ts.tv_usec / 1e6;
    cap_pkt pkt;
    switch (cap_pkt_decode(lt, data, caplen, h->len, &pkt)) {
    case CAP_PKT_OK:
        if (in->run) cap_run_packet(in->run, &pkt, c->now_sec, c->now_usec);
        else cap_packet(c, &pkt);
        break;
    case CAP_PKT_NOT_TCP: c->st.not_tcp++; break;
    case CAP_PKT_FRAGMENT: c->st.fragments++; break;
    case CAP_PKT_SHORT: c->st.short_pkts++; break;
    default: c->st.bad_pkts++; break;
    }
}

/* Saves a packet for -w, cut as it was decoded. */
static void dump(cap_ctx *c, cap_input *in, const struct pcap_pkthdr *h, const uint8_t *data)
{
    struct pcap_pkthdr hc = *h;
    hc.caplen = cut(c, hc.caplen);
    pcap_dump((u_char *)in->dp, &hc, data);
}

/* The memory a packet's flow lives in is what decoding a large file waits
 * for most: it is fetched while the packets before it are decoded, the
 * hash bucket PREFETCH_BUCKET packets ahead, the flow PREFETCH_FLOW ahead
 * (its bucket has arrived by then). */
#define PREFETCH_FLOW 1
#define PREFETCH_BUCKET 4

static void prefetch_one(cap_ctx *c, cap_input *in, size_t k, bool flow)
{
    struct pcap_pkthdr h;
    const uint8_t *data;
    cap_pkt pkt;
    if (cap_file_peek(&in->file, k - 1, &h, &data) &&
        cap_pkt_decode(in->lt, data, cut(c, h.caplen), h.len, &pkt) == CAP_PKT_OK)
        cap_prefetch(c, &pkt, flow);
}

static void prefetch_ahead(cap_ctx *c, cap_input *in)
{
    prefetch_one(c, in, PREFETCH_FLOW, true);
    prefetch_one(c, in, PREFETCH_BUCKET, false);
}

static int run_own(cap_ctx *c, cap_input *in)
{
    char err[256];
    long long n = 0;
    while (!stop_requested && !c->out.w.failed) {
        struct pcap_pkthdr h;
        const uint8_t *data;
        int rc = cap_file_next(&in->file, &h, &data, err, sizeof err);
        if (rc == 0) break;
        if (rc < 0) {
            cap_wbuf_flush(&c->out.w);
            fprintf(stderr, "tagarela capture: %s: %s\n", c->opt.read_file, err);
            return 1;
        }
        struct pcap_pkthdr hf = h;
        hf.caplen = cut(c, h.caplen);
        if (!pcap_offline_filter(&in->prog, &hf, data)) continue;
        if (!in->run) prefetch_ahead(c, in);
        if (in->dp) dump(c, in, &h, data);
        one_packet(c, in, &h, data);
        if (c->opt.count && ++n >= c->opt.count) break;
    }
    return 0;
}

static int run_libpcap(cap_ctx *c, cap_input *in)
{
    long long n = 0;
    while (!stop_requested && !c->out.w.failed) {
        struct pcap_pkthdr *h;
        const u_char *data;
        int rc = pcap_next_ex(in->p, &h, &data);
        if (rc == 0) {                  /* live timeout: nothing came */
            if (c->out.live) cap_wbuf_flush(&c->out.w);
            continue;
        }
        if (rc == PCAP_ERROR_BREAK) break;  /* end of the file, or Ctrl-C */
        if (rc < 0) {
            cap_wbuf_flush(&c->out.w);
            fprintf(stderr, "tagarela capture: %s\n", pcap_geterr(in->p));
            return 1;
        }
        if (in->dp) dump(c, in, h, data);
        one_packet(c, in, h, data);
        if (c->out.live) {
            cap_wbuf_flush(&c->out.w);
            if (in->dp) pcap_dump_flush(in->dp);
        }
        if (c->opt.count && ++n >= c->opt.count) break;
    }
    return 0;
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND;     /* a second Ctrl-C kills at once */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);       /* a closed pipe is seen as a write error */
}

static void print_summary(cap_ctx *c, pcap_t *p)
{
    struct pcap_stat ps;
    if (!c->opt.read_file && p && pcap_stats(p, &ps) == 0)
        c->st.kernel_drops = ps.ps_drop + ps.ps_ifdrop;
    cap_wbuf_flush(&c->out.w);     /* the events come before the summary */
    if (c->out.w.failed) return;
    if (c->opt.json) {
        cap_wbuf e;
        if (cap_wbuf_init(&e, 2, 4096)) return;
        cap_summary(c, &e);
        cap_wbuf_free(&e);
    } else {
        cap_summary(c, &c->out.w);
    }
    cap_wbuf_flush(&c->out.w);
}

int capture_main(int argc, char **argv)
{
    cap_ctx c;
    memset(&c, 0, sizeof c);
    stop_requested = 0;
    set_defaults(&c.opt);
    int rc = parse_options(argc, argv, &c.opt);
    if (rc) {
        free(c.opt.filter);
        return rc < 0 ? 0 : rc;
    }
    c.out.json = c.opt.json;
    c.out.hex = c.opt.hex;
    c.out.color = !c.opt.json && (c.opt.color == CAP_COLOR_ALWAYS ||
                                  (c.opt.color == CAP_COLOR_AUTO && isatty(1)));
    c.out.live = !c.opt.read_file;
    /* Threads for files in --json only: live, each packet is printed as it
     * comes; the text view names users from what any connection said. */
    if (!c.opt.read_file || !c.opt.json) c.opt.threads = 1;
    /* Flows come and go with their zlib windows: memory given back to the
     * system at every free of the heap's top would be faulted in again. */
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    fflush(stdout);
    if (cap_wbuf_init(&c.out.w, 1, OUT_BUF) || cap_ctx_init(&c)) {
        fprintf(stderr, "tagarela capture: out of memory\n");
        free(c.opt.filter);
        return 1;
    }
    cap_keylog keylog;
    if (c.opt.keylog) {
        char err[256];
        if (cap_keylog_open(&keylog, c.opt.keylog, err, sizeof err) < 0) {
            fprintf(stderr, "tagarela capture: --keylog: %s\n", err);
            cap_wbuf_free(&c.out.w);
            cap_ctx_free(&c);
            free(c.opt.filter);
            return 1;
        }
        c.keylog = &keylog;
        if (c.opt.threads > 1 && keylog.f) {
            /* Read whole: the threads then only look sessions up. */
            fclose(keylog.f);
            keylog.f = NULL;
        }
        if (keylog.bad_lines)
            fprintf(stderr, "tagarela capture: warning: %s: %llu of %llu lines not understood\n",
                    c.opt.keylog, (unsigned long long)keylog.bad_lines,
                    (unsigned long long)keylog.lines);
    }
    cap_input in;
    memset(&in, 0, sizeof in);
    in.file.fd = -1;
    install_signals();
    rc = open_capture(&c, &in);
    if (rc == 0) {
        signal_handle = in.own ? NULL : in.p;
        if (c.opt.threads > 1 && !(in.run = cap_run_start(&c, c.opt.threads)))
            fprintf(stderr, "tagarela capture: warning: cannot start %d threads: decoding "
                    "on one\n", c.opt.threads);
        rc = in.own ? run_own(&c, &in) : run_libpcap(&c, &in);
        signal_handle = NULL;
        if (!in.run) {
            cap_finish(&c);
        } else if (cap_run_end(in.run) < 0) {
            fprintf(stderr, "tagarela capture: out of memory: output incomplete\n");
            rc = 1;
        }
        in.run = NULL;
        print_summary(&c, in.own ? NULL : in.p);
        if (c.out.w.failed && rc == 0) rc = 1;
    }
    close_capture(&in);
    free(c.file_buf);
    cap_wbuf_free(&c.out.w);
    cap_ctx_free(&c);
    if (c.keylog) {
        if (keylog.full)
            fprintf(stderr, "tagarela capture: warning: %s: more than %d sessions, the rest "
                    "ignored\n", c.opt.keylog, CAP_KEYLOG_MAX_SESSIONS);
        cap_keylog_close(&keylog);
    }
    free(c.opt.filter);
    return rc;
}
