/* par.c -- the output of several decoder threads merged in capture order:
 * marked buffers (cap_part) and their merge. The threads and the batches
 * they share are in run.c. */
#include "par.h"
#include "capture_int.h"

#include <stdlib.h>
#include <string.h>

int cap_part_init(cap_part *p)
{
    memset(p, 0, sizeof *p);
    return cap_wbuf_init(&p->out, -1, 64 * 1024);
}

void cap_part_init_in(cap_part *p, char *buf, size_t cap)
{
    memset(p, 0, sizeof *p);
    p->out = (cap_wbuf){.buf = buf, .cap = cap, .fd = -1, .borrowed = true};
}

void cap_part_free(cap_part *p)
{
    if (!p->out.borrowed) free(p->out.buf);
    free(p->marks);
    memset(p, 0, sizeof *p);
}

void cap_part_begin(cap_part *p, uint32_t pkt, uint64_t key)
{
    /* A piece with nothing in it is taken over: most packets of a batch
     * print nothing on most threads. */
    if (p->n && p->marks[p->n - 1].start == p->out.len) p->n--;
    else if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 256;
        cap_piece *m = realloc(p->marks, cap * sizeof *m);
        if (!m) {
            p->failed = true;   /* the output goes on in the last piece */
            return;
        }
        p->marks = m;
        p->cap = cap;
    }
    p->marks[p->n++] = (cap_piece){pkt, key, p->out.len};
}

void cap_mark(cap_ctx *c, uint32_t pkt, uint64_t key)
{
    if (!c->part) return;
    c->part->out = c->out.w;    /* the decoder writes through its own copy */
    cap_part_begin(c->part, pkt, key);
}

static bool before(const cap_piece *a, const cap_piece *b)
{
    return a->pkt != b->pkt ? a->pkt < b->pkt : a->key < b->key;
}

int cap_merge(cap_part *parts, int n, cap_wbuf *w)
{
    size_t at[CAP_MAX_THREADS] = {0};
    int rc = 0;
    if (n > CAP_MAX_THREADS) n = CAP_MAX_THREADS;
    for (int i = 0; i < n; i++) {
        cap_part *p = &parts[i];
        if (p->failed || p->out.failed) rc = -1;
        /* Bytes written before the first mark belong to nothing: none
         * are, as a decoder marks before it prints. */
        if (p->n == 0 && p->out.len) cap_put(w, p->out.buf, p->out.len);
    }
    for (;;) {
        int best = -1;
        for (int i = 0; i < n; i++) {
            if (at[i] >= parts[i].n) continue;
            if (best < 0 || before(&parts[i].marks[at[i]], &parts[best].marks[at[best]]))
                best = i;
        }
        if (best < 0) break;
        cap_part *p = &parts[best];
        size_t k = at[best]++;
        size_t end = at[best] < p->n ? p->marks[at[best]].start : p->out.len;
        cap_put(w, p->out.buf + p->marks[k].start, end - p->marks[k].start);
    }
    for (int i = 0; i < n; i++) {
        parts[i].out.len = 0;
        parts[i].out.failed = false;
        parts[i].n = 0;
        parts[i].failed = false;
    }
    return rc;
}
