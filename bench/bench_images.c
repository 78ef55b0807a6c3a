/*
 * bench_images.c: single-thread throughput of the image pipeline (JPEG decode + transform), images/s/core.
 *
 *   bench_images [options] DIR       every *.jpg / *.jpeg / *.JPEG in DIR (sorted by name)
 *     --passes N     passes over the folder (default 3); pass p, image i uses key (seed 0, epoch p, i)
 *     --size S       output size (default 224), --resize R eval resize (default 256)
 *     --eval         Resize(R) + CenterCrop(S) instead of the training augmentation
 *     --jitter J     ColorJitter(J, J, J) in training (default 0: the benchmark is crop + flip + normalise)
 *     --no-dct       decode at full size (no DCT-domain scaling), to measure what the scaling buys
 *     --no-partial   dc_jpeg_decode + dc_transform_apply instead of dc_jpeg_decode_transform (which decodes
 *                    only the RandomResizedCrop box), to measure what partial decoding buys
 *     --dump FILE    write the first pass's outputs (float32, N x 3 x S x S, file order) for comparisons
 *
 * The files are read into memory first, so disk speed is not measured (bench_images_torch.py does the same).
 * Prints one line "images/s: X" (images per CPU second of this single-threaded process, i.e. per core) that
 * bench/run_bench_images.sh parses, plus the decode/transform split and the wall-clock rate.
 */
#include "core/check.h"
#include "core/rng.h"
#include "datasets/image.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* CPU time of this process: the benchmark is single-threaded, so this is the time our core spent, and it is
 * far less disturbed than wall time when the machine is shared. */
static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double wall_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int is_jpeg_name(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot &&
           (!strcmp(dot, ".jpg") || !strcmp(dot, ".jpeg") || !strcmp(dot, ".JPEG") || !strcmp(dot, ".JPG"));
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct {
    uint8_t *data;
    size_t len;
    char *path;
} file_buf;

static int load_folder(const char *dir, file_buf **out, int *n_out) {
    DIR *d = opendir(dir);
    if (!d) return DC_ERR("%s: cannot open the folder", dir);
    char **names = NULL;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!is_jpeg_name(e->d_name)) continue;
        if (n == cap) names = realloc(names, sizeof(char *) * (size_t)(cap = cap ? 2 * cap : 256));
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    if (n == 0) return DC_ERR("%s: no .jpg files", dir);
    qsort(names, (size_t)n, sizeof(char *), cmp_str);
    file_buf *files = calloc((size_t)n, sizeof(file_buf));
    for (int i = 0; i < n; i++) {
        size_t plen = strlen(dir) + strlen(names[i]) + 2;
        files[i].path = malloc(plen);
        snprintf(files[i].path, plen, "%s/%s", dir, names[i]);
        free(names[i]);
        FILE *f = fopen(files[i].path, "rb");
        if (!f) return DC_ERR("%s: cannot open", files[i].path);
        fseek(f, 0, SEEK_END);
        long len = ftell(f);
        fseek(f, 0, SEEK_SET);
        files[i].data = malloc(len > 0 ? (size_t)len : 1);
        files[i].len = fread(files[i].data, 1, (size_t)len, f);
        fclose(f);
    }
    free(names);
    *out = files;
    *n_out = n;
    return DC_OK;
}

