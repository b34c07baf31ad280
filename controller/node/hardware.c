/* Hardware detection under a host root. Every path below is cited from
 * shared/reference/node-install.md §5 ("Detecting TEE and virtualisation features on a node"). */
#include "co/hardware.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "co/error.h"

#define HW_PATH_MAX 4096

static int hw_path(char *dst, size_t n, const char *root, const char *rel) {
  int w = snprintf(dst, n, "%s%s", root, rel);
  return w < 0 || (size_t)w >= n ? CO_ETOOBIG : CO_OK;
}

static int present(const char *root, const char *rel) {
  char p[HW_PATH_MAX];
  struct stat st;
  return hw_path(p, sizeof p, root, rel) == 0 && lstat(p, &st) == 0;
}

/* Reads the first bytes of a small sysfs file; returns the count (0 when absent). */
static size_t read_head(const char *root, const char *rel, char *buf, size_t n) {
  char p[HW_PATH_MAX];
  if (n == 0 || hw_path(p, sizeof p, root, rel) != 0)
    return 0;
  int fd = open(p, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  ssize_t r;
  do
    r = read(fd, buf, n - 1);
  while (r < 0 && errno == EINTR);
  close(fd);
  if (r <= 0)
    return 0;
  buf[r] = '\0';
  return (size_t)r;
}

/* A kvm module boolean parameter: first char 'Y' or '1' (node-install.md §5, kata
 * protection.rs / hypervisor_linux_amd64.go). */
static int param_on(const char *root, const char *rel) {
  char b[8];
  return read_head(root, rel, b, sizeof b) > 0 && (b[0] == 'Y' || b[0] == 'y' || b[0] == '1');
}

int co_hw_detect(const char *host_root, co_hw_t *hw) {
  if (host_root == NULL || hw == NULL)
    return CO_EINVAL;
  memset(hw, 0, sizeof *hw);
  hw->tee = "none";
  if (strlen(host_root) + 64 >= HW_PATH_MAX)
    return CO_ETOOBIG;
  const char *root = strcmp(host_root, "/") == 0 ? "" : host_root;

  /* KVM: /dev/kvm (kata-check.go). */
  hw->kvm = present(root, "/dev/kvm");
  /* Intel TDX host: /sys/module/kvm_intel/parameters/tdx == Y. The cpuinfo flag tdx_guest means
   * running *inside* a TD and says nothing about hosting one, so it is not used. */
  hw->tdx = param_on(root, "/sys/module/kvm_intel/parameters/tdx");
  /* AMD: /sys/module/kvm_amd/parameters/{sev,sev_snp}, first char Y or 1. (/dev/sev-guest is
   * the guest device, not a host capability.) */
  hw->sev = param_on(root, "/sys/module/kvm_amd/parameters/sev");
  hw->sev_snp = param_on(root, "/sys/module/kvm_amd/parameters/sev_snp");
  /* Intel SGX: /dev/sgx_enclave (the usable driver; a cpuinfo `sgx` flag alone is not). */
  hw->sgx = present(root, "/dev/sgx_enclave");
  /* TPM: /dev/tpmrm0 (TPM2 resource manager), /dev/tpm0, /sys/class/tpm/tpm0; the version from
   * /sys/class/tpm/tpm0/tpm_version_major. */
  hw->tpm = present(root, "/dev/tpmrm0") || present(root, "/dev/tpm0") ||
            present(root, "/sys/class/tpm/tpm0");
  char b[8];
  if (hw->tpm && read_head(root, "/sys/class/tpm/tpm0/tpm_version_major", b, sizeof b) > 0 &&
      (b[0] == '1' || b[0] == '2'))
    hw->tpm_version = b[0] - '0';
  /* A CPU is AMD or Intel: both flags on would be a broken fixture; SNP wins deterministically. */
  hw->tee = hw->sev_snp ? "snp" : hw->tdx ? "tdx" : "none";
  return CO_OK;
}

size_t co_hw_labels(const co_hw_t *hw, co_hw_label_t *out, size_t max) {
  co_hw_label_t all[7];
  size_t n = 0;
  all[n++] = (co_hw_label_t){"confidential.cypherpunk.io/kvm", hw->kvm ? "true" : "false"};
  all[n++] = (co_hw_label_t){"confidential.cypherpunk.io/tee", hw->tee};
  all[n++] = (co_hw_label_t){"confidential.cypherpunk.io/sgx", hw->sgx ? "true" : "false"};
  all[n++] = (co_hw_label_t){"confidential.cypherpunk.io/tpm", hw->tpm ? "true" : "false"};
  /* The labels kata-deploy's NodeFeatureRule adds and Akash providers expect (§3, §5). */
  if (strcmp(hw->tee, "snp") == 0)
    all[n++] = (co_hw_label_t){"amd.feature.node.kubernetes.io/snp", "true"};
  if (strcmp(hw->tee, "tdx") == 0)
    all[n++] = (co_hw_label_t){"intel.feature.node.kubernetes.io/tdx", "true"};
  for (size_t i = 0; i < n && i < max; i++)
    out[i] = all[i];
  return n;
}

size_t co_hw_kata_classes(const co_hw_t *hw, const char **out, size_t max) {
  const char *all[3];
  size_t n = 0;
  if (hw->kvm) {
    all[n++] = "kata-qemu";
    if (strcmp(hw->tee, "snp") == 0)
      all[n++] = "kata-qemu-snp";
    if (strcmp(hw->tee, "tdx") == 0)
      all[n++] = "kata-qemu-tdx";
  }
  for (size_t i = 0; i < n && i < max; i++)
    out[i] = all[i];
  return n;
}
