"""Offline export of the pretrained CNN backbones to ONNX.

This subpackage needs the ``export`` extra (torch, onnx). Nothing else in the product
imports it: the appliance only loads the committed ``models/backbones/*.onnx`` files with
ONNX Runtime. Rebuild them with
``python -m inspector.fitting.export.backbones --out models/backbones``.
"""
