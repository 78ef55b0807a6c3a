/*
 * npy.c: writing and reading NumPy .npy files (see npy.h for the layout).
 *
 * The writer emits exactly what numpy.save emits for a C-ordered little-endian array in format 1.0 (dict keys
 * in sorted order, a trailing ", }", space padding, '\n'), with the data 64-byte aligned as the format
 * recommends for memory mapping. The reader is a strict little parser for that dict literal and never reads
 * outside the buffer, so it can be fed arbitrary bytes.
 */
#include "npy.h"

#include "atomic_file.h"
#include "check.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "npy.c assumes a little-endian host"
#endif

static const char npy_magic[6] = {(char)0x93, 'N', 'U', 'M', 'P', 'Y'};

static const char *npy_descr(dc_dtype d) {
    switch (d) {
    case DC_F32:
        return "<f4";
    case DC_I64:
        return "<i8";
    case DC_I32:
        return "<i4";
    case DC_U8:
        return "|u1";
    }
    return NULL;
}

/* numel * element size, DC_FAIL on a negative extent or overflow. */
static int npy_nbytes(dc_dtype dtype, int ndim, const int64_t *shape, size_t *out) {
    size_t n = dc_dtype_size(dtype);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return DC_FAIL;
        if (__builtin_mul_overflow(n, (uint64_t)shape[i], &n)) return DC_FAIL;
    }
    *out = n;
    return DC_OK;
}

int dc_npy_write(const char *path, dc_dtype dtype, int ndim, const int64_t *shape, const void *data) {
    if (!path) return DC_ERR("npy: NULL output path");
    const char *descr = npy_descr(dtype);
    if (!descr) return DC_ERR("%s: writing npy: invalid dtype %d", path, (int)dtype);
    if (ndim < 0 || ndim > DC_NPY_MAX_DIMS)
        return DC_ERR("%s: writing npy: ndim %d (0..%d allowed)", path, ndim, DC_NPY_MAX_DIMS);
    if (ndim > 0 && !shape) return DC_ERR("%s: writing npy: NULL shape", path);
    size_t nbytes;
    if (npy_nbytes(dtype, ndim, shape, &nbytes) != DC_OK)
        return DC_ERR("%s: writing npy: negative or overflowing shape", path);
    if (nbytes > 0 && !data) return DC_ERR("%s: writing npy: NULL data for %zu bytes", path, nbytes);

    /* The shape as a Python tuple: "()", "(5,)", "(2, 3)". */
    char tuple[DC_NPY_MAX_DIMS * 24 + 8];
    size_t t = (size_t)snprintf(tuple, sizeof tuple, "(");
    for (int i = 0; i < ndim; i++)
        t += (size_t)snprintf(tuple + t, sizeof tuple - t, "%s%" PRId64, i ? ", " : "", shape[i]);
    snprintf(tuple + t, sizeof tuple - t, ndim == 1 ? ",)" : ")");

    char header[512];
    int dict_len = snprintf(header, sizeof header, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                            descr, tuple);
    /* magic(6) + version(2) + length(2) + dict + padding + '\n' must be a multiple of 64. */
    size_t total = 10 + (size_t)dict_len + 1;
    size_t pad = (64 - total % 64) % 64;
    memset(header + dict_len, ' ', pad);
    header[(size_t)dict_len + pad] = '\n';
    size_t header_len = (size_t)dict_len + pad + 1; /* < 512 < 65536: fits the 1.0 u16 field */
    uint8_t prefix[10];
    memcpy(prefix, npy_magic, 6);
    prefix[6] = 1;
    prefix[7] = 0;
    prefix[8] = (uint8_t)(header_len & 0xff);
    prefix[9] = (uint8_t)(header_len >> 8);

    dc_atomic_file h;
    FILE *fp = dc_atomic_open(path, &h);
    if (!fp) return DC_FAIL;
    /* Write errors are recorded by the atomic stream and reported by the commit. */
    fwrite(prefix, 1, sizeof prefix, fp);
    fwrite(header, 1, header_len, fp);
    if (nbytes) fwrite(data, 1, nbytes, fp);
    return dc_atomic_commit(&h);
}

/* ---- reader ---------------------------------------------------------------------------------------------
 */

typedef struct {
    const uint8_t *base, *p, *end;
    const char *what;
} npy_cur;

