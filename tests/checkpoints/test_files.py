"""What a checkpoint file may be: checked on the stored object, for both stores."""

import json
import struct

import pytest

from checkpoints import files
from tests.helpers import safetensors_bytes, tar_bytes

FOLDER = "Stable-diffusion/checkpoint/custom/abc"
LIMIT = 10 * 1024 * 1024


def put(store, name, data):
    store.write_stream(f"{FOLDER}/{name}", iter([data]))


def test_a_valid_safetensors_file_is_accepted_with_its_sha256(store):
    data = safetensors_bytes()
    put(store, "m.safetensors", data)
    [stored] = files.ingest(store, folder=FOLDER, name="m.safetensors", limit=LIMIT)
    import hashlib

    assert (stored.name, stored.size, stored.sha256) == ("m.safetensors", len(data), hashlib.sha256(data).hexdigest())


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (safetensors_bytes()[:-3], "truncated or padded"),
        (safetensors_bytes() + b"xx", "truncated or padded"),
        (safetensors_bytes()[:20], "not a safetensors file, or it is truncated"),
        (b"\x80\x04\x95" + b"\x00" * 100, "pickled"),
        (b"PK\x03\x04" + b"\x00" * 100, "pickled"),
        (struct.pack("<Q", 5) + b"nojso", "not valid JSON"),
        (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
        (
            (lambda h: struct.pack("<Q", len(h)) + h)(
                json.dumps({"w": {"dtype": "X9", "shape": [1], "data_offsets": [0, 0]}}).encode()
            ),
            "invalid safetensors header entry",
        ),
        (b"short", "too short"),
    ],
)
def test_damaged_or_disguised_safetensors_are_refused(store, data, fragment):
    put(store, "m.safetensors", data)
    with pytest.raises(files.FileRejected, match=fragment):
        files.ingest(store, folder=FOLDER, name="m.safetensors", limit=LIMIT)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("model.ckpt", "pickle format"),
        ("model.pt", "pickle format"),
        ("model.bin", "pickle format"),
        ("model.exe", "only .safetensors and .yaml"),
        ("../model.safetensors", "not accepted"),
        ("a/b.safetensors", "not accepted"),
        (".hidden.safetensors", "not accepted"),
        ("modèle.safetensors", "not accepted"),
        ("evil\r\nSet-Cookie.safetensors", "not accepted"),
        ("x" * 250 + ".safetensors", "not accepted"),
    ],
)
def test_file_names(name, fragment):
    with pytest.raises(files.FileRejected, match=fragment):
        files.check_filename(name)


def test_yaml_configs(store):
    put(store, "m.yaml", b"model:\n  target: ldm\n")
    assert files.ingest(store, folder=FOLDER, name="m.yaml", limit=LIMIT)[0].name == "m.yaml"
    put(store, "bad.yaml", b"- just\n- a list\n")
    with pytest.raises(files.FileRejected, match="not a YAML mapping"):
        files.ingest(store, folder=FOLDER, name="bad.yaml", limit=LIMIT)
    put(store, "evil.yaml", b"!!python/object/apply:os.system ['true']\n")
    with pytest.raises(files.FileRejected, match="not valid YAML"):
        files.ingest(store, folder=FOLDER, name="evil.yaml", limit=LIMIT)


def test_a_webui_tar_is_unpacked_into_the_folder(store):
    model = safetensors_bytes()
    archive = tar_bytes({"models/Stable-diffusion/m.safetensors": model, "models/Stable-diffusion/m.yaml": b"a: 1\n"})
    put(store, "m.safetensors", archive)  # the WebUI uploads the tar under the model's own name
    stored = files.ingest(store, folder=FOLDER, name="m.safetensors", limit=LIMIT)
    assert sorted(file.name for file in stored) == ["m.safetensors", "m.yaml"]
    assert store.read_range(f"{FOLDER}/m.safetensors", 0, len(model)) == model
    assert sorted(store.list_keys(FOLDER + "/")) == [f"{FOLDER}/m.safetensors", f"{FOLDER}/m.yaml"]


@pytest.mark.parametrize(
    ("members", "links", "fragment"),
    [
        ({"../../escape.safetensors": safetensors_bytes()}, None, "points outside"),
        ({"/etc/abs.safetensors": safetensors_bytes()}, None, "points outside"),
        ({"m.safetensors": safetensors_bytes()}, {"link.safetensors": "/etc/passwd"}, "is a link"),
        ({f"m{index}.yaml": b"a: 1\n" for index in range(70)}, None, "more than 64 files"),
        ({"m.pt": b"\x80\x04"}, None, "pickle format"),
        ({"m.safetensors": safetensors_bytes()[:-1]}, None, "truncated"),
    ],
)
def test_hostile_tars_are_refused(store, members, links, fragment):
    put(store, "m.safetensors", tar_bytes(members, links))
    with pytest.raises(files.FileRejected, match=fragment):
        files.ingest(store, folder=FOLDER, name="m.safetensors", limit=LIMIT)


