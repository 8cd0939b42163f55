/* socketio.c: Engine.IO v4 / Socket.IO v5 framing over the WebSocket
 * transport, apart from the sockets (the hub in ws.c owns those).
 *
 * The original ORFEAS page talks Socket.IO to its server: it connects to
 * /socket.io/?EIO=4&transport=websocket, joins namespace "/", emits
 * subscribe_job {job_id} after generate-3d and listens for job_update. This
 * file speaks just enough of the protocol for that, and says clearly what
 * it does not do:
 *
 *   Engine.IO (one text frame = one packet, first byte = type):
 *     0 open    server -> client: {"sid","upgrades":[],"pingInterval",
 *               "pingTimeout","maxPayload"}
 *     1 close   client -> server: the hub sends the close frame 1000,
 *               then closes the connection
 *     2 ping    server -> client every pingInterval; a client's "2probe"
 *               is answered "3probe", any other client ping a bare "3"
 *     3 pong    client -> server: the answer the hub waits pingTimeout for
 *     4 message a Socket.IO packet follows
 *     5 upgrade, 6 noop: nothing to do (no polling transport to leave)
 *   Socket.IO (after the 4): type digit, optional "/nsp,", optional ack id,
 *   optional JSON:
 *     0 CONNECT     to "/" only: answered 40{"sid","pid"}; any other
 *                   namespace gets 44/nsp,{"message","data":{"message",
 *                   "code":"unknown_namespace"}} (CONNECT_ERROR), its
 *                   name written back byte for byte ("/\0x" is not "/").
 *                   Its payload (the auth object) is read for one thing:
 *                   a reconnecting socket.io-client (4.6 and later, once
 *                   a CONNECT answer carried a "pid") sends {"pid",
 *                   "offset"} with the offset of the last event it heard;
 *                   a job_update's offset is its job id (below), so the
 *                   client is subscribed again to that job (see
 *                   "Reconnects"; past --ws-max-subscriptions, which
 *                   only a CONNECT sent again can meet, the hub answers
 *                   the refusal a subscribe_job gets).
 *     1 DISCONNECT  the client left "/": the hub closes
 *     2 EVENT       ["subscribe_job", {"job_id"}] / ["unsubscribe_job", ...]
 *                   (an ack id is answered 43<id>[{"status","job_id"}])
 *     3 ACK         ignored (the server asks for none)
 *     5, 6 binary   refused: nothing here is binary
 *   Server events: 42["connected",{...}], 42["job_update",{job_id, status,
 *   progress, step, stage, output_file, download_url, cached, error, ...},
 *   "<job_id>"], 42["error",{"message","code"}] for a message it cannot
 *   act on (before CONNECT too; a binary WebSocket frame too, ws.c),
 *   42["error",{"message","job_id","code"}]
 *   for a subscribe refused, or in cluster mode when a subscribed job's
 *   current state will not come (code "resubscribe": subscribe again).
 *
 * Reconnects. Updates go to a job's subscribers only, and the original page
 * subscribes once, after generate-3d; when orfeasd restarts (or the
 * connection drops) its client reconnects with a new session and would
 * hear nothing more of the job it follows. Socket.IO's connection state
 * recovery gives the way back without any state kept here: every
 * job_update carries its job id as a last string argument, which
 * socket.io-client records as the session's offset (a handler that takes
 * one argument never sees it), and sends back in the CONNECT of its next
 * session, beside the pid. That CONNECT subscribes the connection to the
 * job (and the hub sends where it stands); the answer's pid is the new
 * session's, so the client reports recovered = false: missed updates are
 * not replayed, the current state replaces them. A client could name any
 * job that way, as subscribe_job already lets it.
 *
 * Only the websocket transport exists: the HTTP long-polling transport
 * (and an upgrade from it, which carries a sid) is refused with Engine.IO's
 * own 400 error shape, so a client configured for both falls back to
 * websocket at once (od_sio_query_check).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "orfeasd.h"

/* ---- the handshake's query ------------------------------------------------
 */

