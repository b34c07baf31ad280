/* Webhook certificates with OpenSSL 3 (see co/cert.h). */
#include "co/cert.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <string.h>

#include "co/alloc.h"
#include "co/buf.h"
#include "co/error.h"

#define SKEW_S (5 * 60)
#define PEM_MAX (64 * 1024)

static X509 *read_cert(const char *pem) {
  if (pem == NULL)
    return NULL;
  BIO *b = BIO_new_mem_buf(pem, (int)strnlen(pem, PEM_MAX));
  X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
  BIO_free(b);
  return x;
}

static EVP_PKEY *read_key(const char *pem) {
  if (pem == NULL)
    return NULL;
  BIO *b = BIO_new_mem_buf(pem, (int)strnlen(pem, PEM_MAX));
  EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
  BIO_free(b);
  return k;
}

static char *bio_string(BIO *b) {
  char *p = NULL;
  long n = BIO_get_mem_data(b, &p);
  return n > 0 ? co_strndup(p, (size_t)n) : NULL;
}

static int to_pem(X509 *x, EVP_PKEY *k, char **cert_pem, char **key_pem) {
  BIO *bc = BIO_new(BIO_s_mem()), *bk = BIO_new(BIO_s_mem());
  int ok = bc != NULL && bk != NULL && PEM_write_bio_X509(bc, x) == 1 &&
           PEM_write_bio_PrivateKey(bk, k, NULL, NULL, 0, NULL, NULL) == 1;
  if (ok) {
    *cert_pem = bio_string(bc);
    *key_pem = bio_string(bk);
    ok = *cert_pem != NULL && *key_pem != NULL;
    if (!ok) {
      co_free(*cert_pem);
      co_free(*key_pem);
      *cert_pem = *key_pem = NULL;
    }
  }
  BIO_free(bc);
  BIO_free(bk);
  return ok ? 0 : CO_ETLS;
}

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
  X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
  if (e == NULL)
    return 0;
  int ok = X509_add_ext(x, e, -1);
  X509_EXTENSION_free(e);
  return ok;
}

/* A certificate with a random 127-bit serial, the validity window and subject CN set. */
static X509 *new_cert(EVP_PKEY *key, const char *cn, int64_t validity_s) {
  X509 *x = X509_new();
  BIGNUM *bn = BN_new();
  int ok = x != NULL && bn != NULL && X509_set_version(x, X509_VERSION_3) &&
           BN_rand(bn, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) &&
           BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL &&
           X509_gmtime_adj(X509_getm_notBefore(x), -SKEW_S) != NULL &&
           X509_gmtime_adj(X509_getm_notAfter(x), (long)validity_s) != NULL &&
           X509_set_pubkey(x, key) &&
           X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
                                      (const unsigned char *)cn, -1, -1, 0);
  BN_free(bn);
  if (!ok) {
    X509_free(x);
    return NULL;
  }
  return x;
}

int co_cert_generate_ca(const char *common_name, int64_t validity_s, char **cert_pem,
                        char **key_pem) {
  *cert_pem = *key_pem = NULL;
  if (common_name == NULL || validity_s <= 0)
    return CO_EINVAL;
  EVP_PKEY *k = EVP_EC_gen("P-256");
  X509 *x = k ? new_cert(k, common_name, validity_s) : NULL;
  int ok = x != NULL && X509_set_issuer_name(x, X509_get_subject_name(x)) &&
           add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE") &&
           add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature") &&
           add_ext(x, x, NID_subject_key_identifier, "hash") && X509_sign(x, k, EVP_sha256()) > 0;
  int rc = ok ? to_pem(x, k, cert_pem, key_pem) : CO_ETLS;
  X509_free(x);
  EVP_PKEY_free(k);
  return rc;
}

int co_cert_issue(const char *ca_cert_pem, const char *ca_key_pem, const char *const *dns,
                  size_t n_dns, const char *const *ips, size_t n_ips, int64_t validity_s,
                  char **cert_pem, char **key_pem) {
  *cert_pem = *key_pem = NULL;
  if (validity_s <= 0 || n_dns + n_ips == 0 || (n_dns > 0 && dns == NULL) ||
      (n_ips > 0 && ips == NULL))
    return CO_EINVAL;
  co_buf_t san;
  co_buf_init(&san, 4096);
  for (size_t i = 0; i < n_dns; i++)
    co_buf_appendf(&san, "%sDNS:%s", san.len ? "," : "", dns[i]);
  for (size_t i = 0; i < n_ips; i++)
    co_buf_appendf(&san, "%sIP:%s", san.len ? "," : "", ips[i]);
  X509 *ca = read_cert(ca_cert_pem);
  EVP_PKEY *cak = read_key(ca_key_pem);
  if (ca == NULL || cak == NULL || X509_check_private_key(ca, cak) != 1) {
    X509_free(ca);
    EVP_PKEY_free(cak);
    co_buf_free(&san);
    return CO_EINVAL;
  }
  EVP_PKEY *k = EVP_EC_gen("P-256");
  X509 *x = k ? new_cert(k, n_dns > 0 ? dns[0] : ips[0], validity_s) : NULL;
  int ok = x != NULL && X509_set_issuer_name(x, X509_get_subject_name(ca)) &&
           add_ext(x, ca, NID_basic_constraints, "critical,CA:FALSE") &&
           add_ext(x, ca, NID_key_usage, "critical,digitalSignature") &&
           add_ext(x, ca, NID_ext_key_usage, "serverAuth") &&
           add_ext(x, ca, NID_authority_key_identifier, "keyid:always");
  int rc = CO_ETLS;
  if (ok && !add_ext(x, ca, NID_subject_alt_name, co_buf_str(&san)))
    rc = CO_EINVAL; /* a name or address that does not parse */
  else if (ok && X509_sign(x, cak, EVP_sha256()) > 0)
    rc = to_pem(x, k, cert_pem, key_pem);
  co_buf_free(&san);
  X509_free(x);
  X509_free(ca);
  EVP_PKEY_free(k);
  EVP_PKEY_free(cak);
  ERR_clear_error(); /* nothing left for the next TLS user of this thread to misread */
  return rc;
}

int co_cert_remaining(const char *pem, int64_t *secs) {
  X509 *x = read_cert(pem);
  int days = 0, s = 0;
  int ok = x != NULL && ASN1_TIME_diff(&days, &s, NULL, X509_get0_notAfter(x)) == 1;
  X509_free(x);
  ERR_clear_error();
  if (!ok)
    return CO_EPARSE;
  *secs = (int64_t)days * 86400 + s;
  return 0;
}

int co_cert_check(const char *cert_pem, const char *key_pem, const char *ca_pem) {
  X509 *x = read_cert(cert_pem);
  EVP_PKEY *k = read_key(key_pem);
  X509 *ca = ca_pem != NULL ? read_cert(ca_pem) : NULL;
  int rc = 0;
  if (x == NULL || k == NULL || (ca_pem != NULL && ca == NULL)) {
    rc = CO_EPARSE;
  } else if (X509_check_private_key(x, k) != 1) {
    rc = CO_EINVAL;
  } else if (ca != NULL) {
    EVP_PKEY *cap = X509_get0_pubkey(ca);
    if (cap == NULL || X509_verify(x, cap) != 1)
      rc = CO_EINVAL;
  }
  X509_free(x);
  X509_free(ca);
  EVP_PKEY_free(k);
  ERR_clear_error();
  return rc;
}
