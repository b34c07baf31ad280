/* The `status` subcommand: lists nodes, ConfidentialWorkloads and workloads concurrently on
 * one loop, then prints tables or one JSON object. See co/status.h. */
#include "co/status.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "co/alloc.h"
#include "co/buf.h"
#include "co/client.h"
#include "co/controller.h"
#include "co/decide.h"
#include "co/error.h"
#include "co/kubeconfig.h"
#include "co/log.h"
#include "co/objects.h"

#define LABEL_ENABLED CO_DOMAIN "/enabled"
#define LABEL_TEE CO_DOMAIN "/tee"
#define RUNTIME_PREFIX "runtime." CO_DOMAIN "/"
#define COND_RUNTIME "ConfidentialRuntimeReady"
#define COND_VERIFIED "ConfidentialSandboxVerified" /* the controller's probes */
#define CWL_PATH "/apis/confidential.cypherpunk.io/v1alpha1"
#define LINE_WIDTH 100       /* tables with a MESSAGE column are cut to about this width */
#define MIN_MESSAGE_WIDTH 30 /* ... but the message keeps at least this many characters */
#define MAX_RESTARTS 3       /* lists started over after an expired continue token */
#define MAX_OPTIN 16

enum { L_NODES, L_CWLS, L_RCLASSES, L_DEPLOYMENTS, L_STATEFULSETS, L_COUNT };

typedef struct st_app_s st_app_t;

typedef struct st_list_s {
  co_req_t req;
  st_app_t *app;
  const char *what; /* resource, for messages */
  const char *kind; /* workload kind for L_DEPLOYMENTS / L_STATEFULSETS */
  int id;
  int used;     /* requested in this run */
  int optional; /* a failure only loses columns: not reported, exit code unchanged */
  int restarts;
  char *path; /* collection path (owned) */
  char *cont; /* continue token of the next page (owned) */
  int err;    /* 0 or the CO_E* code that ended the list */
  long http_status;
  char *reason;  /* owned copy of the Status reason, or NULL */
  char *message; /* owned copy of the Status message / transport error, or NULL */
  cJSON *rows;   /* projections of the listed items */
  cJSON *rows2;  /* L_CWLS: one projection per status.workloads entry */
} st_list_t;

struct st_app_s {
  uv_loop_t loop;
  co_client_t client;
  const co_status_opts_t *o;
  st_list_t lists[L_COUNT];
  int pending;
  char *optin_buf; /* owned copy of opts->optin_env, split in place */
  const char *optin[MAX_OPTIN];
  size_t n_optin;
  int sections; /* table sections printed so far */
};

void co_status_opts_default(co_status_opts_t *o) {
  memset(o, 0, sizeof(*o));
  o->output = "table";
  o->optin_env = "KATA,CONFIDENTIAL_RUNTIME";
  o->page_size = 500;
  o->request_timeout_s = 30;
}

/* ---- JSON helpers ---------------------------------------------------------------------- */

static const cJSON *jget(const cJSON *o, const char *k) {
  return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
}

