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

# taskscope/ is the package namespace; it links to the layers' folders.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY taskscope taskscope
COPY agent agent
COPY bpf bpf
COPY exporters exporters
COPY topology topology
COPY deploy/docker/entrypoint.sh /usr/local/bin/taskscope-entrypoint
# A wheel, as install.sh does it: the BPF sources travel as package data.
RUN python3 -m venv --system-site-packages /opt/taskscope \
 && /opt/taskscope/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation -w /tmp/wheels . \
 && /opt/taskscope/bin/pip install --no-cache-dir /tmp/wheels/taskscope-*.whl \
 && rm -rf /tmp/wheels /src \
 && ln -s /opt/taskscope/bin/taskscope /usr/local/bin/taskscope \
 && /opt/taskscope/bin/python -c "import bcc"
WORKDIR /

EXPOSE 9810 9811
ENTRYPOINT ["taskscope-entrypoint"]
CMD ["agent", "--config", "/etc/taskscope/agent.yaml"]
