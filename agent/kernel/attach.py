"""The probe set, loaded and attached whole: BCC attaches the tracepoint
programs as it loads them; the packet programs are attached here, and where
they cannot be (no cgroup v2, a verifier that refuses them, a missing
capability) exchanges and bytes fall back to the send/receive tracepoints
(6.4+), else to kprobes, on kernels that have them."""

import logging
from dataclasses import dataclass, replace

from taskscope.agent import kernel_abi
from taskscope.agent.kernel import loader, probes
from taskscope.agent.kernel.packet_hooks import PacketHooks, VerifierGaveUp
from taskscope.records.errors import ProbeLoadError

log = logging.getLogger(__name__)


@dataclass
class ProbeSet:
    bpf: object
    selection: probes.Selection
    failed: dict          # probe name -> why it did not load
    packet_hooks: object  # PacketHooks, or None

    def status(self):
        """{probe: True when loaded and attached}, every probe asked for."""
        status = {p.name: p.name not in self.failed for p in self.selection.enabled}
        status.update({name: False for name in self.selection.missing})
        status.update({name: False for name in self.failed})
        return status

    def variants(self):
        return {p.name: self.selection.variant(p.name) for p in self.selection.enabled}

    def close(self):
        if self.packet_hooks:
            self.packet_hooks.close()
        self.bpf.cleanup()


def _report(selection, tracefs_root):
    for name, absent in selection.missing.items():
        log.warning("probe %s disabled: tracepoint %s not found in %s/events",
                    name, ", ".join(absent), tracefs_root)


def load(groups, tracefs_root, btf, cgroup_root, tcp_io="auto",
         options=kernel_abi.BuildOptions()):
    """Select, compile and attach the probes of `groups`; a ProbeSet."""
    mode, why = probes.choose_tcp_io(tcp_io, groups, tracefs_root, cgroup_root)
    selection = probes.select(groups, tracefs_root, btf, tcp_io=mode)
    if any(p.name in probes.TCP_IO_PROBES for p in selection.enabled):
        source = {"packets": "packets", "kprobes": "kprobes on tcp_sendmsg/tcp_recvmsg"}.get(
            mode, "the send/receive tracepoints")
        log.info("TCP exchanges and bytes from %s: %s", source, why)
    bpf, failed = loader.load(selection, options)
    hooks = None
    users = selection.packet_users
    if users:
        wire = any(p.name == "trace_wire" for p in selection.enabled) and \
            "trace_wire" not in failed
        try:
            hooks = PacketHooks(bpf, cgroup_root, wire=wire)
            if isinstance(hooks.wire_error, VerifierGaveUp) and \
                    options.scan_bytes > kernel_abi.SCAN_BYTES_SMALL:
                log.warning("trace contexts will be looked for in the first %d bytes of a "
                            "request, not %d: this kernel's verifier gave up on the larger "
                            "reader", kernel_abi.SCAN_BYTES_SMALL, options.scan_bytes)
                hooks.close()
                bpf.cleanup()
                return load(groups, tracefs_root, btf, cgroup_root, tcp_io,
                            replace(options, scan_bytes=kernel_abi.SCAN_BYTES_SMALL))
            if hooks.wire_error:
                log.error("probe trace_wire disabled: %s", hooks.wire_error)
                failed["trace_wire"] = str(hooks.wire_error)
        except ProbeLoadError as exc:
            fallback = probes.fallback_tcp_io(tracefs_root)
            if mode == "packets" and tcp_io == "auto" and fallback:
                log.error("packet programs cannot be used, so exchanges and bytes come from "
                          "%s instead: %s", "kprobes" if fallback == "kprobes" else
                          "the send/receive tracepoints", exc)
                bpf.cleanup()
                return load(groups, tracefs_root, btf, cgroup_root, fallback, options)
            log.error("probes %s disabled: %s", ", ".join(users), exc)
            failed.update({name: str(exc) for name in users})
    _report(selection, tracefs_root)
    return ProbeSet(bpf, selection, failed, hooks)
