/* validate.c: checks on everything a client names: job ids, file names, and
 * the generate-3d JSON body.
 *
 * Job ids must be canonical UUIDs before they reach the job table or a path,
 * so "../" or NUL tricks never get that far. Client file names are never used
 * to build a path: uploads are stored under the job id, and a download's name
 * must equal the job's output name exactly. The generate body is checked
 * field by field; each problem names a field from a fixed list (it becomes a
 * metric label) and an error type, and the message is for the human.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <jansson.h>

#include "orfeasd.h"

static int is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
         (c >= 'A' && c <= 'F');
}

const char *od_list_next(const char **p, size_t *n) {
  for (;;) {
    while (**p == ' ' || **p == ',')
      (*p)++;
    if (**p == '\0')
      return NULL;
    const char *s = *p;
    while (**p && **p != ',')
      (*p)++;
    *n = (size_t)(*p - s);
    while (*n > 0 && s[*n - 1] == ' ')
      (*n)--;
    if (*n > 0)
      return s;
  }
}

int od_uuid_valid(const char *s) {
  if (s == NULL)
    return 0;
  for (int i = 0; i < 36; i++) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-')
        return 0;
    } else if (!is_hex(s[i])) {
      return 0; /* also stops at a NUL before 36 */
    }
  }
  return s[36] == '\0';
}

int od_uuid_canon(const char *s, char out[37]) {
  if (!od_uuid_valid(s))
    return 0;
  for (int i = 0; i <= 36; i++)
    out[i] = s[i] >= 'A' && s[i] <= 'F' ? (char)(s[i] - 'A' + 'a') : s[i];
  return 1;
}

int od_uuid_new(char out[37]) {
  uint8_t b[16];
  size_t got = 0;
  while (got < sizeof b) {
    ssize_t n = getrandom(b + got, sizeof b - got, 0);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    got += (size_t)n;
  }
  b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
  b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
  static const char hx[] = "0123456789abcdef";
  int o = 0;
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10)
      out[o++] = '-';
    out[o++] = hx[b[i] >> 4];
    out[o++] = hx[b[i] & 15];
  }
  out[o] = '\0';
  return 0;
}

/* RFC 3629: the lengths of the sequences a lead byte starts, and the
 * range of the byte after it (the others are 0x80-0xBF), which rules out
 * overlong forms, surrogates and code points past U+10FFFF. */
size_t od_utf8_prefix(const char *s, size_t max) {
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0;
  while (i < max && u[i] != '\0') {
    unsigned char b = u[i], lo = 0x80, hi = 0xBF;
    size_t n = b < 0x80   ? 1
               : b < 0xC2 ? 0
               : b < 0xE0 ? 2
               : b < 0xF0 ? 3
               : b < 0xF5 ? 4
                          : 0;
    if (b == 0xE0)
      lo = 0xA0;
    else if (b == 0xED)
      hi = 0x9F;
    else if (b == 0xF0)
      lo = 0x90;
    else if (b == 0xF4)
      hi = 0x8F;
    if (n == 0 || n > max - i)
      break;
    for (size_t k = 1; k < n; k++, lo = 0x80, hi = 0xBF)
      if (u[i + k] < lo || u[i + k] > hi)
        return i;
    i += n;
  }
  return i;
}

