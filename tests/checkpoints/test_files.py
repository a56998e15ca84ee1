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
