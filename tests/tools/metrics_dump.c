/* metrics-dump: prints the metrics fixture registry, for promtool.
 * usage: metrics-dump text|openmetrics|broken */
#include "../unit/metrics_fixture.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: metrics-dump text|openmetrics|broken\n");
    return 2;
  }
  om_registry *reg = metrics_fixture_new();
  if (reg == NULL)
    return 1;
  om_buf buf = {0};
  om_format fmt = strcmp(argv[1], "openmetrics") == 0 ? OM_FORMAT_OPENMETRICS
                                                      : OM_FORMAT_TEXT;
  int rc = om_registry_render(reg, fmt, &buf);
  if (rc != OM_OK) {
    fprintf(stderr, "metrics-dump: %s\n", om_strerror(rc));
    return 1;
  }
  fwrite(buf.data, 1, buf.len, stdout);
  /* "broken": a counter without _total and a duplicate series, which
   * promtool must reject; proves the promtool test can fail. */
  if (strcmp(argv[1], "broken") == 0)
    fputs("# HELP bad_counter A counter named wrongly.\n"
          "# TYPE bad_counter counter\nbad_counter 1\n"
          "app_special{kind=\"nan\"} 2\n",
          stdout);
  om_buf_free(&buf);
  om_registry_free(reg);
  return 0;
}
