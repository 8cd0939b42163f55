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
 * (the whole blocks of a file of 64 KiB or more are written past the page
 * cache, with O_DIRECT: write_direct below says why), so a reader (a download,
 * the start-up sweep, the cache's adoption) never sees half a file under a
 * final name, and the caller may then commit the record that points at PATH. A
 * link (od_file_link) gives a second name to a durable file the same way (link
 * to PATH.tmp, rename, fsync the directory). Reads retry short reads and EINTR.
 *
 * The folder's fsync is shared (a group commit, as the job store's WAL
 * sync): a rename is durable once an fsync of its folder that began after
 * it has returned, so a thread whose rename is covered by an fsync already
 * running waits for the next one, and that one covers every rename made
 * while it waited. Concurrent uploads (and the committer threads' models)
 * then share one fsync of uploads/ (outputs/) instead of one each.
 *
 * Test hook: while the file named by ORFEAS_TEST_RENAME_PAUSE_FILE exists, a
 * durable write waits after its fdatasync and before its rename (the
 * service test that kills orfeasd in the middle of a model write uses it).
 * Never set it in production.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
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

int od_fs_space(const char *dir, uint64_t *free_bytes, int *read_only) {
  struct statvfs v;
  if (statvfs(dir, &v) != 0)
    return -1;
  *free_bytes = (uint64_t)v.f_bavail * v.f_frsize;
  if (read_only != NULL)
    *read_only = (v.f_flag & ST_RDONLY) != 0;
  return 0;
}

/* The shared fsync of one folder (the top). A few folders are ever synced
 * (uploads/, outputs/, a link's folder): past DIR_SLOTS, a plain fsync. */
#define DIR_SLOTS 8

typedef struct {
  char path[PATH_MAX];
  pthread_cond_t cv;
  uint64_t renamed; /* renames announced so far */
  uint64_t synced;  /* renames known durable */
  uint64_t failed;  /* renames whose covering fsync failed (up to) */
  int err;          /* that fsync's errno */
  int syncing;
} dir_slot;

static pthread_mutex_t dir_mu = PTHREAD_MUTEX_INITIALIZER;
static dir_slot dir_slots[DIR_SLOTS];
static int dir_nslots;

static dir_slot *slot_of(const char *dir) {
  for (int i = 0; i < dir_nslots; i++)
    if (strcmp(dir_slots[i].path, dir) == 0)
      return &dir_slots[i];
  if (dir_nslots == DIR_SLOTS || strlen(dir) >= PATH_MAX)
    return NULL;
  dir_slot *d = &dir_slots[dir_nslots++];
  snprintf(d->path, sizeof d->path, "%s", dir);
  pthread_cond_init(&d->cv, NULL);
  return d;
}

/* Makes every rename already done in dir durable (the top). */
static int dir_fsync_shared(const char *dir) {
  pthread_mutex_lock(&dir_mu);
  dir_slot *d = slot_of(dir);
  if (d == NULL) {
    pthread_mutex_unlock(&dir_mu);
    return od_dir_fsync(dir);
  }
  uint64_t ticket = ++d->renamed;
  int rc = 0;
  for (;;) {
    if (d->failed >= ticket) { /* an fsync meant to cover it failed */
      errno = d->err;
      rc = -1;
      break;
    }
    if (d->synced >= ticket)
      break;
    if (d->syncing) {
      pthread_cond_wait(&d->cv, &dir_mu);
      continue;
    }
    d->syncing = 1;
    uint64_t target = d->renamed;
    pthread_mutex_unlock(&dir_mu);
    int e = od_dir_fsync(dir) == 0 ? 0 : errno;
    pthread_mutex_lock(&dir_mu);
    d->syncing = 0;
    if (e == 0 && target > d->synced)
      d->synced = target;
    if (e != 0 && target > d->failed) {
      d->failed = target;
      d->err = e;
    }
    pthread_cond_broadcast(&d->cv);
  }
  pthread_mutex_unlock(&dir_mu);
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
  return durable ? dir_fsync_shared(dir) : 0;
}

/* Writes all of data at the file's offset; -1 with errno on failure
 * (ENOSPC for a write that took nothing). */
static int write_all(int fd, const uint8_t *data, size_t len) {
  size_t off = 0;
  while (off < len) {
    ssize_t n = write(fd, data + off, len - off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      if (n == 0)
        errno = ENOSPC;
      return -1;
    }
    off += (size_t)n;
  }
  return 0;
}

/* Files of at least DIRECT_MIN bytes (uploads, models) bypass the page
 * cache (O_DIRECT) for their whole 4 KiB blocks: from the data itself when
 * it is aligned to 4 KiB (the pipeline's large output buffers are), else
 * through a bounce buffer of DIRECT_CHUNK bytes so aligned (an upload's
 * part of its request body is not); the tail goes through the page cache,
 * and a durable write's fdatasync after covers both.
 *
 * Why: these files are kept, and a durable one must reach the disk at once
 * anyway. On the VMs this was measured on, a 2 MB file written through the
 * page cache and fdatasync'ed cost 3.5-5 ms of CPU when the file is kept
 * (fresh page-cache pages, delayed allocation, writeback in the caller),
 * against 0.2-0.3 ms with O_DIRECT (docs/performance.md, "Files past the
 * page cache"): a tenth of a job's CPU. Non-durable writes (the memory
 * store) take the same path so that the store_overhead bench compares the
 * stores, not two ways of writing files. The price: the file is not in the
 * page cache afterwards, so its first read (a download, a worker that lost
 * the decoded pixels) reads the disk. A file system that refuses O_DIRECT
 * (EINVAL at open, or at the first write for a block size over 4 KiB)
 * gets the buffered write, from where it stopped. */
#define DIRECT_MIN (64u << 10)
#define DIRECT_ALIGN 4096u
#define DIRECT_CHUNK (1u << 20)

/* The whole blocks of data written with O_DIRECT on fd (opened with it),
 * then O_DIRECT cleared; *done = the bytes written. -1 with errno on a
 * failure other than the file system refusing O_DIRECT. */
static int write_direct(int fd, const uint8_t *data, size_t len, size_t *done) {
  size_t whole = len & ~(size_t)(DIRECT_ALIGN - 1);
  size_t off = 0;
  void *bounce = NULL;
  int rc = 0;
  /* An aligned source (the pipeline's models) is written as it is; any
   * other is copied through the bounce buffer. */
  int aligned = ((uintptr_t)data & (DIRECT_ALIGN - 1)) == 0;
  size_t chunk = aligned || whole < DIRECT_CHUNK ? whole : DIRECT_CHUNK;
  if (!aligned && posix_memalign(&bounce, DIRECT_ALIGN, chunk) != 0)
    bounce = NULL; /* all of it buffered below */
  while ((aligned || bounce != NULL) && off < whole) {
    size_t n = whole - off < chunk ? whole - off : chunk;
    const void *src = data + off;
    if (!aligned)
      src = memcpy(bounce, data + off, n);
    ssize_t w = pwrite(fd, src, n, (off_t)off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0 && errno == EINVAL)
      break; /* not for this file system: the rest buffered */
    if (w <= 0) {
      if (w == 0)
        errno = ENOSPC;
      rc = -1;
      break;
    }
    /* A short direct write ends on a block boundary or at an error the
     * next call reports. */
    off += (size_t)w & ~(size_t)(DIRECT_ALIGN - 1);
    if ((size_t)w % DIRECT_ALIGN != 0)
      break;
  }
  int e = errno;
  free(bounce);
  int fl = fcntl(fd, F_GETFL);
  if (rc == 0 && (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_DIRECT) != 0 ||
                  lseek(fd, (off_t)off, SEEK_SET) < 0)) {
    rc = -1;
    e = errno;
  }
  *done = off;
  errno = e;
  return rc;
}