static int herr(const npy_cur *c, const char *fmt, ...) DC_PRINTF(2, 3);
static int herr(const npy_cur *c, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return DC_ERR("%s: npy header byte %zu: %s", c->what, (size_t)(c->p - c->base), msg);
}

static void npy_ws(npy_cur *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static int npy_expect(npy_cur *c, char ch) {
    npy_ws(c);
    if (c->p >= c->end || *c->p != (uint8_t)ch) return herr(c, "expected '%c'", ch);
    c->p++;
    return DC_OK;
}

/* A quoted Python string without escapes ('abc' or "abc"), copied into buf (cap bytes incl. NUL). */
static int npy_string(npy_cur *c, char *buf, size_t cap) {
    npy_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return herr(c, "expected a quoted string");
    uint8_t quote = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != quote) {
        uint8_t ch = *c->p;
        if (ch == '\\' || ch < 0x20 || ch >= 0x7f) return herr(c, "unexpected byte 0x%02x in a string", ch);
        if (n + 1 >= cap) return herr(c, "string too long");
        buf[n++] = (char)ch;
        c->p++;
    }
    if (c->p >= c->end) return herr(c, "unterminated string");
    c->p++;
    buf[n] = '\0';
    return DC_OK;
}

/* Python tuple of non-negative ints: "()", "(3,)", "(2, 3)", a trailing comma allowed. */
static int npy_shape(npy_cur *c, int *ndim, int64_t *shape) {
    DC_TRY(npy_expect(c, '('));
    *ndim = 0;
    for (;;) {
        npy_ws(c);
        if (c->p < c->end && *c->p == ')') {
            c->p++;
            return DC_OK;
        }
        if (c->p >= c->end || *c->p < '0' || *c->p > '9')
            return herr(c, "expected a non-negative integer in shape");
        if (*ndim == DC_NPY_MAX_DIMS) return herr(c, "more than %d dimensions", DC_NPY_MAX_DIMS);
        int64_t v = 0;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            int d = *c->p - '0';
            if (v > (INT64_MAX - d) / 10) return herr(c, "shape entry too large");
            v = v * 10 + d;
            c->p++;
        }
        shape[(*ndim)++] = v;
        npy_ws(c);
        if (c->p < c->end && *c->p == ',') {
            c->p++;
            continue;
        }
        return npy_expect(c, ')');
    }
}

static int parse_descr(const char *what, const char *descr, dc_dtype *dtype) {
    static const struct {
        const char *name;
        dc_dtype dtype;
    } known[] = {{"<f4", DC_F32}, {"=f4", DC_F32}, {"<i4", DC_I32}, {"=i4", DC_I32},
                 {"<i8", DC_I64}, {"=i8", DC_I64}, {"|u1", DC_U8},  {"u1", DC_U8},
                 {"<u1", DC_U8},  {">u1", DC_U8},  {"=u1", DC_U8}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(descr, known[i].name) == 0) {
            *dtype = known[i].dtype;
            return DC_OK;
        }
    if (descr[0] == '>')
        return DC_ERR("%s: npy dtype '%s' is big-endian; only little-endian is supported", what, descr);
    return DC_ERR("%s: unsupported npy dtype '%s' (decouple reads <f4, <i4, <i8 and |u1)", what, descr);
}

