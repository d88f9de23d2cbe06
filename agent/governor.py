"""The overhead governor: the agent keeps its own CPU under a budget by
sampling trace segments, instead of eating the node.

Why: an operator can only turn tracing on everywhere if its cost is
bounded whatever the traffic.  Every `interval` the governor measures the
agent's CPU (user and system time of all its threads, an average over
`window` seconds) and, above `max_cpu_percent` of one core, raises the
kernel's `segment_sample_every` (bpf/segments.h: a segment begins for 1 in
N trace contexts), lowering it again, down to 1, once the cost is well
below.  Metrics stay exact: histograms and counters do not depend on
segments, and the kernel counts the contexts it sampled out.  It acts only
where sampling saves the agent CPU: when segments are streamed to an OTLP
exporter (each one then costs user space); otherwise a segment costs user
space nothing, and the governor only measures.  BPF run time
(kernel.bpf_stats_enabled) is reported beside it, not governed: most of it
is the per-event hooks, which sampling segments does not remove.
"""

import collections
import ctypes
import logging
import os
import time

log = logging.getLogger(__name__)

__all__ = ["Governor", "bpf_run_seconds"]

MAX_SAMPLE_EVERY = 1 << 16
RELAX_BELOW = 0.6  # fraction of the budget under which sampling eases


def process_cpu_seconds():
    times = os.times()
    return times.user + times.system


def bpf_stats_enabled(path="/proc/sys/kernel/bpf_stats_enabled"):
    try:
        with open(path) as f:
            return f.read().strip() == "1"
    except OSError:
        return False


def bpf_run_seconds(fdinfo="/proc/self/fdinfo"):
    """Run time of this process's BPF programs so far (fdinfo's run_time_ns,
    counted only while kernel.bpf_stats_enabled is 1), or None without any."""
    total, found = 0, False
    try:
        fds = os.listdir(fdinfo)
    except OSError:
        return None
    for fd in fds:
        try:
            with open(f"{fdinfo}/{fd}") as f:
                for line in f:
                    if line.startswith("run_time_ns:"):
                        total += int(line.split()[1])
                        found = True
                        break
        except (OSError, ValueError):
            continue
    return total / 1e9 if found else None


class Governor:
    def __init__(self, write_sample_every, max_cpu_percent=2.0, interval=1.0, window=5.0,
                 cpu_seconds=process_cpu_seconds, clock=time.monotonic, act=True):
        self._write = write_sample_every
        self.acting = act and max_cpu_percent > 0
        self.budget = max_cpu_percent / 100.0  # of one core
        self.interval = interval
        self._cpu_seconds, self._clock = cpu_seconds, clock
        self._samples = collections.deque(maxlen=max(2, int(window / interval) + 1))
        self.sample_every = 1
        self.cpu_fraction = 0.0
        self.bpf_seconds = None  # bpf_run_seconds() at the last step

    def run(self, stop):
        """Govern every `interval` until `stop` (a Workers job)."""
        self._samples.append((self._clock(), self._cpu_seconds()))
        while not stop.wait(self.interval):
            self.step()

    def step(self):
        """Measure, then adjust the sampling; returns the new 1-in-N."""
        self._samples.append((self._clock(), self._cpu_seconds()))
        if bpf_stats_enabled():  # else every program's fdinfo says 0: spare the reads
            self.bpf_seconds = bpf_run_seconds()
        (t0, c0), (t1, c1) = self._samples[0], self._samples[-1]
        if t1 <= t0:
            return self.sample_every
        self.cpu_fraction = (c1 - c0) / (t1 - t0)
        every = self.sample_every
        if not self.acting:
            return every
        if self.cpu_fraction > self.budget:
            every = min(MAX_SAMPLE_EVERY, max(every + 1, round(every * min(
                self.cpu_fraction / self.budget, 4.0))))
        elif self.cpu_fraction < RELAX_BELOW * self.budget and every > 1:
            every = max(1, every // 2)
        if every != self.sample_every:
            log.log(logging.INFO if (every == 1) != (self.sample_every == 1) else logging.DEBUG,
                    "agent CPU %.2f%% of a core (budget %.2f%%): trace segments for 1 in %d "
                    "contexts", 100 * self.cpu_fraction, 100 * self.budget, every)
            self.sample_every = every
            self._write(every)
            # The window restarts: the new rate's cost is what counts now.
            self._samples.clear()
            self._samples.append((t1, c1))
        return every


def kernel_writer(bpf):
    """A function that sets segment_sample_every in the loaded programs."""
    table = bpf["segment_sample_every"]

    def write(every):
        table[ctypes.c_int(0)] = ctypes.c_uint(every)
    return write
