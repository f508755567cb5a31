/* serve.h -- `tagarela serve`, the chat server. */
#ifndef TAGARELA_SERVE_H
#define TAGARELA_SERVE_H

/* argv[0] is "serve". Returns the process exit status: 0 after a clean
 * shutdown (or --help), 1 when the server could not run, 2 on a usage error. */
int serve_main(int argc, char **argv);

#endif
