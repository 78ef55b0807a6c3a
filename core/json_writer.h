/*
 * json_writer.h: a tiny streaming JSON writer over a FILE*.
 *
 * Used for results.json and for the safetensors header. The writer tracks nesting and commas, so callers
 * just say what comes next:
 *
 *     dc_json_writer w;
 *     dc_json_init(&w, fp, 1);
 *     dc_json_object_begin(&w);
 *     dc_json_kv_int(&w, "epoch", 90);
 *     dc_json_key(&w, "top1");
 *     dc_json_array_begin(&w); dc_json_double(&w, 0.5); dc_json_array_end(&w);
 *     dc_json_object_end(&w);
 *     if (dc_json_finish(&w) != DC_OK) ...   // misuse or a write error
 *
 * Output rules: strings are escaped (", \, control characters; invalid UTF-8 is replaced by U+FFFD so the
 * output is always valid JSON); doubles use %.17g, which round-trips every IEEE double exactly; NaN and
 * +-Inf have no JSON spelling and are written as null. Misuse (a value in an object without a key, a key in
 * an array, an unbalanced end, a second root value) makes the call return DC_FAIL with a message; the error
 * is sticky, every later call fails too, and dc_json_finish reports it.
 */
#ifndef DC_JSON_WRITER_H
#define DC_JSON_WRITER_H

#include <stdint.h>
#include <stdio.h>

#define DC_JSON_MAX_DEPTH 32

typedef struct {
    FILE *fp;
    int pretty;                   /* 1: newline + two-space indent per level; 0: compact */
    int depth;                    /* number of open containers */
    char open[DC_JSON_MAX_DEPTH]; /* '{' or '[' for each open container */
    int count[DC_JSON_MAX_DEPTH]; /* values (or key/value pairs) written so far in each container */
    int have_key;                 /* inside an object: a key was written and its value is due */
    int root_done;                /* the single top-level value is complete */
    int failed;                   /* sticky: a misuse was detected */
    char error[160];              /* the first misuse, repeated by every later call and by finish */
} dc_json_writer;

void dc_json_init(dc_json_writer *w, FILE *fp, int pretty);

int dc_json_object_begin(dc_json_writer *w);
int dc_json_object_end(dc_json_writer *w);
int dc_json_array_begin(dc_json_writer *w);
int dc_json_array_end(dc_json_writer *w);
int dc_json_key(dc_json_writer *w, const char *key);

int dc_json_string(dc_json_writer *w, const char *s);
int dc_json_int(dc_json_writer *w, int64_t v);
int dc_json_uint(dc_json_writer *w, uint64_t v);
int dc_json_double(dc_json_writer *w, double v); /* %.17g; NaN/Inf -> null */
int dc_json_bool(dc_json_writer *w, int v);
int dc_json_null(dc_json_writer *w);

/* key + value in one call, for the common flat case. */
int dc_json_kv_string(dc_json_writer *w, const char *key, const char *s);
int dc_json_kv_int(dc_json_writer *w, const char *key, int64_t v);
int dc_json_kv_double(dc_json_writer *w, const char *key, double v);
int dc_json_kv_bool(dc_json_writer *w, const char *key, int v);

/* Checks that exactly one complete root value was written and no misuse happened; writes a final newline
 * when pretty; flushes the FILE and checks it for write errors. Does not close the FILE. */
int dc_json_finish(dc_json_writer *w);

#endif /* DC_JSON_WRITER_H */