int od_file_write_opt(const char *path, const uint8_t *data, size_t len,
                      int durable) {
  char tmp[PATH_MAX + 8];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
    errno = ENAMETOOLONG;
    return -1;
  }
  int flags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC;
  /* A fresh inode, never a leftover PATH.tmp opened in place: one that is a
   * hard link (a link whose rename found both names on one file leaves its
   * PATH.tmp behind: od_file_link) would be truncated and rewritten under
   * every other name it has, finished models and cache entries. */
  if (unlink(tmp) != 0 && errno != ENOENT)
    return -1;
  int direct = len >= DIRECT_MIN;
  int fd = direct ? open(tmp, flags | O_DIRECT, 0600) : -1;
  if (fd < 0 && (!direct || errno == EINVAL)) {
    direct = 0;
    fd = open(tmp, flags, 0600);
  }
  if (fd < 0)
    return -1;
  size_t off = 0;
  int rc = direct ? write_direct(fd, data, len, &off) : 0;
  if (rc == 0)
    rc = write_all(fd, data + off, len - off);
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
  /* path already names src's file (a job generated again with the
   * parameters it had: the cache's entry is its own model): nothing to do.
   * Linked anyway, rename() would find both names on one inode, do
   * nothing and leave PATH.tmp, a hard link to the model, behind. */
  struct stat a, b;
  if (stat(src, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
      a.st_ino == b.st_ino)
    return 0;
  unlink(tmp); /* a leftover of an interrupted link */
  if (link(src, tmp) == 0) {
    int rc = commit_name(tmp, path, durable);
    unlink(tmp); /* still there only if path became src's file meanwhile */
    return rc;
  }
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
