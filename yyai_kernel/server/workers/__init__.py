"""``yyai serve --workers N``: the supervisor, its link to each worker, and the worker mode.
"""
