"""Block-IO latency, attributed to the process that submitted the IO."""

import os

import pytest

from tests.e2e.agent_process import value
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
