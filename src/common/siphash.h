/* siphash.h -- SipHash-2-4 (Aumasson and Bernstein, 2012): a keyed 64-bit
 * hash, so that whoever picks the keys of a table cannot pick collisions
 * without knowing its 128-bit key. */
#ifndef TAGARELA_SIPHASH_H
#define TAGARELA_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

#define SIPHASH_KEY_LEN 16

uint64_t siphash24(const uint8_t key[SIPHASH_KEY_LEN], const void *data, size_t n);

/* Fills key with random bytes from getrandom() (or /dev/urandom); -1 when
 * the kernel gives none: the caller must not go on with a guessable key. */
int siphash_random_key(uint8_t key[SIPHASH_KEY_LEN]);

#endif
