"""yyai on Ray Serve, on one local two-node Ray cluster that this package's modules share.

``make test`` gives the whole package to one worker (``tests/conftest.py``), and the cluster is a
package-scoped fixture (``conftest.py``): it starts once, for the first Ray test, and stops
after the last one.
"""
