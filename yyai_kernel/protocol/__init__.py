"""What crosses the wire, with no web framework: codecs and request parsing.

- ``v2codec.py``: the Open Inference Protocol's typed messages, JSON and binary HTTP;
- ``v2grpc.py``: the same messages to and from the gRPC protobufs;
- ``restparse.py``: what every REST front end reads from a request (bodies, flags, media types);
- ``multipart.py``: multipart uploads through python-multipart's streaming parser;
- ``records.py``: what a table or tensor model is sent: JSON records or arrays, CSV, .npy;
- ``jsonparse.py``: the one JSON parser for outside documents (bounded depth and size);
- ``tokenauth.py``: the API token as clients send it, compared in constant time.
"""
