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

#include "orfeas_build.h" /* generated: version, git revision, build type */
#include "orfeasd.h"

/* A validation error's answer (counted by field and error type): e's
 * status, message and headers, with type and details filled in here. */
static int validation_error_ex(od_service *svc, struct MHD_Connection *conn,
                               od_req *req, od_error e, const char *field,
                               const char *error_type) {
  od_metric_validation(&svc->m, field, error_type);
  e.type = "validation";
  e.details = json_pack("[{s:s, s:s, s:s}]", "field", field, "error_type",
                        error_type, "message", e.message);
  return od_respond_error_ex(svc, conn, req, &e);
}

static int validation_error(od_service *svc, struct MHD_Connection *conn,
                            od_req *req, int status, const char *field,
                            const char *error_type, const char *message) {
  return validation_error_ex(svc, conn, req,
                             (od_error){.status = status, .message = message},
                             field, error_type);
}

/* ---- POST /api/upload-image ---------------------------------------------- */

/* The image must be whole before the 200: its header is probed (type, size
 * limits), then all of it is decoded with the pipeline's limits, so a
 * truncated or corrupt file is a 400 now, not a failed job later. It runs
 * on the HTTP thread; its cost is in docs/performance.md ("Upload check").
 * The image memo (imgmemo.c) skips it for bytes that passed before (same
 * SHA-256: the same verdict), and keeps the pixels of a whole decode for
 * the job's run, so the pipeline does not decode the image again; a JPEG
 * (checked at 1/8 scale) or an image too large for the memo is checked
 * without keeping pixels (orfeas_pl_image_verify: a PNG a row at a time).
 * 0 when the image is good (*img and sha256 filled), -1 when answered. */
static int check_image(od_service *svc, struct MHD_Connection *conn,
                       od_req *req, const uint8_t *data, size_t len,
                       orfeas_pl_image_info *img, uint8_t sha256[32]) {
  char msg[256];
  unsigned int dlen = 0;
  if (EVP_Digest(data, len, sha256, &dlen, EVP_sha256(), NULL) != 1 ||
      dlen != 32) {
    od_respond_error(svc, conn, req, 500, "internal",
                     "SHA-256 unavailable (OpenSSL)", NULL);
    return -1;
  }
  orfeas_pl_code rc =
      orfeas_pl_image_probe(data, len, 0, 0, img, msg, sizeof msg);
  if (rc == ORFEAS_PL_OK && od_imgmemo_checked(svc->imgmemo, sha256)) {
    om_counter_inc(svc->m.image_memo[OD_MEMO_CHECK_SKIPPED]);
    return 0;
  }
  if (rc == ORFEAS_PL_OK && img->type != ORFEAS_PL_IMAGE_JPEG &&
      od_imgmemo_keeps_pixels(svc->imgmemo, img->width, img->height)) {
    orfeas_pl_image px;
    rc = orfeas_pl_image_decode(data, len, 0, 0, &px, msg, sizeof msg);
    if (rc == ORFEAS_PL_OK)
      od_imgmemo_put(svc->imgmemo, sha256, &px);
  } else if (rc == ORFEAS_PL_OK) {
    rc = orfeas_pl_image_verify(data, len, 0, 0, msg, sizeof msg);
    if (rc == ORFEAS_PL_OK)
      od_imgmemo_put(svc->imgmemo, sha256, NULL);
  }
  if (rc == ORFEAS_PL_OK) { /* remembered, with or without its pixels */
    om_gauge_set(svc->m.image_memo_bytes,
                 (double)od_imgmemo_bytes(svc->imgmemo));
    return 0;
  }
  if (rc == ORFEAS_PL_ENOMEM) {
    od_respond_error_ex(svc, conn, req,
                        &(od_error){.status = 503,
                                    .type = "internal",
                                    .message = "Out of memory checking the "
                                               "image; retry shortly",
                                    .retry_after = 5});
    return -1;
  }
  /* A type we know but do not decode (TIFF, HEIF...) is 415 and its
   * message names the accepted types; anything else is the client's bad
   * bytes, 400. */
  int unsupported = rc == ORFEAS_PL_EUNSUPPORTED;
  const char *type = unsupported               ? "unsupported_type"
                     : rc == ORFEAS_PL_EFORMAT ? "not_image"
                     : rc == ORFEAS_PL_ESIZE || rc == ORFEAS_PL_EPIXELS
                         ? "dimensions"
                     : rc == ORFEAS_PL_ETRUNCATED ? "truncated"
                                                  : "corrupt";
  char full[320];
  snprintf(full, sizeof full, "Security validation failed: %s", msg);
  validation_error(svc, conn, req, unsupported ? 415 : 400, "image", type,
                   full);
  return -1;
}

