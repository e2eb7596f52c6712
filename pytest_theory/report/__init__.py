"""Evidence of a run: report cells, the matrix, in-toto attestations, reuse and merging.

``pytest --theory-report DIR`` writes ``DIR/cells/<cell>.json`` (one per processor
x adapter x mode, schema ``contracts/schemas/report_cell.json``),
``DIR/attestations/<cell>.intoto.json`` and ``DIR/matrix.md``;
``theory-report merge DIR... --out DIR`` merges the cells of many jobs.
"""
