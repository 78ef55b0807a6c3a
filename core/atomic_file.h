/*
 * atomic_file.h: crash-safe file replacement.
 *
 * Checkpoints, results and arrays are written to a temporary file next to the target ("<path>.tmp.<pid>",
 * same directory, hence same filesystem), flushed to disk, and only then renamed over the target; finally the
 * directory is fsynced so the rename itself is durable. rename() is atomic on POSIX filesystems, so a reader
 * (or a restart after a crash or a full disk) sees either the complete old file or the complete new one,
 * never a mixture or a truncated file. Any failure removes the temporary file and leaves the old file alone.
 *
 * Every error (ENOSPC, EFBIG, EACCES, EROFS, a missing directory, ...) returns DC_FAIL with a message naming
 * the target path and strerror(errno).
 *
 * Streaming use:
 *     dc_atomic_file h;
 *     FILE *fp = dc_atomic_open(path, &h);
 *     if (!fp) return DC_FAIL;
 *     fwrite(..., fp); ...
 *     if (something_went_wrong) { dc_atomic_abort(&h); return DC_FAIL; }
 *     return dc_atomic_commit(&h);     // also reports any write error that happened during the fwrites
 *
 * The FILE is a glibc cookie stream over the temporary file's descriptor, so the errno of the first failing
 * write(2) is remembered and reported by dc_atomic_commit even though stdio buffers the writes. Do not fclose
 * the FILE yourself; commit or abort exactly once.
 */
#ifndef DC_ATOMIC_FILE_H
#define DC_ATOMIC_FILE_H

#include <stddef.h>
#include <stdio.h>

typedef struct {
    FILE *fp;       /* the stream to write to; NULL after commit/abort */
    char *path;     /* the final name */
    char *tmp_path; /* "<path>.tmp.<pid>" */
    void *state;    /* internal: descriptor and first write errno */
} dc_atomic_file;

/* Creates the temporary file and returns a stream to it (also in h->fp), or NULL after DC_ERR. */
FILE *dc_atomic_open(const char *path, dc_atomic_file *h);

/* fflush, fsync(file), fclose, rename(tmp, path), fsync(directory). On any failure the temporary file is
 * removed, the target is untouched (unless the failure was the final directory fsync, after the rename) and
 * DC_FAIL is returned. Releases the handle either way. */
int dc_atomic_commit(dc_atomic_file *h);

/* Closes and removes the temporary file; the target is untouched. Safe on a handle already released. */
void dc_atomic_abort(dc_atomic_file *h);

/* Whole buffer in one call. */
int dc_atomic_write(const char *path, const void *data, size_t len);

#endif /* DC_ATOMIC_FILE_H */