static const char *jstr(const cJSON *o, const char *k) {
  const cJSON *v = jget(o, k);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A non-empty string value or NULL. */
static const char *jstr_ne(const cJSON *o, const char *k) {
  const char *s = jstr(o, k);
  return s != NULL && s[0] != '\0' ? s : NULL;
}

static const cJSON *jpath2(const cJSON *o, const char *a, const char *b) {
  return jget(jget(o, a), b);
}

static void add_str(cJSON *o, const char *k, const char *v) {
  if (v != NULL)
    cJSON_AddStringToObject(o, k, v);
  else
    cJSON_AddNullToObject(o, k);
}

/* Copies the number src[k] into o[as], or null. */
static void copy_num(cJSON *o, const char *as, const cJSON *src, const char *k) {
  const cJSON *v = jget(src, k);
  if (cJSON_IsNumber(v))
    cJSON_AddNumberToObject(o, as, v->valuedouble);
  else
    cJSON_AddNullToObject(o, as);
}

static int has_prefix(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

/* Returns the condition of this type in status.conditions, or NULL. */
static const cJSON *find_condition(const cJSON *obj, const char *type) {
  const cJSON *c;
  cJSON_ArrayForEach(c, jpath2(obj, "status", "conditions")) {
    const char *t = jstr(c, "type");
    if (t != NULL && strcmp(t, type) == 0)
      return c;
  }
  return NULL;
}

static cJSON *condition_summary(const cJSON *c) {
  if (c == NULL)
    return cJSON_CreateNull();
  cJSON *r = cJSON_CreateObject();
  add_str(r, "status", jstr(c, "status"));
  add_str(r, "reason", jstr(c, "reason"));
  add_str(r, "message", jstr(c, "message"));
  add_str(r, "lastTransitionTime", jstr(c, "lastTransitionTime"));
  return r;
}

/* ---- projections (one small object per listed item) ------------------------------------- */

static void project_node(st_list_t *l, const cJSON *item) {
  const cJSON *md = jget(item, "metadata");
  const cJSON *labels = jget(md, "labels");
  cJSON *row = cJSON_CreateObject();
  add_str(row, "name", jstr(md, "name"));
  const cJSON *ready = find_condition(item, "Ready");
  add_str(row, "ready", ready != NULL && jstr(ready, "status") ? jstr(ready, "status") : "Unknown");
  cJSON_AddBoolToObject(row, "unschedulable", cJSON_IsTrue(jpath2(item, "spec", "unschedulable")));
  const char *enabled = jstr(labels, LABEL_ENABLED);
  cJSON_AddBoolToObject(row, "optedIn", enabled != NULL && strcmp(enabled, "true") == 0);
  cJSON *rt = cJSON_AddObjectToObject(row, "runtimes");
  const cJSON *lab;
  cJSON_ArrayForEach(lab, labels) {
    if (lab->string != NULL && has_prefix(lab->string, RUNTIME_PREFIX) &&
        lab->string[strlen(RUNTIME_PREFIX)] != '\0' && cJSON_IsString(lab))
      cJSON_AddStringToObject(rt, lab->string + strlen(RUNTIME_PREFIX), lab->valuestring);
  }
  add_str(row, "tee", jstr_ne(labels, LABEL_TEE));
  add_str(row, "kernelVersion", jstr_ne(jpath2(item, "status", "nodeInfo"), "kernelVersion"));
  cJSON_AddItemToObject(row, "confidentialRuntimeReady",
                        condition_summary(find_condition(item, COND_RUNTIME)));
  cJSON_AddItemToObject(row, "confidentialSandboxVerified",
                        condition_summary(find_condition(item, COND_VERIFIED)));
  cJSON_AddItemToArray(l->rows, row);
}

static void project_cwl(st_list_t *l, const cJSON *item) {
  const cJSON *md = jget(item, "metadata");
  const cJSON *st = jget(item, "status");
  const char *ns = jstr(md, "namespace"), *name = jstr(md, "name");
  cJSON *row = cJSON_CreateObject();
  add_str(row, "namespace", ns);
  add_str(row, "name", name);
  copy_num(row, "generation", md, "generation");
  copy_num(row, "observedGeneration", st, "observedGeneration");
  cJSON_AddBoolToObject(row, "deleting", jget(md, "deletionTimestamp") != NULL);
  add_str(row, "requestedRuntimeClassName", jstr_ne(jget(item, "spec"), "runtimeClassName"));
  add_str(row, "runtimeClassName", jstr_ne(st, "runtimeClassName"));
  cJSON_AddItemToObject(row, "ready", condition_summary(find_condition(item, "Ready")));
  add_str(row, "workloadsSummary", jstr_ne(st, "workloadsSummary"));
  copy_num(row, "workloadsTotal", st, "workloadsTotal");
  copy_num(row, "workloadsSandboxed", st, "workloadsSandboxed");
  cJSON_AddItemToArray(l->rows, row);

  const cJSON *w;
  cJSON_ArrayForEach(w, jget(st, "workloads")) {
    if (!cJSON_IsObject(w))
      continue;
    cJSON *wr = cJSON_CreateObject();
    add_str(wr, "namespace", ns);
    add_str(wr, "confidentialWorkload", name);
    add_str(wr, "kind", jstr(w, "kind"));
    add_str(wr, "name", jstr(w, "name"));
    add_str(wr, "phase", jstr_ne(w, "phase"));
    add_str(wr, "reason", jstr_ne(w, "reason"));
    add_str(wr, "message", jstr_ne(w, "message"));
    copy_num(wr, "replicas", w, "replicas");
    copy_num(wr, "readyReplicas", w, "readyReplicas");
    copy_num(wr, "updatedReplicas", w, "updatedReplicas");
    copy_num(wr, "sandboxedReplicas", w, "sandboxedReplicas");
    copy_num(wr, "observedGeneration", w, "observedGeneration");
    cJSON_AddItemToArray(l->rows2, wr);
  }
}

/* RuntimeClasses scheduled by the operator's node labels are the enabled runtimes. */
static void project_rclass(st_list_t *l, const cJSON *item) {
  const char *name = jstr_ne(jget(item, "metadata"), "name");
  const cJSON *lab;
  if (name == NULL)
    return;
  cJSON_ArrayForEach(lab, jget(jget(item, "scheduling"), "nodeSelector")) {
    if (lab->string != NULL && has_prefix(lab->string, RUNTIME_PREFIX)) {
      cJSON_AddItemToArray(l->rows, cJSON_CreateString(name));
      return;
    }
  }
}

static int optout_value(const char *v) {
  static const char *const no[] = {"false", "no", "off", "0"};
  for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
    size_t n = strlen(no[i]);
    if (strlen(v) == n) {
      size_t k = 0;
      while (k < n && (v[k] | 0x20) == no[i][k])
        k++;
      if (k == n)
        return 1;
    }
  }
  return 0;
}

/* First opt-in env var (with an opt-in value) on any container or init container. */
static const cJSON *find_optin_env(const st_app_t *app, const cJSON *podspec) {
  static const char *const lists[] = {"initContainers", "containers"};
  for (size_t li = 0; li < 2; li++) {
    const cJSON *c, *e;
    cJSON_ArrayForEach(c, jget(podspec, lists[li])) {
      cJSON_ArrayForEach(e, jget(c, "env")) {
        const char *n = jstr(e, "name");
        if (n == NULL)
          continue;
        for (size_t i = 0; i < app->n_optin; i++) {
          if (strcmp(n, app->optin[i]) != 0)
            continue;
          const char *v = jstr(e, "value");
          if (!optout_value(v != NULL ? v : ""))
            return e;
        }
      }
    }
  }
  return NULL;
}

static void project_workload(st_list_t *l, const cJSON *item) {
  const cJSON *md = jget(item, "metadata");
  const cJSON *ann = jget(md, "annotations");
  const cJSON *podspec = jget(jpath2(item, "spec", "template"), "spec");
  const char *cls = jstr_ne(podspec, "runtimeClassName");
  const char *orig = jstr(ann, CO_ANN_ORIGINAL);
  const char *annv = jstr(ann, CO_ANN_RUNTIME);
  const cJSON *env = find_optin_env(l->app, podspec);
  /* Listed: a class in force, a record of ours, or an opt-in (an opt-out value is none). */
  if (cls == NULL && orig == NULL && (annv == NULL || optout_value(annv)) && env == NULL)
    return;
  cJSON *row = cJSON_CreateObject();
  add_str(row, "namespace", jstr(md, "namespace"));
  add_str(row, "kind", l->kind);
  add_str(row, "name", jstr(md, "name"));
  add_str(row, "runtimeClassName", cls);
  add_str(row, "originalRuntimeClass", orig);
  add_str(row, "runtimeAnnotation", annv);
  if (env != NULL) {
    const char *v = jstr(env, "value");
    co_buf_t b;
    co_buf_init(&b, 4096);
    co_buf_appendf(&b, "%s=%s", jstr(env, "name"), v != NULL ? v : "");
    add_str(row, "optInEnv", co_buf_str(&b));
    co_buf_free(&b);
  } else {
    cJSON_AddNullToObject(row, "optInEnv");
  }
  const cJSON *rep = jpath2(item, "spec", "replicas");
  cJSON_AddNumberToObject(row, "replicas", cJSON_IsNumber(rep) ? rep->valuedouble : 1);
  const cJSON *rdy = jpath2(item, "status", "readyReplicas");
  cJSON_AddNumberToObject(row, "readyReplicas", cJSON_IsNumber(rdy) ? rdy->valuedouble : 0);
  cJSON_AddNullToObject(row, "confidentialWorkload"); /* filled once the CRs are known */
  cJSON_AddItemToArray(l->rows, row);
}

/* ---- lists ----------------------------------------------------------------------------- */

static void on_page(co_req_t *req);
static void on_client_closed(co_client_t *c) { (void)c; }

static void reset_rows(st_list_t *l) {
  cJSON_Delete(l->rows);
  cJSON_Delete(l->rows2);
  l->rows = cJSON_CreateArray();
  l->rows2 = l->id == L_CWLS ? cJSON_CreateArray() : NULL;
}

static int start_page(st_list_t *l) {
  co_buf_t p;
  co_buf_init(&p, 64 * 1024);
  int rc = co_buf_appendf(&p, "%s?limit=%d", l->path, l->app->o->page_size);
  if (rc == 0 && l->cont != NULL) {
    rc = co_buf_appends(&p, "&continue=");
    if (rc == 0)
      rc = co_buf_append_urlenc(&p, l->cont);
  }
  if (rc == 0)
    rc = co_req_start(&l->req, CO_GET, co_buf_str(&p), NULL, 0, on_page);
  co_buf_free(&p);
  return rc;
}

/* The list is complete or failed: once every list is, the client closes and the loop ends. */
static void finish(st_list_t *l, int err) {
  st_app_t *app = l->app;
  if (err != 0) {
    l->err = err;
    l->http_status = l->req.http_status;
    l->reason = co_strdup(l->req.status_reason);
    l->message = co_strdup(l->req.status_message);
    cJSON_Delete(l->rows);
    cJSON_Delete(l->rows2);
    l->rows = l->rows2 = NULL;
    co_log(CO_LOG_DEBUG, "list failed", CO_S("path", l->path), CO_E(err),
           CO_I("status", l->http_status), CO_S("reason", l->reason), CO_S("message", l->message));
  } else {
    co_log(CO_LOG_DEBUG, "list complete", CO_S("path", l->path),
           CO_I("rows", cJSON_GetArraySize(l->rows)));
  }
  co_free(l->cont);
  l->cont = NULL;
  co_req_cleanup(&l->req);
  if (--app->pending == 0)
    co_client_close(&app->client, on_client_closed);
}

static void on_page(co_req_t *req) {
  st_list_t *l = req->data;
  int err = req->err;
  cJSON *root = NULL;
  const cJSON *items = NULL;
  if (err == 0) {
    root = cJSON_ParseWithLength(req->body.data, req->body.len);
    items = jget(root, "items");
    if (!cJSON_IsArray(items))
      err = CO_EPARSE;
  }
  co_buf_free(&req->body); /* pages can be large */
  if (err == CO_EGONE && l->cont != NULL && l->restarts < MAX_RESTARTS) {
    /* The continue token expired: list again from the start. */
    cJSON_Delete(root);
    l->restarts++;
    co_free(l->cont);
    l->cont = NULL;
    reset_rows(l);
    err = start_page(l);
    if (err != 0)
      finish(l, err);
    return;
  }
  if (err != 0) {
    cJSON_Delete(root);
    finish(l, err);
    return;
  }
  const cJSON *item;
  cJSON_ArrayForEach(item, items) {
    if (!cJSON_IsObject(item))
      continue;
    switch (l->id) {
    case L_NODES:
      project_node(l, item);
      break;
    case L_CWLS:
      project_cwl(l, item);
      break;
    case L_RCLASSES:
      project_rclass(l, item);
      break;
    default:
      project_workload(l, item);
      break;
    }
  }
  const char *cont = jstr_ne(jget(root, "metadata"), "continue");
  co_free(l->cont);
  l->cont = co_strdup(cont);
  cJSON_Delete(root);
  if (l->cont == NULL) {
    finish(l, 0);
    return;
  }
  err = start_page(l);
  if (err != 0)
    finish(l, err);
}

/* Builds "<group path>[/namespaces/<ns>]/<resource>". */
static char *collection_path(const char *prefix, const char *ns, const char *resource) {
  co_buf_t b;
  co_buf_init(&b, 4096);
  co_buf_appends(&b, prefix);
  if (ns != NULL) {
    co_buf_appends(&b, "/namespaces/");
    co_buf_append_urlenc(&b, ns);
  }
  co_buf_appendf(&b, "/%s", resource);
  return co_buf_steal(&b);
}

static void list_init(st_app_t *app, int id, const char *what, const char *path, int optional) {
  st_list_t *l = &app->lists[id];
  l->app = app;
  l->id = id;
  l->what = what;
  l->path = co_strdup(path);
  l->optional = optional;
  l->used = 1;
  l->kind = id == L_DEPLOYMENTS ? "Deployment" : id == L_STATEFULSETS ? "StatefulSet" : NULL;
  co_req_init(&app->client, &l->req);
  l->req.data = l;
  reset_rows(l);
}

static void list_free(st_list_t *l) {
  co_free(l->path);
  co_free(l->cont);
  co_free(l->reason);
  co_free(l->message);
  cJSON_Delete(l->rows);
  cJSON_Delete(l->rows2);
  memset(l, 0, sizeof(*l));
}

/* ---- text tables ----------------------------------------------------------------------- */

typedef struct tbl_s {
  size_t ncols;
  size_t nrows; /* header included */
  size_t cap;
  char **cells; /* nrows * ncols owned strings */
  size_t *width;
} tbl_t;

/* Display width: UTF-8 code points (every byte that does not continue a sequence). */
static size_t disp_width(const char *s) {
  size_t n = 0;
  for (; *s != '\0'; s++)
    if (((unsigned char)*s & 0xC0) != 0x80)
      n++;
  return n;
}

/* Owned copy safe for a terminal: newlines and tabs become spaces; other C0/C1 control
 * characters (escape sequences from cluster data) become '?'. NULL or "" becomes "-". */
static char *sanitize(const char *s) {
  if (s == NULL || s[0] == '\0')
    return co_strdup("-");
  size_t n = strlen(s);
  char *r = co_malloc(n + 1);
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '\n' || c == '\r' || c == '\t')
      r[k++] = ' ';
    else if (c < 0x20 || c == 0x7F)
      r[k++] = '?';
    else if (c == 0xC2 && i + 1 < n && (unsigned char)s[i + 1] >= 0x80 &&
             (unsigned char)s[i + 1] <= 0x9F) {
      r[k++] = '?';
      i++;
    } else
      r[k++] = (char)c;
  }
  r[k] = '\0';
  return r;
}

