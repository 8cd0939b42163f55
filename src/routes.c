/* routes.c: the API handlers (docs/api.md is the contract).
 *
 * Each handler gets a complete request (body read and bounded by http.c) and
 * queues exactly one response through od_respond_*. Client mistakes are 4xx
 * JSON {"error": ..., "status": ...} and are counted twice: once by kind in
 * orfeas_errors_total{type, endpoint}, and, for a bad field, by field in
 * orfeas_validation_errors_total{field, error_type}. Label values come from
 * fixed lists here, never from the request.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "orfeas_build.h" /* generated: version, git revision, build type */
#include "orfeasd.h"

static int validation_error(od_service *svc, struct MHD_Connection *conn,
                            od_req *req, int status, const char *field,
                            const char *error_type, const char *message) {
  od_metric_validation(&svc->m, field, error_type);
  return od_respond_error(svc, conn, req, status, "validation", message,
                          json_pack("[{s:s, s:s, s:s}]", "field", field,
                                    "error_type", error_type, "message", message));
}

/* ---- POST /api/upload-image ----------------------------------------------- */

/* The image must be whole before the 200: its header is probed (type, size
 * limits), then all of it is decoded with the pipeline's limits without
 * keeping the pixels (orfeas_pl_image_verify: a PNG a row at a time, a JPEG
 * at 1/8 scale), so a truncated or corrupt file is a 400 now, not a failed
 * job later. It runs on the HTTP thread; its cost is in
 * docs/performance.md ("Upload check"). 0 when the image is good (*img
 * filled), -1 when answered. */
static int check_image(od_service *svc, struct MHD_Connection *conn,
                       od_req *req, const uint8_t *data, size_t len,
                       orfeas_pl_image_info *img) {
  char msg[256];
  orfeas_pl_code rc =
      orfeas_pl_image_probe(data, len, 0, 0, img, msg, sizeof msg);
  if (rc == ORFEAS_PL_OK)
    rc = orfeas_pl_image_verify(data, len, 0, 0, msg, sizeof msg);
  if (rc == ORFEAS_PL_OK)
    return 0;
  if (rc == ORFEAS_PL_ENOMEM) {
    od_respond_error_ex(svc, conn, req,
                        &(od_error){.status = 503,
                                    .type = "internal",
                                    .message = "Out of memory checking the "
                                               "image; retry shortly",
                                    .retry_after = 5});
    return -1;
  }
  const char *type = rc == ORFEAS_PL_EFORMAT ? "not_image"
                     : rc == ORFEAS_PL_ESIZE || rc == ORFEAS_PL_EPIXELS
                         ? "dimensions"
                     : rc == ORFEAS_PL_ETRUNCATED ? "truncated"
                                                  : "corrupt";
  char full[320];
  snprintf(full, sizeof full, "Security validation failed: %s", msg);
  validation_error(svc, conn, req, 400, "image", type, full);
  return -1;
}

static void handle_upload(od_service *svc, struct MHD_Connection *conn, od_req *req) {
  const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
  char boundary[80], perr[128];
  if (od_multipart_boundary(ct, boundary, sizeof boundary) != 0) {
    validation_error(svc, conn, req, 400, "body", "not_multipart",
                     "send multipart/form-data with the image in field \"image\"");
    return;
  }
  od_multipart_part part;
  if (od_multipart_find(req->body, req->body_len, boundary, "image", &part, perr,
                        sizeof perr) != 0) {
    validation_error(svc, conn, req, 400, "body", "malformed_multipart", perr);
    return;
  }
  if (!part.found) {
    validation_error(svc, conn, req, 400, "image", "missing", "No image file provided");
    return;
  }
  if (part.len == 0) {
    validation_error(svc, conn, req, 400, "image", "empty", "No file selected");
    return;
  }
  orfeas_pl_image_info img;
  if (check_image(svc, conn, req, part.data, part.len, &img) != 0)
    return;
  const char *ext = img.type == ORFEAS_PL_IMAGE_PNG ? "png" : "jpg";
  char id[37], err[256];
  int rc_add = od_jobs_add_upload(svc->jobs, part.data, part.len, ext, id,
                                  err, sizeof err);
  if (rc_add == -2) { /* every slot, or all of --max-store-mb, is in use */
    od_respond_error_ex(svc, conn, req,
                        &(od_error){.status = 503,
                                    .type = "storage_full",
                                    .message = err,
                                    .retry_after = 10});
    return;
  }
  if (rc_add != 0) {
    /* err may name a server path: the log gets it, the client does not. */
    od_log("upload failed: %s", err);
    od_respond_error(svc, conn, req, 500, "internal",
                     "The upload could not be stored (a server problem; "
                     "the service log has the reason)",
                     NULL);
    return;
  }
  char safe[128];
  od_filename_sanitize(part.filename, strlen(part.filename), safe, sizeof safe);
  od_respond_json(conn, req, 200,
                  json_pack("{s:s, s:s, s:s, s:s, s:{s:[i,i], s:s, s:b, s:I}}",
                            "job_id", id, "filename", safe, "original_filename", safe,
                            "status", "uploaded", "image_info", "size",
                            (int)img.width, (int)img.height, "format",
                            orfeas_pl_image_type_name(img.type),
                            "has_transparency", img.has_alpha, "file_size",
                            (json_int_t)part.len));
}

