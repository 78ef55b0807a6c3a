/*
 * problem_list.h: collect every problem found while checking a file, then report them in one error message.
 *
 * The loaders of weights and checkpoints compare a file's tensors with the model's and list every mismatch
 * (missing, wrong dtype, wrong shape, unexpected), one per line, instead of stopping at the first. Lines are
 * appended while they fit in DC_PROBLEM_TEXT_MAX (an error message keeps 1024 bytes, check.c); the rest are
 * counted and reported as "... and N more".
 */
#ifndef DC_PROBLEM_LIST_H
#define DC_PROBLEM_LIST_H

#include "check.h"

#include <stddef.h>

#define DC_PROBLEM_TEXT_MAX 800

typedef struct {
    char text[DC_PROBLEM_TEXT_MAX + 1]; /* "\n  line" per problem */
    size_t len;
    int count;   /* problems added */
    int dropped; /* of which did not fit */
} dc_problem_list;

/* Appends one problem (printf format). The list must start zeroed: dc_problem_list pl = {0}. */
void dc_problem_add(dc_problem_list *pl, const char *fmt, ...) DC_PRINTF(2, 3);

/* The lines, ending with "... and N more" when some did not fit. Call once, after the last add. */
const char *dc_problem_text(dc_problem_list *pl);

#endif
