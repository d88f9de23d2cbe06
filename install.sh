#!/usr/bin/env bash
# Installs everything taskscope needs on Debian 12, as root; safe to re-run.
#   ./install.sh         the agent: BCC, kernel headers, graphviz; taskscope built
#                        into a wheel and installed in a root-owned venv,
#                        /opt/taskscope, linked as /usr/local/bin/taskscope
#   ./install.sh --dev   also what the tests and benchmarks use, and an
#                        editable venv in .venv for work on this checkout
set -euo pipefail
cd "$(dirname "$0")"

dev=0
case "${1:-}" in
  --dev) dev=1 ;;
  "") ;;
  *) echo "usage: $0 [--dev]" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { echo "install.sh: run as root (it installs Debian packages)" >&2; exit 2; }

export DEBIAN_FRONTEND=noninteractive
packages=(python3 python3-venv python3-bpfcc bpftool graphviz iproute2 procps netbase)
# python3-dev and gcc build the marker library (marker/) the tests load;
# bpftrace runs the benchmarks' bar to beat (bench/bar.bt).
[ "$dev" = 1 ] && packages+=(iptables nginx-light wrk util-linux systemd redis-server prometheus
                             python3-dev gcc bpftrace)

updated=0
apt_update() { [ "$updated" = 1 ] || { apt-get update -q; updated=1; }; }
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt_update
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Kernel headers for BCC.  The running kernel's own package comes first.
# Where there is none (custom or cloud kernels), Debian's generic headers are
# linked in its place: sound for taskscope because its probes read only
# tracepoint arguments (whose layout BCC takes from tracefs, not from headers)
# and BPF helpers, never a kernel struct, so header/kernel skew cannot bite.
release=$(uname -r)
modules=/lib/modules/$release
if [ ! -d "$modules/build/include" ]; then
  apt_update
  if ! apt-get install -y -q "linux-headers-$release" 2>/dev/null; then
    arch=$(dpkg --print-architecture)
    apt-get install -y -q "linux-headers-$arch"
    build=$(ls -d /usr/src/linux-headers-*-"$arch" | sort -V | tail -n 1)
    common=${build%-"$arch"}-common
    mkdir -p "$modules"
    ln -sfn "$build" "$modules/build"
    ln -sfn "$common" "$modules/source"
    echo "install.sh: no headers packaged for kernel $release; linked $build (see README)"
  fi
fi

# The agent runs as root: it runs from a root-owned venv with its own copy of
# the code and the BPF sources (package data), never from the checkout, so
# the clone can live anywhere and be deleted after.  Site packages of the
# system: bcc comes from Debian (python3-bpfcc), not PyPI.
prefix=/opt/taskscope
[ -x "$prefix/bin/python" ] || /usr/bin/python3 -m venv --system-site-packages "$prefix"
wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT
"$prefix/bin/pip" wheel -q --disable-pip-version-check --no-deps --no-build-isolation -w "$wheels" .
"$prefix/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps "$wheels"/taskscope-*.whl
"$prefix/bin/pip" install -q --disable-pip-version-check "$wheels"/taskscope-*.whl
chmod -R go-w "$prefix"
ln -sfn "$prefix/bin/taskscope" /usr/local/bin/taskscope
"$prefix/bin/python" -c "import bcc" || { echo "install.sh: bcc does not import in $prefix" >&2; exit 1; }

if [ "$dev" = 1 ]; then
  # Tests and benchmarks run this checkout's code: an editable venv here.
  [ -x .venv/bin/python ] || /usr/bin/python3 -m venv --system-site-packages .venv
  .venv/bin/pip install -q --disable-pip-version-check -e ".[test]"
  .venv/bin/pip install -q --disable-pip-version-check ./marker
fi
echo "install.sh: ready; run: taskscope agent --help"