static void handle_upload(od_service *svc, struct MHD_Connection *conn,
                          od_req *req) {
  const char *ct =
      MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
  char boundary[80], perr[128];
  if (od_multipart_boundary(ct, boundary, sizeof boundary) != 0) {
    validation_error(
        svc, conn, req, 400, "body", "not_multipart",
        "send multipart/form-data with the image in field \"image\"");
    return;
  }
  od_multipart_part part;
  if (od_multipart_find(req->body, req->body_len, boundary, "image", &part,
                        perr, sizeof perr) != 0) {
    validation_error(svc, conn, req, 400, "body", "malformed_multipart", perr);
    return;
  }
  if (!part.found) {
    validation_error(svc, conn, req, 400, "image", "missing",
                     "No image file provided");
    return;
  }
  if (part.len == 0) {
    validation_error(svc, conn, req, 400, "image", "empty", "No file selected");
    return;
  }
  orfeas_pl_image_info img;
  uint8_t sha256[32];
  if (check_image(svc, conn, req, part.data, part.len, &img, sha256) != 0)
    return;
  /* Stored as uploads/<id>.<ext>: png, jpg, webp, gif, bmp. */
  const char *ext = orfeas_pl_image_type_ext(img.type);
  char id[37], err[256];
  int rc_add = od_jobs_add_upload(svc->jobs, part.data, part.len, sha256, ext,
                                  id, err, sizeof err);
  if (rc_add == -2 || rc_add == -3) {
    /* -2: no room (--max-store-mb or --max-jobs); -3: the store or the
     * data dir cannot take a write now (a full disk). err names no path. */
    od_respond_error_ex(
        svc, conn, req,
        &(od_error){.status = 503,
                    .type = rc_add == -2 ? "storage_full" : "store_unavailable",
                    .message = err,
                    .retry_after = rc_add == -2 ? 10 : 5});
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
  char preview[64];
  snprintf(preview, sizeof preview, "/api/preview/%s", id);
  od_respond_json(
      conn, req, 200,
      json_pack(
          "{s:s, s:s, s:s, s:s, s:s, s:{s:[i,i], s:i, s:i, s:s, s:b, s:I}}",
          "job_id", id, "filename", safe, "original_filename", safe, "status",
          "uploaded", "preview_url", preview, "image_info", "size",
          (int)img.width, (int)img.height, "width", (int)img.width, "height",
          (int)img.height, "format", orfeas_pl_image_type_name(img.type),
          "has_transparency", img.has_alpha, "file_size",
          (json_int_t)part.len));
}

/* ---- POST /api/generate-3d ----------------------------------------------- */

static void handle_generate(od_service *svc, struct MHD_Connection *conn,
                            od_req *req) {
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
      json_array_append_new(details,
                            json_pack("{s:s, s:s, s:s}", "field", errs[i].field,
                                      "error_type", errs[i].error_type,
                                      "message", errs[i].message));
    }
    od_respond_error(svc, conn, req, 400, "validation",
                     "Invalid request parameters", details);
    return;
  }
  int pos = 0;
  od_gen_result r = od_jobs_generate(svc->jobs, &g, &pos);
  if (r == OD_GEN_QUEUED || r == OD_GEN_CACHED) {
    od_job_view v = {0};
    if (r == OD_GEN_CACHED)
      od_jobs_view(svc->jobs, g.job_id, &v);
    od_respond_json(
        conn, req, 202,
        od_job_accepted_json(&g, pos, r == OD_GEN_CACHED ? &v : NULL));
    return;
  }
  od_job_view gone;
  if (r == OD_GEN_NOT_FOUND) {
    od_respond_error(svc, conn, req, 404, "not_found",
                     "Job not found: upload an image first (/api/upload-image)",
                     NULL);
  } else if (r == OD_GEN_GONE && od_jobs_gone(svc->jobs, g.job_id, &gone)) {
    od_respond_error(svc, conn, req, 410, "gone", gone.error, NULL);
  } else if (r == OD_GEN_UNAVAILABLE) {
    od_respond_error_ex(svc, conn, req,
                        &(od_error){.status = 503,
                                    .type = "store_unavailable",
                                    .message =
                                        "The job store cannot record the "
                                        "request now; retry shortly",
                                    .retry_after = 5});
  } else if (r == OD_GEN_CONFLICT) {
    od_respond_error(svc, conn, req, 409, "conflict",
                     "Generation already in progress",
                     json_pack("{s:s}", "job_id", g.job_id));
  } else if (r == OD_GEN_QUEUE_FULL) {
    od_respond_error_ex(
        svc, conn, req,
        &(od_error){.status = 429,
                    .type = "queue_full",
                    .message = "Queue full; retry later",
                    .retry_after = od_jobs_retry_after(svc->jobs)});
  } else if (r == OD_GEN_DRAINING) {
    od_respond_draining(svc, conn, req, 0);
  } else {
    od_respond_error(svc, conn, req, 500, "internal",
                     "3D generation failed to start", NULL);
  }
}

