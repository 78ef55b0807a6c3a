/*
 * test_json_writer.c: the streaming JSON writer.
 *
 * Checks exact output (compact and pretty) against hand-written expected text, string escaping (quotes,
 * backslashes, control characters, valid multi-byte UTF-8 kept, invalid bytes replaced by U+FFFD), that
 * %.17g doubles parse back to the identical bit pattern, NaN/Inf -> null, and that every kind of misuse is
 * reported (and sticky) instead of producing broken JSON. Write errors surface in dc_json_finish.
 */
#include "core/check.h"
#include "core/json_writer.h"
#include "tests/testutil.h"

#include <float.h>
#include <stdint.h>

/* Runs the writer into a memory buffer. */
typedef struct {
    char *buf;
    size_t len;
    FILE *fp;
    dc_json_writer w;
} mem_out;

static void mem_open(mem_out *m, int pretty) {
    m->buf = NULL;
    m->len = 0;
    m->fp = open_memstream(&m->buf, &m->len);
    REQUIRE(m->fp != NULL);
    dc_json_init(&m->w, m->fp, pretty);
}

/* Closes the stream; returns the text (caller frees). */
static char *mem_close(mem_out *m) {
    fclose(m->fp);
    return m->buf;
}

static void test_compact_and_pretty(void) {
    for (int pretty = 0; pretty <= 1; pretty++) {
        mem_out m;
        mem_open(&m, pretty);
        dc_json_writer *w = &m.w;
        EXPECT(dc_json_object_begin(w) == DC_OK);
        EXPECT(dc_json_kv_string(w, "name", "run1") == DC_OK);
        EXPECT(dc_json_kv_int(w, "epoch", -90) == DC_OK);
        EXPECT(dc_json_kv_double(w, "top1", 0.5) == DC_OK);
        EXPECT(dc_json_kv_bool(w, "ok", 1) == DC_OK);
        EXPECT(dc_json_key(w, "per_split") == DC_OK);
        EXPECT(dc_json_array_begin(w) == DC_OK);
        EXPECT(dc_json_uint(w, UINT64_MAX) == DC_OK);
        EXPECT(dc_json_null(w) == DC_OK);
        EXPECT(dc_json_array_begin(w) == DC_OK);
        EXPECT(dc_json_array_end(w) == DC_OK);
        EXPECT(dc_json_object_begin(w) == DC_OK);
        EXPECT(dc_json_kv_bool(w, "f", 0) == DC_OK);
        EXPECT(dc_json_object_end(w) == DC_OK);
        EXPECT(dc_json_array_end(w) == DC_OK);
        EXPECT(dc_json_key(w, "empty") == DC_OK);
        EXPECT(dc_json_object_begin(w) == DC_OK);
        EXPECT(dc_json_object_end(w) == DC_OK);
        EXPECT(dc_json_object_end(w) == DC_OK);
        EXPECT(dc_json_finish(w) == DC_OK);
        char *text = mem_close(&m);
        const char *expect_compact =
            "{\"name\":\"run1\",\"epoch\":-90,\"top1\":0.5,\"ok\":true,"
            "\"per_split\":[18446744073709551615,null,[],{\"f\":false}],\"empty\":{}}";
        const char *expect_pretty = "{\n"
                                    "  \"name\": \"run1\",\n"
                                    "  \"epoch\": -90,\n"
                                    "  \"top1\": 0.5,\n"
                                    "  \"ok\": true,\n"
                                    "  \"per_split\": [\n"
                                    "    18446744073709551615,\n"
                                    "    null,\n"
                                    "    [],\n"
                                    "    {\n"
                                    "      \"f\": false\n"
                                    "    }\n"
                                    "  ],\n"
                                    "  \"empty\": {}\n"
                                    "}\n";
        EXPECTF(strcmp(text, pretty ? expect_pretty : expect_compact) == 0, "got:\n%s", text);
        free(text);
    }
}