/* ---- POST /api/generate-3d ------------------------------------------------ */

static void handle_generate(od_service *svc, struct MHD_Connection *conn, od_req *req) {
  od_generate_req g;
  od_field_error errs[OD_MAX_FIELD_ERRORS];
  int n = od_generate_parse((const char *)req->body, req->body_len, &g, errs,
                            OD_MAX_FIELD_ERRORS);
  if (n > 0) {
    json_t *details = json_array();
    for (int i = 0; i < n; i++) {
      od_metric_validation(&svc->m, errs[i].field, errs[i].error_type);
      json_array_append_new(details, json_pack("{s:s, s:s, s:s}", "field", errs[i].field,
                                               "error_type", errs[i].error_type,
                                               "message", errs[i].message));
    }
    od_respond_error(svc, conn, req, 400, "validation", "Invalid request parameters",
                     details);
    return;
  }
  int pos = 0;
  od_gen_result r = od_jobs_generate(svc->jobs, &g, &pos);
  if (r == OD_GEN_QUEUED || r == OD_GEN_CACHED) {
    od_job_view v = {0};
    if (r == OD_GEN_CACHED)
      od_jobs_view(svc->jobs, g.job_id, &v);
    od_respond_json(conn, req, 202, od_job_accepted_json(&g, pos, r == OD_GEN_CACHED ? &v : NULL));
    return;
  }
  if (r == OD_GEN_NOT_FOUND) {
    od_respond_error(svc, conn, req, 404, "not_found",
                     "Job not found: upload an image first (/api/upload-image)", NULL);
  } else if (r == OD_GEN_CONFLICT) {
    od_respond_error(svc, conn, req, 409, "conflict", "Generation already in progress",
                     json_pack("{s:s}", "job_id", g.job_id));
  } else if (r == OD_GEN_QUEUE_FULL) {
    od_respond_error_ex(
        svc, conn, req,
        &(od_error){.status = 429,
                    .type = "queue_full",
                    .message = "Queue full; retry later",
                    .retry_after = od_jobs_retry_after(svc->jobs)});
  } else if (r == OD_GEN_DRAINING) {
    od_respond_error_ex(
        svc, conn, req,
        &(od_error){.status = 503,
                    .type = "draining",
                    .message = "Service shutting down; retry on another "
                               "instance",
                    .retry_after = 10});
  } else {
    od_respond_error(svc, conn, req, 500, "internal", "3D generation failed to start", NULL);
  }
}

/* ---- GET /api/job-status/{job_id} ----------------------------------------- */

static void handle_status(od_service *svc, struct MHD_Connection *conn, od_req *req) {
  if (!od_uuid_valid(req->rest)) {
    validation_error(svc, conn, req, 400, "job_id", "invalid_uuid",
                     "job_id must be a UUID");
    return;
  }
  od_job_view v;
  if (!od_jobs_view(svc->jobs, req->rest, &v)) {
    od_respond_error(svc, conn, req, 404, "not_found", "Job not found", NULL);
    return;
  }
  od_respond_json(conn, req, 200, od_job_status_json(&v));
}