/* A job (or its file) that is not there: 410 with the reason when it was
 * removed, 503 when the job store cannot say (redis down: issue #15),
 * else 404 with not_found. */
static void respond_missing(od_service *svc, struct MHD_Connection *conn,
                            od_req *req, const char *id,
                            const char *not_found) {
  od_job_view v;
  if (!od_jobs_gone(svc->jobs, id, &v))
    od_respond_error(svc, conn, req, 404, "not_found", not_found, NULL);
  else if (v.http_status == 503)
    od_respond_error_ex(svc, conn, req,
                        &(od_error){.status = 503,
                                    .type = "store_unavailable",
                                    .message = v.error,
                                    .retry_after = 5});
  else
    od_respond_error(svc, conn, req, 410, "gone", v.error, NULL);
}

/* A job file its record names that is there but cannot be read (the jobs
 * module logged the path and why): a server fault, not a missing file. */
static void respond_unreadable(od_service *svc, struct MHD_Connection *conn,
                               od_req *req) {
  od_respond_error(svc, conn, req, 500, "internal",
                   "The job's file could not be read (a server problem; the "
                   "service log has the reason)",
                   NULL);
}

/* ---- GET /api/job-status/{job_id} ---------------------------------------- */

static void handle_status(od_service *svc, struct MHD_Connection *conn,
                          od_req *req) {
  if (!od_uuid_canon(req->rest, req->rest)) {
    validation_error(svc, conn, req, 400, "job_id", "invalid_uuid",
                     "job_id must be a UUID");
    return;
  }
  od_job_view v;
  if (!od_jobs_view(svc->jobs, req->rest, &v)) {
    respond_missing(svc, conn, req, req->rest, "Job not found");
    return;
  }
  od_respond_json(conn, req, 200, od_job_status_json(&v));
}

/* ---- GET /api/download/{job_id}/{filename} ------------------------------- */

/* The model of /api/download and /api/download-base64: the checked job id
 * and file name, then the job's own file. The fd, or -1 once answered. */
static int open_model(od_service *svc, struct MHD_Connection *conn, od_req *req,
                      uint64_t *size, orfeas_pl_format *fmt) {
  if (!od_uuid_canon(req->arg1, req->arg1)) {
    validation_error(svc, conn, req, 400, "job_id", "invalid_uuid",
                     "job_id must be a UUID");
    return -1;
  }
  if (!od_filename_plain(req->arg2)) {
    validation_error(svc, conn, req, 400, "filename", "invalid",
                     "Invalid file path: a plain file name is expected");
    return -1;
  }
  int fd = od_jobs_open_output(svc->jobs, req->arg1, req->arg2, size, fmt);
  if (fd == -2) { /* the file is there; the process is out of fds */
    od_respond_fd_exhausted(svc, conn, req, OD_FD_DOWNLOAD);
    return -1;
  }
  if (fd == -3)
    respond_unreadable(svc, conn, req);
  else if (fd < 0)
    respond_missing(svc, conn, req, req->arg1, "File not found");
  return fd < 0 ? -1 : fd;
}

/* A 200 of the open file fd (taken: closed by MHD, or here on failure)
 * with its type and disposition; the caller adds its other headers and
 * answers with od_respond. NULL: a 500 has been answered. */
static struct MHD_Response *
file_response(od_service *svc, struct MHD_Connection *conn, od_req *req, int fd,
              uint64_t size, const char *type, const char *disposition) {
  struct MHD_Response *resp = MHD_create_response_from_fd64(size, fd);
  if (resp == NULL) {
    close(fd);
    od_respond_error(svc, conn, req, 500, "internal", "cannot send the file",
                     NULL);
    return NULL;
  }
  MHD_add_response_header(resp, "Content-Type", type);
  MHD_add_response_header(resp, "Content-Disposition", disposition);
  return resp;
}

/* The model, whole or one range of it (docs/api.md): RFC 9110's
 * preconditions and Range (precond.c, range.c) on the file as opened, so
 * its tag, size and bytes are of one version even if the job is generated
 * again meanwhile (a new file renamed over this one). */
