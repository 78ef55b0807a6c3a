/*
 * atomic_file.c: write-to-temporary, fsync, rename (see atomic_file.h for the guarantees).
 *
 * Why a cookie stream instead of fdopen: stdio buffers writes, so the write(2) that hits ENOSPC or EFBIG may
 * happen inside some fwrite long before the caller checks anything, and by then errno has been overwritten.
 * Our own write callback records the first failing errno, so the commit can say *why* the write failed.
 */
#define _GNU_SOURCE /* fopencookie */
#include "atomic_file.h"

#include "check.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    int fd;
    int write_errno; /* first errno from a failed write, 0 if none */
} atomic_state;

static ssize_t cookie_write(void *cookie, const char *buf, size_t n) {
    atomic_state *st = cookie;
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(st->fd, buf + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            if (!st->write_errno) st->write_errno = w < 0 ? errno : EIO;
            /* glibc marks the stream as failed when fewer than n bytes are reported; -1 stops its retry loop
             */
            return done > 0 ? (ssize_t)done : -1;
        }
        done += (size_t)w;
    }
    return (ssize_t)n;
}

static int cookie_close(void *cookie) {
    atomic_state *st = cookie;
    int rc = 0;
    if (st->fd >= 0) rc = close(st->fd);
    st->fd = -1;
    return rc;
}

static char *dup_string(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = dc_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static void release(dc_atomic_file *h) {
    free(h->path);
    free(h->tmp_path);
    free(h->state);
    memset(h, 0, sizeof *h);
}

FILE *dc_atomic_open(const char *path, dc_atomic_file *h) {
    memset(h, 0, sizeof *h);
    if (!path || !path[0]) {
        DC_ERR("atomic write: empty output path");
        return NULL;
    }
    size_t n = strlen(path);
    if (path[n - 1] == '/') {
        DC_ERR("%s: cannot write a file: the path names a directory", path);
        return NULL;
    }
    h->path = dup_string(path);
    h->tmp_path = dc_malloc(n + 32);
    h->state = dc_malloc(sizeof(atomic_state));
    if (!h->path || !h->tmp_path || !h->state) {
        release(h);
        return NULL;
    }
    snprintf(h->tmp_path, n + 32, "%s.tmp.%ld", path, (long)getpid());
    atomic_state *st = h->state;
    st->write_errno = 0;
    st->fd = open(h->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (st->fd < 0) {
        int e = errno;
        DC_ERR("%s: cannot create the temporary file %s: %s", path, h->tmp_path, strerror(e));
        release(h);
        return NULL;
    }
    cookie_io_functions_t io = {.read = NULL, .write = cookie_write, .seek = NULL, .close = cookie_close};
    h->fp = fopencookie(st, "w", io);
    if (!h->fp) {
        int e = errno;
        close(st->fd);
        unlink(h->tmp_path);
        DC_ERR("%s: cannot open a stream on %s: %s", path, h->tmp_path, strerror(e));
        release(h);
        return NULL;
    }
    setvbuf(h->fp, NULL, _IOFBF, 1 << 16);
    return h->fp;
}

void dc_atomic_abort(dc_atomic_file *h) {
    if (h->fp) fclose(h->fp); /* closes the descriptor through cookie_close */
    if (h->tmp_path) unlink(h->tmp_path);
    release(h);
}

/* Fails with "path: <step>: strerror(e) (path was not modified)", after removing the temporary file. */
static int fail_before_rename(dc_atomic_file *h, const char *step, int e) {
    DC_ERR("%s: %s: %s (%s was not modified)", h->path, step, strerror(e), h->path);
    if (h->fp) fclose(h->fp);
    h->fp = NULL;
    unlink(h->tmp_path);
    release(h);
    return DC_FAIL;
}

/* fsync the directory holding path, so the new directory entry survives a power loss. Filesystems that
 * cannot fsync directories answer EINVAL; that is not an error for us. */
static int sync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir;
    if (!slash)
        dir = dup_string(".");
    else if (slash == path)
        dir = dup_string("/");
    else {
        dir = dc_malloc((size_t)(slash - path) + 1);
        if (dir) {
            memcpy(dir, path, (size_t)(slash - path));
            dir[slash - path] = '\0';
        }
    }
    if (!dir) return DC_FAIL;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        DC_ERR("%s: written, but cannot open its directory %s to fsync it: %s", path, dir, strerror(e));
        free(dir);
        return DC_FAIL;
    }
    int rc = DC_OK;
    if (fsync(fd) != 0 && errno != EINVAL && errno != ENOTSUP) {
        int e = errno;
        rc = DC_ERR("%s: written, but fsync of its directory %s failed: %s", path, dir, strerror(e));
    }
    close(fd);
    free(dir);
    return rc;
}

int dc_atomic_commit(dc_atomic_file *h) {
    if (!h->fp) {
        release(h);
        return DC_ERR("atomic write: commit on a handle that is not open");
    }
    atomic_state *st = h->state;
    int flush_rc = fflush(h->fp);
    int flush_errno = errno;
    if (st->write_errno) return fail_before_rename(h, "write failed", st->write_errno);
    if (flush_rc != 0 || ferror(h->fp))
        return fail_before_rename(h, "write failed", flush_errno ? flush_errno : EIO);
    if (fsync(st->fd) != 0) return fail_before_rename(h, "fsync failed", errno);
    FILE *fp = h->fp;
    h->fp = NULL;
    if (fclose(fp) != 0) return fail_before_rename(h, "close failed", errno);
    if (rename(h->tmp_path, h->path) != 0) {
        int e = errno;
        char step[64 + 4096];
        snprintf(step, sizeof step, "cannot rename %s over it", h->tmp_path);
        return fail_before_rename(h, step, e);
    }
    int rc = sync_parent_dir(h->path);
    release(h);
    return rc;
}

int dc_atomic_write(const char *path, const void *data, size_t len) {
    if (len > 0 && !data) return DC_ERR("%s: atomic write of %zu bytes from a NULL buffer", path, len);
    dc_atomic_file h;
    FILE *fp = dc_atomic_open(path, &h);
    if (!fp) return DC_FAIL;
    /* A short fwrite needs no separate branch: the failing write's errno is recorded in the stream state and
     * the commit reports it and removes the temporary file. */
    if (len > 0) (void)fwrite(data, 1, len, fp);
    return dc_atomic_commit(&h);
}
