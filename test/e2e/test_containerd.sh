# The containerd configurations produced by the node agent's template patcher
# (controller/node/template.c) are accepted by a real containerd. No cluster is needed.
#
# The files checked are the expected trees of the unit test fixtures
# (test/unit/data/node/<case>/expected): test_nodetemplate asserts that the patcher's output is
# byte-identical to them. k3s' rendering is reproduced here: the template with its
# `{{ template "base" . }}` line replaced by the stock config (the fixture's config.toml).
#
# Debian bookworm's containerd is 1.6: `containerd --config FILE config dump` parses a config
# without a daemon and rejects duplicated tables. It knows only the v2 schema: a `version = 3`
# file is parsed as TOML (duplicates are still rejected, drop-ins are still read) but its
# io.containerd.cri.v1.* sections are ignored. Set CO_CONTAINERD2 to a containerd 2.x binary
# (e.g. `go install github.com/containerd/containerd/v2/cmd/containerd@v2.1.4`) to check the v3
# results semantically too.

CTD_FIX=test/unit/data/node
CTD_REL=var/lib/rancher/k3s/agent/etc/containerd
CTD_HOSTDIR=/var/lib/rancher/k3s/agent/etc/containerd

# ctd_render TEMPLATE BASE OUT [DROPIN_DIR]: k3s' rendering; with DROPIN_DIR, the host import
# path of config-v3.toml.d is pointed at that directory so containerd reads the drop-ins.
ctd_render() {
  awk -v base="$2" '$0 == "{{ template \"base\" . }}" { while ((getline l < base) > 0) print l; next }
                    { print }' "$1" > "$3"
  if [ -n "${4:-}" ]; then
    sed -i "s#$CTD_HOSTDIR/config-v3.toml.d#$4#g" "$3"
  fi
}

# ctd_dump BIN CONFIG OUT: `config dump`; stdout to OUT, stderr to OUT.err.
ctd_dump() { "$1" --config "$2" config dump > "$3" 2> "$3.err"; }

# ctd_has FILE FIXED_STRING
ctd_has() { grep -qF -- "$2" "$1"; }

# ctd_rejected BIN CONFIG OUT: containerd refuses it with "duplicated tables".
ctd_rejected() {
  if ctd_dump "$1" "$2" "$3"; then return 1; fi
  grep -qiE 'duplicated tables|already exists|defined twice' "$3.err"
}

