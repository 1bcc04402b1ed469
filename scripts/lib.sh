# Shared shell helpers for scripts/*.  Sourced, not run.

# Install the Debian packages named in "$@" that are not installed yet.
# 'apt-get update' runs at most once per invocation of the calling script.
ensure_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "Installing: ${missing[*]}" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if [ -z "${STRATA_APT_UPDATED:-}" ]; then
        $sudo apt-get update -qq >&2
        export STRATA_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2
}

BUILD_DEPS=(gcc meson ninja-build pkg-config liburing-dev libaio-dev
            zlib1g-dev libzstd-dev libdeflate-dev nettle-dev libglib2.0-dev)

# Configure (once) and build the tree in $1 with extra meson args.
build_tree() {
    local dir=$1; shift
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" "$@" >"$dir.setup.log" 2>&1 ||
            { cat "$dir.setup.log" >&2; return 1; }
    fi
    ninja -C "$dir" >"$dir.build.log" 2>&1 ||
        { tail -n 60 "$dir.build.log" >&2; return 1; }
}
