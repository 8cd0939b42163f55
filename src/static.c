/* static.c: the Studio page and its files, served from --static-dir.
 *
 * GET / and /studio answer index.html; GET /static/PATH answers the file
 * PATH under the static folder. Nothing outside that folder can be reached:
 *
 *  - PATH is checked first (od_static_path_ok): components of
 *    [A-Za-z0-9._-] that do not start with a dot, no empty component, at
 *    most 8 deep and 255 bytes. "..", "%2e%2e", a NUL or a backslash never
 *    get past it (MHD has already percent-decoded the URL).
 *  - The file is then opened one component at a time from the folder's
 *    descriptor with openat(O_NOFOLLOW): a symbolic link anywhere inside
 *    the folder is refused, so one cannot point outside it. The folder
 *    itself is resolved once at start-up (realpath), so installing it
 *    behind a link is fine.
 *  - Only regular files are served (fstat after an O_NONBLOCK open, so a
 *    FIFO cannot hang a thread), and only types with a known Content-Type;
 *    anything else is 404.
 *
 * Headers: Content-Type from the extension, X-Content-Type-Options: nosniff
 * (od_respond, as on every answer), a strict Content-Security-Policy (scripts,
 * styles and connections from this origin only; no inline script or style, no
 * eval, no frames; an SVG gets a sandbox that runs no script, since opened
 * as a document it would run in this origin), and Cache-Control: a year and
 * immutable under vendor/NAME-VERSION/ (three.js: a new version is a new URL),
 * a minute for the page's own files. Every file carries an ETag and
 * Last-Modified (the file's mtime, or now for one dated ahead of this
 * clock), and the conditional requests are precond.c's: If-Match and
 * If-Unmodified-Since (412), If-None-Match (which alone decides when
 * present) and If-Modified-Since (304). No ranges here.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "orfeasd.h"

/* The page's policy. img-src blob: is the preview of the chosen image
 * (URL.createObjectURL); connect-src 'self' covers fetch() and the
 * WebSocket of this origin. */
const char OD_STATIC_CSP[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' blob: data:; connect-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'";

#define MAX_DEPTH 8
#define MAX_PATH_LEN 255

int od_static_path_ok(const char *p) {
  size_t n = strlen(p);
  if (n == 0 || n > MAX_PATH_LEN)
    return 0;
  int depth = 0;
  const char *c = p;
  for (;;) {
    /* One component: non-empty, no leading dot, plain characters. */
    if (*c == '.' || *c == '/' || *c == '\0')
      return 0;
    if (++depth > MAX_DEPTH)
      return 0;
    while (*c != '/' && *c != '\0') {
      char ch = *c++;
      if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
            (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
        return 0;
    }
    if (*c == '\0')
      return 1;
    c++; /* the slash; a trailing one leaves an empty component: refused */
  }
}

const char *od_static_type(const char *path) {
  static const struct {
    const char *ext, *type;
  } TYPES[] = {
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".json", "application/json"},
      {".map", "application/json"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".ico", "image/x-icon"},
      {".txt", "text/plain; charset=utf-8"},
  };
  const char *slash = strrchr(path, '/');
  const char *dot = strrchr(slash ? slash : path, '.');
  if (dot == NULL)
    return strcmp(slash ? slash + 1 : path, "LICENSE") == 0
               ? "text/plain; charset=utf-8"
               : NULL;
  for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++)
    if (strcmp(dot, TYPES[i].ext) == 0)
      return TYPES[i].type;
  return NULL;
}

int od_static_immutable(const char *path) {
  /* vendor/NAME-VERSION/...: a dash followed by a digit in the folder. */
  if (strncmp(path, "vendor/", 7) != 0)
    return 0;
  const char *dir = path + 7, *end = strchr(dir, '/');
  if (end == NULL)
    return 0;
  for (const char *c = dir; c + 1 < end; c++)
    if (*c == '-' && c[1] >= '0' && c[1] <= '9')
      return 1;
  return 0;
}

int od_static_open(int dirfd, const char *path, uint64_t *size, time_t *mtime) {
  if (dirfd < 0 || !od_static_path_ok(path))
    return -1;
  char comp[MAX_PATH_LEN + 1];
  int fd = dirfd;
  const char *c = path;
  for (;;) {
    const char *slash = strchr(c, '/');
    size_t n = slash ? (size_t)(slash - c) : strlen(c);
    memcpy(comp, c, n);
    comp[n] = '\0';
    int flags =
        O_RDONLY | O_NOFOLLOW | O_CLOEXEC | (slash ? O_DIRECTORY : O_NONBLOCK);
    int next = openat(fd, comp, flags);
    if (fd != dirfd)
      close(fd);
    if (next < 0)
      return -1;
    fd = next;
    if (slash == NULL)
      break;
    c = slash + 1;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return -1;
  }
  *size = (uint64_t)st.st_size;
  *mtime = st.st_mtime;
  return fd;
}