/* ---- GET /api/download/{job_id}/{filename} -------------------------------- */

static void handle_download(od_service *svc, struct MHD_Connection *conn, od_req *req) {
  if (!od_uuid_valid(req->arg1)) {
    validation_error(svc, conn, req, 400, "job_id", "invalid_uuid", "job_id must be a UUID");
    return;
  }
  if (!od_filename_plain(req->arg2)) {
    validation_error(svc, conn, req, 400, "filename", "invalid",
                     "Invalid file path: a plain file name is expected");
    return;
  }
  uint64_t size = 0;
  orfeas_pl_format fmt = ORFEAS_PL_STL;
  int fd = od_jobs_open_output(svc->jobs, req->arg1, req->arg2, &size, &fmt);
  if (fd == -2) { /* the file is there; the process is out of fds */
    od_respond_fd_exhausted(svc, conn, req, OD_FD_DOWNLOAD);
    return;
  }
  if (fd < 0) {
    od_respond_error(svc, conn, req, 404, "not_found", "File not found", NULL);
    return;
  }
  struct MHD_Response *resp = MHD_create_response_from_fd64(size, fd);
  if (resp == NULL) {
    close(fd);
    od_respond_error(svc, conn, req, 500, "internal", "cannot send the file", NULL);
    return;
  }
  char disp[256];
  snprintf(disp, sizeof disp, "attachment; filename=\"%s\"", req->arg2);
  MHD_add_response_header(resp, "Content-Type", orfeas_pl_format_mime(fmt));
  MHD_add_response_header(resp, "Content-Disposition", disp);
  MHD_add_response_header(resp, "Cache-Control", "no-cache, no-store, must-revalidate");
  od_respond(conn, req, 200, resp, size);
}

/* ---- health --------------------------------------------------------------- */

static void handle_api_health(od_service *svc, struct MHD_Connection *conn, od_req *req) {
  int c[OD_JOB_STATE_COUNT];
  od_jobs_counts(svc->jobs, c);
  json_t *o = json_pack(
      "{s:s, s:s, s:f, s:f, s:{s:I, s:i}, s:{s:i, s:i}, s:{s:i, s:i, s:i, s:i, s:i},"
      " s:i, s:{s:i}, s:{s:I, s:I, s:I, s:I}}",
      "status", svc->draining ? "draining" : "healthy", "version", ORFEAS_VERSION,
      "timestamp", od_wall(), "uptime_seconds", od_now() - svc->m.start_time,
      "queue", "depth", (json_int_t)od_jobs_queue_depth(svc->jobs), "capacity",
      svc->cfg.queue_size, "workers", "total", od_jobs_workers_running(svc->jobs), "busy",
      od_jobs_busy(svc->jobs), "jobs", "uploaded", c[OD_JOB_UPLOADED], "queued",
      c[OD_JOB_QUEUED], "processing", c[OD_JOB_PROCESSING], "completed",
      c[OD_JOB_COMPLETED], "failed", c[OD_JOB_FAILED], "active_jobs",
      c[OD_JOB_QUEUED] + c[OD_JOB_PROCESSING], "websocket", "clients",
      od_hub_clients(svc->hub), "cache", "memory_bytes",
      (json_int_t)od_cache_bytes(svc->cache, OD_CACHE_MEMORY), "memory_entries",
      (json_int_t)od_cache_entries(svc->cache, OD_CACHE_MEMORY), "disk_bytes",
      (json_int_t)od_cache_bytes(svc->cache, OD_CACHE_DISK), "disk_entries",
      (json_int_t)od_cache_entries(svc->cache, OD_CACHE_DISK));
  if (o != NULL)
    json_object_set_new(o, "gpu", od_gpu_summary(svc));
  od_respond_json(conn, req, 200, o);
}

/* ---- /metrics ------------------------------------------------------------- */

