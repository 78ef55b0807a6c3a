/*
 * fuzz_config.c: libFuzzer target for the YAML config loader (core/config.c) and the --set overrides.
 *
 * Input: a YAML document, loaded with dc_config_load_buffer over the defaults. An input whose first byte is
 * NUL (never valid YAML) is instead a list of "--set" assignments, one per line, applied to the defaults with
 * dc_config_set. Either way, a config that loads is then:
 *   - hashed (dc_config_hash) and validated (dc_config_validate);
 *   - if valid (programs write log_dir/config.yaml only after validation), written with dc_config_write
 *     and loaded back into fresh defaults; the reloaded config must write the identical text and have the
 *     same hash: the writer's promise that log_dir/config.yaml "loads back to the identical struct",
 *     checked on whatever valid config the loader accepts.
 * A failed load must leave the config untouched (config.c applies the document to a copy).
 */
#include "core/check.h"
#include "core/config.h"
#include "tests/fuzz/fuzz_common.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    FUZZ_ASSERT(f != NULL);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    FUZZ_ASSERT(buf && fread(buf, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    buf[n] = '\0';
    *len = (size_t)n;
    return buf;
}

/* The written config reloads to a config that writes the same text. */
static void check_round_trip(const dc_config *cfg) {
    char p1[300], p2[300];
    fuzz_path(p1, sizeof p1, "written.yaml");
    fuzz_path(p2, sizeof p2, "rewritten.yaml");
    if (dc_config_write(cfg, p1) != DC_OK) {
        fprintf(stderr, "dc_config_write failed: %s\n", dc_last_error());
        abort();
    }
    static dc_config back;
    dc_config_defaults(&back);
    if (dc_config_load(&back, p1) != DC_OK) {
        fprintf(stderr, "the written config does not load back: %s\n", dc_last_error());
        abort();
    }
    FUZZ_ASSERT(dc_config_write(&back, p2) == DC_OK);
    size_t n1, n2;
    char *t1 = slurp(p1, &n1), *t2 = slurp(p2, &n2);
    if (n1 != n2 || memcmp(t1, t2, n1) != 0) {
        fprintf(stderr, "config changed in a write/load round trip:\n--- written\n%s\n--- reloaded\n%s\n", t1,
                t2);
        abort();
    }
    free(t1);
    free(t2);
    FUZZ_ASSERT(dc_config_hash(cfg) == dc_config_hash(&back));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static dc_config cfg, before;
    dc_config_defaults(&cfg);
    int rc;
    if (size > 0 && data[0] == 0) {
        /* --set lines */
        char *text = malloc(size);
        FUZZ_ASSERT(text != NULL);
        memcpy(text, data + 1, size - 1);
        text[size - 1] = '\0';
        rc = DC_OK;
        char *save = NULL;
        for (char *line = strtok_r(text, "\n", &save); line && rc == DC_OK;
             line = strtok_r(NULL, "\n", &save)) {
            memcpy(&before, &cfg, sizeof cfg);
            rc = dc_config_set(&cfg, line);
            if (rc != DC_OK) {
                FUZZ_ASSERT(dc_last_error()[0] != '\0');
                FUZZ_ASSERT(memcmp(&before, &cfg, sizeof cfg) == 0);
            }
        }
        free(text);
    } else {
        memcpy(&before, &cfg, sizeof cfg);
        rc = dc_config_load_buffer(&cfg, (const char *)data, size, "fuzz.yaml");
        if (rc != DC_OK) {
            /* every message names the source */
            FUZZ_ASSERT(strncmp(dc_last_error(), "fuzz.yaml", 9) == 0);
            FUZZ_ASSERT(memcmp(&before, &cfg, sizeof cfg) == 0);
        }
    }
    if (rc != DC_OK) return 0;
    (void)dc_config_hash(&cfg);
    /* programs write log_dir/config.yaml only after validation; an invalid config need not survive */
    if (dc_config_validate(&cfg) == DC_OK) check_round_trip(&cfg);
    return 0;
}
