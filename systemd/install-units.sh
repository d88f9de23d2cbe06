#!/bin/sh
# Install or remove taskscope's systemd units (run ./install.sh first).
#   systemd/install-units.sh install [agent|collector|all]   (default: agent)
#   systemd/install-units.sh uninstall
# Settings live in /etc/taskscope/{agent,collector}.yaml; uninstall keeps them.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
units=${TASKSCOPE_UNIT_DIR:-/etc/systemd/system}
etc=${TASKSCOPE_CONFIG_DIR:-/etc/taskscope}
action=${1:-}
which=${2:-agent}

systemd_running() { [ -d /run/systemd/system ]; }

case "$action" in
install)
  case "$which" in
    agent) names="taskscope-agent" ;;
    collector) names="taskscope-collector" ;;
    all) names="taskscope-agent taskscope-collector" ;;
    *) echo "usage: $0 install [agent|collector|all]" >&2; exit 2 ;;
  esac
  command -v taskscope >/dev/null || { echo "$0: run ./install.sh first" >&2; exit 1; }
  mkdir -p "$etc" "$units"
  for name in $names; do
    install -m 0644 "$here/$name.service" "$units/$name.service"
    config=$etc/${name#taskscope-}.yaml
    [ -e "$config" ] || install -m 0644 "$here/${name#taskscope-}.yaml" "$config"
  done
  if systemd_running; then
    systemctl daemon-reload
    for name in $names; do systemctl enable --now "$name"; done
  else
    echo "$0: systemd is not running here; units installed, start them on a systemd host"
  fi ;;
uninstall)
  for name in taskscope-agent taskscope-collector; do
    if systemd_running; then systemctl disable --now "$name" 2>/dev/null || true; fi
    rm -f "$units/$name.service"
  done
  if systemd_running; then systemctl daemon-reload; fi
  echo "$0: units removed; $etc kept" ;;
*)
  echo "usage: $0 install [agent|collector|all] | uninstall" >&2; exit 2 ;;
esac
