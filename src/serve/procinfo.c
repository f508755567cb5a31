/* procinfo.c -- resident memory from /proc/self/statm, descriptors by
 * counting /proc/self/fd: cheap enough for a scrape every few seconds. */
#include "procinfo.h"

#include <dirent.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

static int64_t resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return -1;
    unsigned long long size, resident;
    int n = fscanf(f, "%llu %llu", &size, &resident);
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    return n == 2 && page > 0 ? (int64_t)(resident * (unsigned long long)page) : -1;
}

/* The directory's own descriptor, open while it is read, is not counted. */
static int64_t count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int64_t n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1;
}

void proc_info_read(proc_info *out)
{
    struct rlimit rl;
    out->rss_bytes = resident_bytes();
    out->open_fds = count_fds();
    out->max_fds = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY ? (int64_t)rl.rlim_cur : -1;
}
