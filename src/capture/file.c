/* file.c -- classic pcap files read in large blocks, with a look at
 * the records ahead (see file.h). The format: a 24-byte header
 * (magic, version, snaplen, link type), then per packet a 16-byte record
 * header (seconds, micro- or nanoseconds, captured and original lengths)
 * and the captured bytes, all in the writer's byte order. */
#include "file.h"
#include "slab.h"

#include <errno.h>
#include <fcntl.h>
#include <pcap/dlt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BLOCK (4u << 20)            /* bytes asked of read(2) at once */
#define MAX_RECORD (64u << 20)      /* larger: the file is corrupt */
#define LINKTYPE_RAW 101            /* in files; DLT_RAW in libpcap */

static uint32_t rd32(const uint8_t *p, bool swapped)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return swapped ? __builtin_bswap32(v) : v;
}

/* Reads until buf holds at least need unread bytes, or the file ends.
 * Returns the unread byte count, or -1 on a read error. */
static long fill(cap_file *f, size_t need)
{
    if (f->end - f->start >= need) return (long)(f->end - f->start);
    if (f->start) {
        memmove(f->buf, f->buf + f->start, f->end - f->start);
        f->end -= f->start;
        f->offset += f->start;
        f->start = 0;
    }
    if (need > f->cap) {
        size_t cap = f->cap;
        while (cap < need) cap *= 2;
        uint8_t *b = cap_huge_map(cap);
        if (!b) return -1;
        memcpy(b, f->buf, f->end);
        cap_huge_unmap(f->buf, f->cap);
        f->buf = b;
        f->cap = cap;
    }
    while (f->end < need) {
        size_t want = f->cap - f->end < BLOCK ? f->cap - f->end : BLOCK;
        ssize_t k = read(f->fd, f->buf + f->end, want);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return -1;
        if (k == 0) break;
        f->end += (size_t)k;
    }
    return (long)(f->end - f->start);
}

int cap_file_open(cap_file *f, const char *path, char *err, size_t errlen)
{
    memset(f, 0, sizeof *f);
    f->fd = open(path, O_RDONLY);
    if (f->fd >= 0) posix_fadvise(f->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    if (f->fd < 0) {
        snprintf(err, errlen, "%s", strerror(errno));
        return -1;
    }
    f->cap = 2 * BLOCK;
    f->buf = cap_huge_map(f->cap);
    long n = f->buf ? fill(f, 24) : -1;
    if (n < 0) {
        snprintf(err, errlen, "%s", f->buf ? strerror(errno) : "out of memory");
        cap_file_close(f);
        return -1;
    }
    uint32_t magic = n >= 4 ? rd32(f->buf, false) : 0;
    bool classic = false;
    if (magic == 0xA1B2C3D4 || magic == 0xA1B23C4D) classic = true;
    else if (magic == 0xD4C3B2A1 || magic == 0x4D3CB2A1) classic = f->swapped = true;
    if (!classic || n < 24) {
        cap_file_close(f);
        return 0;               /* pcapng, junk, a cut header: libpcap says */
    }
    f->nano = magic == 0xA1B23C4D || magic == 0x4D3CB2A1;
    f->snaplen = rd32(f->buf + 16, f->swapped);
    uint32_t lt = rd32(f->buf + 20, f->swapped) & 0x0FFFFFFF;
    f->dlt = lt == LINKTYPE_RAW ? DLT_RAW : (int)lt;
    f->start = 24;
    return 1;
}

/* Parses the record header at p (16 bytes). */
static void record(const cap_file *f, const uint8_t *p, struct pcap_pkthdr *h)
{
    uint32_t frac = rd32(p + 4, f->swapped);
    h->ts.tv_sec = rd32(p, f->swapped);
    h->ts.tv_usec = f->nano ? frac / 1000 : frac;
    h->caplen = rd32(p + 8, f->swapped);
    h->len = rd32(p + 12, f->swapped);
}

int cap_file_next(cap_file *f, struct pcap_pkthdr *h, const uint8_t **data, char *err,
                  size_t errlen)
{
    long n = fill(f, 16);
    if (n < 0) goto read_error;
    if (n == 0) return 0;
    if (n < 16) {
        snprintf(err, errlen, "truncated dump file; tried to read 16 header bytes, only got %ld",
                 n);
        return -1;
    }
    record(f, f->buf + f->start, h);
    if (h->caplen > MAX_RECORD) {
        snprintf(err, errlen, "corrupt file: a packet of %u bytes at offset %llu", h->caplen,
                 (unsigned long long)(f->offset + f->start));
        return -1;
    }
    n = fill(f, 16 + (size_t)h->caplen);
    if (n < 0) goto read_error;
    if ((size_t)n < 16 + (size_t)h->caplen) {
        snprintf(err, errlen, "truncated dump file; tried to read %u captured bytes, only got %ld",
                 h->caplen, n - 16);
        return -1;
    }
    *data = f->buf + f->start + 16;
    f->start += 16 + (size_t)h->caplen;
    return 1;

read_error:
    snprintf(err, errlen, "%s", strerror(errno));
    return -1;
}

bool cap_file_peek(const cap_file *f, size_t k, struct pcap_pkthdr *h, const uint8_t **data)
{
    size_t at = f->start;
    for (;;) {
        if (f->end - at < 16) return false;
        record(f, f->buf + at, h);
        if (h->caplen > MAX_RECORD || f->end - at - 16 < h->caplen) return false;
        if (k-- == 0) {
            *data = f->buf + at + 16;
            return true;
        }
        at += 16 + (size_t)h->caplen;
    }
}

void cap_file_close(cap_file *f)
{
    if (f->fd >= 0) close(f->fd);
    f->fd = -1;
    cap_huge_unmap(f->buf, f->cap);
    f->buf = NULL;
}
