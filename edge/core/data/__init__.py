"""Data files vendored for ``edge.tracker`` (see README.md in this folder):
``search_engines.json``, Matomo's search engine list. ``refresh`` updates it."""
