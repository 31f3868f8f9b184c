"""Image deepfake detection with D4 (disjoint DCT-spectrum ensembles, WACV 2024): features,
partitions, training, attacks and the "image deepfake" plugin."""