/* Cuts s (in place) to at most maxw code points, the last three being "...". */
static void truncate_disp(char *s, size_t maxw) {
  if (maxw < 4 || disp_width(s) <= maxw)
    return;
  size_t keep = maxw - 3, cps = 0, i = 0;
  for (; s[i] != '\0'; i++) {
    if (((unsigned char)s[i] & 0xC0) != 0x80) {
      if (cps == keep)
        break;
      cps++;
    }
  }
  /* At least 4 code points (>= 4 bytes) follow i, so "..." and the NUL fit. */
  memcpy(s + i, "...", 4);
}

static void tbl_init(tbl_t *t, size_t ncols) {
  memset(t, 0, sizeof(*t));
  t->ncols = ncols;
  t->width = co_calloc(ncols, sizeof(size_t));
}

static void tbl_add(tbl_t *t, const char *const *cells) {
  if (t->nrows == t->cap) {
    t->cap = t->cap ? t->cap * 2 : 16;
    t->cells = co_realloc(t->cells, t->cap * t->ncols * sizeof(char *));
  }
  for (size_t c = 0; c < t->ncols; c++)
    t->cells[t->nrows * t->ncols + c] = sanitize(cells[c]);
  t->nrows++;
}

static void tbl_free(tbl_t *t) {
  for (size_t i = 0; i < t->nrows * t->ncols; i++)
    co_free(t->cells[i]);
  co_free(t->cells);
  co_free(t->width);
  memset(t, 0, sizeof(*t));
}

