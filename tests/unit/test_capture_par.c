/* test_capture_par.c -- `tagarela capture --threads` (src/capture/par.c,
 * run.c): the marked output pieces and their merge in capture order, the
 * growing memory buffers, and whole runs of synthetic WebSocket flows on
 * 2 and 3 threads (many batches, so the ring wraps and waits) printing the
 * same bytes as one thread, idle evictions at the same packet included. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "capture_int.h"
#include "par.h"

/* ---- pieces and their merge ---- */

static void put(cap_part *p, uint32_t pkt, uint64_t key, const char *s)
{
    cap_part_begin(p, pkt, key);
    cap_put(&p->out, s, strlen(s));
}

/* A file-less writer whose bytes the test reads. */
static char *merged(cap_part *parts, int n)
{
    cap_wbuf w;
    assert_int_equal(cap_wbuf_init(&w, -1, 16), 0);
    assert_int_equal(cap_merge(parts, n, &w), 0);
    char *s = malloc(w.len + 1);
    memcpy(s, w.buf, w.len);
    s[w.len] = '\0';
    free(w.buf);
    return s;
}

static void test_merge_capture_order(void **state)
{
    (void)state;
    cap_part p[2];
    assert_int_equal(cap_part_init(&p[0]), 0);
    assert_int_equal(cap_part_init(&p[1]), 0);
    /* Thread 0 has packets 0 and 3, thread 1 packets 1 and 2; at packet 2
     * both evict an idle flow (keys 7 and 5: the smaller first), and at the
     * end both flush flows. */
    put(&p[0], 0, 0, "a0 ");
    put(&p[1], 1, 0, "b1 ");
    put(&p[1], 2, 0, "b2 ");
    put(&p[0], 2, 7, "evict7 ");
    put(&p[1], 2, 5, "evict5 ");
    put(&p[0], 3, 0, "a3 ");
    put(&p[1], UINT32_MAX, UINT64_MAX - 9, "end9 ");
    put(&p[0], UINT32_MAX, UINT64_MAX - 4, "end4 ");
    char *s = merged(p, 2);
    assert_string_equal(s, "a0 b1 b2 evict5 evict7 a3 end9 end4 ");
    free(s);
    /* Emptied: the next batch starts afresh. */
    assert_int_equal(p[0].n, 0);
    assert_int_equal(p[1].out.len, 0);
    put(&p[1], 0, 0, "x");
    s = merged(p, 2);
    assert_string_equal(s, "x");
    free(s);
    cap_part_free(&p[0]);
    cap_part_free(&p[1]);
}

static void test_empty_pieces_taken_over(void **state)
{
    (void)state;
    cap_part p;
    assert_int_equal(cap_part_init(&p), 0);
    for (uint32_t i = 0; i < 1000; i++) cap_part_begin(&p, i, 0);   /* nothing printed */
    assert_int_equal(p.n, 1);
    put(&p, 1000, 0, "z");
    assert_int_equal(p.n, 1);
    assert_int_equal(p.marks[0].pkt, 1000);
    char *s = merged(&p, 1);
    assert_string_equal(s, "z");
    free(s);
    cap_part_free(&p);
}

static void test_memory_buffer_grows(void **state)
{
    (void)state;
    cap_wbuf w;
    assert_int_equal(cap_wbuf_init(&w, -1, 16), 0);
    static uint8_t big[300000];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)(i % 7 == 0 ? '"' : 'a' + i % 26);
    cap_put(&w, "[", 1);
    cap_put_json_str(&w, big, sizeof big);     /* each quote escaped: longer than the input */
    cap_put_hex(&w, big, 1000);
    size_t quotes = (sizeof big + 6) / 7;
    assert_int_equal(w.len, 1 + sizeof big + quotes + 2000);
    assert_false(w.failed);
    assert_memory_equal(w.buf, "[\\\"bcdef", 8);
    cap_wbuf_flush(&w);                         /* a memory buffer keeps its bytes */
    assert_int_equal(w.len, 1 + sizeof big + quotes + 2000);
    free(w.buf);
}