int main(int argc, char **argv) {
    int passes = 3, size = 224, resize = 256, eval = 0, no_dct = 0, no_partial = 0;
    float jitter = 0.0f;
    const char *dir = NULL, *dump = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--passes") && i + 1 < argc)
            passes = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--size") && i + 1 < argc)
            size = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--resize") && i + 1 < argc)
            resize = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--jitter") && i + 1 < argc)
            jitter = (float)atof(argv[++i]);
        else if (!strcmp(argv[i], "--dump") && i + 1 < argc)
            dump = argv[++i];
        else if (!strcmp(argv[i], "--eval"))
            eval = 1;
        else if (!strcmp(argv[i], "--no-dct"))
            no_dct = 1;
        else if (!strcmp(argv[i], "--no-partial"))
            no_partial = 1;
        else if (argv[i][0] != '-' && !dir)
            dir = argv[i];
        else {
            fprintf(stderr,
                    "usage: %s [--passes N] [--size S] [--resize R] [--eval] [--jitter J] [--no-dct] "
                    "[--no-partial] [--dump FILE] DIR\n",
                    argv[0]);
            return 2;
        }
    }
    if (!dir || passes < 1 || size < 1) {
        fprintf(stderr, "usage: %s [options] DIR (see the comment at the top of bench/bench_images.c)\n",
                argv[0]);
        return 2;
    }
    file_buf *files = NULL;
    int n = 0;
    DC_CHECK_OK(load_folder(dir, &files, &n), "pass a folder of JPEG files");

    dc_training_opt opt;
    memset(&opt, 0, sizeof opt);
    opt.augment = DC_AUG_IMAGENET;
    opt.image_size = size;
    opt.resize_size = resize;
    opt.in_channels = 3;
    opt.hflip = 1;
    opt.color_jitter = jitter;
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    for (int c = 0; c < 3; c++) opt.mean[c] = mean[c], opt.std[c] = std[c];
    dc_transform t;
    dc_transform_from_config(&opt, &t);
    const int train = !eval;
    const int min_side = no_dct ? 0 : dc_transform_min_side(&t, train);

    /* scratch sized once for the largest stored image (decoded sizes are never larger) */
    dc_image biggest = {0, 0, 3, NULL, 0};
    for (int i = 0; i < n; i++) {
        int w, h, c;
        DC_CHECK_OK(dc_jpeg_info(files[i].data, files[i].len, files[i].path, &w, &h, &c),
                    "a JPEG is unreadable");
        if (w > biggest.w) biggest.w = w;
        if (h > biggest.h) biggest.h = h;
    }
    size_t scratch_bytes = dc_transform_scratch_bytes(&t, &biggest);
    void *scratch = malloc(scratch_bytes);
    const size_t per = (size_t)3 * size * size;
    float *out = malloc(per * sizeof(float));
    FILE *dump_f = dump ? fopen(dump, "wb") : NULL;
    if (dump && !dump_f) dc_fatal("%s: cannot write", dump);

    dc_image img = {0};
    double t_decode = 0, t_transform = 0, checksum = 0;
    long decoded_pixels = 0;
    double t0 = cpu_s(), w0 = wall_s();
    for (int pass = 0; pass < passes; pass++)
        for (int i = 0; i < n; i++) {
            double a = cpu_s(), b;
            uint64_t key = dc_rng_key(0, DC_RNG_AUGMENT, (uint64_t)pass, (uint64_t)i);
            if (no_partial || no_dct) {
                DC_CHECK_OK(dc_jpeg_decode(files[i].data, files[i].len, files[i].path, min_side, 3, &img),
                            "decode");
                b = cpu_s();
                DC_CHECK_OK(dc_transform_apply(&t, &img, train, key, out, scratch), "transform");
            } else { /* the fast path: decode only what the transform reads */
                DC_CHECK_OK(dc_jpeg_decode_transform(files[i].data, files[i].len, files[i].path, &t, train,
                                                     key, &img, &scratch, &scratch_bytes, out),
                            "decode + transform");
                b = cpu_s();
            }
            double c = cpu_s();
            t_decode += b - a;
            t_transform += c - b;
            decoded_pixels += (long)img.w * img.h;
            checksum += out[(size_t)(i * 7919) % per];
            if (dump_f && pass == 0) fwrite(out, sizeof(float), per, dump_f);
        }
    double total = cpu_s() - t0, wall = wall_s() - w0;
    if (dump_f) fclose(dump_f);
    long count = (long)passes * n;
    printf(
        "bench_images: %d files x %d passes, %s, %dx%d, DCT scaling %s (min_side %d), mean decoded %.0f px\n",
        n, passes,
        eval ? "eval Resize+CenterCrop" : (jitter > 0 ? "train RRC+flip+jitter" : "train RRC+flip"), size,
        size, no_dct ? "off" : "on", min_side, (double)decoded_pixels / count);
    if (no_partial || no_dct)
        printf("decode %.3f ms/image, transform %.3f ms/image (checksum %.4f)\n", 1e3 * t_decode / count,
               1e3 * t_transform / count, checksum);
    else
        printf("decode + transform %.3f ms/image, partial decoding (checksum %.4f)\n", 1e3 * t_decode / count,
               checksum);
    printf("wall clock: %.1f images/s\n", count / wall);
    printf("images/s: %.1f\n", count / total); /* per CPU second: images/s/core */
    for (int i = 0; i < n; i++) free(files[i].data), free(files[i].path);
    free(files), free(scratch), free(out);
    dc_image_free(&img);
    return 0;
}
