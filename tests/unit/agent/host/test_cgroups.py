import os

from taskscope.agent.host.cgroups import CgroupPaths, find_cgroup2_mount


def test_find_cgroup2_mount_on_a_hybrid_host(tmp_path):
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "30 24 0:26 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755\n"
        "31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw\n"
        "32 30 0:28 / /sys/fs/cgroup/systemd rw shared:11 - cgroup cgroup rw,name=systemd\n")
    assert find_cgroup2_mount(str(mountinfo)) == "/sys/fs/cgroup/unified"


def test_ids_are_directory_inodes_and_outlive_the_directory(tmp_path):
    unit = tmp_path / "system.slice" / "orders.service"
    unit.mkdir(parents=True)
    ino = os.stat(unit).st_ino
    paths = CgroupPaths(str(tmp_path), rescan_interval=0)
    assert paths.path(ino) == "/system.slice/orders.service"
    unit.rmdir()
    assert paths.path(ino) == "/system.slice/orders.service"
    assert paths.path(1) == "/"
    assert paths.path(123456789) is None


def test_cache_is_bounded(tmp_path):
    for i in range(5):
        (tmp_path / f"c{i}").mkdir()
    paths = CgroupPaths(str(tmp_path), max_entries=3, rescan_interval=0)
    paths.path(os.stat(tmp_path / "c0").st_ino)
    assert len(paths._paths) == 3
