"""SNUNet-CBAM change-detection trainer for the land-cover change platform.

Modules:
  synthetic  seeded generator of synthetic before/after/label pairs (+ CLI)
  model      SNUNet-CBAM (Siamese UNet++ with ECAM), one change logit + embedding
  data       manifest loading and validation, image IO, augmentation
  train      training CLI (JSON-lines progress), artifacts (best.pt, model.onnx, ...)
  onnx_meta  minimal protobuf patcher/reader for ONNX metadata_props
  baseline   pixel-difference threshold baseline (+ CLI)
  evaluate   evaluate a checkpoint on a manifest split (+ CLI)
"""

__version__ = "0.1.0"
CONTRACT_VERSION = "1"