static void pad(FILE *out, size_t n) {
  for (size_t i = 0; i < n; i++)
    fputc(' ', out);
}

/* Prints with columns as wide as their content, two spaces apart, no trailing blanks. When
 * the last column is cut (cut_last), it gets what remains of LINE_WIDTH, at least
 * MIN_MESSAGE_WIDTH. */
static void tbl_print(tbl_t *t, FILE *out, int cut_last) {
  size_t nc = t->ncols;
  for (size_t c = 0; c < nc; c++) {
    t->width[c] = 0;
    for (size_t r = 0; r < t->nrows; r++) {
      size_t w = disp_width(t->cells[r * nc + c]);
      if (w > t->width[c])
        t->width[c] = w;
    }
  }
  if (cut_last && nc > 0) {
    size_t used = 0;
    for (size_t c = 0; c + 1 < nc; c++)
      used += t->width[c] + 2;
    size_t avail = used + MIN_MESSAGE_WIDTH < LINE_WIDTH ? LINE_WIDTH - used : MIN_MESSAGE_WIDTH;
    for (size_t r = 1; r < t->nrows; r++)
      truncate_disp(t->cells[r * nc + nc - 1], avail);
  }
  for (size_t r = 0; r < t->nrows; r++) {
    for (size_t c = 0; c < nc; c++) {
      const char *s = t->cells[r * nc + c];
      fputs(s, out);
      if (c + 1 < nc)
        pad(out, t->width[c] - disp_width(s) + 2);
    }
    fputc('\n', out);
  }
}

/* Section title, after a blank line unless it is the first. */
static void title(st_app_t *app, FILE *out, const char *t) {
  fprintf(out, "%s%s\n", app->sections++ > 0 ? "\n" : "", t);
}

/* ---- report ---------------------------------------------------------------------------- */

typedef struct strset_s {
  char **v;
  size_t n, cap;
} strset_t;

static void strset_add(strset_t *s, const char *x) {
  if (x == NULL || x[0] == '\0' || strcmp(x, CO_CLASS_AUTO) == 0)
    return;
  for (size_t i = 0; i < s->n; i++)
    if (strcmp(s->v[i], x) == 0)
      return;
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 8;
    s->v = co_realloc(s->v, s->cap * sizeof(char *));
  }
  s->v[s->n++] = co_strdup(x);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void strset_free(strset_t *s) {
  for (size_t i = 0; i < s->n; i++)
    co_free(s->v[i]);
  co_free(s->v);
  memset(s, 0, sizeof(*s));
}

