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
#include <openssl/evp.h>

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

/* PNG colour types 4 and 6 carry alpha; a tRNS chunk before IDAT adds
 * transparency to the others. */
static int png_transparent(const uint8_t *d, size_t n) {
  if (n < 33)
    return 0;
  if (d[25] == 4 || d[25] == 6)
    return 1;
  size_t p = 8;
  while (p + 8 <= n) {
    uint32_t len = (uint32_t)d[p] << 24 | (uint32_t)d[p + 1] << 16 |
                   (uint32_t)d[p + 2] << 8 | d[p + 3];
    if (memcmp(d + p + 4, "tRNS", 4) == 0)
      return 1;
    if (memcmp(d + p + 4, "IDAT", 4) == 0 || len > n)
      return 0;
    p += 12 + (size_t)len;
  }
  return 0;
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
  uint32_t w = 0, h = 0;
  char msg[256];
  orfeas_pl_code rc = orfeas_pl_image_probe(part.data, part.len, 0, 0, &w, &h, msg, sizeof msg);
  if (rc != ORFEAS_PL_OK) {
    /* A type we know but do not decode (TIFF, HEIF...) is 415 and its
     * message names the accepted types; anything else is the client's bad
     * bytes, 400. */
    int unsupported = rc == ORFEAS_PL_EUNSUPPORTED;
    const char *type = unsupported ? "unsupported_type"
                       : rc == ORFEAS_PL_EFORMAT ? "not_image"
                       : rc == ORFEAS_PL_ESIZE || rc == ORFEAS_PL_EPIXELS ? "dimensions"
                                                                          : "corrupt";
    char full[320];
    snprintf(full, sizeof full, "Security validation failed: %s", msg);
    validation_error(svc, conn, req, unsupported ? 415 : 400, "image", type, full);
    return;
  }
  orfeas_pl_image_type itype = orfeas_pl_image_sniff(part.data, part.len);
  int is_png = itype == ORFEAS_PL_IMG_PNG;
  static const char *const FORMAT_NAMES[] = {"", "PNG", "JPEG", "WEBP", "GIF", "BMP"};
  char id[37], err[256];
  /* Stored as uploads/<id>.<ext>; JPEG keeps the "jpg" it always had. */
  const char *ext = itype == ORFEAS_PL_IMG_JPEG ? "jpg" : orfeas_pl_image_type_name(itype);
  int rc_add = od_jobs_add_upload(svc->jobs, part.data, part.len, ext, id, err, sizeof err);
  if (rc_add != 0) {
    od_log("upload failed: %s", err);
    if (rc_add == -2)
      od_respond_json_hdr(conn, req, 503, json_pack("{s:s, s:i}", "error", err, "status", 503),
                          "Retry-After", "10");
    else
      od_respond_error(svc, conn, req, 500, "internal", err, NULL);
    if (rc_add == -2)
      od_metric_error(&svc->m, "storage_full", req->route);
    return;
  }
  char safe[128];
  od_filename_sanitize(part.filename, strlen(part.filename), safe, sizeof safe);
  od_respond_json(conn, req, 200,
                  json_pack("{s:s, s:s, s:s, s:s, s:{s:[i,i], s:s, s:b, s:I}}",
                            "job_id", id, "filename", safe, "original_filename", safe,
                            "status", "uploaded", "image_info", "size", (int)w, (int)h,
                            "format", FORMAT_NAMES[itype], "has_transparency",
                            is_png && png_transparent(part.data, part.len),
                            "file_size", (json_int_t)part.len));
}

/* ---- POST /api/generate-3d ------------------------------------------------ */

static void handle_generate(od_service *svc, struct MHD_Connection *conn, od_req *req) {
  od_generate_req g;
  od_field_error errs[OD_MAX_FIELD_ERRORS];
  int n = od_generate_parse((const char *)req->body, req->body_len, &g, errs,
                            OD_MAX_FIELD_ERRORS);
  if (g.unknown_fields > 0)
    om_counter_add_u64(svc->m.gen_unknown_fields, (uint64_t)g.unknown_fields);
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
  } else if (r == OD_GEN_QUEUE_FULL || r == OD_GEN_DRAINING) {
    int st = r == OD_GEN_DRAINING ? 503 : 429;
    char ra[16];
    snprintf(ra, sizeof ra, "%d", r == OD_GEN_DRAINING ? 10 : od_jobs_retry_after(svc->jobs));
    od_metric_error(&svc->m, r == OD_GEN_DRAINING ? "draining" : "queue_full", req->route);
    od_respond_json_hdr(conn, req, st,
                        json_pack("{s:s, s:i}", "error",
                                  r == OD_GEN_DRAINING
                                      ? "Service shutting down; retry on another instance"
                                      : "Queue full; retry later",
                                  "status", st),
                        "Retry-After", ra);
  } else {
    od_respond_error(svc, conn, req, 500, "internal", "3D generation failed to start", NULL);
  }
}

