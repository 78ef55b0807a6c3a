/*
 * test_svg.c: the stage-2 pictures (heads/svg.h) are well-formed SVG that show what they claim.
 *
 * For C = 10 (heads really fitted on synthetic long-tailed clusters: joint, cRT, LWS, NCM, tau-norm) and for
 * C = 1000 (per-class values from a smooth long-tailed model plus noise, and missing classes):
 *   - a small XML checker written here: every tag closes in order, attributes are quoted, entities are the
 *     five XML ones, exactly one root <svg> with xmlns and viewBox;
 *   - no attribute value contains "nan" or "inf";
 *   - every series name appears (escaped: a name with & and < is written as &amp; and &lt;), as do the
 *     many / medium / few labels and the chosen tau;
 *   - the count backdrop is bars for small C and one decimated polygon for large C (file size stays small);
 *   - the *_file variants write atomically and report an unwritable path.
 * With DC_SVG_DUMP=<dir> in the environment the SVGs are also written there (for looking at them).
 */
#include "core/check.h"
#include "core/rng.h"
#include "heads/head.h"
#include "heads/svg.h"
#include "testutil.h"

#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

/* ---- a minimal XML well-formedness checker ------------------------------------------------------------- */

static int is_name_char(char c) {
    return isalnum((unsigned char)c) || c == '-' || c == '_' || c == ':' || c == '.';
}

/* Checks entity references in text or attribute values. */
static int entities_ok(const char *s, const char *end) {
    for (const char *p = s; p < end; p++) {
        if (*p == '<') return 0;
        if (*p != '&') continue;
        static const char *ents[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"};
        int ok = 0;
        for (int i = 0; i < 5; i++)
            if (!strncmp(p, ents[i], strlen(ents[i]))) ok = 1;
        if (!ok) return 0;
    }
    return 1;
}

typedef struct {
    int ok;
    char why[160];
    int n_elements;
    int bad_numbers; /* attribute values containing nan / inf */
    int has_xmlns, has_viewbox;
    int polygons, rects, polylines, circles;
} xml_report;

static void check_xml(const char *doc, xml_report *r) {
    memset(r, 0, sizeof *r);
    r->ok = 1;
    char stack[64][32];
    int depth = 0, roots = 0;
    const char *p = doc;
#define FAIL(...)                                                                                            \
    do {                                                                                                     \
        r->ok = 0;                                                                                           \
        snprintf(r->why, sizeof r->why, __VA_ARGS__);                                                        \
        return;                                                                                              \
    } while (0)
    while (*p) {
        if (*p != '<') {
            const char *q = strchr(p, '<');
            if (!q) q = p + strlen(p);
            if (depth == 0) {
                for (const char *t = p; t < q; t++)
                    if (!isspace((unsigned char)*t)) FAIL("text outside the root element");
            }
            if (!entities_ok(p, q)) FAIL("bad entity in text near %.30s", p);
            p = q;
            continue;
        }
        if (!strncmp(p, "<?", 2)) {
            const char *q = strstr(p, "?>");
            if (!q) FAIL("unterminated <?");
            p = q + 2;
            continue;
        }
        if (!strncmp(p, "<!--", 4)) {
            const char *q = strstr(p, "-->");
            if (!q) FAIL("unterminated comment");
            p = q + 3;
            continue;
        }
        int closing = p[1] == '/';
        const char *n0 = p + 1 + closing, *n1 = n0;
        while (is_name_char(*n1)) n1++;
        if (n1 == n0 || n1 - n0 >= 32) FAIL("bad tag name near %.30s", p);
        char name[32];
        memcpy(name, n0, (size_t)(n1 - n0));
        name[n1 - n0] = 0;
        const char *q = n1;
        if (closing) {
            while (isspace((unsigned char)*q)) q++;
            if (*q != '>') FAIL("bad closing tag </%s", name);
            if (depth == 0 || strcmp(stack[depth - 1], name))
                FAIL("</%s> does not close <%s>", name, depth ? stack[depth - 1] : "(nothing)");
            depth--;
            p = q + 1;
            continue;
        }
        /* attributes: name="value" */
        int self_close = 0;
        char seen[24][32];
        int n_seen = 0;
        for (;;) {
            while (isspace((unsigned char)*q)) q++;
            if (*q == '>') {
                q++;
                break;
            }
            if (q[0] == '/' && q[1] == '>') {
                self_close = 1;
                q += 2;
                break;
            }
            const char *a0 = q;
            while (is_name_char(*q)) q++;
            if (q == a0 || *q != '=' || (q[1] != '"' && q[1] != '\''))
                FAIL("bad attribute in <%s> near %.30s", name, a0);
            char an[32];
            size_t al = (size_t)(q - a0) < 31 ? (size_t)(q - a0) : 31;
            memcpy(an, a0, al);
            an[al] = 0;
            for (int i = 0; i < n_seen; i++)
                if (!strcmp(seen[i], an)) FAIL("duplicate attribute %s in <%s>", an, name);
            if (n_seen < 24) strcpy(seen[n_seen++], an);
            char quote = q[1];
            const char *v0 = q + 2, *v1 = strchr(v0, quote);
            if (!v1) FAIL("unterminated attribute value in <%s>", name);
            if (!entities_ok(v0, v1)) FAIL("bad entity in attribute %s of <%s>", an, name);
            for (const char *t = v0; t + 3 <= v1; t++)
                if (!strncasecmp(t, "nan", 3) || !strncasecmp(t, "inf", 3)) r->bad_numbers++;
            if (!strcmp(name, "svg") && !strcmp(an, "xmlns") &&
                !strncmp(v0, "http://www.w3.org/2000/svg", 26))
                r->has_xmlns = 1;
            if (!strcmp(name, "svg") && !strcmp(an, "viewBox")) r->has_viewbox = 1;
            q = v1 + 1;
        }
        r->n_elements++;
        if (!strcmp(name, "polygon")) r->polygons++;
        if (!strcmp(name, "rect")) r->rects++;
        if (!strcmp(name, "polyline")) r->polylines++;
        if (!strcmp(name, "circle")) r->circles++;
        if (depth == 0) {
            roots++;
            if (roots > 1) FAIL("more than one root element");
            if (strcmp(name, "svg")) FAIL("root element is <%s>, not <svg>", name);
        }
        if (!self_close) {
            if (depth == 64) FAIL("too deep");
            strcpy(stack[depth++], name);
        }
        p = q;
    }
    if (depth != 0) FAIL("<%s> is never closed", stack[depth - 1]);
    if (roots != 1) FAIL("no root element");
#undef FAIL
}

/* ---- helpers ------------------------------------------------------------------------------------------ */

typedef struct {
    char *buf;
    size_t len;
    FILE *fp;
} memfile;

static FILE *mem_open(memfile *m) {
    m->buf = NULL;
    m->len = 0;
    m->fp = open_memstream(&m->buf, &m->len);
    return m->fp;
}

static void dump(const char *name, const char *doc) {
    const char *dir = getenv("DC_SVG_DUMP");
    if (!dir) return;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "w");
    if (!fp) return;
    fputs(doc, fp);
    fclose(fp);
}

