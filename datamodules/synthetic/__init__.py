"""The synthetic data set (``make data``, the suite's default data): rendered people of the active body
asset set, written in the shard format of :mod:`datamodules.shards` as five training sources that mirror
the annotations of the real ones (h36m, up3d, lsp, coco, mpii) and five evaluation sets with full ground
truth (3dpw, h36m, up3d, lsp, coco).

Modules, in the order the data flows:

- :mod:`.sources`      what each source annotates (has_* flags, 2D/3D slots, drop rates) and its flavour;
- :mod:`.limits`, :mod:`.poses`   joint limits; shapes, poses (library + random) and orientations;
- :mod:`.placement`    the virtual original camera, the person's translation, SPIN box and crop camera;
- :mod:`.appearance`, :mod:`.texture`   skin, hair, clothing and light; per-pixel colours from part labels;
- :mod:`.backgrounds`  procedural backgrounds;
- :mod:`.renderer`, :mod:`.compose`     batched rasterisation and shading; the final picture;
- :mod:`.detections`   BiGraph's simulated detector output;
- :mod:`.annotate`     full ground truth -> one source's :class:`~datamodules.sample.Sample`;
- :mod:`.scene`        per-sample seeding and the batch pipeline;
- :mod:`.dataset`      shards, manifest, workers, atomic replacement.

The commands are :mod:`cli.make_data` (``make data``) and :mod:`cli.preview_data` (``make preview-data``, a
contact sheet of a generated data set).
"""
from datamodules.synthetic.dataset import FORMAT_NAME, FORMAT_VERSION, generate

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "generate"]