static void handle_download(od_service *svc, struct MHD_Connection *conn,
                            od_req *req) {
  uint64_t size = 0;
  orfeas_pl_format fmt = ORFEAS_PL_STL;
  int fd = open_model(svc, conn, req, &size, &fmt);
  if (fd < 0)
    return;
  char etag[OD_ETAG_MAX];
  od_file_validators v;
  if (od_file_validators_of(fd, 1, etag, &v) != 0) {
    close(fd);
    respond_unreadable(svc, conn, req);
    return;
  }
  od_file_plan plan;
  od_file_plan_for(svc, conn, &v, &plan);
  struct MHD_Response *resp = od_file_answer(svc, conn, req, fd, &v, &plan);
  if (resp == NULL)
    return;
  char disp[256];
  snprintf(disp, sizeof disp, "attachment; filename=\"%s\"", req->arg2);
  if (plan.status != 304) {
    MHD_add_response_header(resp, "Content-Type", orfeas_pl_format_mime(fmt));
    MHD_add_response_header(resp, "Content-Disposition", disp);
  }
  MHD_add_response_header(resp, "Cache-Control",
                          "no-cache, no-store, must-revalidate");
  od_respond(conn, req, plan.status, resp, plan.length);
}

/* ---- GET /api/download-base64/{job_id}/{filename} ------------------------ */

/* The original API's JSON download (its 3D preview reads it):
 * {"status", "filename", "original_size", "encoded_size", "data"}. The body
 * is streamed: the file is read and base64-encoded a slice at a time while
 * MHD sends, so a model of any size costs one 48 KiB read buffer and its
 * 64 KiB encoding, never the whole file in memory. */
#define B64_GROUPS 16384 /* 4-character groups per slice: 48 KiB read */

typedef struct {
  int fd;         /* owned: the model */
  uint64_t size;  /* bytes of the model */
  char head[320]; /* everything up to the data's opening quote */
  size_t head_len;
  uint64_t b64_len; /* 4 * ceil(size / 3) */
  uint8_t in[3 * B64_GROUPS];
  uint8_t out[4 * B64_GROUPS + 1];
} b64_stream;

static ssize_t b64_read(void *cls, uint64_t pos, char *buf, size_t max) {
  b64_stream *st = cls;
  static const char tail[] = "\"}";
  size_t done = 0;
  while (done < max) {
    uint64_t p = pos + done;
    if (p < st->head_len) {
      size_t n = st->head_len - (size_t)p;
      n = n < max - done ? n : max - done;
      memcpy(buf + done, st->head + p, n);
      done += n;
      continue;
    }
    p -= st->head_len;
    if (p < st->b64_len) {
      /* Whole groups from the one holding p; copy from p's place in it. */
      uint64_t g = p / 4, left = st->b64_len / 4 - g;
      size_t skip = (size_t)(p % 4);
      size_t groups = (max - done + skip + 3) / 4;
      if (groups > B64_GROUPS)
        groups = B64_GROUPS;
      if (groups > left)
        groups = (size_t)left;
      ssize_t got = pread(st->fd, st->in, groups * 3, (off_t)(g * 3));
      if (got <= 0)
        return MHD_CONTENT_READER_END_WITH_ERROR;
      size_t enc = (size_t)EVP_EncodeBlock(st->out, st->in, (int)got);
      size_t n = enc > skip ? enc - skip : 0;
      n = n < max - done ? n : max - done;
      if (n == 0)
        return MHD_CONTENT_READER_END_WITH_ERROR;
      memcpy(buf + done, st->out + skip, n);
      done += n;
      continue;
    }
    p -= st->b64_len;
    if (p >= sizeof tail - 1)
      break;
    size_t n = sizeof tail - 1 - (size_t)p;
    n = n < max - done ? n : max - done;
    memcpy(buf + done, tail + p, n);
    done += n;
  }
  return done > 0 ? (ssize_t)done : MHD_CONTENT_READER_END_OF_STREAM;
}

static void b64_free(void *cls) {
  b64_stream *st = cls;
  close(st->fd);
  free(st);
}

static void handle_download_b64(od_service *svc, struct MHD_Connection *conn,
                                od_req *req) {
  uint64_t size = 0;
  orfeas_pl_format fmt = ORFEAS_PL_STL;
  int fd = open_model(svc, conn, req, &size, &fmt);
  if (fd < 0)
    return;
  b64_stream *st = malloc(sizeof *st); /* owned by the response from here */
  if (st == NULL) {
    close(fd);
    od_respond_error(svc, conn, req, 500, "internal", "out of memory", NULL);
    return;
  }
  st->fd = fd;
  st->size = size;
  st->b64_len = (size + 2) / 3 * 4;
  /* The file name is plain ([A-Za-z0-9._-], checked): no JSON escaping. */
  int hl = snprintf(
      st->head, sizeof st->head,
      "{\"status\":\"success\",\"filename\":\"%s\",\"original_size\":%llu,"
      "\"encoded_size\":%llu,\"data\":\"",
      req->arg2, (unsigned long long)size, (unsigned long long)st->b64_len);
  st->head_len = (size_t)hl;
  uint64_t total = st->head_len + st->b64_len + 2;
  struct MHD_Response *resp = MHD_create_response_from_callback(
      total, sizeof st->in, b64_read, st, b64_free);
  if (resp == NULL) {
    b64_free(st);
    od_respond_error(svc, conn, req, 500, "internal", "cannot send the file",
                     NULL);
    return;
  }
  MHD_add_response_header(resp, "Content-Type", "application/json");
  MHD_add_response_header(resp, "Cache-Control",
                          "no-cache, no-store, must-revalidate");
  od_respond(conn, req, 200, resp, total);
}

