"""A stand-in for TF Serving's REST API, to test clients of it (`predict --remote`) without a TF
Serving binary. It stands in for the server only: the SavedModel it serves is the one under
test, run by TensorFlow as TF Serving runs it, and nothing of this project is used here.

It answers as TF Serving's REST API is documented (tensorflow.org/tfx/serving/api_rest) and
implemented (tensorflow_serving/util/json_tensor.cc), for what a client of one model uses:

- `GET /v1/models/NAME[/versions/N]/metadata`: `{"model_spec": {"name", "signature_name",
  "version"}, "metadata": {"signature_def": {"signature_def": {SIGNATURE: {"inputs",
  "outputs", "method_name"}}}}}`;
- `POST /v1/models/NAME[/versions/N]:predict` with `{"signature_name", "instances"}` (the row
  format): each instance an object holding every input of the signature, `{"b64": ...}` decoded
  for string inputs; the answer `{"predictions": [{OUTPUT: value}, ...]}`, string outputs
  whose names end in `_bytes` as `{"b64": ...}`;
- errors as `{"error": message}`, status 400 (404 for another model or version).

The columnar format ("inputs"), classify and regress are not implemented.
"""

import base64
import contextlib
import http.server
import json
import re
import threading

import numpy as np
import tensorflow as tf

_PATH = re.compile(r"/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[0-9]+))?(?P<verb>.*)")


class _Refusal(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def _tensor_info(spec):
    dims = [{"size": str(-1 if size is None else size)} for size in spec.shape]
    return {
        "dtype": f"DT_{spec.dtype.name.upper()}",
        "tensor_shape": {"dim": dims, "unknown_rank": False},
        "name": spec.name,
    }


class _Model:
    """One loaded SavedModel version, answering the REST calls."""

    def __init__(self, saved_model_dir, name, version):
        self.loaded = tf.saved_model.load(str(saved_model_dir))
        self.name, self.version = name, str(version)

    def metadata(self):
        signatures = {
            key: {
                "inputs": {
                    name: _tensor_info(spec)
                    for name, spec in function.structured_input_signature[1].items()
                },
                "outputs": {
                    name: _tensor_info(spec) for name, spec in function.structured_outputs.items()
                },
                "method_name": "tensorflow/serving/predict",
            }
            for key, function in self.loaded.signatures.items()
        }
        return {
            "model_spec": {"name": self.name, "signature_name": "", "version": self.version},
            "metadata": {"signature_def": {"signature_def": signatures}},
        }

    def predict(self, request):
        signature_name = request.get("signature_name") or "serving_default"
        if signature_name not in self.loaded.signatures:
            raise _Refusal(
                400, f'Serving signature name: "{signature_name}" not found in signature def'
            )
        function = self.loaded.signatures[signature_name]
        specs = function.structured_input_signature[1]
        instances = request.get("instances")
        if not isinstance(instances, list) or not instances:
            raise _Refusal(400, "No values in 'instances' array")
        inputs = {}
        for name, spec in specs.items():
            values = []
            for index, instance in enumerate(instances):
                if not isinstance(instance, dict) or set(instance) != set(specs):
                    raise _Refusal(
                        400,
                        f"Failed to process element: {index} of 'instances' list. JSON object "
                        f"must only have keys: {','.join(sorted(specs))}",
                    )
                values.append(self._value(instance[name], spec))
            inputs[name] = tf.constant(values, spec.dtype)
        try:
            outputs = function(**inputs)
        except tf.errors.OpError as error:
            raise _Refusal(400, error.message) from None
        predictions = [{} for _ in instances]
        for name, tensor in outputs.items():
            for prediction, value in zip(predictions, tensor.numpy(), strict=True):
                prediction[name] = self._json(name, value)
        return {"predictions": predictions}

    @staticmethod
    def _value(value, spec):
        if isinstance(value, dict) and set(value) == {"b64"} and spec.dtype == tf.string:
            return base64.b64decode(value["b64"])
        return value

    @staticmethod
    def _json(name, value):
        if isinstance(value, bytes):
            if name.endswith("_bytes"):
                return {"b64": base64.b64encode(value).decode()}
            return value.decode()
        return np.asarray(value).tolist()


def _handler(model):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self._answer(lambda: model.metadata(), expected_verb="/metadata")

        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length)

            def predict():
                try:
                    request = json.loads(body)
                except ValueError as error:
                    raise _Refusal(400, f"JSON Parse error: {error}") from None
                return model.predict(request)

            self._answer(predict, expected_verb=":predict")

        def _answer(self, respond, expected_verb):
            match = _PATH.fullmatch(self.path)
            try:
                if (
                    not match
                    or match["name"] != model.name
                    or match["version"] not in (None, model.version)
                ):
                    raise _Refusal(404, f"Servable not found for request: {self.path}")
                if match["verb"] != expected_verb:
                    raise _Refusal(404, f"Malformed request: {self.command} {self.path}")
                status, answer = 200, respond()
            except _Refusal as refusal:
                status, answer = refusal.status, {"error": str(refusal)}
            body = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # quiet: the test output shows the client's lines
            pass

    return Handler


@contextlib.contextmanager
def serving(saved_model_dir, name, version):
    """Serves one SavedModel version on a free local port while the context lasts.

    Yields:
        The server's root URL, e.g. `http://127.0.0.1:PORT`.
    """
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), _handler(_Model(saved_model_dir, name, version))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