int dc_npy_parse(const uint8_t *buf, size_t len, const char *what, dc_npy_array *out) {
    memset(out, 0, sizeof *out);
    if (!what) what = "<memory>";
    if (!buf && len) return DC_ERR("%s: NULL buffer", what);
    if (len < 10 || memcmp(buf, npy_magic, 6) != 0)
        return DC_ERR("%s: not a .npy file (it must start with \"\\x93NUMPY\" and a version)", what);
    int major = buf[6], minor = buf[7];
    size_t off, hlen;
    if (major == 1 && minor == 0) {
        hlen = (size_t)buf[8] | ((size_t)buf[9] << 8);
        off = 10;
    } else if ((major == 2 || major == 3) && minor == 0) {
        if (len < 12) return DC_ERR("%s: truncated .npy file (%zu bytes)", what, len);
        hlen = (size_t)buf[8] | ((size_t)buf[9] << 8) | ((size_t)buf[10] << 16) | ((size_t)buf[11] << 24);
        off = 12;
    } else
        return DC_ERR("%s: unsupported .npy format version %d.%d", what, major, minor);
    if (hlen > len - off)
        return DC_ERR(
            "%s: .npy header length %zu is larger than the rest of the file (%zu bytes): truncated?", what,
            hlen, len - off);

    npy_cur c = {buf + off, buf + off, buf + off + hlen, what};
    char descr[32] = "";
    int have_descr = 0, have_order = 0, have_shape = 0;
    DC_TRY(npy_expect(&c, '{'));
    for (;;) {
        npy_ws(&c);
        if (c.p < c.end && *c.p == '}') {
            c.p++;
            break;
        }
        char key[32];
        DC_TRY(npy_string(&c, key, sizeof key));
        DC_TRY(npy_expect(&c, ':'));
        if (strcmp(key, "descr") == 0) {
            if (have_descr++) return herr(&c, "duplicate key 'descr'");
            npy_ws(&c);
            if (c.p < c.end && *c.p == '[') return herr(&c, "structured dtypes are not supported");
            DC_TRY(npy_string(&c, descr, sizeof descr));
        } else if (strcmp(key, "fortran_order") == 0) {
            if (have_order++) return herr(&c, "duplicate key 'fortran_order'");
            npy_ws(&c);
            if ((size_t)(c.end - c.p) >= 5 && memcmp(c.p, "False", 5) == 0)
                c.p += 5;
            else if ((size_t)(c.end - c.p) >= 4 && memcmp(c.p, "True", 4) == 0)
                return herr(&c, "Fortran-ordered arrays are not supported (save with np.ascontiguousarray)");
            else
                return herr(&c, "fortran_order must be True or False");
        } else if (strcmp(key, "shape") == 0) {
            if (have_shape++) return herr(&c, "duplicate key 'shape'");
            DC_TRY(npy_shape(&c, &out->ndim, out->shape));
        } else
            return herr(&c, "unexpected key '%s'", key);
        npy_ws(&c);
        if (c.p < c.end && *c.p == ',') {
            c.p++;
            continue;
        }
        DC_TRY(npy_expect(&c, '}'));
        break;
    }
    npy_ws(&c);
    if (c.p != c.end) return herr(&c, "unexpected bytes after the header dict");
    if (!have_descr || !have_order || !have_shape)
        return DC_ERR("%s: npy header lacks '%s'", what,
                      !have_descr   ? "descr"
                      : !have_order ? "fortran_order"
                                    : "shape");
    DC_TRY(parse_descr(what, descr, &out->dtype));
    size_t nbytes;
    if (npy_nbytes(out->dtype, out->ndim, out->shape, &nbytes) != DC_OK)
        return DC_ERR("%s: npy shape is too large (byte size overflows)", what);
    size_t have = len - off - hlen;
    if (have != nbytes)
        return DC_ERR("%s: npy data is %zu bytes, but %s with the header's shape needs %zu%s", what, have,
                      descr, nbytes, have < nbytes ? " (truncated file?)" : "");
    out->data = dc_malloc(nbytes);
    if (!out->data) return DC_FAIL;
    if (nbytes) memcpy(out->data, buf + off + hlen, nbytes);
    out->nbytes = nbytes;
    return DC_OK;
}

int dc_npy_read(const char *path, dc_npy_array *out) {
    memset(out, 0, sizeof *out);
    if (!path) return DC_ERR("npy: NULL path");
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        return DC_ERR("%s: cannot open: %s", path, strerror(e));
    }
    struct stat st;
    int stat_rc = fstat(fileno(f), &st);
    if (stat_rc != 0 || !S_ISREG(st.st_mode)) {
        int e = stat_rc != 0 ? errno : 0;
        fclose(f);
        return DC_ERR("%s: not a readable regular file%s%s", path, e ? ": " : "", e ? strerror(e) : "");
    }
    size_t len = (size_t)st.st_size;
    uint8_t *buf = dc_malloc(len);
    if (!buf) {
        fclose(f);
        return DC_FAIL;
    }
    errno = 0;
    size_t got = len ? fread(buf, 1, len, f) : 0;
    int e = errno;
    fclose(f);
    if (got != len) {
        free(buf);
        return DC_ERR("%s: read failed: %s", path, e ? strerror(e) : "file shrank while being read");
    }
    int rc = dc_npy_parse(buf, len, path, out);
    free(buf);
    return rc;
}

void dc_npy_free(dc_npy_array *a) {
    if (!a) return;
    free(a->data);
    memset(a, 0, sizeof *a);
}