/* Adds each name of a comma list. */
static void strset_add_list(strset_t *s, const char *list) {
  while (list != NULL && *list != '\0') {
    const char *comma = strchr(list, ',');
    size_t n = comma != NULL ? (size_t)(comma - list) : strlen(list);
    if (n > 0) {
      char *x = co_strndup(list, n);
      strset_add(s, x);
      co_free(x);
    }
    list = comma != NULL ? comma + 1 : NULL;
  }
}

/* The runtime class columns, sorted. */
static void collect_classes(st_app_t *app, strset_t *set) {
  const cJSON *row, *rt;
  cJSON_ArrayForEach(row, app->lists[L_NODES].rows) {
    cJSON_ArrayForEach(rt, jget(row, "runtimes")) strset_add(set, rt->string);
  }
  cJSON_ArrayForEach(row, app->lists[L_RCLASSES].rows) {
    if (cJSON_IsString(row))
      strset_add(set, row->valuestring);
  }
  cJSON_ArrayForEach(row, app->lists[L_CWLS].rows) {
    strset_add(set, jstr(row, "requestedRuntimeClassName"));
    strset_add(set, jstr(row, "runtimeClassName"));
  }
  strset_add_list(set, app->o->runtime_classes);
  if (set->n > 1)
    qsort(set->v, set->n, sizeof(char *), cmp_str);
}

/* Owned printf result. */
static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...) {
  co_buf_t b;
  co_buf_init(&b, 1u << 20);
  va_list ap;
  va_start(ap, f);
  co_buf_vappendf(&b, f, ap);
  va_end(ap);
  return co_buf_steal(&b);
}

static char *num_str(const cJSON *o, const char *k) {
  const cJSON *v = jget(o, k);
  return cJSON_IsNumber(v) ? fmt("%.0f", v->valuedouble) : co_strdup("?");
}

/* Node conditions shown as columns, each with its message as a numbered note. */
static const char *const cond_keys[] = {"confidentialRuntimeReady", "confidentialSandboxVerified"};
static const char *const cond_heads[] = {"RUNTIME-READY", "SANDBOX-VERIFIED"};
#define N_COND_COLS 2

static void print_nodes(st_app_t *app, const strset_t *classes, FILE *out) {
  const cJSON *rows = app->lists[L_NODES].rows;
  const cJSON *row;
  int any_cond[N_COND_COLS] = {0, 0};
  size_t ncond = 0;
  cJSON_ArrayForEach(row, rows) {
    for (int k = 0; k < N_COND_COLS; k++)
      if (cJSON_IsObject(jget(row, cond_keys[k])))
        any_cond[k] = 1;
  }
  for (int k = 0; k < N_COND_COLS; k++)
    ncond += (size_t)any_cond[k];
  size_t nc = 3 + classes->n + 2 + ncond;
  const char **cells = co_calloc(nc, sizeof(char *));
  char *owned[1 + N_COND_COLS] = {NULL, NULL, NULL}; /* the READY and condition cells */
  tbl_t t;
  tbl_init(&t, nc);
  size_t c = 0;
  cells[c++] = "NAME";
  cells[c++] = "READY";
  cells[c++] = "OPTED-IN";
  for (size_t i = 0; i < classes->n; i++)
    cells[c++] = classes->v[i];
  cells[c++] = "TEE";
  cells[c++] = "KERNEL";
  for (int k = 0; k < N_COND_COLS; k++)
    if (any_cond[k])
      cells[c++] = cond_heads[k];
  tbl_add(&t, cells);
  co_buf_t notes;
  co_buf_init(&notes, 16u << 20);
  int nnote = 0;
  cJSON_ArrayForEach(row, rows) {
    c = 0;
    cells[c++] = jstr(row, "name");
    owned[0] = fmt("%s%s", jstr(row, "ready") ? jstr(row, "ready") : "Unknown",
                   cJSON_IsTrue(jget(row, "unschedulable")) ? ",SchedulingDisabled" : "");
    cells[c++] = owned[0];
    cells[c++] = cJSON_IsTrue(jget(row, "optedIn")) ? "yes" : "no";
    for (size_t i = 0; i < classes->n; i++)
      cells[c++] = jstr(jget(row, "runtimes"), classes->v[i]);
    cells[c++] = jstr(row, "tee");
    cells[c++] = jstr(row, "kernelVersion");
    for (int k = 0; k < N_COND_COLS; k++) {
      if (!any_cond[k])
        continue;
      const cJSON *cond = jget(row, cond_keys[k]);
      if (!cJSON_IsObject(cond)) {
        cells[c++] = NULL;
        continue;
      }
      const char *msg = jstr(cond, "message");
      const char *reason = jstr(cond, "reason");
      if (msg != NULL && msg[0] != '\0') {
        char *m = sanitize(msg), *n = sanitize(jstr(row, "name"));
        co_buf_appendf(&notes, "  [%d] %s: %s\n", ++nnote, n, m);
        co_free(m);
        co_free(n);
      }
      owned[1 + k] = fmt("%s%s%s", jstr(cond, "status") ? jstr(cond, "status") : "Unknown",
                         reason ? "/" : "", reason ? reason : "");
      if (msg != NULL && msg[0] != '\0') {
        char *x = fmt("%s [%d]", owned[1 + k], nnote);
        co_free(owned[1 + k]);
        owned[1 + k] = x;
      }
      cells[c++] = owned[1 + k];
    }
    tbl_add(&t, cells);
    for (int k = 0; k < 1 + N_COND_COLS; k++) {
      co_free(owned[k]);
      owned[k] = NULL;
    }
  }
  title(app, out, "NODES");
  if (t.nrows == 1)
    fputs("No nodes found.\n", out);
  else
    tbl_print(&t, out, 0);
  fputs(co_buf_str(&notes), out); /* the condition messages, in full */
  co_buf_free(&notes);
  tbl_free(&t);
  co_free(cells);
}

