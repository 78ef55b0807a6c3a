/*
 * safetensors.c: reader, writer and loader for the safetensors format (see safetensors.h and
 * docs/CHECKPOINTS.md).
 *
 * The parser is written for hostile input (it is a libFuzzer target): every read is bounds-checked against
 * the header, nesting is limited, integers are range-checked before any arithmetic, sizes are multiplied with
 * overflow checks, and the data section must be tiled exactly by the tensors (no gaps, no overlaps, no
 * trailing bytes), as the format specification requires. Every error names the file (`what`), the header
 * byte offset or tensor name, and what is wrong.
 *
 * The header is a small JSON object of known shape, so instead of a general JSON DOM we use a direct
 * recursive-descent parser for that schema; unknown fields inside a tensor entry are skipped (validated
 * as JSON) for forward compatibility.
 */
#include "safetensors.h"

#include "atomic_file.h"
#include "check.h"
#include "json_writer.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host (the format stores little-endian data)"
#endif

#define ST_HEADER_MAX  100000000ull /* same cap as the reference implementation: 100 MB of JSON */
#define ST_MAX_NESTING 64           /* for skipped unknown fields */

/* ---- dtypes -----------------------------------------------------------------------------------------------
 */

static const char *dtype_name(dc_dtype d) {
    switch (d) {
    case DC_F32:
        return "F32";
    case DC_I64:
        return "I64";
    case DC_I32:
        return "I32";
    case DC_U8:
        return "U8";
    }
    return "?";
}

static int dtype_valid(dc_dtype d) {
    return d == DC_F32 || d == DC_I64 || d == DC_I32 || d == DC_U8;
}

static int dtype_from_name(const char *s, dc_dtype *d) {
    static const dc_dtype all[] = {DC_F32, DC_I64, DC_I32, DC_U8};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(s, dtype_name(all[i])) == 0) {
            *d = all[i];
            return 1;
        }
    return 0;
}

/* dtypes of the format that decouple does not handle, so the error can say "unsupported" not "unknown". */
static int dtype_is_other_safetensors(const char *s) {
    static const char *const others[] = {"BOOL", "U16",     "U32",     "U64",     "I8",      "I16",
                                         "F16",  "BF16",    "F64",     "F8_E4M3", "F8_E5M2", "F8_E8M0",
                                         "F4",   "F6_E2M3", "F6_E3M2", "C64"};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
        if (strcmp(s, others[i]) == 0) return 1;
    return 0;
}

/* A name made safe for an error message: control bytes become '?', long names are cut with "...". */
typedef struct {
    char s[72];
} printable_name;

