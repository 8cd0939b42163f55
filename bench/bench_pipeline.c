/* bench_pipeline.c: pipeline cases (pipeline_1024_glb, pipeline_4096_stl_q10)
 * land with the pipeline library (issue #3). */
#include "bench.h"

void bench_pipeline_suite(bench_report *r) { (void)r; }
