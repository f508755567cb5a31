/* bucket.h -- a token bucket: at most `burst` at once, `rate` a second
 * after that. The chat limits messages with it, the server control frames
 * and (before copying a message to another thread) messages again. */
#ifndef TAGARELA_BUCKET_H
#define TAGARELA_BUCKET_H

#include <stdbool.h>
#include <stdint.h>

typedef struct bucket {
    double tokens;
    uint64_t last_ms;
} bucket;

static inline void bucket_init(bucket *b, double burst, uint64_t now_ms)
{
    b->tokens = burst;
    b->last_ms = now_ms;
}

/* True when a token is there (none is taken). */
static inline bool bucket_peek(const bucket *b, double rate, double burst, uint64_t now_ms)
{
    double t = b->tokens;
    if (now_ms > b->last_ms) t += (double)(now_ms - b->last_ms) * rate / 1000.0;
    return t >= 1.0;
}

/* Takes one token; false when there is none. */
static inline bool bucket_take(bucket *b, double rate, double burst, uint64_t now_ms)
{
    if (now_ms > b->last_ms) {
        b->tokens += (double)(now_ms - b->last_ms) * rate / 1000.0;
        if (b->tokens > burst) b->tokens = burst;
    }
    b->last_ms = now_ms;
    if (b->tokens < 1.0) return false;
    b->tokens -= 1.0;
    return true;
}

#endif