/* ---- GET /api/job-status/{job_id} ----------------------------------------- */

static void handle_status(od_service *svc, struct MHD_Connection *conn, od_req *req) {
  if (!od_uuid_valid(req->arg1)) {
    validation_error(svc, conn, req, 400, "job_id", "invalid_uuid",
                     "job_id must be a UUID");
    return;
  }
  od_job_view v;
  if (!od_jobs_view(svc->jobs, req->arg1, &v)) {
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
      "status", svc->draining ? "draining" : "healthy", "version", ORFEASD_VERSION,
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
  if (req->route == OD_ROUTE_SOCKETIO)
    od_ws_adopt_socketio(svc->hub, sock, urh, extra_in, extra_in_size);
  else
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

/* The WebSocket handshake of /ws and /socket.io/ (upgrade_cb hands the
 * socket to the hub as the route says). */
static void handle_ws(od_service *svc, struct MHD_Connection *conn, od_req *req) {
  const char *up = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Upgrade");
  const char *co = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Connection");
  const char *ver = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Sec-WebSocket-Version");
  const char *key = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Sec-WebSocket-Key");
  if (up == NULL || strcasecmp(up, "websocket") != 0 || !header_has_token(co, "upgrade") ||
      ver == NULL || strcmp(ver, "13") != 0 || key == NULL || strlen(key) != 24) {
    validation_error(svc, conn, req, 400, "ws_handshake", "invalid",
                     "a WebSocket upgrade (RFC 6455, version 13) is expected here");
    return;
  }
  if (svc->draining) {
    od_respond_error(svc, conn, req, 503, "draining", "Service shutting down", NULL);
    return;
  }
  if (od_hub_reserve(svc->hub) != 0) {
    od_respond_error(svc, conn, req, 503, "ws_limit",
                     "Too many WebSocket clients; retry later", NULL);
    return;
  }
  /* Sec-WebSocket-Accept = base64(SHA-1(key + GUID)). */
  char src[64 + 40];
  int n = snprintf(src, sizeof src, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
  unsigned char sha[EVP_MAX_MD_SIZE];
  unsigned int sl = 0;
  unsigned char accept[64];
  if (EVP_Digest(src, (size_t)n, sha, &sl, EVP_sha1(), NULL) != 1) {
    od_hub_release(svc->hub);
    od_respond_error(svc, conn, req, 500, "internal", "SHA-1 unavailable", NULL);
    return;
  }
  EVP_EncodeBlock(accept, sha, (int)sl);
  struct MHD_Response *resp = MHD_create_response_for_upgrade(upgrade_cb, svc);
  if (resp == NULL) {
    od_hub_release(svc->hub);
    return;
  }
  MHD_add_response_header(resp, MHD_HTTP_HEADER_UPGRADE, "websocket");
  MHD_add_response_header(resp, "Sec-WebSocket-Accept", (const char *)accept);
  if (od_respond(conn, req, MHD_HTTP_SWITCHING_PROTOCOLS, resp, 0) != MHD_YES)
    od_hub_release(svc->hub);
  else
    req->ws_reserved = 1; /* until upgrade_cb hands it over, or completed_cb */
}

/* ---- /socket.io/ ------------------------------------------------------------ */

/* Engine.IO's handshake: only EIO=4 over the websocket transport. Polling
 * (every other Engine.IO request) gets Engine.IO's own 400 shape, at once,
 * so a client configured for both transports moves on to websocket. */
static void handle_socketio(od_service *svc, struct MHD_Connection *conn, od_req *req) {
  char msg[200];
  int code = 0;
  if (od_sio_query_check(MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "EIO"),
                         MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "transport"),
                         MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "sid"),
                         &code, msg, sizeof msg) != 0) {
    od_metric_validation(&svc->m, "socketio",
                         code == OD_SIO_ERR_VERSION ? "version"
                         : code == OD_SIO_ERR_SID   ? "sid"
                                                    : "transport");
    od_metric_error(&svc->m, "validation", req->route);
    od_respond_json(conn, req, 400,
                    json_pack("{s:i, s:s, s:s, s:i}", "code", code, "message", msg,
                              "error", msg, "status", 400));
    return;
  }
  handle_ws(svc, conn, req);
}