/* ---- GET /api/preview/{job_id} ------------------------------------------- */

/* The uploaded image back, for the original page's preview: only the job's
 * own file (by its id; no client string reaches the path), with the type it
 * was stored as, never sniffed, and no active content. */
static void handle_preview(od_service *svc, struct MHD_Connection *conn,
                           od_req *req) {
  if (!od_uuid_canon(req->rest, req->rest)) {
    validation_error(svc, conn, req, 400, "job_id", "invalid_uuid",
                     "job_id must be a UUID");
    return;
  }
  uint64_t size = 0;
  char ext[8];
  int fd = od_jobs_open_upload(svc->jobs, req->rest, &size, ext);
  if (fd == -2) {
    od_respond_fd_exhausted(svc, conn, req, OD_FD_DOWNLOAD);
    return;
  }
  if (fd == -3) {
    respond_unreadable(svc, conn, req);
    return;
  }
  if (fd < 0) {
    respond_missing(svc, conn, req, req->rest,
                    "No uploaded image for this job");
    return;
  }
  static const struct {
    const char *ext, *type;
  } TYPES[] = {{"png", "image/png"},
               {"jpg", "image/jpeg"},
               {"webp", "image/webp"},
               {"gif", "image/gif"},
               {"bmp", "image/bmp"}};
  const char *type = "application/octet-stream";
  for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++)
    if (strcmp(ext, TYPES[i].ext) == 0)
      type = TYPES[i].type;
  char disp[64];
  snprintf(disp, sizeof disp, "inline; filename=\"preview.%s\"", ext);
  struct MHD_Response *resp =
      file_response(svc, conn, req, fd, size, type, disp);
  if (resp == NULL)
    return;
  MHD_add_response_header(resp, "Content-Security-Policy",
                          "default-src 'none'; sandbox");
  MHD_add_response_header(resp, "Cache-Control", "private, max-age=300");
  od_respond(conn, req, 200, resp, size);
}

/* ---- GET /api/models-info ------------------------------------------------ */

/* What this server can produce, for pages written for the original API
 * (which require "device") and for the Studio (limits). The pipeline is
 * classical geometry on the CPU, so "device" is "cpu" whatever GPUs the GPU
 * manager sees (they are summarised under "gpu"). */
static json_t *range(double lo, double hi, double def) {
  return json_pack("{s:f, s:f, s:f}", "min", lo, "max", hi, "default", def);
}

static void handle_models_info(od_service *svc, struct MHD_Connection *conn,
                               od_req *req) {
  orfeas_pl_options def;
  orfeas_pl_options_init(&def);
  json_t *formats = json_array(), *stages = json_array(), *types = json_array();
  for (int f = 0; f <= ORFEAS_PL_GLB; f++)
    json_array_append_new(
        formats, json_string(orfeas_pl_format_name((orfeas_pl_format)f)));
  for (int st = 0; st < ORFEAS_PL_STAGE_COUNT; st++)
    json_array_append_new(
        stages, json_string(orfeas_pl_stage_name((orfeas_pl_stage)st)));
  /* Lower-case type names: "png", "jpeg", "webp", "gif", "bmp". */
  for (int t = ORFEAS_PL_IMAGE_PNG; t <= ORFEAS_PL_IMAGE_BMP; t++) {
    char lower[8];
    const char *n = orfeas_pl_image_type_name((orfeas_pl_image_type)t);
    size_t i = 0;
    for (; n[i] && i + 1 < sizeof lower; i++)
      lower[i] = (char)(n[i] >= 'A' && n[i] <= 'Z' ? n[i] + 32 : n[i]);
    lower[i] = '\0';
    json_array_append_new(types, json_string(lower));
  }
  json_t *limits = json_pack(
      "{s:i, s:{s:i, s:i, s:I}, s:{s:i, s:i, s:i}, s:{s:o, s:o, s:o}, s:i, "
      "s:i, s:f}",
      "max_upload_mb", svc->cfg.max_upload_mb, "image", "min_side",
      (int)ORFEAS_PL_MIN_SIDE, "max_side", (int)ORFEAS_PL_MAX_SIDE,
      "max_pixels", (json_int_t)ORFEAS_PL_MAX_PIXELS, "quality", "min",
      OD_QUALITY_MIN, "max", OD_QUALITY_MAX, "default", def.quality,
      "dimensions_mm", "width",
      range(OD_SIDE_MM_MIN, OD_SIDE_MM_MAX, def.width_mm), "height",
      range(OD_SIDE_MM_MIN, OD_SIDE_MM_MAX, def.height_mm), "depth",
      range(OD_SIDE_MM_MIN, OD_DEPTH_MM_MAX, def.depth_mm), "queue_size",
      svc->cfg.queue_size, "max_ws_clients", svc->cfg.max_ws_clients,
      "rate_limit_rps", svc->cfg.rate_limit_rps);
  json_t *o = json_pack(
      "{s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:[sss], s:o, s:o, s:o, s:o}",
      "status", "ok", "service", "orfeasd", "version", ORFEAS_VERSION, "mode",
      "geometry", "device", "cpu", "processor",
      "orfeasd: classical 2D->3D geometry (silhouette inflation or relief), no "
      "model weights",
      "formats", formats, "modes", "auto", "inflate", "relief", "input_types",
      types, "stages", stages, "limits", limits, "gpu", od_gpu_summary(svc));
  if (o == NULL) {
    od_respond_error(svc, conn, req, 500, "internal", "out of memory", NULL);
    return;
  }
  od_respond_json(conn, req, 200, o);
}

