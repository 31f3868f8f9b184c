"""Viewer memory under load (issue 17): RSS of a viewer serving N raw websocket clients for S
seconds, each client orbiting its camera at 5 Hz (the server renders a JPEG per client in "server"
display mode) and, every 10 s, one client flooding an upload (announces 100 bytes, sends 20 x 1 MiB
parts).

    python benchmarks/viewer_clients.py [--clients 10] [--seconds 60] [--display server]

The viewer runs in this process (so its RSS is sampled from /proc/self/status every 0.5 s); the
clients run in a subprocess speaking viser's own message types, as the browser does. Prints a
markdown row for BENCHMARKS.md: baseline (all clients connected, 5 s in), peak, end, growth.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "app"))

CLIENTS = r'''
import asyncio, math, sys, uuid
import msgspec.msgpack, viser, websockets
from viser import _messages

port, source, n, seconds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])

def pack(m):
    return msgspec.msgpack.encode(m.as_serializable_dict())

async def client(k):
    async with websockets.connect(f"ws://127.0.0.1:{port}", subprotocols=[f"viser-v{viser.__version__}"],
                                  max_size=None) as ws:
        async def drain():
            try:
                async for _ in ws:
                    pass
            except Exception:
                pass
        reader = asyncio.create_task(drain())
        t0 = asyncio.get_running_loop().time()
        i = 0
        while asyncio.get_running_loop().time() - t0 < seconds:
            a = 0.3 * i + k
            pos = (3 * math.cos(a), 3 * math.sin(a), 1.0)
            await ws.send(pack(_messages.ViewerCameraMessage(
                wxyz=(1.0, 0.0, 0.0, 0.0), position=pos, fov=0.9, near=0.01, far=100.0,
                image_height=480, image_width=640, look_at=(0.0, 0.0, 0.0), up_direction=(0.0, 0.0, 1.0))))
            if k == 0 and i % 50 == 25:  # every 10 s: an upload that lies about its size
                t = uuid.uuid4().hex
                await ws.send(pack(_messages.FileTransferStartUpload(
                    source_component_uuid=source, transfer_uuid=t, filename="x.json",
                    mime_type="application/json", part_count=20, size_bytes=100)))
                for j in range(20):
                    await ws.send(pack(_messages.FileTransferPart(
                        source_component_uuid=source, transfer_uuid=t, part_index=j,
                        content=b"\0" * (1 << 20))))
            i += 1
            await asyncio.sleep(0.2)
        reader.cancel()

async def main():
    await asyncio.gather(*(client(k) for k in range(n)))

asyncio.run(main())
'''


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--display", default="server", choices=("server", "browser"))
    args = ap.parse_args()

    from viewer_util import free_port, make_scene_run

    from splatlab.app.viewer.server import Viewer, config_from

    tmp = Path(tempfile.mkdtemp(prefix="viewer_clients_"))
    run = make_scene_run(tmp / "run", n_views=8)
    v = Viewer(config_from(run, port=free_port(), load_points=False, display=args.display,
                           max_resolution=640))
    source = next(uid for uid, h in v.server.gui._gui_input_handle_from_uuid.items()
                  if type(h).__name__ == "GuiUploadButtonHandle")
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample() -> None:
        t0 = time.monotonic()
        while not stop.is_set():
            samples.append((time.monotonic() - t0, rss_mb()))
            time.sleep(0.5)

    start_rss = rss_mb()
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    proc = subprocess.Popen([sys.executable, "-c", CLIENTS, str(v.port), source, str(args.clients),
                             str(args.seconds)])
    proc.wait(timeout=args.seconds + 120)
    time.sleep(3.0)
    stop.set()
    th.join()
    n_clients_left = len(v.server.get_clients())
    held = len(v.server.gui._current_file_upload_states)
    refused = sum("more than it announced" in e for e in v.errors)
    v.stop()
    base = next((r for t, r in samples if t >= 5.0), samples[0][1])
    peak = max(r for _, r in samples)
    end = samples[-1][1]
    print(f"viewer RSS before clients {start_rss:.0f} MB; 5 s in {base:.0f} MB; peak {peak:.0f} MB; "
          f"end {end:.0f} MB; growth peak-5s {peak - base:+.0f} MB, end-5s {end - base:+.0f} MB; "
          f"uploads refused {refused}; transfers held at end {held}; clients left {n_clients_left}; "
          f"client exit {proc.returncode}")
    print(f"| {args.clients} raw clients x {args.seconds:.0f} s, display {args.display}, camera 5 Hz, "
          f"upload flood every 10 s | {base:.0f} | {peak:.0f} | {end:.0f} | {peak - base:+.0f} | "
          f"{refused} | {_dt.date.today()} |")


if __name__ == "__main__":
    main()
