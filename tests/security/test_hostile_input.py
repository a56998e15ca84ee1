"""Hostile input catalogue: one case per attack, each answered with a clear 4xx (or a refused payload with its
reason), and nothing written outside the storage root.

More of the same lives next to the features (SSRF after DNS and redirects in tests/checkpoints/test_download.py,
tar and pickle files in tests/checkpoints/test_files.py, payloads in tests/inferences/test_payload.py); this file is
the catalogue docs/reliability.md's table counts.
"""

import json
import struct
from pathlib import Path

import pytest

from checkpoints import files, services
from checkpoints.models import Checkpoint
from esd.errors import Invalid
from inferences.engine.errors import EngineError
from inferences.engine.request.limits import Limits
from inferences.engine.request.payload import parse_request
from tests.esd.test_storage import http
from tests.helpers import bomb_png, safetensors_bytes, tar_bytes

SD = "Stable-diffusion"


@pytest.fixture
def root(settings, tmp_path, live_server, admin_user):
    """A data folder whose only child may be the store; anything else appearing there is a file outside it."""
    settings.ESD_STORAGE = "local"
    settings.ESD_STORAGE_ROOT = tmp_path / "storage"
    settings.ESD_PUBLIC_URL = live_server.url
    yield tmp_path
    outside = [path for path in tmp_path.rglob("*") if path.is_file() and tmp_path / "storage" not in path.parents]
    assert outside == []


@pytest.fixture
def token(admin_user, token_for):
    return token_for(admin_user)


def url_import(esd, token, url):
    body = {"checkpoint_type": SD, "urls": [url], "params": {"creator": "admin"}}
    return esd.call("POST", "checkpoints", body, token=token)


def upload_named(esd, token, name):
    body = {"checkpoint_type": SD, "filenames": [{"filename": name, "parts_number": 1}], "params": {"creator": "admin"}}
    return esd.call("POST", "checkpoints", body, token=token)


SSRF = [
    "http://127.0.0.1/model.safetensors",
    "http://localhost/model.safetensors",
    "http://localhost./model.safetensors",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/model.safetensors",
    "http://[::ffff:127.0.0.1]/model.safetensors",
    "http://2130706433/model.safetensors",
    "http://0177.0.0.1/model.safetensors",
    "http://0x7f.0.0.1/model.safetensors",
    "http://10.0.0.5/model.safetensors",
    "http://192.168.1.1/model.safetensors",
    "http://[fd00::1]/model.safetensors",
    "file:///etc/passwd",
    "ftp://example.com/model.safetensors",
    "http://user:pw@example.com/model.safetensors",
]


@pytest.mark.parametrize("url", SSRF)
def test_ssrf_urls_are_refused_at_once(esd, token, root, url):
    answer = url_import(esd, token, url)
    assert answer.status == 400, answer.body
    assert not Checkpoint.objects.exists()


TRAVERSAL = [
    "../../etc/passwd.safetensors",
    "/etc/model.safetensors",
    "a/b.safetensors",
    "..\\..\\win.safetensors",
    ".hidden.safetensors",
    "model\r\nX-Injected: 1.safetensors",
    "model\x00.safetensors",
    "m" * 300 + ".safetensors",
    "modèle.safetensors",
    "model.ckpt",
    "model.pt",
    "model.bin",
]


@pytest.mark.parametrize("name", TRAVERSAL)
def test_hostile_file_names_are_refused(esd, token, root, name):
    answer = upload_named(esd, token, name)
    assert answer.status == 400, answer.body
    assert not Checkpoint.objects.exists()


def test_rename_to_a_path_is_refused(esd, token, root, admin_user):
    checkpoint = services.checkpoint_create_from_upload(
        actor=admin_user, type=SD, name="ok.safetensors", chunks=iter([safetensors_bytes()])
    )
    answer = esd.call("PUT", f"checkpoints/{checkpoint.pk}", {"name": "../../escape"}, token=token)
    assert answer.status == 400 and checkpoint.names == ["ok.safetensors"]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("pickle.safetensors", b"\x80\x04\x95" + b"\x00" * 64),
        ("zip.safetensors", b"PK\x03\x04" + b"\x00" * 64),
        ("short.safetensors", b"\x01\x02"),
        ("liar.safetensors", struct.pack("<Q", 10**9) + b"{}"),
        ("bomb.tar", tar_bytes({f"m{i}.safetensors": b"x" for i in range(70)})),
        ("link.tar", tar_bytes({"a.safetensors": safetensors_bytes()}, links={"b.safetensors": "/etc/passwd"})),
        ("escape.tar", tar_bytes({"../../escape.safetensors": safetensors_bytes()})),
        ("pickled.tar", tar_bytes({"model.ckpt": b"\x80\x04\x95" + b"\x00" * 64})),
    ],
)
def test_hostile_model_files_are_refused_and_leave_nothing(root, admin_user, name, content):
    with pytest.raises(Invalid) as refused:  # 400 on the wire
        services.checkpoint_create_from_upload(actor=admin_user, type=SD, name=name, chunks=iter([content]))
    assert refused.value.message
    assert not Checkpoint.objects.exists()
    assert not any(path.is_file() for path in (root / "storage").rglob("*")) if (root / "storage").exists() else True


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{" + b'"a":' * 0 + b'"x": "' + b"y" * (2 * 1024 * 1024) + b'"}', 413),  # over ESD_MAX_REQUEST_BYTES
        (b"[" * 50_000 + b"]" * 50_000, 400),  # deeply nested
        (b'{"role_name": "a\\r\\nSet-Cookie: x=1", "permissions": ["role:list"]}', 400),  # header injection
        (b'{"role_name": "\\u202eevil", "permissions": ["role:list"]}', 400),  # bidi override
        (b'{"role_name": "' + b"r" * 1000 + b'", "permissions": ["role:list"]}', 400),
        (b'{"role_name": "ok", "permissions": ["role:list"], "__proto__": {}}', 400),
        (b"\xff\xfe\x00garbage", 400),
    ],
)
def test_hostile_bodies(esd, token, root, body, status):
    answer = esd.call("POST", "roles", raw=body, token=token)
    assert answer.status == status


