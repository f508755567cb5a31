/* log.h -- the server's event log: one line per significant event on
 * stderr, as logfmt or JSON, filtered by level. */
#ifndef TAGARELA_LOG_H
#define TAGARELA_LOG_H

#include <stdbool.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };
enum log_format { LOG_LOGFMT, LOG_JSON };

/* Timestamps are left out under systemd ($JOURNAL_STREAM set): the
 * journal stamps each line itself. */
void log_setup(int format, int level);
/* Any thread may log while the main loop changes the level (SIGHUP). */
void log_set_level(int level);
bool log_enabled(int level);

/* One line: level, event, then the fields of fmt, a list of "key=%s",
 * "key=%d", "key=%u", "key=%zu" or "key=%llu" separated by spaces, with
 * their values as arguments. A NULL %s leaves its field out. Values are
 * quoted and escaped as the format needs; a line is cut at 2 KiB. */
void log_event(int level, const char *event, const char *fmt, ...);

/* "error", "warn", "info", "debug" / "logfmt", "json"; -1 if unknown. */
int log_level_parse(const char *s);
int log_format_parse(const char *s);
const char *log_level_name(int level);

#endif
