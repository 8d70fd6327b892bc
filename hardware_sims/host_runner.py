"""Host segments run from their exported ONNX files by onnxruntime's CPU provider (the deployment's host side)."""
import json

import numpy as np
import onnxruntime as ort


def run_host_segment_onnx(path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run an exported host segment with onnxruntime's CPU provider. `inputs` maps IR names (and `MODEL_INPUT`) to
    arrays, cast to float32; keys the segment does not read are ignored, so a caller can pass every value it holds.
    → {IR name: float32 array} of the segment's outputs."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    if "snn2hw.inputs" not in meta:
        raise ValueError(f"{path} is not an snn2hw host segment (no snn2hw.inputs metadata)")
    reads, writes = json.loads(meta["snn2hw.inputs"]), json.loads(meta["snn2hw.outputs"])
    missing = [name for _, name in reads if name not in inputs]
    if missing:
        raise ValueError(f"{path}: no values for the segment's inputs {', '.join(missing)}")
    feed = {onnx_name: np.ascontiguousarray(inputs[name], dtype=np.float32) for onnx_name, name in reads}
    results = session.run([onnx_name for onnx_name, _ in writes], feed)
    return {name: value for (_, name), value in zip(writes, results)}