int od_sio_query_check(const char *eio, const char *transport, const char *sid,
                       int *code, char *msg, size_t msg_len) {
  if (eio == NULL || strcmp(eio, "4") != 0) {
    snprintf(msg, msg_len,
             "Unsupported protocol version: orfeasd speaks Engine.IO 4 "
             "(Socket.IO 3 and 4 clients, EIO=4)");
    *code = OD_SIO_ERR_VERSION;
    return -1;
  }
  if (transport == NULL || strcmp(transport, "websocket") != 0) {
    snprintf(msg, msg_len,
             "Transport unknown: orfeasd serves Socket.IO over the websocket "
             "transport only; connect with transports: [\"websocket\"]");
    *code = OD_SIO_ERR_TRANSPORT;
    return -1;
  }
  if (sid != NULL) {
    snprintf(msg, msg_len,
             "Session ID unknown: there are no polling sessions to upgrade; "
             "connect with transports: [\"websocket\"]");
    *code = OD_SIO_ERR_SID;
    return -1;
  }
  return 0;
}

/* ---- server -> client -----------------------------------------------------
 */

/* Dumps o (stolen) after a prefix of pl bytes (a namespace's name may
 * hold a NUL); malloc'd text or NULL, its length in *len (may be NULL). */
static char *prefixed_n(const char *prefix, size_t pl, json_t *o, size_t *len) {
  if (o == NULL)
    return NULL;
  char *body = json_dumps(o, JSON_COMPACT | JSON_ENCODE_ANY);
  json_decref(o);
  if (body == NULL)
    return NULL;
  size_t bl = strlen(body);
  char *out = malloc(pl + bl + 1);
  if (out != NULL) {
    memcpy(out, prefix, pl);
    memcpy(out + pl, body, bl + 1);
    if (len != NULL)
      *len = pl + bl;
  }
  free(body);
  return out;
}

static char *prefixed(const char *prefix, json_t *o) {
  return prefixed_n(prefix, strlen(prefix), o, NULL);
}

char *od_sio_open(const char *sid, double ping_interval_s,
                  double ping_timeout_s) {
  return prefixed(
      "0", json_pack("{s:s, s:[], s:I, s:I, s:i}", "sid", sid, "upgrades",
                     "pingInterval", (json_int_t)(ping_interval_s * 1000 + 0.5),
                     "pingTimeout", (json_int_t)(ping_timeout_s * 1000 + 0.5),
                     "maxPayload", OD_SIO_MAX_PAYLOAD));
}

/* 42["name", data] or, with an offset, 42["name", data, "offset"]. */
static char *event_text(const char *name, json_t *data, const char *offset) {
  json_t *arr = json_array();
  json_array_append_new(arr, json_string(name));
  json_array_append_new(arr, data ? data : json_object());
  if (offset != NULL)
    json_array_append_new(arr, json_string(offset));
  return prefixed("42", arr);
}

char *od_sio_event_text(const char *name, json_t *data) {
  return event_text(name, data, NULL);
}

/* CONNECT_ERROR as the official server writes one: {"message", "data"}.
 * socket.io-client hands message and data over as the connect_error's
 * err.message and err.data; data is the error events' {message, code}
 * (od_ws_error_data), so the code is where a client looks for it. */
static char *connect_error(const char *nsp, size_t nsp_len, const char *message,
                           od_ws_err code, const char *detail, size_t *len) {
  char prefix[80]; /* "44" + a name of at most 63 bytes + "," */
  memcpy(prefix, "44", 2);
  memcpy(prefix + 2, nsp, nsp_len);
  prefix[2 + nsp_len] = ',';
  return prefixed_n(prefix, nsp_len + 3,
                    json_pack("{s:s, s:o}", "message", message, "data",
                              od_ws_error_data(code, detail, NULL)),
                    len);
}

/* The last path component of a download URL: the model's file name. */
static const char *base_name(const char *url) {
  const char *slash = strrchr(url, '/');
  return slash ? slash + 1 : url;
}

