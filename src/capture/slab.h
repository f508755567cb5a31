/* slab.h -- blocks of a few fixed sizes (zlib's inflate states and deflate
 * windows: one per compressed direction, thousands alive at once), carved
 * from 2 MiB chunks that the kernel is asked to back with huge pages.
 *
 * A compressed capture spends much of its time faulting in the windows
 * page by page, and in TLB misses over them; one fault per 2 MiB and one
 * TLB entry for 60 windows cost far less. A freed block goes back to the
 * free list of its size, never to the system: like the heap, the slab
 * holds at most its peak, which --max-mem bounds. */
#ifndef TAGARELA_CAPTURE_SLAB_H
#define TAGARELA_CAPTURE_SLAB_H

#include <stddef.h>

#define CAP_SLAB_SIZES 8
#define CAP_SLAB_CHUNK (2u << 20)
#define CAP_SLAB_MAX_BLOCK (64u << 10)  /* larger requests go to malloc */

typedef struct cap_slab {
    struct {
        size_t size;
        void *free;             /* free blocks, linked through their first word */
    } sizes[CAP_SLAB_SIZES];
    int nsizes;
    unsigned char *carve;       /* unused end of the newest chunk */
    size_t carve_left;
    void **chunks;
    size_t nchunks, chunks_cap;
} cap_slab;

/* A block of n bytes, 16-byte aligned; NULL when the system has no memory
 * left or n is not a slab size (over CAP_SLAB_MAX_BLOCK, or an
 * (CAP_SLAB_SIZES + 1)th size): the caller then uses malloc. */
void *cap_slab_alloc(cap_slab *s, size_t n);
/* Gives back a block that cap_slab_alloc(s, n) returned. */
void cap_slab_free(cap_slab *s, void *p, size_t n);
/* Unmaps every chunk: all blocks become invalid. */
void cap_slab_close(cap_slab *s);

/* n bytes rounded up to 2 MiB, zeroed, aligned, advised to huge pages: for
 * the large buffers that live as long as the run (the file's, the
 * batches'). Touched page by page they cost a fault each 4 KiB, about
 * 11 us apiece on the VMs measured: a few thousand of them per run. */
void *cap_huge_map(size_t n);
void cap_huge_unmap(void *p, size_t n);

#endif