@pytest.mark.parametrize(
    "username",
    ["bob\r\nX-Admin: 1", "ümlaut", "a" * 65, "../admin", "<script>", " leading"],
)
def test_hostile_user_names(esd, token, root, username):
    body = {"username": username, "password": "a-long-password-1", "roles": [], "creator": "admin"}
    assert esd.call("POST", "users", body, token=token).status == 400


def test_tampered_and_replayed_presigned_urls(esd, token, root):
    started = upload_named(esd, token, "real.safetensors").body["data"]
    [url] = started["s3PresignUrl"]["real.safetensors"]
    tampered = url[:-4] + ("AAAA" if not url.endswith("AAAA") else "BBBB")
    assert http("PUT", tampered, b"x")[0] == 403
    content = safetensors_bytes()
    status, headers, _ = http("PUT", url, content)
    assert status == 200
    done = esd.call(
        "PUT", f"checkpoints/{started['checkpoint']['id']}",
        {"status": "Active", "multi_parts_tags": {"real.safetensors": [{"ETag": headers["ETag"], "PartNumber": 1}]}},
        token=token,
    )  # fmt: skip
    assert done.status == 200
    assert http("PUT", url, b"replayed")[0] == 400  # the upload is finished: its part URL is dead


@pytest.mark.parametrize(
    ("task", "payload", "message"),
    [
        ("img2img", {"init_images": [bomb_png(60_000, 60_000)]}, "pixels"),
        ("rembg", {"input_image": bomb_png(30_000, 30_000), "model": "u2netp"}, "pixels"),
        ("txt2img", {"prompt": "x" * 1_000_000}, "characters long"),
        ("txt2img", {"width": -512}, "width must be"),
        ("txt2img", {"height": 10**9}, "height must be"),
        ("txt2img", {"steps": 10**9}, "steps must be"),
        ("txt2img", {"batch_size": 10**6}, "batch_size must be"),
        ("txt2img", {"seed": 2**70}, "seed must be"),
        ("rembg", {"input_image": "AAAA", "model": "../../../../etc/passwd"}, "model must be one of"),
    ],
)
def test_hostile_payloads_are_refused_with_a_reason(task, payload, message):
    with pytest.raises(EngineError, match=message):
        parse_request(task, json.dumps(payload).encode(), Limits())


def test_file_names_cannot_reach_outside_a_folder():
    for name in TRAVERSAL[:5]:
        with pytest.raises(files.FileRejected):
            files.check_filename(name)
    assert Path(files.check_filename("fine.safetensors")).name == "fine.safetensors"


@pytest.mark.parametrize(
    ("method", "path", "body", "query"),
    [
        ("POST", "roles", {"role_name": "a\x00b", "permissions": ["role:list"]}, None),
        (
            "POST",
            "users",
            {"username": "nul\x00", "password": "a-long-password-1", "roles": [], "creator": "admin"},
            None,
        ),
        ("GET", "roles", None, {"role": "x\x00"}),
        ("GET", "inferences", None, {"status": "\x00"}),
    ],
)
def test_nul_characters_are_refused_not_stored(esd, token, root, method, path, body, query):
    """PostgreSQL cannot store NUL; found by the fuzzer as a 500 on CI before this was refused at the door."""
    answer = esd.call(method, path, body, token=token, query=query)
    assert answer.status == 400 and "NUL" in answer.body["message"]


def test_a_payload_with_nul_is_refused():
    with pytest.raises(EngineError, match="NUL"):
        parse_request("txt2img", b'{"prompt": "a\\u0000b"}', Limits())
