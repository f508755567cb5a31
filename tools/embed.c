/* embed.c -- turns the web page's files into a C source file.
 *
 * usage: embed OUTPUT.c URLPATH=FILE [URLPATH=FILE ...]
 *
 * Writes OUTPUT.c, which defines the table of assets and asset_find()
 * declared in src/assets.h. Each URLPATH must start with '/', and appear
 * once. The output is written to OUTPUT.c.tmp first and renamed into
 * place, so a failed run never leaves a half-written file behind.
 *
 * C11 and libc only: this runs on the build host. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct input {
    const char *url;      /* "/index.html" */
    size_t url_len;
    const char *file;     /* path on disk */
    unsigned char *data;
    size_t len;
} input;

static void die(const char *fmt, const char *a, const char *b)
{
    fputs("embed: ", stderr);
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    exit(1);
}

static unsigned char *read_file(const char *path, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die("cannot open %s: %s", path, strerror(errno));
    size_t cap = 4096, len = 0;
    unsigned char *buf = malloc(cap);
    if (!buf)
        die("out of memory reading %s%s", path, "");
    for (;;) {
        if (len == cap) {
            if (cap > SIZE_MAX / 2)
                die("%s is too large%s", path, "");
            cap *= 2;
            unsigned char *nb = realloc(buf, cap);
            if (!nb)
                die("out of memory reading %s%s", path, "");
            buf = nb;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            if (ferror(f))
                die("cannot read %s: %s", path, strerror(errno));
            break;
        }
    }
    fclose(f);
    *len_out = len;
    return buf;
}

