/*
 * test_shipped_configs.c: every YAML file under configs/ loads, validates, and round-trips through
 * dc_config_write, so a shipped config can never rot silently.
 */
#define _GNU_SOURCE
#include "core/check.h"
#include "core/config.h"
#include "testutil.h"

#include <dirent.h>
#include <unistd.h>
#include <stdio.h>
#include <string.h>

static int n_checked = 0;

static void check_dir(const char *dir) {
    DIR *d = opendir(dir);
    REQUIRE(d != NULL);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t n = strlen(e->d_name);
        if (e->d_type == DT_DIR) {
            check_dir(path);
            continue;
        }
        if (n < 6 || strcmp(e->d_name + n - 5, ".yaml")) continue;
        dc_config cfg;
        dc_config_defaults(&cfg);
        int ok = dc_config_load(&cfg, path) == DC_OK && dc_config_validate(&cfg) == DC_OK;
        EXPECTF(ok, "%s: %s", path, dc_last_error());
        if (ok) {
            char out[] = "/tmp/dc_shipped_XXXXXX";
            int fd = mkstemp(out);
            REQUIRE(fd >= 0);
            close(fd);
            dc_config again;
            dc_config_defaults(&again);
            EXPECTF(dc_config_write(&cfg, out) == DC_OK && dc_config_load(&again, out) == DC_OK &&
                        dc_config_hash(&again) == dc_config_hash(&cfg),
                    "%s: the written config does not read back identically", path);
            remove(out);
        }
        n_checked++;
    }
    closedir(d);
}

int main(void) {
    check_dir(DC_SOURCE_DIR "/configs");
    printf("%d shipped configs checked\n", n_checked);
    REQUIRE(n_checked >= 10);
    return tu_finish("test_shipped_configs");
}
