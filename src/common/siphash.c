/* siphash.c -- SipHash-2-4 written from the paper's description: four
 * 64-bit words of state seeded from the key, two SipRounds per 8-byte
 * little-endian message word, the length in the last word's top byte, and
 * four SipRounds to finish. */
#include "siphash.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

static uint64_t rotl(uint64_t x, unsigned b)
{
    return (x << b) | (x >> (64 - b));
}

/* memcpy: unaligned-safe, and compiled to one load. */
static uint64_t load_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return le64toh(v);
}

typedef struct sip_state { uint64_t v0, v1, v2, v3; } sip_state;

static void sip_round(sip_state *s)
{
    s->v0 += s->v1; s->v1 = rotl(s->v1, 13); s->v1 ^= s->v0; s->v0 = rotl(s->v0, 32);
    s->v2 += s->v3; s->v3 = rotl(s->v3, 16); s->v3 ^= s->v2;
    s->v0 += s->v3; s->v3 = rotl(s->v3, 21); s->v3 ^= s->v0;
    s->v2 += s->v1; s->v1 = rotl(s->v1, 17); s->v1 ^= s->v2; s->v2 = rotl(s->v2, 32);
}

static void sip_absorb(sip_state *s, uint64_t m)
{
    s->v3 ^= m;
    sip_round(s);
    sip_round(s);
    s->v0 ^= m;
}

uint64_t siphash24(const uint8_t key[SIPHASH_KEY_LEN], const void *data, size_t n)
{
    const uint8_t *p = data;
    uint64_t k0 = load_le64(key), k1 = load_le64(key + 8);
    /* The constants spell "somepseudorandomlygeneratedbytes". */
    sip_state s = {
        k0 ^ 0x736f6d6570736575ULL, k1 ^ 0x646f72616e646f6dULL,
        k0 ^ 0x6c7967656e657261ULL, k1 ^ 0x7465646279746573ULL,
    };
    size_t whole = n & ~(size_t)7;
    for (size_t i = 0; i < whole; i += 8) sip_absorb(&s, load_le64(p + i));
    uint64_t last = (uint64_t)(n & 0xff) << 56;
    for (size_t i = 0; i < (n & 7); i++) last |= (uint64_t)p[whole + i] << (8 * i);
    sip_absorb(&s, last);
    s.v2 ^= 0xff;
    for (int i = 0; i < 4; i++) sip_round(&s);
    return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

/* Kernels without getrandom() (before 3.17) still have /dev/urandom. */
static int read_urandom(uint8_t *key, size_t n)
{
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, key + got, n - got);
        if (r <= 0 && !(r < 0 && errno == EINTR)) break;
        if (r > 0) got += (size_t)r;
    }
    close(fd);
    return got == n ? 0 : -1;
}

int siphash_random_key(uint8_t key[SIPHASH_KEY_LEN])
{
    size_t got = 0;
    while (got < SIPHASH_KEY_LEN) {
        ssize_t r = getrandom(key + got, SIPHASH_KEY_LEN - got, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            return read_urandom(key, SIPHASH_KEY_LEN);
        }
        got += (size_t)r;
    }
    return 0;
}