/* ---- health -------------------------------------------------------------- */

static void handle_api_health(od_service *svc, struct MHD_Connection *conn,
                              od_req *req) {
  int c[OD_JOB_STATE_COUNT];
  size_t depth = 0;
  /* The job figures are the store's (the cluster's on Redis). When it
   * cannot answer they are null and the status says degraded: zeros would
   * tell an operator the queue is empty while jobs wait. */
  int store_ok = od_jobs_counts(svc->jobs, c, &depth) == 0;
  json_t *o = json_pack(
      "{s:s, s:s, s:s, s:f, s:f, s:{s:o, s:i}, s:{s:i, s:i}, s:{s:i}}",
      "status",
      svc->draining ? "draining"
      : store_ok    ? "healthy"
                    : "degraded",
      "store", store_ok ? "ok" : "down", "version", ORFEAS_VERSION, "timestamp",
      od_wall(), "uptime_seconds", od_now() - svc->m.start_time, "queue",
      "depth", store_ok ? json_integer((json_int_t)depth) : json_null(),
      "capacity", svc->cfg.queue_size, "workers", "total",
      od_jobs_workers_running(svc->jobs), "busy", od_jobs_busy(svc->jobs),
      "websocket", "clients", od_hub_clients(svc->hub));
  if (o != NULL) {
    json_object_set_new(
        o, "jobs",
        store_ok ? json_pack("{s:i, s:i, s:i, s:i, s:i}", "uploaded",
                             c[OD_JOB_UPLOADED], "queued", c[OD_JOB_QUEUED],
                             "processing", c[OD_JOB_PROCESSING], "completed",
                             c[OD_JOB_COMPLETED], "failed", c[OD_JOB_FAILED])
                 : json_null());
    json_object_set_new(
        o, "active_jobs",
        store_ok ? json_integer(c[OD_JOB_QUEUED] + c[OD_JOB_PROCESSING])
                 : json_null());
    json_object_set_new(
        o, "cache",
        json_pack("{s:I, s:I, s:I, s:I}", "memory_bytes",
                  (json_int_t)od_cache_bytes(svc->cache, OD_CACHE_MEMORY),
                  "memory_entries",
                  (json_int_t)od_cache_entries(svc->cache, OD_CACHE_MEMORY),
                  "disk_bytes",
                  (json_int_t)od_cache_bytes(svc->cache, OD_CACHE_DISK),
                  "disk_entries",
                  (json_int_t)od_cache_entries(svc->cache, OD_CACHE_DISK)));
    json_object_set_new(o, "gpu", od_gpu_summary(svc));
  }
  od_respond_json(conn, req, 200, o);
}

/* ---- /metrics ------------------------------------------------------------ */

