/* slab.c -- fixed-size blocks in 2 MiB chunks with huge-page advice (see
 * slab.h): chunks mapped aligned, blocks carved in order, free lists per
 * size. */
#include "slab.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* A 2 MiB-aligned range: a huge page can only back an aligned range. */
void *cap_huge_map(size_t n)
{
    n = (n + CAP_SLAB_CHUNK - 1) & ~(size_t)(CAP_SLAB_CHUNK - 1);
    size_t len = n + CAP_SLAB_CHUNK;
    uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    uintptr_t a = ((uintptr_t)p + CAP_SLAB_CHUNK - 1) & ~(uintptr_t)(CAP_SLAB_CHUNK - 1);
    uint8_t *start = (uint8_t *)a;
    if (start > p) munmap(p, (size_t)(start - p));
    size_t tail = (size_t)(p + len - (start + n));
    if (tail) munmap(start + n, tail);
    /* -DCAP_SLAB_NO_HUGEPAGE builds without the advice, to measure what
     * it saves and costs (docs/capture.md). */
#if defined(MADV_HUGEPAGE) && !defined(CAP_SLAB_NO_HUGEPAGE)
    madvise(start, n, MADV_HUGEPAGE);   /* advice: failure is harmless */
#endif
    return start;
}

void cap_huge_unmap(void *p, size_t n)
{
    if (!p) return;
    n = (n + CAP_SLAB_CHUNK - 1) & ~(size_t)(CAP_SLAB_CHUNK - 1);
    munmap(p, n);
}

static int new_chunk(cap_slab *s)
{
    if (s->nchunks == s->chunks_cap) {
        size_t cap = s->chunks_cap ? s->chunks_cap * 2 : 16;
        void **c = realloc(s->chunks, cap * sizeof *c);
        if (!c) return -1;
        s->chunks = c;
        s->chunks_cap = cap;
    }
    void *p = cap_huge_map(CAP_SLAB_CHUNK);
    if (!p) return -1;
    s->chunks[s->nchunks++] = p;
    s->carve = p;
    s->carve_left = CAP_SLAB_CHUNK;
    return 0;
}

static int size_index(cap_slab *s, size_t n)
{
    for (int i = 0; i < s->nsizes; i++)
        if (s->sizes[i].size == n) return i;
    if (s->nsizes == CAP_SLAB_SIZES) return -1;
    s->sizes[s->nsizes].size = n;
    s->sizes[s->nsizes].free = NULL;
    return s->nsizes++;
}

void *cap_slab_alloc(cap_slab *s, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (n == 0 || n > CAP_SLAB_MAX_BLOCK) return NULL;
    int i = size_index(s, n);
    if (i < 0) return NULL;
    void *p = s->sizes[i].free;
    if (p) {
        memcpy(&s->sizes[i].free, p, sizeof(void *));
        return p;
    }
    /* The rest of a chunk too small for this block stays unused: at most
     * one block's worth per chunk. */
    if (s->carve_left < n && new_chunk(s) < 0) return NULL;
    p = s->carve;
    s->carve += n;
    s->carve_left -= n;
    return p;
}

void cap_slab_free(cap_slab *s, void *p, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    for (int i = 0; i < s->nsizes; i++) {
        if (s->sizes[i].size != n) continue;
        memcpy(p, &s->sizes[i].free, sizeof(void *));
        s->sizes[i].free = p;
        return;
    }
}

void cap_slab_close(cap_slab *s)
{
    for (size_t i = 0; i < s->nchunks; i++) cap_huge_unmap(s->chunks[i], CAP_SLAB_CHUNK);
    free(s->chunks);
    memset(s, 0, sizeof *s);
}
