/* Hardware detection against fixture sysfs/dev trees (data/node/hw/<case>): one per TEE. */
#include <stdio.h>
#include <string.h>

#include "co/error.h"
#include "co/hardware.h"
#include "co_test.h"

#define HW CO_TEST_DATA "/node/hw/"

static co_hw_t detect(const char *name) {
  co_hw_t hw;
  CO_CHECK_INT(co_hw_detect(name, &hw), ==, 0);
  return hw;
}

/* Returns the value of label key, or NULL. */
static const char *label(const co_hw_t *hw, const char *key) {
  static co_hw_label_t l[8];
  size_t n = co_hw_labels(hw, l, 8);
  CO_CHECK(n <= 8);
  for (size_t i = 0; i < n; i++)
    if (strcmp(l[i].key, key) == 0)
      return l[i].value;
  return NULL;
}

/* The offered Kata classes, joined with ','. */
static const char *classes(const co_hw_t *hw) {
  static char out[128];
  const char *c[4];
  size_t n = co_hw_kata_classes(hw, c, 4);
  out[0] = '\0';
  for (size_t i = 0; i < n && i < 4; i++) {
    size_t len = strlen(out);
    snprintf(out + len, sizeof out - len, "%s%s", i ? "," : "", c[i]);
  }
  return out;
}

static void check_common(const co_hw_t *hw, const char *kvm, const char *tee, const char *sgx,
                         const char *tpm) {
  CO_CHECK_STR(label(hw, "confidential.cypherpunk.io/kvm"), kvm);
  CO_CHECK_STR(label(hw, "confidential.cypherpunk.io/tee"), tee);
  CO_CHECK_STR(label(hw, "confidential.cypherpunk.io/sgx"), sgx);
  CO_CHECK_STR(label(hw, "confidential.cypherpunk.io/tpm"), tpm);
}

static void test_nothing(void) {
  co_hw_t hw = detect(HW "none");
  CO_CHECK(!hw.kvm && !hw.tdx && !hw.sev && !hw.sev_snp && !hw.sgx && !hw.tpm);
  check_common(&hw, "false", "none", "false", "false"); /* tdx = N */
  CO_CHECK_STR(label(&hw, "amd.feature.node.kubernetes.io/snp"), NULL);
  CO_CHECK_STR(label(&hw, "intel.feature.node.kubernetes.io/tdx"), NULL);
  CO_CHECK_STR(classes(&hw), "");
  /* A root that does not exist at all is the same as nothing. */
  hw = detect(HW "does-not-exist");
  CO_CHECK_STR(hw.tee, "none");
  CO_CHECK_INT(hw.kvm, ==, 0);
}

static void test_kvm_only(void) {
  co_hw_t hw = detect(HW "kvm-only");
  CO_CHECK_INT(hw.kvm, ==, 1);
  check_common(&hw, "true", "none", "false", "false");
  CO_CHECK_STR(classes(&hw), "kata-qemu");
}

static void test_snp(void) {
  co_hw_t hw = detect(HW "snp");
  CO_CHECK(hw.kvm && hw.sev && hw.sev_snp && !hw.tdx);
  check_common(&hw, "true", "snp", "false", "false");
  CO_CHECK_STR(label(&hw, "amd.feature.node.kubernetes.io/snp"), "true");
  CO_CHECK_STR(label(&hw, "intel.feature.node.kubernetes.io/tdx"), NULL);
  CO_CHECK_STR(classes(&hw), "kata-qemu,kata-qemu-snp");
}

/* SEV without SNP ("1" and "0" as the parameter values) is not the SNP TEE. */
static void test_sev_without_snp(void) {
  co_hw_t hw = detect(HW "sev-only");
  CO_CHECK(hw.kvm && hw.sev && !hw.sev_snp);
  check_common(&hw, "true", "none", "false", "false");
  CO_CHECK_STR(classes(&hw), "kata-qemu");
}

static void test_tdx(void) {
  co_hw_t hw = detect(HW "tdx");
  CO_CHECK(hw.kvm && hw.tdx && !hw.sev_snp);
  check_common(&hw, "true", "tdx", "false", "false");
  CO_CHECK_STR(label(&hw, "intel.feature.node.kubernetes.io/tdx"), "true");
  CO_CHECK_STR(label(&hw, "amd.feature.node.kubernetes.io/snp"), NULL);
  CO_CHECK_STR(classes(&hw), "kata-qemu,kata-qemu-tdx");
}

/* A TEE without /dev/kvm: labelled, but no Kata class at all. */
static void test_tdx_without_kvm(void) {
  co_hw_t hw = detect(HW "tdx-nokvm");
  check_common(&hw, "false", "tdx", "false", "false");
  CO_CHECK_STR(classes(&hw), "");
}

static void test_sgx_tpm(void) {
  co_hw_t hw = detect(HW "sgx-tpm");
  CO_CHECK(!hw.kvm && hw.sgx && hw.tpm);
  CO_CHECK_INT(hw.tpm_version, ==, 2);
  check_common(&hw, "false", "none", "true", "true");
  CO_CHECK_STR(classes(&hw), "");
}

static void test_args_and_bounds(void) {
  co_hw_t hw;
  CO_CHECK_INT(co_hw_detect(NULL, &hw), ==, CO_EINVAL);
  CO_CHECK_INT(co_hw_detect(HW "snp", NULL), ==, CO_EINVAL);
  char longroot[5000];
  memset(longroot, 'a', sizeof longroot - 1);
  longroot[sizeof longroot - 1] = '\0';
  CO_CHECK_INT(co_hw_detect(longroot, &hw), ==, CO_ETOOBIG);
  /* Short output arrays: the count is still the full count, nothing written past max. */
  CO_CHECK_INT(co_hw_detect(HW "snp", &hw), ==, 0);
  co_hw_label_t one[1];
  CO_CHECK_INT(co_hw_labels(&hw, one, 1), ==, 5);
  CO_CHECK_STR(one[0].key, "confidential.cypherpunk.io/kvm");
  const char *c[1];
  CO_CHECK_INT(co_hw_kata_classes(&hw, c, 1), ==, 2);
  CO_CHECK_STR(c[0], "kata-qemu");
}

CO_TEST_MAIN(CO_TEST(test_nothing), CO_TEST(test_kvm_only), CO_TEST(test_snp),
             CO_TEST(test_sev_without_snp), CO_TEST(test_tdx), CO_TEST(test_tdx_without_kvm),
             CO_TEST(test_sgx_tpm), CO_TEST(test_args_and_bounds))
