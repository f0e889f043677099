"""Configuration loading: site folders and process settings.

``sites`` validates a site folder's YAML files (read by ``yamlsource``, which
keeps each value's file and line) and compiles them into the frozen
``edge.core.site.Site``; ``registry`` keeps the sites and reloads them;
``settings`` reads the process settings (environment and flags). This layer
sits above the pure core and below storage and the shells
(docs/architecture.md).
"""
