"""The container of an INR image file.

Layout (little endian)::

    magic "iC" | version u8 (2; 1 below) | height u16 | width u16
    n_levels u8 | ctx_k u8 | n_ctx u8 | arm_hidden u8 | arm_layers u8 | syn_hidden u8 | enhance u8
    upsampling u8                             (0 bilinear, 1 one learned kernel, 2 one per step)
    latent support R u16                      (latents coded on [-R, R])
    per weight group (arm.w, arm.b[, ups.w], syn.w, syn.b[, enh.w, enh.b]):
        k u8 (step 2^-k) | scale index u8 (Laplace scale 2^(i/8 - 4)) | M u16 (ints on [-M, M])
    crc32 u32                                 (of everything before it and of the payload)
    payload: u32 words of one constriction range-coder stream: the weights of each group in
             order, then every latent in wavefront order (see arm.py)

Version 1 is the same without the upsampling byte (bilinear); files with bilinear upsampling
are written in it, so they are byte-identical to those of the codec before learned upsampling.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from ....errors import DataError
from .model import Arch

MAGIC = b"iC"
VERSION = 2
MAX_PIXELS = 1 << 26
"""Largest image a file may declare (64 Mpx): a larger header is taken as corrupted."""
_ARCH = struct.Struct("<2sBHHBBBBBBBBH")
_ARCH_V1 = struct.Struct("<2sBHHBBBBBBBH")
_GROUP = struct.Struct("<BBH")


def weight_groups(arch: Arch) -> list[str]:
    g = ["arm.w", "arm.b"] + (["ups.w"] if arch.upsampling else []) + ["syn.w", "syn.b"]
    if arch.enhance:
        g += ["enh.w", "enh.b"]
    return g


def weight_scale(idx: int) -> float:
    """The Laplace scale of a weight group from its header byte."""
    return 2.0 ** (idx / 8.0 - 4.0)


@dataclass
class GroupHeader:
    k: int
    scale_idx: int
    max_abs: int


@dataclass
class Header:
    arch: Arch
    latent_max: int
    groups: dict[str, GroupHeader]


def pack(header: Header, words: np.ndarray) -> bytes:
    a = header.arch
    sizes = (a.height, a.width, a.n_levels, a.ctx_k, a.n_ctx, a.arm_hidden, a.arm_layers,
             a.syn_hidden, a.enhance)
    if a.upsampling:
        head = _ARCH.pack(MAGIC, VERSION, *sizes, a.upsampling, header.latent_max)
    else:  # bilinear: the version-1 layout, a byte shorter and identical to files written before
        head = _ARCH_V1.pack(MAGIC, 1, *sizes, header.latent_max)
    return _with_groups_and_payload(head, header, words)


def _with_groups_and_payload(head: bytes, header: Header, words: np.ndarray) -> bytes:
    for g in weight_groups(header.arch):
        gh = header.groups[g]
        head += _GROUP.pack(gh.k, gh.scale_idx, gh.max_abs)
    payload = np.asarray(words, dtype="<u4").tobytes()
    return head + struct.pack("<I", zlib.crc32(head + payload)) + payload


def header_size(arch: Arch, version: int | None = None) -> int:
    """Bytes before the payload (``version``: as written, i.e. 1 for bilinear upsampling)."""
    v = version if version is not None else (VERSION if arch.upsampling else 1)
    return (_ARCH if v >= 2 else _ARCH_V1).size + _GROUP.size * len(weight_groups(arch)) + 4


def unpack(data: bytes, name: str = "bitstream") -> tuple[Header, np.ndarray]:
    """Parse and check a file. Raises DataError naming ``name`` when it is not an INR image file,
    is truncated or corrupted (CRC mismatch)."""
    if len(data) < _ARCH_V1.size:
        raise DataError(f"{name}: {len(data)} bytes is too short for an INR image file (truncated?)")
    magic, version = data[:2], data[2]
    if magic != MAGIC:
        raise DataError(f"{name}: not an INR image file (magic {magic!r}, expected {MAGIC!r})")
    if version not in (1, VERSION):
        raise DataError(f"{name}: format version {version} is not supported (this reader: 1-{VERSION})")
    st = _ARCH if version >= 2 else _ARCH_V1
    if len(data) < st.size:
        raise DataError(f"{name}: {len(data)} bytes is too short for an INR image file (truncated?)")
    fields = st.unpack_from(data, 0)
    h, w, nl, ck, nc, ah, al, sh, en = fields[2:11]
    ups = fields[11] if version >= 2 else 0
    lmax = fields[-1]
    if min(h, w, nl, nc, ah, sh) == 0 or nl > 16 or ck > 8 or h * w > MAX_PIXELS or ups > 2:
        raise DataError(f"{name}: header is corrupted (sizes {h}x{w}, levels {nl}, upsampling {ups})")
    arch = Arch(height=h, width=w, n_levels=nl, ctx_k=ck, n_ctx=nc, arm_hidden=ah,
                arm_layers=al, syn_hidden=sh, enhance=en, upsampling=ups)
    n = header_size(arch, version)
    if len(data) < n or (len(data) - n) % 4:
        raise DataError(f"{name}: {len(data)} bytes does not hold a whole file (truncated?)")
    groups, words = _groups_and_payload(data, st.size, arch, name)
    return Header(arch, lmax, groups), words


def _groups_and_payload(
    data: bytes, off: int, arch: Arch, name: str
) -> tuple[dict[str, GroupHeader], np.ndarray]:
    """The weight-group records from ``off``, the CRC check, and the payload's u32 words."""
    groups = {}
    for g in weight_groups(arch):
        k, si, m = _GROUP.unpack_from(data, off)
        groups[g] = GroupHeader(k, si, m)
        off += _GROUP.size
    (crc,) = struct.unpack_from("<I", data, off)
    payload = data[off + 4 :]
    if zlib.crc32(data[:off] + payload) != crc:
        raise DataError(f"{name}: checksum mismatch: the file is corrupted or truncated")
    return groups, np.frombuffer(payload, dtype="<u4").astype(np.uint32)


