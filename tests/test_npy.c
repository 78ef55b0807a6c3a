/*
 * test_npy.c: NumPy .npy writer and reader.
 *
 *  - round trip of every dtype (F32, I32, I64, U8) at every rank 0..4, including empty arrays;
 *  - the exact bytes of a written header (magic, version 1.0, length, dict, padding to 64) against a
 *    hand-written expectation, and the data offset is a multiple of 64 for every shape;
 *  - files written by numpy 1.24 (np.save, bytes reproduced below) read back with the right values;
 *  - bad input: every truncation, every single-byte corruption (must not crash; fails name the file), and
 *    a table of bad headers (big-endian, Fortran order, unknown dtype, malformed dicts, wrong data size);
 *  - write errors name the path.
 *
 * `test_npy DIR` additionally leaves one file per dtype in DIR (values arange(numel), u1 modulo 256) so
 * that `python3 tests/check_npy.py DIR` can confirm numpy reads them (CI has no numpy).
 */
#include "core/check.h"
#include "core/npy.h"
#include "tests/testutil.h"

#include <errno.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp_dir[256];

/* Fills data with arange(numel) in the dtype (u1 wraps modulo 256, f32 gets a fraction). */
static void fill_arange(dc_dtype dtype, void *data, int64_t numel) {
    for (int64_t i = 0; i < numel; i++) switch (dtype) {
        case DC_F32:
            ((float *)data)[i] = (float)i + 0.25f;
            break;
        case DC_I32:
            ((int32_t *)data)[i] = (int32_t)i - 3;
            break;
        case DC_I64:
            ((int64_t *)data)[i] = (int64_t)i * 10000000000LL;
            break;
        case DC_U8:
            ((uint8_t *)data)[i] = (uint8_t)i;
            break;
        }
}

static void test_round_trip(void) {
    const dc_dtype dtypes[] = {DC_F32, DC_I32, DC_I64, DC_U8};
    const int64_t shapes[5][4] = {{0}, {7}, {3, 5}, {2, 3, 4}, {2, 1, 3, 2}};
    char path[512];
    snprintf(path, sizeof path, "%s/a.npy", tmp_dir);
    for (size_t k = 0; k < 4; k++)
        for (int ndim = 0; ndim <= 4; ndim++)
            for (int empty = 0; empty <= (ndim > 0); empty++) {
                int64_t shape[4];
                int64_t numel = 1;
                for (int d = 0; d < ndim; d++) {
                    shape[d] = (empty && d == ndim - 1) ? 0 : shapes[ndim][d];
                    numel *= shape[d];
                }
                size_t nbytes = (size_t)numel * dc_dtype_size(dtypes[k]);
                uint8_t *data = malloc(nbytes + 1);
                fill_arange(dtypes[k], data, numel);
                REQUIRE(dc_npy_write(path, dtypes[k], ndim, shape, data) == DC_OK);
                size_t len;
                uint8_t *raw = tu_slurp(path, &len);
                REQUIRE(raw != NULL);
                EXPECT(len >= nbytes + 64 && (len - nbytes) % 64 == 0); /* data starts 64-byte aligned */
                free(raw);
                dc_npy_array a;
                int rc = dc_npy_read(path, &a);
                EXPECTF(rc == DC_OK, "%s", dc_last_error());
                if (rc == DC_OK) {
                    EXPECT(a.dtype == dtypes[k] && a.ndim == ndim && a.nbytes == nbytes);
                    for (int d = 0; d < ndim; d++) EXPECT(a.shape[d] == shape[d]);
                    EXPECT(nbytes == 0 || memcmp(a.data, data, nbytes) == 0);
                }
                dc_npy_free(&a);
                free(data);
            }
    unlink(path);
}

