/* Certificates of the admission webhook (OpenSSL 3): a self-signed CA and serving certificates
 * it signs, as PEM. ECDSA P-256 keys, SHA-256 signatures, notBefore five minutes in the past
 * (clock skew between nodes). No I/O; every output string is owned by the caller (co_free). */
#ifndef CO_CERT_H
#define CO_CERT_H

#include <stddef.h>
#include <stdint.h>

/* A new CA valid for validity_s seconds: CA:TRUE (critical), keyCertSign. */
int co_cert_generate_ca(const char *common_name, int64_t validity_s, char **cert_pem,
                        char **key_pem);

/* A serving certificate for dns names and ip addresses (borrowed arrays, either may be empty
 * but not both), signed by the CA (the first certificate of ca_cert_pem and ca_key_pem),
 * valid for validity_s seconds: CA:FALSE, digitalSignature, serverAuth. Returns 0, CO_EINVAL
 * (bad arguments, an unusable CA or an IP that does not parse) or CO_ETLS. */
int co_cert_issue(const char *ca_cert_pem, const char *ca_key_pem, const char *const *dns,
                  size_t n_dns, const char *const *ips, size_t n_ips, int64_t validity_s,
                  char **cert_pem, char **key_pem);

/* Seconds until the first certificate of pem expires (negative once expired), in *secs.
 * Returns 0 or CO_EPARSE. */
int co_cert_remaining(const char *pem, int64_t *secs);

/* 0 when key_pem is the private key of the first certificate of cert_pem and the certificate
 * is signed by the first certificate of ca_pem (when not NULL); CO_EINVAL when not; CO_EPARSE
 * when something is not PEM. */
int co_cert_check(const char *cert_pem, const char *key_pem, const char *ca_pem);

#endif
