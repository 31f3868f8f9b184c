"""Audio deepfake inspection: RawBoost augmentation, EER and score fusion, a synthetic
spoofing data set made with espeak-ng and vocoders, Grad-CAM over time with RCQ, and the
``audio deepfake`` inspect plugin."""