static void test_exact_header(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/h.npy", tmp_dir);
    float x[6] = {0, 1, 2, 3, 4, 5};
    int64_t shape[2] = {2, 3};
    REQUIRE(dc_npy_write(path, DC_F32, 2, shape, x) == DC_OK);
    size_t len;
    uint8_t *raw = tu_slurp(path, &len);
    REQUIRE(raw != NULL);
    const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    size_t dl = strlen(dict); /* 59: 10 + 59 + 1 = 70 -> padded to 128, so H = 118 */
    EXPECT(len == 128 + 24);
    EXPECT(memcmp(raw, "\x93NUMPY\x01\x00", 8) == 0);
    EXPECT(raw[8] == 118 && raw[9] == 0);
    EXPECT(memcmp(raw + 10, dict, dl) == 0);
    for (size_t i = 10 + dl; i < 127; i++) EXPECT(raw[i] == ' ');
    EXPECT(raw[127] == '\n');
    EXPECT(memcmp(raw + 128, x, 24) == 0);
    free(raw);

    /* 1-d and 0-d tuples use Python's spelling: "(5,)" and "()"; u1 is byte-order free "|u1". */
    uint8_t u[5] = {1, 2, 3, 4, 5};
    int64_t s5[1] = {5};
    REQUIRE(dc_npy_write(path, DC_U8, 1, s5, u) == DC_OK);
    raw = tu_slurp(path, &len);
    REQUIRE(raw != NULL);
    EXPECT(len == 128 + 5 &&
           memcmp(raw + 10, "{'descr': '|u1', 'fortran_order': False, 'shape': (5,), }", 57) == 0);
    free(raw);
    int64_t scalar = -42;
    REQUIRE(dc_npy_write(path, DC_I64, 0, NULL, &scalar) == DC_OK);
    raw = tu_slurp(path, &len);
    REQUIRE(raw != NULL);
    EXPECT(len == 128 + 8 &&
           memcmp(raw + 10, "{'descr': '<i8', 'fortran_order': False, 'shape': (), }", 55) == 0);
    free(raw);
    unlink(path);
}

/* np.save output (numpy 1.24.2, verified byte for byte): magic, v1.0, H = 118, the dict, space padding to
 * 127 bytes and '\n' (numpy 1.24 pads generously so the first axis can grow in place), then the data. */
static uint8_t *numpy_file(const char *dict, const void *data, size_t nbytes, size_t *len) {
    *len = 128 + nbytes;
    uint8_t *b = malloc(*len);
    memcpy(b, "\x93NUMPY\x01\x00\x76\x00", 10);
    memset(b + 10, ' ', 117);
    memcpy(b + 10, dict, strlen(dict));
    b[127] = '\n';
    if (nbytes) memcpy(b + 128, data, nbytes);
    return b;
}

static void test_numpy_written(void) {
    size_t len;
    dc_npy_array a;
    /* np.save(f, np.arange(6, dtype='<i8').reshape(2, 3)) */
    int64_t ar[6] = {0, 1, 2, 3, 4, 5};
    uint8_t *b = numpy_file("{'descr': '<i8', 'fortran_order': False, 'shape': (2, 3), }", ar, 48, &len);
    EXPECT(len == 176);
    EXPECT(dc_npy_parse(b, len, "np1", &a) == DC_OK);
    EXPECT(a.dtype == DC_I64 && a.ndim == 2 && a.shape[0] == 2 && a.shape[1] == 3);
    EXPECT(a.data && ((int64_t *)a.data)[5] == 5 && ((int64_t *)a.data)[1] == 1);
    dc_npy_free(&a);
    free(b);
    /* np.save(f, np.array([1.5, -2, 0.25], dtype='<f4')): data bytes 0000c03f 000000c0 0000803e */
    const uint8_t f4[12] = {0, 0, 0xc0, 0x3f, 0, 0, 0, 0xc0, 0, 0, 0x80, 0x3e};
    b = numpy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", f4, 12, &len);
    EXPECT(dc_npy_parse(b, len, "np2", &a) == DC_OK);
    EXPECT(a.dtype == DC_F32 && a.ndim == 1 && a.shape[0] == 3);
    EXPECT(a.data && ((float *)a.data)[0] == 1.5f && ((float *)a.data)[1] == -2.0f &&
           ((float *)a.data)[2] == 0.25f);
    dc_npy_free(&a);
    free(b);
    /* np.save(f, np.array(7, dtype=np.uint8)) and np.zeros((0, 3), '<i4') */
    const uint8_t seven = 7;
    b = numpy_file("{'descr': '|u1', 'fortran_order': False, 'shape': (), }", &seven, 1, &len);
    EXPECT(dc_npy_parse(b, len, "np3", &a) == DC_OK && a.dtype == DC_U8 && a.ndim == 0 && a.nbytes == 1 &&
           ((uint8_t *)a.data)[0] == 7);
    dc_npy_free(&a);
    free(b);
    b = numpy_file("{'descr': '<i4', 'fortran_order': False, 'shape': (0, 3), }", NULL, 0, &len);
    EXPECT(dc_npy_parse(b, len, "np4", &a) == DC_OK && a.dtype == DC_I32 && a.ndim == 2 && a.shape[0] == 0 &&
           a.nbytes == 0);
    dc_npy_free(&a);
    free(b);
}

