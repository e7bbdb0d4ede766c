#!/usr/bin/env python3
"""Writes the fuzz targets' seed inputs into tests/fuzz/corpus/<target>/ (standard library
only, so the bytes do not depend on numpy being installed). Rerun to regenerate:
    python3 tests/fuzz/make_corpus.py
"""
import gzip
import io
import os
import struct
import zipfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def idx(type_code, shape, payload):
    return bytes([0, 0, type_code, len(shape)]) + b"".join(struct.pack(">I", n) for n in shape) + payload


def npy(descr, shape, payload, version=1):
    shape_txt = "(" + ", ".join(str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape_txt)
    fixed = 10 if version == 1 else 12
    header += " " * ((64 - (fixed + len(header) + 1) % 64) % 64) + "\n"
    size = struct.pack("<H", len(header)) if version == 1 else struct.pack("<I", len(header))
    return b"\x93NUMPY" + bytes([version, 0]) + size + header.encode("latin1") + payload


def npz(arrays, compression):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as z:
        for name, data in arrays.items():
            # numpy.savez writes every member with force_zip64 (zip64 extra in the local header).
            with z.open(name + ".npy", "w", force_zip64=True) as f:
                f.write(data)
    return buf.getvalue()


def safetensors(tensors, metadata=None):
    """tensors: [(name, dtype, shape, payload)] in file order."""
    import json
    header, offset = {}, 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, payload in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [offset, offset + len(payload)]}
        offset += len(payload)
    text = json.dumps(header, separators=(",", ":"))
    text += " " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text.encode() + b"".join(t[3] for t in tensors)


def main():
    images = idx(0x08, (2, 4, 4), bytes(range(32)))
    put("idx", "images.idx", images)
    put("idx", "labels.idx.gz", gzip.compress(idx(0x08, (3,), bytes([9, 0, 4])), mtime=0))
    put("idx", "f32.idx", idx(0x0D, (2, 2), struct.pack(">4f", 1.5, -2.0, 0.0, 3.25)))
    put("idx", "i16.idx", idx(0x0B, (3,), struct.pack(">3h", -2, 256, 7)))

    x = npy("<f4", (2, 3), struct.pack("<6f", 0.5, -1.25, 3.0, 4.0, 5.5, -6.0))
    y = npy("<i8", (2,), struct.pack("<2q", 3, 7))
    put("npy", "f4.npy", x)
    put("npy", "be_i4_v2.npy", npy(">i4", (2, 2), struct.pack(">4i", 1, -2, 300000, -4), 2))
    put("npy", "bool_v3.npy", npy("|b1", (3,), bytes([1, 0, 1]), 3))
    put("npy", "scalar_f8.npy", npy("<f8", (), struct.pack("<d", 2.5)))

    put("npz", "stored.npz", npz({"x": x, "y": y}, zipfile.ZIP_STORED))
    put("npz", "deflate.npz", npz({"x": x, "y": y}, zipfile.ZIP_DEFLATED))

    records = b""
    for i in range(2):
        records += bytes([i]) + bytes((p + i) % 251 for p in range(3072))
    put("cifar", "two_records.bin", records)

    put("csv", "header_names.csv", b"\x01sepal,petal,label\n1.5,2,setosa\n-3e2,4.25,\"virginica\"\n")
    put("csv", "plain_ints.csv", b"\x00" + b"1,2,0\r\n3,4,1\r\n5,6,2\r\n")
    put("csv", "semicolon.csv", b"\x13" + b"3;0.5;1\n1;2;\"4\"\n")

    put("bpe", "hello.txt", b"Hello world")
    put("bpe", "mixed.txt", "I'm sure it's naïve café 汉字 🙂\n\n  x".encode("utf-8"))
    put("bpe", "ids.json", b"[15496, 995, 50256]")
    put("bpe", "special.txt", b"a<|endoftext|>b")

    f32 = lambda *v: struct.pack("<%df" % len(v), *v)
    spec = '{"type":"mlp","input_dim":2,"hidden":[3],"classes":2}'
    put("safetensors", "mlp_model.safetensors", safetensors(
        [("layers.0.weight", "F32", (3, 2), f32(*range(6))), ("layers.0.bias", "F32", (3,), f32(1, 2, 3)),
         ("layers.2.weight", "F32", (2, 3), f32(*range(6))), ("layers.2.bias", "F32", (2,), f32(0, 1))],
        {"format": "pt", "lathe.spec": spec}))
    put("safetensors", "plain_mixed.safetensors", safetensors(
        [("a", "BF16", (2, 2), struct.pack("<4H", 0x3F80, 0x4000, 0xBF80, 0)),
         ("b", "I64", (3,), struct.pack("<3q", 1, -2, 3)), ("empty", "F32", (0, 4), b"")]))


if __name__ == "__main__":
    main()