/* FNV-1a, 64 bit. Enough to tell two versions of a file apart. */
static uint64_t fnv1a64(const unsigned char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static int ends_with(const char *s, size_t n, const char *suffix)
{
    size_t m = strlen(suffix);
    if (m > n)
        return 0;
    for (size_t i = 0; i < m; i++) {
        char c = s[n - m + i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != suffix[i])
            return 0;
    }
    return 1;
}

static const char *content_type(const char *url, size_t n)
{
    static const struct { const char *ext, *type; } types[] = {
        { ".html", "text/html; charset=utf-8" },
        { ".htm",  "text/html; charset=utf-8" },
        { ".js",   "text/javascript; charset=utf-8" },
        { ".mjs",  "text/javascript; charset=utf-8" },
        { ".css",  "text/css; charset=utf-8" },
        { ".svg",  "image/svg+xml" },
        { ".png",  "image/png" },
        { ".ico",  "image/x-icon" },
        { ".json", "application/json" },
        { ".webmanifest", "application/manifest+json" },
        { ".txt",  "text/plain; charset=utf-8" },
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (ends_with(url, n, types[i].ext))
            return types[i].type;
    return "application/octet-stream";
}

/* Writes s as the inside of a C string literal. Everything outside
 * printable ASCII, and anything that could end the literal or start a
 * trigraph or an escape, is written as an octal escape. */
static void put_c_string(FILE *out, const char *s, size_t n)
{
    fputc('"', out);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '?')
            fprintf(out, "\\%03o", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

static void put_bytes(FILE *out, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (i % 16 == 0)
            fputs("\n   ", out);
        fprintf(out, " 0x%02x,", p[i]);
    }
    /* A trailing NUL (not counted in len): keeps the array non-empty for
     * an empty file and makes text assets safe to print while debugging. */
    fputs(n % 16 == 0 ? "\n    0x00\n" : " 0x00\n", out);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs("usage: embed OUTPUT.c URLPATH=FILE [URLPATH=FILE ...]\n", stderr);
        return 2;
    }
    const char *out_path = argv[1];
    size_t count = (size_t)(argc - 2);
    input *in = calloc(count ? count : 1, sizeof *in);
    if (!in)
        die("out of memory%s%s", "", "");

    for (size_t i = 0; i < count; i++) {
        const char *arg = argv[i + 2];
        const char *eq = strchr(arg, '=');
        if (!eq || eq == arg || eq[1] == '\0')
            die("bad argument '%s': want URLPATH=FILE%s", arg, "");
        if (arg[0] != '/')
            die("bad URL path in '%s': it must start with '/'%s", arg, "");
        in[i].url = arg;
        in[i].url_len = (size_t)(eq - arg);
        in[i].file = eq + 1;
        for (size_t j = 0; j < i; j++)
            if (in[j].url_len == in[i].url_len &&
                memcmp(in[j].url, in[i].url, in[i].url_len) == 0)
                die("URL path given twice: '%s'%s", arg, "");
        in[i].data = read_file(in[i].file, &in[i].len);
    }

    size_t tmp_len = strlen(out_path) + sizeof ".tmp";
    char *tmp = malloc(tmp_len);
    if (!tmp)
        die("out of memory%s%s", "", "");
    snprintf(tmp, tmp_len, "%s.tmp", out_path);
    FILE *out = fopen(tmp, "wb");
    if (!out)
        die("cannot create %s: %s", tmp, strerror(errno));

    fputs("/* Generated by tools/embed.c from the files under web/. Do not edit. */\n"
          "#include \"assets.h\"\n\n"
          "#include <string.h>\n", out);

    for (size_t i = 0; i < count; i++) {
        fprintf(out, "\n/* ");
        /* the URL path in a comment: only if it cannot end the comment */
        int plain = 1;
        for (size_t k = 0; k < in[i].url_len; k++) {
            unsigned char c = (unsigned char)in[i].url[k];
            if (c < 0x20 || c > 0x7e || (c == '*' && k + 1 < in[i].url_len && in[i].url[k + 1] == '/'))
                plain = 0;
        }
        if (plain)
            fwrite(in[i].url, 1, in[i].url_len, out);
        else
            fputs("(path)", out);
        fprintf(out, ", %zu bytes */\nstatic const unsigned char asset_data_%zu[] = {", in[i].len, i);
        put_bytes(out, in[i].data, in[i].len);
        fputs("};\n", out);
    }

    fprintf(out, "\nstatic const asset assets[%zu] = {\n", count ? count : 1);
    for (size_t i = 0; i < count; i++) {
        char etag[32];
        snprintf(etag, sizeof etag, "\"%016llx\"",
                 (unsigned long long)fnv1a64(in[i].data, in[i].len));
        fputs("    { ", out);
        put_c_string(out, in[i].url, in[i].url_len);
        fputs(", ", out);
        const char *ct = content_type(in[i].url, in[i].url_len);
        put_c_string(out, ct, strlen(ct));
        fprintf(out, ", asset_data_%zu, %zu, ", i, in[i].len);
        put_c_string(out, etag, strlen(etag));
        fputs(" },\n", out);
    }
    if (count == 0)
        fputs("    { 0, 0, 0, 0, 0 },\n", out);
    fputs("};\n\n", out);

    fprintf(out,
        "const asset *asset_find(const char *path, size_t len)\n"
        "{\n"
        "    static const size_t count = %zu;\n"
        "    if (!path)\n"
        "        return 0;\n"
        "    if (len == 1 && path[0] == '/') {\n"
        "        path = \"/index.html\";\n"
        "        len = sizeof \"/index.html\" - 1;\n"
        "    }\n"
        "    for (size_t i = 0; i < count; i++) {\n"
        "        const asset *a = &assets[i];\n"
        "        if (strlen(a->path) == len && memcmp(a->path, path, len) == 0)\n"
        "            return a;\n"
        "    }\n"
        "    return 0;\n"
        "}\n", count);

    if (fflush(out) != 0 || ferror(out)) {
        fclose(out);
        remove(tmp);
        die("cannot write %s: %s", tmp, strerror(errno));
    }
    if (fclose(out) != 0) {
        remove(tmp);
        die("cannot write %s: %s", tmp, strerror(errno));
    }
    if (rename(tmp, out_path) != 0) {
        remove(tmp);
        die("cannot rename to %s: %s", out_path, strerror(errno));
    }

    for (size_t i = 0; i < count; i++)
        free(in[i].data);
    free(in);
    free(tmp);
    return 0;
}
