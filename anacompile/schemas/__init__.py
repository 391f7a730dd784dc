"""JSON Schemas of the documents anacompile writes (shipped as package data, read with importlib.resources).

* ``tile_layout.schema.json``: ``layout.json`` of ``anacompile export-tiles`` (:mod:`anacompile.tile_export`);
* ``compile_report.schema.json``: the compile report (``anacompile inspect --json``, metadata
  ``anacompile.report``).

Tools downstream read them without importing anacompile, e.g.
``importlib.resources.files("anacompile.schemas").joinpath("compile_report.schema.json")`` or the file itself.
"""
