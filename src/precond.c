/* precond.c: conditional requests on files (RFC 9110 13): the entity tag of
 * a file, If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since,
 * and then Range (range.c), for the model downloads and the Studio's files.
 *
 * The entity tag is strong and names one version of one file: a digest of
 * its inode, size and modification time in nanoseconds (od_etag_of). A model
 * under its final name is replaced when its job is generated again (other
 * settings, same name), and every write is a new file renamed over the old one
 * (fileio.c): a new inode and a new time, so a new tag whenever the bytes can
 * differ, and the same tag for as long as that file is there (across restarts,
 * and on every node of a cluster, which see the same shared file). A digest of
 * the bytes would be the same across copies too, but the job record holds none
 * of the model (its cache key digests the inputs, and one input gives other
 * bytes after a pipeline change), and reading a 40 MB file to answer a
 * conditional GET is the cost the tag is there to save.
 *
 * The order is 13.2.2's: If-Match (412), else If-Unmodified-Since (412);
 * then If-None-Match (304), else If-Modified-Since (304); then Range, with
 * If-Range, where the route serves ranges. A date that does not parse is
 * ignored (13.1.3-4). The pure parts (tags, lists, dates, the order) are
 * unit-tested (tests/unit/test_od_precond.c); od_file_plan_for reads the
 * headers, od_file_answer answers.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>
#include <openssl/evp.h>

#include "orfeasd.h"

/* The tag is a digest of (inode, size, time), not the numbers themselves:
 * an inode number in a tag is a finding every web scanner reports (the
 * server's file-system layout, CVE-2003-1418), and the time's nanoseconds
 * (not in Last-Modified) make the digest impossible to search back. 128
 * bits of SHA-256 keep two versions from sharing a tag. If the digest
 * fails (libcrypto out of memory), the numbers are hashed by a plain
 * mixer instead: a tag is still needed, and it still names the version. */
void od_etag_of(const struct stat *st, char out[OD_ETAG_MAX]) {
  uint64_t in[3] = {(uint64_t)st->st_ino, (uint64_t)st->st_size,
                    (uint64_t)st->st_mtim.tv_sec * 1000000000u +
                        (uint64_t)st->st_mtim.tv_nsec};
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  uint64_t h[2] = {0, 0};
  if (EVP_Digest(in, sizeof in, md, &md_len, EVP_sha256(), NULL) == 1 &&
      md_len >= 16) {
    memcpy(h, md, 16);
  } else {
    for (int i = 0; i < 3; i++) { /* a multiply-xor mix, two lanes */
      h[0] = (h[0] ^ in[i]) * 0x100000001b3u + 0xcbf29ce484222325u;
      h[1] = (h[1] ^ in[i]) * 0x9e3779b97f4a7c15u + 0x84222325cbf29ce4u;
    }
  }
  snprintf(out, OD_ETAG_MAX, "\"%016" PRIx64 "%016" PRIx64 "\"", h[0], h[1]);
}

static int ows(char c) { return c == ' ' || c == '\t'; }

/* etagc: %x21 / %x23-7E / obs-text. */
static int etagc(unsigned char c) {
  return c == 0x21 || (c >= 0x23 && c != 0x7f);
}

int od_etag_list_has(const char *list, const char *etag, int weak) {
  if (list == NULL || etag == NULL)
    return 0;
  size_t etag_len = strlen(etag);
  const char *p = list;
  while (*p != '\0') {
    while (ows(*p) || *p == ',')
      p++;
    if (*p == '\0')
      break;
    const char *s = p;
    int is_weak = 0;
    if (*p == '*') {
      p++;
      while (ows(*p))
        p++;
      if (*p == ',' || *p == '\0')
        return 1; /* any current representation: the file is there */
    } else {
      if (p[0] == 'W' && p[1] == '/') {
        is_weak = 1;
        p += 2;
      }
      if (*p == '"') {
        s = p++;
        while (etagc((unsigned char)*p))
          p++;
        if (*p == '"') {
          p++;
          size_t n = (size_t)(p - s);
          const char *q = p;
          while (ows(*q))
            q++;
          if ((*q == ',' || *q == '\0') && n == etag_len &&
              memcmp(s, etag, n) == 0 && (weak || !is_weak))
            return 1;
        }
      }
    }
    /* Not this element (or not a tag at all): on to the next comma. */
    while (*p != '\0' && *p != ',')
      p++;
  }
  return 0;
}