char *od_sio_job_update(const char *hub_json, size_t len) {
  json_t *root = json_loadb(hub_json, len, 0, NULL);
  json_t *ev = json_object_get(root, "event");
  json_t *d = json_object_get(root, "data");
  const char *name = json_string_value(ev);
  const char *id = json_string_value(json_object_get(d, "job_id"));
  if (name == NULL || !json_is_object(d) || id == NULL) {
    json_decref(root);
    return NULL;
  }
  json_t *u = NULL;
  const char *stage = json_string_value(json_object_get(d, "stage"));
  if (strcmp(name, od_ws_event_name(OD_WS_PROGRESS)) == 0) {
    int queued = stage != NULL && strcmp(stage, "queued") == 0;
    u = json_pack("{s:s, s:s, s:O?, s:s?, s:s?, s:O?, s:O?}", "job_id", id,
                  "status", queued ? "queued" : "processing", "progress",
                  json_object_get(d, "progress"), "step", stage, "stage", stage,
                  "stage_progress", json_object_get(d, "stage_progress"),
                  "eta_seconds", json_object_get(d, "eta_seconds"));
  } else if (strcmp(name, od_ws_event_name(OD_WS_COMPLETE)) == 0) {
    const char *url = json_string_value(json_object_get(d, "download_url"));
    json_t *cached = json_object_get(d, "cached");
    u = json_pack("{s:s, s:s, s:f, s:s, s:s, s:s?, s:s?, s:b, s:O?}", "job_id",
                  id, "status", "completed", "progress", 100.0, "step",
                  "completed", "stage", "completed", "download_url", url,
                  "output_file", url ? base_name(url) : NULL, "cached",
                  json_is_true(cached), "quality_metrics",
                  json_object_get(d, "quality_metrics"));
  } else if (strcmp(name, od_ws_event_name(OD_WS_ERROR_EVENT)) == 0) {
    u = json_pack("{s:s, s:s, s:f, s:s, s:s, s:s?}", "job_id", id, "status",
                  "failed", "progress", 0.0, "step", "failed", "stage",
                  "failed", "error",
                  json_string_value(json_object_get(d, "error")));
  } else if (strcmp(name, od_ws_event_name(OD_WS_ERROR)) == 0) {
    /* Not a job_update, and no offset: the job has not moved. The data as
     * od_ws_error_data made it, without the hub's timestamp (Socket.IO
     * events carry none). */
    json_t *e = json_copy(d);
    json_object_del(e, "timestamp");
    char *text = od_sio_event_text("error", e);
    json_decref(root);
    return text;
  }
  /* The job id is the offset (the top says why). */
  char *text = u ? event_text("job_update", u, id) : NULL;
  json_decref(root);
  return text;
}

/* ---- client -> server -----------------------------------------------------
 */

/* Reads "subscribe_job"/"unsubscribe_job" and its job id from an EVENT's
 * JSON array; the id comes as {"job_id": ...} or as a bare string. */
static od_sio_kind parse_event(const char *p, size_t n, char job_id[37],
                               char *err, size_t err_len, od_ws_err *code) {
  json_error_t jerr;
  json_t *arr = json_loadb(p, n, JSON_REJECT_DUPLICATES, &jerr);
  od_sio_kind kind = OD_SIO_BAD;
  const char *name = json_string_value(json_array_get(arr, 0));
  if (arr == NULL) {
    *code = OD_WSE_BAD_JSON;
    snprintf(err, err_len, "invalid JSON in an EVENT at column %d: %s",
             jerr.column, jerr.text);
  } else if (!json_is_array(arr) || name == NULL) {
    *code = OD_WSE_BAD_MESSAGE;
    snprintf(err, err_len, "an EVENT is [\"name\", data...]");
  } else if (strcmp(name, "subscribe_job") == 0 ||
             strcmp(name, "unsubscribe_job") == 0) {
    json_t *a = json_array_get(arr, 1);
    json_t *id = json_is_object(a) ? json_object_get(a, "job_id") : a;
    if (!json_is_string(id) || !od_uuid_canon(json_string_value(id), job_id)) {
      *code = OD_WSE_BAD_JOB_ID;
      snprintf(err, err_len, "%s needs {\"job_id\": UUID}", name);
    } else {
      kind = name[0] == 's' ? OD_SIO_SUBSCRIBE : OD_SIO_UNSUBSCRIBE;
    }
  } else {
    *code = OD_WSE_UNKNOWN_EVENT;
    snprintf(err, err_len,
             "unknown event \"%.*s\" (subscribe_job, unsubscribe_job)",
             (int)od_utf8_prefix(name, 40), name);
  }
  json_decref(arr);
  return kind;
}

