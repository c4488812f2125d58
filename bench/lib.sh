# Shared by the bench scripts: source it after `cd` to the repository root.

# Installs Debian package PACKAGE when command COMMAND is missing (root, or sudo).
ensure_deb() {
  command -v "$1" >/dev/null && return 0
  local sudo=; [ "$(id -u)" -eq 0 ] || sudo=sudo
  timeout 300 $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive timeout 600 $sudo apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}

# Installs wrk from Debian's packages when it is missing.
ensure_wrk() {
  ensure_deb wrk wrk
}

# Builds the release binary and prints its path.
build_ebb() {
  # EBB_BIN names a binary already built (to compare builds side by side, or to keep a build
  # fixed while the tree changes); otherwise build the tree's.
  if [ -n "${EBB_BIN:-}" ]; then echo "$EBB_BIN"; return; fi
  # `|| return`: called as EBB=$(build_ebb), where `set -e` does not reach, a failed build
  # would otherwise go unnoticed and the bench would run a stale binary.
  timeout 900 cargo build --release --quiet -p ebb || return
  echo "$PWD/target/release/ebb"
}

# Installs etcd from Debian's etcd-server package when it is missing.
ensure_etcd() {
  ensure_deb etcd etcd-server
}
