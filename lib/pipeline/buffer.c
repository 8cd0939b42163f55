/* buffer.c: the growable byte buffer the writers fill, and little-endian
 * stores (the file formats are all little-endian; so is every machine we
 * build for, but the stores say so explicitly). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void orfeas_pl_buffer_free(orfeas_pl_buffer *b) {
  if (b == NULL)
    return;
  free(b->data);
  memset(b, 0, sizeof *b);
}

#define PL_BUF_ALIGN 4096
#define PL_BUF_ALIGN_MIN (64u << 10)

orfeas_pl_code pl_buf_reserve(orfeas_pl_buffer *b, size_t extra) {
  if (extra > SIZE_MAX - b->size)
    return ORFEAS_PL_ENOMEM;
  size_t need = b->size + extra;
  if (need <= b->cap)
    return ORFEAS_PL_OK;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < need)
    cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  uint8_t *p;
  if (cap < PL_BUF_ALIGN_MIN) {
    p = realloc(b->data, cap);
  } else {
    /* A large buffer is page-aligned, however it grew (OBJ and PLY print
     * a header first): orfeasd writes models with O_DIRECT, which then
     * needs no copy (src/fileio.c). */
    void *q = NULL;
    p = posix_memalign(&q, PL_BUF_ALIGN, cap) == 0 ? q : NULL;
    if (p != NULL) {
      if (b->size)
        memcpy(p, b->data, b->size);
      free(b->data);
    }
  }
  if (p == NULL)
    return ORFEAS_PL_ENOMEM;
  b->data = p;
  b->cap = cap;
  return ORFEAS_PL_OK;
}

orfeas_pl_code pl_buf_append(orfeas_pl_buffer *b, const void *p, size_t n) {
  orfeas_pl_code rc = pl_buf_reserve(b, n);
  if (rc != ORFEAS_PL_OK)
    return rc;
  if (n)
    memcpy(b->data + b->size, p, n);
  b->size += n;
  return ORFEAS_PL_OK;
}

orfeas_pl_code pl_buf_printf(orfeas_pl_buffer *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0)
    return ORFEAS_PL_EINVAL;
  orfeas_pl_code rc = pl_buf_reserve(b, (size_t)n + 1);
  if (rc != ORFEAS_PL_OK)
    return rc;
  va_start(ap, fmt);
  vsnprintf((char *)b->data + b->size, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->size += (size_t)n;
  return ORFEAS_PL_OK;
}

void pl_put_u32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

void pl_put_u16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}

void pl_put_f32(uint8_t *p, float v) {
  uint32_t u;
  memcpy(&u, &v, 4);
  pl_put_u32(p, u);
}
