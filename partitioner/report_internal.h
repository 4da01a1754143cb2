/* Internal to the report: a growing string and the pictures. */
#ifndef BRIGADE_REPORT_INTERNAL_H
#define BRIGADE_REPORT_INTERNAL_H

#include <stddef.h>

#include "partitioner_internal.h"

typedef struct brg__sb {
    char *data;
    size_t len, cap;
    int failed; /* an allocation failed: the text is incomplete */
} brg__sb;

void brg__sb_printf(brg__sb *b, const char *fmt, ...) BRG__PRINTF(2, 3);

/* SVG pictures of a plan from brg_plan_search (it has a timeline). */
void brg__svg_gantt(const brg_plan *plan, brg__sb *b);
void brg__svg_memory(const brg_plan *plan, brg__sb *b);
void brg__svg_placement(const brg_plan *plan, brg__sb *b);

#endif
