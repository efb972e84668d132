"""/view and the uploads: files come from and go to the served folders only (no '..', absolute paths,
symlinks, NUL bytes, URL-encoding tricks or Windows separators get out), uploads must be images."""
from __future__ import annotations

import io
import json

import aiohttp
import numpy as np
import pytest
from PIL import Image, PngImagePlugin
from yarl import URL

from serverkit import Client, run


def png_bytes(color=(200, 30, 30, 255), size=(6, 4), text: dict[str, str] | None = None) -> bytes:
    info = PngImagePlugin.PngInfo()
    for k, v in (text or {}).items():
        info.add_text(k, v)
    out = io.BytesIO()
    Image.new("RGBA", size, color).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


@pytest.fixture
def files(server, tmp_path):
    """output/a.png, output/sub/b.png, a secret outside, and symlinks in output pointing to it."""
    out = server.engine.output_dir
    (out / "sub").mkdir()
    (out / "a.png").write_bytes(png_bytes())
    (out / "sub" / "b.png").write_bytes(png_bytes((0, 0, 255, 128)))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(png_bytes((1, 2, 3, 255)))
    (out / "link.png").symlink_to(outside / "secret.png")
    (out / "linkdir").symlink_to(outside, target_is_directory=True)
    return server


def raw_get(server, query: str) -> tuple[int, bytes]:
    """GET /view?<query> with the query sent exactly as written (no re-encoding)."""
    async def scenario():
        async with aiohttp.ClientSession() as s:
            async with s.get(URL(f"{server.url}/view?{query}", encoded=True)) as r:
                return r.status, await r.read()

    return run(scenario())


def test_view_serves_a_file_of_the_output_folder(files):
    status, body = raw_get(files, "filename=a.png&type=output")
    assert status == 200 and body == (files.engine.output_dir / "a.png").read_bytes()
    status, body = raw_get(files, "filename=b.png&subfolder=sub")
    assert status == 200 and body == (files.engine.output_dir / "sub" / "b.png").read_bytes()


@pytest.mark.parametrize("query, status", [
    ("filename=../outside/secret.png", 400),
    ("filename=..%2Foutside%2Fsecret.png", 400),
    ("filename=%2e%2e%2foutside%2fsecret.png", 400),
    ("filename=%252e%252e%252foutside%252fsecret.png", 404),  # double-encoded: a strange name, not a path
    ("filename=secret.png&subfolder=../outside", 403),
    ("filename=secret.png&subfolder=..%5Coutside", 403),
    ("filename=..%5Coutside%5Csecret.png", 400),
    ("filename=secret.png&subfolder=%2Fetc", 403),
    ("filename=%2Fetc%2Fpasswd", 400),
    ("filename=C%3A%5CWindows%5Cwin.ini", 400),
    ("filename=a.png%00.txt", 400),
    ("filename=secret.png&subfolder=sub%00", 403),
    ("filename=link.png", 403),
    ("filename=secret.png&subfolder=linkdir", 403),
    ("filename=a.png&type=secrets", 400),
    ("filename=nothere.png", 404),
    ("type=output", 404),
])
def test_view_never_leaves_the_served_folders(files, query, status):
    got, body = raw_get(files, query)
    assert got == status, body
    assert b"\x89PNG" not in body


def test_view_reads_comfyuis_annotated_names_and_the_input_folder(files):
    (files.engine.input_dir / "in.png").write_bytes(png_bytes())
    assert raw_get(files, "filename=in.png%20%5Binput%5D")[0] == 200
    assert raw_get(files, "filename=in.png&type=input")[0] == 200
    assert raw_get(files, "filename=in.png")[0] == 404  # not in the output folder


def test_view_previews_and_channels(files):
    status, webp = raw_get(files, "filename=b.png&subfolder=sub&preview=webp;90")
    assert status == 200 and Image.open(io.BytesIO(webp)).format == "WEBP"
    status, jpeg = raw_get(files, "filename=b.png&subfolder=sub&preview=jpeg;80")
    assert status == 200 and Image.open(io.BytesIO(jpeg)).format == "JPEG"
    status, rgb = raw_get(files, "filename=b.png&subfolder=sub&channel=rgb")
    assert Image.open(io.BytesIO(rgb)).mode == "RGB"
    status, alpha = raw_get(files, "filename=b.png&subfolder=sub&channel=a")
    assert np.asarray(Image.open(io.BytesIO(alpha)))[..., 3].tolist() == [[128] * 6] * 4