static void handle_metrics(od_service *svc, struct MHD_Connection *conn,
                           od_req *req) {
  om_gauge_set(svc->m.uptime, od_now() - svc->m.start_time);
  od_reqstats_flush(&svc->m); /* every request completed before this one */
  om_format fmt = om_format_negotiate(
      MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Accept"));
  om_buf buf = {0};
  if (om_registry_render(svc->m.reg, fmt, &buf) != OM_OK) {
    om_buf_free(&buf);
    od_respond_error(svc, conn, req, 500, "internal",
                     "out of memory rendering metrics", NULL);
    return;
  }
  void *body = buf.data;
  size_t len = buf.len;
  int gz = od_accepts_gzip(
      MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Accept-Encoding"));
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
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
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

/* ---- /ws ----------------------------------------------------------------- */

static void upgrade_cb(void *cls, struct MHD_Connection *conn, void *con_cls,
                       const char *extra_in, size_t extra_in_size,
                       MHD_socket sock, struct MHD_UpgradeResponseHandle *urh) {
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

/* The WebSocket handshake of /ws and /socket.io/ (upgrade_cb hands the
 * socket to the hub as the route says). */
static void handle_ws(od_service *svc, struct MHD_Connection *conn,
                      od_req *req) {
  const char *origin =
      MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
  if (!od_cors_page_allowed(
          &svc->cors, origin,
          MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host"))) {
    od_respond_error(
        svc, conn, req, 403, "cors_refused",
        "This origin may not open a WebSocket here (see --cors-origins)", NULL);
    return;
  }
  const char *up =
      MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Upgrade");
  const char *co =
      MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Connection");
  const char *ver = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                "Sec-WebSocket-Version");
  const char *key =
      MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Sec-WebSocket-Key");
  char accept[29];
  int key_rc = od_ws_accept_key(key, accept);
  /* RFC 6455 4.1: the opening handshake is a GET, in HTTP/1.1 at least. A
   * HEAD (which the router lets through where GET is) would get a 101 with
   * no body and a socket handed to the hub; MHD refuses to queue a 101 on
   * an HTTP/1.0 request (od_respond then closes the connection unanswered). */
  int upgrade = req->method_idx == OD_METHOD_GET && !req->http10 &&
                up != NULL && strcasecmp(up, "websocket") == 0 &&
                od_header_has_token(co, "upgrade");
  /* RFC 6455 4.2.2: a version this server does not speak is answered with
   * the one it does (426 and Sec-WebSocket-Version), so a client that
   * speaks that one too can try again with it. */
  if (upgrade && ver != NULL && strcmp(ver, "13") != 0) {
    validation_error_ex(
        svc, conn, req,
        (od_error){.status = 426,
                   .message = "this server speaks WebSocket version 13 only "
                              "(RFC 6455): upgrade with Sec-WebSocket-Version: "
                              "13",
                   .ws_version = "13"},
        "ws_handshake", "invalid");
    return;
  }
  if (!upgrade || ver == NULL || key_rc == -1) {
    validation_error(
        svc, conn, req, 400, "ws_handshake", "invalid",
        "a WebSocket upgrade (RFC 6455, version 13) is expected here");
    return;
  }
  if (key_rc != 0) {
    od_respond_error(svc, conn, req, 500, "internal", "SHA-1 unavailable",
                     NULL);
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

/* ---- /socket.io/ --------------------------------------------------------- */

/* Engine.IO's handshake: only EIO=4 over the websocket transport. Polling
 * (every other Engine.IO request) gets Engine.IO's own 400 shape, at once,
 * so a client configured for both transports moves on to websocket. */
static void handle_socketio(od_service *svc, struct MHD_Connection *conn,
                            od_req *req) {
  char msg[200];
  int code = 0;
  if (od_sio_query_check(
          MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "EIO"),
          MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "transport"),
          MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "sid"),
          &code, msg, sizeof msg) != 0) {
    od_metric_validation(&svc->m, "socketio",
                         code == OD_SIO_ERR_VERSION ? "version"
                         : code == OD_SIO_ERR_SID   ? "sid"
                                                    : "transport");
    od_metric_error(&svc->m, "validation", req->route);
    od_respond_json(conn, req, 400,
                    json_pack("{s:i, s:s, s:s, s:i}", "code", code, "message",
                              msg, "error", msg, "status", 400));
    return;
  }
  handle_ws(svc, conn, req);
}

/* ---- the Studio page ----------------------------------------------------- */

static void handle_page(od_service *svc, struct MHD_Connection *conn,
                        od_req *req) {
  od_static_serve(svc, conn, req, "index.html");
}

static void handle_static(od_service *svc, struct MHD_Connection *conn,
                          od_req *req) {
  od_static_serve(svc, conn, req, req->rest);
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
  od_health h;
  od_jobs_health(svc->jobs, &h);
  int ready = svc->ready && !svc->draining && h.store_up &&
              h.data_dir_writable && !h.data_dir_low;
  int queue_ok = od_jobs_queue_depth(svc->jobs) < (size_t)svc->cfg.queue_size;
  const char *dir = !h.data_dir_writable ? "not_writable"
                    : h.data_dir_low     ? "low_space"
                                         : "ok";
  od_respond_json(conn, req, ready ? 200 : 503,
                  json_pack("{s:s, s:{s:s, s:i, s:s, s:s, s:s}, s:I}", "status",
                            ready ? "ready" : "not_ready", "checks",
                            "application", svc->draining ? "draining" : "ok",
                            "workers", od_jobs_workers_running(svc->jobs),
                            "queue", queue_ok ? "ok" : "full", "store",
                            h.store_up ? "ok" : "down", "data_dir", dir,
                            "data_dir_free_bytes",
                            (json_int_t)h.data_dir_free_bytes));
}

static void handle_not_found(od_service *svc, struct MHD_Connection *conn,
                             od_req *req) {
  od_respond_error(svc, conn, req, 404, "not_found", "Not found", NULL);
}

/* ---- dispatch ------------------------------------------------------------ */

typedef void handler_fn(od_service *, struct MHD_Connection *, od_req *);

static handler_fn *const HANDLERS[OD_ROUTE_COUNT] = {
#define OD_ROUTE_HANDLER(id, methods, match, path, endpoint, flags, handler)   \
  [OD_ROUTE_##id] = handler,
    OD_ROUTE_LIST(OD_ROUTE_HANDLER)
#undef OD_ROUTE_HANDLER
};

/* OPTIONS: which methods the route answers, no body. A CORS preflight
 * (Origin + Access-Control-Request-Method) on a route flagged OD_RF_CORS
 * from an allowed origin (cors.c) also gets the methods and headers a page
 * may use; from any other origin, or on a route without CORS, 403. */
static void answer_options(od_service *svc, struct MHD_Connection *conn,
                           od_req *req) {
  const char *origin =
      MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
  const char *want = MHD_lookup_connection_value(
      conn, MHD_HEADER_KIND, "Access-Control-Request-Method");
  int preflight = origin != NULL && want != NULL;
  if (preflight && req->acao[0] == '\0') {
    od_respond_error(
        svc, conn, req, 403, "cors_refused",
        req->cors
            ? "This origin is not allowed to call the API (see --cors-origins)"
            : "No cross-origin access to this route",
        NULL);
    return;
  }
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
  if (resp == NULL)
    return;
  const char *allow = od_route_allow_header(req->route);
  MHD_add_response_header(resp, "Allow", allow);
  if (preflight) {
    MHD_add_response_header(resp, "Access-Control-Allow-Methods", allow);
    MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                            OD_CORS_ALLOW_HEADERS);
    MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
  }
  od_respond(conn, req, 204, resp, 0);
}

/* Rate limit: routes flagged OD_RF_RATE_LIMIT only, so health checks and
 * scrapes always pass. 1 when the request was answered 429. */
void od_route_rate_take(od_service *svc, od_req *req) {
  if (req->rate_taken)
    return;
  req->rate_taken = 1;
  if (svc->rl == NULL || !(od_route_flags(req->route) & OD_RF_RATE_LIMIT))
    return;
  /* Cluster mode: one bucket per client for every node (issue #15); this
   * node's own when the store has none or is down. */
  int wait;
  char key[64];
  od_rate_key(req->client, key, sizeof key);
  if (od_jobs_rate_take(svc->jobs, key, svc->cfg.rate_limit_rps,
                        svc->cfg.rate_limit_burst, &wait) != 0)
    wait = od_ratelimit_take(svc->rl, key, od_now());
  req->rate_wait = wait > 0 ? wait : 0;
}

int od_route_rate_limited(od_service *svc, struct MHD_Connection *conn,
                          od_req *req) {
  od_route_rate_take(svc, req);
  if (req->rate_wait <= 0)
    return 0;
  om_counter_inc(om_family_counter(svc->m.rate_limited,
                                   OM_LABELS(od_route_template(req->route))));
  char msg[96];
  snprintf(msg, sizeof msg, "Rate limit exceeded. Max %g requests per second",
           svc->cfg.rate_limit_rps);
  od_respond_error_ex(svc, conn, req,
                      &(od_error){.status = 429,
                                  .type = "rate_limited",
                                  .message = msg,
                                  .retry_after = req->rate_wait});
  return 1;
}

/* A POST from a page of another origin (cors.c, decided with its headers:
 * http.c req_begin): refused before anything is stored or started, and
 * before it takes a rate-limit token of its client's. */
void od_route_cross_origin(od_service *svc, struct MHD_Connection *conn,
                           od_req *req) {
  od_respond_error(svc, conn, req, 403, "cors_refused",
                   "This origin may not call the API here (see --cors-origins)",
                   NULL);
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
  if (req->cross_origin) {
    od_route_cross_origin(svc, conn, req);
    return;
  }
  if (od_route_rate_limited(svc, conn, req))
    return;
  HANDLERS[r](svc, conn, req);
}
