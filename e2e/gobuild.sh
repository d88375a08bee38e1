# Sourced by the Go builders (e2e/k8s/build.sh, e2e/argo/build.sh): `go build` with progress.
#
#   go_build_progress LDFLAGS OUTPUT PACKAGE...
#
# Builds PACKAGE... into OUTPUT (a file, or a directory ending in /) with the shared Go build
# cache, printing every 20 s how many packages are compiled of at most how many (`go build -v`
# names each package as it compiles it), and the compiler's messages as they come. Returns go
# build's exit status.
go_build_progress() {
  local ldflags=$1 output=$2
  shift 2
  local total start
  total=$(go list -deps "$@" | wc -l)
  start=$SECONDS
  go build -v -buildvcs=false -trimpath -ldflags="$ldflags" -o "$output" "$@" 2>&1 | {
    local n=0 last=$SECONDS line
    while IFS= read -r line; do
      case "$line" in
        *": "* | "#"*) echo "$line" >&2 ;;
        *)
          n=$((n + 1))
          if ((SECONDS - last >= 20)); then
            last=$SECONDS
            echo "build.sh: compiled $n of at most $total packages ($((SECONDS - start)) s)" >&2
          fi
          ;;
      esac
    done
  }
  return "${PIPESTATUS[0]}"
}

# A small Go tool (its own module in DIR, one main.go): built once per go.mod, go.sum and
# main.go into the shared cache under NAME, and its path printed.
#
#   go_tool_cached NAME DIR WHAT
go_tool_cached() {
  local name=$1 dir=$2 what=$3 key out
  key=$(cat "$dir/go.mod" "$dir/go.sum" "$dir/main.go" | sha256sum | cut -c1-12)
  out="${SLUICE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice}/$name/$key"
  if [[ ! -x "$out/$name" ]]; then
    echo "build.sh: building $what (a minute at most the first time)" >&2
    mkdir -p "$out"
    (cd "$dir" && go build -buildvcs=false -trimpath -o "$out/$name.tmp.$$" .)
    mv "$out/$name.tmp.$$" "$out/$name"
  fi
  echo "$out/$name"
}

# The version of MODULE that the go.mod at GOMOD requires (a comment line does not count).
#
#   go_mod_version MODULE GOMOD
go_mod_version() {
  awk -v m="$1" '$1 != "//" { for (i = 1; i < NF; i++) if ($i == m && $(i + 1) ~ /^v[0-9]/) { print $(i + 1); exit } }' "$2"
}

# The cache directory of tool NAME at VERSION, keyed by a hash of FILE... (its go.mod, go.sum
# and whatever else changes what is built): $SLUICE_CACHE_DIR, else $XDG_CACHE_HOME/sluice,
# else ~/.cache/sluice, then NAME/VERSION-KEY.
#
#   go_cache_dir NAME VERSION FILE...
go_cache_dir() {
  local name=$1 version=$2 key
  shift 2
  key=$(cat "$@" | sha256sum | cut -c1-12)
  echo "${SLUICE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice}/$name/$version-$key"
}

# Ends the script printing WHAT when the build in cache directory OUT is complete (CHECK, a
# command, succeeds); otherwise takes the build lock beside OUT (one builder at a time: a
# second test run waits for the first build instead of racing it) and checks again, so a
# build finished meanwhile is used. Returns with the lock held, to build.
#
#   go_cached_or_lock OUT WHAT CHECK...
go_cached_or_lock() {
  local out=$1 what=$2
  shift 2
  if "$@"; then
    echo "$what"
    exit 0
  fi
  command -v go >/dev/null || { echo "build.sh: Go is needed to build $out" >&2; exit 1; }
  mkdir -p "$(dirname "$out")"
  exec 9>"$(dirname "$out")/.build.lock"
  flock 9
  if "$@"; then
    echo "$what"
    exit 0
  fi
}
