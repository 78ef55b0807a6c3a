/*
 * json_writer.c: a tiny streaming JSON writer (see json_writer.h).
 *
 * State machine: a stack of open containers ('{' or '['), a per-level count of items written so far (a comma
 * goes before every item but the first) and, inside an object, whether a key is waiting for its value.
 * Strings are validated as UTF-8 while escaping, so whatever bytes a caller passes the output stays valid
 * JSON (RFC 8259 requires UTF-8 and escaped control characters).
 */
#include "json_writer.h"

#include "check.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

void dc_json_init(dc_json_writer *w, FILE *fp, int pretty) {
    memset(w, 0, sizeof *w);
    w->fp = fp;
    w->pretty = pretty;
}

/* Records the first misuse (kept in the writer so dc_json_finish can repeat it) and fails. */
static int misuse(dc_json_writer *w, const char *what) {
    if (!w->failed) {
        w->failed = 1;
        snprintf(w->error, sizeof w->error, "%s", what);
    }
    return DC_ERR("json writer: %s", w->error);
}

static void newline_indent(dc_json_writer *w, int level) {
    if (!w->pretty) return;
    fputc('\n', w->fp);
    for (int i = 0; i < level; i++) fputs("  ", w->fp);
}

/* Everything that has to happen before a value (scalar or container) is written at the current position. */
static int begin_value(dc_json_writer *w) {
    if (w->failed) return misuse(w, w->error);
    if (w->depth == 0) {
        if (w->root_done) return misuse(w, "a second top-level value (JSON has exactly one root)");
        return DC_OK;
    }
    if (w->open[w->depth - 1] == '{') {
        if (!w->have_key) return misuse(w, "a value inside an object needs a key first");
        w->have_key = 0;
        return DC_OK;
    }
    if (w->count[w->depth - 1] > 0) fputc(',', w->fp);
    newline_indent(w, w->depth);
    return DC_OK;
}

/* Bookkeeping once a value is complete. */
static void end_value(dc_json_writer *w) {
    if (w->depth == 0)
        w->root_done = 1;
    else
        w->count[w->depth - 1]++;
}

/* Writes s as a JSON string literal. Valid UTF-8 sequences are copied; each byte that does not start a valid
 * sequence becomes U+FFFD. Control characters (< 0x20) are escaped; so are '"' and '\'. */
static void write_escaped(FILE *fp, const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', fp);
    while (*p) {
        unsigned c = *p;
        if (c < 0x80) {
            switch (c) {
            case '"':
                fputs("\\\"", fp);
                break;
            case '\\':
                fputs("\\\\", fp);
                break;
            case '\b':
                fputs("\\b", fp);
                break;
            case '\f':
                fputs("\\f", fp);
                break;
            case '\n':
                fputs("\\n", fp);
                break;
            case '\r':
                fputs("\\r", fp);
                break;
            case '\t':
                fputs("\\t", fp);
                break;
            default:
                if (c < 0x20)
                    fprintf(fp, "\\u%04x", c);
                else
                    fputc((int)c, fp);
            }
            p++;
            continue;
        }
        /* Multi-byte sequence: lead byte gives the length; the second byte's range excludes overlong forms
         * (E0, F0), UTF-16 surrogates (ED) and code points above U+10FFFF (F4). */
        int n = 0;
        unsigned lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF)
            n = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
            n = 3;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 4;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        }
        int ok = n > 0 && p[1] >= lo && p[1] <= hi;
        for (int i = 2; ok && i < n; i++) ok = p[i] >= 0x80 && p[i] <= 0xBF; /* NUL stops here: no overread */
        if (ok) {
            fwrite(p, 1, (size_t)n, fp);
            p += n;
        } else {
            fputs("\\ufffd", fp);
            p++;
        }
    }
    fputc('"', fp);
}

static int container_begin(dc_json_writer *w, char open) {
    if (begin_value(w) != DC_OK) return DC_FAIL;
    if (w->depth >= DC_JSON_MAX_DEPTH) return misuse(w, "nesting deeper than DC_JSON_MAX_DEPTH");
    fputc(open, w->fp);
    w->open[w->depth] = open;
    w->count[w->depth] = 0;
    w->depth++;
    return DC_OK;
}

