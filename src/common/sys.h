/* sys.h -- small things every command asks of the system and of its
 * command line: the wall clock, the cores it may use, the open-file limit,
 * and numbers in options and addresses. */
#ifndef TAGARELA_SYS_H
#define TAGARELA_SYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Wall clock in milliseconds (coarse: a few ms of resolution is plenty). */
uint64_t wall_ms(void);

/* Cores this process may run on (its affinity), at least 1. */
unsigned usable_cores(void);

/* Raises the soft open-file limit to the hard one and, when need is above
 * that, tries to raise both (root may). Returns the limit now in force. */
uint64_t raise_fd_limit(uint64_t need);

/* A decimal number from lo to hi (whole: no fraction). 0 or -1. */
int parse_number(const char *s, double lo, double hi, bool whole, double *out);

/* A TCP port in the n bytes at s: decimal digits only, from min (0 where
 * "any free port" makes sense, else 1) to 65535. 0 or -1. */
int parse_port(const char *s, size_t n, int min, int *out);

/* Bytes, with an optional k/m/g suffix (powers of 1024), from 1 to max.
 * 0 or -1. */
int parse_size(const char *s, uint64_t max, uint64_t *out);

#endif
