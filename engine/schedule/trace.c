/* Chrome trace event JSON for simulated and measured timelines. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "schedule/schedule_internal.h"

static void write_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\')
            fprintf(f, "\\%c", *c);
        else if (*c < 0x20)
            fprintf(f, "\\u%04x", *c);
        else
            fputc(*c, f);
    }
    fputc('"', f);
}

static int compare_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static brg_status validate_events(const brg_trace_event *events, int64_t count, brg_error *err) {
    for (int64_t i = 0; i < count; i++) {
        const brg_trace_event *e = &events[i];
        if (e->rank < 0)
            return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "trace event %lld: negative rank %d", (long long)i,
                                  e->rank);
        if (e->track != BRG_TRACE_COMPUTE && e->track != BRG_TRACE_TRANSFER)
            return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "trace event %lld: unknown track %d", (long long)i,
                                  (int)e->track);
        if (!isfinite(e->start) || !isfinite(e->duration) || e->start < 0 || e->duration < 0)
            return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT,
                                  "trace event %lld: start %g and duration %g must be finite and >= 0", (long long)i,
                                  e->start, e->duration);
    }
    return BRG_OK;
}

/* Process and track names for every rank that has an event. */
static brg_status write_metadata(FILE *f, const brg_trace_event *events, int64_t count, const char *label,
                                 brg_error *err) {
    int *ranks = brg__malloc(sizeof(int) * (size_t)(count ? count : 1));
    if (!ranks) return brg__error_set(err, BRG_ERR_OUT_OF_MEMORY, "out of memory writing a trace");
    for (int64_t i = 0; i < count; i++) ranks[i] = events[i].rank;
    qsort(ranks, (size_t)count, sizeof(int), compare_int);
    int first = 1;
    for (int64_t i = 0; i < count; i++) {
        if (i > 0 && ranks[i] == ranks[i - 1]) continue;
        char name[BRG_TRACE_NAME_MAX + 32];
        if (label)
            snprintf(name, sizeof name, "%.*s rank %d", BRG_TRACE_NAME_MAX, label, ranks[i]);
        else
            snprintf(name, sizeof name, "rank %d", ranks[i]);
        fprintf(f, "%s{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":0,\"args\":{\"name\":",
                first ? "" : ",\n", ranks[i]);
        write_json_string(f, name);
        fprintf(f,
                "}},\n{\"name\":\"process_sort_index\",\"ph\":\"M\",\"pid\":%d,\"tid\":0,\"args\":{\"sort_index\":%d}}",
                ranks[i], ranks[i]);
        fprintf(f, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"args\":{\"name\":\"compute\"}}",
                ranks[i], (int)BRG_TRACE_COMPUTE);
        fprintf(f, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"args\":{\"name\":\"transfers\"}}",
                ranks[i], (int)BRG_TRACE_TRANSFER);
        first = 0;
    }
    free(ranks);
    return BRG_OK;
}

static void write_event(FILE *f, const brg_trace_event *e) {
    char name[BRG_TRACE_NAME_MAX + 16];
    if (e->name[0]) {
        snprintf(name, sizeof name, "%.*s", BRG_TRACE_NAME_MAX - 1, e->name);
    } else if (e->micro_batch >= 0) {
        snprintf(name, sizeof name, "%s%d", brg_instruction_kind_label(e->kind), e->micro_batch);
    } else {
        snprintf(name, sizeof name, "%s", brg_instruction_kind_label(e->kind));
    }
    fputs("{\"name\":", f);
    write_json_string(f, name);
    fputs(",\"cat\":", f);
    write_json_string(f, brg_instruction_kind_name(e->kind));
    fprintf(f, ",\"ph\":\"X\",\"ts\":%.3f,\"dur\":%.3f,\"pid\":%d,\"tid\":%d,\"args\":{", e->start * 1e6,
            e->duration * 1e6, e->rank, (int)e->track);
    int comma = 0;
    if (e->micro_batch >= 0) {
        fprintf(f, "\"micro_batch\":%d", e->micro_batch);
        comma = 1;
    }
    if (e->stage >= 0) fprintf(f, "%s\"stage\":%d", comma ? "," : "", e->stage);
    fputs("}}", f);
}

brg_status brg_trace_write(const char *path, const brg_trace_event *events, int64_t count, const char *label,
                           brg_error *err) {
    if (!path) return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_trace_write: path is NULL");
    if (count < 0 || (count > 0 && !events))
        return brg__error_set(err, BRG_ERR_INVALID_ARGUMENT, "brg_trace_write: %lld events at %p", (long long)count,
                              (const void *)events);
    BRG__CHECK(validate_events(events, count, err));
    FILE *f = fopen(path, "w");
    if (!f) return brg__error_set(err, BRG_ERR_IO, "cannot write the trace file '%s': %s", path, strerror(errno));
    fputs("{\"traceEvents\":[\n", f);
    brg_status status = write_metadata(f, events, count, label, err);
    if (status != BRG_OK) {
        fclose(f);
        return status;
    }
    for (int64_t i = 0; i < count; i++) {
        fputs(",\n", f);
        write_event(f, &events[i]);
    }
    fputs("\n],\"displayTimeUnit\":\"ms\"}\n", f);
    int failed = ferror(f);
    int saved = errno;
    if (fclose(f) != 0 && !failed) {
        failed = 1;
        saved = errno;
    }
    if (failed) return brg__error_set(err, BRG_ERR_IO, "cannot write the trace file '%s': %s", path, strerror(saved));
    return BRG_OK;
}
