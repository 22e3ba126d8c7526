#!/usr/bin/env python3
"""Write a `docker save`-format archive of a tianon/true look-alike.

The image holds one file, /true: a 129-byte static x86-64 ELF that exits 0,
and `CMD ["/true"]`. Both berth (`berth load`) and Docker (`docker load`)
read the archive, so benchmarks start both from the same base image without
any registry. Usage: true_image.py OUT.tar [REPO:TAG]
"""
import hashlib, io, json, struct, sys, tarfile

def true_elf():
    f = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    f += struct.pack("<HHIQQQIHHHHHH", 2, 0x3E, 1, 0x400078, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    f += struct.pack("<IIQQQQQQ", 1, 5, 0, 0x400000, 0x400000, 129, 129, 0x1000)
    f += bytes([0xB8, 0x3C, 0, 0, 0, 0x31, 0xFF, 0x0F, 0x05])
    assert len(f) == 129
    return f

def add(tar, name, data, mode=0o644):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))

out = sys.argv[1]
tag = sys.argv[2] if len(sys.argv) > 2 else "tianon/true:latest"
layer_buf = io.BytesIO()
with tarfile.open(fileobj=layer_buf, mode="w", format=tarfile.GNU_FORMAT) as layer:
    add(layer, "true", true_elf(), 0o755)
layer_bytes = layer_buf.getvalue()
diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
config = json.dumps({
    "architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
    "config": {"Cmd": ["/true"]},
    "rootfs": {"type": "layers", "diff_ids": [diff_id]},
}).encode()
config_hex = hashlib.sha256(config).hexdigest()
layer_hex = diff_id.split(":")[1]
with tarfile.open(out, mode="w", format=tarfile.GNU_FORMAT) as tar:
    add(tar, f"{config_hex}.json", config)
    add(tar, f"{layer_hex}/layer.tar", layer_bytes)
    add(tar, "manifest.json", json.dumps([{
        "Config": f"{config_hex}.json", "RepoTags": [tag], "Layers": [f"{layer_hex}/layer.tar"],
    }]).encode())