int od_http_date(const char *s, time_t *out) {
  /* 5.6.7: IMF-fixdate, and the two obsolete forms a recipient must still
   * read (RFC 850, asctime). Parsed in the C locale (orfeasd never sets
   * another), the whole value or nothing. */
  static const char *const fmts[] = {"%a, %d %b %Y %H:%M:%S GMT",
                                     "%A, %d-%b-%y %H:%M:%S GMT",
                                     "%a %b %e %H:%M:%S %Y"};
  if (s == NULL)
    return -1;
  for (size_t i = 0; i < sizeof fmts / sizeof fmts[0]; i++) {
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(s, fmts[i], &tm);
    if (end == NULL)
      continue;
    while (ows(*end))
      end++;
    if (*end != '\0')
      continue;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
      return -1;
    *out = t;
    return 0;
  }
  return -1;
}

int od_precond_eval(const od_cond_headers *h, const char *etag,
                    time_t last_modified) {
  time_t t;
  if (h->if_match != NULL) {
    if (!od_etag_list_has(h->if_match, etag, 0))
      return 412;
  } else if (h->if_unmodified_since != NULL &&
             od_http_date(h->if_unmodified_since, &t) == 0 &&
             last_modified > t) {
    return 412;
  }
  if (h->if_none_match != NULL) {
    if (od_etag_list_has(h->if_none_match, etag, 1))
      return 304; /* GET and HEAD only: the routes that call this */
  } else if (h->if_modified_since != NULL &&
             od_http_date(h->if_modified_since, &t) == 0 &&
             last_modified <= t) {
    return 304;
  }
  return 0;
}

int od_file_validators_of(int fd, int ranges, char etag[OD_ETAG_MAX],
                          od_file_validators *v) {
  struct stat st;
  if (fstat(fd, &st) != 0)
    return -1;
  od_etag_of(&st, etag);
  v->etag = etag;
  v->size = (uint64_t)st.st_size;
  v->ranges = ranges;
  /* RFC 9110 8.8.2.1: never a Last-Modified later than the answer's Date;
   * a file dated ahead of this clock (unpacked from a machine whose clock
   * ran ahead) is dated now. */
  time_t now = (time_t)od_wall();
  v->last_modified = st.st_mtime > now ? now : st.st_mtime;
  return 0;
}

/* ---- over MHD ------------------------------------------------------------ */

/* A header's lines joined with ", " (a field may come in several lines,
 * 5.3): the value MHD holds when there is one line, else a copy in *owned
 * (malloc'd; the caller frees it); NULL when absent. Bounded by what MHD
 * accepted of the request's header. */
typedef struct {
  const char *name;
  int lines;
  size_t len; /* first pass: room needed; second: bytes written */
  char *buf;  /* NULL in the first pass */
  const char *first;
} joined;

static enum MHD_Result join_cb(void *cls, enum MHD_ValueKind kind,
                               const char *key, const char *value) {
  (void)kind;
  joined *j = cls;
  if (key == NULL || value == NULL || strcasecmp(key, j->name) != 0)
    return MHD_YES;
  size_t n = strlen(value);
  if (j->buf == NULL) {
    if (j->lines++ == 0)
      j->first = value;
    j->len += n + 2;
    return MHD_YES;
  }
  if (j->len > 0) {
    memcpy(j->buf + j->len, ", ", 2);
    j->len += 2;
  }
  memcpy(j->buf + j->len, value, n);
  j->len += n;
  j->buf[j->len] = '\0';
  return MHD_YES;
}

static const char *header_list(struct MHD_Connection *conn, const char *name,
                               char **owned) {
  joined j = {.name = name};
  MHD_get_connection_values(conn, MHD_HEADER_KIND, join_cb, &j);
  *owned = NULL;
  if (j.lines <= 1)
    return j.first;
  j.buf = malloc(j.len + 1);
  if (j.buf == NULL)
    return j.first; /* out of memory: the first line alone */
  j.len = 0;
  j.buf[0] = '\0';
  MHD_get_connection_values(conn, MHD_HEADER_KIND, join_cb, &j);
  *owned = j.buf;
  return j.buf;
}

/* Range headers in the request: two lines is not one range. */
static enum MHD_Result count_cb(void *cls, enum MHD_ValueKind kind,
                                const char *key, const char *value) {
  (void)kind;
  (void)value;
  if (key != NULL && strcasecmp(key, "Range") == 0)
    ++*(int *)cls;
  return MHD_YES;
}

