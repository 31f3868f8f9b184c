"""Inspect plugins: anomaly maps, image and audio deepfake detection."""
