"""One module per HTTP surface, each exporting a ``router`` that ``web/app.py`` includes."""
