"""The naive baseline: one Flask process that calls ``model.predict()`` for every request.

That is what the original Django service did. Flask's own threaded server; v2-shaped
route so the load generator sends the same body as to every other server.
Usage: python flask_server.py MODELS_DIR PORT
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import decode_v2, encode_v2, load_keras, model_files
from flask import Flask, Response, request


def main() -> None:
    models_dir, port = sys.argv[1], int(sys.argv[2])
    models = {name: load_keras(path) for name, path in model_files(models_dir).items()}
    app = Flask("naive")

    @app.get("/v2/health/ready")
    def ready():
        return ""

    @app.post("/v2/models/<name>/infer")
    def infer(name):
        model = models.get(name)
        if model is None:
            return Response('{"error": "no such model"}', 404, mimetype="application/json")
        x = decode_v2(request.get_data())
        out = model.predict(x, verbose=0)
        return Response(encode_v2(name, out), mimetype="application/json")

    app.run(host="127.0.0.1", port=port, threaded=True)


if __name__ == "__main__":
    main()
