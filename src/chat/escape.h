/* escape.h -- HTML escaping as the original PHP server did it
 * (htmlspecialchars with ENT_QUOTES, then nl2br for message content). */
#ifndef TAGARELA_ESCAPE_H
#define TAGARELA_ESCAPE_H

#include <stdbool.h>
#include <stddef.h>
#include "sbuf.h"

/* Appends s with & < > " ' escaped; with nl2br, "<br />" is inserted before
 * each line break (\r\n, \n\r, \n or \r, a pair counting as one). */
void html_escape(sbuf *out, const char *s, size_t n, bool nl2br);

/* Trims leading and trailing white space (ASCII and Unicode spaces) from
 * valid UTF-8; returns the new start and sets *len. */
const char *utf8_trim(const char *s, size_t *len);

/* True when the valid UTF-8 text holds a control character (C0, DEL, C1). */
bool utf8_has_control(const char *s, size_t n);

#endif
