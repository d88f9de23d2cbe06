"""taskscope: kernel-side latency per service, from eBPF probes.

The package is one namespace over the project's layers, each in its own
top-level folder of the repository and linked here (this folder itself holds
the composition root):

    taskscope.records    typed records and errors every layer shares (bottom)
    taskscope.agent      the node: probes (bpf/), their maps, the host's names
    taskscope.topology   records -> the service graph, merged across agents
    taskscope.exporters  records and graphs -> Prometheus, OTLP
    taskscope.cli ...    the composition root: commands, HTTP, wiring (top)

Imports only go down that list; tests/unit/test_layers.py holds them to it.
"""
