"""Image coding for machines (issue 13): a mean-scale hyperprior codec with an honest
constriction bitstream (codec.py, entropy.py), a segmentation task on rendered demo views
(task.py), appearance redundancy reduction (arr.py, ICIP 2024), the PatchGAN bridge to human
viewing (bridge.py, ICIP 2022), training recipes and the checkpoint bundle (train.py) and the
``image coding for machines`` plugin (plugin.py). Rate-distortion tools: ``..rd``."""
