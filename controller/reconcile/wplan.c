/* The write a decision makes to a workload, and its two renderings (see co/wplan.h). */
#include "co/wplan.h"

#include <stdio.h>
#include <string.h>

#include "co/alloc.h"
#include "co/error.h"
#include "co/reconcile.h"

#define TSPEC "/spec/template/spec"
#define PATH_MAX_LEN 1024
#define RECORD_MAX (64 * 1024)

static const char *nonempty(const char *s) { return s != NULL && s[0] != '\0' ? s : NULL; }

static int str_eq(const char *a, const char *b) {
  return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* One "name=medium|sizeLimit" pair of the projection's empty_dirs, split in place of copies.
 * Returns 0 when the pair is malformed or its name is too long for a volume. */
typedef struct {
  char name[254];
  char medium[160];
  char size[64];
} ed_t;

static int ed_split(const char *pair, ed_t *e) {
  const char *eq = strchr(pair, '=');
  const char *bar = eq != NULL ? strchr(eq, '|') : NULL;
  if (eq == NULL || bar == NULL || (size_t)(eq - pair) >= sizeof(e->name))
    return 0;
  snprintf(e->name, sizeof(e->name), "%.*s", (int)(eq - pair), pair);
  snprintf(e->medium, sizeof(e->medium), "%.*s", (int)(bar - eq - 1), eq + 1);
  snprintf(e->size, sizeof(e->size), "%s", bar + 1);
  return 1;
}

static void record_entry(cJSON *eds, const ed_t *e) {
  if (cJSON_GetObjectItemCaseSensitive(eds, e->name) != NULL)
    return;
  char v[sizeof(e->medium) + sizeof(e->size) + 1];
  snprintf(v, sizeof(v), "%s|%s", e->medium, e->size);
  cJSON_AddStringToObject(eds, e->name, v);
}

/* The changes that bring h into force on w, and the record of what they replace. */
static void harden_apply(co_wplan_t *out, const co_hardening_t *h, const co_workload_t *w) {
  const char *have = co_kv_get(&w->annotations, CO_ANN_HARDENING);
  cJSON *rec = have != NULL ? cJSON_Parse(have) : cJSON_CreateObject();
  cJSON *eds = cJSON_GetObjectItemCaseSensitive(rec, "emptyDirs");
  int changed = 0;
  if (have == NULL) {
    /* First time: every emptyDir and the automount setting as the owner had them. */
    eds = cJSON_AddObjectToObject(rec, "emptyDirs");
    CO_KV_FOREACH(&w->empty_dirs, p) {
      ed_t e;
      if (ed_split(p, &e))
        record_entry(eds, &e);
    }
    cJSON_AddNumberToObject(rec, "automountServiceAccountToken", w->automount_sa_token);
    changed = 1;
  }
  const char *limit = nonempty(h->empty_dir_size_limit);
  if (h->memory_backed_empty_dirs && w->empty_dirs.data != NULL) {
    out->vols = co_calloc(co_kv_count(&w->empty_dirs), sizeof(*out->vols));
    CO_KV_FOREACH(&w->empty_dirs, p) {
      ed_t e;
      if (!ed_split(p, &e))
        continue;
      co_wplan_vol_t *v = &out->vols[out->n_vols];
      if (strcmp(e.medium, "Memory") != 0) {
        v->medium_op = CO_FIELD_SET;
        snprintf(v->medium, sizeof(v->medium), "%s", "Memory");
      }
      if (e.size[0] == '\0' && limit != NULL) {
        v->size_op = CO_FIELD_SET;
        snprintf(v->size, sizeof(v->size), "%s", limit);
      }
      if (v->medium_op == CO_FIELD_KEEP && v->size_op == CO_FIELD_KEEP)
        continue;
      memcpy(v->name, e.name, sizeof(v->name));
      out->n_vols++;
      /* An emptyDir the owner added after the record was made: record it too, so that a
       * restore puts it back as well. */
      if (have != NULL && cJSON_IsObject(eds) &&
          cJSON_GetObjectItemCaseSensitive(eds, e.name) == NULL) {
        record_entry(eds, &e);
        changed = 1;
      }
    }
  }
  if (h->automount_sa_token == 0 && w->automount_sa_token != 0) {
    out->automount_op = CO_FIELD_SET;
    out->automount = 0;
  }
  /* A record someone made unreadable stays as it is (restore then drops it, changing
   * nothing): guessing what it said could only restore something wrong. */
  if (changed && rec != NULL) {
    char *js = cJSON_PrintUnformatted(rec);
    if (js != NULL && strlen(js) <= RECORD_MAX)
      out->record_hardening = co_strdup(js);
    cJSON_free(js);
  }
  cJSON_Delete(rec);
}

/* The changes that put back what CO_ANN_HARDENING recorded. */
static void harden_restore(co_wplan_t *out, const co_workload_t *w) {
  const char *js = co_kv_get(&w->annotations, CO_ANN_HARDENING);
  if (js == NULL)
    return;
  out->drop_hardening = 1;
  cJSON *rec = cJSON_Parse(js);
  if (rec == NULL)
    return; /* someone edited it: drop the record, change nothing */
  const cJSON *eds = cJSON_GetObjectItemCaseSensitive(rec, "emptyDirs");
  int n = cJSON_GetArraySize(eds);
  if (n > 0)
    out->vols = co_calloc((size_t)n, sizeof(*out->vols));
  const cJSON *r;
  cJSON_ArrayForEach(r, eds) {
    if (!cJSON_IsString(r) || r->string == NULL || strlen(r->string) >= sizeof(out->vols->name) ||
        out->n_vols >= (size_t)n)
      continue;
    const char *cur = co_kv_get(&w->empty_dirs, r->string);
    const char *bar = strchr(r->valuestring, '|');
    if (cur == NULL || bar == NULL)
      continue; /* the volume is gone, or the record is not ours */
    const char *cbar = strchr(cur, '|');
    co_wplan_vol_t *v = &out->vols[out->n_vols];
    size_t ml = (size_t)(bar - r->valuestring);
    size_t cml = cbar != NULL ? (size_t)(cbar - cur) : strlen(cur);
    if (ml != cml || strncmp(r->valuestring, cur, ml) != 0) {
      v->medium_op = ml > 0 ? CO_FIELD_SET : CO_FIELD_REMOVE;
      snprintf(v->medium, sizeof(v->medium), "%.*s", (int)ml, r->valuestring);
    }
    if (!str_eq(bar + 1, cbar != NULL ? cbar + 1 : "")) {
      v->size_op = bar[1] != '\0' ? CO_FIELD_SET : CO_FIELD_REMOVE;
      snprintf(v->size, sizeof(v->size), "%s", bar + 1);
    }
    if (v->medium_op == CO_FIELD_KEEP && v->size_op == CO_FIELD_KEEP)
      continue;
    snprintf(v->name, sizeof(v->name), "%s", r->string);
    out->n_vols++;
  }
  const cJSON *am = cJSON_GetObjectItemCaseSensitive(rec, "automountServiceAccountToken");
  if (cJSON_IsNumber(am)) {
    int want = am->valuedouble < 0 ? -1 : am->valuedouble > 0;
    if (want != w->automount_sa_token) {
      out->automount_op = want < 0 ? CO_FIELD_REMOVE : CO_FIELD_SET;
      out->automount = want > 0;
    }
  }
  cJSON_Delete(rec);
}

static void record_original(co_wplan_t *out, const co_workload_t *w) {
  if (co_kv_get(&w->annotations, CO_ANN_ORIGINAL) == NULL)
    out->record_original = w->runtime_class != NULL ? w->runtime_class : "";
}

static int hardening_changes(const co_wplan_t *p) {
  return p->n_vols > 0 || p->automount_op != CO_FIELD_KEEP;
}

void co_wplan_free(co_wplan_t *p) {
  if (p == NULL)
    return;
  co_free(p->record_hardening);
  co_free(p->vols);
  memset(p, 0, sizeof(*p));
}

int co_wplan_build(const co_decision_t *d, const co_workload_t *w, co_wplan_t *out) {
  if (out != NULL)
    memset(out, 0, sizeof(*out));
  if (d == NULL || w == NULL || out == NULL)
    return CO_EINVAL;
  out->reason = d->reason;
  switch (d->action) {
  case CO_ACTION_SET:
    if (co_reconciler_revert_holds(w, d))
      return 0;
    out->class_op = CO_FIELD_SET;
    out->class = d->class;
    record_original(out, w);
    if (d->harden)
      harden_apply(out, &d->hardening, w);
    break;
  case CO_ACTION_NONE:
    /* The class is in force; only hardening the CR asks for may still be missing. */
    if (!d->harden || d->source != CO_SOURCE_CR || d->class == NULL)
      return 0;
    harden_apply(out, &d->hardening, w);
    if (!hardening_changes(out)) {
      co_wplan_free(out);
      out->reason = d->reason;
      return 0;
    }
    out->reason = "Hardened";
    record_original(out, w);
    break;
  case CO_ACTION_RESTORE: {
    out->restore = 1;
    const char *want = nonempty(d->class);
    if (want != NULL && !str_eq(w->runtime_class, want)) {
      out->class_op = CO_FIELD_SET;
      out->class = want;
    } else if (want == NULL && w->runtime_class != NULL) {
      out->class_op = CO_FIELD_REMOVE;
    }
    out->drop_original = co_kv_get(&w->annotations, CO_ANN_ORIGINAL) != NULL;
    harden_restore(out, w);
    break;
  }
  default:
    return 0;
  }
  out->write = out->class_op != CO_FIELD_KEEP || out->record_original != NULL ||
               out->drop_original || out->record_hardening != NULL || out->drop_hardening ||
               hardening_changes(out);
  return 0;
}

int co_wplan_hardening_missing(const co_decision_t *d, const co_workload_t *w) {
  if (d == NULL || w == NULL || !d->harden)
    return 0;
  co_wplan_t p;
  memset(&p, 0, sizeof(p));
  harden_apply(&p, &d->hardening, w);
  int missing = hardening_changes(&p);
  co_wplan_free(&p);
  return missing;
}

/* ---- strategic merge patch -------------------------------------------------------------- */

static void merge_field(cJSON *o, const char *name, co_field_op_t op, const char *value) {
  if (op == CO_FIELD_SET)
    cJSON_AddStringToObject(o, name, value);
  else if (op == CO_FIELD_REMOVE)
    cJSON_AddNullToObject(o, name);
}

void co_wplan_merge(const co_wplan_t *p, cJSON *ann, cJSON *tspec) {
  if (p->record_original != NULL)
    cJSON_AddStringToObject(ann, CO_ANN_ORIGINAL, p->record_original);
  if (p->drop_original)
    cJSON_AddNullToObject(ann, CO_ANN_ORIGINAL);
  if (p->record_hardening != NULL)
    cJSON_AddStringToObject(ann, CO_ANN_HARDENING, p->record_hardening);
  if (p->drop_hardening)
    cJSON_AddNullToObject(ann, CO_ANN_HARDENING);
  merge_field(tspec, "runtimeClassName", p->class_op, p->class);
  if (p->n_vols > 0) {
    cJSON *vols = cJSON_AddArrayToObject(tspec, "volumes");
    for (size_t i = 0; i < p->n_vols; i++) {
      const co_wplan_vol_t *v = &p->vols[i];
      cJSON *o = cJSON_CreateObject();
      cJSON_AddStringToObject(o, "name", v->name);
      cJSON *ed = cJSON_AddObjectToObject(o, "emptyDir");
      merge_field(ed, "medium", v->medium_op, v->medium);
      merge_field(ed, "sizeLimit", v->size_op, v->size);
      cJSON_AddItemToArray(vols, o);
    }
  }
  if (p->automount_op == CO_FIELD_SET)
    cJSON_AddBoolToObject(tspec, "automountServiceAccountToken", p->automount);
  else if (p->automount_op == CO_FIELD_REMOVE)
    cJSON_AddNullToObject(tspec, "automountServiceAccountToken");
}

/* ---- JSONPatch ------------------------------------------------------------------------- */

int co_json_pointer_append(co_buf_t *b, const char *s) {
  int rc = 0;
  for (; *s && rc == 0; s++) {
    if (*s == '~')
      rc = co_buf_append(b, "~0", 2);
    else if (*s == '/')
      rc = co_buf_append(b, "~1", 2);
    else
      rc = co_buf_append(b, s, 1);
  }
  return rc;
}

void co_jsonpatch_op(cJSON *ops, const char *op, const char *path, cJSON *value) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "op", op);
  cJSON_AddStringToObject(o, "path", path);
  if (value != NULL)
    cJSON_AddItemToObject(o, "value", value);
  cJSON_AddItemToArray(ops, o);
}

