/* dict.h -- a chained hash table from byte strings to pointers, keyed
 * hashing (SipHash with a random key per table).
 *
 * Keys are not copied: the caller keeps each key alive as long as its entry
 * (rooms key by their own name, users by their own uid field). */
#ifndef TAGARELA_DICT_H
#define TAGARELA_DICT_H

#include <stddef.h>
#include <stdint.h>
#include "siphash.h"

typedef struct dict_entry {
    const void *key;
    size_t klen;
    uint64_t hash;
    void *value;
    struct dict_entry *next;
} dict_entry;

typedef struct dict {
    dict_entry **slots;
    size_t nslots;      /* a power of two, or 0 before the first insert */
    size_t count;
    uint8_t key[SIPHASH_KEY_LEN];   /* random, per table */
} dict;

void dict_init(dict *d);                /* draws the table's hash key */
void dict_free(dict *d);                /* frees entries, not values; reusable */
void *dict_get(const dict *d, const void *key, size_t klen);
int dict_put(dict *d, const void *key, size_t klen, void *value); /* -1 on OOM */
void *dict_del(dict *d, const void *key, size_t klen);          /* returns the value */

#endif