static void test_strings(void) {
    mem_out m;
    mem_open(&m, 0);
    dc_json_array_begin(&m.w);
    dc_json_string(&m.w, "q\"b\\s/\b\f\n\r\t\x01\x1f\x7f");
    dc_json_string(&m.w, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"); /* é € 😀: valid, kept as is */
    dc_json_string(&m.w, "a\xff"
                         "b\xc0\xaf"
                         "c\xed\xa0\x80"
                         "d\xe2\x82"); /* invalid -> U+FFFD per byte */
    dc_json_string(&m.w, "");
    dc_json_string(&m.w, NULL); /* NULL string -> null */
    dc_json_array_end(&m.w);
    EXPECT(dc_json_finish(&m.w) == DC_OK);
    char *text = mem_close(&m);
    const char *expect = "[\"q\\\"b\\\\s/\\b\\f\\n\\r\\t\\u0001\\u001f\x7f\","
                         "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\","
                         "\"a\\ufffdb\\ufffd\\ufffdc\\ufffd\\ufffd\\ufffdd\\ufffd\\ufffd\","
                         "\"\",null]";
    EXPECTF(strcmp(text, expect) == 0, "got: %s", text);
    free(text);

    /* Keys are escaped the same way. */
    mem_open(&m, 0);
    dc_json_object_begin(&m.w);
    dc_json_kv_int(&m.w, "a\"b\n", 1);
    dc_json_object_end(&m.w);
    EXPECT(dc_json_finish(&m.w) == DC_OK);
    text = mem_close(&m);
    EXPECTF(strcmp(text, "{\"a\\\"b\\n\":1}") == 0, "got: %s", text);
    free(text);
}

static void test_doubles(void) {
    const double values[] = {0.1,
                             1.0 / 3.0,
                             -2.5,
                             1e-300,
                             5e-324 /* smallest subnormal */,
                             DBL_MAX,
                             -0.0,
                             1e22,
                             123456789012345678.0,
                             0.5,
                             3.0};
    const size_t nv = sizeof values / sizeof values[0];
    mem_out m;
    mem_open(&m, 0);
    dc_json_array_begin(&m.w);
    for (size_t i = 0; i < nv; i++) dc_json_double(&m.w, values[i]);
    dc_json_double(&m.w, NAN);
    dc_json_double(&m.w, INFINITY);
    dc_json_double(&m.w, -INFINITY);
    dc_json_array_end(&m.w);
    EXPECT(dc_json_finish(&m.w) == DC_OK);
    char *text = mem_close(&m);
    /* Parse the numbers back with strtod: every one must reproduce the same bits. */
    char *p = text + 1;
    for (size_t i = 0; i < nv; i++) {
        char *end;
        double back = strtod(p, &end);
        EXPECTF(end != p && memcmp(&back, &values[i], sizeof back) == 0, "value %zu: %.17g -> %.*s", i,
                values[i], (int)(end - p), p);
        EXPECT(*end == ',');
        p = end + 1;
    }
    EXPECTF(strcmp(p, "null,null,null]") == 0, "tail: %s", p);
    EXPECT(strstr(text, "3,") != NULL && strstr(text, "0.5,") != NULL); /* integers/halves stay short */
    free(text);
}

/* Each misuse fails, the failure is sticky, and finish reports the first problem. */
static void test_misuse(void) {
    struct {
        const char *expect;
        int step;
    } cases[] = {
        {"needs a key first", 0},  {"key outside an object", 1}, {"two keys in a row", 2},
        {"without a matching", 3}, {"right after a key", 4},     {"second top-level value", 5},
        {"still open", 6},         {"nothing was written", 7},   {"nesting deeper", 8},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mem_out m;
        mem_open(&m, 0);
        dc_json_writer *w = &m.w;
        int rc = DC_OK;
        dc_clear_error();
        switch (cases[i].step) {
        case 0:
            dc_json_object_begin(w), rc = dc_json_int(w, 1);
            break;
        case 1:
            dc_json_array_begin(w), rc = dc_json_key(w, "k");
            break;
        case 2:
            dc_json_object_begin(w), dc_json_key(w, "a"), rc = dc_json_key(w, "b");
            break;
        case 3:
            dc_json_object_begin(w), rc = dc_json_array_end(w);
            break;
        case 4:
            dc_json_object_begin(w), dc_json_key(w, "a"), rc = dc_json_object_end(w);
            break;
        case 5:
            dc_json_int(w, 1), rc = dc_json_int(w, 2);
            break;
        case 6:
            dc_json_array_begin(w), rc = dc_json_finish(w);
            break;
        case 7:
            rc = dc_json_finish(w);
            break;
        case 8:
            for (int d = 0; d <= DC_JSON_MAX_DEPTH && rc == DC_OK; d++) rc = dc_json_array_begin(w);
            break;
        }
        EXPECTF(rc == DC_FAIL && strstr(dc_last_error(), cases[i].expect), "case %zu: rc %d, '%s'", i, rc,
                dc_last_error());
        if (cases[i].step != 7) {
            /* sticky: a perfectly valid call now fails too, and finish repeats the first problem */
            EXPECT(dc_json_null(w) == DC_FAIL);
            EXPECT(dc_json_finish(w) == DC_FAIL && strstr(dc_last_error(), cases[i].expect));
        }
        free(mem_close(&m));
    }
}

static void test_write_error(void) {
    FILE *fp = fopen("/dev/full", "w");
    if (!fp) {
        printf("note: /dev/full not available, skipping the write-error case\n");
        return;
    }
    dc_json_writer w;
    dc_json_init(&w, fp, 0);
    dc_json_string(&w, "this cannot be stored");
    EXPECT(dc_json_finish(&w) == DC_FAIL);
    EXPECTF(strstr(dc_last_error(), "No space left") != NULL, "%s", dc_last_error());
    fclose(fp);
}

int main(void) {
    test_compact_and_pretty();
    test_strings();
    test_doubles();
    test_misuse();
    test_write_error();
    return tu_finish("test_json_writer");
}