static const cJSON *item(const cJSON *o, const char *name) {
  return cJSON_GetObjectItemCaseSensitive(o, name);
}

/* base + "/" + token(key) */
static void pointer(co_buf_t *b, const char *base, const char *key) {
  co_buf_reset(b);
  co_buf_appends(b, base);
  co_buf_appends(b, "/");
  co_json_pointer_append(b, key);
}

static void patch_annotations(const co_wplan_t *p, const cJSON *obj, cJSON *ops, co_buf_t *b) {
  const cJSON *md = item(obj, "metadata");
  const cJSON *ann = item(md, "annotations");
  static const char *const keys[] = {CO_ANN_ORIGINAL, CO_ANN_HARDENING};
  const char *add[] = {p->record_original, p->record_hardening};
  const int drop[] = {p->drop_original, p->drop_hardening};
  cJSON *adds = cJSON_CreateObject();
  for (size_t i = 0; i < 2; i++) {
    if (add[i] != NULL)
      cJSON_AddStringToObject(adds, keys[i], add[i]);
    if (drop[i] && cJSON_IsObject(ann) && item(ann, keys[i]) != NULL) {
      pointer(b, "/metadata/annotations", keys[i]);
      co_jsonpatch_op(ops, "remove", co_buf_str(b), NULL);
    }
  }
  if (cJSON_GetArraySize(adds) == 0) {
    cJSON_Delete(adds);
    return;
  }
  if (cJSON_IsObject(ann)) {
    const cJSON *a;
    cJSON_ArrayForEach(a, adds) {
      pointer(b, "/metadata/annotations", a->string);
      co_jsonpatch_op(ops, "add", co_buf_str(b), cJSON_CreateString(a->valuestring));
    }
    cJSON_Delete(adds);
  } else if (cJSON_IsObject(md)) {
    /* One add for the whole map: a second "add" of the map would replace the first. */
    co_jsonpatch_op(ops, "add", "/metadata/annotations", adds);
  } else {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddItemToObject(m, "annotations", adds);
    co_jsonpatch_op(ops, "add", "/metadata", m);
  }
}

