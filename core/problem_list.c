/*
 * problem_list.c: see problem_list.h.
 */
#include "problem_list.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define ROOM_FOR_MORE 40 /* kept free for the "... and N more" line */

void dc_problem_add(dc_problem_list *pl, const char *fmt, ...) {
    char line[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    pl->count++;
    if (pl->dropped || pl->len + strlen(line) + 3 > DC_PROBLEM_TEXT_MAX - ROOM_FOR_MORE) {
        pl->dropped++;
        return;
    }
    pl->len += (size_t)snprintf(pl->text + pl->len, sizeof pl->text - pl->len, "\n  %s", line);
}

const char *dc_problem_text(dc_problem_list *pl) {
    if (pl->dropped)
        snprintf(pl->text + pl->len, sizeof pl->text - pl->len, "\n  ... and %d more", pl->dropped);
    return pl->text;
}