# -- uploads --------------------------------------------------------------------------------------
def upload(server, data: bytes, filename: str, path: str = "/upload/image", **fields: str):
    """POST a multipart form as a browser writes it (the file name sent as it is, not %-encoded)."""
    boundary = "----nodegraph-test-boundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
             f"Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n"]
    parts += [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
              for k, v in fields.items()]
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()

    async def scenario():
        async with Client(server.url) as c:
            return await c.post(path, data=body,
                                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})

    return run(scenario())


def test_an_uploaded_image_lands_in_the_input_folder(server):
    status, reply = upload(server, png_bytes(), "photo.png")
    assert (status, reply) == (200, {"name": "photo.png", "subfolder": "", "type": "input"})
    assert (server.engine.input_dir / "photo.png").read_bytes() == png_bytes()


def test_a_taken_name_gets_a_number_unless_overwrite_and_the_same_image_is_reused(server):
    first, second = png_bytes(), png_bytes((0, 255, 0, 255))
    assert upload(server, first, "x.png")[1]["name"] == "x.png"
    assert upload(server, first, "x.png")[1]["name"] == "x.png"  # identical: reused
    assert upload(server, second, "x.png")[1]["name"] == "x (1).png"
    assert upload(server, second, "x.png", overwrite="true")[1]["name"] == "x.png"
    assert (server.engine.input_dir / "x.png").read_bytes() == second
    assert sorted(p.name for p in server.engine.input_dir.iterdir()) == ["x (1).png", "x.png"]


def test_uploads_into_a_subfolder_and_the_other_folders(server):
    status, reply = upload(server, png_bytes(), "y.png", subfolder="masks/today", type="temp")
    assert status == 200 and reply == {"name": "y.png", "subfolder": "masks/today", "type": "temp"}
    assert (server.engine.folder("temp") / "masks" / "today" / "y.png").is_file()


@pytest.mark.parametrize("data, filename, fields", [
    (b"MZ\x90\x00 not an image", "tool.png", {}),
    (png_bytes(), "tool.exe", {}),
    (png_bytes(), "../escape.png", {}),
    (png_bytes(), "..\\escape.png", {}),
    (png_bytes(), "/tmp/escape.png", {}),
    (png_bytes(), ".hidden.png", {}),
    (png_bytes(), "ok.png", {"subfolder": "../.."}),
    (png_bytes(), "ok.png", {"subfolder": "/etc"}),
    (png_bytes(), "ok.png", {"subfolder": "C:\\Windows"}),
    (png_bytes(), "ok.png", {"type": "models"}),
])
def test_uploads_that_are_not_images_or_leave_their_folder_are_refused(server, tmp_path, data, filename, fields):
    status, reply = upload(server, data, filename, **fields)
    assert status == 400, reply
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".png", ".exe")]
    assert written == []


def test_an_upload_into_a_symlinked_folder_pointing_outside_is_refused(server, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (server.engine.input_dir / "out").symlink_to(outside, target_is_directory=True)
    status, _ = upload(server, png_bytes(), "z.png", subfolder="out")
    assert status == 400 and list(outside.iterdir()) == []


def test_an_upload_over_the_size_limit_is_refused(make_server):
    srv = make_server(max_upload_mb=0.01)
    big = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(big, "PNG")
    status, _ = upload(srv, big.getvalue(), "big.png")
    assert status == 413
    assert list(srv.engine.input_dir.iterdir()) == []


def test_a_mask_upload_puts_the_masks_alpha_on_the_original(files):
    original = png_bytes((10, 20, 30, 255), text={"prompt": "{}"})
    (files.engine.input_dir / "photo.png").write_bytes(original)
    mask = png_bytes((0, 0, 0, 40))
    ref = json.dumps({"filename": "photo.png", "subfolder": "", "type": "input"})
    status, reply = upload(files, mask, "photo-mask.png", "/upload/mask", original_ref=ref)
    assert (status, reply) == (200, {"name": "photo-mask.png", "subfolder": "", "type": "input"})
    result = Image.open(files.engine.input_dir / "photo-mask.png")
    assert np.asarray(result)[0, 0].tolist() == [10, 20, 30, 40]
    assert result.text == {"prompt": "{}"}


def test_a_mask_upload_cannot_name_an_original_outside_the_folders(files):
    ref = json.dumps({"filename": "secret.png", "subfolder": "../outside", "type": "output"})
    status, _ = upload(files, png_bytes(), "m.png", "/upload/mask", original_ref=ref)
    assert status == 403
    ref = json.dumps({"filename": "link.png", "type": "output"})
    assert upload(files, png_bytes(), "m.png", "/upload/mask", original_ref=ref)[0] == 403
    assert not (files.engine.input_dir / "m.png").exists()
