"""Block-IO latency, attributed to the process that submitted the IO."""

import os
import signal
import subprocess
import time

import pytest

from tests.e2e.agent_process import histogram_delta, quantile, value
from tests.e2e.workloads import run_named, sh

FAMILY = "taskscope_blockio_latency_seconds"
WRITES = 64


@pytest.fixture
def loop_device(tmp_path):
    """A loop device over a 16 MiB file: a block device of our own to write to."""
    backing = tmp_path / "disk.img"
    with open(backing, "wb") as f:
        f.truncate(16 << 20)
    dev = sh("losetup", "--find", "--show", str(backing)).stdout.strip()
    yield dev
    sh("losetup", "-d", dev, check=False)


def test_direct_writes_counted_for_their_service(agent, loop_device):
    name = os.path.basename(loop_device)
    before = agent.scrape()
    run_named("blk-writer", f"""
        import mmap, os
        fd = os.open({loop_device!r}, os.O_WRONLY | os.O_DIRECT)
        buf = mmap.mmap(-1, 4096)
        buf.write(b"x" * 4096)
        for i in range({WRITES}):
            os.pwrite(fd, buf, i * 4096)
            os.fsync(fd)
        os.close(fd)
    """)
    after = agent.scrape()

    def writes(samples, stage):
        return value(samples, FAMILY + "_count", service="blk-writer", device=name,
                     op="write", stage=stage)

    device = writes(after, "device") - writes(before, "device")
    queued = writes(after, "queue") - writes(before, "queue")
    assert device >= WRITES, agent.log()
    assert queued >= WRITES
    # Every write took some time on the device: the sum is no placeholder.
    assert value(after, FAMILY + "_sum", service="blk-writer", device=name, op="write",
                 stage="device") > 0


FSYNCS = 150

# The reference: bpftrace on the same tracepoints, counting what the writer
# submits and timing each of its IOs from submission to issue.  A data-less
# preflush ('F' with no sectors) is timed to the flush request that answers
# it, which the kernel issues from a kworker.
REFERENCE = r"""
tracepoint:block:block_io_start /args->dev == DEV && comm == "fsync-writer"/ {
    if (args->nr_sector == 0 && strncmp(args->rwbs, "F", 1) == 0) { @pf = nsecs; }
    else { @start[args->sector] = nsecs; }
    printf("start\n");
}
tracepoint:block:block_rq_issue /args->dev == DEV/ {
    if (args->nr_sector == 0 && args->rwbs == "FF" && @pf) {
        printf("queue %d\n", nsecs - @pf); @pf = 0;
    } else if (@start[args->sector]) {
        printf("queue %d\n", nsecs - @start[args->sector]); delete(@start[args->sector]);
    }
}
"""

FSYNC_WRITER = """
import ctypes, os, sys
ctypes.CDLL(None).prctl(15, b"fsync-writer")  # PR_SET_NAME: bpftrace's filter
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600)
for i in range(int(sys.argv[2])):
    os.pwrite(fd, b"y" * 4096, (i % 64) * 4096)
    os.fsync(fd)
os.close(fd)
"""


@pytest.fixture
def ext4_on_loop(tmp_path, loop_device):
    """An ext4 file system of our own mounted on the loop device: fully
    initialised (no lazy-init writes) and without a journal, so that every
    fsync flushes from the calling task (with a journal, the commit's flush
    comes from jbd2)."""
    sh("mkfs.ext4", "-q", "-O", "^has_journal", "-E", "lazy_itable_init=0", loop_device)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    sh("mount", loop_device, str(mnt))
    yield mnt
    sh("umount", str(mnt), check=False)


def _bucket_le(ns):
    return 2.0 ** (int(ns).bit_length()) / 1e9


def test_fsync_flush_is_charged_to_the_fsync_caller(agent, loop_device, ext4_on_loop):
    name = os.path.basename(loop_device)
    st = os.stat(loop_device)
    dev = (os.major(st.st_rdev) << 20) | os.minor(st.st_rdev)
    reference = subprocess.Popen(["bpftrace", "-e", REFERENCE.replace("DEV", str(dev))],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert "Attaching" in reference.stdout.readline()
        before = agent.scrape()
        run_named("fsync-writer", FSYNC_WRITER, ext4_on_loop / "data", FSYNCS)
        time.sleep(0.5)
        after = agent.scrape()
    finally:
        reference.send_signal(signal.SIGINT)
        out, _ = reference.communicate(timeout=30)
    starts = out.count("start\n")
    waits = sorted(int(line.split()[1]) for line in out.splitlines() if line.startswith("queue "))

    def grown(stage, **labels):
        return value(after, FAMILY + "_count", service="fsync-writer", device=name, stage=stage,
                     **labels) - value(before, FAMILY + "_count", service="fsync-writer",
                                       device=name, stage=stage, **labels)

    # One flush per fsync, issued by a kworker, charged to the writer: in the
    # queue stage (waiting behind its preflush) and on the device.
    assert grown("device", op="flush") == FSYNCS, agent.log()
    assert grown("queue", op="flush") == FSYNCS
    # Every IO the writer submitted (its writes and its preflushes), as the
    # reference counts them.
    assert abs(grown("queue") - starts) <= max(2, starts // 100), (grown("queue"), starts)
    assert len(waits) >= starts - 2

    # The queue stage's median sits in the reference's bucket: some wait
    # between the reference's 45th and 55th percentiles falls in it.
    queue = histogram_delta(before, after, FAMILY, service="fsync-writer", device=name,
                            stage="queue")
    p50 = quantile(queue, FAMILY, 0.5)
    near_median = waits[len(waits) * 45 // 100: len(waits) * 55 // 100 + 1]
    assert any(_bucket_le(w) == p50 for w in near_median), (
        p50, [_bucket_le(w) for w in near_median])
