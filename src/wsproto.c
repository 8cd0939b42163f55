/* wsproto.c: the WebSocket message protocol, apart from the sockets.
 *
 * Client -> server: {"event": "subscribe"|"unsubscribe", "data": {"job_id":
 * UUID}} and {"event": "ping"}. For the original front end's habits, the
 * job id is also accepted at the top level ({"event": "subscribe", "job_id":
 * ...}). Server -> client: {"event": NAME, "data": {...}}.
 *
 * The handshake's Sec-WebSocket-Accept is computed here too (routes.c
 * answers the upgrade with it).
 *
 * Kept separate from ws.c so the fuzzer (tests/fuzz/fuzz_ws_frames.c) runs
 * the same code on frames decoded by wslay.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "orfeasd.h"

static const char *const WS_NAMES[] = {
#define OD_WS_STR(id, name) name,
    OD_WS_EVENT_LIST(OD_WS_STR)
#undef OD_WS_STR
};

const char *od_ws_event_name(od_ws_event e) {
  return (unsigned)e < OD_WS_EVENT_COUNT ? WS_NAMES[e] : "error";
}

static const char *const WS_ERR_NAMES[] = {
#define OD_WS_ERR_STR(id, name) name,
    OD_WS_ERR_LIST(OD_WS_ERR_STR)
#undef OD_WS_ERR_STR
};

const char *od_ws_err_name(od_ws_err e) {
  return (unsigned)e < OD_WSE_COUNT ? WS_ERR_NAMES[e] : "bad_message";
}

json_t *od_ws_error_data(od_ws_err code, const char *message,
                         const char *job_id) {
  json_t *o = json_pack("{s:s}", "message", message ? message : "");
  if (o != NULL && job_id != NULL)
    json_object_set_new(o, "job_id", json_string(job_id));
  if (o != NULL)
    json_object_set_new(o, "code", json_string(od_ws_err_name(code)));
  return o;
}

od_wsmsg_kind od_wsmsg_parse(const uint8_t *msg, size_t len, char job_id[37],
                             char *err, size_t err_len, od_ws_err *code) {
  job_id[0] = '\0';
  *code = OD_WSE_BAD_MESSAGE;
  json_error_t jerr;
  json_t *root =
      json_loadb((const char *)msg, len, JSON_REJECT_DUPLICATES, &jerr);
  od_wsmsg_kind kind = OD_WSMSG_BAD;
  json_t *ev = json_object_get(root, "event");
  const char *name = json_is_string(ev) ? json_string_value(ev) : NULL;
  if (root == NULL) {
    *code = OD_WSE_BAD_JSON;
    snprintf(err, err_len, "invalid JSON at column %d: %s", jerr.column,
             jerr.text);
  } else if (!json_is_object(root) || name == NULL) {
    snprintf(err, err_len, "a message is {\"event\": NAME, \"data\": {...}}");
  } else if (strcmp(name, "ping") == 0) {
    kind = OD_WSMSG_PING;
  } else if (strcmp(name, "subscribe") == 0 ||
             strcmp(name, "unsubscribe") == 0) {
    json_t *data = json_object_get(root, "data");
    json_t *id = json_is_object(data) ? json_object_get(data, "job_id") : NULL;
    if (id == NULL)
      id = json_object_get(root, "job_id");
    if (!json_is_string(id) || !od_uuid_canon(json_string_value(id), job_id)) {
      *code = OD_WSE_BAD_JOB_ID;
      snprintf(err, err_len, "%s needs data.job_id, a UUID", name);
    } else {
      kind = name[0] == 's' ? OD_WSMSG_SUBSCRIBE : OD_WSMSG_UNSUBSCRIBE;
    }
  } else {
    *code = OD_WSE_UNKNOWN_EVENT;
    snprintf(err, err_len,
             "unknown event \"%.*s\" (subscribe, unsubscribe, ping)",
             (int)od_utf8_prefix(name, 40), name);
  }
  json_decref(root);
  /* Whole characters only, even where err_len cut the text. */
  if (kind == OD_WSMSG_BAD && err_len > 0)
    err[od_utf8_prefix(err, err_len)] = '\0';
  return kind;
}

char *od_ws_event_json(od_ws_event ev, json_t *data) {
  json_t *o = json_pack("{s:s, s:o}", "event", od_ws_event_name(ev), "data",
                        data ? data : json_object());
  if (o == NULL)
    return NULL;
  char *s = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  return s;
}

/* RFC 6455 4.1: the key is 16 random bytes in base64, so 22 base64
 * characters and "==". */
static int ws_key_valid(const char *key) {
  static const char b64[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  if (key == NULL || strlen(key) != 24 || strcmp(key + 22, "==") != 0)
    return 0;
  for (int i = 0; i < 22; i++)
    if (strchr(b64, key[i]) == NULL)
      return 0;
  return 1;
}

int od_ws_accept_key(const char *key, char out[29]) {
  out[0] = '\0';
  if (!ws_key_valid(key))
    return -1;
  /* Sec-WebSocket-Accept = base64(SHA-1(key + the protocol's GUID)). */
  char src[24 + 36 + 1];
  int n =
      snprintf(src, sizeof src, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
  unsigned char sha[EVP_MAX_MD_SIZE];
  unsigned int sl = 0;
  if (EVP_Digest(src, (size_t)n, sha, &sl, EVP_sha1(), NULL) != 1 || sl != 20)
    return -2;
  EVP_EncodeBlock((unsigned char *)out, sha, (int)sl); /* 28 chars + NUL */
  return 0;
}
