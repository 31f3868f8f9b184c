"""COOL-CHIC / C3 style overfitted image codec with EQLINR options (issue 12).

``encode(image, options) -> bytes`` overfits latent grids, an auto-regressive entropy model and a
small synthesis to one image; ``decode(bytes) -> uint8 image`` is exact fixed point, so a file
decodes bit-identically in any process. See codec.py for training, arm.py for the entropy model
and its determinism, bitstream.py for the file layout.
"""

from .codec import CodecOptions, EncodeResult, decode, encode, encode_image, parse_arch_candidates

__all__ = [
    "CodecOptions", "EncodeResult", "encode", "encode_image", "decode", "parse_arch_candidates",
]