/* ---- dispatch ------------------------------------------------------------- */

static const char *route_method(od_route r) {
  return r == OD_ROUTE_UPLOAD || r == OD_ROUTE_GENERATE ? "POST" : "GET";
}

void od_route_dispatch(od_service *svc, struct MHD_Connection *conn, od_req *req,
                       const char *url) {
  (void)url;
  od_route r = req->route;
  if (r == OD_ROUTE_OTHER) {
    od_respond_error(svc, conn, req, 404, "not_found", "Not found", NULL);
    return;
  }
  const char *want = route_method(r);
  int head_ok = strcmp(want, "GET") == 0 && strcmp(req->method, "HEAD") == 0;
  if (strcmp(req->method, want) != 0 && !head_ok) {
    od_metric_error(&svc->m, "method_not_allowed", r);
    od_respond_json_hdr(conn, req, 405,
                        json_pack("{s:s, s:i}", "error", "Method not allowed", "status", 405),
                        "Allow", want);
    return;
  }
  /* Rate limit: API routes only, so health checks, scrapes and the page's
   * own files (a dozen per load) always pass. */
  if (svc->rl != NULL && r != OD_ROUTE_HEALTH && r != OD_ROUTE_READY &&
      r != OD_ROUTE_METRICS && r != OD_ROUTE_API_HEALTH && r != OD_ROUTE_PAGE &&
      r != OD_ROUTE_STATIC) {
    int wait = od_ratelimit_take(svc->rl, req->client, od_now());
    if (wait > 0) {
      om_counter_inc(om_family_counter(svc->m.rate_limited, OM_LABELS(od_route_template(r))));
      od_metric_error(&svc->m, "rate_limited", r);
      char msg[96], ra[16];
      snprintf(msg, sizeof msg, "Rate limit exceeded. Max %g requests per second",
               svc->cfg.rate_limit_rps);
      snprintf(ra, sizeof ra, "%d", wait);
      od_respond_json_hdr(conn, req, 429,
                          json_pack("{s:s, s:i, s:i}", "error", msg, "status", 429,
                                    "retry_after", wait),
                          "Retry-After", ra);
      return;
    }
  }
  switch (r) {
  case OD_ROUTE_UPLOAD:
    handle_upload(svc, conn, req);
    break;
  case OD_ROUTE_GENERATE:
    handle_generate(svc, conn, req);
    break;
  case OD_ROUTE_STATUS:
    handle_status(svc, conn, req);
    break;
  case OD_ROUTE_DOWNLOAD:
    handle_download(svc, conn, req);
    break;
  case OD_ROUTE_HEALTH:
    od_respond_json(conn, req, 200,
                    json_pack("{s:s, s:s, s:s}", "status", "healthy", "service", "orfeasd",
                              "version", ORFEASD_VERSION));
    break;
  case OD_ROUTE_READY: {
    int ready = svc->ready && !svc->draining;
    od_respond_json(conn, req, ready ? 200 : 503,
                    json_pack("{s:s, s:{s:s, s:i, s:s}}", "status", ready ? "ready" : "not_ready",
                              "checks", "application", svc->draining ? "draining" : "ok",
                              "workers", od_jobs_workers_running(svc->jobs), "queue",
                              od_jobs_queue_depth(svc->jobs) < (size_t)svc->cfg.queue_size
                                  ? "ok" : "full"));
    break;
  }
  case OD_ROUTE_API_HEALTH:
    handle_api_health(svc, conn, req);
    break;
  case OD_ROUTE_METRICS:
    handle_metrics(svc, conn, req);
    break;
  case OD_ROUTE_WS:
    handle_ws(svc, conn, req);
    break;
  case OD_ROUTE_SOCKETIO:
    handle_socketio(svc, conn, req);
    break;
  case OD_ROUTE_PAGE:
  case OD_ROUTE_STATIC:
    od_static_serve(svc, conn, req, req->arg2);
    break;
  default:
    od_respond_error(svc, conn, req, 404, "not_found", "Not found", NULL);
    break;
  }
}
