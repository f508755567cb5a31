/* fuzz_capture.c -- libFuzzer target: `tagarela capture -r FILE` on a file
 * the input is (pcap or pcapng, any link type, any packets), through the
 * whole decoder: file reader, IP/TCP, reassembly, HTTP, WebSocket, inflate,
 * and the text (-X) or --json output. A bad file must end in a message and
 * an exit code, never a crash, a hang or a leak. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "capture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    if (fd < 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null < 0 || dup2(null, 1) < 0) abort();
        close(null);
        fd = memfd_create("fuzz-capture", 0);
        if (fd < 0) abort();
    }
    if (size < 1) return 0;
    bool json = data[0] & 1;
    data++, size--;
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size) abort();
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    char *argv[] = {"capture", "-r", path, json ? "--json" : "-X", "--max-mem", "4M", NULL};
    int rc = capture_main(6, argv);
    if (rc < 0) abort();
    return 0;
}
