"""Generate plugins: SwiftBrush one-step text-to-image (VSD distillation) and generated assets
placed into scenes as Gaussians."""