static void handle_metrics(od_service *svc, struct MHD_Connection *conn, od_req *req) {
  om_gauge_set(svc->m.uptime, od_now() - svc->m.start_time);
  od_reqstats_flush(&svc->m); /* every request completed before this one */
  om_format fmt = om_format_negotiate(
      MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Accept"));
  om_buf buf = {0};
  if (om_registry_render(svc->m.reg, fmt, &buf) != OM_OK) {
    om_buf_free(&buf);
    od_respond_error(svc, conn, req, 500, "internal", "out of memory rendering metrics", NULL);
    return;
  }
  void *body = buf.data;
  size_t len = buf.len;
  int gz = od_accepts_gzip(MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                       "Accept-Encoding"));
  if (gz) {
    uint8_t *z;
    size_t zl;
    if (od_gzip(buf.data, buf.len, &z, &zl) == 0) {
      om_buf_free(&buf);
      body = z;
      len = zl;
    } else {
      gz = 0;
    }
  }
  /* The buffer is handed to MHD, which frees it after sending. */
  struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
  if (resp == NULL) {
    free(body);
    return;
  }
  MHD_add_response_header(resp, "Content-Type", om_format_content_type(fmt));
  MHD_add_response_header(resp, "Vary", "Accept, Accept-Encoding");
  if (gz)
    MHD_add_response_header(resp, "Content-Encoding", "gzip");
  od_respond(conn, req, 200, resp, len);
}

/* ---- /ws ------------------------------------------------------------------ */

static void upgrade_cb(void *cls, struct MHD_Connection *conn, void *con_cls,
                       const char *extra_in, size_t extra_in_size, MHD_socket sock,
                       struct MHD_UpgradeResponseHandle *urh) {
  (void)conn;
  od_service *svc = cls;
  od_req *req = con_cls;
  od_req_record(svc, req, 0);
  req->ws_reserved = 0; /* the hub owns the slot from here on */
  od_ws_adopt(svc->hub, sock, urh, extra_in, extra_in_size);
}

static int header_has_token(const char *v, const char *tok) {
  size_t tl = strlen(tok);
  for (const char *p = v; p && *p; p++)
    if (strncasecmp(p, tok, tl) == 0 && (p == v || p[-1] == ' ' || p[-1] == ',') &&
        (p[tl] == '\0' || p[tl] == ',' || p[tl] == ' '))
      return 1;
  return 0;
}

static void handle_ws(od_service *svc, struct MHD_Connection *conn, od_req *req) {
  const char *up = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Upgrade");
  const char *co = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Connection");
  const char *ver = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Sec-WebSocket-Version");
  const char *key = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Sec-WebSocket-Key");
  char accept[29];
  int key_rc = od_ws_accept_key(key, accept);
  if (up == NULL || strcasecmp(up, "websocket") != 0 ||
      !header_has_token(co, "upgrade") || ver == NULL ||
      strcmp(ver, "13") != 0 || key_rc == -1) {
    validation_error(svc, conn, req, 400, "ws_handshake", "invalid",
                     "a WebSocket upgrade (RFC 6455, version 13) is expected here");
    return;
  }
  if (key_rc != 0) {
    od_respond_error(svc, conn, req, 500, "internal", "SHA-1 unavailable", NULL);
    return;
  }
  if (svc->draining) {
    od_respond_error_ex(svc, conn, req,
                        &(od_error){.status = 503,
                                    .type = "draining",
                                    .message = "Service shutting down",
                                    .retry_after = 10});
    return;
  }
  if (od_hub_reserve(svc->hub) != 0) {
    od_respond_error(svc, conn, req, 503, "ws_limit",
                     "Too many WebSocket clients; retry later", NULL);
    return;
  }
  struct MHD_Response *resp = MHD_create_response_for_upgrade(upgrade_cb, svc);
  if (resp == NULL) {
    od_hub_release(svc->hub);
    return;
  }
  MHD_add_response_header(resp, MHD_HTTP_HEADER_UPGRADE, "websocket");
  MHD_add_response_header(resp, "Sec-WebSocket-Accept", accept);
  if (od_respond(conn, req, MHD_HTTP_SWITCHING_PROTOCOLS, resp, 0) != MHD_YES)
    od_hub_release(svc->hub);
  else
    req->ws_reserved = 1; /* until upgrade_cb hands it over, or completed_cb */
}

