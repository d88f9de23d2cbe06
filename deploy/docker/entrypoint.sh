#!/bin/sh
# Kernel headers for BCC, then taskscope.  BCC compiles against
# /lib/modules/$(uname -r)/build: the host's headers when the host's
# /lib/modules and /usr/src are mounted under /host (their symlinks point
# into the host's /usr/src), else the image's generic Debian headers, which
# are enough because the probes read no kernel struct through them.
# Only the agent compiles probes; the collector starts as it is.
# (TASKSCOPE_ROOT prefixes every path, for tests.)
set -eu
root=${TASKSCOPE_ROOT:-}
release=${TASKSCOPE_RELEASE:-$(uname -r)}
modules=/lib/modules/$release

host_dir() {  # host_dir LINK: the host directory that LINK names, seen under /host
  link=$root/host$modules/$1
  [ -e "$link" ] || [ -L "$link" ] || return 1
  target=$(readlink "$link" || true)
  case "$target" in
    "") dir=$link ;;
    /*) dir=$root/host$target ;;
    *) dir=$root/host$modules/$target ;;
  esac
  [ -d "$dir/include" ] && echo "$dir"
}

if [ "${1:-}" = agent ] && [ ! -d "$root$modules/build/include" ]; then
  mkdir -p "$root$modules"
  if build=$(host_dir build); then
    ln -sfn "$build" "$root$modules/build"
    if source=$(host_dir source); then ln -sfn "$source" "$root$modules/source"; fi
    echo "taskscope-entrypoint: using the host's kernel headers ($build)"
  else
    ln -sfn "$(ls -d "$root"/usr/src/linux-headers-*-amd64 | head -n1)" "$root$modules/build"
    ln -sfn "$(ls -d "$root"/usr/src/linux-headers-*-common | head -n1)" "$root$modules/source"
    echo "taskscope-entrypoint: no host headers for $release; using Debian's generic ones"
  fi
fi
exec ${TASKSCOPE_EXEC:-taskscope} "$@"
