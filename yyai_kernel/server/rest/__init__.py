"""The REST handlers of ``yyai serve``: thin Tornado adapters over the data plane.
"""
