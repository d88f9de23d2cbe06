"""A minimal reader of the kernel's BTF (/sys/kernel/btf/vmlinux).

The hottest probes run as raw tracepoints, which hand over kernel pointers
rather than formatted fields.  The few struct fields they need are located
here, from the running kernel's own type information, and compiled into the
probes as constants; the generic headers BCC compiles against are never
trusted for a layout.
"""

import logging
import struct

from taskscope.records.errors import TaskscopeError

log = logging.getLogger(__name__)

VMLINUX = "/sys/kernel/btf/vmlinux"
BTF_MAGIC = 0xEB9F

KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_ENUM = 1, 2, 3, 4, 5, 6
KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT = 8, 9, 10, 11
KIND_FUNC_PROTO, KIND_VAR, KIND_DATASEC, KIND_DECL_TAG, KIND_TYPE_TAG, KIND_ENUM64 = (
    13, 14, 15, 17, 18, 19)
# Bytes that follow the 12-byte common header: (fixed, per vlen item).
_TRAILER = {KIND_INT: (4, 0), KIND_ARRAY: (12, 0), KIND_STRUCT: (0, 12), KIND_UNION: (0, 12),
            KIND_ENUM: (0, 8), KIND_FUNC_PROTO: (0, 8), KIND_VAR: (4, 0),
            KIND_DATASEC: (0, 12), KIND_DECL_TAG: (4, 0), KIND_ENUM64: (0, 12)}
_QUALIFIERS = (KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG)


class BTFError(TaskscopeError):
    """The kernel's BTF is absent, malformed, or lacks what a probe needs."""


class BTF:
    """Types of one BTF blob, indexed by id; names resolved on demand."""

    def __init__(self, data):
        if len(data) < 24:
            raise BTFError("BTF blob too short")
        magic, _, _, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(
            "<HBBIIIII", data)
        if magic != BTF_MAGIC:
            raise BTFError("not a little-endian BTF blob")
        self._data = data
        self._strings = hdr_len + str_off
        self._strings_end = self._strings + str_len
        self._types = [None]  # id 0 is void
        self._by_name = {}
        pos, end = hdr_len + type_off, hdr_len + type_off + type_len
        if end > len(data) or self._strings_end > len(data):
            raise BTFError("BTF sections overrun the blob")
        while pos < end:
            if pos + 12 > end:
                raise BTFError("BTF type section ends inside a type")
            name_off, info, size_or_type = struct.unpack_from("<III", data, pos)
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            fixed, per_item = _TRAILER.get(kind, (0, 0))
            self._types.append((kind, name_off, info, size_or_type, pos + 12, vlen))
            if kind in (KIND_STRUCT, KIND_UNION, KIND_TYPEDEF) and name_off:
                self._by_name.setdefault((kind, name_off), len(self._types) - 1)
            pos += 12 + fixed + per_item * vlen
        if pos != end:
            raise BTFError("BTF type section ends inside a type")

    @classmethod
    def from_file(cls, path=VMLINUX):
        try:
            with open(path, "rb") as f:
                return cls(f.read())
        except OSError as exc:
            raise BTFError(f"cannot read {path}: {exc.strerror}") from exc

    def _name(self, off):
        start = self._strings + off
        try:
            end = self._data.index(b"\0", start, self._strings_end)
            return self._data[start:end].decode()
        except (ValueError, UnicodeDecodeError) as exc:
            raise BTFError(f"BTF name at {off} is malformed") from exc

    def _find(self, kind, name):
        for (k, off), type_id in self._by_name.items():
            if k == kind and self._name(off) == name:
                return type_id
        return None

    def _strip(self, type_id):
        while self._types[type_id] and self._types[type_id][0] in _QUALIFIERS:
            type_id = self._types[type_id][3]
        return type_id

    def _members(self, type_id):
        kind, _, info, _, pos, vlen = self._types[type_id]
        bitfields = info >> 31
        for i in range(vlen):
            name_off, member_type, offset = struct.unpack_from("<III", self._data, pos + 12 * i)
            bits = offset & 0xFFFFFF if bitfields else offset
            size = offset >> 24 if bitfields else 0
            yield (self._name(name_off) if name_off else ""), member_type, bits, size

    def _locate(self, type_id, name):
        """(bit offset, bitfield size, member type) of `name`, searching anonymous members."""
        for member, member_type, bits, size in self._members(type_id):
            if member == name:
                return bits, size, member_type
            inner = self._strip(member_type)
            if not member and self._types[inner][0] in (KIND_STRUCT, KIND_UNION):
                found = self._locate(inner, name)
                if found:
                    return found[0] + bits, found[1], found[2]
        return None

    def member(self, struct_name, path):
        """Byte offset and byte size of `path` ("a.b.c") inside struct `struct_name`."""
        try:
            return self._member(struct_name, path)
        except (IndexError, TypeError, struct.error) as exc:
            raise BTFError(f"BTF: malformed type graph under struct {struct_name}") from exc

    def _member(self, struct_name, path):
        type_id = self._find(KIND_STRUCT, struct_name)
        if type_id is None:
            raise BTFError(f"BTF has no struct {struct_name}")
        offset = 0
        for name in path.split("."):
            found = self._locate(self._strip(type_id), name)
            if found is None:
                raise BTFError(f"BTF: struct {struct_name} has no member {path}")
            bits, bitfield, type_id = found
            if bitfield or bits % 8:
                raise BTFError(f"BTF: {struct_name}.{path} is a bitfield")
            offset += bits // 8
        return offset, self._size(type_id)

    def _size(self, type_id):
        type_id = self._strip(type_id)
        kind, _, _, size, _, _ = self._types[type_id]
        return 8 if kind == KIND_PTR else size

    def raw_tracepoint_params(self, event):
        """Parameter type names of a tracepoint's raw prototype (after the void *ctx)."""
        try:
            return self._raw_tracepoint_params(event)
        except (IndexError, TypeError, struct.error) as exc:
            raise BTFError(f"BTF: malformed prototype of tracepoint {event}") from exc

    def _raw_tracepoint_params(self, event):
        typedef = self._find(KIND_TYPEDEF, f"btf_trace_{event}")
        if typedef is None:
            raise BTFError(f"BTF has no prototype for tracepoint {event}")
        pointer = self._strip(typedef)
        proto = self._strip(self._types[pointer][3])
        kind, _, _, _, pos, vlen = self._types[proto]
        if kind != KIND_FUNC_PROTO:
            raise BTFError(f"BTF prototype of {event} is not a function")
        params = []
        for i in range(vlen):
            _, param_type = struct.unpack_from("<II", self._data, pos + 8 * i)
            params.append(self._type_name(param_type))
        return params[1:]

    def _type_name(self, type_id):
        type_id = self._strip(type_id)
        if not type_id:
            return "void"
        kind, name_off, _, target, _, _ = self._types[type_id]
        if kind == KIND_PTR:
            return self._type_name(target) + " *"
        prefix = {KIND_STRUCT: "struct ", KIND_UNION: "union "}.get(kind, "")
        return prefix + (self._name(name_off) if name_off else "?")


def load_vmlinux(path=VMLINUX):
    """The running kernel's BTF, or None (probes then use classic tracepoints)."""
    try:
        return BTF.from_file(path)
    except BTFError as exc:
        log.info("no usable kernel BTF (%s): classic tracepoints only", exc)
        return None
