/* jobjson.c: a job, turned into JSON. One place for every shape a client
 * sees (docs/api.md): the job-status body, the 202 of generate-3d and the
 * WebSocket events, so a field added to a job is added once.
 *
 * Everything here reads an od_job_view (a snapshot, no lock held) and
 * returns a new jansson reference (NULL only when out of memory), never
 * writes. Event payloads carry "job_id"; the sender adds "timestamp".
 */
#include <stdio.h>

#include <jansson.h>

#include "orfeasd.h"

void od_job_download_url(const od_job_view *v, char *out, size_t len) {
  if (v->output_name[0])
    snprintf(out, len, "/api/download/%s/%s", v->id, v->output_name);
  else
    snprintf(out, len, "%s", "");
}

json_t *od_job_quality_json(const od_job_view *v) {
  return json_pack("{s:f, s:s, s:b}", "overall_score", v->score, "grade",
                   v->grade, "printable", v->printable);
}

json_t *od_job_status_json(const od_job_view *v) {
  json_t *o =
      json_pack("{s:s, s:s, s:f, s:s, s:f, s:f, s:b}", "job_id", v->id,
                "status", od_job_state_name(v->state), "progress", v->progress,
                "stage", v->stage, "stage_progress", v->stage_progress,
                "eta_seconds", v->eta_seconds, "cached", v->cached);
  if (o == NULL)
    return NULL;
  /* The original API's clients poll this and read "step" (orfeas-studio)
   * or "message" (synexa-style-studio): the stage again, and a sentence. */
  char msg[300];
  if (v->state == OD_JOB_QUEUED)
    snprintf(msg, sizeof msg, "Waiting for a worker (position %d)",
             v->position);
  else if (v->state == OD_JOB_PROCESSING)
    snprintf(msg, sizeof msg, "Processing: %s", v->stage);
  else if (v->state == OD_JOB_COMPLETED)
    snprintf(msg, sizeof msg, "%s", "3D model ready");
  else if (v->state == OD_JOB_FAILED)
    snprintf(msg, sizeof msg, "Failed: %s", v->error);
  else
    snprintf(msg, sizeof msg, "%s", "Image uploaded; generation not asked yet");
  json_object_set_new(o, "step", json_string(v->stage));
  json_object_set_new(o, "message", json_string(msg));
  if (v->state == OD_JOB_QUEUED)
    json_object_set_new(o, "position", json_integer(v->position));
  if (v->state == OD_JOB_COMPLETED) {
    char url[200];
    od_job_download_url(v, url, sizeof url);
    json_object_set_new(o, "download_url", json_string(url));
    json_object_set_new(o, "output_file", json_string(v->output_name));
    json_t *q = od_job_quality_json(v);
    /* job-status also names the grade "quality_grade" (the original API). */
    json_object_set_new(q, "quality_grade", json_string(v->grade));
    json_object_set_new(o, "quality_metrics", q);
  }
  if (v->state == OD_JOB_FAILED)
    json_object_set_new(o, "error", json_string(v->error));
  return o;
}

json_t *od_job_progress_json(const od_job_view *v) {
  return json_pack("{s:s, s:f, s:s, s:f, s:f}", "job_id", v->id, "progress",
                   v->progress, "stage", v->stage, "stage_progress",
                   v->stage_progress, "eta_seconds", v->eta_seconds);
}

json_t *od_job_stage_json(const od_job_view *v) {
  return json_pack("{s:s, s:s, s:f}", "job_id", v->id, "stage", v->stage,
                   "stage_progress", v->stage_progress);
}

json_t *od_job_event_json(const od_job_view *v, od_ws_event *ev) {
  switch (v->state) {
  case OD_JOB_COMPLETED: {
    char url[200];
    od_job_download_url(v, url, sizeof url);
    *ev = OD_WS_COMPLETE;
    return json_pack("{s:s, s:s, s:b, s:o, s:b}", "job_id", v->id,
                     "download_url", url, "success", 1, "quality_metrics",
                     od_job_quality_json(v), "cached", v->cached);
  }
  case OD_JOB_FAILED:
    *ev = OD_WS_ERROR_EVENT;
    /* recoverable: the same request may succeed later (our fault, 5xx). */
    return json_pack("{s:s, s:s, s:b}", "job_id", v->id, "error", v->error,
                     "recoverable", v->http_status >= 500);
  case OD_JOB_QUEUED:
  case OD_JOB_PROCESSING:
    *ev = OD_WS_PROGRESS;
    return od_job_progress_json(v);
  default:
    return NULL;
  }
}

json_t *od_job_accepted_json(const od_generate_req *g, int position,
                             const od_job_view *done) {
  json_t *dims = json_pack("{s:f, s:f, s:f}", "width", g->width, "height",
                           g->height, "depth", g->depth);
  const char *fmt = orfeas_pl_format_name(g->format);
  if (done == NULL)
    return json_pack("{s:s, s:s, s:i, s:s, s:i, s:o, s:s}", "job_id", g->job_id,
                     "status", "queued", "position", position, "format", fmt,
                     "quality", g->quality, "dimensions", dims, "mode",
                     orfeas_pl_mode_name(g->mode));
  char url[200];
  od_job_download_url(done, url, sizeof url);
  return json_pack("{s:s, s:s, s:i, s:b, s:s, s:s, s:i, s:o}", "job_id",
                   g->job_id, "status", "completed", "position", 0, "cached", 1,
                   "download_url", url, "format", fmt, "quality", g->quality,
                   "dimensions", dims);
}