/* The job a reconnecting client followed: the offset of a CONNECT's auth
 * object {"pid", "offset"} (the top's "Reconnects") when it is a job id,
 * into job_id; else job_id stays "". Anything else in the payload, or a
 * payload that is not JSON, is ignored, as Socket.IO servers do. */
static void reconnect_job(const char *p, size_t n, char job_id[37]) {
  if (n == 0)
    return;
  json_t *auth = json_loadb(p, n, 0, NULL);
  const char *offset = json_string_value(json_object_get(auth, "offset"));
  if (json_is_string(json_object_get(auth, "pid")) && offset != NULL)
    od_uuid_canon(offset, job_id);
  json_decref(auth);
}

/* A Socket.IO packet (the bytes after Engine.IO's "4"). A refusal's *code
 * stays OD_WSE_BAD_PACKET unless set here. */
static od_sio_kind handle_sio(od_sio_conn *c, const char *p, size_t n,
                              char job_id[37], char **reply, size_t *reply_len,
                              char *err, size_t err_len, od_ws_err *code) {
  if (n == 0 || p[0] < '0' || p[0] > '6') {
    snprintf(err, err_len, "not a Socket.IO packet (type 0-6 expected)");
    return OD_SIO_BAD;
  }
  int type = p[0] - '0';
  size_t i = 1;
  if (type == 5 || type == 6) {
    *code = OD_WSE_BINARY_PACKET;
    snprintf(err, err_len, "binary packets are not supported: send JSON");
    return OD_SIO_BAD;
  }
  /* The namespace: "/name," ("/" itself is written as nothing). Its name
   * is bytes, a NUL included: "/\0admin" is not "/" (until 2026-12-03 it
   * was read as a C string, and a CONNECT or an EVENT to it acted on "/"). */
  char nsp[64] = "/";
  size_t nsp_len = 1;
  if (i < n && p[i] == '/') {
    size_t s = i;
    while (i < n && p[i] != ',')
      i++;
    if (i - s >= sizeof nsp) {
      snprintf(err, err_len, "namespace name too long");
      return OD_SIO_BAD;
    }
    memcpy(nsp, p + s, i - s);
    nsp[i - s] = '\0';
    nsp_len = i - s;
    if (i < n)
      i++; /* the comma */
  }
  /* An acknowledgement id: digits before the payload. */
  long ack = -1;
  size_t digits = 0;
  while (i < n && p[i] >= '0' && p[i] <= '9') {
    if (++digits > 9) {
      snprintf(err, err_len, "acknowledgement id too long");
      return OD_SIO_BAD;
    }
    ack = (ack < 0 ? 0 : ack * 10) + (p[i++] - '0');
  }
  int root_nsp = nsp_len == 1;
  int control = 0; /* the name holds a control character */
  for (size_t k = 0; k < nsp_len; k++)
    control |= (unsigned char)nsp[k] < 0x20 || nsp[k] == 0x7f;
  switch (type) {
  case 0: /* CONNECT (of its payload only a reconnect's offset is used) */
    if (!root_nsp) {
      if (control)
        snprintf(err, err_len,
                 "a namespace name holds no control characters (only \"/\" "
                 "exists)");
      else
        snprintf(err, err_len, "namespace %.*s does not exist (only \"/\")",
                 (int)od_utf8_prefix(nsp, 40), nsp);
      /* "Invalid namespace": the official server's words, which clients
       * written against it compare. */
      *reply = connect_error(nsp, nsp_len, "Invalid namespace",
                             OD_WSE_UNKNOWN_NAMESPACE, err, reply_len);
      return OD_SIO_BAD;
    }
    c->connected = 1;
    reconnect_job(p + i, n - i, job_id);
    /* The pid turns connection state recovery on in the client. */
    *reply =
        prefixed("40", json_pack("{s:s, s:s}", "sid", c->sid, "pid", c->sid));
    return OD_SIO_CONNECTED;
  case 1: /* DISCONNECT */
    if (root_nsp)
      c->connected = 0;
    return root_nsp ? OD_SIO_CLOSE : OD_SIO_NOTHING;
  case 2: { /* EVENT */
    if (!root_nsp || !c->connected) {
      *code = OD_WSE_NOT_CONNECTED;
      snprintf(err, err_len, "an EVENT before CONNECT to namespace \"/\"");
      return OD_SIO_BAD;
    }
    od_sio_kind k = parse_event(p + i, n - i, job_id, err, err_len, code);
    if (k != OD_SIO_BAD && ack >= 0) {
      char prefix[24];
      snprintf(prefix, sizeof prefix, "43%ld", ack);
      *reply =
          prefixed(prefix, json_pack("[{s:s, s:s}]", "status",
                                     k == OD_SIO_SUBSCRIBE ? "subscribed"
                                                           : "unsubscribed",
                                     "job_id", job_id));
    }
    return k;
  }
  case 3: /* ACK: we never ask for one */
    return OD_SIO_NOTHING;
  default: /* 4: CONNECT_ERROR is the server's to send */
    snprintf(err, err_len, "CONNECT_ERROR is sent by servers, not clients");
    return OD_SIO_BAD;
  }
}

