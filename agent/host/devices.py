"""Names block devices from the kernel's internal dev_t (major << 20 | minor)."""

import functools

MINOR_BITS = 20


def split_dev(dev):
    return dev >> MINOR_BITS, dev & ((1 << MINOR_BITS) - 1)


@functools.lru_cache(maxsize=1024)
def device_name(dev, sysfs="/sys/dev/block"):
    """'vda' for 254:0; 'MAJ:MIN' when sysfs does not know the device (any more)."""
    major, minor = split_dev(dev)
    try:
        with open(f"{sysfs}/{major}:{minor}/uevent") as uevent:
            for line in uevent:
                if line.startswith("DEVNAME="):
                    return line.strip().split("=", 1)[1]
    except OSError:
        pass
    return f"{major}:{minor}"
