/*
 * test_list_file.c: the "relative/path label" list parser and the class-names reader (datasets/list_file.c).
 *
 * Checks what is accepted (spaces in paths, CRLF, blank lines, a BOM, UTF-8 names), that every malformed
 * input fails with a message naming the file and the line, and, when ../shared is present, the real lists:
 * Places-LT / ImageNet-LT / iNat18 statistics from their README and the CIFAR-10-LT r=100 list, which must
 * equal the long-tailed subset that dc_lt_select derives from the full CIFAR-10 list.
 */
#include "datasets/dataset.h"

#include "core/check.h"
#include "testutil.h"

#include <stdint.h>
#include <time.h>
#include <unistd.h>

#define SHARED DC_SOURCE_DIR "/../shared/data"

static int has(const char *needle) {
    return strstr(dc_last_error(), needle) != NULL;
}

/* Parses `text` and expects a failure whose message contains both needles. */
#define EXPECT_PARSE_FAIL(text, nc, needle1, needle2)                                                        \
    do {                                                                                                     \
        dc_list_file lf_;                                                                                    \
        dc_clear_error();                                                                                    \
        int rc_ = dc_list_file_parse((text), sizeof(text) - 1, "lists/x.txt", (nc), &lf_);                   \
        EXPECTF(rc_ == DC_FAIL && has(needle1) && has(needle2), "rc %d, message '%s'", rc_,                  \
                dc_last_error());                                                                            \
        if (rc_ == DC_OK) dc_list_file_free(&lf_);                                                           \
    } while (0)

static void test_accepted(void) {
    const char text[] = "\xEF\xBB\xBF"
                        "train/n01/a.JPEG 0\n"
                        "train/my photos/b c.jpg   3\r\n"
                        "\n"
                        "  \t train/g.jpg\t2  \r\n"
                        "donn\xC3\xA9"
                        "es/\xE6\x97\xA5\xE6\x9C\xAC.jpg 1\n"
                        "x.jpg 007\n"
                        "\r\n\n\n";
    dc_list_file lf;
    REQUIRE(dc_list_file_parse(text, sizeof text - 1, "t.txt", 0, &lf) == DC_OK);
    EXPECT(lf.n == 5);
    EXPECT(lf.num_classes == 8);
    EXPECT(!strcmp(dc_list_file_path(&lf, 0), "train/n01/a.JPEG") && lf.labels[0] == 0 && lf.line[0] == 1);
    EXPECT(!strcmp(dc_list_file_path(&lf, 1), "train/my photos/b c.jpg") && lf.labels[1] == 3 &&
           lf.line[1] == 2);
    EXPECT(!strcmp(dc_list_file_path(&lf, 2), "train/g.jpg") && lf.labels[2] == 2 && lf.line[2] == 4);
    EXPECT(!strcmp(dc_list_file_path(&lf, 3), "donn\xC3\xA9"
                                              "es/\xE6\x97\xA5\xE6\x9C\xAC.jpg") &&
           lf.line[3] == 5);
    EXPECT(lf.labels[4] == 7 && lf.line[4] == 6);
    int64_t counts[8];
    dc_list_file_class_counts(&lf, counts);
    EXPECT(counts[0] == 1 && counts[1] == 1 && counts[4] == 0 && counts[7] == 1);

    /* subset keeps paths, labels and line numbers */
    int64_t idx[2] = {4, 1};
    dc_list_file sub;
    REQUIRE(dc_list_file_subset(&lf, idx, 2, &sub) == DC_OK);
    EXPECT(sub.n == 2 && !strcmp(dc_list_file_path(&sub, 1), "train/my photos/b c.jpg") && sub.line[0] == 6 &&
           sub.labels[0] == 7);
    dc_list_file_free(&sub);
    idx[0] = 5;
    EXPECT(dc_list_file_subset(&lf, idx, 2, &sub) == DC_FAIL);
    dc_list_file_free(&lf);

    /* no trailing newline, num_classes given */
    const char last[] = "a.jpg 1\nb.jpg 0";
    REQUIRE(dc_list_file_parse(last, sizeof last - 1, "t.txt", 5, &lf) == DC_OK);
    EXPECT(lf.n == 2 && lf.num_classes == 5 && lf.labels[1] == 0);
    dc_list_file_free(&lf);
}

