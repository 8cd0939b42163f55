/* multipart.c: a small multipart/form-data parser for complete bodies.
 *
 * Why our own and not MHD's post processor: the upload body is bounded
 * (--max-upload-mb, refused with 413 before it is read whole) and has to be
 * in memory anyway for the image probe and the SHA-256, and a pure function
 * over a byte array can be fuzzed (tests/fuzz/fuzz_multipart.c) without a
 * live connection. Every search is bounded by the body's length; nothing is
 * NUL-terminated in place.
 *
 * Grammar (RFC 7578 / RFC 2046, the parts browsers and curl send):
 *   preamble? "--" boundary CRLF
 *   ( headers CRLF CRLF data CRLF "--" boundary ( CRLF | "--" ) )+
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "orfeasd.h"

int od_multipart_boundary(const char *ct, char *boundary, size_t len) {
  if (ct == NULL || strncasecmp(ct, "multipart/form-data", 19) != 0)
    return -1;
  const char *p = ct + 19;
  /* Find a "boundary=" parameter after a ';' (case-insensitive name). */
  while ((p = strchr(p, ';')) != NULL) {
    p++;
    while (*p == ' ' || *p == '\t')
      p++;
    if (strncasecmp(p, "boundary=", 9) != 0)
      continue;
    p += 9;
    size_t n = 0;
    if (*p == '"') {
      p++;
      while (p[n] != '\0' && p[n] != '"')
        n++;
      if (p[n] != '"')
        return -1;
    } else {
      while (p[n] != '\0' && p[n] != ';' && p[n] != ' ' && p[n] != '\t')
        n++;
    }
    /* RFC 2046: 1..70 characters. */
    if (n == 0 || n > 70 || n + 1 > len)
      return -1;
    memcpy(boundary, p, n);
    boundary[n] = '\0';
    return 0;
  }
  return -1;
}

/* memmem bounded to [hay, hay+hlen). */
static const uint8_t *find(const uint8_t *hay, size_t hlen, const void *needle,
                           size_t nlen) {
  return nlen == 0 || hlen < nlen ? NULL : memmem(hay, hlen, needle, nlen);
}

/* Reads a parameter like name="image" from a Content-Disposition value held
 * in [v, v+vlen). Writes it NUL-terminated; 1 when found. */
static int disp_param(const char *v, size_t vlen, const char *param, char *out,
                      size_t out_len) {
  size_t plen = strlen(param);
  int quoted = 0;
  for (size_t i = 0; i + plen + 1 < vlen; i++) {
    /* Never inside another parameter's quoted value: a file named
     * 'my name=x.png' must not name the field. */
    if (quoted) {
      if (v[i] == '\\')
        i++;
      else if (v[i] == '"')
        quoted = 0;
      continue;
    }
    if (v[i] == '"') {
      quoted = 1;
      continue;
    }
    /* The parameter must start after ';' or whitespace, so "filename="
     * is not taken for "name=". */
    if ((i == 0 || v[i - 1] == ';' || v[i - 1] == ' ' || v[i - 1] == '\t') &&
        strncasecmp(v + i, param, plen) == 0 && v[i + plen] == '=') {
      size_t j = i + plen + 1, o = 0;
      if (j < vlen && v[j] == '"') {
        j++;
        while (j < vlen && v[j] != '"') {
          if (v[j] == '\\' && j + 1 < vlen)
            j++;
          if (o + 1 < out_len)
            out[o++] = v[j];
          j++;
        }
      } else {
        while (j < vlen && v[j] != ';' && v[j] != ' ' && v[j] != '\t') {
          if (o + 1 < out_len)
            out[o++] = v[j];
          j++;
        }
      }
      out[o] = '\0';
      return 1;
    }
  }
  return 0;
}

/* Scans a part's header lines [h, hend) for Content-Disposition and copies
 * its name and filename parameters; 1 when the header is there. */
static int disposition(const uint8_t *h, const uint8_t *hend, char *name,
                       size_t name_len, char *filename, size_t filename_len) {
  int found = 0;
  while (h < hend) {
    const uint8_t *eol = find(h, (size_t)(hend + 2 - h), "\r\n", 2);
    if (eol == NULL)
      eol = hend;
    size_t hl = (size_t)(eol - h);
    if (hl > 20 &&
        strncasecmp((const char *)h, "content-disposition:", 20) == 0) {
      found = 1;
      const char *v = (const char *)h + 20;
      size_t vl = hl - 20;
      disp_param(v, vl, "name", name, name_len);
      disp_param(v, vl, "filename", filename, filename_len);
    }
    h = eol + 2;
  }
  return found;
}

int od_multipart_find(const uint8_t *body, size_t len, const char *boundary,
                      const char *field, od_multipart_part *part, char *err,
                      size_t err_len) {
  memset(part, 0, sizeof *part);
  char delim[80];
  int dn = snprintf(delim, sizeof delim, "--%s", boundary);
  if (dn <= 2 || (size_t)dn >= sizeof delim) {
    snprintf(err, err_len, "bad multipart boundary");
    return -1;
  }
  size_t dlen = (size_t)dn;
  /* The first delimiter may follow a preamble. */
  const uint8_t *p = find(body, len, delim, dlen);
  if (p == NULL) {
    snprintf(err, err_len, "multipart body has no boundary line");
    return -1;
  }
  const uint8_t *end = body + len;
  int parts = 0;
  for (;;) {
    p += dlen;
    if ((size_t)(end - p) >= 2 && p[0] == '-' && p[1] == '-')
      break; /* the closing delimiter */
    if ((size_t)(end - p) < 2 || p[0] != '\r' || p[1] != '\n') {
      snprintf(err, err_len, "multipart boundary line not followed by CRLF");
      return -1;
    }
    p += 2;
    const uint8_t *hend = find(p, (size_t)(end - p), "\r\n\r\n", 4);
    if (hend == NULL) {
      snprintf(err, err_len, "multipart part headers are not terminated");
      return -1;
    }
    if (hend - p > 8192) {
      snprintf(err, err_len, "multipart part headers are too long");
      return -1;
    }
    const uint8_t *data = hend + 4;
    /* The part ends at CRLF + delimiter. */
    char term[84];
    int tn = snprintf(term, sizeof term, "\r\n%s", delim);
    const uint8_t *dend = find(data, (size_t)(end - data), term, (size_t)tn);
    if (dend == NULL) {
      snprintf(err, err_len,
               "multipart part is not terminated by the boundary");
      return -1;
    }
    char name[128] = "", filename[256] = "";
    if (!disposition(p, hend, name, sizeof name, filename, sizeof filename)) {
      snprintf(err, err_len, "multipart part has no Content-Disposition");
      return -1;
    }
    parts++;
    if (!part->found && strcmp(name, field) == 0) {
      part->found = 1;
      part->data = data;
      part->len = (size_t)(dend - data);
      snprintf(part->filename, sizeof part->filename, "%s", filename);
    }
    if (parts > 64) {
      snprintf(err, err_len, "multipart body has more than 64 parts");
      return -1;
    }
    p = dend + 2; /* at the delimiter */
  }
  return 0;
}
