"""Host segments run from their exported ONNX files by onnxruntime's CPU provider (the deployment's host side)."""
import json
from pathlib import Path

import numpy as np


class OnnxHostSession:
    """One exported host segment, opened once: its onnxruntime session and its interface (the IR names it reads
    and writes, from the model's `snn2hw.inputs` / `snn2hw.outputs` metadata). Raises ValueError, naming the file,
    for a file that is not an snn2hw host segment."""

    def __init__(self, path, model: bytes | None = None):
        """`model`: the file's bytes where the caller has read them already (a deployment checks their hash)."""
        # onnxruntime takes about a second to import: only runs of a deployment's host segments pay it
        import onnxruntime as ort

        self.path = Path(path)
        try:
            self.session = ort.InferenceSession(model if model is not None else str(path),
                                                providers=["CPUExecutionProvider"])
            meta = self.session.get_modelmeta().custom_metadata_map
            self.reads, self.writes = json.loads(meta["snn2hw.inputs"]), json.loads(meta["snn2hw.outputs"])
        except (KeyError, ValueError, TypeError) as e:
            raise ValueError(f"{path} is not an snn2hw host segment ({type(e).__name__}: {e})") from None
        except Exception as e:  # onnxruntime's own errors (a damaged protobuf, an invalid graph) have no common base
            raise ValueError(f"{path} is not a readable ONNX model ({type(e).__name__})") from None

    @property
    def input_names(self) -> list[str]:
        return [name for _, name in self.reads]

    @property
    def output_names(self) -> list[str]:
        return [name for _, name in self.writes]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`inputs` maps IR names (and `MODEL_INPUT`) to arrays, cast to float32; keys the segment does not read are
        ignored, so a caller can pass every value it holds. → {IR name: float32 array} of the segment's outputs."""
        missing = [name for name in self.input_names if name not in inputs]
        if missing:
            raise ValueError(f"{self.path}: no values for the segment's inputs {', '.join(missing)}")
        feed = {onnx_name: np.ascontiguousarray(inputs[name], dtype=np.float32) for onnx_name, name in self.reads}
        try:
            results = self.session.run([onnx_name for onnx_name, _ in self.writes], feed)
        except Exception as e:  # onnxruntime's errors have no common base; a model that loads may still not run
            raise ValueError(f"{self.path} failed to run ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
        return {name: value for (_, name), value in zip(self.writes, results)}


def run_host_segment_onnx(path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Open an exported host segment and run it once (`OnnxHostSession.run`)."""
    return OnnxHostSession(path).run(inputs)