static void test_rejected(void) {
    EXPECT_PARSE_FAIL("a.jpg 0\nb.jpg\nc.jpg 1\n", 0, "lists/x.txt:2:", "missing label");
    EXPECT_PARSE_FAIL("a.jpg 0\n\nc.jpg 1.5\n", 0, "lists/x.txt:3:", "not an integer");
    EXPECT_PARSE_FAIL("a.jpg abc\n", 0, "lists/x.txt:1:", "not an integer");
    EXPECT_PARSE_FAIL("a.jpg 0\na.jpg -\n", 0, "lists/x.txt:2:", "not an integer");
    EXPECT_PARSE_FAIL("a.jpg 0\r\nb.jpg -3\r\n", 0, "lists/x.txt:2:", "negative");
    EXPECT_PARSE_FAIL("a.jpg 0\nb.jpg 10\n", 10, "lists/x.txt:2:", "out of range [0, 10)");
    EXPECT_PARSE_FAIL("a.jpg 99999999999\n", 0, "lists/x.txt:1:", "too large");
    EXPECT_PARSE_FAIL("ok.jpg 0\ncaf\xE9.jpg 1\n", 0, "lists/x.txt:2:", "0xe9 at column 4");
    EXPECT_PARSE_FAIL("a\xC0\xAF.jpg 1\n", 0, "lists/x.txt:1:", "not valid UTF-8");     /* overlong '/' */
    EXPECT_PARSE_FAIL("a\xED\xA0\x80.jpg 1\n", 0, "lists/x.txt:1:", "not valid UTF-8"); /* surrogate */
    EXPECT_PARSE_FAIL("a\xE0\x80\xAF.jpg 1\n", 0,
                      "lists/x.txt:1:", "not valid UTF-8");                        /* overlong, 3 bytes */
    EXPECT_PARSE_FAIL("a\xF4\x90\x80\x80.jpg 1\n", 0, "lists/x.txt:1:", "UTF-8");  /* above U+10FFFF */
    EXPECT_PARSE_FAIL("a.jpg 0\nb\xE6\x97.jpg 1\n", 0, "lists/x.txt:2:", "UTF-8"); /* cut sequence */
    EXPECT_PARSE_FAIL("a.jpg 0\nb\0.jpg 1\n", 0, "lists/x.txt:2:", "NUL");
    EXPECT_PARSE_FAIL("", 0, "lists/x.txt", "no samples");
    EXPECT_PARSE_FAIL("\n  \r\n\n", 0, "lists/x.txt", "no samples");

    /* an overlong line and an overlong path */
    static char big[6000];
    memset(big, 'a', 5000);
    memcpy(big + 5000, " 1\n", 4);
    dc_list_file lf;
    EXPECT(dc_list_file_parse(big, strlen(big), "lists/x.txt", 0, &lf) == DC_FAIL);
    EXPECTF(has("lists/x.txt:1:") && has("line is 5002 bytes"), "%s", dc_last_error());
    memset(big, 'b', 1100);
    memcpy(big + 1100, " 1\n", 4);
    EXPECT(dc_list_file_parse(big, strlen(big), "lists/x.txt", 0, &lf) == DC_FAIL);
    EXPECTF(has("lists/x.txt:1:") && has("path is 1100 bytes"), "%s", dc_last_error());
}

static void write_text(const char *path, const char *text, size_t len) {
    FILE *f = fopen(path, "wb");
    REQUIRE(f != NULL);
    REQUIRE(fwrite(text, 1, len, f) == len);
    fclose(f);
}

static void test_files(void) {
    char dir[] = "/tmp/dc_test_list_XXXXXX";
    REQUIRE(mkdtemp(dir) != NULL);
    char path[256], names_path[256];
    snprintf(path, sizeof path, "%s/train.txt", dir);
    const char text[] = "a.jpg 0\r\nb.jpg 2\r\n";
    write_text(path, text, sizeof text - 1);
    dc_list_file lf;
    REQUIRE(dc_list_file_read(path, 0, &lf) == DC_OK);
    EXPECT(lf.n == 2 && lf.num_classes == 3 && !strcmp(lf.source, path));
    dc_list_file_free(&lf);
    /* the file name is in the messages */
    REQUIRE(dc_list_file_read(path, 2, &lf) == DC_FAIL);
    EXPECTF(has(path) && has(":2:"), "%s", dc_last_error());
    snprintf(names_path, sizeof names_path, "%s/missing.txt", dir);
    REQUIRE(dc_list_file_read(names_path, 0, &lf) == DC_FAIL);
    EXPECTF(has(names_path) && has("cannot open"), "%s", dc_last_error());
    /* a directory is not a list */
    REQUIRE(dc_list_file_read(dir, 0, &lf) == DC_FAIL);
    EXPECT(has(dir));

    /* class names: CRLF, trailing blank lines; an empty name in between is an error */
    snprintf(names_path, sizeof names_path, "%s/classes.txt", dir);
    const char names[] = "airplane\r\nautomobile car\r\nbird\r\n\r\n\n";
    write_text(names_path, names, sizeof names - 1);
    int count;
    char **arr;
    REQUIRE(dc_class_names_read(names_path, &count, &arr) == DC_OK);
    EXPECT(count == 3 && !strcmp(arr[0], "airplane") && !strcmp(arr[1], "automobile car") &&
           !strcmp(arr[2], "bird"));
    free(arr);
    const char gap[] = "a\n\nb\n";
    write_text(names_path, gap, sizeof gap - 1);
    EXPECT(dc_class_names_read(names_path, &count, &arr) == DC_FAIL);
    EXPECTF(has(names_path) && has(":2:"), "%s", dc_last_error());
    write_text(names_path, "\n\n", 2);
    EXPECT(dc_class_names_read(names_path, &count, &arr) == DC_FAIL);
    unlink(names_path);
    unlink(path);
    rmdir(dir);
}

