"""Applications built on qnn (top of the package: they may import everything, nothing imports them).

* :mod:`qnn.apps.heart` -- the heart-disease diagnostic demo page (``qnn demo heart``).
"""
