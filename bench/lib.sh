# Shared by the bench scripts: source it after `cd` to the repository root.

# Installs wrk from Debian's packages when it is missing (root, or sudo).
ensure_wrk() {
  command -v wrk >/dev/null && return 0
  local sudo=; [ "$(id -u)" -eq 0 ] || sudo=sudo
  timeout 300 $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive timeout 600 $sudo apt-get install -y -qq wrk >/dev/null
}

# Builds the release binary and prints its path.
build_ebb() {
  timeout 900 cargo build --release --quiet -p ebb
  echo "$PWD/target/release/ebb"
}
