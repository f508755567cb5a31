/* file.h -- a reader for classic pcap files that can look ahead.
 *
 * libpcap reads a file through stdio, one record at a time, copying each
 * packet into its own buffer, and shows only the current one. This reader
 * reads large blocks, hands out packets where they lie in its buffer, and
 * lets the caller see the next few records, so that the capture can start
 * loading their flows from memory while it decodes the current one. pcapng,
 * stdin, BSD loopback files and live captures still go through libpcap. */
#ifndef TAGARELA_CAPTURE_FILE_H
#define TAGARELA_CAPTURE_FILE_H

#include <pcap/pcap.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cap_file {
    int fd;
    uint8_t *buf;
    size_t cap, start, end;     /* unread bytes: buf[start, end) */
    bool swapped;               /* written on a host of the other byte order */
    bool nano;                  /* nanosecond timestamps */
    int dlt;                    /* libpcap's DLT_* for the file's link type */
    uint32_t snaplen;
    uint64_t offset;            /* of buf[start] in the file, for messages */
} cap_file;

/* Opens a regular file. Returns 1 when it is a classic pcap file (f is then
 * ready), 0 when it is not (pcapng...: f holds nothing, use libpcap), -1 on
 * an error, described in err. */
int cap_file_open(cap_file *f, const char *path, char *err, size_t errlen);

/* The next record. Returns 1 with *h and *data set (valid until the next
 * call), 0 at the end of the file, -1 when the file is corrupt or cut
 * short (err says how). */
int cap_file_next(cap_file *f, struct pcap_pkthdr *h, const uint8_t **data, char *err,
                  size_t errlen);

/* The record k places after the last one returned (k = 0: the next one),
 * if it is already in the buffer. Does not move. */
bool cap_file_peek(const cap_file *f, size_t k, struct pcap_pkthdr *h, const uint8_t **data);

void cap_file_close(cap_file *f);

#endif