static int container_end(dc_json_writer *w, char open) {
    if (w->failed) return misuse(w, w->error);
    if (w->depth == 0 || w->open[w->depth - 1] != open)
        return misuse(w, open == '{' ? "object_end without a matching object_begin"
                                     : "array_end without a matching array_begin");
    if (w->have_key) return misuse(w, "object_end right after a key (the key has no value)");
    w->depth--;
    if (w->count[w->depth] > 0) newline_indent(w, w->depth);
    fputc(open == '{' ? '}' : ']', w->fp);
    end_value(w);
    return DC_OK;
}

int dc_json_object_begin(dc_json_writer *w) {
    return container_begin(w, '{');
}
int dc_json_object_end(dc_json_writer *w) {
    return container_end(w, '{');
}
int dc_json_array_begin(dc_json_writer *w) {
    return container_begin(w, '[');
}
int dc_json_array_end(dc_json_writer *w) {
    return container_end(w, '[');
}

int dc_json_key(dc_json_writer *w, const char *key) {
    if (w->failed) return misuse(w, w->error);
    if (w->depth == 0 || w->open[w->depth - 1] != '{') return misuse(w, "a key outside an object");
    if (w->have_key) return misuse(w, "two keys in a row (the first key has no value)");
    if (!key) return misuse(w, "NULL key");
    if (w->count[w->depth - 1] > 0) fputc(',', w->fp);
    newline_indent(w, w->depth);
    write_escaped(w->fp, key);
    fputs(w->pretty ? ": " : ":", w->fp);
    w->have_key = 1;
    return DC_OK;
}

int dc_json_string(dc_json_writer *w, const char *s) {
    if (!s) return dc_json_null(w);
    if (begin_value(w) != DC_OK) return DC_FAIL;
    write_escaped(w->fp, s);
    end_value(w);
    return DC_OK;
}

int dc_json_int(dc_json_writer *w, int64_t v) {
    if (begin_value(w) != DC_OK) return DC_FAIL;
    fprintf(w->fp, "%" PRId64, v);
    end_value(w);
    return DC_OK;
}

int dc_json_uint(dc_json_writer *w, uint64_t v) {
    if (begin_value(w) != DC_OK) return DC_FAIL;
    fprintf(w->fp, "%" PRIu64, v);
    end_value(w);
    return DC_OK;
}

int dc_json_double(dc_json_writer *w, double v) {
    if (begin_value(w) != DC_OK) return DC_FAIL;
    if (isfinite(v))
        fprintf(w->fp, "%.17g", v);
    else
        fputs("null", w->fp);
    end_value(w);
    return DC_OK;
}

int dc_json_bool(dc_json_writer *w, int v) {
    if (begin_value(w) != DC_OK) return DC_FAIL;
    fputs(v ? "true" : "false", w->fp);
    end_value(w);
    return DC_OK;
}

int dc_json_null(dc_json_writer *w) {
    if (begin_value(w) != DC_OK) return DC_FAIL;
    fputs("null", w->fp);
    end_value(w);
    return DC_OK;
}

int dc_json_kv_string(dc_json_writer *w, const char *key, const char *s) {
    DC_TRY(dc_json_key(w, key));
    return dc_json_string(w, s);
}
int dc_json_kv_int(dc_json_writer *w, const char *key, int64_t v) {
    DC_TRY(dc_json_key(w, key));
    return dc_json_int(w, v);
}
int dc_json_kv_double(dc_json_writer *w, const char *key, double v) {
    DC_TRY(dc_json_key(w, key));
    return dc_json_double(w, v);
}
int dc_json_kv_bool(dc_json_writer *w, const char *key, int v) {
    DC_TRY(dc_json_key(w, key));
    return dc_json_bool(w, v);
}

int dc_json_finish(dc_json_writer *w) {
    if (w->failed) return DC_ERR("json writer: %s", w->error);
    if (w->depth > 0) {
        w->failed = 1;
        snprintf(w->error, sizeof w->error, "%d container(s) still open at finish", w->depth);
        return DC_ERR("json writer: %s", w->error);
    }
    if (!w->root_done) return DC_ERR("json writer: nothing was written");
    if (w->pretty) fputc('\n', w->fp);
    errno = 0;
    if (fflush(w->fp) != 0 || ferror(w->fp))
        return DC_ERR("json writer: writing the output failed: %s", strerror(errno ? errno : EIO));
    return DC_OK;
}