static int plain_char(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

void od_filename_sanitize(const char *in, size_t in_len, char *out,
                          size_t out_len) {
  if (out_len == 0)
    return;
  /* Keep the last component: both separators count (Windows clients). */
  size_t start = 0;
  for (size_t i = 0; i < in_len; i++)
    if (in[i] == '/' || in[i] == '\\')
      start = i + 1;
  size_t o = 0;
  for (size_t i = start; i < in_len && o + 1 < out_len; i++) {
    unsigned char c = (unsigned char)in[i];
    out[o++] = plain_char(c) ? (char)c : '_';
  }
  out[o] = '\0';
  /* A leading dot would make a hidden file or "." / "..". */
  if (o == 0 || out[0] == '.') {
    snprintf(out, out_len, "upload");
  }
}

int od_filename_plain(const char *name) {
  size_t n = 0;
  if (name == NULL || name[0] == '.' || name[0] == '\0')
    return 0;
  for (; name[n] != '\0'; n++)
    if (n >= 128 || !plain_char((unsigned char)name[n]))
      return 0;
  return 1;
}

/* The errors found so far: at most max are kept. */
typedef struct {
  od_field_error *errs;
  int n, max;
} errlist;

static void add_err(errlist *e, const char *field, const char *type,
                    const char *msg) {
  if (e->n >= e->max)
    return;
  e->errs[e->n].field = field;
  e->errs[e->n].error_type = type;
  snprintf(e->errs[e->n].message, sizeof e->errs[0].message, "%s", msg);
  e->n++;
}

/* The keys of obj that are not in allowed (NULL-terminated). Unknown
 * fields are ignored, as the original API did (its clients send extras such
 * as "method" or "mesh_format"), and counted: the caller adds the count to
 * orfeas_generate_unknown_fields_total. Their names are client strings, so
 * they never become label values. */
static int unknown_keys(json_t *obj, const char *const *allowed) {
  int n = 0;
  const char *key;
  json_t *v;
  json_object_foreach(obj, key, v) {
    size_t i = 0;
    while (allowed[i] != NULL && strcmp(key, allowed[i]) != 0)
      i++;
    n += allowed[i] == NULL;
  }
  return n;
}

/* The original API's fields went through pydantic's lax mode, which took
 * a number written as a string ("7", " 256 ") and a real without a
 * fraction (7.0) for an integer; clients written against it may send them
 * (a form field's value is a string). The same is accepted here: 1 and *out
 * for a JSON number, or a string that is one whole decimal number
 * (surrounding blanks allowed; no hex, inf or nan); 0 for anything else. */
static int lax_number(json_t *v, double *out) {
  if (json_is_number(v)) {
    *out = json_number_value(v);
    return 1;
  }
  if (!json_is_string(v))
    return 0;
  const char *p = json_string_value(v);
  while (*p == ' ' || *p == '\t')
    p++;
  const char *q = p + (*p == '-' || *p == '+');
  if (!(*q >= '0' && *q <= '9') && !(*q == '.' && q[1] >= '0' && q[1] <= '9'))
    return 0; /* strtod would also take "inf", "nan", "0x10" */
  if (strpbrk(q, "xX") != NULL)
    return 0;
  char *end;
  double d = strtod(p, &end);
  while (*end == ' ' || *end == '\t')
    end++;
  if (end == p || *end != '\0' || !isfinite(d))
    return 0;
  *out = d;
  return 1;
}

/* A number field: integers or reals both accepted (or a string of one:
 * lax_number), within lo..hi. */
static void num_field(json_t *obj, const char *key, double lo, double hi,
                      double *out, errlist *e) {
  json_t *v = json_object_get(obj, key);
  if (v == NULL)
    return;
  double d;
  if (!lax_number(v, &d)) {
    add_err(e, key, "type", "value must be a number");
    return;
  }
  if (!(d >= lo && d <= hi)) {
    char range[64];
    snprintf(range, sizeof range, "%s must be within %g..%g", key, lo, hi);
    add_err(e, key, "out_of_range", range);
    return;
  }
  *out = d;
}

static void parse_job_id(json_t *root, od_generate_req *req, errlist *e) {
  json_t *v = json_object_get(root, "job_id");
  if (v == NULL)
    add_err(e, "job_id", "missing", "job_id is required");
  else if (!json_is_string(v) ||
           !od_uuid_canon(json_string_value(v), req->job_id))
    add_err(e, "job_id", "invalid_uuid",
            "job_id must be a UUID (from /api/upload-image)");
}

static void parse_format(json_t *root, od_generate_req *req, errlist *e) {
  json_t *v = json_object_get(root, "format");
  if (v == NULL)
    return;
  const char *f = json_is_string(v) ? json_string_value(v) : "";
  for (int i = 0; i <= ORFEAS_PL_GLB; i++)
    if (strcmp(f, orfeas_pl_format_name((orfeas_pl_format)i)) == 0) {
      req->format = (orfeas_pl_format)i;
      return;
    }
  add_err(e, "format", "invalid", "format must be one of stl, obj, ply, glb");
}

static void parse_mode(json_t *root, od_generate_req *req, errlist *e) {
  json_t *v = json_object_get(root, "mode");
  if (v == NULL)
    return;
  const char *f = json_is_string(v) ? json_string_value(v) : "";
  if (strcmp(f, "inflate") == 0)
    req->mode = ORFEAS_PL_MODE_INFLATE;
  else if (strcmp(f, "relief") == 0)
    req->mode = ORFEAS_PL_MODE_RELIEF;
  else if (strcmp(f, "auto") == 0)
    req->mode = ORFEAS_PL_MODE_AUTO;
  else
    add_err(e, "mode", "invalid", "mode must be inflate, relief or auto");
}

static void parse_quality(json_t *root, od_generate_req *req, errlist *e) {
  json_t *v = json_object_get(root, "quality");
  if (v == NULL)
    return;
  double d; /* 7, 7.0 and "7" (lax_number); not 7.5 */
  if (!lax_number(v, &d) || d != floor(d))
    add_err(e, "quality", "type", "quality must be an integer 1..10");
  else if (d < OD_QUALITY_MIN || d > OD_QUALITY_MAX)
    add_err(e, "quality", "out_of_range", "quality must be within 1..10");
  else
    req->quality = (int)d;
}

static void parse_dimensions(json_t *root, od_generate_req *req, errlist *e) {
  json_t *v = json_object_get(root, "dimensions");
  if (v == NULL)
    return;
  if (!json_is_object(v)) {
    add_err(e, "dimensions", "type",
            "dimensions must be an object {width, height, depth}");
    return;
  }
  static const char *const keys[] = {"width", "height", "depth", NULL};
  req->unknown_fields += unknown_keys(v, keys);
  num_field(v, "width", OD_SIDE_MM_MIN, OD_SIDE_MM_MAX, &req->width, e);
  num_field(v, "height", OD_SIDE_MM_MIN, OD_SIDE_MM_MAX, &req->height, e);
  num_field(v, "depth", OD_SIDE_MM_MIN, OD_DEPTH_MM_MAX, &req->depth, e);
}

int od_generate_parse(const char *body, size_t len, od_generate_req *req,
                      od_field_error *errs, int max_errs) {
  /* The pipeline's defaults are the API's (the original's: stl, 7,
   * 100 x 100 x 20 mm). */
  orfeas_pl_options def;
  orfeas_pl_options_init(&def);
  memset(req, 0, sizeof *req);
  req->format = def.format;
  req->mode = def.mode;
  req->quality = def.quality;
  req->width = def.width_mm;
  req->height = def.height_mm;
  req->depth = def.depth_mm;
  errlist e = {errs, 0, max_errs};
  json_error_t jerr;
  /* JSON_REJECT_DUPLICATES: {"format":"stl","format":"x"} is ambiguous. */
  json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
  if (root == NULL) {
    char m[160];
    snprintf(m, sizeof m, "invalid JSON at line %d column %d: %.100s",
             jerr.line, jerr.column, jerr.text);
    add_err(&e, "body", "invalid_json", m);
    return e.n;
  }
  if (!json_is_object(root)) {
    json_decref(root);
    add_err(&e, "body", "type", "the body must be a JSON object");
    return e.n;
  }
  static const char *const keys[] = {"job_id",  "format", "dimensions",
                                     "quality", "mode",   NULL};
  req->unknown_fields += unknown_keys(root, keys);
  parse_job_id(root, req, &e);
  parse_format(root, req, &e);
  parse_mode(root, req, &e);
  parse_quality(root, req, &e);
  parse_dimensions(root, req, &e);
  json_decref(root);
  return e.n;
}