/* The official lists: statistics from /work/shared/data/lt-splits/README.md and the many/medium/few split. */
static void test_official_lists(void) {
    if (access(SHARED "/lt-splits/Places_LT_train.txt", R_OK) != 0) {
        printf("skip: %s not present\n", SHARED "/lt-splits");
        return;
    }
    struct {
        const char *file;
        int64_t lines;
        int classes;
        int64_t max, min;
    } lists[] = {
        {"Places_LT_train.txt", 62500, 365, 4980, 5},  {"Places_LT_val.txt", 7300, 365, 20, 20},
        {"Places_LT_test.txt", 36500, 365, 100, 100},  {"ImageNet_LT_val.txt", 20000, 1000, 20, 20},
        {"ImageNet_LT_test.txt", 50000, 1000, 50, 50}, {"iNaturalist18_val.txt", 24426, 8142, 3, 3},
    };
    static int64_t counts[8142];
    for (size_t k = 0; k < sizeof lists / sizeof *lists; k++) {
        char path[512];
        snprintf(path, sizeof path, "%s/lt-splits/%s", SHARED, lists[k].file);
        dc_list_file lf;
        clock_t t0 = clock();
        int rc = dc_list_file_read(path, 0, &lf);
        double ms = 1000.0 * (double)(clock() - t0) / CLOCKS_PER_SEC;
        EXPECTF(rc == DC_OK, "%s: %s", lists[k].file, dc_last_error());
        if (rc != DC_OK) continue;
        dc_list_file_class_counts(&lf, counts);
        int64_t mx = 0, mn = INT64_MAX;
        int many = 0, medium = 0, few = 0;
        for (int c = 0; c < lf.num_classes; c++) {
            if (counts[c] > mx) mx = counts[c];
            if (counts[c] < mn) mn = counts[c];
            many += counts[c] > 100;
            few += counts[c] < 20;
            medium += counts[c] >= 20 && counts[c] <= 100;
        }
        EXPECTF(lf.n == lists[k].lines && lf.num_classes == lists[k].classes && mx == lists[k].max &&
                    mn == lists[k].min,
                "%s: %lld lines, %d classes, max %lld min %lld", lists[k].file, (long long)lf.n,
                lf.num_classes, (long long)mx, (long long)mn);
        if (k == 0)
            EXPECTF(many == 131 && medium == 163 && few == 71, "Places-LT %d/%d/%d", many, medium, few);
        printf("%s: %lld samples, %d classes, parsed in %.1f ms\n", lists[k].file, (long long)lf.n,
               lf.num_classes, ms);
        dc_list_file_free(&lf);
    }
}

/* CIFAR-10-LT: train_lt_rR.txt must be exactly dc_lt_select(train.txt, dc_lt_profile(exp, r)). */
static void test_cifar10_lt_lists(void) {
    if (access(SHARED "/cifar10/train.txt", R_OK) != 0) {
        printf("skip: %s not present\n", SHARED "/cifar10");
        return;
    }
    dc_list_file full;
    REQUIRE(dc_list_file_read(SHARED "/cifar10/train.txt", 10, &full) == DC_OK);
    EXPECT(full.n == 50000);
    const int rs[4] = {10, 50, 100, 200};
    const int64_t sizes[4] = {20431, 13996, 12406, 11203};
    int64_t *sel = malloc(sizeof(int64_t) * (size_t)full.n);
    for (int k = 0; k < 4; k++) {
        char path[512];
        snprintf(path, sizeof path, "%s/cifar10/train_lt_r%d.txt", SHARED, rs[k]);
        dc_list_file lt;
        REQUIRE(dc_list_file_read(path, 10, &lt) == DC_OK);
        EXPECTF(lt.n == sizes[k], "%s: %lld lines", path, (long long)lt.n);
        int64_t keep[10], n_sel;
        REQUIRE(dc_lt_profile(DC_IMB_EXP, 10, 5000, rs[k], 0.5, keep) == DC_OK);
        REQUIRE(dc_lt_select(full.labels, full.n, 10, keep, sel, &n_sel, NULL) == DC_OK);
        int same = n_sel == lt.n;
        for (int64_t i = 0; same && i < n_sel; i++)
            same = !strcmp(dc_list_file_path(&full, sel[i]), dc_list_file_path(&lt, i)) &&
                   full.labels[sel[i]] == lt.labels[i];
        EXPECTF(same, "r=%d: the derived subset differs from %s", rs[k], path);
        dc_list_file_free(&lt);
    }
    free(sel);
    dc_list_file_free(&full);
}

int main(void) {
    test_accepted();
    test_rejected();
    test_files();
    test_official_lists();
    test_cifar10_lt_lists();
    return tu_finish("test_list_file");
}
