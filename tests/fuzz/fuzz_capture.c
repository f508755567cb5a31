/* fuzz_capture.c -- libFuzzer target: `tagarela capture -r FILE` on a file
 * the input is (pcap or pcapng, any link type, any packets), through the
 * whole decoder: file reader, IP/TCP, reassembly, HTTP, WebSocket, inflate,
 * and the text (-X) or --json output; with --keylog (a key log with the
 * secrets of every TLS version for the all-zero client random) the TLS
 * record layer, hellos and decryption too. A bad file must end in a message
 * and an exit code, never a crash, a hang or a leak. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "capture.h"

static int write_keylog(void)
{
    static const char *const labels[] = {
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0",
    };
    int fd = memfd_create("fuzz-keylog", 0);
    if (fd < 0) abort();
    FILE *f = fdopen(dup(fd), "w");
    if (!f) abort();
    const char *zero_random = "0000000000000000000000000000000000000000000000000000000000000000";
    fprintf(f, "CLIENT_RANDOM %s %s%s\n", zero_random, zero_random,
            "0102030405060708090a0b0c0d0e0f10");     /* 48 bytes */
    for (int i = 0; i < 4; i++) fprintf(f, "%s %s %s\n", labels[i], zero_random, zero_random);
    fclose(f);
    return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1, keylog_fd = -1;
    if (fd < 0) {
        keylog_fd = write_keylog();
        int null = open("/dev/null", O_WRONLY);
        if (null < 0 || dup2(null, 1) < 0) abort();
        close(null);
        fd = memfd_create("fuzz-capture", 0);
        if (fd < 0) abort();
    }
    if (size < 1) return 0;
    bool json = data[0] & 1, tls = data[0] & 2;
    data++, size--;
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size) abort();
    char path[64], keylog[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    snprintf(keylog, sizeof keylog, "/proc/self/fd/%d", keylog_fd);
    char *argv[] = {"capture", "-r", path, json ? "--json" : "-X", "--max-mem", "4M",
                    tls ? "--keylog" : NULL, keylog, NULL};
    int rc = capture_main(tls ? 8 : 6, argv);
    if (rc < 0) abort();
    return 0;
}
