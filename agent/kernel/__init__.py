"""Everything that talks to the BPF programs of bpf/: which probes the
running kernel allows, compiling and attaching them, reading their maps."""