static void print_cwls(st_app_t *app, FILE *out) {
  const char *ns = app->o->namespace != NULL && app->o->namespace[0] ? app->o->namespace : NULL;
  const cJSON *row;
  tbl_t t;
  tbl_init(&t, 6);
  const char *head[] = {"NAMESPACE", "NAME", "RUNTIME", "READY", "REASON", "WORKLOADS"};
  tbl_add(&t, head);
  cJSON_ArrayForEach(row, app->lists[L_CWLS].rows) {
    const char *rt = jstr(row, "runtimeClassName");
    const char *req = jstr(row, "requestedRuntimeClassName");
    char *runtime = rt != NULL ? co_strdup(rt) : req != NULL ? fmt("%s(requested)", req) : NULL;
    const cJSON *ready = jget(row, "ready");
    const char *cells[] = {
        jstr(row, "namespace"), jstr(row, "name"),     runtime,
        jstr(ready, "status"),  jstr(ready, "reason"), jstr(row, "workloadsSummary")};
    tbl_add(&t, cells);
    co_free(runtime);
  }
  title(app, out, "CONFIDENTIALWORKLOADS");
  if (t.nrows == 1)
    fprintf(out, "No ConfidentialWorkloads found%s%s.\n", ns ? " in namespace " : "", ns ? ns : "");
  else
    tbl_print(&t, out, 0);
  tbl_free(&t);
}

static void print_workloads(st_app_t *app, FILE *out) {
  const cJSON *row;
  tbl_t t;
  tbl_init(&t, 6);
  const char *head[] = {"NAMESPACE", "CWL", "KIND/NAME", "PHASE", "SANDBOXED", "MESSAGE"};
  tbl_add(&t, head);
  cJSON_ArrayForEach(row, app->lists[L_CWLS].rows2) {
    const char *kind = jstr(row, "kind"), *name = jstr(row, "name");
    char *kn = fmt("%s/%s", kind ? kind : "?", name ? name : "?");
    char *sb = NULL;
    if (cJSON_IsNumber(jget(row, "sandboxedReplicas")) || cJSON_IsNumber(jget(row, "replicas"))) {
      char *a = num_str(row, "sandboxedReplicas"), *b = num_str(row, "replicas");
      sb = fmt("%s/%s", a, b);
      co_free(a);
      co_free(b);
    }
    const char *reason = jstr(row, "reason"), *msg = jstr(row, "message");
    char *m = reason && msg ? fmt("%s: %s", reason, msg) : co_strdup(reason ? reason : msg);
    const char *cells[] = {
        jstr(row, "namespace"), jstr(row, "confidentialWorkload"), kn, jstr(row, "phase"), sb, m};
    tbl_add(&t, cells);
    co_free(kn);
    co_free(sb);
    co_free(m);
  }
  title(app, out, "WORKLOADS");
  if (t.nrows == 1)
    fputs("No workloads reported by the ConfidentialWorkloads.\n", out);
  else
    tbl_print(&t, out, 1);
  tbl_free(&t);
}

typedef struct wref_s {
  char *key; /* "namespace\x01kind\x01name" */
  const char *cwl;
} wref_t;

static int cmp_wref(const void *a, const void *b) {
  return strcmp(((const wref_t *)a)->key, ((const wref_t *)b)->key);
}

static char *wkey(const cJSON *row) {
  const char *ns = jstr(row, "namespace"), *k = jstr(row, "kind"), *n = jstr(row, "name");
  return fmt("%s\x01%s\x01%s", ns ? ns : "", k ? k : "", n ? n : "");
}

/* Sets allWorkloads[].confidentialWorkload from the CRs' status.workloads. */
static void link_workloads(st_app_t *app, cJSON *all) {
  const cJSON *w;
  size_t n = (size_t)cJSON_GetArraySize(app->lists[L_CWLS].rows2), i = 0;
  if (n == 0)
    return;
  wref_t *refs = co_calloc(n, sizeof(*refs));
  cJSON_ArrayForEach(w, app->lists[L_CWLS].rows2) {
    refs[i].key = wkey(w);
    refs[i].cwl = jstr(w, "confidentialWorkload");
    i++;
  }
  qsort(refs, n, sizeof(*refs), cmp_wref);
  cJSON *row;
  cJSON_ArrayForEach(row, all) {
    wref_t k = {wkey(row), NULL};
    const wref_t *hit = bsearch(&k, refs, n, sizeof(*refs), cmp_wref);
    if (hit != NULL && hit->cwl != NULL)
      cJSON_ReplaceItemInObjectCaseSensitive(row, "confidentialWorkload",
                                             cJSON_CreateString(hit->cwl));
    co_free(k.key);
  }
  for (i = 0; i < n; i++)
    co_free(refs[i].key);
  co_free(refs);
}

/* Merges Deployments then StatefulSets into one array (owned by the caller). */
static cJSON *all_workloads(st_app_t *app) {
  cJSON *all = cJSON_CreateArray();
  for (int id = L_DEPLOYMENTS; id <= L_STATEFULSETS; id++) {
    cJSON *rows = app->lists[id].rows;
    cJSON *it;
    while (rows != NULL && (it = cJSON_DetachItemFromArray(rows, 0)) != NULL)
      cJSON_AddItemToArray(all, it);
  }
  link_workloads(app, all);
  return all;
}

