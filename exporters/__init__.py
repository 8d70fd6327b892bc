"""Lava-facing exporters (NIR, lava-dl .net, ONNX for host parts)."""
