# shellcheck shell=bash
# The README's configuration reference lists every flag of every subcommand: each flag that
# `confidential-operator <command> --help` prints has a row "| `--flag`" under the command's
# "### `command`" heading of the section "## Configuration reference", and no row names a flag
# the command does not have. Needs no cluster.

# docs_section COMMAND: the README's configuration reference subsection of COMMAND.
docs_section() {
  awk -v cmd="\`$1\`" '
    /^## / { inref = ($0 == "## Configuration reference") }
    inref && /^### / { insub = index($0, cmd) > 0; next }
    inref && insub { print }' "${DOCS_README:-README.md}"
}

# docs_commands: the subcommands the binary's usage lists.
docs_commands() {
  "$CO_BIN" --help | awk '/^Commands:/ { on = 1; next } on && /^$/ { exit } on { print $1 }'
}

# docs_flags_documented COMMAND: every flag of COMMAND's --help has its row.
docs_flags_documented() {
  local cmd=$1 help sec flag missing="" rc=0
  help=$("$CO_BIN" "$cmd" --help 2>&1) || rc=$?
  [ "$rc" -eq 0 ] || { log "  $cmd --help exited $rc"; return 1; }
  sec=$(docs_section "$cmd")
  [ -n "$sec" ] || { log "  no '### \`$cmd\`' in the configuration reference"; return 1; }
  local flags stale=""
  flags=$(sed -nE 's/^  --([a-z0-9-]+) .*/\1/p' <<<"$help")
  for flag in $flags; do
    grep -qE "^\| \`--$flag\`" <<<"$sec" || missing="$missing --$flag"
  done
  # And no row for a flag the command does not have.
  for flag in $(sed -nE 's/^\| `--([a-z0-9-]+)`.*/\1/p' <<<"$sec"); do
    grep -qxF -- "$flag" <<<"$flags" || stale="$stale --$flag"
  done
  [ -z "$missing" ] || log "  $cmd: flags without a row:$missing"
  [ -z "$stale" ] || log "  $cmd: rows for flags it does not have:$stale"
  [ -z "$missing$stale" ]
}

test_docs_every_flag_documented() {
  local cmd n=0
  for cmd in $(docs_commands); do
    n=$((n + 1))
    check "README documents every flag of '$cmd'" docs_flags_documented "$cmd"
  done
  check "the usage lists the subcommands" test "$n" -ge 4
  # The check notices a missing row: the README without the row of --kube-api-burst.
  local copy=$E2E_DIR/README.no-burst.md
  grep -v '^| `--kube-api-burst`' README.md >"$copy"
  check "a flag without a row is noticed" docs_notices_missing "$copy"
  # And a row for a flag that does not exist.
  copy=$E2E_DIR/README.bogus.md
  sed 's/^| `--kube-api-burst` .*/&\n| `--no-such-flag` | 1 | none |/' README.md >"$copy"
  check "a row for a flag that does not exist is noticed" docs_notices_missing "$copy"
}

# docs_notices_missing README_COPY: the check fails on a README lacking a row.
docs_notices_missing() {
  ! DOCS_README=$1 docs_flags_documented controller 2>/dev/null
}
