/* wsproto.c: the WebSocket message protocol, apart from the sockets.
 *
 * Client -> server: {"event": "subscribe"|"unsubscribe", "data": {"job_id":
 * UUID}} and {"event": "ping"}. For the original front end's habits, the
 * job id is also accepted at the top level ({"event": "subscribe", "job_id":
 * ...}). Server -> client: {"event": NAME, "data": {...}}.
 *
 * Kept separate from ws.c so the fuzzer (tests/fuzz/fuzz_ws_frames.c) runs
 * the same code on frames decoded by wslay.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "orfeasd.h"

static const char *const WS_NAMES[] = {
#define OD_WS_STR(id, name) name,
  OD_WS_EVENT_LIST(OD_WS_STR)
#undef OD_WS_STR
};

const char *od_ws_event_name(od_ws_event e) {
  return (unsigned)e < OD_WS_EVENT_COUNT ? WS_NAMES[e] : "error";
}

od_wsmsg_kind od_wsmsg_parse(const uint8_t *msg, size_t len, char job_id[37],
                             char *err, size_t err_len) {
  job_id[0] = '\0';
  json_error_t jerr;
  json_t *root = json_loadb((const char *)msg, len, JSON_REJECT_DUPLICATES, &jerr);
  if (root == NULL) {
    snprintf(err, err_len, "invalid JSON at column %d: %s", jerr.column, jerr.text);
    return OD_WSMSG_BAD;
  }
  od_wsmsg_kind kind = OD_WSMSG_BAD;
  json_t *ev = json_object_get(root, "event");
  const char *name = json_is_string(ev) ? json_string_value(ev) : NULL;
  if (!json_is_object(root) || name == NULL) {
    snprintf(err, err_len, "a message is {\"event\": NAME, \"data\": {...}}");
  } else if (strcmp(name, "ping") == 0) {
    kind = OD_WSMSG_PING;
  } else if (strcmp(name, "subscribe") == 0 || strcmp(name, "unsubscribe") == 0) {
    json_t *data = json_object_get(root, "data");
    json_t *id = json_is_object(data) ? json_object_get(data, "job_id") : NULL;
    if (id == NULL)
      id = json_object_get(root, "job_id");
    if (!json_is_string(id) || !od_uuid_valid(json_string_value(id))) {
      snprintf(err, err_len, "%s needs data.job_id, a UUID", name);
    } else {
      snprintf(job_id, 37, "%s", json_string_value(id));
      kind = name[0] == 's' ? OD_WSMSG_SUBSCRIBE : OD_WSMSG_UNSUBSCRIBE;
    }
  } else {
    snprintf(err, err_len, "unknown event \"%.40s\" (subscribe, unsubscribe, ping)", name);
  }
  json_decref(root);
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
