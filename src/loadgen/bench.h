/* bench.h -- `tagarela bench`, the load generator.
 *
 * Speaks the wire contract as real clients do (HTTP upgrade with a checked
 * Sec-WebSocket-Accept, masked frames), logs in many clients, makes some of
 * them senders and measures deliveries/s, delivery latency, lost and
 * duplicated messages, the login rate and, given the server's pid, its CPU
 * time and memory. */
#ifndef TAGARELA_BENCH_H
#define TAGARELA_BENCH_H

/* argv[0] is "bench". Returns the process exit status. */
int bench_main(int argc, char **argv);

#endif