/* Parses an exact-size copy; a failure must name `what`. */
static int parse_copy(const uint8_t *bytes, size_t len) {
    uint8_t *copy = malloc(len ? len : 1);
    if (len) memcpy(copy, bytes, len);
    dc_npy_array a;
    dc_clear_error();
    int rc = dc_npy_parse(copy, len, "bad.npy", &a);
    if (rc == DC_OK)
        dc_npy_free(&a);
    else {
        EXPECTF(strncmp(dc_last_error(), "bad.npy: ", 9) == 0, "%s", dc_last_error());
        EXPECT(a.data == NULL);
    }
    free(copy);
    return rc;
}

static void test_bad_input(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/v.npy", tmp_dir);
    int32_t v[6] = {1, 2, 3, 4, 5, 6};
    int64_t shape[2] = {3, 2};
    REQUIRE(dc_npy_write(path, DC_I32, 2, shape, v) == DC_OK);
    size_t len;
    uint8_t *buf = tu_slurp(path, &len);
    REQUIRE(buf != NULL);
    EXPECT(parse_copy(buf, len) == DC_OK);
    int ok = 0;
    for (size_t cut = 0; cut < len; cut++) ok += parse_copy(buf, cut) == DC_OK;
    EXPECTF(ok == 0, "%d truncations parsed", ok);
    int parsed = 0, failed = 0;
    for (size_t pos = 0; pos < 64; pos++)
        for (int bit = 0; bit < 8; bit++) {
            buf[pos] ^= (uint8_t)(1u << bit);
            if (parse_copy(buf, len) == DC_OK)
                parsed++;
            else
                failed++;
            buf[pos] ^= (uint8_t)(1u << bit);
        }
    printf("npy header bit flips: %d parsed, %d rejected cleanly\n", parsed, failed);
    EXPECT(failed > 10 * parsed);
    free(buf);
    unlink(path);

    struct {
        const char *dict;
        size_t nbytes;
        const char *expect;
    } cases[] = {
        {"{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", 8, "big-endian"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", 16, "unsupported npy dtype '<f8'"},
        {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", 8, "structured"},
        {"{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16, "Fortran"},
        {"{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,), }", 8, "True or False"},
        {"{'descr': '<f4', 'shape': (2,), }", 8, "lacks 'fortran_order'"},
        {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 8, "duplicate key"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", 8, "unexpected key 'x'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", 8, "non-negative integer"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", 8, "too large"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }", 8, "overflows"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", 4,
         "more than 8 dimensions"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), ,}", 8, "expected a quoted string"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), } x", 8, "unexpected bytes after"},
        {"{'descr': '<f4, 'fortran_order': False, 'shape': (2,), }", 8, "expected '}'"},
        {"{'descr' '<f4', 'fortran_order': False, 'shape': (2,), }", 8, "expected ':'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 4, "truncated"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 12, "12 bytes, but <f4"},
        {"['descr']", 0, "expected '{'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t dl = strlen(cases[i].dict);
        size_t blen = 10 + dl + 1 + cases[i].nbytes;
        uint8_t *b = calloc(blen, 1);
        memcpy(b, "\x93NUMPY\x01\x00", 8);
        b[8] = (uint8_t)((dl + 1) & 0xff), b[9] = (uint8_t)((dl + 1) >> 8);
        memcpy(b + 10, cases[i].dict, dl);
        b[10 + dl] = '\n';
        int rc = parse_copy(b, blen);
        EXPECTF(rc == DC_FAIL && strstr(dc_last_error(), cases[i].expect),
                "case %zu: expected '%s', got '%s'", i, cases[i].expect,
                rc == DC_OK ? "(parsed)" : dc_last_error());
        free(b);
    }
    /* Magic, version and header length. */
    EXPECT(parse_copy((const uint8_t *)"\x93NUMPZ\x01\x00\x00\x00", 10) == DC_FAIL &&
           strstr(dc_last_error(), "not a .npy file"));
    EXPECT(parse_copy((const uint8_t *)"\x93NUMPY\x04\x00\x00\x00", 10) == DC_FAIL &&
           strstr(dc_last_error(), "version 4.0"));
    EXPECT(parse_copy((const uint8_t *)"\x93NUMPY\x01\x00\xff\x00{}", 12) == DC_FAIL &&
           strstr(dc_last_error(), "larger than the rest"));
    EXPECT(parse_copy((const uint8_t *)"\x93NUMPY\x02\x00\xff\xff\xff\xff{}", 14) == DC_FAIL &&
           strstr(dc_last_error(), "larger than the rest"));
    /* Version 2.0 (u32 header length) with a valid dict is accepted. */
    {
        const char *dict = "{'descr': '<i4', 'fortran_order': False, 'shape': (1,), }\n";
        size_t dl = strlen(dict);
        uint8_t b[128];
        memcpy(b, "\x93NUMPY\x02\x00", 8);
        b[8] = (uint8_t)dl, b[9] = b[10] = b[11] = 0;
        memcpy(b + 12, dict, dl);
        memcpy(b + 12 + dl, "\x2a\0\0\0", 4);
        dc_npy_array a;
        EXPECT(dc_npy_parse(b, 12 + dl + 4, "v2", &a) == DC_OK && a.ndim == 1 &&
               ((int32_t *)a.data)[0] == 42);
        dc_npy_free(&a);
    }
}

static void test_write_errors(void) {
    float x[2] = {1, 2};
    int64_t s[2] = {2, -1};
    char path[512];
    snprintf(path, sizeof path, "%s/no/such/dir/x.npy", tmp_dir);
    EXPECT(dc_npy_write(path, DC_F32, 1, s, x) == DC_FAIL);
    EXPECTF(strstr(dc_last_error(), path) && strstr(dc_last_error(), strerror(ENOENT)), "%s",
            dc_last_error());
    snprintf(path, sizeof path, "%s/x.npy", tmp_dir);
    EXPECT(dc_npy_write(path, DC_F32, 2, s, x) == DC_FAIL && strstr(dc_last_error(), "negative"));
    EXPECT(dc_npy_write(path, DC_F32, 9, s, x) == DC_FAIL && strstr(dc_last_error(), "ndim 9"));
    EXPECT(dc_npy_write(path, (dc_dtype)7, 1, s, x) == DC_FAIL && strstr(dc_last_error(), "dtype"));
    EXPECT(dc_npy_write(path, DC_F32, 1, s, NULL) == DC_FAIL && strstr(dc_last_error(), "NULL data"));
    EXPECT(access(path, F_OK) != 0);
    dc_npy_array a;
    EXPECT(dc_npy_read(path, &a) == DC_FAIL && strstr(dc_last_error(), path) &&
           strstr(dc_last_error(), strerror(ENOENT)));
    EXPECT(dc_npy_read(tmp_dir, &a) == DC_FAIL && strstr(dc_last_error(), "regular file"));
}

/* One file per dtype for tests/check_npy.py: values arange(numel) (u1 mod 256), shape (3, 4, 5). */
static void write_samples(const char *dir) {
    const dc_dtype dtypes[] = {DC_F32, DC_I32, DC_I64, DC_U8};
    const char *names[] = {"f4", "i4", "i8", "u1"};
    int64_t shape[3] = {3, 4, 5};
    for (int k = 0; k < 4; k++) {
        uint8_t data[60 * 8];
        for (int i = 0; i < 60; i++) switch (dtypes[k]) {
            case DC_F32:
                ((float *)data)[i] = (float)i;
                break;
            case DC_I32:
                ((int32_t *)data)[i] = i;
                break;
            case DC_I64:
                ((int64_t *)data)[i] = i;
                break;
            case DC_U8:
                data[i] = (uint8_t)i;
                break;
            }
        char path[600];
        snprintf(path, sizeof path, "%s/arange_%s.npy", dir, names[k]);
        EXPECTF(dc_npy_write(path, dtypes[k], 3, shape, data) == DC_OK, "%s", dc_last_error());
    }
    printf("wrote arange_{f4,i4,i8,u1}.npy into %s\n", dir);
}

int main(int argc, char **argv) {
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/dc_test_npy_XXXXXX");
    REQUIRE(mkdtemp(tmp_dir) != NULL);
    test_round_trip();
    test_exact_header();
    test_numpy_written();
    test_bad_input();
    test_write_errors();
    if (argc > 1) write_samples(argv[1]);
    EXPECT(rmdir(tmp_dir) == 0); /* every test removed its files */
    return tu_finish("test_npy");
}
