/* dict.c -- chained hash table with power-of-two growth, hashed with
 * SipHash-2-4 under a random key of its own: its keys (room ids, client
 * addresses) are chosen by clients, and with a public hash a client could
 * send keys that all land in one chain and make every lookup a long walk. */
#include "dict.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash_bytes(const dict *d, const void *key, size_t n)
{
    return siphash24(d->key, key, n);
}

void dict_init(dict *d)
{
    d->slots = NULL;
    d->nslots = d->count = 0;
    if (siphash_random_key(d->key) < 0) {
        /* Only a kernel without getrandom() and /dev/urandom gets here; a
         * known key would undo the point of the keyed hash. */
        fprintf(stderr, "tagarela: no random bytes from the kernel for a hash key\n");
        abort();
    }
}

void dict_free(dict *d)
{
    for (size_t i = 0; i < d->nslots; i++) {
        dict_entry *e = d->slots[i];
        while (e) {
            dict_entry *next = e->next;
            free(e);
            e = next;
        }
    }
    free(d->slots);
    d->slots = NULL;
    d->nslots = d->count = 0;     /* usable again, with the same key */
}

static dict_entry **find(const dict *d, const void *key, size_t klen, uint64_t h)
{
    dict_entry **pe = &d->slots[h & (d->nslots - 1)];
    while (*pe && !((*pe)->hash == h && (*pe)->klen == klen && memcmp((*pe)->key, key, klen) == 0))
        pe = &(*pe)->next;
    return pe;
}

void *dict_get(const dict *d, const void *key, size_t klen)
{
    if (!d->count) return NULL;
    dict_entry *e = *find(d, key, klen, hash_bytes(d, key, klen));
    return e ? e->value : NULL;
}

static int grow(dict *d)
{
    size_t n = d->nslots ? d->nslots * 2 : 16;
    dict_entry **slots = calloc(n, sizeof *slots);
    if (!slots) return -1;
    for (size_t i = 0; i < d->nslots; i++) {
        dict_entry *e = d->slots[i];
        while (e) {
            dict_entry *next = e->next;
            e->next = slots[e->hash & (n - 1)];
            slots[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(d->slots);
    d->slots = slots;
    d->nslots = n;
    return 0;
}

int dict_put(dict *d, const void *key, size_t klen, void *value)
{
    if (d->count >= d->nslots && grow(d) < 0) return -1;
    uint64_t h = hash_bytes(d, key, klen);
    dict_entry **pe = find(d, key, klen, h);
    if (*pe) {
        (*pe)->key = key;
        (*pe)->value = value;
        return 0;
    }
    dict_entry *e = malloc(sizeof *e);
    if (!e) return -1;
    e->key = key;
    e->klen = klen;
    e->hash = h;
    e->value = value;
    e->next = NULL;
    *pe = e;
    d->count++;
    return 0;
}

void *dict_del(dict *d, const void *key, size_t klen)
{
    if (!d->count) return NULL;
    dict_entry **pe = find(d, key, klen, hash_bytes(d, key, klen));
    dict_entry *e = *pe;
    if (!e) return NULL;
    void *v = e->value;
    *pe = e->next;
    free(e);
    d->count--;
    return v;
}
