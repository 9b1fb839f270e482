"""A stand-in for OpenVINO Model Server's KServe v2 REST endpoint: the ONNX model runs in OpenVINO (the
engine OVMS runs it with), behind the v2 protocol's model metadata and JSON inference routes. Each
request is checked as the protocol defines it (kserve/docs/predict-api/v2), and a wrong one is answered
as OVMS answers it: 400 with ``{"error": ...}``."""

from __future__ import annotations

import json

import numpy as np
from http_standin import Served, answer_json

DATATYPES = {"FP32": np.float32}


class KServeV2Standin:
    def __init__(self, model_path: str, name: str, token: str = ""):
        import onnx

        from yolo_kfp.cluster.predict import import_openvino

        self.name, self.token, self.requests = name, token, []
        proto = onnx.load(model_path, load_external_data=False)
        self.input = {"name": proto.graph.input[0].name, "datatype": "FP32",
                      "shape": [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]}
        self.output_name = proto.graph.output[0].name
        openvino = import_openvino()
        self.compiled = openvino.Core().compile_model(model_path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})

    def __enter__(self) -> KServeV2Standin:
        self._served = Served(self._handle, ("GET", "POST"))
        self.url = f"{self._served.url}/v2/models/{self.name}"
        return self

    def __exit__(self, *exc) -> None:
        self._served.close()

    def metadata(self) -> dict:
        return {"name": self.name, "versions": ["1"], "platform": "OpenVINO", "inputs": [self.input],
                "outputs": [{"name": self.output_name, "datatype": "FP32", "shape": [-1, -1, -1]}]}

    def infer(self, body: dict) -> dict:
        (tensor,) = body["inputs"]  # the model has one input
        if tensor.get("name") != self.input["name"] or tensor.get("datatype") not in DATATYPES:
            raise ValueError(f"unknown input {tensor.get('name')!r} of type {tensor.get('datatype')!r}")
        if tensor["shape"] != self.input["shape"]:
            raise ValueError(f"input shape {tensor['shape']} is not the model's {self.input['shape']}")
        data = np.asarray(tensor["data"], dtype=DATATYPES[tensor["datatype"]])
        if data.size != np.prod(tensor["shape"]):
            raise ValueError(f"{data.size} values for shape {tensor['shape']}")
        result = self.compiled(data.reshape(tensor["shape"]))[self.compiled.output(0)]
        return {"model_name": self.name, "model_version": "1", "id": body.get("id", ""),
                "outputs": [{"name": self.output_name, "datatype": "FP32", "shape": list(result.shape),
                             "data": result.ravel().tolist()}]}

    def _handle(self, request, method: str) -> None:
        self.requests.append((method, request.path, request.headers.get("Authorization")))
        route = f"/v2/models/{self.name}" + ("/infer" if method == "POST" else "")
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return answer_json(request, 401, {"error": "Unauthorized"})
        if request.path != route:
            return answer_json(request, 404, {"error": "Model with requested name is not found"})
        if method == "GET":
            return answer_json(request, 200, self.metadata())
        try:
            body = json.loads(request.rfile.read(int(request.headers["Content-Length"])))
            answer_json(request, 200, self.infer(body))
        except (ValueError, KeyError, TypeError) as error:
            answer_json(request, 400, {"error": str(error)})