def test_a_tar_bomb_is_refused(store):
    put(store, "m.safetensors", tar_bytes({"a.safetensors": b"\x00" * 4096, "b.safetensors": b"\x00" * 4096}))
    with pytest.raises(files.FileRejected, match="unpacks to more than"):
        files.ingest(store, folder=FOLDER, name="m.safetensors", limit=5000)


def header_file(header: dict, data: bytes = b"", raw_header: bytes | None = None) -> bytes:
    encoded = raw_header if raw_header is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + data


def entry(dtype: str, shape: list, begin: int, end: int) -> dict:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        # shape x dtype size must equal the span: 4 F32 values are 16 bytes, not 8
        (
            header_file({"w": entry("F32", [4], 0, 8)}, b"\x00" * 8),
            r"spans 8 bytes, but its shape \[4\] of F32 needs 16",
        ),
        (header_file({"w": entry("F16", [2, 2], 0, 4)}, b"\x00" * 4), "needs 8"),
        # overlapping, out-of-order and gapped spans
        (header_file({"a": entry("U8", [8], 0, 8), "b": entry("U8", [8], 4, 12)}, b"\x00" * 12), "overlaps"),
        (header_file({"a": entry("U8", [0], 8, 0)}, b"\x00" * 8), "out of order"),
        (header_file({"a": entry("U8", [4], 0, 4), "b": entry("U8", [4], 6, 10)}, b"\x00" * 10), "unused"),
        (header_file({"a": entry("U8", [4], 2, 6)}, b"\x00" * 6), "leaves bytes 0-2 unused"),
        # spans that do not cover the data exactly
        (header_file({"a": entry("U8", [4], 0, 4)}, b"\x00" * 5), "truncated or padded"),
        # duplicate keys (parsers disagree on which wins)
        (
            header_file(
                {},
                b"\x00" * 4,
                raw_header=b'{"w": '
                + json.dumps(entry("U8", [4], 0, 4)).encode()
                + b', "w": '
                + json.dumps(entry("U8", [4], 0, 4)).encode()
                + b"}",
            ),
            "names 'w' twice",
        ),
        # shapes and offsets must be whole numbers (true is not 1, 2.0 is not 2)
        (header_file({"w": entry("U8", [2.0], 0, 2)}, b"\x00" * 2), "shape is not a list of whole numbers"),
        (header_file({"w": entry("U8", [True], 0, 1)}, b"\x00"), "shape is not a list of whole numbers"),
        (header_file({"w": entry("U8", ["2"], 0, 2)}, b"\x00" * 2), "shape is not a list of whole numbers"),
        (header_file({"w": entry("U8", [-1], 0, 0)}), "shape is not a list of whole numbers"),
        (header_file({"w": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2.0]}}, b"\x00" * 2), "two whole numbers"),
        (header_file({"w": "tensor"}), "not an object"),
        # __metadata__ holds strings only
        (header_file({"__metadata__": {"format": 1}}), "__metadata__ must be an object of strings"),
        (header_file({"__metadata__": {"nested": {"a": "b"}}}), "__metadata__ must be an object of strings"),
        (header_file({"__metadata__": ["pt"]}), "__metadata__ must be an object of strings"),
        # a header nested far deeper than any tensor index (Python's parser would raise RecursionError)
        (header_file({}, raw_header=b'{"__metadata__": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"), "nests too deeply"),
    ],
    ids=[
        "f32-span",
        "f16-span",
        "overlap",
        "offsets-reversed",
        "gap",
        "gap-at-start",
        "padding",
        "duplicate-key",
        "float-dim",
        "bool-dim",
        "string-dim",
        "negative-dim",
        "float-offset",
        "entry-not-object",
        "metadata-int",
        "metadata-object",
        "metadata-list",
        "nested-100000",
    ],
)
def test_headers_must_describe_the_data_exactly(store, data, fragment):
    put(store, "m.safetensors", data)
    with pytest.raises(files.FileRejected, match=fragment):
        files.ingest(store, folder=FOLDER, name="m.safetensors", limit=LIMIT)


def test_headers_the_safetensors_library_writes_are_accepted(store):
    import numpy
    from safetensors.numpy import save

    data = save(
        {"a": numpy.zeros((3, 5), dtype=numpy.float16), "b": numpy.ones(7, dtype=numpy.int64),
         "empty": numpy.zeros((0, 4), dtype=numpy.float32), "flag": numpy.array([True, False])},
        metadata={"format": "pt", "note": "tiny"},
    )  # fmt: skip
    put(store, "m.safetensors", data)
    [stored] = files.ingest(store, folder=FOLDER, name="m.safetensors", limit=LIMIT)
    assert stored.size == len(data)