/* The field op at base/name: add value, or remove it when obj (at base) has it. */
static void patch_field(cJSON *ops, co_buf_t *b, const char *base, const cJSON *at,
                        const char *name, co_field_op_t op, cJSON *value) {
  if (op == CO_FIELD_SET) {
    pointer(b, base, name);
    co_jsonpatch_op(ops, "add", co_buf_str(b), value);
    return;
  }
  cJSON_Delete(value);
  if (op == CO_FIELD_REMOVE && item(at, name) != NULL) {
    pointer(b, base, name);
    co_jsonpatch_op(ops, "remove", co_buf_str(b), NULL);
  }
}

void co_wplan_jsonpatch(const co_wplan_t *p, const cJSON *obj, cJSON *ops) {
  co_buf_t b;
  co_buf_init(&b, PATH_MAX_LEN);
  const cJSON *tspec = item(item(item(obj, "spec"), "template"), "spec");
  patch_field(ops, &b, TSPEC, tspec, "runtimeClassName", p->class_op,
              p->class_op == CO_FIELD_SET ? cJSON_CreateString(p->class) : NULL);
  patch_annotations(p, obj, ops, &b);
  const cJSON *vols = item(tspec, "volumes");
  for (size_t i = 0; i < p->n_vols; i++) {
    const co_wplan_vol_t *v = &p->vols[i];
    /* The index of the first emptyDir volume of that name: the one the projection saw. */
    int idx = 0, found = -1;
    const cJSON *vol, *ed = NULL;
    cJSON_ArrayForEach(vol, vols) {
      const char *name = cJSON_GetStringValue(item(vol, "name"));
      ed = item(vol, "emptyDir");
      if (name != NULL && strcmp(name, v->name) == 0 && cJSON_IsObject(ed)) {
        found = idx;
        break;
      }
      idx++;
    }
    if (found < 0)
      continue;
    char base[96];
    snprintf(base, sizeof(base), TSPEC "/volumes/%d/emptyDir", found);
    patch_field(ops, &b, base, ed, "medium", v->medium_op,
                v->medium_op == CO_FIELD_SET ? cJSON_CreateString(v->medium) : NULL);
    patch_field(ops, &b, base, ed, "sizeLimit", v->size_op,
                v->size_op == CO_FIELD_SET ? cJSON_CreateString(v->size) : NULL);
  }
  patch_field(ops, &b, TSPEC, tspec, "automountServiceAccountToken", p->automount_op,
              p->automount_op == CO_FIELD_SET ? cJSON_CreateBool(p->automount) : NULL);
  co_buf_free(&b);
}
