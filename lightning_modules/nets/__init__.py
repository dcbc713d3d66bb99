"""Network building blocks: backbone, RoI Align, regressors, graph layers. Import submodules directly."""