static printable_name printable(const char *name) {
    printable_name out;
    size_t i = 0, cap = sizeof out.s - 4;
    for (; name[i] && i < cap; i++) {
        unsigned char c = (unsigned char)name[i];
        out.s[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (name[i]) memcpy(out.s + i, "...", 3), i += 3;
    out.s[i] = '\0';
    return out;
}

static void format_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

/* numel * element size with overflow checks; DC_FAIL (no message) on overflow. */
static int byte_size(dc_dtype dtype, int ndim, const int64_t *shape, uint64_t *out) {
    uint64_t n = dc_dtype_size(dtype);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return DC_FAIL;
        if (__builtin_mul_overflow(n, (uint64_t)shape[i], &n)) return DC_FAIL;
    }
    *out = n;
    return DC_OK;
}

static uint64_t read_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* ---- header parser ---------------------------------------------------------------------------------------
 */

typedef struct {
    const uint8_t *base, *p, *end; /* the header bytes; p is the cursor */
    const char *what;              /* file name for messages */
} jcur;

/* "what: header byte N: <message>" where N is the cursor's offset into the JSON header. */
static int jerr(const jcur *c, const char *fmt, ...) DC_PRINTF(2, 3);
static int jerr(const jcur *c, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return DC_ERR("%s: header byte %zu: %s", c->what, (size_t)(c->p - c->base), msg);
}

static void skip_ws(jcur *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

/* Consumes the expected character after optional whitespace. */
static int expect_char(jcur *c, char ch, const char *context) {
    skip_ws(c);
    if (c->p >= c->end) return jerr(c, "unexpected end of header, expected '%c' %s", ch, context);
    if (*c->p != (uint8_t)ch) {
        uint8_t got = *c->p;
        if (got >= 0x20 && got < 0x7f) return jerr(c, "expected '%c' %s, got '%c'", ch, context, got);
        return jerr(c, "expected '%c' %s, got byte 0x%02x", ch, context, got);
    }
    c->p++;
    return DC_OK;
}

static int hex_value(uint8_t h) {
    if (h >= '0' && h <= '9') return h - '0';
    if (h >= 'a' && h <= 'f') return h - 'a' + 10;
    if (h >= 'A' && h <= 'F') return h - 'A' + 10;
    return -1;
}

/* Reads 4 hex digits at p (caller checked they lie before the closing quote). */
static int read_hex4(const uint8_t *p) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_value(p[i]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

static size_t utf8_encode(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the valid UTF-8 sequence starting at p (lead byte >= 0x80), or 0 if invalid. Rejects overlong
 * forms, UTF-16 surrogates and code points above U+10FFFF (RFC 3629). `end` bounds the read. */
static int utf8_sequence_length(const uint8_t *p, const uint8_t *end) {
    uint8_t c = p[0];
    int n;
    uint8_t lo = 0x80, hi = 0xBF;
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
    } else
        return 0;
    if (end - p < n) return 0;
    if (p[1] < lo || p[1] > hi) return 0;
    for (int i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF) return 0;
    return n;
}

/* Parses the JSON string at the cursor into a malloc'd, NUL-terminated UTF-8 buffer. Rejects raw control
 * characters, invalid UTF-8, bad escapes, lone surrogates and \u0000 (names are C strings). */
static int parse_string(jcur *c, char **out) {
    *out = NULL;
    skip_ws(c);
    if (c->p >= c->end) return jerr(c, "unexpected end of header, expected a string");
    if (*c->p != '"') return jerr(c, "expected a string (starting with '\"')");
    const uint8_t *start = c->p + 1;
    /* Pass 1: find the closing quote. An escaped character is skipped, so q never stops right after a
     * backslash; hence inside (start, q) a backslash is always followed by at least one byte before q. */
    const uint8_t *q = start;
    while (q < c->end && *q != '"') {
        if (*q == '\\' && c->end - q < 2) {
            q = c->end; /* a backslash as the last header byte */
            break;
        }
        q += (*q == '\\') ? 2 : 1;
    }
    if (q >= c->end) return jerr(c, "unterminated string");
    /* Decoding never lengthens: \uXXXX (6 bytes) -> at most 3, a surrogate pair (12) -> 4. */
    char *buf = dc_malloc((size_t)(q - start) + 1);
    if (!buf) return DC_FAIL;
    size_t n = 0;
    const uint8_t *s = start;
    while (s < q) {
        uint8_t ch = *s;
        if (ch == '\\') {
            c->p = s;
            uint8_t e = s[1];
            s += 2;
            switch (e) {
            case '"':
                buf[n++] = '"';
                break;
            case '\\':
                buf[n++] = '\\';
                break;
            case '/':
                buf[n++] = '/';
                break;
            case 'b':
                buf[n++] = '\b';
                break;
            case 'f':
                buf[n++] = '\f';
                break;
            case 'n':
                buf[n++] = '\n';
                break;
            case 'r':
                buf[n++] = '\r';
                break;
            case 't':
                buf[n++] = '\t';
                break;
            case 'u': {
                int v = (q - s >= 4) ? read_hex4(s) : -1;
                if (v < 0) {
                    free(buf);
                    return jerr(c, "bad \\u escape (expected 4 hex digits)");
                }
                s += 4;
                uint32_t cp = (uint32_t)v;
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    int lo = (q - s >= 6 && s[0] == '\\' && s[1] == 'u') ? read_hex4(s + 2) : -1;
                    if (lo < 0xDC00 || lo > 0xDFFF) {
                        free(buf);
                        return jerr(c, "\\u%04X is a high surrogate without a following low surrogate", v);
                    }
                    s += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    free(buf);
                    return jerr(c, "\\u%04X is a lone low surrogate", v);
                } else if (cp == 0) {
                    free(buf);
                    return jerr(c, "string contains \\u0000 (NUL), not allowed in names or metadata");
                }
                n += utf8_encode(cp, buf + n);
                break;
            }
            default:
                free(buf);
                if (e >= 0x20 && e < 0x7f) return jerr(c, "invalid escape '\\%c' in string", e);
                return jerr(c, "invalid escape (backslash followed by byte 0x%02x) in string", e);
            }
        } else if (ch < 0x20) {
            c->p = s;
            free(buf);
            return jerr(c, "raw control character 0x%02x in string (must be escaped)", ch);
        } else if (ch < 0x80) {
            buf[n++] = (char)ch;
            s++;
        } else {
            int len = utf8_sequence_length(s, q);
            if (len == 0) {
                c->p = s;
                free(buf);
                return jerr(c, "invalid UTF-8 byte 0x%02x in string", ch);
            }
            memcpy(buf + n, s, (size_t)len);
            n += (size_t)len;
            s += len;
        }
    }
    buf[n] = '\0';
    c->p = q + 1;
    *out = buf;
    return DC_OK;
}

/* Parses a non-negative JSON integer (no sign, fraction or exponent) that fits in uint64_t. */
static int parse_uint(jcur *c, uint64_t *out, const char *field) {
    skip_ws(c);
    if (c->p >= c->end) return jerr(c, "unexpected end of header in %s", field);
    if (*c->p == '-') return jerr(c, "%s: negative value", field);
    if (*c->p < '0' || *c->p > '9') return jerr(c, "%s: expected a non-negative integer", field);
    const uint8_t *start = c->p;
    uint64_t v = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        unsigned d = *c->p - '0';
        if (v > (UINT64_MAX - d) / 10) {
            c->p = start;
            return jerr(c, "%s: integer too large (does not fit in 64 bits)", field);
        }
        v = v * 10 + d;
        c->p++;
    }
    if (*start == '0' && c->p - start > 1) {
        c->p = start;
        return jerr(c, "%s: leading zeros are not valid JSON", field);
    }
    if (c->p < c->end && (*c->p == '.' || *c->p == 'e' || *c->p == 'E')) {
        c->p = start;
        return jerr(c, "%s: expected an integer, got a fractional or exponent number", field);
    }
    *out = v;
    return DC_OK;
}

static int skip_value(jcur *c, int depth);

/* Validates and skips a JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static int skip_number(jcur *c) {
    const uint8_t *p = c->p, *e = c->end;
    if (p < e && *p == '-') p++;
    if (p >= e || *p < '0' || *p > '9') return jerr(c, "invalid number");
    if (*p == '0')
        p++;
    else
        while (p < e && *p >= '0' && *p <= '9') p++;
    if (p < e && *p == '.') {
        p++;
        if (p >= e || *p < '0' || *p > '9') return jerr(c, "invalid number: digits expected after '.'");
        while (p < e && *p >= '0' && *p <= '9') p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-')) p++;
        if (p >= e || *p < '0' || *p > '9') return jerr(c, "invalid number: digits expected in exponent");
        while (p < e && *p >= '0' && *p <= '9') p++;
    }
    c->p = p;
    return DC_OK;
}

static int skip_literal(jcur *c, const char *lit) {
    size_t n = strlen(lit);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, lit, n) != 0) return jerr(c, "invalid literal");
    c->p += n;
    return DC_OK;
}

/* Skips one JSON value of any type, checking its syntax; depth counts enclosing containers. */
static int skip_value(jcur *c, int depth) {
    skip_ws(c);
    if (c->p >= c->end) return jerr(c, "unexpected end of header, expected a value");
    uint8_t ch = *c->p;
    if (ch == '{' || ch == '[') {
        if (depth >= ST_MAX_NESTING) return jerr(c, "JSON nesting deeper than %d levels", ST_MAX_NESTING);
        uint8_t close = ch == '{' ? '}' : ']';
        c->p++;
        skip_ws(c);
        if (c->p < c->end && *c->p == close) {
            c->p++;
            return DC_OK;
        }
        for (;;) {
            if (ch == '{') {
                char *key;
                DC_TRY(parse_string(c, &key));
                free(key);
                DC_TRY(expect_char(c, ':', "after an object key"));
            }
            DC_TRY(skip_value(c, depth + 1));
            skip_ws(c);
            if (c->p < c->end && *c->p == ',') {
                c->p++;
                continue;
            }
            return expect_char(c, (char)close, ch == '{' ? "or ',' in object" : "or ',' in array");
        }
    }
    if (ch == '"') {
        char *s;
        DC_TRY(parse_string(c, &s));
        free(s);
        return DC_OK;
    }
    if (ch == 't') return skip_literal(c, "true");
    if (ch == 'f') return skip_literal(c, "false");
    if (ch == 'n') return skip_literal(c, "null");
    if (ch == '-' || (ch >= '0' && ch <= '9')) return skip_number(c);
    if (ch >= 0x20 && ch < 0x7f) return jerr(c, "unexpected character '%c'", ch);
    return jerr(c, "unexpected byte 0x%02x", ch);
}

/* Parses {"dtype": .., "shape": [..], "data_offsets": [b, e]} for tensor `e->name`, then checks that the
 * offsets match dtype x shape and lie within the data section. */
static int parse_tensor_info(jcur *c, dc_st_entry *e, uint64_t data_len) {
    printable_name pn = printable(e->name);
    const char *nm = pn.s;
    int have_dtype = 0, have_shape = 0, have_offsets = 0;
    char f_shape[128], f_begin[128], f_end[128]; /* field names for parse_uint's messages */
    snprintf(f_shape, sizeof f_shape, "tensor '%s': shape entry", nm);
    snprintf(f_begin, sizeof f_begin, "tensor '%s': data_offsets begin", nm);
    snprintf(f_end, sizeof f_end, "tensor '%s': data_offsets end", nm);
    DC_TRY(expect_char(c, '{', "to start a tensor entry"));
    skip_ws(c);
    if (c->p < c->end && *c->p == '}')
        c->p++;
    else
        for (;;) {
            char *key;
            DC_TRY(parse_string(c, &key));
            int rc = expect_char(c, ':', "after a field name");
            if (rc == DC_OK && strcmp(key, "dtype") == 0) {
                if (have_dtype++) rc = jerr(c, "tensor '%s': duplicate field \"dtype\"", nm);
                char *val = NULL;
                if (rc == DC_OK) rc = parse_string(c, &val);
                if (rc == DC_OK && !dtype_from_name(val, &e->dtype)) {
                    printable_name pv = printable(val);
                    if (dtype_is_other_safetensors(val))
                        rc = DC_ERR(
                            "%s: tensor '%s': unsupported dtype '%s' (decouple reads F32, I64, I32 and "
                            "U8; convert the tensor, e.g. with .float(), before saving)",
                            c->what, nm, pv.s);
                    else
                        rc = DC_ERR(
                            "%s: tensor '%s': unknown dtype '%s' (decouple reads F32, I64, I32 and U8)",
                            c->what, nm, pv.s);
                }
                free(val);
            } else if (rc == DC_OK && strcmp(key, "shape") == 0) {
                if (have_shape++) rc = jerr(c, "tensor '%s': duplicate field \"shape\"", nm);
                if (rc == DC_OK) rc = expect_char(c, '[', "to start the shape");
                e->ndim = 0;
                skip_ws(c);
                if (rc == DC_OK && c->p < c->end && *c->p == ']')
                    c->p++;
                else
                    while (rc == DC_OK) {
                        uint64_t d;
                        if (e->ndim == DC_MAX_DIMS) {
                            rc = jerr(c, "tensor '%s': shape has more than %d dimensions", nm, DC_MAX_DIMS);
                            break;
                        }
                        rc = parse_uint(c, &d, f_shape);
                        if (rc != DC_OK) break;
                        if (d > (uint64_t)INT64_MAX) {
                            rc = jerr(c, "tensor '%s': shape entry %" PRIu64 " too large", nm, d);
                            break;
                        }
                        e->shape[e->ndim++] = (int64_t)d;
                        skip_ws(c);
                        if (c->p < c->end && *c->p == ',') {
                            c->p++;
                            continue;
                        }
                        rc = expect_char(c, ']', "or ',' in the shape");
                        break;
                    }
            } else if (rc == DC_OK && strcmp(key, "data_offsets") == 0) {
                if (have_offsets++) rc = jerr(c, "tensor '%s': duplicate field \"data_offsets\"", nm);
                if (rc == DC_OK) rc = expect_char(c, '[', "to start data_offsets [begin, end]");
                if (rc == DC_OK) rc = parse_uint(c, &e->begin, f_begin);
                if (rc == DC_OK) rc = expect_char(c, ',', "in data_offsets [begin, end]");
                if (rc == DC_OK) rc = parse_uint(c, &e->end, f_end);
                if (rc == DC_OK)
                    rc = expect_char(c, ']', "after data_offsets [begin, end] (exactly two entries)");
            } else if (rc == DC_OK) {
                rc = skip_value(c, 2); /* unknown field: tolerated, like other readers */
            }
            free(key);
            DC_TRY(rc);
            skip_ws(c);
            if (c->p < c->end && *c->p == ',') {
                c->p++;
                continue;
            }
            DC_TRY(expect_char(c, '}', "or ',' in a tensor entry"));
            break;
        }
    if (!have_dtype || !have_shape || !have_offsets)
        return DC_ERR("%s: tensor '%s': missing field \"%s\"", c->what, nm,
                      !have_dtype   ? "dtype"
                      : !have_shape ? "shape"
                                    : "data_offsets");
    uint64_t nbytes;
    char sh[160];
    format_shape(sh, sizeof sh, e->ndim, e->shape);
    if (byte_size(e->dtype, e->ndim, e->shape, &nbytes) != DC_OK)
        return DC_ERR("%s: tensor '%s': %s %s is too large (byte size overflows)", c->what, nm,
                      dtype_name(e->dtype), sh);
    if (e->begin > e->end)
        return DC_ERR("%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] has begin > end", c->what, nm,
                      e->begin, e->end);
    if (e->end - e->begin != nbytes)
        return DC_ERR("%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] span %" PRIu64
                      " bytes but %s %s needs %" PRIu64,
                      c->what, nm, e->begin, e->end, e->end - e->begin, dtype_name(e->dtype), sh, nbytes);
    if (e->end > data_len)
        return DC_ERR("%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] run past the end of the data "
                      "section (%" PRIu64 " bytes): truncated file?",
                      c->what, nm, e->begin, e->end, data_len);
    return DC_OK;
}

/* Parses {"key": "value", ...} into out->meta_*. */
static int parse_metadata(jcur *c, dc_st_file *out) {
    DC_TRY(expect_char(c, '{', "to start __metadata__"));
    skip_ws(c);
    if (c->p < c->end && *c->p == '}') {
        c->p++;
        return DC_OK;
    }
    int cap = 0;
    for (;;) {
        char *key, *val;
        DC_TRY(parse_string(c, &key));
        if (expect_char(c, ':', "after a metadata key") != DC_OK) {
            free(key);
            return DC_FAIL;
        }
        skip_ws(c);
        if (c->p < c->end && *c->p != '"') {
            printable_name pk = printable(key);
            free(key);
            return jerr(c, "__metadata__ value for '%s' must be a string", pk.s);
        }
        if (parse_string(c, &val) != DC_OK) {
            free(key);
            return DC_FAIL;
        }
        if (out->n_meta == cap) {
            int ncap = cap ? 2 * cap : 8;
            char **k = realloc(out->meta_keys, (size_t)ncap * sizeof *k);
            if (k) out->meta_keys = k;
            char **v = k ? realloc(out->meta_values, (size_t)ncap * sizeof *v) : NULL;
            if (v) out->meta_values = v;
            if (!k || !v || ncap > (1 << 28)) {
                free(key);
                free(val);
                return DC_ERR("%s: out of memory for __metadata__", c->what);
            }
            cap = ncap;
        }
        out->meta_keys[out->n_meta] = key;
        out->meta_values[out->n_meta] = val;
        out->n_meta++;
        skip_ws(c);
        if (c->p < c->end && *c->p == ',') {
            c->p++;
            continue;
        }
        return expect_char(c, '}', "or ',' in __metadata__");
    }
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_entry_name(const void *a, const void *b) {
    return strcmp((*(const dc_st_entry *const *)a)->name, (*(const dc_st_entry *const *)b)->name);
}

static int cmp_entry_offset(const void *a, const void *b) {
    const dc_st_entry *x = *(const dc_st_entry *const *)a, *y = *(const dc_st_entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* Names unique, metadata keys unique, and the tensors tile [0, data_len) exactly. */
static int check_whole_file(const char *what, dc_st_file *f, uint64_t data_len) {
    int rc = DC_OK;
    size_t n = (size_t)f->n_entries;
    const dc_st_entry **idx = dc_malloc((n ? n : 1) * sizeof *idx);
    if (!idx) return DC_FAIL;
    for (size_t i = 0; i < n; i++) idx[i] = &f->entries[i];
    qsort(idx, n, sizeof *idx, cmp_entry_name);
    for (size_t i = 1; i < n && rc == DC_OK; i++)
        if (strcmp(idx[i - 1]->name, idx[i]->name) == 0)
            rc = DC_ERR("%s: tensor '%s' appears twice in the header", what, printable(idx[i]->name).s);
    if (rc == DC_OK) {
        qsort(idx, n, sizeof *idx, cmp_entry_offset);
        uint64_t cursor = 0;
        for (size_t i = 0; i < n && rc == DC_OK; i++) {
            if (idx[i]->begin < cursor)
                rc = DC_ERR("%s: tensors '%s' and '%s' overlap in the data section (bytes [%" PRIu64
                            ", %" PRIu64 ") and [%" PRIu64 ", %" PRIu64 "))",
                            what, printable(idx[i - 1]->name).s, printable(idx[i]->name).s, idx[i - 1]->begin,
                            idx[i - 1]->end, idx[i]->begin, idx[i]->end);
            else if (idx[i]->begin > cursor)
                rc = DC_ERR("%s: gap in the data section: bytes [%" PRIu64 ", %" PRIu64
                            ") belong to no tensor (before '%s')",
                            what, cursor, idx[i]->begin, printable(idx[i]->name).s);
            else
                cursor = idx[i]->end;
        }
        if (rc == DC_OK && cursor != data_len)
            rc = DC_ERR("%s: %" PRIu64 " bytes after the last tensor's data belong to no tensor", what,
                        data_len - cursor);
    }
    free(idx);
    if (rc != DC_OK || f->n_meta < 2) return rc;
    char **keys = dc_malloc((size_t)f->n_meta * sizeof *keys);
    if (!keys) return DC_FAIL;
    memcpy(keys, f->meta_keys, (size_t)f->n_meta * sizeof *keys);
    qsort(keys, (size_t)f->n_meta, sizeof *keys, cmp_str_ptr);
    for (int i = 1; i < f->n_meta && rc == DC_OK; i++)
        if (strcmp(keys[i - 1], keys[i]) == 0)
            rc = DC_ERR("%s: __metadata__ key '%s' appears twice", what, printable(keys[i]).s);
    free(keys);
    return rc;
}

/* Parses the JSON header (hlen bytes) of a file whose data section is data_len bytes. Fills entries and
 * metadata; data is left to the caller. On failure out is freed. */
static int parse_header(const uint8_t *hdr, size_t hlen, uint64_t data_len, const char *what,
                        dc_st_file *out) {
    jcur c = {hdr, hdr, hdr + hlen, what};
    int cap = 0, have_meta = 0, rc = DC_OK;
    if (hlen == 0 || hdr[0] != '{')
        return DC_ERR("%s: the JSON header must start with '{' (not a safetensors file?)", what);
    c.p++;
    skip_ws(&c);
    if (c.p < c.end && *c.p == '}')
        c.p++;
    else
        for (;;) {
            char *key;
            if ((rc = parse_string(&c, &key)) != DC_OK) break;
            if ((rc = expect_char(&c, ':', "after a tensor name")) != DC_OK) {
                free(key);
                break;
            }
            if (strcmp(key, "__metadata__") == 0) {
                free(key);
                if (have_meta++) {
                    rc = jerr(&c, "\"__metadata__\" appears twice");
                    break;
                }
                if ((rc = parse_metadata(&c, out)) != DC_OK) break;
            } else {
                size_t kn = strlen(key);
                if (kn == 0 || kn >= DC_TENSOR_NAME) {
                    printable_name pk = printable(key);
                    free(key);
                    if (kn == 0)
                        rc = jerr(&c, "empty tensor name");
                    else
                        rc = jerr(&c, "tensor name '%s' is longer than %d bytes", pk.s, DC_TENSOR_NAME - 1);
                    break;
                }
                if (out->n_entries == cap) {
                    if (cap >= (1 << 26)) {
                        free(key);
                        rc = DC_ERR("%s: more than %d tensors", what, cap);
                        break;
                    }
                    int ncap = cap ? 2 * cap : 16;
                    dc_st_entry *ne = realloc(out->entries, (size_t)ncap * sizeof *ne);
                    if (!ne) {
                        free(key);
                        rc = DC_ERR("%s: out of memory for %d tensor entries", what, ncap);
                        break;
                    }
                    out->entries = ne;
                    cap = ncap;
                }
                dc_st_entry *e = &out->entries[out->n_entries++];
                memset(e, 0, sizeof *e);
                memcpy(e->name, key, kn + 1);
                free(key);
                if ((rc = parse_tensor_info(&c, e, data_len)) != DC_OK) break;
            }
            skip_ws(&c);
            if (c.p < c.end && *c.p == ',') {
                c.p++;
                continue;
            }
            rc = expect_char(&c, '}', "or ',' after a tensor entry");
            break;
        }
    if (rc == DC_OK) {
        skip_ws(&c);
        if (c.p != c.end)
            rc = jerr(&c, "unexpected bytes after the header object (only space padding is allowed)");
    }
    if (rc == DC_OK) rc = check_whole_file(what, out, data_len);
    if (rc != DC_OK) dc_st_free(out);
    return rc;
}

/* Checks the 8-byte length prefix against the cap and the total size; returns the data section length. */
static int check_header_length(const char *what, uint64_t total, uint64_t hlen, uint64_t *data_len) {
    if (total < 8)
        return DC_ERR("%s: %" PRIu64 " bytes is too short for a safetensors file (it starts with an 8-byte "
                      "header length)",
                      what, total);
    if (hlen > ST_HEADER_MAX)
        return DC_ERR("%s: header length %" PRIu64
                      " exceeds the %llu-byte limit (corrupt or not a safetensors "
                      "file)",
                      what, hlen, ST_HEADER_MAX);
    if (hlen > total - 8)
        return DC_ERR("%s: header length %" PRIu64 " is larger than the rest of the file (%" PRIu64
                      " bytes): truncated or not a safetensors file",
                      what, hlen, total - 8);
    *data_len = total - 8 - hlen;
    return DC_OK;
}

int dc_st_parse(const uint8_t *buf, size_t len, const char *what, dc_st_file *out) {
    memset(out, 0, sizeof *out);
    if (!what) what = "<memory>";
    if (!buf && len) return DC_ERR("%s: NULL buffer", what);
    uint64_t data_len = 0;
    DC_TRY(check_header_length(what, len, len >= 8 ? read_le64(buf) : 0, &data_len));
    size_t hlen = len - 8 - (size_t)data_len;
    DC_TRY(parse_header(buf + 8, hlen, data_len, what, out));
    out->data = dc_malloc((size_t)data_len);
    if (!out->data) {
        dc_st_free(out);
        return DC_FAIL;
    }
    if (data_len) memcpy(out->data, buf + 8 + hlen, (size_t)data_len);
    out->data_len = data_len;
    return DC_OK;
}

/* Reads exactly n bytes or fails with a message naming the file. */
static int read_exact(FILE *f, void *dst, size_t n, const char *path, const char *part) {
    if (n == 0) return DC_OK;
    errno = 0;
    if (fread(dst, 1, n, f) == n) return DC_OK;
    if (ferror(f)) return DC_ERR("%s: error reading the %s: %s", path, part, strerror(errno ? errno : EIO));
    return DC_ERR("%s: file ended while reading the %s (it shrank while being read?)", path, part);
}

int dc_st_read(const char *path, dc_st_file *out) {
    memset(out, 0, sizeof *out);
    if (!path) return DC_ERR("safetensors: NULL path");
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        return DC_ERR("%s: cannot open: %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        int e = errno;
        fclose(f);
        return DC_ERR("%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        fclose(f);
        return DC_ERR("%s: not a regular file%s", path, S_ISDIR(st.st_mode) ? " (it is a directory)" : "");
    }
    uint64_t total = (uint64_t)st.st_size, hlen = 0, data_len = 0;
    uint8_t prefix[8];
    uint8_t *hdr = NULL;
    int rc = DC_OK;
    if (total >= 8) rc = read_exact(f, prefix, 8, path, "header length");
    if (rc == DC_OK && total >= 8) hlen = read_le64(prefix);
    if (rc == DC_OK) rc = check_header_length(path, total, hlen, &data_len);
    if (rc == DC_OK) rc = (hdr = dc_malloc((size_t)hlen)) ? DC_OK : DC_FAIL;
    if (rc == DC_OK) rc = read_exact(f, hdr, (size_t)hlen, path, "JSON header");
    if (rc == DC_OK) rc = parse_header(hdr, (size_t)hlen, data_len, path, out);
    free(hdr);
    if (rc == DC_OK) {
        out->data = dc_malloc((size_t)data_len);
        out->data_len = data_len;
        rc = out->data ? read_exact(f, out->data, (size_t)data_len, path, "tensor data") : DC_FAIL;
        if (rc != DC_OK) dc_st_free(out);
    }
    fclose(f);
    return rc;
}

void dc_st_free(dc_st_file *f) {
    if (!f) return;
    free(f->entries);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    free(f->data);
    memset(f, 0, sizeof *f);
}

const dc_st_entry *dc_st_find(const dc_st_file *f, const char *name) {
    for (int i = 0; i < f->n_entries; i++)
        if (strcmp(f->entries[i].name, name) == 0) return &f->entries[i];
    return NULL;
}

const char *dc_st_meta(const dc_st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

/* ---- caller-side tensor checks --------------------------------------------------------------------------
 */

/* A dc_tensor passed in by the program: a valid name, dtype, shape, data pointer and contiguous strides.
 * (Strides of size-1 dimensions do not affect the layout and are not checked.) */
static int check_tensor_arg(const char *path, const char *verb, const dc_tensor *t, int index) {
    if (!memchr(t->name, '\0', sizeof t->name) || t->name[0] == '\0')
        return DC_ERR("%s: %s: tensor #%d has an empty or unterminated name", path, verb, index);
    printable_name pn = printable(t->name);
    if (strcmp(t->name, "__metadata__") == 0)
        return DC_ERR("%s: %s: \"__metadata__\" is reserved and cannot name a tensor", path, verb);
    if (!dtype_valid(t->dtype))
        return DC_ERR("%s: %s: tensor '%s' has an invalid dtype %d", path, verb, pn.s, (int)t->dtype);
    if (t->ndim < 0 || t->ndim > DC_MAX_DIMS)
        return DC_ERR("%s: %s: tensor '%s' has ndim %d (0..%d allowed)", path, verb, pn.s, t->ndim,
                      DC_MAX_DIMS);
    uint64_t nbytes;
    if (byte_size(t->dtype, t->ndim, t->shape, &nbytes) != DC_OK || nbytes > (uint64_t)SIZE_MAX)
        return DC_ERR("%s: %s: tensor '%s' has a negative or overflowing shape", path, verb, pn.s);
    if (nbytes > 0 && !t->data) return DC_ERR("%s: %s: tensor '%s' has no data pointer", path, verb, pn.s);
    int64_t expect = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] > 1 && t->stride[i] != expect)
            return DC_ERR("%s: %s: tensor '%s' is not contiguous row-major (dim %d has stride %" PRId64
                          ", expected %" PRId64 "); call dc_tensor_set_contiguous",
                          path, verb, pn.s, i, t->stride[i], expect);
        expect *= t->shape[i];
    }
    return DC_OK;
}

/* Tensor names in the list must be unique (a checkpoint cannot hold two tensors of one name). */
static int check_unique_names(const char *path, const char *verb, const dc_tensor *tensors, int n) {
    const char **names = dc_malloc((size_t)(n > 0 ? n : 1) * sizeof *names);
    if (!names) return DC_FAIL;
    for (int i = 0; i < n; i++) names[i] = tensors[i].name;
    qsort(names, (size_t)n, sizeof *names, cmp_str_ptr);
    int rc = DC_OK;
    for (int i = 1; i < n && rc == DC_OK; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            rc = DC_ERR("%s: %s: tensor name '%s' is used twice", path, verb, printable(names[i]).s);
    free(names);
    return rc;
}

/* ---- writer -----------------------------------------------------------------------------------------------
 */

/* Builds the JSON header (compact, tensors in the given order, __metadata__ first as the reference writer
 * does) in a malloc'd buffer padded with spaces to a multiple of 8 bytes, so the data section starts
 * 8-byte aligned. */
static int build_header(const char *path, const dc_tensor *tensors, int n, const char *const *meta_keys,
                        const char *const *meta_values, int n_meta, char **out, size_t *out_len) {
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    if (!mem) return DC_ERR("%s: cannot create the header buffer: %s", path, strerror(errno));
    dc_json_writer w;
    dc_json_init(&w, mem, 0);
    dc_json_object_begin(&w);
    if (n_meta > 0) {
        dc_json_key(&w, "__metadata__");
        dc_json_object_begin(&w);
        for (int i = 0; i < n_meta; i++) dc_json_kv_string(&w, meta_keys[i], meta_values[i]);
        dc_json_object_end(&w);
    }
    uint64_t offset = 0;
    for (int i = 0; i < n; i++) {
        const dc_tensor *t = &tensors[i];
        uint64_t nbytes = 0;
        byte_size(t->dtype, t->ndim, t->shape, &nbytes); /* checked by the caller */
        dc_json_key(&w, t->name);
        dc_json_object_begin(&w);
        dc_json_kv_string(&w, "dtype", dtype_name(t->dtype));
        dc_json_key(&w, "shape");
        dc_json_array_begin(&w);
        for (int d = 0; d < t->ndim; d++) dc_json_int(&w, t->shape[d]);
        dc_json_array_end(&w);
        dc_json_key(&w, "data_offsets");
        dc_json_array_begin(&w);
        dc_json_uint(&w, offset);
        dc_json_uint(&w, offset + nbytes);
        dc_json_array_end(&w);
        dc_json_object_end(&w);
        offset += nbytes;
    }
    dc_json_object_end(&w);
    int rc = dc_json_finish(&w);
    if (fclose(mem) != 0 && rc == DC_OK)
        rc = DC_ERR("%s: building the header failed: %s", path, strerror(errno));
    size_t padded = (len + 7) & ~(size_t)7;
    char *grown = rc == DC_OK ? realloc(buf, padded ? padded : 8) : NULL;
    if (!grown) {
        free(buf);
        if (rc == DC_OK) return DC_ERR("%s: out of memory for the safetensors header", path);
        return dc_error_wrap("%s: writing the safetensors header", path);
    }
    memset(grown + len, ' ', padded - len);
    *out = grown;
    *out_len = padded;
    return DC_OK;
}

int dc_safetensors_write(const char *path, const dc_tensor *tensors, int n, const char *const *meta_keys,
                         const char *const *meta_values, int n_meta) {
    static const char *verb = "writing safetensors";
    if (!path) return DC_ERR("safetensors: NULL output path");
    if (n < 0 || (n > 0 && !tensors)) return DC_ERR("%s: %s: bad tensor list (n = %d)", path, verb, n);
    if (n_meta < 0 || (n_meta > 0 && (!meta_keys || !meta_values)))
        return DC_ERR("%s: %s: bad metadata list (n_meta = %d)", path, verb, n_meta);
    for (int i = 0; i < n_meta; i++)
        if (!meta_keys[i] || !meta_values[i])
            return DC_ERR("%s: %s: metadata entry %d has a NULL key or value", path, verb, i);
    for (int i = 0; i < n; i++) DC_TRY(check_tensor_arg(path, verb, &tensors[i], i));
    DC_TRY(check_unique_names(path, verb, tensors, n));

    char *header = NULL;
    size_t hlen = 0;
    DC_TRY(build_header(path, tensors, n, meta_keys, meta_values, n_meta, &header, &hlen));
    uint8_t prefix[8];
    for (int i = 0; i < 8; i++) prefix[i] = (uint8_t)((uint64_t)hlen >> (8 * i));

    dc_atomic_file h;
    FILE *fp = dc_atomic_open(path, &h);
    if (!fp) {
        free(header);
        return DC_FAIL;
    }
    /* Write errors are recorded by the atomic stream and reported by the commit. */
    fwrite(prefix, 1, 8, fp);
    fwrite(header, 1, hlen, fp);
    free(header);
    for (int i = 0; i < n; i++) {
        uint64_t nbytes = 0;
        byte_size(tensors[i].dtype, tensors[i].ndim, tensors[i].shape, &nbytes);
        if (nbytes) fwrite(tensors[i].data, 1, (size_t)nbytes, fp);
    }
    return dc_atomic_commit(&h);
}

/* ---- loader -----------------------------------------------------------------------------------------------
 */

void dc_st_match(const dc_st_file *f, const dc_tensor *want, int n, int allow_extra,
                 const char *allowed_extra, dc_problem_list *pl) {
    for (int i = 0; i < n; i++) {
        const dc_tensor *t = &want[i];
        const dc_st_entry *e = dc_st_find(f, t->name);
        char ws[160], gs[160];
        format_shape(ws, sizeof ws, t->ndim, t->shape);
        printable_name pn = printable(t->name);
        if (!e) {
            dc_problem_add(pl, "missing tensor '%s' (the model expects %s %s)", pn.s, dtype_name(t->dtype),
                           ws);
            continue;
        }
        if (e->dtype != t->dtype)
            dc_problem_add(pl, "tensor '%s': dtype %s in the file, the model expects %s", pn.s,
                           dtype_name(e->dtype), dtype_name(t->dtype));
        int same_shape = e->ndim == t->ndim;
        for (int d = 0; same_shape && d < t->ndim; d++) same_shape = e->shape[d] == t->shape[d];
        if (!same_shape) {
            format_shape(gs, sizeof gs, e->ndim, e->shape);
            dc_problem_add(pl, "tensor '%s': shape %s in the file, the model expects %s", pn.s, gs, ws);
        }
    }
    if (allow_extra) return;
    for (int j = 0; j < f->n_entries; j++) {
        const dc_st_entry *e = &f->entries[j];
        if (allowed_extra && strcmp(e->name, allowed_extra) == 0) continue;
        int found = 0;
        for (int i = 0; i < n && !found; i++) found = strcmp(want[i].name, e->name) == 0;
        if (!found) {
            char gs[160];
            format_shape(gs, sizeof gs, e->ndim, e->shape);
            dc_problem_add(pl, "unexpected tensor '%s' (%s %s) in the file, not in the model",
                           printable(e->name).s, dtype_name(e->dtype), gs);
        }
    }
}

int dc_safetensors_load(const char *path, dc_tensor *tensors, int n, int allow_extra) {
    static const char *verb = "loading safetensors";
    if (!path) return DC_ERR("safetensors: NULL input path");
    if (n < 0 || (n > 0 && !tensors)) return DC_ERR("%s: %s: bad tensor list (n = %d)", path, verb, n);
    for (int i = 0; i < n; i++) DC_TRY(check_tensor_arg(path, verb, &tensors[i], i));
    DC_TRY(check_unique_names(path, verb, tensors, n));

    dc_st_file f;
    DC_TRY(dc_st_read(path, &f));

    /* Validate everything first; no tensor is touched unless every check passes. */
    dc_problem_list pl = {0};
    dc_st_match(&f, tensors, n, allow_extra, NULL, &pl);
    if (pl.count > 0) {
        dc_st_free(&f);
        return DC_ERR("%s: %d problem%s loading %d tensors:%s", path, pl.count, pl.count == 1 ? "" : "s", n,
                      dc_problem_text(&pl));
    }
    for (int i = 0; i < n; i++) {
        const dc_st_entry *e = dc_st_find(&f, tensors[i].name);
        if (e->end > e->begin) memcpy(tensors[i].data, f.data + e->begin, (size_t)(e->end - e->begin));
    }
    dc_st_free(&f);
    return DC_OK;
}