/* ---- whole runs ---- */

#define FLOWS 60

typedef struct gen {
    cap_pkt *pkts;
    int64_t *sec;
    size_t n, cap;
    uint32_t seq[FLOWS][2];
} gen;

static void add(gen *g, int flow, int dir, uint8_t flags, const char *payload, size_t len,
                int64_t sec)
{
    if (g->n == g->cap) {
        g->cap = g->cap ? g->cap * 2 : 1024;
        g->pkts = realloc(g->pkts, g->cap * sizeof *g->pkts);
        g->sec = realloc(g->sec, g->cap * sizeof *g->sec);
        assert_non_null(g->pkts);
        assert_non_null(g->sec);
    }
    cap_pkt *p = &g->pkts[g->n];
    memset(p, 0, sizeof *p);
    p->ipver = 4;
    uint8_t cl[4] = {10, 0, 0, (uint8_t)(1 + flow)}, sv[4] = {10, 0, 1, 1};
    memcpy(p->src, dir ? sv : cl, 4);
    memcpy(p->dst, dir ? cl : sv, 4);
    p->sport = dir ? 7272 : (uint16_t)(40000 + flow);
    p->dport = dir ? (uint16_t)(40000 + flow) : 7272;
    p->flags = flags;
    p->seq = g->seq[flow][dir];
    p->ack = g->seq[flow][!dir];
    p->payload = (const uint8_t *)payload;
    p->payload_len = p->wire_len = (uint32_t)len;
    g->seq[flow][dir] += (uint32_t)len + ((flags & (CAP_TH_SYN | CAP_TH_FIN)) ? 1 : 0);
    g->sec[g->n++] = sec;
}

static const char req[] =
    "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
static const char resp[] =
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
static const char frame[] = "\x81\x0boi, pessoal";
static const char masked[] = "\x81\x82\x00\x00\x00\x00ok";

/* FLOWS connections opened one after another, chatting in turns; the
 * even ones fall silent at second 50 and are evicted as idle (--idle 30)
 * all at the same packet, at second 81, from every thread; the odd ones
 * close with FINs or are still open at the end. */
static void make_traffic(gen *g)
{
    memset(g, 0, sizeof *g);
    for (int f = 0; f < FLOWS; f++) {
        g->seq[f][0] = 1000u * (uint32_t)f;
        g->seq[f][1] = 0xFFFFFF00u - 1000u * (uint32_t)f;
        add(g, f, 0, CAP_TH_SYN, NULL, 0, 1);
        add(g, f, 1, CAP_TH_SYN | CAP_TH_ACK, NULL, 0, 1);
        add(g, f, 0, CAP_TH_ACK, req, sizeof req - 1, 1);
        add(g, f, 1, CAP_TH_ACK, resp, sizeof resp - 1, 1);
    }
    for (int round = 0; round < 100; round++)
        for (int f = 0; f < FLOWS; f++) {
            int64_t t = 2 + round;
            if (f % 2 == 0 && t > 50) continue;
            for (int k = 0; k < 4; k++) {
                add(g, f, 1, CAP_TH_ACK, frame, sizeof frame - 1, t);
                add(g, f, 0, CAP_TH_ACK, masked, sizeof masked - 1, t);
            }
        }
    for (int f = 1; f < FLOWS; f += 4) {
        add(g, f, 0, CAP_TH_FIN | CAP_TH_ACK, NULL, 0, 102);
        add(g, f, 1, CAP_TH_FIN | CAP_TH_ACK, NULL, 0, 102);
        add(g, f, 0, CAP_TH_ACK, NULL, 0, 102);
    }
}

static void setup_ctx(cap_ctx *c, FILE *out)
{
    memset(c, 0, sizeof *c);
    c->opt.port = 7272;
    c->opt.json = true;
    c->opt.read_file = "test";
    c->opt.max_mem = 64u << 20;
    c->opt.max_stream = 1u << 20;
    c->opt.max_message = 1u << 20;
    c->opt.max_flows = 65536;
    c->opt.idle = 30;
    c->out.json = true;
    assert_int_equal(cap_wbuf_init(&c->out.w, fileno(out), 4096), 0);
    assert_int_equal(cap_ctx_init(c), 0);
}

