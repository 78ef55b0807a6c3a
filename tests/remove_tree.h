/*
 * remove_tree.h: rm -rf of a directory a test or fuzz target made, shared by testutil.h and
 * fuzz/fuzz_common.h. Symbolic links are removed, never followed.
 */
#ifndef DC_REMOVE_TREE_H
#define DC_REMOVE_TREE_H

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static inline void tu_remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    char p[1024];
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        int n = snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        if (n < 0 || (size_t)n >= sizeof p) continue; /* a path this long is not one a test made */
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            tu_remove_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

#endif /* DC_REMOVE_TREE_H */