od_sio_kind od_sio_handle(od_sio_conn *c, const uint8_t *msg, size_t len,
                          char job_id[37], char **reply, size_t *reply_len,
                          char *err, size_t err_len) {
  *reply = NULL;
  size_t n = 0; /* the reply's length, where it may hold a NUL */
  job_id[0] = '\0';
  err[0] = '\0';
  const char *p = (const char *)msg;
  od_sio_kind k = OD_SIO_BAD;
  od_ws_err code = OD_WSE_BAD_PACKET;
  if (len == 0) {
    snprintf(err, err_len, "empty Engine.IO packet");
  } else if (p[0] == '4') {
    k = handle_sio(c, p + 1, len - 1, job_id, reply, &n, err, err_len, &code);
  } else if (p[0] == '3') {
    k = OD_SIO_PONG;
  } else if (p[0] == '2') {
    /* A ping from the client (v3 habits, or the "probe" of an upgrade):
     * "2probe" is answered "3probe", any other ping a bare "3". Echoing
     * the payload would let a client that never reads park up to
     * 2 x --ws-queue replies of OD_SIO_MAX_PAYLOAD bytes each. */
    k = OD_SIO_NOTHING;
    const char *pong = len == 6 && memcmp(p, "2probe", 6) == 0 ? "3probe" : "3";
    *reply = malloc(strlen(pong) + 1);
    if (*reply != NULL)
      memcpy(*reply, pong, strlen(pong) + 1);
  } else if (p[0] == '1') {
    k = OD_SIO_CLOSE;
  } else if (p[0] == '5' || p[0] == '6') {
    k = OD_SIO_NOTHING;
  } else {
    snprintf(err, err_len,
             "not an Engine.IO packet (type 1-6 expected; binary and "
             "base64 payloads are not supported)");
  }
  /* Whole characters only, even where err_len cut the text. */
  err[od_utf8_prefix(err, err_len)] = '\0';
  /* The client hears why its message was refused, joined to "/" or not
   * yet (a packet before CONNECT): one reply per message, which the hub
   * bounds like every other (2 x --ws-queue, then a flood). */
  if (k == OD_SIO_BAD && *reply == NULL)
    *reply = od_sio_event_text("error", od_ws_error_data(code, err, NULL));
  *reply_len = *reply == NULL ? 0 : n > 0 ? n : strlen(*reply);
  return k;
}
