/* escape.c -- HTML escaping, nl2br, trimming and control-character checks
 * on the user-supplied name and content. */
#include "escape.h"

#include <stdint.h>
#include "utf8.h"

void html_escape(sbuf *out, const char *s, size_t n, bool nl2br)
{
    size_t run = 0;     /* start of bytes copied as they are */
    for (size_t i = 0; i < n; i++) {
        const char *rep = NULL;
        size_t skip = 0;
        switch (s[i]) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&#039;"; break;
        case '\r':
        case '\n':
            if (!nl2br) continue;
            /* "<br />" then the break itself, a \r\n or \n\r pair kept whole. */
            if (i + 1 < n && (s[i + 1] == '\r' || s[i + 1] == '\n') && s[i + 1] != s[i])
                skip = 1;
            sbuf_put(out, s + run, i - run);
            sbuf_put(out, "<br />", 6);
            sbuf_put(out, s + i, 1 + skip);
            i += skip;
            run = i + 1;
            continue;
        default:
            continue;
        }
        sbuf_put(out, s + run, i - run);
        sbuf_puts(out, rep);
        run = i + 1;
    }
    sbuf_put(out, s + run, n - run);
}

static bool is_space(uint32_t cp)
{
    return cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || cp == 0x85 || cp == 0xA0 ||
           cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000 || cp == 0xFEFF;
}

/* Length of the UTF-8 sequence that ends just before end. */
static size_t last_char_len(const char *start, const char *end)
{
    size_t l = 1;
    while (end - l > start && (((unsigned char)end[-(long)l]) & 0xC0) == 0x80) l++;
    return l;
}

const char *utf8_trim(const char *s, size_t *len)
{
    const char *end = s + *len;
    while (s < end) {
        size_t l;
        uint32_t cp = utf8_decode((const uint8_t *)s, (size_t)(end - s), &l);
        if (!is_space(cp)) break;
        s += l;
    }
    while (end > s) {
        size_t l = last_char_len(s, end), dl;
        uint32_t cp = utf8_decode((const uint8_t *)(end - l), l, &dl);
        if (!is_space(cp)) break;
        end -= l;
    }
    *len = (size_t)(end - s);
    return s;
}

bool utf8_has_control(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t l;
        uint32_t cp = utf8_decode((const uint8_t *)s + i, n - i, &l);
        if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F)) return true;
        i += l;
    }
    return false;
}