test_containerd_accepts_rendered_configs() {
  if ! command -v containerd >/dev/null; then
    fail "containerd is not installed (hack/install-deps.sh installs Debian's)"
    return
  fi
  local d=$E2E_DIR/containerd ver
  mkdir -p "$d"
  ver=$(containerd --version 2>&1)
  log "using $ver"

  # ---- v2 (containerd 1.x, config.toml.tmpl with tables after the base) --------------------
  local c=$CTD_FIX/v2-runsc
  ctd_render "$c/expected/$CTD_REL/config.toml.tmpl" "$c/host/$CTD_REL/config.toml" "$d/v2.toml"
  check "v2 rendered config parses" ctd_dump containerd "$d/v2.toml" "$d/v2.dump"
  check "v2 dump has kata-qemu" ctd_has "$d/v2.dump" \
    '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata-qemu]'
  check "v2 dump has kata-qemu's shim path" ctd_has "$d/v2.dump" \
    'runtime_path = "/opt/kata/bin/containerd-shim-kata-v2"'
  check "v2 dump has kata-qemu's ConfigPath" ctd_has "$d/v2.dump" \
    'ConfigPath = "/opt/kata/share/defaults/kata-containers/runtimes/qemu/configuration-qemu.toml"'
  check "v2 dump has runsc" ctd_has "$d/v2.dump" \
    '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runsc]'
  check "v2 dump has runsc's type" ctd_has "$d/v2.dump" 'runtime_type = "io.containerd.runsc.v1"'
  check "v2 dump has runsc.toml as ConfigPath" ctd_has "$d/v2.dump" \
    "ConfigPath = \"$CTD_HOSTDIR/runsc.toml\""
  check "v2 dump keeps the base's runc" ctd_has "$d/v2.dump" 'SystemdCgroup = true'

  # The check is meaningful: a redeclared base table (k3s-io/docs#566) and a template that is
  # a copy of the rendered config plus the base (kata #12478) are both refused.
  { cat "$d/v2.toml"; printf '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]\n'
    printf '  runtime_type = "io.containerd.runc.v2"\n'; } > "$d/v2-dup.toml"
  check "v2 with a duplicated runc table is rejected" \
    ctd_rejected containerd "$d/v2-dup.toml" "$d/v2-dup.dump"
  { printf '{{ template "base" . }}\n'; cat "$c/host/$CTD_REL/config.toml"; } > "$d/copy.tmpl"
  ctd_render "$d/copy.tmpl" "$c/host/$CTD_REL/config.toml" "$d/v2-copy.toml"
  check "v2 base + copied rendered config is rejected" \
    ctd_rejected containerd "$d/v2-copy.toml" "$d/v2-copy.dump"

  # ---- v3 (containerd 2.x) --------------------------------------------------------------------
  # config-v3.toml.tmpl = imports + base; the runsc drop-in in config-v3.toml.d.
  c=$CTD_FIX/v3-noimport-runsc
  mkdir -p "$d/v3a"
  cp "$c/expected/$CTD_REL/config-v3.toml.d/"*.toml "$d/v3a/"
  ctd_render "$c/expected/$CTD_REL/config-v3.toml.tmpl" "$c/host/$CTD_REL/config.toml" \
    "$d/v3a.toml" "$d/v3a"
  # The base imports config-v3.toml.d; kata-deploy's drop-in and ours sit side by side.
  local c2=$CTD_FIX/v3-imports-runsc
  mkdir -p "$d/v3b"
  cp "$c2/expected/$CTD_REL/config-v3.toml.d/"*.toml "$d/v3b/"
  sed "s#$CTD_HOSTDIR/config-v3.toml.d#$d/v3b#g" "$c2/host/$CTD_REL/config.toml" > "$d/v3b.toml"
  { cat "$d/v3a.toml"; printf "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]\n"
    printf '  runtime_type = "io.containerd.runc.v2"\n'; } > "$d/v3-dup.toml"

  log "v3 with $ver: TOML syntax, duplicated tables and drop-in loading only (1.6 ignores the" \
    "io.containerd.cri.v1.* sections of a version 3 config)"
  check "v3 rendered config parses (1.6, syntax)" ctd_dump containerd "$d/v3a.toml" "$d/v3a.dump"
  check "v3 drop-in is imported (1.6)" ctd_has "$d/v3a.dump" "$d/v3a/confidential-operator-runsc.toml"
  check "v3 base-imports config parses (1.6, syntax)" \
    ctd_dump containerd "$d/v3b.toml" "$d/v3b.dump"
  check "v3 with a duplicated runc table is rejected (1.6)" \
    ctd_rejected containerd "$d/v3-dup.toml" "$d/v3-dup.dump"

  # The other generated TOML files parse (runsc.toml is read by the gVisor shim, not containerd).
  local f
  for f in "$CTD_FIX"/*/expected/"$CTD_REL"/runsc.toml \
    "$CTD_FIX"/*/expected/"$CTD_REL"/config-v3.toml.d/*.toml; do
    check "TOML parses: ${f#"$CTD_FIX"/}" \
      python3 -c 'import sys, tomllib; tomllib.load(open(sys.argv[1], "rb"))' "$f"
  done

  if [ -n "${CO_CONTAINERD2:-}" ] && [ -x "$CO_CONTAINERD2" ]; then
    log "v3 with $("$CO_CONTAINERD2" --version 2>&1): semantic check"
    local rt="[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes"
    check "v3 rendered config parses (2.x)" ctd_dump "$CO_CONTAINERD2" "$d/v3a.toml" "$d/v3a2.dump"
    check "v3 dump has runsc (2.x)" ctd_has "$d/v3a2.dump" "$rt.runsc]"
    check "v3 dump has runsc.toml (2.x)" ctd_has "$d/v3a2.dump" "$CTD_HOSTDIR/runsc.toml"
    check "v3 dump keeps the base's runc (2.x)" ctd_has "$d/v3a2.dump" "$rt.runc]"
    check "v3 base-imports config parses (2.x)" \
      ctd_dump "$CO_CONTAINERD2" "$d/v3b.toml" "$d/v3b2.dump"
    check "v3 dump has kata-deploy's kata-qemu and our runsc (2.x)" \
      eval "ctd_has '$d/v3b2.dump' \"$rt.kata-qemu]\" && ctd_has '$d/v3b2.dump' \"$rt.runsc]\""
    check "v3 with a duplicated runc table is rejected (2.x)" \
      ctd_rejected "$CO_CONTAINERD2" "$d/v3-dup.toml" "$d/v3-dup2.dump"
  else
    log "v3 semantic check skipped: set CO_CONTAINERD2 to a containerd 2.x binary"
  fi
}
