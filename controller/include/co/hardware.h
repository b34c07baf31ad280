/* Hardware detection for the node agent: KVM, Intel TDX, AMD SEV/SEV-SNP, Intel SGX and TPM,
 * read from device files and sysfs under a host root (tests use fixture trees). The paths are
 * those of shared/reference/node-install.md §5. */
#ifndef CO_HARDWARE_H
#define CO_HARDWARE_H

#include <stddef.h>

typedef struct {
  int kvm;         /* /dev/kvm */
  int tdx;         /* TDX host enabled in kvm_intel */
  int sev;         /* SEV enabled in kvm_amd */
  int sev_snp;     /* SEV-SNP enabled in kvm_amd */
  int sgx;         /* /dev/sgx_enclave */
  int tpm;         /* a TPM device */
  int tpm_version; /* 1 or 2 when sysfs says, else 0 */
  const char *tee; /* static: "snp", "tdx" or "none" */
} co_hw_t;

typedef struct {
  const char *key;   /* static */
  const char *value; /* static */
} co_hw_label_t;

/* Fills hw from host_root (borrowed; "" or "/" for the real host). Missing files mean "absent";
 * never fails except CO_EINVAL for NULL arguments or CO_ETOOBIG for an over-long root. */
int co_hw_detect(const char *host_root, co_hw_t *hw);

/* Writes the node labels (at most max) to out and returns how many there are (7 at most):
 * confidential.cypherpunk.io/{kvm,tee,sgx,tpm}, and amd.feature.node.kubernetes.io/snp=true /
 * intel.feature.node.kubernetes.io/tdx=true where capable. */
size_t co_hw_labels(const co_hw_t *hw, co_hw_label_t *out, size_t max);

/* Writes the Kata RuntimeClass names the node can offer (static strings, at most max) and returns
 * the count: none without KVM; kata-qemu with KVM; kata-qemu-snp / kata-qemu-tdx only with KVM
 * and that TEE. */
size_t co_hw_kata_classes(const co_hw_t *hw, const char **out, size_t max);

#endif
