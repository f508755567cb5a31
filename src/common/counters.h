/* counters.h -- counters with one writer, read from any thread.
 *
 * A relaxed atomic load and store, not a locked add: the writer (one loop)
 * owns the counter, readers (/stats, /metrics, a bench controller) only
 * need a value that is not torn. */
#ifndef TAGARELA_COUNTERS_H
#define TAGARELA_COUNTERS_H

#define COUNTER_GET(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define COUNTER_SET(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
/* Only for the counter's one writer. */
#define COUNTER_ADD(x, v) COUNTER_SET(x, COUNTER_GET(x) + (v))

#endif
