"""splatlab.models: pretrained foundation models shared by scene and plugins.

Feature-distillation teachers (each loads its official checkpoint in one place and raises
``WeightsNotFoundError`` with download instructions when it is absent):

- :mod:`.sam`: Segment Anything (``load_sam``, ``SamTeacher``; segment_anything's classes).
- :mod:`.lseg`: LSeg with the official module names (``load_lseg`` for ``demo_e200.ckpt``, ``LSegTeacher``).
- :mod:`.clip_dense`: MaskCLIP-style dense open_clip features (``load_dense_clip``, ``DenseCLIPTeacher``).
- :mod:`.label_teacher`: a SYNTHETIC text-aligned teacher from ground-truth labels (demo scene).
- :mod:`.teacher_cache`: the ``Teacher`` base class and the fp16 on-disk ``TeacherCache``.
- :mod:`.weights`: where checkpoint files are looked for.

Submodules are imported on use (torch/timm/open_clip are heavy).
"""
