# One image for the agent and the collector: Debian 12, BCC from Debian's
# packages (it is not on PyPI), taskscope from this checkout and PyPI.
#   docker build -t taskscope:0.1.0 .
FROM debian:12-slim

ENV DEBIAN_FRONTEND=noninteractive
# linux-headers-amd64: the generic headers BCC falls back on when the host's
# are not mounted (see deploy/docker/entrypoint.sh and the README).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      python3 python3-venv python3-bpfcc bpftool graphviz iproute2 procps netbase \
      ca-certificates linux-headers-amd64 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/taskscope
COPY pyproject.toml README.md ./
COPY agent agent
COPY bpf bpf
COPY exporters exporters
COPY topology topology
COPY deploy/docker/entrypoint.sh /usr/local/bin/taskscope-entrypoint
# Editable: the agent compiles bpf/*.c from this directory at start-up.
RUN python3 -m venv --system-site-packages .venv \
 && .venv/bin/pip install --no-cache-dir -e . \
 && ln -s /opt/taskscope/.venv/bin/taskscope /usr/local/bin/taskscope \
 && .venv/bin/python -c "import bcc"

EXPOSE 9810 9811
ENTRYPOINT ["taskscope-entrypoint"]
CMD ["agent", "--config", "/etc/taskscope/agent.yaml"]
