/* capture.h -- `tagarela capture`: a wire inspector for the chat protocol.
 *
 * Reads packets live (libpcap) or from a pcap/pcapng file, puts each TCP
 * direction back in order, follows the HTTP upgrade and decodes the
 * WebSocket frames (unmasked, joined, inflated), and prints them as text or
 * as one JSON object per line. The README's capture section describes the
 * views and the --json contract. */
#ifndef TAGARELA_CAPTURE_H
#define TAGARELA_CAPTURE_H

/* argv[0] is "capture". Returns the process exit status: 0 on success,
 * 1 when the capture failed (I/O, a corrupt file), 2 on a usage error. */
int capture_main(int argc, char **argv);

#endif