static void print_all_workloads(st_app_t *app, const cJSON *all, FILE *out) {
  const cJSON *row;
  tbl_t t;
  tbl_init(&t, 6);
  const char *head[] = {"NAMESPACE", "KIND/NAME", "RUNTIME", "ORIGINAL", "OPT-IN", "READY"};
  tbl_add(&t, head);
  cJSON_ArrayForEach(row, all) {
    const char *kind = jstr(row, "kind"), *name = jstr(row, "name");
    char *kn = fmt("%s/%s", kind ? kind : "?", name ? name : "?");
    const char *orig = jstr(row, "originalRuntimeClass");
    const char *cwl = jstr(row, "confidentialWorkload");
    const char *ann = jstr(row, "runtimeAnnotation");
    const char *env = jstr(row, "optInEnv");
    char *optin = cwl   ? fmt("cwl:%s", cwl)
                  : ann ? (ann[0] ? fmt("annotation:%s", ann) : co_strdup("annotation"))
                  : env ? fmt("env:%s", env)
                        : NULL;
    char *a = num_str(row, "readyReplicas"), *b = num_str(row, "replicas");
    char *ready = fmt("%s/%s", a, b);
    const char *cells[] = {jstr(row, "namespace"),
                           kn,
                           jstr(row, "runtimeClassName"),
                           orig == NULL ? NULL
                           : orig[0]    ? orig
                                        : "<none>",
                           optin,
                           ready};
    tbl_add(&t, cells);
    co_free(kn);
    co_free(optin);
    co_free(a);
    co_free(b);
    co_free(ready);
  }
  title(app, out, "OPTED-IN WORKLOADS");
  if (t.nrows == 1)
    fputs("No Deployment or StatefulSet has a runtimeClassName or an opt-in.\n", out);
  else
    tbl_print(&t, out, 0);
  tbl_free(&t);
}

/* ---- errors ---------------------------------------------------------------------------- */

static int crd_missing(const st_list_t *l) { return l->id == L_CWLS && l->err == CO_ENOTFOUND; }

static char *error_line(const st_list_t *l) {
  if (crd_missing(l))
    return fmt("the ConfidentialWorkload CRD is not installed (the API server serves no "
               "confidentialworkloads.%s/%s; apply crd/confidentialworkloads.yaml)",
               "confidential.cypherpunk.io", "v1alpha1");
  const char *msg = l->message != NULL && l->message[0] ? l->message : co_strerror(l->err);
  if (l->http_status > 0)
    return fmt("cannot list %s: %s (HTTP %ld%s%s)", l->what, msg, l->http_status,
               l->reason ? " " : "", l->reason ? l->reason : "");
  if (l->message != NULL && l->message[0])
    return fmt("cannot list %s: %s: %s", l->what, co_strerror(l->err), l->message);
  return fmt("cannot list %s: %s", l->what, co_strerror(l->err));
}

/* One line per failed list; a transport failure (no HTTP answer) shared by several lists is
 * said once. */
static int report_errors(st_app_t *app, FILE *err, cJSON *json_errors) {
  int failed = 0;
  int said[L_COUNT];
  size_t nsaid = 0;
  for (int i = 0; i < L_COUNT; i++) {
    const st_list_t *l = &app->lists[i];
    if (!l->used || l->err == 0 || l->optional)
      continue;
    failed = 1;
    char *line = error_line(l);
    if (json_errors != NULL) {
      cJSON *e = cJSON_CreateObject();
      add_str(e, "resource", l->what);
      add_str(e, "error", co_err_name(l->err));
      if (l->http_status > 0)
        cJSON_AddNumberToObject(e, "status", (double)l->http_status);
      else
        cJSON_AddNullToObject(e, "status");
      add_str(e, "reason", l->reason);
      add_str(e, "message", line);
      cJSON_AddItemToArray(json_errors, e);
    }
    int dup = 0;
    for (size_t k = 0; l->http_status == 0 && k < nsaid; k++)
      if (said[k] == l->err)
        dup = 1;
    if (!dup) {
      char *s = sanitize(line);
      fprintf(err, "error: %s\n", s);
      co_free(s);
      if (l->http_status == 0)
        said[nsaid++] = l->err;
    }
    co_free(line);
  }
  return failed;
}

/* ---- run ------------------------------------------------------------------------------- */

static int split_optin(st_app_t *app, const char *list) {
  app->optin_buf = co_strdup(list != NULL ? list : "");
  char *s = app->optin_buf;
  while (s != NULL && *s != '\0') {
    char *comma = strchr(s, ',');
    if (comma != NULL)
      *comma = '\0';
    if (*s != '\0') {
      if (app->n_optin == MAX_OPTIN)
        return CO_EINVAL;
      app->optin[app->n_optin++] = s;
    }
    s = comma != NULL ? comma + 1 : NULL;
  }
  return 0;
}

/* Prints the JSON report; returns 1 when a list failed (said on err too). */
static int print_json(st_app_t *app, const strset_t *classes, cJSON *all, FILE *out, FILE *err) {
  cJSON *root = cJSON_CreateObject();
  static const struct {
    int id;
    const char *key;
  } arrays[] = {{L_NODES, "nodes"}, {L_CWLS, "confidentialWorkloads"}};
  for (size_t i = 0; i < 2; i++) {
    st_list_t *l = &app->lists[arrays[i].id];
    if (l->rows != NULL) {
      cJSON_AddItemToObject(root, arrays[i].key, l->rows);
      l->rows = NULL;
    } else {
      cJSON_AddNullToObject(root, arrays[i].key);
    }
  }
  st_list_t *cw = &app->lists[L_CWLS];
  if (cw->rows2 != NULL) {
    cJSON_AddItemToObject(root, "workloads", cw->rows2);
    cw->rows2 = NULL;
  } else {
    cJSON_AddNullToObject(root, "workloads");
  }
  cJSON *rc = cJSON_AddArrayToObject(root, "runtimeClasses");
  for (size_t i = 0; i < classes->n; i++)
    cJSON_AddItemToArray(rc, cJSON_CreateString(classes->v[i]));
  if (app->o->all_workloads) {
    if (all != NULL)
      cJSON_AddItemReferenceToObject(root, "allWorkloads", all);
    else
      cJSON_AddNullToObject(root, "allWorkloads");
  }
  cJSON *errors = cJSON_AddArrayToObject(root, "errors");
  int failed = report_errors(app, err, errors);
  char *s = cJSON_Print(root);
  fputs(s, out);
  fputc('\n', out);
  cJSON_free(s);
  cJSON_Delete(root);
  return failed;
}