void od_file_plan_for(od_service *svc, struct MHD_Connection *conn,
                      const od_file_validators *v, od_file_plan *plan) {
  plan->status = 200;
  plan->offset = 0;
  plan->length = v->size;
  /* Every field read as all its lines joined (5.3), the lists and the
   * one-value fields alike: a date or an If-Range sent in two lines is one
   * value with a comma in it, which is no date (ignored, 13.1.3-4: more
   * than one member) and no entity tag (the If-Range fails: the whole
   * file), whichever line comes first; with the first line alone, the
   * answer would depend on the order a proxy kept. */
  char *owned[4];
  od_cond_headers h = {
      .if_match = header_list(conn, "If-Match", &owned[0]),
      .if_none_match = header_list(conn, "If-None-Match", &owned[1]),
      .if_unmodified_since =
          header_list(conn, "If-Unmodified-Since", &owned[2]),
      .if_modified_since = header_list(conn, "If-Modified-Since", &owned[3]),
  };
  int st = od_precond_eval(&h, v->etag, v->last_modified);
  for (int i = 0; i < 4; i++)
    free(owned[i]);
  if (st != 0) {
    plan->status = st;
    plan->length = 0;
    return;
  }
  if (!v->ranges)
    return;
  int ranges = 0;
  MHD_get_connection_values(conn, MHD_HEADER_KIND, count_cb, &ranges);
  if (ranges == 0)
    return;
  uint64_t first = 0, last = 0;
  od_range_kind k = ranges > 1
                        ? OD_RANGE_IGNORED
                        : od_range_parse(MHD_lookup_connection_value(
                                             conn, MHD_HEADER_KIND, "Range"),
                                         v->size, &first, &last);
  /* If-Range decides only whether a range applies (13.1.5): one that does
   * not hold sends the whole file, even for a range that would be a 416. */
  if (k != OD_RANGE_IGNORED) {
    char *ir_owned;
    const char *ir = header_list(conn, "If-Range", &ir_owned);
    if (!od_if_range_holds(ir, v->etag))
      k = OD_RANGE_IGNORED;
    free(ir_owned);
  }
  od_metric_range(svc, k);
  if (k == OD_RANGE_PARTIAL) {
    plan->status = 206;
    plan->offset = first;
    plan->length = last - first + 1;
  } else if (k == OD_RANGE_UNSATISFIABLE) {
    plan->status = 416;
    plan->length = 0;
  }
}

struct MHD_Response *od_file_answer(od_service *svc,
                                    struct MHD_Connection *conn, od_req *req,
                                    int fd, const od_file_validators *v,
                                    const od_file_plan *plan) {
  if (plan->status == 412 || plan->status == 416) {
    close(fd);
    char cr[48];
    snprintf(cr, sizeof cr, "bytes */%" PRIu64, v->size);
    od_respond_error_ex(
        svc, conn, req,
        plan->status == 412
            ? &(od_error){.status = 412,
                          .type = "precondition_failed",
                          .message = "The file is not the version the request "
                                     "names (If-Match or If-Unmodified-Since): "
                                     "it was replaced; download it again "
                                     "without them"}
            : &(od_error){.status = 416,
                          .type = "range_not_satisfiable",
                          .message = "The range asked for starts past the end "
                                     "of the file (Content-Range gives its "
                                     "size); ask for a range within it, or "
                                     "the whole file without Range",
                          .content_range = cr});
    return NULL;
  }
  struct MHD_Response *resp;
  if (plan->status == 304) {
    close(fd);
    resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
  } else {
    resp =
        MHD_create_response_from_fd_at_offset64(plan->length, fd, plan->offset);
    if (resp == NULL)
      close(fd);
  }
  if (resp == NULL) {
    od_respond_error(svc, conn, req, 500, "internal", "cannot send the file",
                     NULL);
    return NULL;
  }
  char lm[64];
  struct tm tm;
  gmtime_r(&v->last_modified, &tm);
  strftime(lm, sizeof lm, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  MHD_add_response_header(resp, "ETag", v->etag);
  MHD_add_response_header(resp, "Last-Modified", lm);
  if (v->ranges)
    MHD_add_response_header(resp, "Accept-Ranges", "bytes");
  if (plan->status == 206) {
    char cr[80];
    snprintf(cr, sizeof cr, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64,
             plan->offset, plan->offset + plan->length - 1, v->size);
    MHD_add_response_header(resp, "Content-Range", cr);
  }
  return resp;
}