static void expect_good(const char *what, const char *doc, const char *const *must_contain, int n_must) {
    xml_report r;
    check_xml(doc, &r);
    EXPECTF(r.ok, "%s: not well-formed: %s", what, r.why);
    EXPECTF(r.has_xmlns && r.has_viewbox, "%s: xmlns %d viewBox %d", what, r.has_xmlns, r.has_viewbox);
    EXPECTF(r.bad_numbers == 0, "%s: %d attribute values with nan/inf", what, r.bad_numbers);
    for (int i = 0; i < n_must; i++)
        EXPECTF(strstr(doc, must_contain[i]) != NULL, "%s: \"%s\" missing", what, must_contain[i]);
}

static int64_t lt_count(int j, int C, double nmax, double imb) {
    return (int64_t)floor(nmax * pow(imb, -(double)j / (C - 1)));
}

/* ---- C = 10: heads fitted on synthetic long-tailed clusters ------------------------------------------- */

static void test_small(void) {
    const int C = 10, D = 16;
    int64_t counts[10];
    int64_t N = 0;
    for (int j = 0; j < C; j++) N += counts[j] = lt_count(j, C, 400, 100);
    const int n_test = 60;
    float *X = dc_malloc((size_t)N * D * 4), *Xt = dc_malloc((size_t)C * n_test * D * 4), mu[10 * 16];
    int32_t *y = dc_malloc((size_t)N * 4), *yt = dc_malloc((size_t)C * n_test * 4);
    dc_rng r = dc_rng_make(5);
    for (int i = 0; i < C * D; i++) mu[i] = (float)(dc_rng_normal(&r) * 0.8);
    int64_t i = 0;
    for (int j = 0; j < C; j++)
        for (int64_t k = 0; k < counts[j]; k++, i++) {
            y[i] = j;
            for (int e = 0; e < D; e++) X[i * D + e] = mu[j * D + e] + (float)dc_rng_normal(&r);
        }
    for (int k = 0; k < C * n_test; k++) {
        yt[k] = k % C;
        for (int e = 0; e < D; e++) Xt[k * D + e] = mu[(k % C) * D + e] + (float)dc_rng_normal(&r);
    }
    /* joint: instance-balanced fit; cRT: class-aware re-fit; LWS on the joint; NCM; tau-norm by sweep */
    dc_head joint, crt, lws, ncm, tn;
    REQUIRE(dc_head_init_linear(&joint, D, C, NULL, NULL) == DC_OK &&
            dc_head_reset_linear(&joint, 1) == DC_OK);
    dc_head_train_opts o;
    dc_head_train_defaults(&o);
    o.batch_size = 64;
    o.lr = 0.1f;
    o.num_epochs = 10;
    o.sampler.type = DC_SAMPLER_INSTANCE;
    REQUIRE(dc_head_train(&joint, &o, X, y, N) == DC_OK);
    REQUIRE(dc_head_init_linear(&crt, D, C, NULL, NULL) == DC_OK && dc_head_reset_linear(&crt, 2) == DC_OK);
    o.sampler.type = DC_SAMPLER_CLASS_AWARE;
    REQUIRE(dc_head_train(&crt, &o, X, y, N) == DC_OK);
    REQUIRE(dc_head_init_lws(&lws, &joint) == DC_OK);
    o.num_epochs = 5;
    REQUIRE(dc_head_train(&lws, &o, X, y, N) == DC_OK);
    REQUIRE(dc_ncm_fit_features(X, y, N, D, C, DC_NCM_CL2N, DC_NCM_DIST_L2, &ncm) == DC_OK);
    dc_tau_sweep sw;
    REQUIRE(dc_tau_sweep_init(&sw, DC_SWEEP_TAU_NORM, &joint, counts, NULL, 0, 0) == DC_OK);
    dc_tau_sweep_add(&sw, Xt, yt, C * n_test); /* (a test split stands in for val in this picture test) */
    dc_tau_sweep_finish(&sw, counts);
    REQUIRE(dc_tau_sweep_make_head(&sw, counts, dc_tau_sweep_best_tau(&sw), &tn) == DC_OK);

    const dc_head *hs[5] = {&joint, &crt, &lws, &ncm, &tn};
    static const char *names[5] = {"joint & <IB>", "cRT", "LWS", "NCM (cl2n, l2)", "tau-norm"};
    double acc[5][10], norms[3][10];
    float *z = dc_malloc((size_t)C * n_test * C * 4);
    for (int h = 0; h < 5; h++) {
        dc_metrics m;
        dc_metrics_init(&m, C);
        dc_head_logits(hs[h], Xt, C * n_test, z);
        dc_metrics_add(&m, z, yt, C * n_test);
        for (int j = 0; j < C; j++) acc[h][j] = dc_metrics_class_acc(&m, j);
        dc_metrics_free(&m);
    }
    acc[3][9] = NAN; /* a missing value breaks the line instead of producing a coordinate */
    dc_head_class_norms(&joint, norms[0]);
    dc_head_class_norms(&tn, norms[1]);
    dc_head_class_norms(&lws, norms[2]);
    /* the paper's observation, on this data: joint norms of head classes exceed those of tail classes */
    EXPECTF(norms[0][0] > norms[0][9], "joint norm of class 0 %.3f vs class 9 %.3f", norms[0][0],
            norms[0][9]);

    dc_svg_series s[5];
    for (int h = 0; h < 5; h++) s[h] = (dc_svg_series){names[h], acc[h]};
    memfile m;
    REQUIRE(dc_svg_per_class_accuracy(mem_open(&m), "Per-class accuracy, C = 10", counts, C, s, 5) == DC_OK);
    fclose(m.fp);
    const char *must[] = {
        "joint &amp; &lt;IB&gt;", "cRT", "LWS", "NCM (cl2n, l2)", "tau-norm", "many", "medium", "few",
        "training images"};
    expect_good("accuracy C=10", m.buf, must, 9);
    xml_report rep;
    check_xml(m.buf, &rep);
    EXPECTF(rep.rects >= C && rep.polygons == 0, "C=10 count bars: %d rects %d polygons", rep.rects,
            rep.polygons);
    EXPECTF(rep.circles >= 5 * C - 1, "C=10: %d markers", rep.circles);
    dump("accuracy_c10.svg", m.buf);
    free(m.buf);

    dc_svg_series sn[3] = {{"joint", norms[0]}, {"tau-norm", norms[1]}, {"LWS ||s_j W_j||", norms[2]}};
    REQUIRE(dc_svg_class_norms(mem_open(&m), "Classifier weight norms, C = 10", counts, C, sn, 3) == DC_OK);
    fclose(m.fp);
    const char *must2[] = {"joint", "tau-norm", "LWS ||s_j W_j||", "weight norm"};
    expect_good("norms C=10", m.buf, must2, 4);
    dump("norms_c10.svg", m.buf);
    free(m.buf);

    /* the sweep picture, from a finished dc_tau_sweep through the file variant */
    char dir[] = "/tmp/dc_test_svg_XXXXXX";
    REQUIRE(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/sweep.svg", dir);
    REQUIRE(dc_svg_tau_sweep_file(path, "tau-norm sweep", &sw) == DC_OK);
    FILE *fp = fopen(path, "rb");
    REQUIRE(fp);
    char *doc = dc_calloc(1 << 20, 1);
    size_t len = fread(doc, 1, (1 << 20) - 1, fp);
    fclose(fp);
    doc[len] = 0;
    char chosen[64];
    snprintf(chosen, sizeof chosen, "chosen \xcf\x84 = %.2f", dc_tau_sweep_best_tau(&sw));
    const char *must3[] = {"val macro (mean per-class)", "val micro top-1", "many-shot", "few-shot", chosen};
    expect_good("sweep", doc, must3, 5);
    dump("sweep_c10.svg", doc);
    unlink(path);
    /* an unwritable path fails with a message naming it, and leaves nothing behind */
    snprintf(path, sizeof path, "%s/no/such/dir/x.svg", dir);
    EXPECT(dc_svg_per_class_accuracy_file(path, "t", counts, C, s, 5) == DC_FAIL);
    EXPECTF(strstr(dc_last_error(), "no/such/dir") != NULL, "message: %s", dc_last_error());
    rmdir(dir);
    /* bad input */
    EXPECT(dc_svg_per_class_accuracy(stdout, "t", counts, 0, s, 5) == DC_FAIL);
    free(doc);
    free(z);
    free(X);
    free(Xt);
    free(y);
    free(yt);
    dc_tau_sweep_free(&sw);
    for (int h = 0; h < 5; h++) dc_head_free((dc_head *)hs[h]);
}

/* ---- large C: smooth long-tailed model values ---------------------------------------------------------- */

static void test_large(int C, const char *tag) {
    int64_t *counts = dc_malloc((size_t)C * sizeof(int64_t));
    double *acc[4], *norms[3];
    for (int k = 0; k < 4; k++) acc[k] = dc_malloc((size_t)C * sizeof(double));
    for (int k = 0; k < 3; k++) norms[k] = dc_malloc((size_t)C * sizeof(double));
    dc_rng r = dc_rng_make(99);
    /* counts from an exponential profile over a SHUFFLED class order (the plot must sort them) */
    int *perm = dc_malloc((size_t)C * sizeof(int));
    for (int j = 0; j < C; j++) perm[j] = j;
    for (int j = C - 1; j > 0; j--) {
        int k = (int)dc_rng_below(&r, (uint64_t)j + 1), t = perm[j];
        perm[j] = perm[k];
        perm[k] = t;
    }
    for (int j = 0; j < C; j++) {
        int rank = perm[j];
        counts[j] = lt_count(rank, C, 1280, 256);
        double u = (double)rank / C, noise = (dc_rng_uniform_d(&r) - 0.5) * 0.3;
        acc[0][j] = fmin(1, fmax(0, 0.75 - 0.7 * u + noise));                     /* joint: falls steeply */
        acc[1][j] = fmin(1, fmax(0, 0.62 - 0.25 * u + noise));                    /* cRT: flatter */
        acc[2][j] = fmin(1, fmax(0, 0.64 - 0.28 * u + noise));                    /* LWS */
        acc[3][j] = j % 97 == 0 ? NAN : fmin(1, fmax(0, 0.55 - 0.2 * u + noise)); /* NCM, some missing */
        norms[0][j] = 1.2 + 0.35 * log((double)counts[j]) + 0.05 * noise;
        norms[1][j] = pow(norms[0][j], 0.3);
        norms[2][j] = norms[0][j] * (1.6 - 0.1 * log((double)counts[j]));
    }
    dc_svg_series s[4] = {{"joint", acc[0]}, {"cRT", acc[1]}, {"LWS", acc[2]}, {"NCM", acc[3]}};
    memfile m;
    char title[64];
    snprintf(title, sizeof title, "Per-class accuracy, C = %d", C);
    REQUIRE(dc_svg_per_class_accuracy(mem_open(&m), title, counts, C, s, 4) == DC_OK);
    fclose(m.fp);
    const char *must[] = {"joint", "cRT", "LWS", "NCM", "many", "medium", "few", "each point is the mean"};
    expect_good(tag, m.buf, must, 8);
    xml_report rep;
    check_xml(m.buf, &rep);
    EXPECTF(rep.polygons == 1 && rep.rects < 20, "%s: count backdrop %d polygons %d rects", tag, rep.polygons,
            rep.rects);
    EXPECTF(m.len < 200000, "%s: %zu bytes", tag, m.len);
    EXPECTF(rep.circles < 4 * 80, "%s: %d markers (aggregated)", tag, rep.circles);
    char name[64];
    snprintf(name, sizeof name, "accuracy_c%d.svg", C);
    dump(name, m.buf);
    free(m.buf);

    dc_svg_series sn[3] = {{"joint", norms[0]}, {"tau-norm (\xcf\x84 = 0.7)", norms[1]}, {"LWS", norms[2]}};
    snprintf(title, sizeof title, "Classifier weight norms, C = %d", C);
    REQUIRE(dc_svg_class_norms(mem_open(&m), title, counts, C, sn, 3) == DC_OK);
    fclose(m.fp);
    const char *must2[] = {"joint", "tau-norm (\xcf\x84 = 0.7)", "LWS"};
    expect_good(tag, m.buf, must2, 3);
    snprintf(name, sizeof name, "norms_c%d.svg", C);
    dump(name, m.buf);
    free(m.buf);

    /* a sweep from plain arrays, with an empty group (NaN) */
    double tau[21], mi[21], ma[21], many[21], med[21], few[21];
    for (int k = 0; k < 21; k++) {
        tau[k] = k * 0.1;
        double t = tau[k];
        many[k] = 0.65 - 0.08 * t * t;
        med[k] = 0.40 + 0.1 * t - 0.04 * t * t;
        few[k] = 0.08 + 0.2 * t;
        ma[k] = (many[k] + med[k] + few[k]) / 3;
        mi[k] = 0.5 * many[k] + 0.35 * med[k] + 0.15 * few[k];
    }
    few[0] = NAN;
    dc_svg_sweep sw = {21, tau, mi, ma, many, med, few, 14, "tau-norm"};
    REQUIRE(dc_svg_tau_sweep(mem_open(&m), "tau-norm sweep", &sw) == DC_OK);
    fclose(m.fp);
    const char *must3[] = {"chosen \xcf\x84 = 1.40", "val macro"};
    expect_good("sweep arrays", m.buf, must3, 2);
    snprintf(name, sizeof name, "sweep_c%d.svg", C);
    dump(name, m.buf);
    free(m.buf);

    for (int k = 0; k < 4; k++) free(acc[k]);
    for (int k = 0; k < 3; k++) free(norms[k]);
    free(counts);
    free(perm);
}

static void test_checker_catches_errors(void) {
    /* the checker itself must reject broken documents, or the tests above prove nothing */
    xml_report r;
    check_xml("<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 1 1\"><g></svg>", &r);
    EXPECT(!r.ok);
    check_xml("<svg><text>a & b</text></svg>", &r);
    EXPECT(!r.ok);
    check_xml("<svg><circle cx=\"nan\"/></svg>", &r);
    EXPECT(r.ok && r.bad_numbers == 1);
    check_xml("<svg x=1/>", &r);
    EXPECT(!r.ok);
    check_xml("<svg/><svg/>", &r);
    EXPECT(!r.ok);
    check_xml("<?xml version=\"1.0\"?>\n<svg a=\"&lt;\"><g/></svg>\n", &r);
    EXPECT(r.ok);
}

int main(void) {
    test_checker_catches_errors();
    test_small();
    test_large(1000, "C=1000");
    if (getenv("DC_SVG_DUMP")) test_large(8142, "C=8142");
    return tu_finish("test_svg");
}
