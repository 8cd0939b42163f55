/* od-testimg KIND SIDE OUT: writes a test image for the service tests.
 * KIND: png (RGBA star with a hole), jpeg (the star, JPEG), webp (lossless,
 * with alpha), webp-anim (3 frames), gif (transparent background), bmp
 * (32-bit with alpha), bmp8 (palette), png-big-header (a PNG header
 * claiming 100000x100000 px). Images are drawn by the shared
 * pipeline test helpers (tests/support), so no image files are committed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pl_images.h"

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(
        stderr,
        "usage: od-testimg png|jpeg|webp|webp-anim|gif|bmp|bmp8|png-big-header "
        "SIDE OUT\n");
    return 2;
  }
  char *end;
  unsigned long side = strtoul(argv[2], &end, 10);
  if (*end != '\0' || side < 1 || side > 8192) {
    fprintf(stderr, "od-testimg: SIDE must be 1..8192\n");
    return 2;
  }
  size_t len = 0;
  uint8_t *img = NULL;
  if (strcmp(argv[1], "png-big-header") == 0) {
    img = tpl_png_header_only(100000, 100000, &len);
  } else {
    uint8_t *px = tpl_draw(TPL_STAR_HOLE, (uint32_t)side, (uint32_t)side, 1, 7);
    if (px != NULL && strcmp(argv[1], "png") == 0)
      img = tpl_png(px, (uint32_t)side, (uint32_t)side, 4, &len);
    else if (px != NULL && strcmp(argv[1], "jpeg") == 0)
      img = tpl_jpeg(px, (uint32_t)side, (uint32_t)side, &len);
    else if (px != NULL && strcmp(argv[1], "webp") == 0)
      img = tpl_webp(px, (uint32_t)side, (uint32_t)side, 1, &len);
    else if (px != NULL && strcmp(argv[1], "webp-anim") == 0)
      img = tpl_webp_anim(px, (uint32_t)side, (uint32_t)side, 3, &len);
    else if (px != NULL && strcmp(argv[1], "gif") == 0)
      img = tpl_gif(px, (uint32_t)side, (uint32_t)side, 1, 0, &len);
    else if (px != NULL && strcmp(argv[1], "bmp") == 0)
      img = tpl_bmp(px, (uint32_t)side, (uint32_t)side, 32, 0, &len);
    else if (px != NULL && strcmp(argv[1], "bmp8") == 0)
      img = tpl_bmp(px, (uint32_t)side, (uint32_t)side, 8, 1, &len);
    free(px);
  }
  if (img == NULL || tpl_write_file(argv[3], img, len) != 0) {
    fprintf(stderr, "od-testimg: cannot make %s into %s\n", argv[1], argv[3]);
    free(img);
    return 1;
  }
  free(img);
  return 0;
}