static char *slurp(FILE *f, size_t *len)
{
    fflush(f);
    long n = ftell(f);
    assert_true(n > 0);
    char *s = malloc((size_t)n + 1);
    rewind(f);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    *len = (size_t)n;
    return s;
}

/* The output of the traffic decoded on `threads` threads (0: no cap_run,
 * the single-thread loop of capture.c), and its counters. */
static char *decode(const gen *g, int threads, size_t *len, cap_stats *st)
{
    FILE *out = tmpfile();
    assert_non_null(out);
    cap_ctx c;
    setup_ctx(&c, out);
    cap_run *r = threads ? cap_run_start(&c, threads) : NULL;
    if (threads) assert_non_null(r);
    for (size_t i = 0; i < g->n; i++) {
        c.now_sec = g->sec[i];
        c.now_usec = (uint32_t)(i % 1000000);
        c.now = (double)c.now_sec + c.now_usec / 1e6;
        c.pkt_seq = i;
        if (r) cap_run_packet(r, &g->pkts[i], c.now_sec, c.now_usec);
        else cap_packet(&c, &g->pkts[i]);
    }
    if (r) assert_int_equal(cap_run_end(r), 0);
    else cap_finish(&c);
    cap_wbuf_flush(&c.out.w);
    *st = c.st;
    char *s = slurp(out, len);
    cap_wbuf_free(&c.out.w);
    cap_ctx_free(&c);
    fclose(out);
    return s;
}

static unsigned count(const char *s, const char *what)
{
    unsigned n = 0;
    for (const char *p = s; (p = strstr(p, what)); p++) n++;
    return n;
}

static void test_threads_print_the_same(void **state)
{
    (void)state;
    gen g;
    make_traffic(&g);
    assert_true(g.n > 8 * 2048 * 2);       /* more than twice the ring's packets */
    size_t n1, n;
    cap_stats s1, s;
    char *one = decode(&g, 0, &n1, &s1);
    assert_int_equal(count(one, "\"event\":\"tcp_evict\""), FLOWS / 2);
    assert_int_equal(count(one, "\"event\":\"tcp_close\""), FLOWS / 4);
    assert_int_equal(count(one, "\"event\":\"tcp_open\""), FLOWS);
    for (int t = 1; t <= 3; t++) {
        char *out = decode(&g, t, &n, &s);
        assert_int_equal(n, n1);
        assert_memory_equal(out, one, n1);
        assert_memory_equal(s.frames, s1.frames, sizeof s.frames);
        assert_int_equal(s.evicted, s1.evicted);
        assert_int_equal(s.closed, s1.closed);
        assert_int_equal(s.flows, s1.flows);
        free(out);
    }
    free(one);
    free(g.pkts);
    free(g.sec);
}

/* A part that starts in a buffer lent by its batch moves to one of its
 * own when it outgrows it, bytes kept, the lent buffer left untouched
 * past its end and never freed (cap_part_free would crash on it). */
static void test_lent_buffer_outgrown(void **state)
{
    (void)state;
    char lent[80];
    memset(lent, '#', sizeof lent);
    cap_part p;
    cap_part_init_in(&p, lent, 64);
    put(&p, 0, 0, "first piece, in the lent buffer; ");
    assert_ptr_equal(p.out.buf, lent);
    put(&p, 1, 0, "the second does not fit beside it");
    assert_true(p.out.buf != lent && !p.out.borrowed);
    assert_memory_equal(lent + 64, "################", 16);
    char *s = merged(&p, 1);
    assert_string_equal(s, "first piece, in the lent buffer; the second does not fit beside it");
    free(s);
    cap_part_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merge_capture_order),
        cmocka_unit_test(test_empty_pieces_taken_over),
        cmocka_unit_test(test_memory_buffer_grows),
        cmocka_unit_test(test_lent_buffer_outgrown),
        cmocka_unit_test(test_threads_print_the_same),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
