/* main.c -- the tagarela command: serve, capture, bench, and their help. */
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "capture.h"
#include "serve.h"

static void usage(FILE *out)
{
    fprintf(out,
        "tagarela %s -- a WebSocket chat server and its wire inspector\n"
        "\n"
        "usage:\n"
        "  tagarela serve [options]     run the chat server (see tagarela serve --help)\n"
        "  tagarela capture [options]   show the chat on the wire in the clear (see tagarela capture --help)\n"
        "  tagarela bench [options] [URL]  load generator: logins, deliveries/s, latency (see tagarela bench --help)\n"
        "  tagarela --version\n", TAGARELA_VERSION);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "serve") == 0) return serve_main(argc - 1, argv + 1);
    if (strcmp(cmd, "capture") == 0) return capture_main(argc - 1, argv + 1);
    if (strcmp(cmd, "bench") == 0) return bench_main(argc - 1, argv + 1);
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
        printf("tagarela %s\n", TAGARELA_VERSION);
        return 0;
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "tagarela: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
