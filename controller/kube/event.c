/* Event bodies (see co/event.h). */
#include "co/event.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <time.h>

#include "co/objects.h"

char *co_event_body(const co_event_t *e, char *path, size_t len) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char when[48];
  size_t n = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(when + n, sizeof(when) - n, ".%06ldZ", ts.tv_nsec / 1000);
  const char *ns = e->ns != NULL && e->ns[0] != '\0' ? e->ns : "default";
  cJSON *ev = cJSON_CreateObject();
  cJSON *md = cJSON_AddObjectToObject(ev, "metadata");
  /* Named like client-go's recorder: <object>.<unix nanoseconds in hex>. */
  unsigned long long nanos =
      (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
  char evname[300];
  snprintf(evname, sizeof(evname), "%.230s.%llx", e->name, nanos);
  cJSON_AddStringToObject(md, "name", evname);
  cJSON_AddStringToObject(md, "namespace", ns);
  cJSON_AddStringToObject(ev, "eventTime", when);
  cJSON_AddStringToObject(ev, "reportingController", CO_DOMAIN "/controller");
  cJSON_AddStringToObject(ev, "reportingInstance", e->instance);
  cJSON_AddStringToObject(ev, "action", e->action);
  cJSON_AddStringToObject(ev, "reason", e->reason);
  cJSON_AddStringToObject(ev, "type", e->type);
  cJSON_AddStringToObject(ev, "note", e->note);
  cJSON *reg = cJSON_AddObjectToObject(ev, "regarding");
  cJSON_AddStringToObject(reg, "kind", e->kind);
  cJSON_AddStringToObject(reg, "apiVersion", e->api_version);
  if (e->ns != NULL && e->ns[0] != '\0')
    cJSON_AddStringToObject(reg, "namespace", e->ns);
  cJSON_AddStringToObject(reg, "name", e->name);
  if (e->uid != NULL)
    cJSON_AddStringToObject(reg, "uid", e->uid);
  char *body = cJSON_PrintUnformatted(ev);
  cJSON_Delete(ev);
  snprintf(path, len, "/apis/events.k8s.io/v1/namespaces/%s/events", ns);
  return body;
}
