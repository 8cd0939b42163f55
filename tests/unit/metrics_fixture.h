/* metrics_fixture.h: one registry holding every metric type and every edge
 * case of the exposition (escaping, special floats, units, histograms,
 * empty families, collectors, a capped family). The golden files under
 * golden/ are this registry rendered; tools/metrics-dump prints it for
 * promtool. */
#ifndef METRICS_FIXTURE_H
#define METRICS_FIXTURE_H

#include "orfeas/metrics.h"

/* Builds the fixture; returns NULL (and prints why) on failure. */
om_registry *metrics_fixture_new(void);

#endif