# ----------------------------------------------------------------------------- video files

VIDEO_MAGIC = b"iV"
VIDEO_VERSION = 1
MAX_VIDEO_SAMPLES = 1 << 28
"""Largest frames x height x width a video file may declare (256 M pixels)."""
_VIDEO = struct.Struct("<2sBHHHBBBBBBBH")


@dataclass
class VideoHeader:
    frames: int
    t_log2: int
    """Latent slices every 2^t_log2 frames."""
    header: Header
    """The per-frame architecture, latent support and weight groups (shared by all frames)."""


def video_header_size(arch: Arch) -> int:
    return _VIDEO.size + _GROUP.size * len(weight_groups(arch)) + 4


def pack_video(vh: VideoHeader, words: np.ndarray) -> bytes:
    """Layout (little endian): magic "iV" | version u8 | frames u16 | height u16 | width u16 |
    t_log2 u8 | n_levels u8 | ctx_k u8 | n_ctx u8 | arm_hidden u8 | arm_layers u8 |
    syn_hidden u8 | latent support R u16 | the weight groups as in image files | crc32 u32 |
    payload (one constriction stream: weights, then the latents of every slice)."""
    a = vh.header.arch
    if a.enhance or a.upsampling:
        raise ValueError("video files have no enhancement block and bilinear upsampling only")
    head = _VIDEO.pack(
        VIDEO_MAGIC, VIDEO_VERSION, vh.frames, a.height, a.width, vh.t_log2, a.n_levels, a.ctx_k,
        a.n_ctx, a.arm_hidden, a.arm_layers, a.syn_hidden, vh.header.latent_max,
    )
    return _with_groups_and_payload(head, vh.header, words)


def unpack_video(data: bytes, name: str = "bitstream") -> tuple[VideoHeader, np.ndarray]:
    """Parse and check a video file; DataError naming ``name`` when it is not one, is truncated
    or corrupted (CRC mismatch)."""
    if len(data) < _VIDEO.size:
        raise DataError(f"{name}: {len(data)} bytes is too short for an INR video file (truncated?)")
    fields = _VIDEO.unpack_from(data, 0)
    if fields[0] != VIDEO_MAGIC:
        raise DataError(f"{name}: not an INR video file (magic {fields[0]!r}, expected {VIDEO_MAGIC!r})")
    if fields[1] != VIDEO_VERSION:
        raise DataError(f"{name}: video format version {fields[1]} is not supported (this reader: "
                        f"{VIDEO_VERSION})")
    t, h, w, tl, nl, ck, nc, ah, al, sh, lmax = fields[2:]
    if (min(t, h, w, nl, nc, ah, sh) == 0 or nl > 16 or ck > 8 or tl > 8
            or t * h * w > MAX_VIDEO_SAMPLES):
        raise DataError(f"{name}: header is corrupted ({t} frames of {h}x{w}, levels {nl})")
    arch = Arch(height=h, width=w, n_levels=nl, ctx_k=ck, n_ctx=nc, arm_hidden=ah,
                arm_layers=al, syn_hidden=sh, enhance=0)
    n = video_header_size(arch)
    if len(data) < n or (len(data) - n) % 4:
        raise DataError(f"{name}: {len(data)} bytes does not hold a whole file (truncated?)")
    groups, words = _groups_and_payload(data, _VIDEO.size, arch, name)
    return VideoHeader(t, tl, Header(arch, lmax, groups)), words
