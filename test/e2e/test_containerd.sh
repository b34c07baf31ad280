# The containerd configurations produced by the node agent's template patcher
# (controller/node/template.c) are accepted by a real containerd. No cluster is needed.
#
# The files checked are the expected trees of the unit test fixtures
# (test/unit/data/node/<case>/expected): test_nodetemplate asserts that the patcher's output is
# byte-identical to them. k3s' rendering is reproduced here: the template with its
# `{{ template "base" . }}` line replaced by the stock config (the fixture's config.toml).
#
# Two containerd versions check them:
# - Debian bookworm's containerd 1.6 (hack/install-deps.sh): `containerd --config FILE config
#   dump` parses a config without a daemon and rejects duplicated tables. It knows only the v2
#   schema: a `version = 3` file is parsed as TOML (duplicates are still rejected, drop-ins are
#   still read) but its io.containerd.cri.v1.* sections are ignored.
# - containerd 2.x built from the Go module proxy by hack/build-containerd2.sh (the version k3s
#   1.36 ships; CO_CONTAINERD2 overrides the binary): the v3 results semantically, i.e. the
#   runtime tables containerd 2 really loads from the template and the imported drop-ins.

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
    "io.containerd.cri.v1.* sections of a version 3 config; test_containerd2_accepts_v3_configs" \
    "checks them with containerd 2)"
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
}

# ctd2_dump BIN CONFIG OUT: ctd_dump, then OUT.flat: one line per value of the dump,
# `key > key > ... = JSON` (and `key[] = JSON` per list element), for the checks below.
ctd2_dump() {
  ctd_dump "$@" || return 1
  python3 - "$3" > "$3.flat" <<'PY'
import json, sys, tomllib
def walk(v, path):
    if isinstance(v, dict):
        for k, x in v.items():
            walk(x, path + [k])
        return
    print(" > ".join(path), "=", json.dumps(v))
    if isinstance(v, list):
        for e in v:
            print(" > ".join(path) + "[]", "=", json.dumps(e))
walk(tomllib.load(open(sys.argv[1], "rb")), [])
PY
}

# ctd_eq DUMP JSON KEY...: in a ctd2_dump result, the value at the path KEY... is JSON.
ctd_eq() {
  local dump=$1 want=$2 key
  shift 2
  key=$(printf '%s > ' "$@")
  key=${key% > }
  grep -qxF -- "$key = $want" "$dump.flat" && return 0
  printf '#     want %s = %s, dump has: %s\n' "$key" "$want" \
    "$(grep -F -- "$key =" "$dump.flat" || echo nothing)" >&2
  return 1
}

CTD_RT="plugins > io.containerd.cri.v1.runtime > containerd > runtimes"

# ctd_rt DUMP HANDLER [options] KEY JSON: a key of a CRI runtime table in a containerd 2 dump.
ctd_rt() {
  local dump=$1 h=$2
  shift 2
  local keys=("${@:1:$#-1}") want=${*: -1}
  ctd_eq "$dump" "$want" plugins io.containerd.cri.v1.runtime containerd runtimes "$h" "${keys[@]}"
}

# ctd_imports DUMP GLOB: the root `imports` of a dump lists GLOB (containerd >= 2.4 adds its
# own /etc/containerd/conf.d/*.toml).
ctd_imports() { ctd_eq "$1" "\"$2\"" "imports[]"; }

# ctd_no_rt DUMP HANDLER: no runtime table for HANDLER.
ctd_no_rt() { ! grep -qF -- "$CTD_RT > $2 > " "$1.flat"; }

# ctd_strict ERRFILE: containerd did not ignore a key of a runtime table (it only warns when a
# key is unknown, e.g. a misspelt runtime_type or a v2 key in a v3 table).
ctd_strict() {
  if grep -E 'unknown key.*key="containerd runtimes' "$1" >&2; then return 1; fi
  return 0
}

# ctd_rejected2 BIN CONFIG OUT WHY: containerd refuses CONFIG and says WHY.
ctd_rejected2() {
  if ctd_dump "$1" "$2" "$3"; then return 1; fi
  grep -qF -- "$4" "$3.err" || { cat "$3.err" >&2; return 1; }
}

