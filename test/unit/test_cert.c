/* Webhook certificates: a CA and a serving certificate that OpenSSL's own verifier accepts for
 * the Service DNS names and 127.0.0.1, with the requested validity; mismatches detected. */
#include "co/cert.h"

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <string.h>

#include "co/alloc.h"
#include "co/error.h"
#include "co_test.h"

static const char *const dns[] = {"confidential-operator-webhook.confidential-system.svc",
                                  "confidential-operator-webhook.confidential-system.svc.cluster."
                                  "local"};
static const char *const ips[] = {"127.0.0.1"};

static X509 *pem_cert(const char *pem) {
  BIO *b = BIO_new_mem_buf(pem, -1);
  X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
  BIO_free(b);
  return x;
}

/* OpenSSL's chain verification of leaf against ca, for purpose serverAuth. */
static int verifies(const char *leaf_pem, const char *ca_pem) {
  X509 *leaf = pem_cert(leaf_pem), *ca = pem_cert(ca_pem);
  X509_STORE *st = X509_STORE_new();
  X509_STORE_add_cert(st, ca);
  X509_STORE_CTX *ctx = X509_STORE_CTX_new();
  X509_STORE_CTX_init(ctx, st, leaf, NULL);
  X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
  int ok = X509_verify_cert(ctx) == 1;
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(st);
  X509_free(leaf);
  X509_free(ca);
  return ok;
}

static void test_issue_and_verify(void) {
  char *ca = NULL, *cakey = NULL, *crt = NULL, *key = NULL;
  CO_CHECK_INT(co_cert_generate_ca("confidential-operator-webhook-ca", 3600, &ca, &cakey), ==, 0);
  CO_CHECK_CONTAINS(ca, "BEGIN CERTIFICATE");
  CO_CHECK_CONTAINS(cakey, "PRIVATE KEY");
  CO_CHECK_INT(co_cert_issue(ca, cakey, dns, 2, ips, 1, 600, &crt, &key), ==, 0);
  CO_CHECK(verifies(crt, ca));
  CO_CHECK_INT(co_cert_check(crt, key, ca), ==, 0);
  X509 *x = pem_cert(crt);
  CO_CHECK_INT(X509_check_host(x, dns[0], 0, 0, NULL), ==, 1);
  CO_CHECK_INT(X509_check_host(x, dns[1], 0, 0, NULL), ==, 1);
  CO_CHECK_INT(X509_check_ip_asc(x, "127.0.0.1", 0), ==, 1);
  CO_CHECK_INT(X509_check_host(x, "evil.example", 0, 0, NULL), ==, 0);
  CO_CHECK_INT(X509_check_ca(x), ==, 0);
  X509_free(x);
  int64_t left = 0;
  CO_CHECK_INT(co_cert_remaining(crt, &left), ==, 0);
  CO_CHECK_INT(left, >, 590);
  CO_CHECK_INT(left, <=, 600);
  CO_CHECK_INT(co_cert_remaining(ca, &left), ==, 0);
  CO_CHECK_INT(left, >, 3590);

  /* Another CA's certificate, another key: refused. */
  char *ca2 = NULL, *cakey2 = NULL, *crt2 = NULL, *key2 = NULL;
  CO_CHECK_INT(co_cert_generate_ca("other", 3600, &ca2, &cakey2), ==, 0);
  CO_CHECK_INT(co_cert_issue(ca2, cakey2, NULL, 0, ips, 1, 600, &crt2, &key2), ==, 0);
  CO_CHECK(!verifies(crt2, ca));
  CO_CHECK_INT(co_cert_check(crt2, key2, ca), ==, CO_EINVAL);
  CO_CHECK_INT(co_cert_check(crt, key2, NULL), ==, CO_EINVAL);
  CO_CHECK_INT(co_cert_check("junk", key, NULL), ==, CO_EPARSE);
  CO_CHECK_INT(co_cert_remaining("junk", &left), ==, CO_EPARSE);
  /* A CA key that is not the CA's: nothing issued. */
  char *c3 = NULL, *k3 = NULL;
  CO_CHECK_INT(co_cert_issue(ca, cakey2, dns, 1, NULL, 0, 600, &c3, &k3), ==, CO_EINVAL);
  CO_CHECK(c3 == NULL && k3 == NULL);
  static const char *const badip[] = {"not-an-ip"};
  CO_CHECK_INT(co_cert_issue(ca, cakey, NULL, 0, badip, 1, 600, &c3, &k3), ==, CO_EINVAL);
  CO_CHECK_INT(co_cert_issue(ca, cakey, NULL, 0, NULL, 0, 600, &c3, &k3), ==, CO_EINVAL);
  co_free(ca);
  co_free(cakey);
  co_free(crt);
  co_free(key);
  co_free(ca2);
  co_free(cakey2);
  co_free(crt2);
  co_free(key2);
}

/* Every issue gets a fresh key and serial. */
static void test_fresh(void) {
  char *ca, *cakey, *a, *ak, *b, *bk;
  co_cert_generate_ca("ca", 3600, &ca, &cakey);
  co_cert_issue(ca, cakey, dns, 1, NULL, 0, 60, &a, &ak);
  co_cert_issue(ca, cakey, dns, 1, NULL, 0, 60, &b, &bk);
  CO_CHECK(strcmp(a, b) != 0);
  CO_CHECK(strcmp(ak, bk) != 0);
  CO_CHECK(verifies(b, ca));
  co_free(ca);
  co_free(cakey);
  co_free(a);
  co_free(ak);
  co_free(b);
  co_free(bk);
}

CO_TEST_MAIN(CO_TEST(test_issue_and_verify), CO_TEST(test_fresh))