int od_static_init(od_service *svc, const char *exe, char *err,
                   size_t err_len) {
  svc->static_fd = -1;
  char cand[3][PATH_MAX];
  int ncand = 0;
  if (svc->cfg.static_dir[0] != '\0') {
    snprintf(cand[ncand++], PATH_MAX, "%s", svc->cfg.static_dir);
  } else if (exe != NULL) {
    /* Installed with the binary: build/static next to build/orfeasd
     * (build/tests/orfeasd_asan looks one folder up), or, installed as a
     * service, PREFIX/share/orfeas/static for PREFIX/bin/orfeasd. */
    char bin[PATH_MAX];
    if (realpath(exe, bin) != NULL) {
      char *slash = strrchr(bin, '/');
      if (slash != NULL) {
        *slash = '\0';
        snprintf(cand[ncand++], PATH_MAX, "%.*s/static", PATH_MAX - 16, bin);
        snprintf(cand[ncand++], PATH_MAX, "%.*s/../static", PATH_MAX - 16, bin);
        snprintf(cand[ncand++], PATH_MAX, "%.*s/../share/orfeas/static",
                 PATH_MAX - 32, bin);
      }
    }
  }
  for (int i = 0; i < ncand; i++) {
    char real[PATH_MAX];
    if (realpath(cand[i], real) == NULL)
      continue;
    int fd = open(real, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
      continue;
    struct stat st;
    if (fstatat(fd, "index.html", &st, AT_SYMLINK_NOFOLLOW) != 0 ||
        !S_ISREG(st.st_mode)) {
      close(fd);
      continue;
    }
    svc->static_fd = fd;
    snprintf(svc->static_path, sizeof svc->static_path, "%s", real);
    return 0;
  }
  if (svc->cfg.static_dir[0] != '\0') {
    snprintf(err, err_len,
             "--static-dir: %.200s is not a folder holding index.html (the "
             "Studio page: build/static after make)",
             svc->cfg.static_dir);
    return -1;
  }
  return 0; /* no page installed: / answers 404 with a hint */
}

void od_static_free(od_service *svc) {
  if (svc->static_fd >= 0)
    close(svc->static_fd);
  svc->static_fd = -1;
}

void od_static_headers(struct MHD_Response *resp, const char *type) {
  /* X-Content-Type-Options: nosniff is on every answer (od_respond). */
  if (type != NULL && strncmp(type, "text/html", 9) == 0) {
    MHD_add_response_header(resp, "Content-Security-Policy", OD_STATIC_CSP);
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    MHD_add_response_header(resp, "Referrer-Policy", "same-origin");
  } else if (type != NULL && strcmp(type, "image/svg+xml") == 0) {
    /* An SVG opened as a document (a link to /static/x.svg) is a page of
     * this origin and runs its <script>s: sandboxed, it runs none and
     * loads nothing. As an <img> or icon it never runs script anyway;
     * inline styles stay, as SVGs use them for drawing. */
    MHD_add_response_header(resp, "Content-Security-Policy",
                            "default-src 'none'; style-src 'unsafe-inline'; "
                            "sandbox");
  }
}

void od_static_serve(od_service *svc, struct MHD_Connection *conn, od_req *req,
                     const char *path) {
  if (svc->static_fd < 0) {
    od_respond_error(svc, conn, req, 404, "not_found",
                     "The Studio page is not installed here: build it with "
                     "make (build/static) or point --static-dir at it",
                     NULL);
    return;
  }
  const char *type = od_static_type(path);
  uint64_t size = 0;
  time_t mtime = 0;
  errno = 0;
  int fd = type ? od_static_open(svc->static_fd, path, &size, &mtime) : -1;
  if (fd < 0 && type && od_errno_is_fd_exhaustion(errno)) {
    od_respond_fd_exhausted(svc, conn, req, OD_FD_DOWNLOAD); /* not a 404 */
    return;
  }
  if (fd < 0) {
    od_respond_error(svc, conn, req, 404, "not_found", "File not found", NULL);
    return;
  }
  /* RFC 9110 13.2.2 (precond.c): If-Match and If-Unmodified-Since (412),
   * then If-None-Match, which decides alone when present (13.1.3), else
   * If-Modified-Since (304). No Range here: these files are small, and a
   * Range gets the whole file. */
  char etag[OD_ETAG_MAX];
  od_file_validators v;
  if (od_file_validators_of(fd, 0, etag, &v) != 0) {
    close(fd);
    od_respond_error(svc, conn, req, 404, "not_found", "File not found", NULL);
    return;
  }
  int immutable = od_static_immutable(path);
  od_file_plan plan;
  od_file_plan_for(svc, conn, &v, &plan);
  struct MHD_Response *resp = od_file_answer(svc, conn, req, fd, &v, &plan);
  if (resp == NULL)
    return;
  int status = plan.status;
  MHD_add_response_header(resp, "Content-Type", type);
  MHD_add_response_header(resp, "Cache-Control",
                          immutable ? "public, max-age=31536000, immutable"
                                    : "public, max-age=60");
  od_static_headers(resp, type);
  od_respond(conn, req, status, resp, plan.length);
}
