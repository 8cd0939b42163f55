/* fileio.c: whole-file reads and crash-safe writes, shared by the job store
 * (uploads, models) and the cache's disk tier.
 *
 * A durable write (od_file_write) is the order a crash can never undo
 * halfway (issue #11, docs/api.md "Restarts"):
 *
 *   PATH.tmp: open, write all, fdatasync, close
 *   rename PATH.tmp -> PATH        (atomic: PATH is the old or the new file)
 *   fsync the directory            (the rename itself survives power loss)
 *
 * so a reader (a download, the start-up sweep, the cache's adoption) never
 * sees half a file under a final name, and the caller may then commit the
 * record that points at PATH. A link (od_file_link) gives a second name to
 * a durable file the same way (link to PATH.tmp, rename, fsync the
 * directory). Reads retry short reads and EINTR.
 *
 * Test hook: while the file named by ORFEAS_TEST_RENAME_PAUSE_FILE exists, a
 * durable write waits after its fdatasync and before its rename (the
 * service test that kills orfeasd in the middle of a model write uses it).
 * Never set it in production.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "orfeasd.h"

/* The folder part of path into dir ("." when there is none). */
static void dir_of(const char *path, char *dir, size_t len) {
  const char *slash = strrchr(path, '/');
  if (slash == NULL)
    snprintf(dir, len, ".");
  else if (slash == path)
    snprintf(dir, len, "/");
  else
    snprintf(dir, len, "%.*s", (int)(slash - path), path);
}

int od_dir_fsync(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  int rc = fsync(fd);
  int e = errno;
  close(fd);
  errno = e;
  return rc;
}

static void test_pause(void) {
  const char *p = getenv("ORFEAS_TEST_RENAME_PAUSE_FILE");
  while (p != NULL && p[0] != '\0' && access(p, F_OK) == 0) {
    struct timespec ts = {0, 20 * 1000000};
    nanosleep(&ts, NULL);
  }
}

/* Renames tmp over path and makes the rename durable; on failure tmp is
 * removed and errno kept. */
static int commit_name(const char *tmp, const char *path, int durable) {
  char dir[PATH_MAX];
  dir_of(path, dir, sizeof dir);
  if (durable)
    test_pause();
  if (rename(tmp, path) != 0) {
    int e = errno;
    unlink(tmp);
    errno = e;
    return -1;
  }
  return durable ? od_dir_fsync(dir) : 0;
}

int od_file_write_opt(const char *path, const uint8_t *data, size_t len,
                      int durable) {
  char tmp[PATH_MAX + 8];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
    errno = ENAMETOOLONG;
    return -1;
  }
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    return -1;
  size_t off = 0;
  int rc = 0;
  while (off < len && rc == 0) {
    ssize_t n = write(fd, data + off, len - off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      if (n == 0)
        errno = ENOSPC;
      rc = -1;
    } else {
      off += (size_t)n;
    }
  }
  if (rc == 0 && durable && fdatasync(fd) != 0)
    rc = -1;
  int e = errno;
  if (close(fd) != 0 && rc == 0) {
    rc = -1;
    e = errno;
  }
  if (rc != 0) {
    unlink(tmp);
    errno = e;
    return -1;
  }
  return commit_name(tmp, path, durable);
}

int od_file_write(const char *path, const uint8_t *data, size_t len) {
  return od_file_write_opt(path, data, len, 1);
}

int od_file_link(const char *src, const char *path, int durable) {
  char tmp[PATH_MAX + 8];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
    errno = ENAMETOOLONG;
    return -1;
  }
  unlink(tmp); /* a leftover of an interrupted link */
  if (link(src, tmp) == 0)
    return commit_name(tmp, path, durable);
  if (errno != EXDEV && errno != EPERM && errno != EMLINK)
    return -1;
  /* Another file system, or one without hard links: a copy. */
  size_t len = 0;
  uint8_t *data = od_file_read(src, &len);
  if (data == NULL)
    return -1;
  int rc = od_file_write_opt(path, data, len, durable);
  int e = errno;
  free(data);
  errno = e;
  return rc;
}

uint8_t *od_file_read(const char *path, size_t *len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return NULL;
  struct stat st;
  uint8_t *buf = NULL;
  if (fstat(fd, &st) == 0 && st.st_size >= 0 &&
      (buf = malloc((size_t)st.st_size + 1)) != NULL) {
    size_t got = 0;
    while (got < (size_t)st.st_size) {
      ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        break;
      got += (size_t)n;
    }
    if (got != (size_t)st.st_size) {
      free(buf);
      buf = NULL;
    } else {
      *len = got;
    }
  }
  close(fd);
  return buf;
}
