/* body.c: where a request body waits while it arrives.
 *
 * An upload (up to --max-upload-mb) with a declared length of at most an
 * eighth of --body-memory-mb waits in memory while that budget has room
 * (edge.c): the buffer is allocated at the headers and filled as the
 * chunks come. Any other upload goes to a temporary file, DATA/tmp/body-*,
 * written as the chunks come: a client that sends most of a big body and
 * stops holds disk (within --max-body-inflight-mb) and a file descriptor,
 * not memory; so do slow clients once the memory budget is taken, and
 * every upload with --body-memory-mb 0. Why both: a file costs an
 * ordinary 1 MB upload a create, a copy into the page cache, ~20 page
 * faults of its mapping, an unmap (a TLB shootdown on every core) and an
 * unlink (which, on ext4, later file creations pay for): ~0.3 ms of CPU per
 * job (docs/performance.md). When the body is complete a file is mapped
 * read-only for the handler (the multipart parser, the image check and the
 * SHA-256 read either kind in place), and the memory, the mapping, the
 * descriptor and the file go when the request completes, however it ends
 * (MHD calls the completion callback for aborted and timed-out requests
 * too). A crash leaves files behind: start-up deletes every body-* file in
 * DATA/tmp (od_body_sweep).
 *
 * Every other body (the JSON of generate-3d) is small (--max-json-kb) and
 * stays in memory.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "orfeasd.h"

#define BODY_PREFIX "body-"

void od_body_init(od_body *b) {
  memset(b, 0, sizeof *b);
  b->fd = -1;
}

int od_body_to_memory(od_body *b, size_t n) {
  b->mem = malloc(n ? n : 1);
  if (b->mem == NULL) {
    errno = ENOMEM;
    return -1;
  }
  b->cap = n;
  return 0;
}

int od_body_to_file(od_body *b, const char *tmp_dir) {
  int n =
      snprintf(b->path, sizeof b->path, "%s/" BODY_PREFIX "XXXXXX", tmp_dir);
  if (n < 0 || (size_t)n >= sizeof b->path) {
    b->path[0] = '\0';
    errno = ENAMETOOLONG;
    return -1;
  }
  b->fd = mkostemp(b->path, O_CLOEXEC);
  if (b->fd < 0) {
    int e = errno;
    b->path[0] = '\0';
    errno = e;
    return -1;
  }
  return 0;
}

int od_body_append(od_body *b, const void *data, size_t n) {
  if (b->fd >= 0) {
    const char *p = data;
    while (n > 0) {
      ssize_t w = write(b->fd, p, n);
      if (w < 0) {
        if (errno == EINTR)
          continue;
        return -1;
      }
      p += w;
      n -= (size_t)w;
      b->len += (size_t)w;
    }
    return 0;
  }
  if (b->len + n > b->cap) {
    size_t nc = b->cap ? b->cap : 4096;
    while (nc < b->len + n)
      nc *= 2;
    uint8_t *nb = realloc(b->mem, nc);
    if (nb == NULL) {
      errno = ENOMEM;
      return -1;
    }
    b->mem = nb;
    b->cap = nc;
  }
  memcpy(b->mem + b->len, data, n);
  b->len += n;
  return 0;
}

const uint8_t *od_body_data(od_body *b) {
  if (b->fd < 0 || b->len == 0)
    return b->mem;
  if (b->map == NULL) {
    void *m = mmap(NULL, b->len, PROT_READ, MAP_PRIVATE, b->fd, 0);
    if (m == MAP_FAILED)
      return NULL;
    b->map = m;
  }
  return b->map;
}

void od_body_free(od_body *b) {
  if (b->map != NULL)
    munmap(b->map, b->len);
  if (b->fd >= 0)
    close(b->fd);
  if (b->path[0])
    unlink(b->path);
  free(b->mem);
  od_body_init(b);
}

int od_body_sweep(const char *tmp_dir, int *removed, char *err,
                  size_t err_len) {
  *removed = 0;
  if (mkdir(tmp_dir, 0700) != 0 && errno != EEXIST) {
    snprintf(err, err_len, "cannot create the upload folder %s: %s", tmp_dir,
             strerror(errno));
    return -1;
  }
  DIR *d = opendir(tmp_dir);
  if (d == NULL) {
    snprintf(err, err_len, "cannot read the upload folder %s: %s", tmp_dir,
             strerror(errno));
    return -1;
  }
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (strncmp(de->d_name, BODY_PREFIX, sizeof BODY_PREFIX - 1) != 0)
      continue;
    if (unlinkat(dirfd(d), de->d_name, 0) == 0)
      (*removed)++;
  }
  closedir(d);
  return 0;
}
