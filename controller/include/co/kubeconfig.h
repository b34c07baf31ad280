/* Connection settings for the API server: from a kubeconfig file (YAML, parsed with libyaml)
 * or from the in-cluster environment of a pod. */
#ifndef CO_KUBECONFIG_H
#define CO_KUBECONFIG_H

#include <stddef.h>

/* All strings and byte arrays are owned by the struct; release with co_kubeconfig_free. */
typedef struct co_kubeconfig_s {
  char *context;          /* name of the context used (NULL in cluster) */
  char *server;           /* "https://host:port[/prefix]", no trailing slash */
  char *tls_server_name;  /* overrides the name checked in the server certificate, or NULL */
  int insecure;           /* insecure-skip-tls-verify: true */
  char *ca_file;          /* absolute path, or NULL */
  unsigned char *ca_data; /* PEM bytes (base64-decoded certificate-authority-data), or NULL */
  size_t ca_data_len;
  char *token;      /* bearer token, or NULL */
  char *token_file; /* absolute path of a token file, re-read on rotation, or NULL */
  char *client_cert_file;
  unsigned char *client_cert_data; /* PEM bytes, or NULL */
  size_t client_cert_data_len;
  char *client_key_file;
  unsigned char *client_key_data; /* PEM bytes, or NULL */
  size_t client_key_data_len;
  char *namespace; /* context namespace, or the pod's namespace in cluster; NULL if none */
  int in_cluster;  /* 1 when built by co_kubeconfig_in_cluster */
} co_kubeconfig_t;

/* Loads a kubeconfig. path may be NULL: then $KUBECONFIG (a ':'-separated list, merged the
 * way kubectl does: the first file to set a value wins) or else ~/.kube/config is used.
 * context may be NULL for the current-context. Relative file paths in the kubeconfig are
 * resolved against the directory of the file that names them. On error returns a CO_E* code
 * (CO_ECONFIG, CO_EIO, CO_EPARSE, CO_ETOOBIG, CO_EUNSUPPORTED for exec/auth-provider users)
 * and writes a one-line explanation naming the file and the field to err (may be NULL). */
int co_kubeconfig_load(co_kubeconfig_t *out, const char *path, const char *context, char *err,
                       size_t errlen);

/* Parses one kubeconfig document held in memory (len bytes, need not be NUL-terminated).
 * base_dir resolves relative paths (may be NULL: paths are kept as written). Inputs larger
 * than 4 MiB are refused with CO_ETOOBIG. */
int co_kubeconfig_parse(co_kubeconfig_t *out, const char *data, size_t len, const char *context,
                        const char *base_dir, char *err, size_t errlen);

/* Builds the in-cluster configuration: $KUBERNETES_SERVICE_HOST/$KUBERNETES_SERVICE_PORT,
 * <root>/var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt,namespace}. root is ""
 * or NULL in production; tests point it at a fixture tree. The token file must exist and be
 * non-empty now: its current content is stored in token, and its path in token_file, which
 * the HTTP client re-reads because projected tokens rotate. ca_file is set to ca.crt's path
 * without checking it; namespace comes from the optional namespace file. */
int co_kubeconfig_in_cluster(co_kubeconfig_t *out, const char *root, char *err, size_t errlen);

/* Frees everything the struct owns and zeroes it. Safe on a zeroed struct. */
void co_kubeconfig_free(co_kubeconfig_t *cfg);

#endif
