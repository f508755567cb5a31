/* log.c -- event lines on stderr (logfmt or JSON), one write(2) each so
 * that lines from the loops' threads never interleave. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 2048

/* The process has one stderr: its settings are process-wide, set once at
 * start (log_setup) and the level again on reload, read by every thread. */
static struct {
    int level;                      /* atomic */
    int format;
    bool timestamps;
} log_state = { LOG_INFO, LOG_LOGFMT, true };

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void log_setup(int format, int level)
{
    const char *js = getenv("JOURNAL_STREAM");
    log_state.format = format;
    log_state.timestamps = !(js && *js);
    log_set_level(level);
}

void log_set_level(int level)
{
    __atomic_store_n(&log_state.level, level, __ATOMIC_RELAXED);
}

bool log_enabled(int level)
{
    return level <= __atomic_load_n(&log_state.level, __ATOMIC_RELAXED);
}

static int parse_name(const char *s, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (strcmp(s, names[i]) == 0) return i;
    return -1;
}

int log_level_parse(const char *s)
{
    return parse_name(s, level_names, 4);
}

int log_format_parse(const char *s)
{
    static const char *const names[] = { "logfmt", "json" };
    return parse_name(s, names, 2);
}

const char *log_level_name(int level)
{
    return level >= 0 && level < 4 ? level_names[level] : "?";
}

/* A line being built; once full, the rest is dropped. */
typedef struct line {
    char b[LOG_LINE_MAX];
    size_t n;
    bool cut;
} line;

static void put(line *l, const char *s, size_t n)
{
    size_t room = sizeof l->b - 2 - l->n;   /* kept for JSON's '}' and the '\n' */
    if (n > room) {
        n = room;
        l->cut = true;
    }
    memcpy(l->b + l->n, s, n);
    l->n += n;
}

static void puts_(line *l, const char *s) { put(l, s, strlen(s)); }

/* A value as logfmt wants it: bare when it has no space, quote, '=' or
 * control byte; quoted with \" \\ \n \t and \xNN escapes otherwise. JSON
 * strings take the same escapes but \u00NN for the rest. */
static void put_text(line *l, const char *s, bool quote_always)
{
    bool bare = !quote_always && *s;
    for (const char *p = s; *p && bare; p++)
        if ((unsigned char)*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || *p == 0x7f) bare = false;
    if (bare) {
        puts_(l, s);
        return;
    }
    put(l, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\', esc[1] = (char)*p;
            put(l, esc, 2);
        } else if (*p == '\n') {
            put(l, "\\n", 2);
        } else if (*p == '\t') {
            put(l, "\\t", 2);
        } else if (*p < ' ' || *p == 0x7f) {
            snprintf(esc, sizeof esc, log_state.format == LOG_JSON ? "\\u%04x" : "\\x%02x", *p);
            puts_(l, esc);
        } else {
            put(l, (const char *)p, 1);
        }
    }
    put(l, "\"", 1);
}

static void put_field(line *l, const char *key, size_t klen, const char *value, bool number)
{
    bool json = log_state.format == LOG_JSON;
    size_t start = l->n;
    put(l, json ? ",\"" : " ", json ? 2 : 1);
    put(l, key, klen);
    put(l, json ? "\":" : "=", json ? 2 : 1);
    if (number) puts_(l, value);
    else put_text(l, value, json);
    if (l->cut) l->n = start;           /* a field is whole or absent: the line still parses */
}

static void put_timestamp(line *l)
{
    struct timespec ts;
    struct tm tm;
    char buf[40];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof buf - n, ".%03ldZ", ts.tv_nsec / 1000000);
    put_field(l, "time", 4, buf, false);
}

/* The fields of fmt with their arguments; see log.h. */
static void put_fields(line *l, const char *fmt, va_list ap)
{
    const char *p = fmt;
    while (*p) {
        while (*p == ' ') p++;
        const char *eq = strchr(p, '=');
        if (!eq || eq[1] != '%') return;
        const char *conv = eq + 2;
        char num[32];
        const char *value = num;
        bool number = true;
        if (*conv == 's') {
            value = va_arg(ap, const char *);
            number = false;
        } else if (*conv == 'd') {
            snprintf(num, sizeof num, "%d", va_arg(ap, int));
        } else if (*conv == 'u') {
            snprintf(num, sizeof num, "%u", va_arg(ap, unsigned));
        } else if (conv[0] == 'z' && conv[1] == 'u') {
            snprintf(num, sizeof num, "%zu", va_arg(ap, size_t));
            conv++;
        } else if (strncmp(conv, "llu", 3) == 0) {
            snprintf(num, sizeof num, "%llu", va_arg(ap, unsigned long long));
            conv += 2;
        } else {
            return;                     /* a caller's mistake: the rest is left out */
        }
        if (value) put_field(l, p, (size_t)(eq - p), value, number);
        p = conv + 1;
    }
}

void log_event(int level, const char *event, const char *fmt, ...)
{
    if (!log_enabled(level)) return;
    line l;
    l.n = 0;
    l.cut = false;
    bool json = log_state.format == LOG_JSON;
    if (json) put(&l, "{\"level\":\"", 10);
    else put(&l, "level=", 6);
    puts_(&l, log_level_name(level));
    if (json) put(&l, "\"", 1);
    if (log_state.timestamps) put_timestamp(&l);
    put_field(&l, "event", 5, event, false);
    va_list ap;
    va_start(ap, fmt);
    put_fields(&l, fmt, ap);
    va_end(ap);
    if (json) l.b[l.n++] = '}';
    l.b[l.n++] = '\n';
    ssize_t w = write(STDERR_FILENO, l.b, l.n);
    (void)w;                            /* nowhere to report a failed log write */
}