/* ---- health, 404 --------------------------------------------------------- */

static void handle_health(od_service *svc, struct MHD_Connection *conn,
                          od_req *req) {
  (void)svc;
  od_respond_json(conn, req, 200,
                  json_pack("{s:s, s:s, s:s}", "status", "healthy", "service",
                            "orfeasd", "version", ORFEAS_VERSION));
}

static void handle_ready(od_service *svc, struct MHD_Connection *conn,
                         od_req *req) {
  int ready = svc->ready && !svc->draining;
  int queue_ok =
      od_jobs_queue_depth(svc->jobs) < (size_t)svc->cfg.queue_size;
  od_respond_json(conn, req, ready ? 200 : 503,
                  json_pack("{s:s, s:{s:s, s:i, s:s}}", "status",
                            ready ? "ready" : "not_ready", "checks",
                            "application", svc->draining ? "draining" : "ok",
                            "workers", od_jobs_workers_running(svc->jobs),
                            "queue", queue_ok ? "ok" : "full"));
}

static void handle_not_found(od_service *svc, struct MHD_Connection *conn,
                             od_req *req) {
  od_respond_error(svc, conn, req, 404, "not_found", "Not found", NULL);
}

/* ---- dispatch ------------------------------------------------------------- */

typedef void handler_fn(od_service *, struct MHD_Connection *, od_req *);

static handler_fn *const HANDLERS[OD_ROUTE_COUNT] = {
#define OD_ROUTE_HANDLER(id, methods, match, path, endpoint, flags, handler)   \
  [OD_ROUTE_##id] = handler,
    OD_ROUTE_LIST(OD_ROUTE_HANDLER)
#undef OD_ROUTE_HANDLER
};

/* OPTIONS: which methods the route answers, no body. */
static void answer_options(od_service *svc, struct MHD_Connection *conn,
                           od_req *req) {
  (void)svc;
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
  if (resp == NULL)
    return;
  MHD_add_response_header(resp, "Allow", od_route_allow_header(req->route));
  od_respond(conn, req, 204, resp, 0);
}

/* Rate limit: routes flagged OD_RF_RATE_LIMIT only, so health checks and
 * scrapes always pass. 1 when the request was answered 429. */
static int rate_limited(od_service *svc, struct MHD_Connection *conn,
                        od_req *req) {
  if (svc->rl == NULL || !(od_route_flags(req->route) & OD_RF_RATE_LIMIT))
    return 0;
  int wait = od_ratelimit_take(svc->rl, req->client, od_now());
  if (wait <= 0)
    return 0;
  om_counter_inc(om_family_counter(
      svc->m.rate_limited, OM_LABELS(od_route_template(req->route))));
  char msg[96];
  snprintf(msg, sizeof msg, "Rate limit exceeded. Max %g requests per second",
           svc->cfg.rate_limit_rps);
  od_respond_error_ex(svc, conn, req,
                      &(od_error){.status = 429,
                                  .type = "rate_limited",
                                  .message = msg,
                                  .retry_after = wait});
  return 1;
}

void od_route_dispatch(od_service *svc, struct MHD_Connection *conn,
                       od_req *req) {
  od_route r = req->route;
  /* With --admin-listen the admin routes are served there and only
   * there. */
  int admin_route = (od_route_flags(r) & OD_RF_ADMIN) != 0;
  if (svc->cfg.admin_host[0] && admin_route != req->admin) {
    handle_not_found(svc, conn, req);
    return;
  }
  if (r != OD_ROUTE_OTHER && req->method_idx == OD_METHOD_OPTIONS) {
    answer_options(svc, conn, req);
    return;
  }
  if (r != OD_ROUTE_OTHER && !od_route_allows(r, (od_method)req->method_idx)) {
    od_respond_error_ex(svc, conn, req,
                        &(od_error){.status = 405,
                                    .type = "method_not_allowed",
                                    .message = "Method not allowed",
                                    .allow = od_route_allow_header(r)});
    return;
  }
  if (rate_limited(svc, conn, req))
    return;
  HANDLERS[r](svc, conn, req);
}