int co_status_run(const co_status_opts_t *o) {
  FILE *out = o->out != NULL ? o->out : stdout;
  FILE *errf = o->err != NULL ? o->err : stderr;
  int json = 0;
  if (o->output != NULL && strcmp(o->output, "json") == 0)
    json = 1;
  else if (o->output != NULL && strcmp(o->output, "table") != 0) {
    fprintf(errf, "error: invalid --output %s (table or json)\n", o->output);
    return 2;
  }
  if (o->page_size < 1 || o->page_size > 100000 || o->request_timeout_s < 1) {
    fprintf(errf, "error: invalid page size or request timeout\n");
    return 2;
  }
  st_app_t *app = co_calloc(1, sizeof(*app));
  app->o = o;
  if (split_optin(app, o->optin_env) != 0) {
    fprintf(errf, "error: invalid --optin-env (at most %d names)\n", MAX_OPTIN);
    co_free(app->optin_buf);
    co_free(app);
    return 2;
  }

  co_kubeconfig_t cfg;
  char err[512] = "";
  memset(&cfg, 0, sizeof(cfg));
  int rc = co_controller_load_config(&cfg, o->kubeconfig, o->context, err, sizeof(err));
  if (rc != 0) {
    fprintf(errf, "error: cannot load the kubeconfig: %s\n", err[0] ? err : co_strerror(rc));
    co_free(app->optin_buf);
    co_free(app);
    return 1;
  }
  uv_loop_init(&app->loop);
  co_client_opts_t copts;
  co_client_opts_default(&copts);
  copts.max_retries = 3;
  copts.request_timeout_ms = o->request_timeout_s * 1000;
  copts.user_agent = "confidential-operator-status";
  rc = co_client_init(&app->loop, &app->client, &cfg, &copts, err, sizeof(err));
  co_log(CO_LOG_DEBUG, "status", CO_S("server", cfg.server), CO_S("context", cfg.context),
         CO_S("namespace", o->namespace));
  co_kubeconfig_free(&cfg);
  if (rc != 0) {
    fprintf(errf, "error: cannot create the API client: %s\n", err[0] ? err : co_strerror(rc));
    uv_loop_close(&app->loop);
    co_free(app->optin_buf);
    co_free(app);
    return 1;
  }
  app->client.data = app;

  const char *ns = o->namespace != NULL && o->namespace[0] != '\0' ? o->namespace : NULL;
  char *p = collection_path("/api/v1", NULL, "nodes");
  list_init(app, L_NODES, "nodes", p, 0);
  co_free(p);
  p = collection_path(CWL_PATH, ns, "confidentialworkloads");
  list_init(app, L_CWLS, "confidentialworkloads", p, 0);
  co_free(p);
  list_init(app, L_RCLASSES, "runtimeclasses", "/apis/node.k8s.io/v1/runtimeclasses", 1);
  if (o->all_workloads) {
    p = collection_path("/apis/apps/v1", ns, "deployments");
    list_init(app, L_DEPLOYMENTS, "deployments", p, 0);
    co_free(p);
    p = collection_path("/apis/apps/v1", ns, "statefulsets");
    list_init(app, L_STATEFULSETS, "statefulsets", p, 0);
    co_free(p);
  }
  for (int i = 0; i < L_COUNT; i++)
    app->pending += app->lists[i].used;
  for (int i = 0; i < L_COUNT; i++) {
    st_list_t *l = &app->lists[i];
    if (l->used && (rc = start_page(l)) != 0)
      finish(l, rc);
  }
  uv_run(&app->loop, UV_RUN_DEFAULT);
  int lrc = uv_loop_close(&app->loop);
  if (lrc != 0)
    co_log(CO_LOG_ERROR, "event loop closed with handles still open", CO_I("rc", lrc));

  strset_t classes = {0};
  collect_classes(app, &classes);
  cJSON *all = NULL;
  if (o->all_workloads && app->lists[L_DEPLOYMENTS].rows != NULL &&
      app->lists[L_STATEFULSETS].rows != NULL)
    all = all_workloads(app);
  int failed;
  if (json) {
    failed = print_json(app, &classes, all, out, errf);
  } else {
    if (app->lists[L_NODES].rows != NULL)
      print_nodes(app, &classes, out);
    if (app->lists[L_CWLS].rows != NULL) {
      print_cwls(app, out);
      if (cJSON_GetArraySize(app->lists[L_CWLS].rows) > 0)
        print_workloads(app, out);
    }
    if (all != NULL)
      print_all_workloads(app, all, out);
    fflush(out);
    failed = report_errors(app, errf, NULL);
  }
  fflush(out);
  cJSON_Delete(all);
  strset_free(&classes);
  for (int i = 0; i < L_COUNT; i++)
    list_free(&app->lists[i]);
  co_free(app->optin_buf);
  co_free(app);
  return failed || lrc != 0 ? 1 : 0;
}
