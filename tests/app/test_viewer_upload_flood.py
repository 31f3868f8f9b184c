"""A hostile websocket client cannot make the viewer hold more than the upload cap: it announces
100 bytes, then floods 1 MiB parts (issue 17). Measured with a raw websocket client speaking
viser's own message types, against a real server bound to 127.0.0.1."""

from __future__ import annotations

import asyncio
import resource
import time
import uuid
from pathlib import Path

import pytest
from viewer_util import free_port, make_scene_run


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.fixture(scope="module")
def viewer(tmp_path_factory):
    from splatlab.app.viewer.server import Viewer, config_from

    run = make_scene_run(tmp_path_factory.mktemp("flood") / "run", n_views=4)
    v = Viewer(config_from(run, port=free_port(), load_points=False, max_upload_mb=2.0))
    try:
        yield v
    finally:
        v.stop()


def _upload_uuid(v) -> str:
    gui = v.server.gui
    for uid, handle in gui._gui_input_handle_from_uuid.items():
        if type(handle).__name__ == "GuiUploadButtonHandle":
            return uid
    pytest.fail("no upload button in the viewer (the Paths tab has one)")


def _pack(message) -> bytes:
    """A client->server message as viser's browser sends it (msgpack of the message's dict)."""
    import msgspec.msgpack

    return msgspec.msgpack.encode(message.as_serializable_dict())


async def _flood(port: int, source: str, parts: int, part_bytes: int, announced: int) -> None:
    import viser
    import websockets
    from viser import _messages

    transfer = uuid.uuid4().hex
    async with websockets.connect(
        f"ws://127.0.0.1:{port}", subprotocols=[f"viser-v{viser.__version__}"], max_size=None
    ) as ws:
        await ws.send(_pack(_messages.FileTransferStartUpload(
            source_component_uuid=source, transfer_uuid=transfer, filename="x.json",
            mime_type="application/json", part_count=parts, size_bytes=announced)))
        blob = b"\0" * part_bytes
        for i in range(parts):
            await ws.send(_pack(_messages.FileTransferPart(
                source_component_uuid=source, transfer_uuid=transfer, part_index=i, content=blob)))
        await asyncio.sleep(1.0)


def test_upload_flood_is_bounded(viewer) -> None:
    source = _upload_uuid(viewer)
    states = viewer.server.gui._current_file_upload_states
    before = _rss_mb()
    for _ in range(3):
        asyncio.run(_flood(viewer.port, source, parts=100, part_bytes=1 << 20, announced=100))
    time.sleep(1.0)
    grown = _rss_mb() - before
    assert not states, "the flooded transfer's buffer must be released"
    # measured 2026-12-01: +5.6 MB with the received-bytes cap, +109 MB without it
    assert grown < 50, f"RSS grew by {grown:.0f} MB under a 300 MiB flood"
    assert any("more than it announced" in e for e in viewer.errors)
    # an honest upload over the cap is refused at its announcement, in MiB
    asyncio.run(_flood(viewer.port, source, parts=1, part_bytes=10, announced=5 << 20))
    assert any("5.0 MiB; the limit is 2.0 MiB" in e for e in viewer.errors)
    assert not states


def test_bind_warning_off_loopback() -> None:
    from splatlab.app.viewer.server import bind_warning

    assert bind_warning("127.0.0.1") is None and bind_warning("localhost") is None
    assert bind_warning("::1") is None
    assert "every network interface" in bind_warning("0.0.0.0")
    assert "192.168.1.5" in bind_warning("192.168.1.5")


def test_viewer_process_prints_the_warning(tmp_path: Path) -> None:
    from viewer_util import start_viewer

    run = make_scene_run(tmp_path / "run", n_views=4)
    proc = start_viewer(run, free_port(), "--host", "0.0.0.0")
    try:
        deadline = time.monotonic() + 20
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "WARNING" in line:
                break
        assert any("every network interface" in ln for ln in lines), lines
    finally:
        proc.terminate()
        proc.wait(timeout=20)
