/* test_dict.c -- the chained hash table and its keyed hashing. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "dict.h"

static void test_empty_dict(void **state)
{
    dict d;
    dict_init(&d);
    assert_int_equal(d.count, 0);
    assert_null(dict_get(&d, "a", 1));
    assert_null(dict_del(&d, "a", 1));
    dict_free(&d);
    dict_free(&d);      /* twice is harmless: free re-initialises */
}

static void test_put_get_del(void **state)
{
    dict d;
    dict_init(&d);
    int one = 1, two = 2;
    assert_int_equal(dict_put(&d, "one", 3, &one), 0);
    assert_int_equal(dict_put(&d, "two", 3, &two), 0);
    assert_int_equal(d.count, 2);
    assert_ptr_equal(dict_get(&d, "one", 3), &one);
    assert_ptr_equal(dict_get(&d, "two", 3), &two);
    assert_null(dict_get(&d, "three", 5));
    assert_null(dict_get(&d, "on", 2));         /* prefix is another key */
    assert_null(dict_get(&d, "one!", 4));
    assert_ptr_equal(dict_del(&d, "one", 3), &one);
    assert_int_equal(d.count, 1);
    assert_null(dict_get(&d, "one", 3));
    assert_null(dict_del(&d, "one", 3));
    assert_ptr_equal(dict_get(&d, "two", 3), &two);
    dict_free(&d);
}

static void test_put_existing_key_replaces_value(void **state)
{
    dict d;
    dict_init(&d);
    int a = 1, b = 2;
    char k1[] = "room", k2[] = "room";
    assert_int_equal(dict_put(&d, k1, 4, &a), 0);
    assert_int_equal(dict_put(&d, k2, 4, &b), 0);
    assert_int_equal(d.count, 1);
    assert_ptr_equal(dict_get(&d, "room", 4), &b);
    dict_free(&d);
}

static void test_binary_keys_and_lengths(void **state)
{
    dict d;
    dict_init(&d);
    uint32_t uids[] = { 0, 1, 256, 0x01000000, UINT32_MAX };
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(dict_put(&d, &uids[i], sizeof uids[i], &uids[i]), 0);
    for (size_t i = 0; i < 5; i++) {
        uint32_t k = uids[i];   /* a different pointer, same bytes */
        assert_ptr_equal(dict_get(&d, &k, sizeof k), &uids[i]);
    }
    /* keys with NUL bytes and the empty key */
    int x = 0, y = 0, z = 0;
    assert_int_equal(dict_put(&d, "a\0b", 3, &x), 0);
    assert_int_equal(dict_put(&d, "a\0c", 3, &y), 0);
    assert_int_equal(dict_put(&d, "", 0, &z), 0);
    assert_ptr_equal(dict_get(&d, "a\0b", 3), &x);
    assert_ptr_equal(dict_get(&d, "a\0c", 3), &y);
    assert_ptr_equal(dict_get(&d, "", 0), &z);
    assert_null(dict_get(&d, "a", 1));
    assert_int_equal(d.count, 8);
    dict_free(&d);
}

static void test_many_keys_survive_growth_and_deletion(void **state)
{
    enum { N = 5000 };
    static char keys[N][16];
    static int vals[N];
    dict d;
    dict_init(&d);
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "%d", i);
        vals[i] = i;
        assert_int_equal(dict_put(&d, keys[i], strlen(keys[i]), &vals[i]), 0);
    }
    assert_int_equal(d.count, N);
    assert_true(d.nslots >= N);
    assert_int_equal(d.nslots & (d.nslots - 1), 0);    /* a power of two */
    for (int i = 0; i < N; i++) {
        int *v = dict_get(&d, keys[i], strlen(keys[i]));
        assert_non_null(v);
        assert_int_equal(*v, i);
    }
    /* delete the even ones */
    for (int i = 0; i < N; i += 2)
        assert_ptr_equal(dict_del(&d, keys[i], strlen(keys[i])), &vals[i]);
    assert_int_equal(d.count, N / 2);
    for (int i = 0; i < N; i++) {
        int *v = dict_get(&d, keys[i], strlen(keys[i]));
        if (i % 2) assert_ptr_equal(v, &vals[i]);
        else assert_null(v);
    }
    /* every slot chain holds exactly the remaining entries */
    size_t seen = 0;
    for (size_t s = 0; s < d.nslots; s++)
        for (dict_entry *e = d.slots[s]; e; e = e->next) seen++;
    assert_int_equal(seen, N / 2);
    dict_free(&d);
    assert_int_equal(d.count, 0);
    assert_null(d.slots);
}

/* The hash the table used before it was keyed (FNV-1a, folded), to make
 * keys that all share one slot of a table of 4096 under it. */
static uint64_t old_hash(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3ULL;
    }
    return h ^ (h >> 29);
}

static size_t longest_chain(const dict *d)
{
    size_t longest = 0;
    for (size_t s = 0; s < d->nslots; s++) {
        size_t n = 0;
        for (dict_entry *e = d->slots[s]; e; e = e->next) n++;
        if (n > longest) longest = n;
    }
    return longest;
}

/* Room ids chosen to collide under the old public hash spread out under the
 * keyed one: the attack that made every lookup walk one long chain. */
static void test_chosen_collisions_spread(void **state)
{
    enum { N = 2048 };
    static char keys[N][24];
    int found = 0;
    for (unsigned long i = 0; found < N; i++) {
        char k[24];
        int n = snprintf(k, sizeof k, "r%lu", i);
        if ((old_hash(k, (size_t)n) & 4095) != 0) continue;
        memcpy(keys[found++], k, (size_t)n + 1);
    }
    dict d;
    dict_init(&d);
    for (int i = 0; i < N; i++) assert_int_equal(dict_put(&d, keys[i], strlen(keys[i]), keys[i]), 0);
    assert_int_equal(d.count, N);
    /* Under FNV all N would share one chain; random placement of 2048 keys
     * in 2048 slots has a longest chain near 7. */
    size_t longest = longest_chain(&d);
    assert_true(longest <= 16);
    for (int i = 0; i < N; i++) assert_ptr_equal(dict_get(&d, keys[i], strlen(keys[i])), keys[i]);
    dict_free(&d);
}

/* Each table draws its own key: what collides in one says nothing of another. */
static void test_each_table_has_its_own_key(void **state)
{
    dict a, b;
    dict_init(&a);
    dict_init(&b);
    assert_memory_not_equal(a.key, b.key, sizeof a.key);
    int v = 1;
    assert_int_equal(dict_put(&a, "room", 4, &v), 0);
    assert_int_equal(dict_put(&b, "room", 4, &v), 0);
    uint64_t ha = 0, hb = 0;
    for (size_t s = 0; s < a.nslots; s++) if (a.slots[s]) ha = a.slots[s]->hash;
    for (size_t s = 0; s < b.nslots; s++) if (b.slots[s]) hb = b.slots[s]->hash;
    assert_true(ha != hb);
    assert_true(ha == siphash24(a.key, "room", 4));
    dict_free(&a);
    dict_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_dict),
        cmocka_unit_test(test_put_get_del),
        cmocka_unit_test(test_put_existing_key_replaces_value),
        cmocka_unit_test(test_binary_keys_and_lengths),
        cmocka_unit_test(test_many_keys_survive_growth_and_deletion),
        cmocka_unit_test(test_chosen_collisions_spread),
        cmocka_unit_test(test_each_table_has_its_own_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