# kata-deploy >= 3.28's drop-in for kata-qemu on k3s with containerd 2 (node-install.md §1.3):
# on a node it is written by kata-deploy once the rendered config imports config-v3.toml.d.
ctd_kata_dropin() {
  cat <<'TOML'
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.kata-qemu]
runtime_type = "io.containerd.kata-qemu.v2"
runtime_path = "/opt/kata/bin/containerd-shim-kata-v2"
privileged_without_host_devices = true
pod_annotations = ["io.katacontainers.*"]
container_annotations = ["io.kubernetes.container.terminationMessage*"]
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.kata-qemu.options]
ConfigPath = "/opt/kata/share/defaults/kata-containers/runtimes/qemu/configuration-qemu.toml"
TOML
}

test_containerd2_accepts_v3_configs() {
  local bin=${CO_CONTAINERD2:-} ver
  if [ -z "$bin" ]; then
    # Cached by version: instant unless `make e2e` / .ci/run did not build it first.
    bin=$(hack/build-containerd2.sh) || { fail "hack/build-containerd2.sh failed"; return; }
  fi
  ver=$("$bin" --version 2>&1) || { fail "cannot run $bin: $ver"; return; }
  case $ver in
    *" v2."*) log "using $ver" ;;
    *) fail "not a containerd 2.x: $ver"; return ;;
  esac
  local d=$E2E_DIR/containerd2 c r=$CTD_REL kq=kata-qemu
  local kqcfg=/opt/kata/share/defaults/kata-containers/runtimes/qemu/configuration-qemu.toml
  mkdir -p "$d"

  # ---- k3s without the default import: config-v3.toml.tmpl = imports + base ------------------
  # Its drop-in directory as on a prepared node: our runsc drop-in and kata-deploy's.
  c=$CTD_FIX/v3-noimport-runsc
  mkdir -p "$d/a"
  cp "$c/expected/$r/config-v3.toml.d/"*.toml "$d/a/"
  ctd_kata_dropin > "$d/a/kata-deploy.toml"
  ctd_render "$c/expected/$r/config-v3.toml.tmpl" "$c/host/$r/config.toml" "$d/a.toml" "$d/a"
  check "template + base parses" ctd2_dump "$bin" "$d/a.toml" "$d/a.dump"
  check "no runtime key ignored" ctd_strict "$d/a.dump.err"
  check "imports lists the drop-in directory" ctd_imports "$d/a.dump" "$d/a/*.toml"
  check "runsc from our drop-in: runtime_type" \
    ctd_rt "$d/a.dump" runsc runtime_type '"io.containerd.runsc.v1"'
  check "runsc: options.TypeUrl" \
    ctd_rt "$d/a.dump" runsc options TypeUrl '"io.containerd.runsc.v1.options"'
  check "runsc: options.ConfigPath is runsc.toml" \
    ctd_rt "$d/a.dump" runsc options ConfigPath "\"$CTD_HOSTDIR/runsc.toml\""
  check "kata-qemu from kata-deploy's drop-in: runtime_type" \
    ctd_rt "$d/a.dump" $kq runtime_type '"io.containerd.kata-qemu.v2"'
  check "kata-qemu: runtime_path" \
    ctd_rt "$d/a.dump" $kq runtime_path '"/opt/kata/bin/containerd-shim-kata-v2"'
  check "kata-qemu: privileged_without_host_devices" \
    ctd_rt "$d/a.dump" $kq privileged_without_host_devices true
  check "kata-qemu: pod_annotations" ctd_rt "$d/a.dump" $kq pod_annotations '["io.katacontainers.*"]'
  check "kata-qemu: options.ConfigPath" ctd_rt "$d/a.dump" $kq options ConfigPath "\"$kqcfg\""
  # Drop-ins are merged into the base's plugin section (containerd 2), not replacing it.
  check "the base's runc is kept" ctd_rt "$d/a.dump" runc runtime_type '"io.containerd.runc.v2"'
  check "the base's runc keeps SystemdCgroup" ctd_rt "$d/a.dump" runc options SystemdCgroup true
  check "the base's CNI conf_dir is kept" ctd_eq "$d/a.dump" \
    "\"/var/lib/rancher/k3s/agent/etc/cni/net.d\"" plugins io.containerd.cri.v1.runtime cni conf_dir

  # The runtimes come from the drop-ins only: the base alone has neither, and the restored
  # state after removal (the fixture's host tree: no template) is the base alone.
  check "the base alone parses" ctd2_dump "$bin" "$c/host/$r/config.toml" "$d/base.dump"
  check "the base alone has no runsc" ctd_no_rt "$d/base.dump" runsc
  check "the base alone has no kata-qemu" ctd_no_rt "$d/base.dump" $kq

  # ---- k3s whose base imports config-v3.toml.d: only the drop-in is ours ---------------------
  c=$CTD_FIX/v3-imports-runsc
  mkdir -p "$d/b"
  cp "$c/expected/$r/config-v3.toml.d/"*.toml "$d/b/"
  sed "s#$CTD_HOSTDIR/config-v3.toml.d#$d/b#g" "$c/expected/$r/config.toml" > "$d/b.toml"
  check "base importing the drop-ins parses" ctd2_dump "$bin" "$d/b.toml" "$d/b.dump"
  check "no runtime key ignored (base imports)" ctd_strict "$d/b.dump.err"
  check "runsc loaded (base imports)" ctd_rt "$d/b.dump" runsc runtime_type '"io.containerd.runsc.v1"'
  check "runsc.toml (base imports)" \
    ctd_rt "$d/b.dump" runsc options ConfigPath "\"$CTD_HOSTDIR/runsc.toml\""
  check "kata-deploy's kata-qemu beside it (base imports)" \
    ctd_rt "$d/b.dump" $kq runtime_type '"io.containerd.kata-qemu.v2"'
  check "the base's runc is kept (base imports)" ctd_rt "$d/b.dump" runc options SystemdCgroup true

  # ---- the check can fail ------------------------------------------------------------------------
  # A table the base declares, declared again (k3s-io/docs#566): containerd 2 does not start.
  { cat "$d/a.toml"; printf "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]\n"
    printf '  runtime_type = "io.containerd.runc.v2"\n'; } > "$d/dup.toml"
  check "a duplicated runc table is rejected" \
    ctd_rejected2 "$bin" "$d/dup.toml" "$d/dup.dump" "table runc already exists"
  # Our import added to a base that already imports: a second root `imports` key. This is why
  # the patcher adds the import only when the base has none.
  c=$CTD_FIX/v3-noimport-runsc
  ctd_render "$c/expected/$r/config-v3.toml.tmpl" "$CTD_FIX/v3-imports-runsc/host/$r/config.toml" \
    "$d/twice.toml" "$d/a"
  check "a second imports key is rejected" \
    ctd_rejected2 "$bin" "$d/twice.toml" "$d/twice.dump" "key imports is already defined"
  # A misspelt key in a runtime table is only a warning to containerd: ctd_strict catches it.
  mkdir -p "$d/typo"
  sed 's/runtime_type/runtime_typo/' "$d/a/confidential-operator-runsc.toml" > "$d/typo/r.toml"
  ctd_render "$c/expected/$r/config-v3.toml.tmpl" "$c/host/$r/config.toml" "$d/typo.toml" "$d/typo"
  ctd_dump "$bin" "$d/typo.toml" "$d/typo.dump"
  check "a misspelt runtime key is noticed" eval "! ctd_strict '$d/typo.dump.err' 2>/dev/null"

  # ---- containerd 2 with a v2 template --------------------------------------------------------
  # k3s on containerd 2 still renders config.toml.tmpl (version 2) when there is no
  # config-v3.toml.tmpl; the agent then writes the v2 result, which containerd 2 migrates.
  c=$CTD_FIX/v2-runsc
  ctd_render "$c/expected/$r/config.toml.tmpl" "$c/host/$r/config.toml" "$d/v2.toml"
  check "v2 result parses (migrated)" ctd2_dump "$bin" "$d/v2.toml" "$d/v2.dump"
  check "no runtime key ignored (v2)" ctd_strict "$d/v2.dump.err"
  check "v2: kata-qemu migrated" ctd_rt "$d/v2.dump" $kq options ConfigPath "\"$kqcfg\""
  check "v2: kata-qemu runtime_path" \
    ctd_rt "$d/v2.dump" $kq runtime_path '"/opt/kata/bin/containerd-shim-kata-v2"'
  check "v2: runsc migrated" \
    ctd_rt "$d/v2.dump" runsc options ConfigPath "\"$CTD_HOSTDIR/runsc.toml\""
}
