/* procinfo.h -- the process's own resources, as /metrics shows them:
 * resident memory and file descriptors (Linux /proc). */
#ifndef TAGARELA_PROCINFO_H
#define TAGARELA_PROCINFO_H

#include <stdint.h>

typedef struct proc_info {
    int64_t rss_bytes;              /* -1: unknown */
    int64_t open_fds;               /* -1: unknown */
    int64_t max_fds;                /* the soft RLIMIT_NOFILE; -1: unknown */
} proc_info;

void proc_info_read(proc_info *out);

#endif
